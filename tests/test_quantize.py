"""NIR lowering and Loihi fixed-point quantization (no Lava)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from types import SimpleNamespace

import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nir_nets import conv_graph, mlp_graph, neuron_node, readout_node

from snnchip.errors import NIRFormatError, QuantizationError, SpecError, UnsupportedNodeError
from snnchip.export.lowering import INPUT, SPARSE_MAX_DENSITY, Projection, Stage, as_matrix, lower
from snnchip.export.qnet import SaturationWarning, dequantize_weight, encode_input
from snnchip.export.quantize import quantize
from snnchip.export.quantize_report import format_report
from snnchip.export.quantize_stages import quantize_stage
from snnchip.export.weight_grid import mantissa_range
from snnchip.spec import Interpretation


def _stage(w, b, theta=1.0, lam=0.5, kind="lif"):
    w = w if sp.issparse(w) else np.asarray(w, float)
    return Stage(name="s", kind=kind, inputs=(Projection(INPUT, w),), bias=np.asarray(b, float),
                 out_shape=(w.shape[0],), lam=lam, theta=theta)


X1 = {INPUT: 1.0}


def _dequantized(q, frac=0):
    return dequantize_weight(q.inputs[0], frac, q.scale)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(1e-3, 1e2), theta=st.floats(0.1, 20.0),
       sign=st.sampled_from(["mixed", "pos", "neg"]))
def test_dequantized_weights_within_documented_bound(seed, scale, theta, sign):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, scale, (5, 7))
    w = np.abs(w) if sign == "pos" else -np.abs(w) if sign == "neg" else w
    q, rep = quantize_stage(_stage(w, np.zeros(5), theta=theta), T=4, x_max=X1)
    lo, hi, step = mantissa_range(w)
    w_hat, p = _dequantized(q), q.inputs[0]
    # bound (docs/loihi-fixed-point.md): |W − Ŵ| ≤ step·2^e / (2c) for every weight; nothing is clipped
    bound = step * 2.0**p.weight_exp / (2 * q.scale)
    assert rep["projections"][0]["clipped_fraction"] == 0.0
    assert np.all(np.abs(w - w_hat) <= bound * (1 + 1e-9))
    assert p.weight.min() >= lo and p.weight.max() <= hi and np.all(p.weight % step == 0)
    assert q.vth / q.scale == pytest.approx(theta, rel=1e-12)  # the threshold is exact by construction
    assert 1 <= q.vth <= 2**17 - 1
    assert rep["projections"][0]["max_abs_weight_error"] == pytest.approx(float(np.abs(w - w_hat).max()))


@settings(max_examples=60, deadline=None)
@given(p=st.integers(0, 6), seed=st.integers(0, 2**31), vth=st.integers(1, 64), mixed=st.booleans(),
       lam_k=st.integers(0, 4096))
def test_exactly_representable_stage_quantizes_losslessly(p, seed, vth, mixed, lam_k):
    rng = np.random.default_rng(seed)
    m = 2 * rng.integers(-128, 128, (4, 6)) if mixed else rng.integers(0, 256, (4, 6))
    w, theta, lam = m / 2.0**p, vth / 2.0**p, lam_k / 4096
    b = rng.integers(-20, 20, 4) / 2.0**p
    q, rep = quantize_stage(_stage(w, b, theta=theta, lam=lam), T=3, x_max=X1)
    assert np.array_equal(_dequantized(q), w)
    assert np.array_equal(q.bias / q.scale, b)
    assert q.vth / q.scale == theta
    assert rep["projections"][0]["max_abs_weight_error"] == 0.0 and rep["max_abs_bias_error"] == 0.0
    if lam_k > 0:
        assert rep["lam_q"] == lam


def test_input_encoding_and_first_stage_exponent():
    net = lower(mlp_graph((4, 3, 2), T=3))
    qn = quantize(net, input_frac_bits=8)
    first = qn.stages[0].inputs[0]
    assert first.num_message_bits == 24 and qn.stages[1].inputs[0].num_message_bits == 0
    e = qn.report[0]["projections"][0]["grid_exp"]
    assert first.weight_exp == e - 8
    assert np.array_equal(encode_input(np.array([0.5, -1.0, 1e9]), 8), [128, -256, 2**23 - 1])
    w_hat = dequantize_weight(first, qn.input_frac_bits, qn.stages[0].scale)
    assert np.abs(w_hat - net.stages[0].inputs[0].weight).max() <= 2 * 2.0**e / qn.stages[0].scale


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(1e-3, 1e2), theta=st.floats(0.1, 20.0), lam=st.floats(0.0, 1.0),
       sign=st.sampled_from(["mixed", "pos", "neg"]))
def test_wide_weights_apply_round_cw_to_binary_spikes(seed, scale, theta, lam, sign):
    """Wide weights: two Dense of 8-bit mantissas whose Lava sums (>> for negative exponents, toward −∞) add up to
    round(c·W)·s for every binary spike vector s while the first exponent e is in 0..6 for mixed signs, 0..7 for one
    sign (the residual, up to half the first grid step 2^(e+1) or 2^e, then fits 7 bits and a sign in activation
    units; docs/loihi-fixed-point.md §2; below 0 the 8-bit grid is finer than the activation unit already); 8-bit
    weights alone round to step·2^e."""
    from snnchip.deploy.fixed_point import dense_fixed, effective_weights

    rng = np.random.default_rng(seed)
    w = rng.normal(0, scale, (6, 9))
    w = np.abs(w) if sign == "pos" else -np.abs(w) if sign == "neg" else w
    q, rep = quantize_stage(_stage(w, np.zeros(6), theta=theta, lam=lam), T=4, x_max=X1, wide=True)
    p = q.inputs[0]
    assert rep["projections"][0]["low_exp"] == (None if p.low is None else p.low_exp)
    assert rep["synapses"] == sum(np.count_nonzero(m) for m, _ in p.parts)
    for m, _ in p.parts:
        lo, hi, step = mantissa_range(m)
        assert m.min() >= lo and m.max() <= hi and np.all(m % step == 0)
    s = rng.integers(0, 2, (32, 9))
    a = sum(dense_fixed(effective_weights(m), e, s) for m, e in p.parts)
    if 0 <= p.weight_exp <= (6 if mantissa_range(p.weight)[2] == 2 else 7):
        np.testing.assert_array_equal(a, s @ np.round(w * q.scale).T)
        assert np.abs(_dequantized(q) - w).max() <= 0.5 / q.scale * (1 + 1e-9)
    narrow, _ = quantize_stage(_stage(w, np.zeros(6), theta=theta, lam=lam), T=4, x_max=X1)
    assert narrow.inputs[0].low is None and len(narrow.inputs[0].parts) == 1


def test_the_input_gets_the_finest_payload_that_fits():
    """q = 16 where the 24-bit payload and every int32 Dense sum allow it; fewer for a large input range; an explicit
    q is kept (and one that overflows is refused)."""
    net = lower(mlp_graph((4, 3, 2), T=3))
    assert quantize(net).input_frac_bits == 16
    for r in (2.0**6, 2.0**9, 2.0**12):
        qn = quantize(net, input_range=r)
        rows = np.abs(qn.stages[0].inputs[0].weight).sum(axis=1).max()
        assert qn.input_frac_bits == min(16, math.floor(math.log2((2**23 - 1) / r)),  # the 24-bit payload x·2^q
                                         math.floor(math.log2((2**31 - 1) / (r * rows))))  # int32: Σ|m|·x·2^q
    assert quantize(net, input_frac_bits=8).input_frac_bits == 8
    with pytest.raises(QuantizationError, match="overflows Lava's int32 accumulator"):
        quantize(net, input_frac_bits=30)
    with pytest.raises(ValueError, match="explicit input_frac_bits"):
        quantize(net, weight_exp=0)


def test_saturation_warning_and_error_name_the_numbers():
    w = np.full((2, 3), 0.9)
    with pytest.warns(SaturationWarning, match=r"stage .s.*T=1000000"):
        quantize_stage(_stage(w, np.zeros(2), lam=1.0), T=1_000_000, x_max=X1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, rep = quantize_stage(_stage(w, np.zeros(2), lam=0.5), T=10, x_max=X1)
    assert rep["may_saturate"] is False
    with pytest.raises(QuantizationError, match=r"stage 's'.*bound"):
        quantize_stage(_stage(np.full((2, 3), 1e7), np.zeros(2)), T=3, x_max=X1)
    with pytest.raises(QuantizationError, match="needs T"):
        quantize_stage(_stage(w, np.zeros(2), kind="readout"), T=None, x_max=X1)


def test_readout_headroom_covers_T_steps():
    net = lower(mlp_graph((5, 4, 3), T=6, gain=3.0))
    qn = quantize(net)
    r = qn.report[-1]
    assert r["state_bound_T_int"] <= (2**23 - 1) * (1 + 1e-9) and not r["may_saturate"]
    assert qn.stages[-1].vth == 2**17 and qn.stages[-1].kind == "readout"  # Lava's LIF that never fires


def test_conv_pool_flatten_compose_to_the_same_affine_map():
    g = conv_graph(in_shape=(2, 6, 6), channels=3, classes=4, pool="avg")
    net = lower(g)
    conv, fc = net.stages
    x = np.random.default_rng(0).uniform(-1, 1, (3, 2, 6, 6))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(g.nodes["conv1"].weight),
                                     torch.from_numpy(g.nodes["conv1"].bias), padding=1).numpy()
    np.testing.assert_allclose(x.reshape(3, -1) @ as_matrix(conv.inputs[0].weight).T + conv.bias,
                               ref.reshape(3, -1), atol=1e-12)
    s = np.random.default_rng(1).integers(0, 2, (3, 3, 6, 6)).astype(float)
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(s), 2).numpy().reshape(3, -1)
    ref = pooled @ g.nodes["fc2"].weight.T + g.nodes["fc2"].bias
    np.testing.assert_allclose(s.reshape(3, -1) @ fc.inputs[0].weight.T + fc.bias, ref, atol=1e-12)
    assert conv.out_shape == (3, 6, 6) and fc.inputs[0].source == "conv1" and fc.inputs[0].weight.shape[1] == 108


def _chain_graph(chain: list[tuple[str, object]], in_shape: tuple[int, ...], n_out: int) -> nir.NIRGraph:
    """input -> chain -> IF neuron of n_out units -> output (a graph whose only stage is the chain's affine map)."""
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}), **dict(chain),
             "n": neuron_node("n", (n_out,), lam=1.0), "output": nir.Output(output_type={"output": np.array([n_out])})}
    order = ["input", *[name for name, _ in chain], "n", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:], strict=False)),
                        metadata={"snnchip": {"version": 1, "T": 2, "encoding": "direct"}})


