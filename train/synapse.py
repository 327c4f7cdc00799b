"""Synaptic ops (linear, conv2d) with optional scaled weight standardisation, and the shape ops.

Scaled weight standardisation (OTTT supplement, Eq. 6, as in the OTTT code):
    Ŵ_i = gain_i · (W_i − mean(W_i)) / sqrt(var(W_i)·N + ε),   N = fan-in, statistics along the input dims.
``plain_weight()`` returns Ŵ, the weight the layer really applies; export folds it away.
``options["weight_norm"]`` (event-driven BP, S22): Ŵ_k = γ_k·(W_k − E[W_k])/sqrt(Var[W_k] + ε) + β_k per output
channel k (biased variance, ε = 1e-5; ``gain`` γ, ``shift`` β; γ starts at 5/sqrt(fan-in), β at 0: about 0.5 spikes
per neuron at the start on digits, Table S1's initialisation).
``options["identity"]``: a fixed (not trained) identity weight, the spike-count readout of edbp nets.
``options["binary"]``: the applied weight is sign(W) ∈ {±1} (EM-PF Eq. 3–4, ``empf.binarize``), after any
standardisation; with ``options["binary_scale"]`` κ_k·sign(W_k), κ_k = mean|W_k| per output channel
(``empf.binarize_scaled``). ``options["seca"]`` (i | ii): EM-PF channel attention on the current,
I = SECA(W x + b) (Eq. 9–10).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snnchip.spec import LayerSpec

from .empf import SECA, binarize, binarize_scaled

WS_EPS = 1e-4
WN_EPS = 1e-5
WN_GAIN = 5.0


class Synapse(nn.Module):
    """I = W x + b for ``linear`` (W [out, in]) or ``conv2d`` (W [Cout, Cin, k, k])."""

    def __init__(self, layer: LayerSpec, in_shape: tuple[int, ...]):
        super().__init__()
        self.conv = layer.op == "conv2d"
        if self.conv:
            ref = nn.Conv2d(in_shape[0], layer.out_channels, layer.kernel_size, bias=layer.bias)
            self.stride, self.padding = layer.effective_stride, layer.padding
        else:
            ref = nn.Linear(in_shape[0], layer.out_features, bias=layer.bias)
        self.weight = ref.weight
        self.bias = ref.bias
        self.weight_std = bool(layer.options.get("weight_std", False))
        if self.weight_std:
            self.gain = nn.Parameter(torch.ones((self.weight.shape[0],) + (1,) * (self.weight.dim() - 1)))
        self.weight_norm = bool(layer.options.get("weight_norm", False))
        if self.weight_norm:
            shape = (self.weight.shape[0],) + (1,) * (self.weight.dim() - 1)
            self.gain = nn.Parameter(torch.full(shape, WN_GAIN / math.sqrt(math.prod(self.weight.shape[1:]))))
            self.shift = nn.Parameter(torch.zeros(shape))
        if layer.options.get("identity", False):
            with torch.no_grad():
                self.weight.copy_(torch.eye(*self.weight.shape))
            self.weight.requires_grad_(False)
        self.binary = bool(layer.options.get("binary", False))
        self.binary_scale = self.binary and bool(layer.options.get("binary_scale", False))
        mode = layer.options.get("seca", "none")
        self.seca = SECA(layer.out_channels, mode) if self.conv and mode != "none" else None

    def plain_weight(self) -> torch.Tensor:
        w = self.weight
        if self.weight_std:
            dims = tuple(range(1, w.dim()))
            fan_in = math.prod(w.shape[1:])
            mean = w.mean(dim=dims, keepdim=True)
            var = w.var(dim=dims, keepdim=True)
            w = self.gain * (w - mean) / torch.sqrt(var * fan_in + WS_EPS)
        if self.weight_norm:
            dims = tuple(range(1, w.dim()))
            mean, var = w.mean(dim=dims, keepdim=True), w.var(dim=dims, keepdim=True, unbiased=False)
            w = self.gain * (w - mean) / torch.sqrt(var + WN_EPS) + self.shift
        if not self.binary:
            return w
        return binarize_scaled(w) if self.binary_scale else binarize(w)

    @torch.no_grad()
    def scale_(self, c: float) -> None:
        """Multiply the applied weight Ŵ and the bias by c, in place: standardised layers scale their gain γ
        (and weight normalisation's shift β, Ŵ = γ·norm(W) + β), the others W itself."""
        if self.weight_std or self.weight_norm:
            scaled = [self.gain, self.shift] if self.weight_norm else [self.gain]
        else:
            scaled = [self.weight]
        for p in scaled + ([self.bias] if self.bias is not None else []):
            p.mul_(c)

    def with_weight(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """w x + bias with a given weight of this layer's shape (conv or linear); the bias is added inside the
        convolution/GEMM, not as a separate pass over the output."""
        if self.conv:
            return F.conv2d(x, w, bias, self.stride, self.padding)
        return F.linear(x, w, bias)

    def affine(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Ŵ x + bias (``bias`` given: SAF's accumulated bias, or the layer's own)."""
        return self.with_weight(x, self.plain_weight(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = self.affine(x, self.bias)
        return current if self.seca is None else self.seca(current)

    def extra_repr(self) -> str:
        w = self.weight
        kind = (f"conv2d {w.shape[1]}→{w.shape[0]}, kernel {tuple(w.shape[2:])}, stride {self.stride}, "
                f"padding {self.padding}") if self.conv else f"linear {w.shape[1]}→{w.shape[0]}"
        flags = [name for name, on in (("bias", self.bias is not None), ("weight_std", self.weight_std),
                                       ("weight_norm", self.weight_norm), ("binary", self.binary)) if on]
        return ", ".join([kind, *flags])


def shape_op(layer: LayerSpec) -> nn.Module:
    """avgpool, sumpool (= k²·avgpool) or flatten of the per-sample dims."""
    if layer.op == "flatten":
        return nn.Flatten(start_dim=1)
    k, s, p = layer.kernel_size, layer.effective_stride, layer.padding
    if layer.op == "avgpool":
        return nn.AvgPool2d(k, s, p, count_include_pad=True)
    return SumPool2d(k, s, p)


class SumPool2d(nn.Module):
    """Sum over each k×k window (zero padding)."""

    def __init__(self, k: int, s: int, p: int):
        super().__init__()
        self.k, self.s, self.p = k, s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.k, self.s, self.p, count_include_pad=True) * (self.k * self.k)

    def extra_repr(self) -> str:
        return f"kernel_size={self.k}, stride={self.s}, padding={self.p}"
