"""Graphs that are not chains: recurrence, fan-out, residual merges across different depths, Delay nodes, every NIR
form of conv parameters; and the named errors for graphs that cannot run. References: the equations written here,
torch's convolutions, and Lava itself."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch
from nir_nets import neuron_node, readout_node

from snnchip.errors import NIRFormatError, UnsupportedNodeError
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.lowering import INPUT, lower
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_graph import check_graph
from snnchip.export.qnet import SaturationWarning
from snnchip.export.schedule import schedule
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.spec import Interpretation

T = 6


def _graph(nodes: dict, edges: list[tuple[str, str]]) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"snnchip": {"version": 1, "T": T, "encoding": "direct"}},
                        type_check=False)


def _affine(rng, n_out, n_in, gain=1.5, bias=True):
    w = rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))
    return nir.Affine(weight=w, bias=rng.normal(0, 0.2, n_out)) if bias else nir.Linear(weight=w)


def recurrent_graph(seed=0):
    """input → fc1 → lif1 ⟲ (rec: Affine with a bias) → fc2 → readout."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array([5])}), "fc1": _affine(rng, 7, 5, 2.0),
             "lif1": neuron_node("lif1", (7,)), "rec": _affine(rng, 7, 7, 1.0), "fc2": _affine(rng, 3, 7),
             "out": readout_node("out", 3), "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec"), ("rec", "lif1"), ("lif1", "fc2"), ("fc2", "out"),
             ("out", "output")]
    return _graph(nodes, edges)


