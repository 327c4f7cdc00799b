"""snnchip.train against the papers' equations, each reference written here from the equations alone.

LIF (docs/architecture.md), OTTT (Xiao et al. 2022: ∇W = Σ_t g_u[t]·â[t]ᵀ), SLTT (Meng et al. 2023, Eq. 12–13), SAF
(Saiin et al., arXiv:2310.02772: forward = LIF spikes; Theorem 1: SAF-E = OTTT-O), BPTT (hand-unrolled loop)."""

import random

import pytest
import torch

from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronSpec
from snnchip.train import build_model, gradients, model_spec, simulate
from snnchip.train.neuron import LIF, lif_step
from snnchip.train.views import SafView

B, N_IN, N_H, N_OUT = 4, 5, 7, 3


def two_layer(lam=0.5, surrogate="sigmoid", bias=True, T=4, reset="subtract", spike="ge", feedback=()):
    neuron = NeuronSpec(lam=lam, surrogate=surrogate, reset=reset, spike=spike)
    layers = (LayerSpec("fc1", "linear", out_features=N_H, neuron=neuron, bias=bias),
              LayerSpec("out", "linear", out_features=N_OUT, neuron=NeuronSpec(kind="readout"), bias=bias))
    spec = NetworkSpec(input_shape=(N_IN,), layers=layers, T=T, num_classes=N_OUT, feedback=feedback)
    torch.manual_seed(1)
    model = build_model(spec)
    with torch.no_grad():  # large enough weights that neurons fire
        model.fc1.weight.mul_(4.0)
        if bias:
            model.fc1.bias.add_(0.3)
    return model


def params(model):
    return (model.fc1.weight.detach(), None if model.fc1.bias is None else model.fc1.bias.detach(),
            model.out.weight.detach(), None if model.out.bias is None else model.out.bias.detach())


def sigmoid_sg(x, k=4.0):
    return k * torch.sigmoid(k * x) * (1 - torch.sigmoid(k * x))


def triangle_sg(x, gamma=1.0):
    return torch.clamp(1 - x.abs() / gamma, min=0) / gamma


def ce_grad(o, y, T):
    """d/do of CE(o, y)/T (batch mean)."""
    return (torch.softmax(o, -1) - torch.nn.functional.one_hot(y, o.shape[-1]).float()) / o.shape[0] / T


def lif_reference(x, W1, b1, W2, b2, lam, T, theta=1.0, zero_reset=False, strict=False, Wfb=None):
    """The LIF recursion, by hand: returns u1, s1, o per step."""
    v = torch.zeros(x.shape[0], W1.shape[0])
    s_prev = torch.zeros_like(v)
    us, ss, os_ = [], [], []
    for _ in range(T):
        current = x @ W1.T + (0 if b1 is None else b1)
        if Wfb is not None:
            current = current + s_prev @ Wfb.T
        u = lam * v + current
        s = ((u > theta) if strict else (u >= theta)).float()
        v = u * (1 - s) if zero_reset else u - theta * s
        o = s @ W2.T + (0 if b2 is None else b2)
        us.append(u)
        ss.append(s)
        os_.append(o)
        s_prev = s
    return us, ss, os_


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, N_IN, generator=g), torch.randint(0, N_OUT, (B,), generator=g)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("T", [1, 3, 7])
def test_saf_forward_emits_lif_spikes(lam, T):
    model = two_layer(lam=lam, T=T)
    x, _ = data(T)
    us, ss, os_ = lif_reference(x, *params(model), lam, T)
    state, view = {}, SafView(lam)
    with torch.no_grad():
        for t in range(T):
            o, state, spikes = model.step(x, state, view)
            assert torch.equal(spikes["fc1"], ss[t])
            torch.testing.assert_close(o, os_[t], atol=1e-5, rtol=1e-5)
    assert 0 < sum(s.sum() for s in ss) < T * B * N_H  # the test exercises firing and silence


@pytest.mark.parametrize("reset,spike", [("subtract", "ge"), ("zero", "gt"), ("subtract", "gt")])
def test_simulate_is_the_lif_recursion(reset, spike):
    model = two_layer(T=5, reset=reset, spike=spike)
    x, _ = data()
    us, ss, os_ = lif_reference(x, *params(model), 0.5, 5, zero_reset=reset == "zero", strict=spike == "gt")
    res = simulate(model, x)
    assert torch.equal(res.spikes["fc1"], torch.stack(ss))
    torch.testing.assert_close(res.output, torch.cumsum(torch.stack(os_), 0), atol=1e-5, rtol=1e-5)


