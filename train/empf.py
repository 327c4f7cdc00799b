"""EM-PF (Efficient Multi-Precision Firing, "Comprehensive Online Training and Deployment for Spiking Neural
Networks", arXiv:2410.07547): the neuron, binary synapses, SECA.

Neuron, per layer, with per-step parameters indexed by t (one value per layer and step, Eq. 5): Eq. 3 is
``snnchip.neurons.empf_step`` with input scale 1 and no reset offset; its gradients are exact,
∂s/∂m = 1[m ≥ θ] (Eq. 4) and ∂s/∂θ = −1[m ≥ θ] (Eq. 5). ReLU below is that ActFunc, ReLU(x) = x·1[x ≥ 0].

Variants (``LayerSpec.options["empf"]``):

- ``vanilla``    Eq. 3 with λ, θ fixed to the ``NeuronSpec`` values.
- ``learnable``  Eq. 3 + 5: λ[t], θ[t] learnable, shape [T] (initialised from the ``NeuronSpec``).
- ``bn``         Eq. 6: m̂[t] = α[t]·m[t] + β[t]·BN_t(m[t]), v[t] = m̂[t] − s[t], s[t] = ReLU(m̂[t] − θ[t]); one
                 BatchNorm per step (per channel), λ, θ, α, β learnable [T] (α = 0, β = 1 at start).
- ``parallel``   Algorithm 1, line 10: s[t] = ReLU(Î[t] − θ[t]), no membrane memory, so all t can run at once;
                 Î[t] = α[t]·I[t] + β[t]·BN_t(I[t]) is the bn variant's normalisation with m = I (conv → BN → act, as
                 in the paper's ResNet blocks). Without it the first layer's ReLU neurons start silent and never
                 get a gradient (measured: 10 % on digits). λ is absent (= 0).
- ``mixed``      (a spec choice, not a neuron) the paper's ResNet block (Fig. 3(b), App. A.2 "version I plus
                 version III"): the first neuron of each residual block (``options["block"] == "first"``) is
                 ``parallel``, every other neuron ``bn``: the paper's blocks also have a BN2d after each BConv,
                 which our specs can only express as membrane BN.
- ``folded``     what every variant folds into for export (Eq. 7–8, ``model.fold_empf_bn``): ``empf_step`` with
                 λ̂, the input scale a, θ̂ and the reset offset r per step and channel, shape [T, C].

Folding the BN version (eval mode, running statistics μ_t, σ²_t; γ, b the BN affine): Eq. 6 gives
m̂ = A·m + D with A[t] = α[t] + β[t]·γ/√(σ²_t + ε) and D[t] = β[t]·(b − γ·μ_t/√(σ²_t + ε)) (Eq. 7; the paper
prints −β(γμ/√(σ²+ε) + b): the sign of b there is a typo, expand β·BN_t(m) to see it). Writing m' = m̂ − D:
λ̂ = A·λ, a = A, θ̂ = θ − D, r = D (Eq. 8), and the spikes and v are unchanged.

Binary synapses (BConv/BLinear, Eq. 3–4): the forward weight is sign(W_f) ∈ {−1, +1} exactly (sign(0) = +1),
the gradient is straight-through, clipped: ∂W/∂W_f = 1[|W_f| ≤ 1]. The variants with a membrane BN (bn,
parallel, mixed) scale it per output channel k as the BConv the paper cites does (Liu et al. 2021, "How do Adam
and training strategies help BNNs optimization", arXiv:2106.11309): W_k = κ_k·sign(W_f,k), κ_k = mean|W_f,k|
(a constant for the gradient). Without κ the membrane of a ±1 convolution over a fan-in of n is about √n times
its input, and the α·m term of Eq. 6 carries that gain into every next layer: measured on the ResNet-18 at
3×32×32 after 40 steps, graded spikes grew from 4 (conv1) to 10^8 (s4b2a); with κ they peaked at 157–172.

SECA (Eq. 9–10), on the input current of a conv layer, weights shared over time:
SECA-I(I) = σ(Conv1d_K(sign(GAP(I)))) ⊙ I;  SECA-II(I) = SECA-I(I + BN2d(BConv2d(I))) (3×3, C → C).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from snnchip.errors import SpecError
from snnchip.neurons import empf_step
from snnchip.spec import LayerSpec, NetworkSpec, NeuronKind, NeuronSpec

VARIANTS = ("vanilla", "learnable", "bn", "parallel", "mixed")
NEURON_VARIANTS = ("vanilla", "learnable", "bn", "parallel", "folded")
SECA_MODES = ("none", "i", "ii")
FOLDED_KEYS = ("lam", "theta", "input_scale", "reset_offset")
SECA_K = 3
SCALED_BINARY = ("bn", "parallel", "mixed")  # variants whose binary weights carry κ_k (module doc)


class _SignSTE(torch.autograd.Function):
    """sign(w) forward (sign(0) = +1), gradient g·1[|w| ≤ 1] (EM-PF Eq. 4, BConv of Liu et al. 2021)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def binarize(w: torch.Tensor) -> torch.Tensor:
    """W = sign(W_f) with the clipped straight-through gradient (Eq. 3–4)."""
    return _SignSTE.apply(w)


