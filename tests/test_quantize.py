"""NIR lowering and Loihi fixed-point quantization (no Lava)."""

from __future__ import annotations

import math
import warnings

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnchip.errors import QuantizationError, UnsupportedNodeError
from snnchip.export.lowering import Stage, lower
from snnchip.export.quantize import (
    SaturationWarning,
    dequantize_weight,
    encode_input,
    mantissa_range,
    quantize,
    quantize_stage,
)
from snnchip.hw_sim.nets import conv_graph, mlp_graph, neuron_node, readout_node
from snnchip.spec import Interpretation


def _stage(w, b, theta=1.0, lam=0.5, kind="lif"):
    n_out, n_in = w.shape
    return Stage(name="s", kind=kind, weight=np.asarray(w, float), bias=np.asarray(b, float), in_shape=(n_in,),
                 out_shape=(n_out,), lam=lam, theta=theta)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(1e-3, 1e2), theta=st.floats(0.1, 20.0),
       sign=st.sampled_from(["mixed", "pos", "neg"]))
def test_dequantized_weights_within_documented_bound(seed, scale, theta, sign):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, scale, (5, 7))
    w = np.abs(w) if sign == "pos" else -np.abs(w) if sign == "neg" else w
    q, rep = quantize_stage(_stage(w, np.zeros(5), theta=theta), T=4, x_max=1.0, frac_bits=None)
    lo, hi, step = mantissa_range(w)
    w_hat = dequantize_weight(q)
    # bound (docs/loihi-fixed-point.md): |W − Ŵ| ≤ step·2^e / (2c) for every weight; nothing is clipped
    bound = step * 2.0**q.weight_exp / (2 * q.scale)
    assert rep["clipped_fraction"] == 0.0
    assert np.all(np.abs(w - w_hat) <= bound * (1 + 1e-9))
    assert q.weight.min() >= lo and q.weight.max() <= hi and np.all(q.weight % step == 0)
    assert q.vth / q.scale == pytest.approx(theta, rel=1e-12)  # the threshold is exact by construction
    assert 1 <= q.vth <= 2**17 - 1
    assert rep["max_abs_weight_error"] == pytest.approx(float(np.abs(w - w_hat).max()))


@settings(max_examples=60, deadline=None)
@given(p=st.integers(0, 6), seed=st.integers(0, 2**31), vth=st.integers(1, 64), mixed=st.booleans(),
       lam_k=st.integers(0, 4096))
def test_exactly_representable_stage_quantizes_losslessly(p, seed, vth, mixed, lam_k):
    rng = np.random.default_rng(seed)
    m = 2 * rng.integers(-128, 128, (4, 6)) if mixed else rng.integers(0, 256, (4, 6))
    w, theta, lam = m / 2.0**p, vth / 2.0**p, lam_k / 4096
    b = rng.integers(-20, 20, 4) / 2.0**p
    q, rep = quantize_stage(_stage(w, b, theta=theta, lam=lam), T=3, x_max=1.0, frac_bits=None)
    assert np.array_equal(dequantize_weight(q), w)
    assert np.array_equal(q.bias / q.scale, b)
    assert q.vth / q.scale == theta
    assert rep["max_abs_weight_error"] == 0.0 and rep["max_abs_bias_error"] == 0.0
    if lam_k > 0:
        assert rep["lam_q"] == lam


def test_input_encoding_and_first_stage_exponent():
    net = lower(mlp_graph((4, 3, 2), T=3))
    qn = quantize(net, input_frac_bits=8)
    first = qn.stages[0]
    assert first.num_message_bits == 24 and qn.stages[1].num_message_bits == 0
    assert first.weight_exp == qn.report[0]["weight_exp"] - 8
    assert np.array_equal(encode_input(np.array([0.5, -1.0, 1e9]), 8), [128, -256, 2**23 - 1])
    w_hat = dequantize_weight(first, qn.input_frac_bits)
    assert np.abs(w_hat - net.stages[0].weight).max() <= 2 * 2.0 ** qn.report[0]["weight_exp"] / first.scale