def ottt_reference(model, x, y, lam, T):
    """OTTT's gradient of ``two_layer`` by hand on the CPU: ∇W = Σ_t g_u[t]·â[t]ᵀ, ∇b = Σ_t g_u[t] per layer, and
    the smallest |u − θ| of the hidden layer (how far the nearest spike decision is from flipping)."""
    W1, b1, W2, b2 = (p.cpu() for p in params(model))
    x, y = x.cpu(), y.cpu()
    us, ss, os_ = lif_reference(x, W1, b1, W2, b2, lam, T)
    gW1, gb1, gW2, gb2 = (torch.zeros_like(p) for p in (W1, b1, W2, b2))
    ax, a1 = torch.zeros_like(x), torch.zeros(B, N_H)
    for t in range(T):
        ax, a1 = lam * ax + x, lam * a1 + ss[t]
        g_o = ce_grad(os_[t], y, T)
        gW2 += g_o.T @ a1
        gb2 += g_o.sum(0)
        g_u = (g_o @ W2) * sigmoid_sg(us[t] - 1.0)
        gW1 += g_u.T @ ax
        gb1 += g_u.sum(0)
    margin = float(min((u - 1.0).abs().min() for u in us))
    return {"fc1.weight": gW1, "fc1.bias": gb1, "out.weight": gW2, "out.bias": gb2}, margin


def test_ottt_gradient_is_sum_of_gu_times_trace(kernels):
    T, lam = 5, 0.5
    model = two_layer(lam=lam, T=T)
    x, y = data()
    ref, _ = ottt_reference(model, x, y, lam, T)
    for method in ("ottt-o", "ottt-a"):
        g = gradients(model, x, y, method)
        for name, r in ref.items():
            torch.testing.assert_close(g[name], r, atol=1e-6, rtol=1e-5)


def test_sltt_gradient_is_spatial_only_eq12_13():
    T, lam = 5, 1 - 1 / 1.1
    model = two_layer(lam=lam, surrogate="triangle", T=T)
    x, y = data()
    W1, b1, W2, b2 = params(model)
    us, ss, os_ = lif_reference(x, W1, b1, W2, b2, lam, T)
    gW1, gW2 = torch.zeros_like(W1), torch.zeros_like(W2)
    for t in range(T):
        e_o = ce_grad(os_[t], y, T)  # Eq. 14: L = 1/T Σ ℓ(o[t], y)
        gW2 += e_o.T @ ss[t]  # Eq. 12: e_W = e_uᵀ s^{l-1}[t]ᵀ
        e_u = (e_o @ W2) * triangle_sg(us[t] - 1.0)  # Eq. 13
        gW1 += e_u.T @ x
    g = gradients(model, x, y, "sltt")
    torch.testing.assert_close(g["fc1.weight"], gW1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g["out.weight"], gW2, atol=1e-6, rtol=1e-5)
    g_k = gradients(model, x, y, "sltt-k", k=T, rng=random.Random(0))
    for name in g:
        torch.testing.assert_close(g_k[name], g[name], atol=0, rtol=0)


def test_sltt_k_uses_k_steps():
    T = 6
    model = two_layer(T=T, surrogate="triangle")
    x, y = data()
    g_full = gradients(model, x, y, "sltt")
    g_k = gradients(model, x, y, "sltt-k", k=1, rng=random.Random(3))
    assert not torch.allclose(g_k["out.weight"], g_full["out.weight"])


class _RefSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).float()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * sigmoid_sg(x)


def test_bptt_equals_hand_unrolled_autograd():
    T, lam, alpha = 4, 0.5, 0.05
    model = two_layer(lam=lam, T=T, feedback=(FeedbackSpec("fc1", "fc1"),))
    x, y = data()
    ref = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    v, s, outs = 0.0, torch.zeros(B, N_H), []
    for _ in range(T):
        u = lam * v + x @ ref["fc1.weight"].T + ref["fc1.bias"] + s @ ref["feedback.fc1__fc1.weight"].T
        s = _RefSpike.apply(u - 1.0)
        v = u - s
        outs.append(s @ ref["out.weight"].T + ref["out.bias"])
    mean = torch.stack(outs).mean(0)
    onehot = torch.nn.functional.one_hot(y, N_OUT).float()
    loss = (1 - alpha) * torch.nn.functional.cross_entropy(mean, y) + alpha * ((mean - onehot) ** 2).mean()
    loss.backward()
    g = gradients(model, x, y, "bptt", mse_alpha=alpha)
    for name, p in ref.items():
        torch.testing.assert_close(g[name], p.grad, atol=1e-6, rtol=1e-5)


