"""The fused neuron step (train/neuron.py) and OTTT's single-pass synapse (train/views.py) against hand-derived
gradients and PyTorch's own convolution autograd; eager and torch.compile'd kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from snnchip.spec import LayerSpec, NeuronSpec
from snnchip.train.neuron import LIF, Sigmoid, lif_step, lif_trace_step, saf_step, surrogate_fire
from snnchip.train.synapse import Synapse
from snnchip.train.views import TraceView

LAM, THETA = 0.7, 0.8


def surrogate(name: str, x: torch.Tensor, slope: float = 4.0) -> torch.Tensor:
    """dH/du at x = u − θ: OTTT's sigmoid, SLTT's triangle (γ = θ) and rectangle (Eq. 5–6)."""
    if name == "sigmoid":
        sg = torch.sigmoid(slope * x)
        return slope * sg * (1 - sg)
    if name == "triangle":
        return (1 - x.abs() / THETA).clamp(min=0) / THETA
    return (x.abs() < 0.5).to(x.dtype)


def tensors(seed: int = 0, shape=(6, 9)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("spike", ["ge", "gt"])
@pytest.mark.parametrize("sur", ["sigmoid", "triangle", "rectangle"])
def test_lif_step_is_the_lif_with_hand_derived_gradient(kernels, reset, spike, sur):
    p = LIF.from_spec(NeuronSpec(lam=LAM, theta=THETA, reset=reset, spike=spike, surrogate=sur, slope=4.0))
    current, v, g_s, g_v = tensors()
    current.requires_grad_()
    v.requires_grad_()
    s, v_next = lif_step(current, v, p)
    u = LAM * v.detach() + current.detach()
    s_ref = (u > THETA if spike == "gt" else u >= THETA).double()
    v_ref = u - THETA * s_ref if reset == "subtract" else u * (1 - s_ref)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v_next, v_ref)
    h = surrogate(sur, u - THETA)
    dv_du = 1 - THETA * h if reset == "subtract" else (1 - s_ref) - u * h
    for gv in (g_v, None):  # BPTT (gradient through v[t]) and online rules (v[t] cut)
        loss = (s * g_s).sum() + (0 if gv is None else (v_next * gv).sum())
        gi, gvp = torch.autograd.grad(loss, (current, v), retain_graph=True)
        g_u = g_s * h + (0 if gv is None else gv * dv_du)
        torch.testing.assert_close(gi, g_u)
        torch.testing.assert_close(gvp, LAM * g_u)


def test_lif_step_at_t1_has_no_membrane(kernels):
    p = LIF.from_spec(NeuronSpec(lam=LAM, theta=THETA, surrogate="triangle"))
    current, _, g_s, _ = tensors(1)
    current.requires_grad_()
    s, v_next = lif_step(current, None, p)
    (gi,) = torch.autograd.grad((s * g_s).sum(), current)
    torch.testing.assert_close(v_next, current.detach() - THETA * s)
    torch.testing.assert_close(gi, g_s * surrogate("triangle", current.detach() - THETA))


def test_saf_step_is_eq4_5_with_hand_derived_gradient(kernels):
    """u = Û − θ·λ·â[t−1], s = H(u − θ), â = λ·â[t−1] + s; ∂L/∂Û = (g_s + g_â)·h, ∂L/∂â[t−1] = −θλ·∂L/∂Û + λ·g_â."""
    p = LIF.from_spec(NeuronSpec(lam=LAM, theta=THETA, surrogate="sigmoid", slope=4.0))
    cur, prev, g_s, g_a = tensors(2)
    prev = prev.abs()
    cur.requires_grad_()
    prev.requires_grad_()
    s, a = saf_step(cur, prev, p, LAM)
    u = cur.detach() - THETA * LAM * prev.detach()
    s_ref = (u >= THETA).double()
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(a, LAM * prev.detach() + s_ref)
    gc, gp = torch.autograd.grad((s * g_s).sum() + (a * g_a).sum(), (cur, prev))
    g_u = (g_s + g_a) * surrogate("sigmoid", u - THETA)
    torch.testing.assert_close(gc, g_u)
    torch.testing.assert_close(gp, -THETA * LAM * g_u + LAM * g_a)


@pytest.mark.parametrize("first", [False, True], ids=["t>1", "t=1"])
def test_lif_trace_step_is_the_lif_and_ottt_trace_with_hand_derived_gradient(kernels, first):
    """OTTT's fused step: (s, v) of ``lif_step``, â = λ_a·â[t−1] + s (â[0] = 0); ∂L/∂I = (g_s + g_â)·h + g_v·∂v/∂u,
    ∂L/∂v[t−1] = λ·∂L/∂I, ∂L/∂â[t−1] = λ_a·g_â."""
    lam_a = 0.6
    p = LIF.from_spec(NeuronSpec(lam=LAM, theta=THETA, surrogate="sigmoid", slope=4.0))
    current, v, g_s, g_v = tensors(3)
    trace, g_a = tensors(4)[:2]
    trace = trace.abs()
    for t in (current, v, trace):
        t.requires_grad_()
    s, v_next, a = lif_trace_step(current, None if first else v, None if first else trace, p, lam_a)
    u = current.detach() + (0 if first else LAM * v.detach())
    s_ref = (u >= THETA).double()
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v_next, u - THETA * s_ref)
    torch.testing.assert_close(a, s_ref + (0 if first else lam_a * trace.detach()))
    loss = (s * g_s).sum() + (v_next * g_v).sum() + (a * g_a).sum()
    inputs = (current,) if first else (current, v, trace)
    grads = torch.autograd.grad(loss, inputs)
    h = surrogate("sigmoid", u - THETA)
    g_u = (g_s + g_a) * h + g_v * (1 - THETA * h)
    torch.testing.assert_close(grads[0], g_u)
    if not first:
        torch.testing.assert_close(grads[1], LAM * g_u)
        torch.testing.assert_close(grads[2], lam_a * g_a)


@pytest.mark.parametrize("op", ["conv2d", "linear"])
def test_trace_synapse_under_autocast_matches_float32(op):
    """Mixed precision: the forward runs in bfloat16 (autocast), the backward, which autocast does not reach, in the
    gradient's dtype; every gradient comes back in its input's dtype, within bfloat16 rounding of float32."""
    torch.manual_seed(0)
    conv = op == "conv2d"
    layer = LayerSpec("c", op, out_channels=5, kernel_size=3, padding=1, neuron=NeuronSpec()) if conv \
        else LayerSpec("c", op, out_features=5, neuron=NeuronSpec())
    in_shape = (3, 8, 8) if conv else (7,)
    syn = Synapse(layer, in_shape)
    s = (torch.rand(4, *in_shape) > 0.6).float()
    a = (0.5 * torch.rand(4, *in_shape) + s).requires_grad_()
    grads = []
    for low in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            current = TraceView(0.5).synapse(syn, (s, a), {})
        assert current.dtype == (torch.bfloat16 if low else torch.float32)
        grads.append(torch.autograd.grad(current.float().square().sum(), (a, syn.weight, syn.bias)))
    for ref, got, x in zip(grads[0], grads[1], (a, syn.weight, syn.bias), strict=True):
        assert got.dtype == x.dtype
        torch.testing.assert_close(got, ref, atol=0.05 * float(ref.abs().max()), rtol=0.05)


@pytest.mark.parametrize("op", ["conv2d", "linear"])
def test_trace_synapse_forward_uses_spikes_and_gradient_uses_trace(op):
    """OTTT (Xiao et al. 2022, Eq. 8): I = W s + b; ∇W = g·âᵀ, ∇b = Σ g, ∂L/∂â = Wᵀ g — as PyTorch's own autograd
    of the layer applied to â gives them."""
    torch.manual_seed(0)
    conv = op == "conv2d"
    layer = LayerSpec("c", op, out_channels=5, kernel_size=3, padding=1, stride=2, neuron=NeuronSpec()) if conv \
        else LayerSpec("c", op, out_features=5, neuron=NeuronSpec())
    in_shape = (3, 8, 8) if conv else (7,)
    syn = Synapse(layer, in_shape).double()
    s = (torch.rand(4, *in_shape, dtype=torch.float64) > 0.6).double()
    a = (0.5 * torch.rand(4, *in_shape, dtype=torch.float64) + s).requires_grad_()
    g = torch.randn(4, *layer.output_shape(in_shape), dtype=torch.float64)
    current = TraceView(0.5).synapse(syn, (s, a), {})
    torch.testing.assert_close(current, syn(s))
    mine = torch.autograd.grad((current * g).sum(), (a, syn.weight, syn.bias))
    fn = (lambda z, w, b: F.conv2d(z, w, b, 2, 1)) if conv else F.linear
    w, b = syn.weight.detach().clone().requires_grad_(), syn.bias.detach().clone().requires_grad_()
    ref = torch.autograd.grad((fn(a, w, b) * g).sum(), (a, w, b))
    for x, y in zip(mine, ref, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("strict", [False, True])
def test_surrogate_fire_is_the_heaviside_forward_and_the_surrogate_backward(strict):
    u = torch.tensor([0.2, 0.99, 1.0, 1.01, 3.0], dtype=torch.float64, requires_grad=True)
    s = surrogate_fire(Sigmoid(4.0, 1.0), strict)(u, torch.tensor(1.0, dtype=torch.float64))
    assert s.tolist() == [0.0, 0.0, 0.0 if strict else 1.0, 1.0, 1.0]
    s.backward(torch.arange(1.0, 6.0, dtype=torch.float64))
    sg = torch.sigmoid(4 * (u.detach() - 1))
    torch.testing.assert_close(u.grad, torch.arange(1.0, 6.0, dtype=torch.float64) * 4 * sg * (1 - sg))
