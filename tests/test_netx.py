"""`snn-export --target netx`: the file loads in lava-dl's own netx loader, runs in Loihi2SimCfg(fixed_pt)
equal to our bit-exact chip simulator, describes what slayer's CUBA blocks export, and refuses what netx
cannot run exactly. Tests that need lava-dl skip with the reason when it is not installed."""

from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
from nir_nets import conv_graph, mlp_graph, neuron_node

from snnchip import lava_compat
from snnchip.errors import LavaUnavailableError, UnsupportedNodeError
from snnchip.export.netx import INPUT_MESSAGE_BITS, NEVER_FIRES, netx_deployment, write_netx
from snnchip.export.qnet import encode_input
from snnchip.hw_sim.chip import ChipSimulator


@pytest.fixture(scope="module")
def netx():
    try:
        return lava_compat.import_netx()
    except LavaUnavailableError as exc:
        pytest.skip(f"lava-dl not installed: {exc}")


def _mlp(T=12, **kw):
    return mlp_graph((6, 10, 8, 4), T=T, seed=3, lam=0.75, gain=2.0, reset="zero", spike="gt", bias=False, **kw)


def _conv(T=6):
    g = conv_graph((1, 6, 6), channels=3, classes=3, T=T, seed=1, lam=0.5, reset="zero", spike="gt")
    g.nodes["conv1"].bias = np.zeros(3)
    g.nodes["fc2"] = nir.Linear(weight=g.nodes["fc2"].weight)
    return g


def _run_netx(netx, path, dep, x):
    """Run the file in lava-dl's Network on Loihi2SimCfg(fixed_pt) for T + depth steps (one sample).

    Returns every spiking layer's spikes and the last layer's v per Lava step ([steps, n])."""
    steps = dep.T + dep.depth
    Source = lava_compat.lava_module("proc.io.source").RingBuffer
    Sink = lava_compat.lava_module("proc.io.sink").RingBuffer
    RunSteps = lava_compat.lava_module("magma.core.run_conditions").RunSteps
    cfg = lava_compat.lava_module("magma.core.run_configs").Loihi2SimCfg(select_tag="fixed_pt")
    net = netx.hdf5.Network(str(path), input_message_bits=INPUT_MESSAGE_BITS)
    data = np.zeros((net.inp.shape[0], steps))
    data[:, :dep.T] = encode_input(x.reshape(dep.T, -1), dep.qnet.input_frac_bits).T  # graded xq = round(x·2^q)
    src = Source(data=data)
    src.s_out.connect(net.inp)
    sinks = [Sink(shape=layer.out.shape, buffer=steps) for layer in net.layers[:-1]]
    for layer, sink in zip(net.layers, sinks, strict=False):
        layer.out.connect(sink.a_in)
    v_last = []
    try:
        for _ in range(steps):
            net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            v_last.append(net.layers[-1].neuron.v.get())
        spikes = [sink.data.get().T != 0 for sink in sinks]
    finally:
        net.stop()
    return spikes, np.array(v_last).astype(np.int64)


def _signs():
    """fc1 excitatory (odd mantissas), fc2 mixed, the readout inhibitory: each of netx's sign modes."""
    g = _mlp()
    g.nodes["fc1"] = nir.Linear(weight=np.abs(g.nodes["fc1"].weight) * 0.4)
    g.nodes["fc3"] = nir.Linear(weight=-np.abs(g.nodes["fc3"].weight) - 0.1)
    return g


@pytest.mark.parametrize("make", ["mlp", "conv", "signs"])
def test_netx_file_runs_in_lava_dl_like_the_chip_simulator_step_for_step(netx, tmp_path, make):
    dep = netx_deployment({"mlp": _mlp, "conv": _conv, "signs": _signs}[make]())
    if make == "signs":
        w1, w2, w3 = (q.inputs[0].weight for q in dep.qnet.stages)
        assert w1.min() >= 0 and np.any(w1 % 2) and w2.min() < 0 < w2.max() and w3.max() < 0
    assert all(q.inputs[0].weight_exp == 0 for q in dep.qnet.stages)
    write_netx(dep, tmp_path / "net.net")
    x = np.random.default_rng(0).uniform(0, 1, (dep.T, 1, *dep.qnet.input_shape))
    sim = ChipSimulator(dep).run(x, timing="lava")  # layer k's step t is Lava step t + k, as in netx
    spikes, v_last = _run_netx(netx, tmp_path / "net.net", dep, x)
    for q, got in zip(dep.qnet.stages, spikes, strict=False):
        want = sim.spikes[q.name][:, 0].reshape(len(got), -1)
        np.testing.assert_array_equal(got, want, err_msg=q.name)
        assert want.any(), q.name  # the comparison is not vacuous
    readout = dep.qnet.stages[-1].name
    np.testing.assert_array_equal(v_last, sim.states[readout]["v"][:, 0].reshape(len(v_last), -1))
    assert np.abs(v_last).max() > 0


