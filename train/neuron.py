"""The LIF neuron, written once (DESIGN.md, "Neuron semantics"), with swappable spike, reset and surrogate.

    u[t] = λ·v[t-1] + I[t]
    s[t] = H(u[t] − θ)                 (``ge``: u ≥ θ, ``gt``: u > θ)
    v[t] = u[t] − θ·s[t]               (``subtract``)   or   v[t] = u[t]·(1 − s[t])   (``zero``)

The forward of H is exact; its backward is the surrogate dH/du. Learning rules never re-implement
this step: they only decide which tensors are detached and where backward runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snnchip.spec import NeuronSpec


class Sigmoid:
    """dH/du = k·σ(k(u−θ))·(1 − σ(k(u−θ))), slope k (OTTT, SAF)."""

    def __init__(self, slope: float, theta: float):
        self.slope = slope

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sg = torch.sigmoid(self.slope * x)
        return self.slope * sg * (1 - sg)


class Triangle:
    """dH/du = max(0, 1 − |u−θ|/γ)/γ with γ = θ (SLTT, Eq. 6)."""

    def __init__(self, slope: float, theta: float):
        self.gamma = theta

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - x.abs() / self.gamma).clamp(min=0) / self.gamma


class Rectangle:
    """dH/du = 1[|u−θ| < 1/2] (SLTT, Eq. 5 with γ = 1)."""

    def __init__(self, slope: float, theta: float):
        pass

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < 0.5).to(x.dtype)


SURROGATES = {"sigmoid": Sigmoid, "triangle": Triangle, "rectangle": Rectangle}


class _Heaviside(torch.autograd.Function):
    """s = H(x) (x = u − θ) forward, surrogate dH/du backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate, strict: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate(x), None, None


@dataclass(frozen=True)
class LIF:
    """The parameters and strategies of one LIF layer, built from a ``NeuronSpec``."""

    lam: float
    theta: float
    strict: bool
    subtract: bool
    surrogate: object

    @classmethod
    def from_spec(cls, spec: NeuronSpec) -> LIF:
        return cls(lam=spec.lam, theta=spec.theta, strict=spec.spike == "gt", subtract=spec.reset == "subtract",
                   surrogate=SURROGATES[spec.surrogate](spec.slope, spec.theta))

    def fire(self, u: torch.Tensor) -> torch.Tensor:
        """s = H(u − θ) with the surrogate gradient."""
        return _Heaviside.apply(u - self.theta, self.surrogate, self.strict)

    def reset(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """v = u − θ·s (subtract) or u·(1 − s) (zero)."""
        return u - self.theta * s if self.subtract else u * (1 - s)

    def step(self, current: torch.Tensor, v: torch.Tensor | None, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The neuron interface views call (``empf.EMPF.step`` is the other one); the LIF has no per-step parameters."""
        return lif_step(current, v, self)


def lif_step(current: torch.Tensor, v: torch.Tensor | None, p: LIF) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: (I[t], v[t-1]) -> (s[t], v[t]); ``v=None`` means v[0] = 0."""
    u = current if v is None else p.lam * v + current
    s = p.fire(u)
    return s, p.reset(u, s)