@pytest.mark.parametrize("kernel,stride,padding,pool", [
    ((3, 3), 1, 1, ("sum", (2, 2), (2, 2), 0)), ((2, 3), 1, "same", ("avg", (3, 2), (2, 1), 1)),
    ((3, 3), 2, 2, ("avg", (2, 2), (1, 1), 1)), ((1, 1), 1, "valid", None), ((5, 5), 2, 0, ("sum", (2, 2), (1, 1), 0))])
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_and_pooling_lower_to_sparse_operators_equal_to_torch(kernel, stride, padding, pool):
    """A = M_pool·M_conv built from window taps (CSR, never a dense conv matrix) equals torch's conv2d/avg_pool2d."""
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(3, 2, *kernel)), rng.normal(size=3)
    chain = [("conv", nir.Conv2d(input_shape=(9, 8), weight=w, stride=stride, padding=padding, dilation=1, groups=1,
                                 bias=b))]
    x = torch.from_numpy(rng.uniform(-1, 1, (4, 2, 9, 8)))
    ref = F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=padding)
    if pool is not None:
        kind, k, s, p = pool
        cls = nir.SumPool2d if kind == "sum" else nir.AvgPool2d
        chain.append(("pool", cls(kernel_size=np.array(k), stride=np.array(s), padding=np.array([p, p]))))
        ref = F.avg_pool2d(ref, k, s, p, count_include_pad=True) * (k[0] * k[1] if kind == "sum" else 1)
    chain.append(("flat", nir.Flatten(input_type={"input": np.array(ref.shape[1:])}, start_dim=0, end_dim=-1)))
    proj = lower(_chain_graph(chain, (2, 9, 8), ref[0].numel())).stages[0].inputs[0]
    a = as_matrix(proj.weight)
    a = a.toarray() if sp.issparse(a) else a
    composes = pool is None or pool[3] == 0  # an unpadded pooling after a conv composes into one kernel
    assert proj.synapse == ("conv" if composes else "sparse" if np.count_nonzero(a) < SPARSE_MAX_DENSITY * a.size
                            else "dense")
    stage = lower(_chain_graph(chain, (2, 9, 8), ref[0].numel())).stages[0]
    np.testing.assert_allclose(x.numpy().reshape(4, -1) @ a.T + stage.bias, ref.numpy().reshape(4, -1), atol=1e-12)


