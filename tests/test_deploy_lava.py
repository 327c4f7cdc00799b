"""Lava: our process models vs the equations, and the bit-exact simulator vs Lava fixed_pt, step by step."""

from __future__ import annotations

import dataclasses
import glob
import multiprocessing

import nir
import numpy as np
import pytest
from lava_harness import assert_same_run, run_process
from nir_nets import conv_graph, mlp_graph

from snnchip import lava_compat
from snnchip.deploy import build
from snnchip.errors import DeployError
from snnchip.export.loihi import deployment_from_graph
from snnchip.hw_sim.chip import ChipSimulator

pytestmark = pytest.mark.lava
V_LIM = 2**23 - 1


def _hand_fixed(u, v, a, du, dv, vth, reset, spike, reset_current=False, vsub=None, s_prev=None):
    """Lava's fixed-point LIF (current factor 4096 − (du + 1), no bias) with our resets, written here from Lava's
    PyLifModelBitAcc: shifts by 12 toward zero, the 24-bit wrap of u and clip of v."""
    def decay(x, f):
        p = x * f
        return np.sign(p) * (np.abs(p) // 4096)

    u = decay(u, 4096 - du - 1) + a.astype(np.int64) * 64
    u = np.where(u > 2**23, u - 2**24, u)
    u = np.where(u <= -(2**23), u + 2**24, u)
    v = np.clip(decay(v, 4096 - dv) + u, -V_LIM, V_LIM)
    if reset == "zero_next" and s_prev is not None:
        v = np.where(s_prev, 0, v)
    th = vth * 64
    s = (v >= th) if spike == "ge" else (v > th)
    if reset == "subtract":
        v = v - (vth if vsub is None else vsub) * 64 * s
    elif reset == "zero":
        v = v * (1 - s)
    return (u * (1 - s) if reset_current else u), v, s


def _hand_float(v, a, lam, theta, reset, spike):
    u = a
    v = lam * v + u
    s = (v >= theta) if spike == "ge" else (v > theta)
    v = v - theta * s if reset == "subtract" else v * (1 - s)
    return u, v, s


CASES = {  # (du, reset, spike, reset_current, vsub)
    "lif-subtract-ge": (4095, "subtract", "ge", False, None),
    "lif-subtract-gt-by-amount": (4095, "subtract", "gt", False, 6200),
    "lif-zero-ge": (4095, "zero", "ge", False, None),
    "cuba-zero-next": (700, "zero_next", "gt", False, None),
    "srm-current-reset": (900, "zero", "ge", True, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cubalif_fixed_pt_equals_equations_including_saturation(case):
    from snnchip.deploy.procs.cubalif.process import CubaLIF

    du, reset, spike, reset_current, vsub = CASES[case]
    rng = np.random.default_rng(1)
    n, steps, dv, vth = 12, 24, 300, 5000
    data = rng.integers(-3000, 9000, (n, steps))
    data[:3] = rng.integers(2**15, 2**16, (3, steps))  # drives v into the +2^23 clip
    data[3:5] = -rng.integers(2**15, 2**16, (2, steps))  # and into the −2^23 clip
    proc = CubaLIF(shape=(n,), du=du, dv=dv, vth=vth, vsub=vsub, reset=reset, spike=spike,
                   reset_current=reset_current)
    u, v, s = run_process(proc, data, "fixed_pt")
    s = s != 0
    hu, hv, hs = np.zeros(n, np.int64), np.zeros(n, np.int64), None
    for t in range(steps):
        hu, hv, hs = _hand_fixed(hu, hv, data[:, t], du, dv, vth, reset, spike, reset_current, vsub, hs)
        np.testing.assert_array_equal(u[t], hu, err_msg=f"u at step {t}")
        np.testing.assert_array_equal(v[t], hv, err_msg=f"v at step {t}")
        np.testing.assert_array_equal(s[t], hs, err_msg=f"s at step {t}")
    assert s.any() and (v == -V_LIM).any(), "the test must spike and saturate"


def test_cubalif_floating_pt_equals_equations():
    from snnchip.deploy.procs.cubalif.process import CubaLIF

    rng = np.random.default_rng(2)
    n, steps, lam, theta = 10, 16, 0.8, 1.3
    data = rng.normal(0.3, 1.0, (n, steps))
    u, v, s = run_process(CubaLIF(shape=(n,), du=1.0, dv=1 - lam, vth=theta, reset="subtract", spike="ge"), data,
                          "floating_pt")
    s = s != 0
    hv = np.zeros(n)
    for t in range(steps):
        hu, hv, hs = _hand_float(hv, data[:, t], lam, theta, "subtract", "ge")
        np.testing.assert_allclose(v[t], hv, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(s[t], hs)
    assert s.any()


@pytest.mark.parametrize("cfg", ["fixed_pt", "floating_pt"])
def test_readout_is_lavas_lif_that_never_fires(cfg):
    """The readout runs on Lava's own LIF: dv = 0, no current memory, vth = 2^17 (vth << 6 = 2^23 > any state)."""
    from snnchip.export.loihi2 import NEVER_FIRES

    LIF = lava_compat.lava_module("proc.lif.process").LIF
    rng = np.random.default_rng(3)
    n, steps = 6, 12
    fixed = cfg == "fixed_pt"
    data = rng.integers(-2**16, 2**16, (n, steps)) if fixed else rng.normal(size=(n, steps))
    if fixed:
        data[0] = 2**16 - 1
    proc = LIF(shape=(n,), du=4095 if fixed else 1.0, dv=0 if fixed else 0.0, vth=NEVER_FIRES if fixed else np.inf,
               bias_mant=0 if fixed else 0.0, bias_exp=0)
    u, v, s = run_process(proc, data, cfg)
    assert not np.any(s)
    if fixed:
        hv = np.zeros(n, np.int64)
        for t in range(steps):
            hv = np.clip(hv + data[:, t] * 64, -V_LIM, V_LIM)
            np.testing.assert_array_equal(v[t], hv)
        np.testing.assert_array_equal(u, (data * 64).T)
        assert (np.abs(v) == V_LIM).any(), "the test must saturate"
    else:
        np.testing.assert_allclose(v, np.cumsum(data, axis=1).T, atol=1e-12)


def _assert_same(a, b):
    np.testing.assert_array_equal(a.output_raw, b.output_raw)
    assert_same_run(a, b)


NETS = {
    "mlp-subtract-ge": lambda: mlp_graph((6, 8, 5, 3), T=6, seed=1, gain=2.5),
    "mlp-zero-gt-lava-lif": lambda: mlp_graph((6, 8, 3), T=6, seed=2, reset="zero", spike="gt", gain=2.5),
    "mlp-zero-ge-if": lambda: mlp_graph((6, 8, 3), T=6, seed=3, reset="zero", lam=1.0, gain=2.5),
    "conv-pool-flatten": lambda: conv_graph(in_shape=(1, 6, 6), channels=2, classes=3, T=4, seed=4),
    # conv1 and pool1+conv2 are kernel stages (Conv), pool2+flatten+fc3 a dense one
    "conv-pool-conv-pool-flatten": lambda: conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=4, seed=4),
    # a padded 3x3 pool before conv2 composes into no kernel: pool1+conv2 is a CSR stage (Lava Sparse)
    "conv-padded-pool-conv": lambda: conv_graph(in_shape=(1, 24, 24), channels=(2, 3), classes=3, T=4, seed=4,
                                                pool_padding=1),
}
KERNEL_NET, SPARSE_NET = "conv-pool-conv-pool-flatten", "conv-padded-pool-conv"


@pytest.mark.parametrize("name", list(NETS))
def test_chip_simulator_equals_lava_fixed_pt_every_step(name):
    dep = deployment_from_graph(NETS[name]())
    x = np.random.default_rng(5).uniform(0, 1, (dep.T, 2, *dep.qnet.input_shape))
    for timing in ("lava", "software"):
        sim = ChipSimulator(dep).run(x, timing=timing)
        _assert_same(sim, build(dep).run(x, timing=timing))
    assert sum(int(s.sum()) for s in sim.spikes.values()) > 0
    if name == "mlp-zero-gt-lava-lif":
        assert [s["process"] for s in dep.manifest["stages"]] == ["lava.LIF", "lava.LIF"]
    if name == KERNEL_NET:
        assert [q.inputs[0].synapse for q in dep.qnet.stages] == ["conv", "conv", "dense"]
    if name == SPARSE_NET:
        assert [q.inputs[0].synapse for q in dep.qnet.stages] == ["conv", "sparse", "dense"]


@pytest.mark.parametrize("fixed", [True, False])
def test_sparse_stages_build_lava_sparse_processes(fixed):
    """The graph deploy builds has a Lava Sparse per CSR stage (weights an spmatrix: Lava clips and truncates those)."""
    from scipy.sparse import spmatrix

    from snnchip.deploy.network import _Graph

    dep = deployment_from_graph(NETS[SPARSE_NET]())
    graph = _Graph(dep, fixed, np.zeros((576, dep.T + dep.depth)))
    assert [type(p).__name__ for p in graph.synapses] == ["Conv", "Sparse", "Dense"]
    for proc, q, st in zip(graph.synapses[1:2], dep.qnet.stages[1:2], dep.net.stages[1:2], strict=True):
        w, ref = proc.weights.init, (q.inputs[0].weight if fixed else st.inputs[0].weight)
        assert isinstance(w, spmatrix) and w.shape == ref.shape and (w != ref).nnz == 0
        assert proc.proc_params.get("weight_exp", 0) == (q.inputs[0].weight_exp if fixed else 0)


def test_saturating_network_is_bit_exact():
    dep = deployment_from_graph(mlp_graph((5, 6, 3), T=6, seed=6, lam=1.0))
    rng = np.random.default_rng(7)
    big = [dataclasses.replace(q, vth=2**17 - 1, inputs=tuple(dataclasses.replace(
        p, weight=(2 * rng.integers(-127, 128, p.weight.shape)).astype(np.int32), weight_exp=p.weight_exp + 9)
        for p in q.inputs)) for q in dep.qnet.stages]
    big[-1] = dataclasses.replace(big[-1], vth=2**17)
    dep = dataclasses.replace(dep, qnet=dataclasses.replace(dep.qnet, stages=tuple(big)))
    x = rng.uniform(0, 1, (6, 2, 5))
    sim = ChipSimulator(dep).run(x, timing="lava")
    _assert_same(sim, build(dep).run(x, timing="lava"))
    assert any((np.abs(s["v"]) == V_LIM).any() for s in sim.states.values()), "the test must saturate"


FLOAT_NETS = {
    "mlp-subtract-ge": lambda: mlp_graph((6, 8, 3), T=5, seed=8, gain=2.5),
    "mlp-zero-gt": lambda: mlp_graph((6, 8, 3), T=5, seed=8, gain=2.5, reset="zero", spike="gt"),
    "conv-sparse": lambda: conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=5, seed=8),
}


@pytest.mark.parametrize("name", list(FLOAT_NETS))
def test_floating_pt_network_equals_float_equations_and_leaves_nothing_behind(name):
    dep = deployment_from_graph(FLOAT_NETS[name]())
    x = np.random.default_rng(9).uniform(0, 1, (5, 2, *dep.qnet.input_shape))
    shm_before = set(glob.glob("/dev/shm/psm_*"))
    res = build(dep).run(x, cfg="floating_pt")
    assert multiprocessing.active_children() == [] and set(glob.glob("/dev/shm/psm_*")) - shm_before == set()
    feed = x.reshape(5, 2, -1)
    for st in dep.net.stages:
        (p,) = st.inputs
        w = p.weight.toarray() if p.synapse != "dense" else p.weight
        v, outs = np.zeros((2, st.size)), []
        for t in range(5):
            a = feed[t] @ w.T + st.bias
            if st.spiking:
                _, v, s = _hand_float(v, a, st.lam, st.theta, st.reset, st.spike)
                outs.append(s.astype(float))
            else:
                v = v + a
                outs.append(v)
        feed = np.array(outs)
        if st.spiking:
            np.testing.assert_array_equal(res.spikes[st.name].reshape(feed.shape), feed.astype(bool))
    np.testing.assert_allclose(res.output, feed, atol=1e-9)
    assert all(s.any() for s in res.spikes.values())
    assert res.output_raw is None


def test_foreign_lif_graph_deploys_on_lavas_builtin_lif():
    rng = np.random.default_rng(10)
    nodes = {"in": nir.Input(input_type={"input": np.array([5])}),
             "fc1": nir.Affine(weight=rng.normal(0, 1.5, (7, 5)), bias=np.zeros(7)),
             "lif1": nir.LIF(tau=np.full(7, 2.0), r=np.full(7, 2.0), v_leak=np.zeros(7),
                             v_threshold=np.full(7, 0.8), v_reset=np.zeros(7)),
             "fc2": nir.Linear(weight=rng.normal(0, 1.5, (3, 7))),
             "lif2": nir.LIF(tau=np.full(3, 2.0), r=np.full(3, 2.0), v_leak=np.zeros(3),
                             v_threshold=np.full(3, 0.5), v_reset=np.zeros(3)),
             "out": nir.Output(output_type={"output": np.array([3])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
                                         ("lif2", "out")])
    dep = deployment_from_graph(g, T=6)
    assert [s["process"] for s in dep.manifest["stages"]] == ["lava.LIF", "lava.LIF"]
    x = rng.uniform(0, 1, (6, 2, 5))
    sim = ChipSimulator(dep).run(x)
    _assert_same(sim, build(dep).run(x))
    np.testing.assert_array_equal(sim.output, sim.spikes["lif2"])
    assert sim.spikes["lif1"].any()


def test_lava_refuses_non_finite_input_before_starting():
    dep = deployment_from_graph(mlp_graph((4, 5, 2), T=5))
    x = np.ones((5, 2, 4))
    x[2, 1, 3] = np.nan
    with pytest.raises(DeployError, match=r"1 NaN or infinite value\(s\), the first at index \(2, 1, 3\)"):
        build(dep).run(x)
    assert multiprocessing.active_children() == []


def test_runner_stops_lava_on_an_exception_mid_run(monkeypatch):
    from snnchip.deploy.procs.cubalif import models

    original = models.PyCubaLIFModelFixed.compute
    calls = {"n": 0}

    def failing(self, a_in):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("injected failure at the third step")
        return original(self, a_in)

    monkeypatch.setattr(models.PyCubaLIFModelFixed, "compute", failing)
    dep = deployment_from_graph(mlp_graph((4, 5, 2), T=5))
    shm_before = set(glob.glob("/dev/shm/psm_*"))
    with pytest.raises(DeployError, match="injected failure at the third step"):
        build(dep).run(np.ones((5, 2, 4)))
    assert multiprocessing.active_children() == []
    assert set(glob.glob("/dev/shm/psm_*")) - shm_before == set()


def _delayed_projection_run(kind: str, cfg: str, ours: bool, messages: int) -> np.ndarray:
    """What a DelayDense/DelaySparse sends per step (random mixed-sign weights, delays 0–3 per synapse, weight
    exponent −1, binary or 6-bit graded inputs), under Lava's own models or ours."""
    import scipy.sparse as sp

    from snnchip.deploy.procs.delay.models import exception_models

    rng = np.random.default_rng(7)
    n_in, n_out, steps = 9, 7, 12
    mask = rng.uniform(size=(n_out, n_in)) < 0.5
    w = np.where(mask, rng.integers(-256, 256, (n_out, n_in)), 0)
    d = np.where(mask, rng.integers(0, 4, (n_out, n_in)), 0)
    if cfg == "floating_pt":
        w = w / 100.0
    data = rng.integers(0, 2 if messages == 0 else 64, (n_in, steps)) * (rng.uniform(size=(n_in, steps)) < 0.6)
    Source = lava_compat.lava_module("proc.io.source").RingBuffer
    Sink = lava_compat.lava_module("proc.io.sink").RingBuffer
    RunSteps = lava_compat.lava_module("magma.core.run_conditions").RunSteps
    Loihi2SimCfg = lava_compat.lava_module("magma.core.run_configs").Loihi2SimCfg
    if kind == "sparse":
        w, d = sp.csr_matrix(w), sp.csr_matrix(d)
        conn = lava_compat.lava_module("proc.sparse.process").DelaySparse(
            weights=w, delays=d, num_message_bits=messages, **({"weight_exp": -1} if cfg == "fixed_pt" else {}))
    else:
        conn = lava_compat.lava_module("proc.dense.process").DelayDense(
            weights=w, delays=d, num_message_bits=messages, **({"weight_exp": -1} if cfg == "fixed_pt" else {}))
    src, sink = Source(data=data), Sink(shape=(n_out,), buffer=steps)
    src.s_out.connect(conn.s_in)
    conn.a_out.connect(sink.a_in)
    run_cfg = Loihi2SimCfg(select_tag=cfg, exception_proc_model_map=exception_models(cfg) if ours else {})
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=run_cfg)
        return sink.data.get().T
    finally:
        src.stop()


@pytest.mark.parametrize("messages", [0, 6])
@pytest.mark.parametrize("cfg", ["fixed_pt", "floating_pt"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_our_delay_models_send_what_lavas_own_send(kind, cfg, messages):
    """Our DelayDense/DelaySparse models (the per-delay stack built once) against Lava's own on the same process:
    every message of every step equal, and something arrives at each delay."""
    lava = _delayed_projection_run(kind, cfg, ours=False, messages=messages)
    ours = _delayed_projection_run(kind, cfg, ours=True, messages=messages)
    assert np.count_nonzero(lava) > lava.size // 2
    np.testing.assert_array_equal(ours, lava)


def test_lavas_progress_bar_counts_lava_steps(capfd):
    """One sample of a CIFAR ResNet is 22 Lava steps and minutes: the bar counts steps (B·(T + depth)), not samples."""
    dep = deployment_from_graph(mlp_graph((4, 6, 3), T=4))
    build(dep).run(np.random.default_rng(0).uniform(0, 1, (4, 2, 4)), states=False, progress=True)
    err = capfd.readouterr().err
    steps = 2 * (4 + dep.depth)
    assert f"0/{steps} " in err and "step/s" in err and "sample" not in err, err
