"""Weight-shared convolution on the chip path: every form of a conv (stride, asymmetric padding, dilation, groups,
depthwise, pooling composed before or after it or kept apart, a delayed kernel beside a shortcut) deploys as a
kernel whose integers are those of its expanded matrix, and Lava (its own ``Conv`` where exact, ours otherwise)
equals the bit-exact simulator on every spike and every u, v."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from lava_harness import assert_same_run
from nir_nets import conv_graph, neuron_node, readout_node

from snnchip.deploy.network import build
from snnchip.export.kernel import Kernel, conv_numpy
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.loihi2 import synapse_process
from snnchip.export.lowering import lower
from snnchip.export.quantize import quantize
from snnchip.hw_sim.chip import ChipSimulator

META = {"snnchip": {"version": 1, "T": 3, "encoding": "direct", "method": "bptt", "model": "custom"}}


def _conv(rng, c_in, c_out, hw, k, **kw):
    groups = kw.pop("groups", 1)
    return nir.Conv2d(input_shape=hw, weight=rng.normal(0, 0.7, (c_out, c_in // groups, *k)), groups=groups,
                      bias=rng.normal(0, 0.1, c_out), **{"stride": 1, "padding": 0, "dilation": 1, **kw})


def _chain(layers, in_shape, seed=0):
    """input -> (ops -> LIF) per entry of ``layers`` (a function of (rng, input shape) giving NIR nodes) -> flatten
    -> fc -> readout."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    order = ["input"]
    for i, make in enumerate(layers):
        for j, op in enumerate(make(rng, _shape_of(nodes, order))):
            nodes[f"op{i}_{j}"] = op
            order.append(f"op{i}_{j}")
        nodes[f"n{i}"] = neuron_node(f"n{i}", _shape_of(nodes, order), lam=0.75, theta=1.0)
        order.append(f"n{i}")
    shape = _shape_of(nodes, order)
    n = int(np.prod(shape))
    nodes.update(flat=nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1),
                 fc=nir.Affine(weight=rng.normal(0, 1 / np.sqrt(n), (3, n)), bias=np.zeros(3)),
                 fc_n=readout_node("fc", 3), output=nir.Output(output_type={"output": np.array([3])}))
    order += ["flat", "fc", "fc_n", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:], strict=False)), metadata=META,
                        type_check=False)  # nir's Conv2d types ignore groups


def _shape_of(nodes, order):
    """The per-sample shape after the chain ``order`` (NIR's own shape rules, ``nir_graph``)."""
    from snnchip.export.nir_graph import _out_shape

    shape = tuple(int(d) for d in nodes["input"].input_type["input"])
    for name in order[1:]:
        shape = tuple(int(d) for d in _out_shape(name, nodes[name], shape))
    return shape


def _sum_pool(k, s, p=0):
    return nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([s, s]), padding=np.array([p, p]))