def residual_graph(seed=1):
    """input → fc1 → a → fc2 → b → fc3 → c, plus a skip a → skip → c and a fan-out a → fc4 → readout ← c."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array([6])}), "fc1": _affine(rng, 8, 6, 2.5),
             "a": neuron_node("a", (8,)), "fc2": _affine(rng, 8, 8, 2.0), "b": neuron_node("b", (8,)),
             "fc3": _affine(rng, 8, 8, 2.0), "skip": _affine(rng, 8, 8, 1.5, bias=False),
             "c": neuron_node("c", (8,), reset="zero", spike="gt"), "fc4": _affine(rng, 3, 8),
             "fc5": _affine(rng, 3, 8, bias=False), "out": readout_node("out", 3),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "fc1"), ("fc1", "a"), ("a", "fc2"), ("fc2", "b"), ("b", "fc3"), ("fc3", "c"), ("a", "skip"),
             ("skip", "c"), ("a", "fc4"), ("fc4", "out"), ("c", "fc5"), ("fc5", "out"), ("out", "output")]
    return _graph(nodes, edges)


def test_recurrent_affine_adds_its_bias_from_the_first_step():
    """The executor against the equations: u1[t] = 0.5·v1[t−1] + W1 x[t] + b1 + W_r s1[t−1] + b_r, with s1[0] = 0
    (so b_r enters at t = 1, as NIR's dataflow has it: the recurrent Affine outputs W·0 + b)."""
    g = recurrent_graph()
    x = np.random.default_rng(2).uniform(0, 1, (T, 4, 5))
    res = NIRExecutor(g, dtype=torch.float64).run(x)
    n = g.nodes
    v, s, acc = np.zeros((4, 7)), np.zeros((4, 7)), np.zeros((4, 3))
    for t in range(T):
        u = 0.5 * v + x[t] @ n["fc1"].weight.T + n["fc1"].bias + s @ n["rec"].weight.T + n["rec"].bias
        s = (u >= 1.0).astype(float)
        v = u - s
        acc += s @ n["fc2"].weight.T + n["fc2"].bias
        np.testing.assert_array_equal(res.spikes["lif1"][t].numpy(), s)
        np.testing.assert_allclose(res.output[t].numpy(), acc, atol=1e-12)
    assert 0 < res.spikes["lif1"].mean() < 1


def test_lowering_gives_each_stage_its_projections_and_delays():
    rec = lower(recurrent_graph())
    assert [(p.source, p.delay) for p in rec.stage("lif1").inputs] == [(INPUT, 0), ("lif1", 1)]
    plan = schedule(rec)
    assert plan.latency == {"lif1": 1, "out": 2} and plan.extra["lif1"] == (0, 0)  # one Lava hop = one step
    res = lower(residual_graph())
    assert sorted((p.source, p.delay) for p in res.stage("c").inputs) == [("a", 0), ("b", 0)]
    assert sorted(p.source for p in res.stage("out").inputs) == ["a", "c"]
    plan = schedule(res)
    assert plan.latency == {"a": 1, "b": 2, "c": 3, "out": 4}
    # the skip a → c and the fan-out a → out arrive one and two steps early on Lava: delayed to stay aligned
    extra = {st.name: dict(zip((p.source for p in st.inputs), plan.extra[st.name], strict=True)) for st in res.stages}
    assert extra["c"] == {"b": 0, "a": 1} and extra["out"] == {"c": 0, "a": 2}


@pytest.mark.parametrize("wide, gate", [(False, 0.96), (True, 0.999)])
@pytest.mark.parametrize("make", [recurrent_graph, residual_graph])
def test_chip_follows_the_float_graph(make, wide, gate):
    """8-bit weights (T-step headroom): 96.7-100 % of spikes agree (one 8-bit rounding of the residual graph's a
    flips spikes that its b and c inherit); wide weights: 100 % measured."""
    g = make()
    x = np.random.default_rng(3).uniform(0, 1, (T, 32, *check_graph(g).shapes["input"]))
    ref = NIRExecutor(g, dtype=torch.float64).run(x)
    chip = ChipSimulator(deployment_from_graph(g, wide_weights=wide, headroom="T")).run(x)
    for k, s in chip.spikes.items():
        agree = float(np.mean(ref.spikes[k].numpy().astype(bool) == s))
        assert agree >= gate and s.any(), (k, agree)
    assert np.mean(chip.output[-1].argmax(-1) == ref.output[-1].numpy().argmax(-1)) >= 0.9


@pytest.mark.lava
@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("make", [recurrent_graph, residual_graph])
def test_lava_equals_the_chip_on_recurrent_and_residual_graphs(make, wide):
    """Wide weights: two Dense/DelayDense per projection side by side into one neuron, bit-exact as well."""
    from lava_harness import assert_same_run

    from snnchip.deploy import build

    dep = deployment_from_graph(make(), wide_weights=wide)
    assert all((p.low is not None) == wide for q in dep.qnet.stages for p in q.inputs)
    x = np.random.default_rng(4).uniform(0, 1, (T, 2, *dep.qnet.input_shape))
    if make is residual_graph:
        processes = {s["name"]: {p["source"]: p["process"] for p in s["inputs"]} for s in dep.manifest["stages"]}
        assert processes["out"] == {"c": "lava.Dense", "a": "lava.DelayDense"}
    for timing in ("lava", "software"):
        assert_same_run(ChipSimulator(dep).run(x, timing=timing), build(dep).run(x, timing=timing))


def test_delay_nodes_become_delayed_projections():
    """input → fc → Delay (2 steps on half the units, 1 on the rest) → lif: a projection per delay value."""
    rng = np.random.default_rng(5)
    delay = np.array([2.0, 2.0, 1.0, 1.0, 2.0, 1.0])
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}), "fc": _affine(rng, 6, 4, 3.0),
             "d": nir.Delay(delay=delay), "lif": neuron_node("lif", (6,)),
             "output": nir.Output(output_type={"output": np.array([6])})}
    g = _graph(nodes, [("input", "fc"), ("fc", "d"), ("d", "lif"), ("lif", "output")])
    with pytest.raises(UnsupportedNodeError, match="'d'.*delays a constant"):
        lower(g)  # fc's bias would be delayed: 0 for the first steps, then b — not a bias
    nodes["fc"] = _affine(rng, 6, 4, 3.0, bias=False)
    g = _graph(nodes, [("input", "fc"), ("fc", "d"), ("d", "lif"), ("lif", "output")])
    net = lower(g)
    assert sorted(p.delay for p in net.stage("lif").inputs) == [1, 2]
    x = rng.uniform(0, 1, (T, 8, 4))
    ref = NIRExecutor(g, dtype=torch.float64).run(x)
    w = nodes["fc"].weight
    v, want = np.zeros((8, 6)), []
    for t in range(T):  # the equations: unit j sees W x[t − d_j]
        drive = np.stack([x[t - int(d)] @ w[j] if t >= d else np.zeros(8) for j, d in enumerate(delay)], axis=1)
        u = 0.5 * v + drive
        s = (u >= 1.0).astype(float)
        v = u - s
        want.append(s)
    np.testing.assert_array_equal(ref.spikes["lif"].numpy(), np.array(want))
    chip = ChipSimulator(deployment_from_graph(g)).run(x)
    assert np.mean(chip.spikes["lif"] == ref.spikes["lif"].numpy().astype(bool)) >= 0.98


