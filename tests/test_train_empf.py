"""EM-PF in snnchip.train against the EM-PF paper ("Comprehensive Online Training and Deployment for Spiking Neural
Networks", arXiv:2410.07547), references written here from the equations: Eq. 3 (neuron), Eq. 4 (binary STE, exact
surrogate), Eq. 6–8 (membrane BN and its folding), Theorem 4.2 (online = STBP in its two cases), the parallel
version, random BP, SECA (Eq. 9)."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnchip.bench.train import saved_tensor_peak
from snnchip.cli import bench
from snnchip.errors import SpecError
from snnchip.spec import NeuronSpec
from snnchip.train import (
    build_model,
    configure_empf,
    fold_empf_bn,
    from_plain,
    gradients,
    model_spec,
    parameter_memory_bits,
    plain_parameters,
    simulate,
    simulate_parallel,
    vgg,
)
from snnchip.train.model import ChannelScale
from snnchip.train.rules import run_iteration

B, N_IN, N_H, N_OUT, T = 6, 5, 7, 3, 4


def mlp_empf(variant, lam=0.5, theta=1.0, T=T, hidden=(N_H, N_H), seed=0):
    spec = configure_empf(model_spec("mlp", (N_IN,), N_OUT, T, NeuronSpec(lam=lam, theta=theta), hidden=hidden),
                          variant)
    torch.manual_seed(seed)
    return build_model(spec)


def conv_empf(variant, lam=0.5, seed=0, seca="none"):
    spec = configure_empf(model_spec("convnet", (1, 8, 8), N_OUT, T, NeuronSpec(lam=lam)), variant, seca=seca)
    torch.manual_seed(seed)
    return build_model(spec)


def randomize(model, seed=1):
    """Random per-step λ, θ, α, β and BN affine/running statistics (not the values at initialisation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("empf."):
                leaf = name.rsplit(".", 1)[1]
                if leaf == "lam":
                    p.copy_(torch.rand(p.shape, generator=g))
                elif leaf == "theta":
                    p.copy_(0.2 + torch.rand(p.shape, generator=g))
                else:  # alpha, beta, BN weight/bias
                    p.copy_(torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + 2 * torch.rand(b.shape, generator=g))
    return model


def relu_ge(x):
    return torch.where(x >= 0, x, torch.zeros_like(x))


def sign(w):
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def binary_weight(w, options):
    """The forward weight of a binary layer by hand: sign(W), times κ_k = the mean of |W| over each output channel's
    fan-in with ``binary_scale``."""
    w = w.detach()
    if not options.get("binary_scale"):
        return sign(w)
    kappa = torch.stack([row.abs().sum() / row.numel() for row in w])
    return kappa.view((-1,) + (1,) * (w.dim() - 1)) * sign(w)


def data(seed=0, shape=(N_IN,)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, *shape, generator=g), torch.randint(0, N_OUT, (B,), generator=g)


# ------------------------------------------------------------------------------------------- Eq. 6–8: folding
def bn_reference(model, x):
    """Eq. 6 by hand in eval mode for an MLP: m = λ[t]v + I, m̂ = α[t]m + β[t]·(γ(m − μ_t)/√(σ_t² + ε) + b),
    s = ReLU(m̂ − θ[t]), v = m̂ − s; returns the per-layer spikes [T, B, N] and Σ_{τ≤t} o[τ]."""
    layers = [la for la in model.spec.layers if la.synaptic]
    v = {la.name: None for la in layers}
    spikes, outs = {la.name: [] for la in layers[:-1]}, []
    for t in range(model.spec.T):
        h = x
        for la in layers:
            syn = getattr(model, la.name)
            w = syn.weight.detach()
            w = binary_weight(w, la.options) if la.options.get("binary") else w
            current = h @ w.T + syn.bias.detach()
            if la.neuron.kind == "readout":
                outs.append(current)
                break
            n = model.empf[la.name]
            bn = n.bn[t]
            m = current if v[la.name] is None else n.lam[t].detach() * v[la.name] + current
            norm = bn.weight.detach() * (m - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) + bn.bias.detach()
            m_hat = n.alpha[t].detach() * m + n.beta[t].detach() * norm
            s = relu_ge(m_hat - n.theta[t].detach())
            v[la.name] = m_hat - s
            spikes[la.name].append(s)
            h = s
    return {k: torch.stack(s) for k, s in spikes.items()}, torch.cumsum(torch.stack(outs), 0)


def assert_same_run(a, b, tol=1e-5):
    torch.testing.assert_close(a.output, b.output, atol=tol, rtol=tol)
    assert a.spikes.keys() == b.spikes.keys()
    for name in a.spikes:
        torch.testing.assert_close(a.spikes[name], b.spikes[name], atol=tol, rtol=tol)


def test_bn_forward_is_eq6_and_folding_is_exact_mlp():
    model = randomize(mlp_empf("bn")).eval()
    x, _ = data()
    x = 3 * x
    res = simulate(model, x)
    ref_spikes, ref_out = bn_reference(model, x)
    torch.testing.assert_close(res.output, ref_out, atol=1e-5, rtol=1e-5)
    for name, s in ref_spikes.items():
        torch.testing.assert_close(res.spikes[name], s, atol=1e-5, rtol=1e-5)
        assert 0 < (s > 0).float().mean() < 1  # firing and silence both occur
    assert_same_run(simulate(fold_empf_bn(model), x), res)
    assert_same_run(simulate(from_plain(model.spec, plain_parameters(model)), x), res)


@pytest.mark.parametrize("variant", ["bn", "learnable", "parallel", "vanilla"])
def test_folding_is_exact_conv_after_training_steps(variant):
    model = randomize(conv_empf(variant))
    x, y = data(shape=(1, 8, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):  # running statistics and parameters move away from their initial values
        run_iteration(model, x, y, "empf", step=lambda: (opt.step(), opt.zero_grad()))
    res = simulate(model, x)
    assert_same_run(simulate(fold_empf_bn(model), x), res)
    assert_same_run(simulate(from_plain(model.spec, plain_parameters(model)), x), res)
    assert sum(float((s > 0).float().mean()) for s in res.spikes.values()) > 0


def test_plain_parameter_keys_and_shapes_for_empf_layers():
    model = conv_empf("bn")
    p = plain_parameters(model)
    assert set(p["conv1"]) == {"weight", "bias", "lam", "theta", "input_scale", "reset_offset"}
    assert all(p["conv2"][k].shape == (T, 32) for k in ("lam", "theta", "input_scale", "reset_offset"))
    assert set(p["out"]) == {"weight", "bias"}
    # binary hidden layer, bn variant: ±1, its κ_k = mean |W_f| of output channel k moved into the input scale
    # (a·(κ S x + b) = (a·κ)·(S x + b/κ)), the bias divided by it
    w = p["conv2"]["weight"]
    assert np.array_equal(w, np.where(model.conv2.weight.detach().numpy() >= 0, 1.0, -1.0))
    kappa = model.conv2.weight.detach().abs().mean(dim=(1, 2, 3)).numpy()
    folded = model.empf["conv2"].folded()
    np.testing.assert_allclose(p["conv2"]["input_scale"], folded["input_scale"].detach().numpy() * kappa, rtol=1e-6)
    np.testing.assert_allclose(p["conv2"]["bias"], model.conv2.bias.detach().numpy() / kappa, rtol=1e-6)
    assert len(set(p["conv1"]["weight"].flatten().tolist())) > 2  # first layer full precision


# ---------------------------------------------------------------------------------------- Theorem 4.2
def empf_reference_grads(model, x, y, detach):
    """Eq. 3 unrolled with autograd (same per-step loss Σ_t CE(o[t], y)/T as the online rule); ``detach`` cuts
    v[t−1] (online), otherwise full STBP. Returns (grads by parameter name, ∂L/∂m[t] per layer)."""
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    layers = [la for la in model.spec.layers if la.synaptic]
    v, ms, loss = {}, {la.name: [] for la in layers}, 0.0
    for t in range(model.spec.T):
        h = x
        for la in layers:
            w = params[f"{la.name}.weight"]
            if la.options.get("binary"):  # sign forward, gradient 1[|W| ≤ 1] (Eq. 4)
                w = w + (torch.where(w >= 0, 1.0, -1.0) - w).detach()
                w = torch.where(params[f"{la.name}.weight"].abs() <= 1, w, w.detach())
            current = h @ w.T + params[f"{la.name}.bias"]
            if la.neuron.kind == "readout":
                loss = loss + F.cross_entropy(current, y) / model.spec.T
                break
            prev = v.get(la.name)
            if prev is not None and detach:
                prev = prev.detach()
            m = current if prev is None else params[f"empf.{la.name}.lam"][t] * prev + current
            m.retain_grad()
            ms[la.name].append(m)
            s = relu_ge(m - params[f"empf.{la.name}.theta"][t])
            v[la.name] = m - s
            h = s
    loss.backward()
    return {n: p.grad for n, p in params.items()}, {k: [m.grad for m in v_] for k, v_ in ms.items()}


def theorem_net(case):
    model = mlp_empf("learnable", theta=0.3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.empf["fc1"].lam.copy_(torch.rand(T, generator=g))
        model.empf["fc2"].lam.copy_(torch.rand(T, generator=g))
        model.empf["fc2"].theta.copy_(0.1 + torch.rand(T, generator=g))
        sign = 1.0 if case == "fire" else -1.0
        for name in ("fc1", "fc2"):
            layer = getattr(model, name)
            layer.weight.copy_(sign * (0.05 + 0.9 * torch.rand(layer.weight.shape, generator=g)))
            layer.bias.fill_(sign * 0.5)
    return model


def test_theorem_4_2_case_i_always_firing():
    """I[1] ≥ θ[1], I[t] ≥ θ[t] − λ[t]θ[t−1]: every neuron fires every step, ∂v/∂m = 1 − ∂s/∂m = 0, so the online
    gradient equals STBP's for weights and λ. θ[t] also enters v[t] = m − (m − θ[t]) = θ[t] directly, a path
    outside the ∂L/∂m chain of the theorem: STBP adds λ[t+1]·Σ ∂L/∂m[t+1] to ∂L/∂θ[t]; checked exactly."""
    model = theorem_net("fire")
    x, y = data()
    res = simulate(model, x)
    assert all(bool((s > 0).all()) for s in res.spikes.values())  # the case's condition holds
    online = gradients(model, x, y, "empf")
    ref_online, _ = empf_reference_grads(model, x, y, detach=True)
    stbp, dm = empf_reference_grads(model, x, y, detach=False)
    for name in online:
        torch.testing.assert_close(online[name], ref_online[name], atol=1e-6, rtol=1e-5)
        if not name.endswith("theta"):
            torch.testing.assert_close(online[name], stbp[name], atol=1e-6, rtol=1e-5)
    for layer in ("fc1", "fc2"):
        lam = model.empf[layer].lam.detach()
        extra = torch.stack([lam[t + 1] * dm[layer][t + 1].sum() for t in range(T - 1)] + [torch.tensor(0.0)])
        torch.testing.assert_close(stbp[f"empf.{layer}.theta"], online[f"empf.{layer}.theta"] + extra,
                                   atol=1e-6, rtol=1e-5)
    assert online["fc1.weight"].abs().sum() > 0


def test_theorem_4_2_case_ii_never_firing():
    model = theorem_net("silent")
    x, y = data()
    assert all(bool((s == 0).all()) for s in simulate(model, x).spikes.values())
    online = gradients(model, x, y, "empf")
    stbp, _ = empf_reference_grads(model, x, y, detach=False)
    for name in online:
        torch.testing.assert_close(online[name], stbp[name], atol=1e-6, rtol=1e-5)
    assert online["out.bias"].abs().sum() > 0


def test_online_differs_from_stbp_on_a_random_net():
    model = randomize(mlp_empf("learnable"), seed=3)
    with torch.no_grad():
        model.fc1.weight.mul_(3.0)
    x, y = data()
    spikes = simulate(model, x).spikes["fc1"]
    assert 0 < (spikes > 0).float().mean() < 1
    online = gradients(model, x, y, "empf")
    ref_online, _ = empf_reference_grads(model, x, y, detach=True)
    stbp, _ = empf_reference_grads(model, x, y, detach=False)
    for name in online:  # the engine's online gradient is Eq. 4–5 with v[t−1] detached ...
        torch.testing.assert_close(online[name], ref_online[name], atol=1e-6, rtol=1e-5)
    assert (online["fc1.weight"] - stbp["fc1.weight"]).abs().max() > 1e-4  # ... which is not STBP in general


# ------------------------------------------------------------------------------------- parallel version
def test_parallel_equals_sequential_with_lambda_zero():
    """The parallel neuron is the bn neuron without membrane memory: equal to it when λ = 0, step by step and with
    all steps at once; and the same online gradients."""
    seq = randomize(conv_empf("bn", lam=0.0))
    par = conv_empf("parallel")
    with torch.no_grad():
        seq.empf["conv1"].lam.zero_()
        seq.empf["conv2"].lam.zero_()
    par.load_state_dict({k: v for k, v in seq.state_dict().items() if not k.endswith(".lam")}, strict=True)
    x, y = data(shape=(1, 8, 8))
    x = 2 * x
    a, b, c = simulate(seq, x), simulate(par, x), simulate_parallel(par, x)
    assert_same_run(a, b)
    assert_same_run(a, c)
    assert 0 < (a.spikes["conv1"] > 0).float().mean() < 1
    ga, gb = gradients(seq, x, y, "empf"), gradients(par, x, y, "empf")
    for name in gb:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-6, rtol=1e-5)
    with pytest.raises(SpecError, match="parallel"):
        simulate_parallel(seq, x)


# --------------------------------------------------------------------------------------- binary synapses
def test_binary_layer_uses_sign_and_clips_the_straight_through_gradient():
    model = mlp_empf("learnable", hidden=(N_H, N_H))
    fc2 = model.fc2
    assert fc2.binary and not model.fc1.binary and not model.out.binary  # first and last full precision
    with torch.no_grad():
        fc2.weight.copy_(torch.randn(fc2.weight.shape, generator=torch.Generator().manual_seed(0)) * 1.5)
    x = torch.rand(B, N_H)
    out = fc2(x)
    sign = torch.where(fc2.weight.detach() >= 0, 1.0, -1.0)
    assert set(fc2.plain_weight().detach().unique().tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(out, x @ sign.T + fc2.bias.detach())
    out.sum().backward()
    inside = fc2.weight.detach().abs() <= 1
    assert (~inside).any() and inside.any()
    assert (fc2.weight.grad[~inside] == 0).all()
    torch.testing.assert_close(fc2.weight.grad[inside], x.sum(0).expand_as(fc2.weight)[inside])


def test_scaled_binary_layer_multiplies_sign_by_the_channel_mean_and_keeps_the_clipped_gradient():
    """BConv of Liu et al. 2021 (the bn/parallel/mixed variants): forward κ_k·sign(W_k), κ_k = mean|W_k| without a
    gradient, so ∂L/∂W_kj = κ_k·(∂L/∂W'_kj)·1[|W_kj| ≤ 1] with W' the applied weight. Plain ±1 for the others."""
    assert not mlp_empf("learnable").fc2.binary_scale
    model = mlp_empf("bn")
    fc2 = model.fc2
    assert fc2.binary_scale and not model.fc1.binary and not model.out.binary
    with torch.no_grad():
        fc2.weight.copy_(torch.randn(fc2.weight.shape, generator=torch.Generator().manual_seed(0)) * 1.5)
    x = torch.rand(B, N_H)
    out = fc2(x)
    kappa = fc2.weight.detach().abs().sum(1) / N_H
    torch.testing.assert_close(out, x @ (kappa[:, None] * sign(fc2.weight.detach())).T + fc2.bias.detach())
    out.sum().backward()
    inside = fc2.weight.detach().abs() <= 1
    assert (~inside).any() and inside.any() and (fc2.weight.grad[~inside] == 0).all()
    torch.testing.assert_close(fc2.weight.grad, (kappa[:, None] * x.sum(0)[None, :]) * inside)


def test_binary_first_last_and_parameter_memory():
    spec = configure_empf(model_spec("mlp", (N_IN,), N_OUT, T, NeuronSpec(), hidden=(N_H,)), "vanilla",
                          binary_first_last=True)
    model = build_model(spec)
    assert model.fc1.binary and model.out.binary
    weights = N_IN * N_H + N_H * N_OUT
    biases = N_H + N_OUT
    mem = parameter_memory_bits(model)
    assert mem["float_bits"] == 32 * (weights + biases) and mem["binary_bits"] == weights + 32 * biases


# ----------------------------------------------------------------------------------- random BP, SECA, misc
def test_random_bp_backward_at_one_step():
    model = conv_empf("bn")
    x, y = data(shape=(1, 8, 8))
    calls = []
    run_iteration(model, x, y, "empf-random-bp", backward=lambda loss: (calls.append(1), loss.backward()),
                  rng=random.Random(0))
    assert len(calls) == 1
    calls.clear()
    run_iteration(model, x, y, "empf", backward=lambda loss: (calls.append(1), loss.backward()))
    assert len(calls) == T


def test_seca_i_is_eq9_and_shared_over_time():
    model = conv_empf("bn", seca="i")
    syn = model.conv2
    assert model.conv1.seca is None and syn.seca is not None
    h = torch.rand(B, 16, 4, 4)
    current = F.conv2d(h, binary_weight(syn.weight, {"binary_scale": True}), syn.bias, padding=1)
    gap = torch.where(current.mean(dim=(2, 3)) >= 0, 1.0, -1.0)
    score = torch.sigmoid(F.conv1d(gap.unsqueeze(1), syn.seca.conv.weight, padding=1)).squeeze(1)
    torch.testing.assert_close(syn(h), score[:, :, None, None] * current)
    with pytest.raises(SpecError, match="SECA"):
        plain_parameters(model)


def test_empf_online_memory_does_not_grow_with_T():
    x, y = torch.rand(4, N_IN), torch.tensor([0, 1, 2, 0])
    for method in ("empf", "empf-random-bp"):
        peaks = [saved_tensor_peak(mlp_empf("bn", T=steps), x, y, method, steps, rng=random.Random(0))
                 for steps in (2, 8)]
        assert peaks[0] == peaks[1] > 0


def test_rules_refuse_the_wrong_neuron():
    x, y = data()
    with pytest.raises(SpecError, match="LIF"):
        gradients(mlp_empf("bn"), x, y, "ottt-a")
    with pytest.raises(SpecError, match="EM-PF"):
        gradients(build_model(model_spec("mlp", (N_IN,), N_OUT, T, NeuronSpec())), x, y, "empf")
    with pytest.raises(SpecError, match="per-step"):
        simulate(mlp_empf("bn"), torch.rand(T + 1, B, N_IN))


def test_snn_train_empf_and_bench(tmp_path, capsys):
    from snnchip.cli import train as snn_train

    assert snn_train(["--model", "convnet", "--method", "empf", "--random-bp", "--seca", "ii", "--T", "2",
                      "--epochs", "1", "--max-steps", "2", "--batch-size", "32", "--quiet", "--out",
                      str(tmp_path / "run")]) == 0
    assert "parameter memory" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["method"] == "empf-random-bp" and metrics["parameter_memory_bits"]["ratio"] > 1
    out = tmp_path / "b.json"
    assert bench(["train", "--methods", "empf,empf-parallel-random-bp", "--T", "2", "--batch-size", "8",
                  "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {r["method"] for r in result["rows"]} == {"empf", "empf-parallel-random-bp"}
    assert result["inference"][0]["parallel_s"] > 0


def test_vgg_from_the_zoo_with_empf_neurons():
    spec = configure_empf(vgg((2, 8, 8), N_OUT, T, NeuronSpec(), config=(4, "M", 6, 6)), "bn", seca="ii")
    assert all("weight_std" not in la.options and "scale" not in la.options for la in spec.layers)
    assert [la.name for la in spec.layers if la.options.get("seca")] == ["conv2", "conv3"]
    torch.manual_seed(0)
    model = randomize(build_model(spec))
    x, y = data(shape=(2, 8, 8))
    assert gradients(model, x, y, "empf")["conv2.seca.conv.weight"].abs().sum() > 0
    plain = configure_empf(vgg((2, 8, 8), N_OUT, T, NeuronSpec(), config=(4, "M", 6, 6)), "bn")
    torch.manual_seed(0)
    model = randomize(build_model(plain)).eval()
    assert_same_run(simulate(fold_empf_bn(model), x), simulate(model, x))


# ------------------------------------------------------------------------- ResNet-18 (options-based shortcuts)
def resnet_reference(model, x):
    """Every layer of the small ResNet by hand (bn/parallel EM-PF, Eq. 6, eval mode), the block's second conv adding
    the block input through identity or sign(W_sc) 1×1 (stride 2); returns Σ_{τ≤t} o[τ]."""
    spec, outs_t, v = model.spec, [], {}
    for t in range(spec.T):
        h, outs = x, {}
        for la in spec.layers:
            op = getattr(model, la.name)
            if la.op == "conv2d":
                w = binary_weight(op.weight, la.options) if la.options.get("binary") else op.weight
                cur = F.conv2d(h, w, op.bias, la.effective_stride, la.padding)
                src = la.options.get("shortcut")
                if src is not None:
                    sc = model.shortcuts[la.name]
                    cur = cur + (outs[src] if isinstance(sc, torch.nn.Identity) else
                                 F.conv2d(outs[src], binary_weight(sc.weight, la.options), None, sc.stride))
                n = model.empf[la.name]
                m = cur if n.variant == "parallel" or la.name not in v else n.lam[t] * v[la.name] + cur
                m = n.alpha[t] * m + n.beta[t] * F.batch_norm(m, n.bn[t].running_mean, n.bn[t].running_var,
                                                              n.bn[t].weight, n.bn[t].bias, eps=n.bn[t].eps)
                h = relu_ge(m - n.theta[t])
                v[la.name] = m - h
            elif la.op == "linear":
                outs_t.append(F.linear(h, op.weight, op.bias))
            else:
                h = op(h)
            outs[la.name] = h
    return torch.cumsum(torch.stack(outs_t), 0)


def test_resnet18_mixed_blocks_follow_the_equations_and_fold():
    from snnchip.train.zoo import resnet18

    spec = configure_empf(resnet18((3, 8, 8), N_OUT, 2, NeuronSpec(), widths=(4, 6, 6, 8)), "mixed")
    variants = {la.name: la.options.get("empf") for la in spec.layers if la.neuron and la.neuron.spiking}
    assert variants["s1b1a"] == "parallel" and variants["s1b1b"] == "bn" and variants["conv1"] == "bn"
    torch.manual_seed(0)
    model = randomize(build_model(spec)).eval().double()  # float64: 18 layers amplify float32 rounding near θ
    assert isinstance(model.shortcuts["s1b1b"], torch.nn.Identity) and model.shortcuts["s2b1b"].binary
    x = 3 * torch.rand(2, 3, 8, 8, dtype=torch.float64)
    res = simulate(model, x)
    with torch.no_grad():
        torch.testing.assert_close(res.output, resnet_reference(model, x), atol=1e-9, rtol=1e-9)
    assert_same_run(simulate(fold_empf_bn(model), x), res, tol=1e-9)
    plain = from_plain(model.spec, plain_parameters(model))  # float32 export: keys and shapes load strictly
    kappa = model.s2b1b.plain_weight().abs().amax(dim=(1, 2, 3))  # the layer's κ_k, moved into its input scale
    torch.testing.assert_close(plain.shortcuts["s2b1b"].plain_weight(),
                               (model.shortcuts["s2b1b"].plain_weight() / kappa[:, None, None, None]).float())
    assert plain_parameters(model)["s2b1b"]["shortcut_weight"].shape == (6, 4, 1, 1)
    # an identity shortcut becomes the channel scale 1/κ_k: I = κ(S x + b/κ + h/κ), and every binary layer is ±1
    kappa = model.s1b1b.plain_weight().abs().amax(dim=(1, 2, 3))
    assert isinstance(plain.shortcuts["s1b1b"], ChannelScale)
    torch.testing.assert_close(plain.shortcuts["s1b1b"].scale, (1 / kappa).float())
    assert all(set(getattr(plain, la.name).plain_weight().abs().unique().tolist()) == {1.0}
               for la in spec.layers if la.options.get("binary"))
    assert plain_parameters(plain).keys() == plain_parameters(model).keys()  # a plain model's plain form loads too
    got = simulate(plain.double(), x)
    assert all(float((got.spikes[k] - res.spikes[k]).abs().max()) < 1e-5 for k in res.spikes)
    xs = 3 * torch.rand(16, 3, 8, 8, dtype=torch.float64)  # train-mode BN over 2 samples silences the last stage
    grads = gradients(model.train(), xs, torch.arange(16) % N_OUT, "empf")
    assert grads["shortcuts.s2b1b.weight"].abs().sum() > 0


def test_resnet18_parameter_memory_cifar():
    from snnchip.train.zoo import resnet18

    model = build_model(configure_empf(resnet18((3, 32, 32), 10, 4, NeuronSpec()), "mixed"))
    mem = parameter_memory_bits(model)
    assert 10 < mem["ratio"] < 32  # ≈ 15× in the paper (Sec. 5.1)


@pytest.mark.parametrize("seca", ["none", "ii"])
def test_batch_statistics_start_from_the_calibration_batch(seca):
    """``init_batch_statistics``: every BatchNorm's running mean and (unbiased) variance are those of what it received
    in one train-mode pass over the batch (averaged over its calls: SECA-II's BN runs at every step), computed here
    from hooks on its inputs; momentum and mode are restored, and the parameters are untouched."""
    from snnchip.train.rate_init import init_batch_statistics

    model = conv_empf("bn", seca=seca).eval()
    before = {k: v.clone() for k, v in model.named_parameters()}
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    seen = {n: [] for n in norms}
    hooks = [m.register_forward_hook(lambda m, inp, out, n=n: seen[n].append(inp[0].detach()))
             for n, m in norms.items()]
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    assert init_batch_statistics(model, x) == len(norms) > 0
    for h in hooks:
        h.remove()
    for n, m in norms.items():
        dims = [0] + list(range(2, seen[n][0].dim()))
        mean = torch.stack([i.mean(dims) for i in seen[n]]).mean(0)
        var = torch.stack([i.var(dims, unbiased=True) for i in seen[n]]).mean(0)
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(m.running_var, var, rtol=1e-4, atol=1e-6)
        assert m.momentum == 0.1
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())