def binarize_scaled(w: torch.Tensor) -> torch.Tensor:
    """W_k = κ_k·sign(W_f,k), κ_k = mean|W_f,k| over output channel k (dim 0), κ without gradient (Liu et al. 2021)."""
    return w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True) * binarize(w)


def relu_ge(x: torch.Tensor) -> torch.Tensor:
    """ActFunc of Eq. 3: x where x ≥ 0, else 0, with the exact gradient 1[x ≥ 0] (Eq. 4; torch's ReLU gives 0 at 0)."""
    return x * (x >= 0).to(x.dtype)


def _fire(m: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """s = ReLU(m − θ) (Eq. 3) with the gradients of Eq. 4–5."""
    return relu_ge(m - theta)


class SECA(nn.Module):
    """Spiking efficient channel attention (Eq. 9–10), one module per layer, shared over time steps."""

    def __init__(self, channels: int, mode: str):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv1d(1, 1, SECA_K, padding=SECA_K // 2, bias=False)
        if mode == "ii":
            self.bconv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(channels)

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        z = current
        if self.mode == "ii":
            z = current + self.bn(F.conv2d(current, binarize(self.bconv.weight), padding=1))
        score = torch.sigmoid(self.conv(binarize(z.mean(dim=(2, 3))).unsqueeze(1))).squeeze(1)
        return score[:, :, None, None] * z


class EMPF(nn.Module):
    """One EM-PF layer (variants in the module doc); ``step`` is the neuron, written once."""

    def __init__(self, neuron: NeuronSpec, variant: str, T: int, shape: tuple[int, ...]):
        super().__init__()
        if variant not in NEURON_VARIANTS:
            raise SpecError(f"unknown EM-PF neuron variant {variant!r}; valid: {', '.join(NEURON_VARIANTS)}")
        self.variant, self.T, self.channels = variant, T, shape[0]
        self.channel_view = (-1,) + (1,) * (len(shape) - 1)  # [C] -> broadcast over (C, H, W)
        per_step = (T,) if variant != "folded" else (T, self.channels)
        lam, theta = torch.full(per_step, float(neuron.lam)), torch.full(per_step, float(neuron.theta))
        if variant == "vanilla":
            self.register_buffer("lam", lam)
            self.register_buffer("theta", theta)
        else:
            self.theta = nn.Parameter(theta)
            if variant != "parallel":
                self.lam = nn.Parameter(lam)
        if variant in ("bn", "parallel"):
            self.alpha = nn.Parameter(torch.zeros(T))
            self.beta = nn.Parameter(torch.ones(T))
            bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            self.bn = nn.ModuleList(bn(self.channels) for _ in range(T))
        if variant == "folded":
            self.input_scale = nn.Parameter(torch.ones(per_step))
            self.reset_offset = nn.Parameter(torch.zeros(per_step))

    def _at(self, p: torch.Tensor, t: int) -> torch.Tensor:
        if t >= self.T:
            raise SpecError(f"EM-PF has per-step parameters for T = {self.T} steps; step {t + 1} is beyond them")
        return p[t] if p.dim() == 1 else p[t].view(self.channel_view)

    def step(self, current: torch.Tensor, v: torch.Tensor | None, t: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(I[t], v[t−1], t) -> (s[t], v[t]): ``empf_step`` with this variant's parameters of step t and the exact
        gradient of ``relu_ge``; ``v=None`` means v[0] = 0 (Eq. 3, 6, 8; parallel: no state)."""
        folded = self.variant == "folded"
        _, s, v = empf_step(0.0 if v is None else v, current, lam=0.0 if v is None else self._at(self.lam, t),
                            scale=self._at(self.input_scale, t) if folded else 1.0, theta=self._at(self.theta, t),
                            offset=self._at(self.reset_offset, t) if folded else 0.0, fire=_fire,
                            normalize=self._membrane_bn(t) if self.variant in ("bn", "parallel") else None)
        return s, None if self.variant == "parallel" else v

    def _membrane_bn(self, t: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """m -> m̂ = α[t]·m + β[t]·BN_t(m) (Eq. 6)."""
        return lambda m: self._at(self.alpha, t) * m + self._at(self.beta, t) * self.bn[t](m)

    def fire_all(self, current: torch.Tensor) -> torch.Tensor:
        """Parallel variant in eval mode over all steps at once: current [T, B, *shape] -> s[t] = ReLU(a[t]·I[t] − θ̂[t])
        with the folded per-step scale and threshold (BN with running statistics, Eq. 7–8 with λ = 0)."""
        if self.variant != "parallel":
            raise SpecError(f"only the parallel EM-PF variant runs all steps at once, not {self.variant!r}")
        steps = current.shape[0]
        self._at(self.theta, steps - 1)
        f, shape = self.folded(), (steps, 1, *self.channel_view)
        return relu_ge(f["input_scale"][:steps].view(shape) * current - f["theta"][:steps].view(shape))

    @torch.no_grad()
    def folded(self) -> dict[str, torch.Tensor]:
        """λ̂, θ̂, input scale a, reset offset r, each [T, C], of the ``folded`` form equal to this layer in
        eval mode (Eq. 7–8, signs as derived in the module doc)."""
        if self.variant == "folded":
            return {k: getattr(self, k).detach().clone() for k in FOLDED_KEYS}
        ones = torch.ones(self.T, self.channels, device=self.theta.device)
        lam = torch.zeros_like(ones) if self.variant == "parallel" else self.lam[:, None] * ones
        theta = self.theta[:, None] * ones
        if self.variant not in ("bn", "parallel"):
            return {"lam": lam, "theta": theta, "input_scale": ones, "reset_offset": torch.zeros_like(ones)}
        gain = torch.stack([bn.weight / torch.sqrt(bn.running_var + bn.eps) for bn in self.bn])  # γ/√(σ²+ε)
        shift = torch.stack([bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
                             for bn in self.bn])  # b − γμ/√(σ²+ε)
        scale = self.alpha[:, None] + self.beta[:, None] * gain  # A[t]
        offset = self.beta[:, None] * shift  # D[t]
        return {"lam": scale * lam, "theta": theta - offset, "input_scale": scale, "reset_offset": offset}


def configure_empf(spec: NetworkSpec, variant: str = "bn", binary_first_last: bool = False,
                   seca: str = "none") -> NetworkSpec:
    """The EM-PF version of a zoo spec: every spiking neuron becomes ``empf`` (λ, θ kept as initial values),
    synaptic layers binary except the first and the last (unless ``binary_first_last``; scaled by κ_k in the
    variants with a membrane BN, module doc), SECA on every conv
    layer but the first (``seca`` i | ii). Weight standardisation and post-neuron scales (VGG) are dropped:
    a scale folded into a ±1 weight would break it, and membrane BN / learnable θ do their job."""
    if variant not in VARIANTS:
        raise SpecError(f"unknown EM-PF variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if seca not in SECA_MODES:
        raise SpecError(f"unknown SECA mode {seca!r}; valid: {', '.join(SECA_MODES)}")
    synaptic = [la.name for la in spec.layers if la.synaptic]
    convs = [la.name for la in spec.layers if la.op == "conv2d"]
    if seca != "none" and len(convs) < 2:
        raise SpecError(f"SECA (Eq. 9–10) needs a conv model with at least two conv layers; {spec.model!r} has "
                        f"{len(convs)}")
    layers = []
    for la in spec.layers:
        options = {k: v for k, v in la.options.items() if k not in ("weight_std", "scale")}
        neuron = la.neuron
        if la.synaptic and (binary_first_last or la.name not in (synaptic[0], synaptic[-1])):
            options["binary"] = True
            if variant in SCALED_BINARY:
                options["binary_scale"] = True
        if neuron is not None and neuron.spiking:
            neuron = NeuronSpec(kind=NeuronKind.EMPF, lam=neuron.lam, theta=neuron.theta)
            options["empf"] = variant if variant != "mixed" else (
                "parallel" if la.options.get("block") == "first" else "bn")
            if seca != "none" and la.op == "conv2d" and la.name != convs[0]:
                options["seca"] = seca
        layers.append(dataclasses.replace(la, neuron=neuron, options=options))
    return dataclasses.replace(spec, layers=tuple(layers))


def layer_variant(layer: LayerSpec) -> str:
    return layer.options.get("empf", "vanilla")