def test_graphs_that_cannot_run_get_named_errors():
    rng = np.random.default_rng(6)
    base = {"input": nir.Input(input_type={"input": np.array([4])}), "fc1": _affine(rng, 5, 4),
            "a": neuron_node("a", (5,)), "fc2": _affine(rng, 5, 5), "b": neuron_node("b", (5,)),
            "output": nir.Output(output_type={"output": np.array([5])})}
    chain = [("input", "fc1"), ("fc1", "a"), ("a", "fc2"), ("fc2", "b"), ("b", "output")]
    # a feedback loop over two layers: one step of delay for two Lava hops
    fb = _graph({**base, "fb": _affine(rng, 5, 5)}, [*chain, ("b", "fb"), ("fb", "a")])
    with pytest.raises(UnsupportedNodeError, match="stage 'a'.*from 'b'.*feedback loop over k layers"):
        deployment_from_graph(fb)
    NIRExecutor(fb)  # the float graph itself runs
    # a cycle of linear nodes only: no value at any step
    loop = _graph({k: base[k] for k in ("input", "fc1", "a", "output")} | {"l1": _affine(rng, 5, 5),
                                                                          "l2": _affine(rng, 5, 5)},
                  [("input", "fc1"), ("fc1", "l1"), ("l1", "l2"), ("l2", "l1"), ("l1", "a"), ("a", "output")])
    with pytest.raises(NIRFormatError, match="cycle (l1 -> l2 -> l1|l2 -> l1 -> l2) passes no neuron"):
        check_graph(loop)
    # shapes that disagree at a merge
    bad = _graph({**base, "fc3": _affine(rng, 3, 4)}, [*chain, ("input", "fc3"), ("fc3", "b")])
    with pytest.raises(NIRFormatError, match="'b' receives inputs of different shapes"):
        check_graph(bad)
    # a non-spiking neuron in the middle sends its membrane, which the chip cannot carry
    mid = _graph({**base, "a": nir.LI(tau=np.full(5, 2.0), r=np.ones(5), v_leak=np.zeros(5))}, chain)
    with pytest.raises(UnsupportedNodeError, match="'a'.*only be the readout"):
        lower(mid, Interpretation())