def _assert_same_grads(model, x, y, a, b, **opts):
    ga, gb = gradients(model, x, y, a, **opts), gradients(model, x, y, b, **opts)
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("lam", [0.5, 0.8])
def test_saf_e_equals_ottt_o_theorem1_mlp(lam):
    model = two_layer(lam=lam, T=6)
    x, y = data()
    _assert_same_grads(model, x, y, "saf-e", "ottt-o", mse_alpha=0.05)


def test_saf_e_equals_ottt_o_theorem1_conv():
    spec = model_spec("convnet", (1, 8, 8), 4, 4, NeuronSpec())
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        model.conv1.weight.mul_(4.0)
        model.conv2.weight.mul_(4.0)
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 3])
    assert simulate(model, x).spikes["conv2"].sum() > 0
    _assert_same_grads(model, x, y, "saf-e", "ottt-o", mse_alpha=0.05)


def test_saf_e_equals_ottt_o_with_feedback():
    spec = model_spec("mlp-feedback", (N_IN,), N_OUT, 5, NeuronSpec(), hidden=(6, 6))
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        model.fc1.weight.mul_(4.0)
        model.feedback["fc2__fc1"].weight.mul_(3.0)
    x, y = data()
    _assert_same_grads(model, x, y, "saf-e", "ottt-o")
    assert gradients(model, x, y, "ottt-o")["feedback.fc2__fc1.weight"].abs().sum() > 0


def test_feedback_delivers_previous_step_spikes():
    model = two_layer(T=5, feedback=(FeedbackSpec("fc1", "fc1"),))
    with torch.no_grad():
        model.feedback["fc1__fc1"].weight.normal_(0, 1)
    x, _ = data()
    W1, b1, W2, b2 = params(model)
    _, ss, os_ = lif_reference(x, W1, b1, W2, b2, 0.5, 5, Wfb=model.feedback["fc1__fc1"].weight.detach())
    res = simulate(model, x)
    assert torch.equal(res.spikes["fc1"], torch.stack(ss))
    torch.testing.assert_close(res.output[-1], sum(os_), atol=1e-5, rtol=1e-5)


def test_surrogates_match_their_formulas():
    x = torch.linspace(-1.95, 1.95, 40, requires_grad=True)
    for name, ref in (("sigmoid", sigmoid_sg(x.detach())), ("triangle", triangle_sg(x.detach())),
                      ("rectangle", (x.detach().abs() < 0.5).float())):
        p = LIF.from_spec(NeuronSpec(surrogate=name))
        (grad,) = torch.autograd.grad(lif_step(x + 1.0, None, p)[0].sum(), x)
        torch.testing.assert_close(grad, ref)


def test_saf_f_gradient_is_eq7():
    T, lam = 5, 0.5
    model = two_layer(lam=lam, T=T)
    x, y = data()
    W1, b1, W2, b2 = params(model)
    us, ss, _ = lif_reference(x, W1, b1, W2, b2, lam, T)
    ax = sum(lam ** (T - 1 - t) * x for t in range(T))
    a1 = sum(lam ** (T - 1 - t) * ss[t] for t in range(T))
    big_lambda = sum(lam ** (T - 1 - t) for t in range(T))
    o_hat = a1 @ W2.T + big_lambda * b2  # Ô[T] = W â[T] + b Σ_{k<T} λ^k
    g_o = ce_grad(o_hat / big_lambda, y, 1) / big_lambda  # L_F = ℓ(Ô[T]/Λ, y)
    g_u = (g_o @ W2) * sigmoid_sg(us[-1] - 1.0)
    g = gradients(model, x, y, "saf-f")
    torch.testing.assert_close(g["out.weight"], g_o.T @ a1, atol=1e-6, rtol=1e-5)  # Eq. 7: â^l[T]·g_Û[T]
    torch.testing.assert_close(g["fc1.weight"], g_u.T @ ax, atol=1e-6, rtol=1e-5)