def test_slayer_cuba_blocks_export_the_same_network(netx, tmp_path):
    """slayer's own CUBA Dense blocks, given our integers, write a file netx builds into the same processes."""
    import torch

    slayer = __import__("lava.lib.dl.slayer", fromlist=["block"])
    dep = netx_deployment(_mlp(T=4))
    write_netx(dep, tmp_path / "ours.net")
    with h5py.File(tmp_path / "slayer.net", "w") as f:
        layers = f.create_group("layer")
        for i, q in enumerate(dep.qnet.stages):
            w = q.inputs[0].weight
            vth = q.vth if q.spiking else NEVER_FIRES
            params = {"threshold": vth / 64, "current_decay": 1.0, "voltage_decay": (q.dv if q.spiking else 0) / 4096,
                      "scale": 64}
            blk = slayer.block.cuba.Dense(params, w.shape[1], w.shape[0])
            blk.synapse.pre_hook_fx = blk.neuron.quantize_8bit
            with torch.no_grad():
                blk.synapse.weight.copy_(torch.from_numpy(w / 64.0).reshape(blk.synapse.weight.shape))
                blk(torch.zeros(1, w.shape[1], 1))  # slayer learns the neuron shape on a forward pass
            blk.export_hdf5(layers.create_group(str(i)))
    ours, theirs = (netx.hdf5.Network(str(tmp_path / n), input_message_bits=INPUT_MESSAGE_BITS)
                    for n in ("ours.net", "slayer.net"))
    assert str(ours) == str(theirs) and len(ours) == len(theirs) == dep.depth
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        np.testing.assert_array_equal(a.synapse.weights.init, b.synapse.weights.init)
        for key in ("weight_exp", "num_weight_bits", "num_message_bits"):
            assert a.synapse.proc_params.get(key) == b.synapse.proc_params.get(key), key
        for var in ("vth", "du", "dv", "bias_mant", "bias_exp"):
            np.testing.assert_array_equal(getattr(a.neuron, var).init, getattr(b.neuron, var).init, err_msg=var)


def test_file_holds_integer_weights_and_netx_neuron_fields(tmp_path):
    dep = netx_deployment(_mlp(T=5))
    write_netx(dep, tmp_path / "net.net")
    with h5py.File(tmp_path / "net.net") as f:
        assert f["layer/0/type"][0] == b"input" and list(f["layer/0/shape"][()]) == [6]
        for k, q in enumerate(dep.qnet.stages, start=1):
            g = f[f"layer/{k}"]
            assert g["type"][0] == b"dense" and np.issubdtype(g["weight"].dtype, np.integer)
            np.testing.assert_array_equal(g["weight"][()], q.inputs[0].weight)
            assert (g["neuron/type"][0], g["neuron/iDecay"][()]) == (b"CUBA", 4096)
            assert g["neuron/vThMant"][()] == (q.vth if q.spiking else NEVER_FIRES)
            assert "bias" not in g


@pytest.mark.parametrize("case,layer,hint", [
    ("subtract", "fc1", "--target loihi"), ("ge", "fc1", "--reset zero"), ("bias", "fc1", "without bias"),
    ("empf", "fc2_neuron", "empf"), ("feedback", "fc1", "no recurrence")])
def test_layers_netx_cannot_run_exactly_are_refused_by_name(case, layer, hint):
    kw = dict(reset="zero", spike="gt", bias=False)
    kw.update({"subtract": dict(reset="subtract"), "ge": dict(spike="ge"), "bias": dict(bias=True)}.get(case, {}))
    g = mlp_graph((4, 5, 5, 3), T=3, **kw)
    if case == "empf":
        node = neuron_node("fc2", (5,), reset="zero", spike="gt")
        node.metadata["snnchip"]["kind"] = "empf"
        g.nodes["fc2_neuron"] = node
    elif case == "feedback":
        g.nodes["fb"] = nir.Linear(weight=np.ones((5, 5)))
        g.edges.extend([("fc1_neuron", "fb"), ("fb", "fc1_neuron")])
    with pytest.raises(UnsupportedNodeError, match=rf"(?s){layer!r}.*{hint}"):
        netx_deployment(g)