@pytest.mark.parametrize("node,in_shape", [
    (nir.Conv2d(input_shape=(9, 8), weight=np.ones((4, 2, 2, 3)), stride=np.array([1, 1]), padding="same",
                dilation=np.array([2, 1]), groups=2, bias=np.arange(4.0)), (4, 9, 8)),
    (nir.Conv2d(input_shape=(9, 8), weight=np.ones((3, 2, 3, 3)), stride=(2, 1), padding=np.array([1, 0]),
                dilation=1, groups=1, bias=np.zeros(3)), (2, 9, 8)),
    (nir.Conv1d(input_shape=11, weight=np.ones((3, 2, 4)), stride=2, padding=np.array([2]), dilation=np.array([1]),
                groups=1, bias=np.ones(3)), (2, 11)),
    (nir.SumPool2d(kernel_size=np.array([2, 3]), stride=np.array([2, 2]), padding=np.array([1, 1])), (2, 7, 8)),
    (nir.AvgPool2d(kernel_size=3, stride=(1, 2), padding=(1, 0)), (2, 7, 8)),
])
def test_every_nir_form_of_window_parameters_lowers_like_torch(node, in_shape):
    """Array/tuple/int stride, padding and dilation, 'same' with an even kernel, groups, Conv1d and padded pooling:
    the lowered operator, the executor and ONNX all read them through one reader and equal torch."""
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    if hasattr(node, "weight"):
        node.weight = rng.normal(size=node.weight.shape)
    x = torch.from_numpy(rng.uniform(-1, 1, (3, *in_shape)))
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        conv = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
        kw = {"stride": tuple(np.broadcast_to(node.stride, (len(in_shape) - 1,))),
              "dilation": tuple(np.broadcast_to(node.dilation, (len(in_shape) - 1,))), "groups": node.groups}
        padding = node.padding if isinstance(node.padding, str) else tuple(
            np.broadcast_to(node.padding, (len(in_shape) - 1,)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: 'same' with an even kernel pads unevenly
            ref = conv(x, torch.from_numpy(node.weight), torch.from_numpy(np.asarray(node.bias, float)),
                       padding=padding, **kw)
    else:
        k, st, p = (tuple(np.broadcast_to(v, (2,))) for v in (node.kernel_size, node.stride, node.padding))
        ref = F.avg_pool2d(x, k, st, p, count_include_pad=True) * (np.prod(k) if isinstance(node, nir.SumPool2d)
                                                                    else 1)
    out_shape, n = tuple(ref.shape[1:]), int(np.prod(ref.shape[1:]))
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}), "op": node,
             "flat": nir.Flatten(input_type={"input": np.array(out_shape)}, start_dim=0, end_dim=-1),
             "lif": neuron_node("lif", (n,), lam=1.0), "output": nir.Output(output_type={"output": np.array([n])})}
    g = _graph(nodes, [("input", "op"), ("op", "flat"), ("flat", "lif"), ("lif", "output")])
    assert check_graph(g).shapes["op"] == out_shape
    (proj,) = lower(g).stages[0].inputs
    a = proj.weight.toarray() if proj.synapse != "dense" else proj.weight
    bias = lower(g).stages[0].bias
    np.testing.assert_allclose(x.numpy().reshape(3, -1) @ a.T + bias, ref.numpy().reshape(3, -1), atol=1e-12)
    op = NIRExecutor(g, dtype=torch.float64).ops["op"].fn
    np.testing.assert_allclose(op(x).numpy(), ref.numpy(), atol=1e-12)