def _densified(net):
    def dense(p):
        return dataclasses.replace(p, weight=as_matrix(p.weight).toarray()) if p.synapse != "dense" else p

    return dataclasses.replace(net, stages=tuple(dataclasses.replace(s, inputs=tuple(dense(p) for p in s.inputs))
                                                 for s in net.stages))


def _assert_same_integers(qa, qb):
    for a, b in zip(qa.stages, qb.stages, strict=True):
        for pa, pb in zip(a.inputs, b.inputs, strict=True):
            wa = as_matrix(pa.weight).toarray() if pa.synapse != "dense" else pa.weight
            np.testing.assert_array_equal(wa, pb.weight, err_msg=a.name)
            assert (pa.weight_exp, pa.num_message_bits) == (pb.weight_exp, pb.num_message_bits), a.name
        assert (a.scale, a.vth, a.dv) == (b.scale, b.vth, b.dv), a.name
        np.testing.assert_array_equal(a.bias, b.bias)
    for ra, rb in zip(qa.report, qb.report, strict=True):
        assert ra["synapses"] == rb["synapses"] and ra["max_abs_bias_error"] == rb["max_abs_bias_error"]
        for pa, pb in zip(ra["projections"], rb["projections"], strict=True):
            assert pa["clipped_fraction"] == pb["clipped_fraction"] == 0.0
            assert pa["max_abs_weight_error"] == pb["max_abs_weight_error"]
            assert pa["mean_abs_weight_error"] == pytest.approx(pb["mean_abs_weight_error"], rel=1e-12)