@pytest.mark.parametrize("weight", [np.zeros((5, 4)), -np.abs(np.random.default_rng(0).normal(size=(5, 4))) *
                                    np.tri(5, 4)])
def test_weight_matrices_netx_misreads_are_refused(weight):
    g = mlp_graph((4, 5, 3), T=3, reset="zero", spike="gt", bias=False)
    g.nodes["fc1"] = nir.Linear(weight=weight)
    with pytest.raises(UnsupportedNodeError, match="'fc1'.*(quantize to 0|all ≤ 0)"):
        netx_deployment(g)


def test_snn_export_target_netx_writes_the_file_atomically(tmp_path, capsys):
    from snnchip.cli import export

    nir.write(tmp_path / "m.nir", _mlp(T=4))
    assert export([str(tmp_path / "m.nir"), "--target", "netx", "-o", str(tmp_path / "net.net")]) == 0
    assert "input_message_bits=24" in capsys.readouterr().out
    with h5py.File(tmp_path / "net.net") as f:
        assert len(f["layer"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nir", "net.net"]  # no temp file left
    nir.write(tmp_path / "soft.nir", mlp_graph((4, 3, 2), T=3, bias=False))
    assert export([str(tmp_path / "soft.nir"), "--target", "netx", "-o", str(tmp_path / "soft.net")]) != 0
    assert "'fc1'" in capsys.readouterr().err and not (tmp_path / "soft.net").exists()


def test_missing_lava_dl_error_names_the_install_command(monkeypatch):
    if not lava_compat.lava_available():
        pytest.skip("lava-nc not installed")
    monkeypatch.setitem(__import__("sys").modules, "lava.lib.dl.netx", None)  # what an absent lava-dl looks like
    with pytest.raises(LavaUnavailableError, match=r"lava-dl is not installed.*--no-deps --ignore-requires-python "
                                                   r"lava-dl==0\.6\.0"):
        lava_compat.import_netx.__wrapped__()


def test_netx_quantization_is_the_loihi_quantizer_with_exponent_zero():
    """Same scale search and error bound as --target loihi; only the Dense exponent is pinned (netx stores m·2^0)."""
    from snnchip.export.lowering import lower
    from snnchip.export.qnet import dequantize_weight
    from snnchip.export.quantize_stages import quantize_stage
    from snnchip.export.weight_grid import mantissa_range

    g = _mlp(T=6)
    dep = netx_deployment(g)
    net = lower(g)
    for i, (st, q) in enumerate(zip(net.stages, dep.qnet.stages, strict=True)):
        frac = dep.qnet.input_frac_bits if i == 0 else 0
        (p,), (pf,) = q.inputs, st.inputs
        again, _ = quantize_stage(st, dep.T, {pf.source: 1.0}, weight_exp=0, input_frac_bits=frac)
        np.testing.assert_array_equal(again.inputs[0].weight, p.weight)
        lo, hi, step = mantissa_range(pf.weight)
        assert p.weight_exp == 0 and lo <= p.weight.min() and p.weight.max() <= hi and not np.any(p.weight % step)
        bound = step * 2.0**frac / (2 * q.scale)  # half a grid step of the first Dense, in real units
        assert np.abs(dequantize_weight(p, frac, q.scale) - pf.weight).max() <= bound * (1 + 1e-9)


def test_a_model_trained_for_netx_exports(tmp_path, capsys):
    """--reset zero --spike gt --no-bias gives a model.pt that --target netx accepts; the default one is refused."""
    from snnchip.cli import export
    from snnchip.train.trainer import TrainConfig, fit

    fit(TrainConfig(out=str(tmp_path / "run"), hidden="16", T=3, epochs=1, reset="zero", spike="gt", bias=False,
                    max_steps=2, quiet=True, device="cpu"))
    model = str(tmp_path / "run" / "model.pt")
    assert export([model, "--target", "netx", "-o", str(tmp_path / "net.net")]) == 0
    with h5py.File(tmp_path / "net.net") as f:
        assert all("bias" not in f["layer"][k] or not np.any(f["layer"][k]["bias"][()]) for k in f["layer"])
    fit(TrainConfig(out=str(tmp_path / "default"), hidden="16", T=3, epochs=1, max_steps=2, quiet=True, device="cpu"))
    assert export([str(tmp_path / "default" / "model.pt"), "--target", "netx", "-o", str(tmp_path / "d.net")]) != 0
    assert "--target loihi" in capsys.readouterr().err
