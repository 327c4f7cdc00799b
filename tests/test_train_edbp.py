"""Event-driven BP (Zhu et al., "Training Spiking Neural Networks with Event-driven Backpropagation", NeurIPS 2022,
supplement) against references written here: the SRM kernel sum (S14–S16), the backward S20/S21 by hand, the
invariant S4, the weight-norm fold (S22)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snnchip.errors import SpecError
from snnchip.spec import NeuronSpec
from snnchip.train import build_model, from_plain, plain_parameters, plain_spec, run_iteration, simulate
from snnchip.train.edbp import SRM, configure_edbp, edbp_layer, forward_layers, gradient_events, srm_step
from snnchip.train.zoo import model_spec

TAU_M, TAU_S, TAU_G = 5.0, 3.0, 2.5


def eps(k: float) -> float:
    """S16."""
    return TAU_M / (TAU_M - TAU_S) * (math.exp(-(k + 1) / TAU_M) - math.exp(-(k + 1) / TAU_S))


def h(k: float) -> float:
    return math.exp(-k / TAU_G)


def srm(theta: float = 1.0) -> SRM:
    return SRM.from_spec(NeuronSpec(kind="srm", theta=theta, tau_m=TAU_M, tau_s=TAU_S))


def kernel_sum(current: np.ndarray, theta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """S14–S15 literally: u[t] = Σ_{t_last < t_m ≤ t} I[t_m]·ε(t − t_m); s = [u ≥ θ]. current [T, N] -> (u, s)."""
    T, N = current.shape
    u, s = np.zeros((T, N)), np.zeros((T, N))
    for n in range(N):
        last = -1
        for t in range(T):
            u[t, n] = sum(current[m, n] * eps(t - m) for m in range(last + 1, t + 1))
            if u[t, n] >= theta:
                s[t, n], last = 1.0, t
    return u, s


def run_srm(current: torch.Tensor, p: SRM) -> tuple[torch.Tensor, torch.Tensor]:
    state, spikes, vs = None, [], []
    for t in range(current.shape[0]):
        s, state = srm_step(current[t], state, p)
        spikes.append(s)
        vs.append(state[1])
    return torch.stack(spikes), torch.stack(vs)


def test_recursion_equals_kernel_sum():
    gen = torch.Generator().manual_seed(0)
    T, J, N = 30, 20, 16
    s_in = (torch.rand(T, J, generator=gen) < 0.3).double()
    current = s_in @ (torch.randn(N, J, generator=gen, dtype=torch.float64) * 0.6 + 0.1).T
    u_ref, s_ref = kernel_sum(current.numpy())
    s, v = run_srm(current, srm())
    assert s_ref.sum() > 50 and (s_ref.sum(0) >= 2).sum() > 5  # many neurons fire, several more than once
    np.testing.assert_array_equal(s.numpy(), s_ref)
    np.testing.assert_allclose(v.numpy(), u_ref * (1 - s_ref), atol=1e-12)  # v after the reset of both traces
    p = srm()  # the exact current-based LIF: λ_syn = e^{−1/τs}, λ_mem = e^{−1/τm}, c = ε(0)
    assert p.lam_syn == math.exp(-1 / TAU_S) and p.lam_mem == math.exp(-1 / TAU_M)
    assert p.input_scale == pytest.approx(eps(0), rel=1e-15)


def hand_backward(s_in: np.ndarray, w: np.ndarray, s: np.ndarray, dt: np.ndarray):
    """S20/S21 by hand for one layer: s_in [T, J], w [I, J], its spikes s [T, I], dt = ∂L/∂t_k at the spikes [T, I].
    Returns (∂L/∂W [I, J], ∂L/∂t_m at every input step [T, J]). All g here are ≥ 1/4 (checked), so no clamp."""
    T, I = s.shape
    dw, dtm = np.zeros_like(w), np.zeros(s_in.shape)
    for i in range(I):
        last = -1
        for k in range(T):
            if not s[k, i]:
                continue
            window = [(j, m) for m in range(last + 1, k + 1) for j in range(s_in.shape[1]) if s_in[m, j]]
            g = sum(w[i, j] * h(k - m) for j, m in window)
            assert g >= 0.25
            for j, m in window:
                dw[i, j] += eps(k - m) * dt[k, i] * (-1.0 / g)  # S21
                dtm[m, j] += w[i, j] * h(k - m) / g * dt[k, i]  # S20
            last = k
    return dw, dtm


def test_backward_equals_s20_s21_by_hand():
    T, N_batch = 8, 1
    s_in = np.zeros((T, 3))
    s_in[[0, 1, 2, 4, 5], 0] = 1
    s_in[[1, 3, 6], 1] = 1
    s_in[[2, 5], 2] = 1
    w1 = np.array([[2.0, 0.8, 0.3], [0.4, 1.5, 2.2]])
    w2 = np.array([[1.2, 1.6], [2.5, -0.4]])
    _, h1 = kernel_sum(s_in @ w1.T)
    _, h2 = kernel_sum(h1 @ w2.T)
    assert h1[:, 0].sum() >= 2 and h2.sum() >= 2  # a hidden neuron fires twice; the output fires
    targets, y = (5, 1), 0
    counts = h2.sum(0)
    target = np.array([targets[0] if c == y else targets[1] for c in range(2)])
    dt2 = h2 * (2.0 / (N_batch * T**2) * (target - counts))  # S17
    dw2, dt1_all = hand_backward(h1, w2, h2, dt2)
    dw1, _ = hand_backward(s_in, w1, h1, dt1_all * h1)

    W1 = torch.tensor(w1, requires_grad=True)
    W2 = torch.tensor(w2, requires_grad=True)
    x = torch.tensor(s_in)[:, None]
    p = srm()
    s1 = edbp_layer(x @ W1.T, x @ W1.detach().T, p, TAU_G)
    s2 = edbp_layer(s1.detach() @ W2.T, s1 @ W2.detach().T, p, TAU_G)
    np.testing.assert_array_equal(s1[:, 0].detach().numpy(), h1)
    np.testing.assert_array_equal(s2[:, 0].detach().numpy(), h2)
    from snnchip.train.edbp import spike_count_loss

    spike_count_loss(s2.sum(0), torch.tensor([y]), targets, T).backward()
    np.testing.assert_allclose(W2.grad.numpy(), dw2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(W1.grad.numpy(), dw1, rtol=1e-12, atol=1e-15)
    assert np.abs(dw1).sum() > 0 and np.abs(dw2).sum() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariant_s4_on_random_nets(seed):
    """Σ over the causal input spikes of ∂t_k/∂t_m = 1 for every output spike (S4); with the [−4, 0] clamp of
    −1/g it is min(1, 4g)."""
    gen = torch.Generator().manual_seed(seed)
    T, B, J, N = 12, 4, 24, 10
    x = (torch.rand(T, B, J, generator=gen) < 0.3).double()
    ws = [torch.rand(16, J, generator=gen, dtype=torch.float64) * 0.5,
          torch.rand(N, 16, generator=gen, dtype=torch.float64) * 0.8]
    p, checked, unclamped = srm(), 0, 0
    s_in = x
    for w in ws:
        s_in = s_in.clone().requires_grad_(True)
        s = edbp_layer(s_in.detach() @ w.T, s_in @ w.T, p, TAU_G)
        cur = (s_in.detach() @ w.T).numpy()
        for t, b, i in torch.nonzero(s.detach()).tolist():
            past = torch.nonzero(s.detach()[:t, b, i])
            last = int(past[-1]) if len(past) else -1
            g = sum(cur[m, b, i] * h(t - m) for m in range(last + 1, t + 1))
            grad = torch.zeros_like(s)
            grad[t, b, i] = -1.0  # ∂L/∂t_k = 1 (∂L/∂s = −∂L/∂t)
            (gx,) = torch.autograd.grad(s, s_in, grad, retain_graph=True)
            dtk_dtm = -(gx * s_in.detach())  # ∂t_k/∂t_m at the input spikes
            assert float(dtk_dtm.sum()) == pytest.approx(min(1.0, 4 * g), abs=1e-12)
            assert float(dtk_dtm[:last + 1].abs().sum()) == 0 and float(dtk_dtm[t + 1:].abs().sum()) == 0  # S5
            checked, unclamped = checked + 1, unclamped + (g >= 0.25)
        s_in = s.detach()
    assert checked > 30 and unclamped > 20


def edbp_spec(T: int = 5, model: str = "mlp", input_shape=(64,), hidden=(32,)):
    base = model_spec(model, input_shape, 10, T, NeuronSpec(), hidden=hidden, method="edbp")
    return configure_edbp(base, TAU_M, TAU_S, TAU_G, (5, 1))


def test_weight_norm_fold_exact_and_plain_model_equal():
    torch.manual_seed(0)
    model = build_model(edbp_spec(model="convnet", input_shape=(1, 8, 8)))
    with torch.no_grad():
        for name in ("conv1", "conv2", "out"):
            getattr(model, name).gain.mul_(torch.rand_like(getattr(model, name).gain) + 0.5)
            getattr(model, name).shift.normal_(0, 0.01)
    params = plain_parameters(model)
    for name in ("conv1", "conv2", "out"):  # S22 in float64 NumPy
        syn = getattr(model, name)
        w0 = syn.weight.detach().double().numpy().reshape(syn.weight.shape[0], -1)
        gam = syn.gain.detach().double().numpy().reshape(-1, 1)
        bet = syn.shift.detach().double().numpy().reshape(-1, 1)
        ref = gam * (w0 - w0.mean(1, keepdims=True)) / np.sqrt(w0.var(1, keepdims=True) + 1e-5) + bet
        np.testing.assert_allclose(params[name]["weight"].reshape(len(ref), -1), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(params["count"]["weight"], np.eye(10, dtype=np.float32))
    plain = from_plain(model.spec, params)
    assert "weight_norm" not in str(plain_spec(model.spec).to_dict())
    x = torch.rand(16, 1, 8, 8)
    a, b = simulate(model, x), simulate(plain, x)
    for name in a.spikes:
        assert torch.equal(a.spikes[name], b.spikes[name])
    torch.testing.assert_close(a.output, b.output, rtol=0, atol=1e-5)


def test_training_forward_equals_simulate_and_counts():
    torch.manual_seed(1)
    model = build_model(edbp_spec(T=6))
    x = torch.rand(32, 64)
    ref = simulate(model, x)
    spikes, out = forward_layers(model, x.unsqueeze(0).expand(6, *x.shape))
    for name, s in spikes.items():
        assert torch.equal(s, ref.spikes[name])
    # the readout is the cumulative spike count of the spiking output layer
    torch.testing.assert_close(ref.output, torch.cumsum(ref.spikes["out"], 0))
    torch.testing.assert_close(torch.cumsum(out, 0), ref.output)
    ev = gradient_events(model, x.unsqueeze(0).expand(6, *x.shape))
    assert ev["fc1"]["dense"] == 6 * 32 * 32 and 0 < ev["fc1"]["spikes"] <= ev["fc1"]["inputs"] <= ev["fc1"]["dense"]


def test_edbp_iteration_learns_and_only_srm():
    torch.manual_seed(0)
    model = build_model(edbp_spec())
    x, y = torch.rand(64, 64), torch.randint(0, 10, (64,))
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-3)

    def step():
        opt.step()
        opt.zero_grad()

    first, _ = run_iteration(model, x, y, "edbp", step=step)
    for _ in range(15):
        last, _ = run_iteration(model, x, y, "edbp", step=step)
    assert last < first
    assert torch.equal(model.count.weight, torch.eye(10))  # the spike-count readout stays fixed
    lif = build_model(model_spec("mlp", (64,), 10, 5, NeuronSpec(), hidden=(8,)))
    with pytest.raises(SpecError, match="edbp trains SRM"):
        run_iteration(lif, x, y, "edbp")
    with pytest.raises(SpecError, match="does not train SRM"):
        run_iteration(model, x, y, "ottt-a")
    run_iteration(model, x, y, "bptt")  # BPTT through the SRM recursion (surrogate gradient) also runs


def test_bench_rows_for_edbp_and_bptt_on_the_same_net():
    from snnchip.bench.train import benchmark

    res = benchmark("mlp", ["edbp", "bptt-srm"], [4], 16, 1, torch.device("cpu"))
    edbp, bptt = res["rows"]
    assert edbp["method"] == "edbp" and bptt["method"] == "bptt-srm" and "gradient_events" not in bptt
    ev = edbp["gradient_events"]
    assert set(ev) == {"fc1", "out"} and ev["fc1"]["dense"] == 4 * 16 * 128