def test_sparse_and_dense_paths_quantize_a_convnet_bit_identically():
    """The CSR stages of a conv -> pool -> conv -> pool -> flatten -> readout net, quantized on their stored values,
    give the mantissas, exponents, scales, thresholds and report of the same stages quantized as dense matrices."""
    net = lower(conv_graph(in_shape=(1, 12, 12), channels=(3, 4), classes=5, T=4, seed=2, pool="avg"))
    assert [s.inputs[0].synapse for s in net.stages] == ["conv", "conv", "dense"]
    _assert_same_integers(quantize(net), quantize(_densified(net)))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), density=st.floats(0.0, 0.3), sign=st.sampled_from(["mixed", "pos", "neg"]),
       scale=st.floats(1e-2, 1e2))
def test_sparse_stage_quantizes_like_its_dense_matrix(seed, density, sign, scale):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, scale, (9, 13)) * (rng.uniform(size=(9, 13)) < density)
    w = np.abs(w) if sign == "pos" else -np.abs(w) if sign == "neg" else w
    b = rng.normal(0, 0.1, 9)
    qa, ra = quantize_stage(_stage(sp.csr_matrix(w), b), T=4, x_max=X1)
    qb, rb = quantize_stage(_stage(w, b), T=4, x_max=X1)
    _assert_same_integers(SimpleNamespace(stages=[qa], report=[ra]), SimpleNamespace(stages=[qb], report=[rb]))
    pa, pb = qa.inputs[0], qb.inputs[0]
    assert pa.synapse == "sparse" and pa.weight.nnz == np.count_nonzero(pb.weight) == ra["synapses"]