FORMS = {
    "stride-2": lambda r, s: [_conv(r, s[0], 3, s[1:], (3, 3), stride=2, padding=1)],
    "asymmetric-padding": lambda r, s: [_conv(r, s[0], 3, s[1:], (2, 3), padding="same")],  # even kernel
    "dilation": lambda r, s: [_conv(r, s[0], 3, s[1:], (3, 3), dilation=2, padding=2)],
    "groups": lambda r, s: [_conv(r, s[0], 4, s[1:], (3, 3), padding=1, groups=2)],
    "depthwise": lambda r, s: [_conv(r, s[0], s[0], s[1:], (3, 3), padding=1, groups=s[0])],
    "pool-then-conv": lambda r, s: [_sum_pool(2, 2), _conv(r, s[0], 3, (s[1] // 2, s[2] // 2), (3, 3), padding=1)],
    "conv-then-pool": lambda r, s: [_conv(r, s[0], 3, s[1:], (3, 3), padding=1), _sum_pool(2, 2)],
    "padded-pool-then-conv": lambda r, s: [_sum_pool(3, 2, 1),
                                           _conv(r, s[0], 3, (s[1] // 2, s[2] // 2), (3, 3), padding=1)],
}


def _net(form):
    """A first conv from the (graded) input, then the form under test between two spiking layers."""
    first = lambda r, s: [_conv(r, s[0], 4, s[1:], (3, 3), padding=1)]  # noqa: E731
    return _chain([first, FORMS[form]], (2, 8, 8), seed=hash(form) % 1000)


def _csr_path(graph, monkeypatch):
    """The graph lowered as before kernels: nothing composes into a kernel, every path is a product of the ops'
    expanded CSR matrices (an independent reference for the composed kernels)."""
    from snnchip.export import lowering

    with monkeypatch.context() as m:
        m.setattr(lowering, "compose", lambda a, b: None)
        m.setattr(lowering, "storage", lambda a, keep=lowering.storage: keep(lowering.as_matrix(a)))
        return lower(graph)


def _same_integers(qa, qb):
    for a, b in zip(qa.stages, qb.stages, strict=True):
        assert (a.scale, a.vth, a.dv, a.du) == (b.scale, b.vth, b.dv, b.du), a.name
        np.testing.assert_array_equal(a.bias, b.bias)
        for pa, pb in zip(a.inputs, b.inputs, strict=True):
            for (ma, ea), (mb, eb) in zip(pa.parts, pb.parts, strict=True):
                ma = ma.to_csr() if isinstance(ma, Kernel) else ma
                assert ea == eb and abs(ma - mb).sum() == 0, a.name
            assert pa.synapses == pb.synapses


@pytest.mark.parametrize("form", list(FORMS))
def test_each_conv_form_stays_a_kernel_with_the_integers_of_its_matrix_and_lava_equals_the_chip(form, monkeypatch):
    graph = _net(form)
    net = lower(graph)
    synapse = net.stages[1].inputs[0].synapse
    assert (synapse == "conv") == (form != "padded-pool-then-conv")  # a padded pool composes into no kernel
    reference = _csr_path(graph, monkeypatch)
    assert all(p.synapse != "conv" for s in reference.stages for p in s.inputs)
    _same_integers(quantize(net, wide_weights=True), quantize(reference, wide_weights=True))
    _same_integers(quantize(net), quantize(reference))
    dep = deployment_from_graph(graph)
    x = np.random.default_rng(1).uniform(0, 1, (dep.T, 2, *dep.qnet.input_shape))
    sim = ChipSimulator(dep).run(x, timing="lava")
    assert sum(int(s.sum()) for s in sim.spikes.values()) > 0
    assert_same_run(sim, build(dep).run(x, timing="lava"))


def test_lava_builtin_conv_runs_where_exact_and_equals_the_chip():
    """With weight exponent 0 (netx-style) a binary conv with symmetric padding runs on Lava's own Conv (its
    kernel flipped, its ports (C, H, W) <-> (W, H, C)); it equals the simulator on every spike."""
    graph = conv_graph(in_shape=(2, 8, 8), channels=(3, 4), classes=3, T=4, seed=1, pool="sum")
    dep = deployment_from_graph(graph, weight_exp=0, input_frac_bits=8)
    assert [synapse_process(p) for q in dep.qnet.stages for p in q.inputs] == \
        ["snnchip.Conv", "lava.Conv", "lava.Dense"]
    x = np.random.default_rng(0).uniform(0, 1, (4, 2, 2, 8, 8))
    sim = ChipSimulator(dep).run(x, timing="lava")
    assert int(sim.spikes["conv2"].sum()) > 0
    assert_same_run(sim, build(dep).run(x, timing="lava"))


def test_a_delayed_kernel_beside_a_shortcut_equals_the_chip():
    """n2 gets a conv from n0 (one hop: Lava delays it to meet the two-hop path) and n1's spikes one to one."""
    rng = np.random.default_rng(4)
    shape = (2, 6, 6)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)}),
             "c0": _conv(rng, 2, 2, (6, 6), (3, 3), padding=1), "n0": neuron_node("n0", shape, lam=0.75),
             "c1": _conv(rng, 2, 2, (6, 6), (3, 3), padding=1), "n1": neuron_node("n1", shape, lam=0.75),
             "c2": _conv(rng, 2, 2, (6, 6), (3, 3), padding=1), "n2": neuron_node("n2", shape, lam=0.75),
             "flat": nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(0, 0.2, (3, 72)), bias=np.zeros(3)), "fc_n": readout_node("fc", 3),
             "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "c0"), ("c0", "n0"), ("n0", "c1"), ("c1", "n1"), ("n0", "c2"), ("c2", "n2"), ("n1", "n2"),
             ("n2", "flat"), ("flat", "fc"), ("fc", "fc_n"), ("fc_n", "output")]
    dep = deployment_from_graph(nir.NIRGraph(nodes=nodes, edges=edges, metadata=META))
    (conv,) = [p for p in dep.qnet.stage("n2").inputs if p.synapse == "conv"]
    assert conv.lava_delay == 1 and synapse_process(conv) == "snnchip.Conv"
    x = np.random.default_rng(2).uniform(0, 1, (3, 2, *shape))
    sim = ChipSimulator(dep).run(x, timing="lava")
    assert int(sim.spikes["n2"].sum()) > 0
    assert_same_run(sim, build(dep).run(x, timing="lava"))


@pytest.mark.parametrize("groups,graded", [(1, True), (3, False), (6, True)])
def test_numpy_and_torch_convolutions_equal_the_expanded_matrix(groups, graded):
    """conv_numpy (Lava process models) and the simulator's torch kernel give the CSR product's integers."""
    from snnchip.deploy.fixed_point import dense_fixed

    rng = np.random.default_rng(groups)
    k = Kernel(rng.integers(-128, 128, (6, 6 // groups, 3, 2)) * 2, (6, 7, 9), (6, 4, 9), (2, 1), (1, 0), (1, 1),
               (1, 1), groups)
    k.check()
    s = rng.integers(-2**20, 2**20, (5, k.shape[1])) if graded else rng.integers(0, 2, (5, k.shape[1]))
    ref = (k.to_csr() @ s.T).T
    np.testing.assert_array_equal(conv_numpy(k, s), ref)
    np.testing.assert_array_equal(dense_fixed(k, -3, s), ref >> 3)


@pytest.mark.parametrize("repeat,stride,pad", [((2, 2), (2, 2), (2, 2)), ((2, 2), (4, 2), (0, 1)),
                                               ((3, 3), (3, 3), (1, 2)), ((2, 1), (2, 1), (2, 1))])
def test_a_composed_pooling_summed_first_gives_the_expanded_matrix_integers(repeat, stride, pad):
    """pool_first: a kernel that repeats a compact kernel over the pooling window runs as the window's sum, then the
    compact kernel; its integers are the CSR product's (odd input sizes, asymmetric padding, graded inputs)."""
    rng = np.random.default_rng(sum(stride) + sum(pad))
    compact = rng.integers(-255, 256, (4, 3, 3, 3))
    kernel = np.repeat(np.repeat(compact, repeat[0], axis=2), repeat[1], axis=3)
    in_shape = (3, 11, 9)
    out = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in zip(in_shape[1:], pad, kernel.shape[2:], stride,
                                                                 strict=True))
    k = Kernel(kernel, in_shape, (4, *out), stride, pad, pad, (1, 1))
    k.check()
    assert k.compact[1] == repeat and np.array_equal(k.compact[0], compact)
    s = rng.integers(-2**10, 2**10, (5, k.shape[1]))
    ref = (k.to_csr() @ s.T).T
    import torch

    for dtype in (torch.float32, torch.float64):
        np.testing.assert_array_equal(k.apply(s, dtype, pool_first=True), ref)


@pytest.mark.parametrize("top,digits,path", [(2**10, 4, ["float32"]), (2**20, 4, ["float32"] * 2),
                                             (2**26, 4, ["float32"] * 3), (2**26, 2, ["float64"]),
                                             (2**52, 4, ["int64"])])
@pytest.mark.parametrize("signed", [False, True])
def test_the_simulators_convolution_is_exact_on_every_path(monkeypatch, top, digits, path, signed):
    """conv_fixed against the CSR product on graded inputs of every size: one float32 pass where every partial sum
    stays below 2^24, base-2^b digits of the input as float32 passes (EM-PF's graded messages: a tenth of a float64
    pass each), float64 where more digits than allowed would be needed, int64; signed inputs too (the last digit
    carries the sign); a composed pooling summed first."""
    import torch

    from snnchip.deploy import fixed_point

    rng = np.random.default_rng(top.bit_length() + signed)
    compact = rng.integers(-255, 256, (4, 3, 3, 3))
    k = Kernel(np.repeat(np.repeat(compact, 2, axis=2), 2, axis=3), (3, 10, 10), (4, 5, 5), (2, 2), (2, 2), (2, 2),
               (1, 1))
    s = rng.integers(-top if signed else 0, top, (6, k.shape[1]))
    s[:, 0] = top - 1
    s[2] = 0  # a sample without messages
    monkeypatch.setattr(fixed_point, "MAX_DIGITS", digits)
    passes = []
    apply = Kernel.apply
    monkeypatch.setattr(Kernel, "apply", lambda self, x, dtype=None, pool_first=False: passes.append(dtype)
                        or apply(self, x, dtype, pool_first))
    numpy_conv = fixed_point.conv_numpy
    monkeypatch.setattr(fixed_point, "conv_numpy", lambda k, x: passes.append("int64") or numpy_conv(k, x))
    out = fixed_point.conv_fixed(k, s)
    assert [str(p).replace("torch.", "") for p in passes] == path
    np.testing.assert_array_equal(out, (k.to_csr() @ s.T).T)
    assert out.dtype == np.int64 and torch.get_default_dtype() == torch.float32


def test_connection_sparsity_of_a_large_sparse_matrix_without_expanding_it():
    """A 65536 × 65536 identity shortcut (32 GiB dense) counts its zeros from the stored entries: 1 − 1/65536 (an
    explicitly stored zero counts as zero); a dense matrix and a kernel as before."""
    import scipy.sparse as sp

    from snnchip.hw_sim.metrics import connection_sparsity

    n = 65536
    eye = sp.identity(n, format="csr", dtype=np.float64)
    assert connection_sparsity([eye]) == round(1 - 1 / n, 4)
    eye.data[:n // 2] = 0.0
    assert connection_sparsity([eye]) == round(1 - 0.5 / n, 4)
    k = Kernel(np.array([[[[1.0, 0.0], [0.0, 2.0]]]]), (1, 3, 3), (1, 2, 2), (1, 1), (0, 0), (0, 0), (1, 1))
    assert connection_sparsity([np.array([[0.0, 1.0], [2.0, 0.0]]), k]) == 0.5


@pytest.mark.parametrize("side", ["before", "after"])
def test_a_per_channel_gain_folds_into_the_kernel_and_another_gain_expands_it(side):
    """diag(g)·K and K·diag(g) with one g per channel stay a kernel equal to the CSR product; a gain that varies
    within a channel composes into no kernel (lowering then expands)."""
    import scipy.sparse as sp

    from snnchip.export.kernel import compose

    rng = np.random.default_rng(5)
    k = Kernel(rng.normal(size=(4, 2, 3, 3)), (4, 5, 5), (4, 5, 5), (1, 1), (1, 1), (1, 1), (1, 1), 2)
    n = 4 * 25
    per_channel = sp.diags(np.repeat(rng.normal(size=4), 25), format="csr")
    m, a = (k, per_channel) if side == "before" else (per_channel, k)
    composed = compose(m, a)
    expanded = [x.to_csr() if isinstance(x, Kernel) else x for x in (m, a)]
    np.testing.assert_allclose(composed.toarray(), (expanded[0] @ expanded[1]).toarray(), rtol=1e-15)
    varying = sp.diags(rng.normal(size=n), format="csr")
    assert compose(*((k, varying) if side == "before" else (varying, k))) is None


def test_the_simulator_without_states_keeps_every_spike_and_the_output():
    """states=False keeps two rows of u, v per stage (the output's all): spikes and output are those of a full run."""
    dep = deployment_from_graph(conv_graph(in_shape=(2, 8, 8), channels=(3, 4), classes=3, T=4, seed=1))
    x = np.random.default_rng(3).uniform(0, 1, (4, 3, 2, 8, 8))
    full, lean = ChipSimulator(dep).run(x, states=True), ChipSimulator(dep).run(x, states=False)
    np.testing.assert_array_equal(full.output_raw, lean.output_raw)
    assert full.spikes.keys() == lean.spikes.keys()
    for k in full.spikes:
        np.testing.assert_array_equal(full.spikes[k], lean.spikes[k])


@pytest.mark.parametrize("groups", [1, 2])
def test_neurobench_counts_of_a_kernel_equal_those_of_its_expanded_matrix(groups):
    """A conv stays a kernel in the NeuroBench metrics; its operations, Dense and sparsity are those of the matrix
    it stands for (Dense: every landing tap, zero weights included, counted on the ones-kernel's matrix)."""
    from snnchip.hw_sim.metrics import Connection, connection_sparsity, synaptic_operations

    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(4, 4 // groups, 3, 3)) * (rng.uniform(size=(4, 4 // groups, 3, 3)) < 0.6)
    k = Kernel(kernel, (4, 6, 7), (4, 3, 3), (2, 2), (1, 0), (0, 1), (1, 1), groups)
    k.check()
    x = (rng.uniform(size=(5, 3, k.shape[1])) < 0.3).astype(np.float64)
    ops = synaptic_operations([Connection(k, x)])
    matrix = synaptic_operations([Connection(k.to_csr(), x)])
    assert ops["Effective_ACs"] == matrix["Effective_ACs"] > 0
    assert ops["Dense"] == 5 * k.with_kernel(np.ones_like(kernel)).to_csr().nnz < matrix["Dense"]
    assert connection_sparsity([k]) == round(float(np.mean(kernel == 0)), 4)
    assert synaptic_operations([Connection(k, x * 0.5)])["Effective_MACs"] == ops["Effective_ACs"]