def test_foreign_cubalif_runs_on_lavas_lif_with_its_current():
    """A CubaLIF that keeps its current through a spike, reset to zero, v > θ: Lava's own LIF (du from λ_syn)."""
    rng = np.random.default_rng(8)
    ones = np.ones(6)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}), "fc": _affine(rng, 6, 4, 3.0),
             "cuba": nir.CubaLIF(tau_syn=2 * ones, tau_mem=4 * ones, r=2 * ones, v_leak=0 * ones,
                                 v_threshold=0.5 * ones, v_reset=0 * ones, w_in=ones),
             "output": nir.Output(output_type={"output": np.array([6])})}
    g = _graph(nodes, [("input", "fc"), ("fc", "cuba"), ("cuba", "output")])
    interp = Interpretation(dt=1.0, discretization="euler", reset="zero", compare="gt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        dep = deployment_from_graph(g, interp, T=T)
    (q,) = dep.qnet.stages
    assert dep.manifest["stages"][0]["process"] == "lava.LIF" and q.kind == "cubalif"
    assert q.du == round(4096 * 0.5) - 1 and q.dv == round(4096 * 0.25)  # λ_syn = 1 − 1/2, λ = 1 − 1/4
    x = rng.uniform(0, 1, (T, 16, 4))
    ref = NIRExecutor(g, interp, dtype=torch.float64).run(x)
    chip = ChipSimulator(dep).run(x)
    assert np.mean(chip.spikes["cuba"] == ref.spikes["cuba"].numpy().astype(bool)) >= 0.98


def test_per_channel_neuron_fields_broadcast_over_the_layer():
    """Foreign LIF fields of shape (C, 1, 1) on a (C, H, W) layer (r and v_leak differ per channel): the gain and
    the offset of channel c reach every neuron of that channel, as in the executor."""
    rng = np.random.default_rng(9)
    C, H, W = 3, 6, 6
    per_channel = np.array([0.5, 1.0, 2.0]).reshape(C, 1, 1)
    ones = np.ones((C, 1, 1))
    nodes = {"input": nir.Input(input_type={"input": np.array([2, H, W])}),
             "conv": nir.Conv2d(input_shape=(H, W), weight=rng.normal(0, 0.8, (C, 2, 3, 3)), stride=1, padding=1,
                                dilation=1, groups=1, bias=np.zeros(C)),
             "lif": nir.LIF(tau=2.0 * ones, r=per_channel, v_leak=0.1 * per_channel, v_threshold=ones),
             "flat": nir.Flatten(input_type={"input": np.array([C, H, W])}, start_dim=0, end_dim=-1),
             "fc": _affine(rng, 4, C * H * W), "out": readout_node("out", 4),
             "output": nir.Output(output_type={"output": np.array([4])})}
    g = _graph(nodes, [("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "out"),
                       ("out", "output")])
    interp = Interpretation(dt=1.0, discretization="euler", reset="zero", compare="gt")
    st = lower(g, interp).stages[0]
    x = rng.uniform(0, 1, (5, 2, H, W))
    (p,) = st.inputs
    a = p.weight.toarray() if p.synapse != "dense" else p.weight
    conv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(nodes["conv"].weight), padding=1).numpy()
    gain = per_channel / 2.0  # r·dt/τ
    np.testing.assert_allclose(x.reshape(5, -1) @ a.T + st.bias,
                               (conv * gain + 0.1 * per_channel / 2.0).reshape(5, -1), atol=1e-12)
    xs = rng.uniform(0, 1, (T, 16, 2, H, W))
    ref = NIRExecutor(g, interp, dtype=torch.float64).run(xs)
    chip = ChipSimulator(deployment_from_graph(g, interp)).run(xs)
    assert chip.spikes["lif"].any() and np.mean(chip.spikes["lif"] == ref.spikes["lif"].numpy().astype(bool)) >= 0.97


@pytest.mark.lava
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_membrane_saturating_under_the_one_step_headroom_saturates_alike_on_lava(reset):
    """IF neurons driven by 3θ (one up, one down) every step for 40 steps under the one-step headroom: the membrane
    reaches ±(2^23 − 1) and stays clipped there, spike for spike and state for state the same in Lava."""
    from lava_harness import assert_same_run

    from snnchip.deploy import build
    from snnchip.export.loihi2 import V_MAX

    nodes = {"input": nir.Input(input_type={"input": np.array([3])}),
             "fc": nir.Affine(weight=np.array([[3.0, 2.5, 1.0], [-3.0, -2.0, -1.5]]), bias=np.array([0.5, -0.5])),
             "lif": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
             "fc2": nir.Affine(weight=np.array([[1.0, -1.0]]), bias=np.zeros(1)),
             "out": nir.LI(tau=np.full(1, 2.0), r=np.ones(1), v_leak=np.zeros(1)),
             "output": nir.Output(output_type={"output": np.array([1])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "fc2"), ("fc2", "out"),
                                         ("out", "output")], type_check=False)
    dep = deployment_from_graph(g, Interpretation(dt=1.0, reset=reset), T=40, headroom="step")
    assert [r["headroom"] for r in dep.qnet.report] == ["step", "T"] and dep.qnet.report[0]["may_saturate"]
    x = np.ones((40, 2, 3))
    chip = ChipSimulator(dep).run(x, timing="lava")
    assert np.abs(chip.states["lif"]["v"]).max() == V_MAX
    assert_same_run(chip, build(dep).run(x, timing="lava"))