def _foreign(reset_value=0.0, tau=4.0):
    w = np.random.default_rng(0).normal(size=(3, 4))
    nodes = {"in": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Affine(weight=w, bias=np.zeros(3)),
             "lif": nir.LIF(tau=np.full(3, tau), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.full(3, 0.7),
                            v_reset=np.full(3, reset_value)),
             "out": nir.Output(output_type={"output": np.array([3])})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")]), w


def test_foreign_lif_is_read_with_the_interpretation():
    g, w = _foreign()
    st_ = lower(g, Interpretation(dt=1.0, discretization="euler"), T=5).stages[0]
    assert (st_.lam, st_.theta, st_.reset, st_.spike) == (0.75, 0.7, "zero", "gt")
    np.testing.assert_allclose(st_.inputs[0].weight, w * 2.0 / 4.0)  # Euler input gain dt·R/τ
    st_ = lower(g, Interpretation(discretization="exact", reset="subtract", compare="ge"), T=5).stages[0]
    assert st_.lam == pytest.approx(math.exp(-0.25)) and (st_.reset, st_.spike) == ("subtract", "ge")
    with pytest.raises(UnsupportedNodeError, match="'lif'.*non-zero v_reset"):
        lower(_foreign(reset_value=0.2)[0], Interpretation(), T=5)


def test_unsupported_kind_names_its_node_and_the_supported_list():
    g = mlp_graph((4, 3, 2), T=3)
    node = neuron_node("fc1", (3,))
    node.metadata["snnchip"]["kind"] = "saf"
    nodes = {**g.nodes, "fc1_neuron": node}
    with pytest.raises(UnsupportedNodeError, match=r"'fc1_neuron'.*supported: Input, Output, Affine"):
        lower(nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=g.metadata))


def test_readout_node_helper_round_trips_kind():
    assert readout_node("fc", 3).metadata["snnchip"]["kind"] == "readout"


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.9, 1 - 1e-9, 1.0])
@pytest.mark.parametrize("T", [1, 2, 7, 50])
def test_the_membrane_bound_uses_the_geometric_sum(lam, T):
    """B_T = θ + R·Σ_{k<T} λ^k (docs/loihi-fixed-point.md §2): the readout's T-step bound in integer units."""
    explicit = math.fsum(lam**k for k in range(T))
    w = np.array([[0.5, -0.25]])
    _, rep = quantize_stage(_stage(w, [0.1], lam=lam), T, X1)
    bound = 1.0 + (0.5 + 0.25 + 0.1) * explicit
    assert rep["state_bound_T_int"] == pytest.approx(64 * rep["scale"] * bound, rel=1e-12)


def test_an_absurd_T_costs_no_time_and_is_refused_before_lowering():
    """T = 10^9 in the quantizer's bound is O(1) (Σ λ^k → 1/(1 − λ) = 2 for λ = 0.5); lowering refuses it."""
    w = np.array([[0.5, -0.25]])
    _, rep = quantize_stage(_stage(w, [0.1], lam=0.5), 10**9, X1)
    assert rep["state_bound_T_int"] == pytest.approx(64 * rep["scale"] * (1.0 + 0.85 * 2.0), rel=1e-12)
    g = mlp_graph((4, 5, 2), T=4)
    for T in (0, -3, 10**9, 6.0, True):
        with pytest.raises(SpecError, match=rf"^T \(time steps\) must be an integer in 1..10000, got {T!r}$"):
            lower(g, T=T)
    g.metadata["snnchip"]["T"] = 10**9
    with pytest.raises(SpecError, match=r"the graph's metadata\['snnchip'\]\['T'\] \(time steps\) must be"):
        lower(g)