def test_saturation_warning_and_error_name_the_numbers():
    w = np.full((2, 3), 0.9)
    with pytest.warns(SaturationWarning, match=r"stage .s.*T=1000000"):
        quantize_stage(_stage(w, np.zeros(2), lam=1.0), T=1_000_000, x_max=1.0, frac_bits=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, rep = quantize_stage(_stage(w, np.zeros(2), lam=0.5), T=10, x_max=1.0, frac_bits=None)
    assert rep["may_saturate"] is False
    with pytest.raises(QuantizationError, match=r"stage 's'.*bound"):
        quantize_stage(_stage(np.full((2, 3), 1e7), np.zeros(2)), T=3, x_max=1.0, frac_bits=None)
    with pytest.raises(QuantizationError, match="needs T"):
        quantize_stage(_stage(w, np.zeros(2), kind="readout"), T=None, x_max=1.0, frac_bits=None)


def test_readout_headroom_covers_T_steps():
    net = lower(mlp_graph((5, 4, 3), T=6, gain=3.0))
    qn = quantize(net)
    r = qn.report[-1]
    assert r["state_bound_T_int"] <= (2**23 - 1) * (1 + 1e-9) and not r["may_saturate"]
    assert qn.stages[-1].vth == 0 and qn.stages[-1].kind == "readout"


def test_conv_pool_flatten_compose_to_the_same_affine_map():
    g = conv_graph(in_shape=(2, 6, 6), channels=3, classes=4, pool="avg")
    net = lower(g)
    conv, fc = net.stages
    x = np.random.default_rng(0).uniform(-1, 1, (3, 2, 6, 6))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(g.nodes["conv1"].weight),
                                     torch.from_numpy(g.nodes["conv1"].bias), padding=1).numpy()
    np.testing.assert_allclose(x.reshape(3, -1) @ conv.weight.T + conv.bias, ref.reshape(3, -1), atol=1e-12)
    s = np.random.default_rng(1).integers(0, 2, (3, 3, 6, 6)).astype(float)
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(s), 2).numpy().reshape(3, -1)
    ref = pooled @ g.nodes["fc2"].weight.T + g.nodes["fc2"].bias
    np.testing.assert_allclose(s.reshape(3, -1) @ fc.weight.T + fc.bias, ref, atol=1e-12)
    assert conv.out_shape == (3, 6, 6) and fc.in_shape == (3, 6, 6)


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
    np.testing.assert_allclose(st_.weight, w * 2.0 / 4.0)  # Euler input gain dt·R/τ
    st_ = lower(g, Interpretation(discretization="exact", reset="subtract", compare="ge"), T=5).stages[0]
    assert st_.lam == pytest.approx(math.exp(-0.25)) and (st_.reset, st_.spike) == ("subtract", "ge")
    with pytest.raises(UnsupportedNodeError, match="'lif'.*non-zero v_reset"):
        lower(_foreign(reset_value=0.2)[0], Interpretation(), T=5)


@pytest.mark.parametrize("make", ["cuba", "unknown-kind", "feedback"])
def test_unsupported_node_names_itself_and_the_supported_list(make):
    g = mlp_graph((4, 3, 2), T=3)
    nodes, edges = dict(g.nodes), list(g.edges)
    if make == "cuba":
        nodes["fc1_neuron"] = nir.CubaLIF(tau_syn=np.ones(3) * 2, tau_mem=np.ones(3) * 2, r=np.ones(3),
                                          v_leak=np.zeros(3), v_threshold=np.ones(3))
        name = "fc1_neuron"
    elif make == "unknown-kind":
        node = neuron_node("fc1", (3,))
        node.metadata["snnchip"]["kind"] = "saf"
        nodes["fc1_neuron"], name = node, "fc1_neuron"
    else:
        nodes["fb"] = nir.Linear(weight=np.ones((3, 3)))
        edges += [("fc1_neuron", "fb"), ("fb", "fc1_neuron")]
        name = "fc1_neuron"
    with pytest.raises(UnsupportedNodeError, match=rf"{name!r}.*supported: Input, Output, Affine"):
        lower(nir.NIRGraph(nodes=nodes, edges=edges, metadata=g.metadata))


def test_readout_node_helper_round_trips_kind():
    assert readout_node("fc", 3).metadata["snnchip"]["kind"] == "readout"
