"""SRM (event-driven BP's current-based LIF, kind "srm") on the chip: our CubaLIF process vs the equations written
here, the bit-exact simulator vs Lava fixed_pt step by step, and a trained edbp model.pt through the loihi export."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch
from lava_harness import assert_same_run, run_process
from nir_nets import mlp_graph

from snnchip.deploy import build
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.lowering import lower
from snnchip.hw_sim.chip import ChipSimulator

pytestmark = pytest.mark.lava
V_LIM = 2**23 - 1


def _hand_fixed(u, v, a, du, dv, vth, spike):
    """The SRM in fixed point (docs/loihi-fixed-point.md §3), written independently of snnchip.deploy: Lava's LIF
    current register (factor 4096 − (du + 1)) and voltage decay, both traces reset at a spike."""
    def dec(x, f):
        p = x * f
        return np.sign(p) * (np.abs(p) // 4096)
    u = dec(u, 4096 - du - 1) + a.astype(np.int64) * 64
    u = np.where(u > 2**23, u - 2**24, u)
    v = np.clip(dec(v, 4096 - dv) + u, -V_LIM, V_LIM)
    s = (v >= vth * 64) if spike == "ge" else (v > vth * 64)
    return u * (1 - s), v * (1 - s), s


def test_cubalif_fixed_and_floating_pt_equal_equations():
    from snnchip.deploy.procs.cubalif.process import CubaLIF

    rng = np.random.default_rng(1)
    n, steps, du, dv, vth = 12, 20, 1200, 700, 9000
    data = rng.integers(-3000, 6000, (n, steps))
    data[:2] = rng.integers(2**15, 2**16, (2, steps))  # drives v into the +2^23 clip (vth above it: no spike)
    data[2:4] = -rng.integers(2**14, 2**15, (2, steps))  # and into the −2^23 clip
    srm = dict(reset="zero", reset_current=True)
    u, v, s = run_process(CubaLIF(shape=(n,), du=du, dv=dv, vth=vth, spike="ge", **srm), data, "fixed_pt")
    s = s != 0
    hu, hv = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for t in range(steps):
        hu, hv, hs = _hand_fixed(hu, hv, data[:, t], du, dv, vth, "ge")
        np.testing.assert_array_equal(u[t], hu, err_msg=f"u at step {t}")
        np.testing.assert_array_equal(v[t], hv, err_msg=f"v at step {t}")
        np.testing.assert_array_equal(s[t], hs, err_msg=f"s at step {t}")
    assert s.any() and (v == -V_LIM).any(), "the test must spike and saturate"
    assert ((u == 0) & (v == 0))[s].all(), "a spike resets both traces"

    lam_s, lam_m, theta = 0.6, 0.8, 1.3
    x = rng.normal(0.3, 0.8, (n, steps))
    u, v, s = run_process(CubaLIF(shape=(n,), du=1 - lam_s, dv=1 - lam_m, vth=theta, spike="gt", **srm), x,
                          "floating_pt")
    s = s != 0
    fi, fv = np.zeros(n), np.zeros(n)
    for t in range(steps):
        fi = lam_s * fi + x[:, t]
        fv = lam_m * fv + fi
        fs = fv > theta
        fi, fv = np.where(fs, 0, fi), np.where(fs, 0, fv)
        np.testing.assert_allclose(v[t], fv, atol=1e-12)
        np.testing.assert_allclose(u[t], fi, atol=1e-12)
        np.testing.assert_array_equal(s[t], fs)
    assert s.any()


def srm_mlp_graph(sizes, T, seed, lam_syn=0.6, lam=0.8, spike="ge", readout=True, gain=2.5):
    """``mlp_graph`` with its hidden (and, without readout, output) neurons replaced by snnchip srm CubaLIFs."""
    g = mlp_graph(sizes, T=T, seed=seed, gain=gain)
    nodes = dict(g.nodes)
    scale = 0.7
    names = [k for k, nd in nodes.items() if k.endswith("_neuron") and (not readout or not isinstance(nd, nir.I))]
    for name in names:
        n = nodes[name.removesuffix("_neuron")].weight.shape[0]
        ones = np.ones(n)
        meta = {"snnchip": {"version": 1, "layer": name.removesuffix("_neuron"), "kind": "srm", "lam": lam,
                            "lam_syn": lam_syn, "input_scale": scale, "theta": 1.0, "reset": "zero",
                            "reset_current": True, "spike": spike, "discretization": "exact", "dt": 1.0}}
        nodes[name] = nir.CubaLIF(tau_syn=ones * -1 / math.log(lam_syn), tau_mem=ones * -1 / math.log(lam),
                                  r=ones / (1 - lam), v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones,
                                  w_in=ones * scale / (1 - lam_syn), metadata=meta)
    return nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=g.metadata)


@pytest.mark.parametrize("readout,spike", [(True, "ge"), (False, "gt")])
def test_chip_simulator_equals_lava_fixed_pt_on_srm_mlp(readout, spike):
    g = srm_mlp_graph((6, 9, 5, 3), T=6, seed=11, spike=spike, readout=readout)
    stages = lower(g).stages
    assert [s.kind for s in stages] == ["srm", "srm", "readout" if readout else "srm"]
    assert stages[0].lam_syn == pytest.approx(0.6) and stages[0].reset == "zero"
    dep = deployment_from_graph(g)
    assert dep.manifest["stages"][0]["process"] == "snnchip.CubaLIF"
    assert dep.qnet.stages[0].du == round(4096 * 0.4) - 1 and dep.qnet.stages[0].dv == round(4096 * 0.2)
    x = np.random.default_rng(12).uniform(0, 1, (dep.T, 2, 6))
    sim = ChipSimulator(dep).run(x, timing="lava")
    assert_same_run(sim, build(dep).run(x, timing="lava"))
    assert sim.spikes["fc1"].any() and sim.spikes["fc2"].any()
    # the float reference (NIR executor) and the chip agree on most spikes of the first layer
    from snnchip.export.nir_exec import NIRExecutor

    ref = NIRExecutor(g).run(x.astype(np.float32))
    soft = ChipSimulator(dep).run(x)
    agree = (np.asarray(ref.spikes["fc1"]).astype(bool) == soft.spikes["fc1"]).mean()
    assert agree > 0.95, agree


def test_floating_pt_srm_network_equals_float_reference():
    from snnchip.export.nir_exec import NIRExecutor

    g = srm_mlp_graph((6, 8, 3), T=5, seed=13, readout=True)
    dep = deployment_from_graph(g)
    x = np.random.default_rng(14).uniform(0, 1, (5, 2, 6))
    res = build(dep).run(x, cfg="floating_pt")
    ref = NIRExecutor(g, dtype=torch.float64).run(x)
    np.testing.assert_array_equal(res.spikes["fc1"], ref.spikes["fc1"].numpy().astype(bool))
    assert res.spikes["fc1"].any()
    np.testing.assert_allclose(res.output, ref.output.numpy(), atol=1e-9)


def test_edbp_model_exports_to_loihi_and_chip_agrees_with_float(tmp_path, capsys):
    from snnchip.cli import export
    from snnchip.train import load_model, simulate
    from snnchip.train.data import load_dataset
    from snnchip.train.trainer import TrainConfig, fit

    fit(TrainConfig(out=str(tmp_path / "m"), dataset="digits", model="mlp", hidden="24", method="edbp", T=6,
                    epochs=2, optimizer="adamw", lr=5e-3, quiet=True))
    assert export([str(tmp_path / "m" / "model.pt"), "--target", "loihi", "-o", str(tmp_path / "dep")]) == 0
    assert "wrote" in capsys.readouterr().out
    model, _ = load_model(tmp_path / "m" / "model.pt")
    x = load_dataset("digits", None, flat=True, T=6).x_test[:20]
    ref = simulate(model, x)
    chip = ChipSimulator(tmp_path / "dep")
    assert [s["process"] for s in chip.dep.manifest["stages"]] == ["snnchip.CubaLIF"] * 2 + ["lava.LIF"]
    res = chip.run(x.unsqueeze(0).expand(6, *x.shape).numpy())
    float_dec = ref.output[-1].argmax(-1).numpy()  # the readout's count Σ_t s_out[t]
    chip_dec = res.output[-1].argmax(-1)
    agree = float((float_dec == chip_dec).mean())
    y = load_dataset("digits", None, flat=True, T=6).y_test[:20].numpy()
    print(f"edbp: chip/float decision agreement {agree:.2f} on 20 digits samples; accuracy float "
          f"{(float_dec == y).mean():.2f}, chip {(chip_dec == y).mean():.2f}; out spikes equal "
          f"{(res.spikes['out'] == ref.spikes['out'].numpy().astype(bool)).mean():.4f}")
    assert agree >= 0.8, agree


def test_netx_refuses_srm_by_layer_name():
    from snnchip.errors import UnsupportedNodeError
    from snnchip.export.netx import netx_deployment

    with pytest.raises(UnsupportedNodeError, match="'fc1'.*'srm'"):
        netx_deployment(srm_mlp_graph((4, 5, 3), T=4, seed=1, spike="gt"))


def test_saturating_srm_network_is_bit_exact():
    import dataclasses

    dep = deployment_from_graph(srm_mlp_graph((5, 6, 3), T=6, seed=15, lam_syn=0.95, lam=0.95))
    rng = np.random.default_rng(16)
    big = [dataclasses.replace(q, vth=2**17 - 1, inputs=tuple(dataclasses.replace(
        p, weight=(2 * rng.integers(-127, 128, p.weight.shape)).astype(np.int32), weight_exp=p.weight_exp + 9)
        for p in q.inputs)) for q in dep.qnet.stages]
    big[-1] = dataclasses.replace(big[-1], vth=2**17)
    dep = dataclasses.replace(dep, qnet=dataclasses.replace(dep.qnet, stages=tuple(big)))
    x = rng.uniform(0, 1, (6, 2, 5))
    sim = ChipSimulator(dep).run(x, timing="lava")
    assert_same_run(sim, build(dep).run(x, timing="lava"))
    assert any((np.abs(s["v"]) == V_LIM).any() for s in sim.states.values()), "the test must saturate"