def test_a_huge_declared_shape_is_refused_before_anything_is_allocated():
    """A 31623×31623 pooling input would need 7.45 GiB for its bias vector alone."""
    big = np.array([1, 31623, 31623])
    nodes = {"input": nir.Input(input_type={"input": big}),
             "pool": nir.SumPool2d(kernel_size=big[1:], stride=big[1:], padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([1, 1, 1])}, start_dim=0),
             "fc": nir.Affine(weight=np.ones((2, 1)), bias=np.zeros(2)), "lif": neuron_node("fc", (2,)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    order = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:], strict=False)))
    with pytest.raises(NIRFormatError, match=r"node 'input' has shape \(1, 31623, 31623\) = 1000014129 values per "
                                             r"sample, more than the 16777216"):
        lower(g, T=4)
    conv = nir.Conv2d(input_shape=(128, 128), weight=np.zeros((64, 64, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=np.zeros(64))
    shape = np.array([64, 128, 128])
    nodes = {"input": nir.Input(input_type={"input": shape}), "conv": conv, "lif": neuron_node("conv", tuple(shape)),
             "output": nir.Output(output_type={"output": shape})}
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "output")]
    assert lower(nir.NIRGraph(nodes=nodes, edges=edges), T=4).stages[0].inputs[0].weight.kernel.size == 36864
    nodes = {**nodes, "conv2": conv}  # two convolutions with no neuron between: no kernel, expanded and refused
    edges = [("input", "conv"), ("conv", "conv2"), ("conv2", "lif"), ("lif", "output")]
    with pytest.raises(UnsupportedNodeError, match="would expand to 603979776 entries, more than the"):
        lower(nir.NIRGraph(nodes=nodes, edges=edges), T=4)


def _scaled_mlp(gain: float) -> nir.NIRGraph:
    g = mlp_graph((6, 8, 3), T=4, seed=1, gain=1.5)
    for node in g.nodes.values():
        if isinstance(node, nir.Affine):
            node.weight, node.bias = node.weight * gain, node.bias * gain
    return g


def test_the_report_flags_a_collapsed_threshold_with_its_numbers():
    """Weights ×10^4: the one-step bound leaves a threshold mantissa of 1 and the state does not saturate; the
    report said "no". One weight-mantissa step, run through the chip's arithmetic, moves the membrane by 2^e/vth
    thresholds; the report must give that number and flag it (and not flag the same net at ×1)."""
    from snnchip.deploy.fixed_point import dense_fixed, neuron_step_fixed

    for gain, flagged in ((1.0, False), (1e4, True)):
        q = quantize(lower(_scaled_mlp(gain)))
        stage, rep = q.stages[0], q.report[0]
        (p,) = stage.inputs
        grid = mantissa_range(p.weight)[2]  # mixed-sign weights: even mantissas only
        a = dense_fixed(np.full((1, 1), grid), p.weight_exp, encode_input(np.ones(1), q.input_frac_bits))
        zero = np.zeros(1, np.int64)
        u, _, _ = neuron_step_fixed(zero, zero, a, 4095, 4095, stage.vth, "subtract", "ge")
        step_in_thresholds = float(u[0]) / (64 * stage.vth)
        assert rep["weight_step_theta"] == pytest.approx(step_in_thresholds, rel=1e-12)
        assert rep["coarse"] is flagged and (step_in_thresholds >= 1) is flagged
        row = format_report(q.report).splitlines()[3]  # after the two header lines and the rule
        assert row.endswith(f"coarse: weight step {step_in_thresholds:.3g}θ (vth {stage.vth})" if flagged else "none")
    assert (stage.vth, rep["may_saturate"]) == (1, False)
