"""The LIF training kernel: ``snnchip.neurons.lif_step`` (a = λ, b = 1, c = 0, reset subtract | zero, spike ge | gt)
with autograd, a swappable surrogate gradient and an optional compiled kernel, and SAF's neuron in the same kernel.

The forward of H is exact; its backward is the surrogate dH/du. Learning rules never re-implement this step: they
only decide which tensors are detached and where backward runs. tests/test_neurons.py checks the forward against
``snnchip.neurons``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from snnchip.errors import SpecError
from snnchip.spec import NeuronSpec


class Sigmoid:
    """dH/du = k·σ(k(u−θ))·(1 − σ(k(u−θ))), slope k (OTTT, SAF); ``param`` = k."""

    def __init__(self, slope: float, theta: float):
        self.param = slope

    @staticmethod
    def grad(x: torch.Tensor, k: float) -> torch.Tensor:
        sg = torch.sigmoid(k * x)
        return k * sg * (1 - sg)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.grad(x, self.param)


class Triangle:
    """dH/du = max(0, 1 − |u−θ|/γ)/γ with γ = θ (SLTT, Eq. 6); ``param`` = γ."""

    def __init__(self, slope: float, theta: float):
        self.param = theta

    @staticmethod
    def grad(x: torch.Tensor, gamma: float) -> torch.Tensor:
        return (1 - x.abs() / gamma).clamp(min=0) / gamma

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.grad(x, self.param)


class Rectangle:
    """dH/du = 1[|u−θ| < 1/2] (SLTT, Eq. 5 with γ = 1); ``param`` = the half-width 1/2."""

    def __init__(self, slope: float, theta: float):
        self.param = 0.5

    @staticmethod
    def grad(x: torch.Tensor, half_width: float) -> torch.Tensor:
        return (x.abs() < half_width).to(x.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.grad(x, self.param)


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


def surrogate_fire(surrogate: Callable[[torch.Tensor], torch.Tensor], strict: bool = False
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The ``fire`` of ``snnchip.neurons``' steps with a surrogate gradient: s = H(u − θ) forward (u > θ when
    ``strict``), ``surrogate``(u − θ) as dH/du backward."""
    return lambda u, theta: _Heaviside.apply(u - theta, surrogate, strict)


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

    def step(self, current: torch.Tensor, v: torch.Tensor | None, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The neuron interface views call (``empf.EMPF.step`` is the other one); the LIF has no per-step parameters."""
        return lif_step(current, v, self)


def _step_forward(current: torch.Tensor, prev: torch.Tensor | None, c: float, theta: float, strict: bool,
                  mode: str, lam: float, trace: torch.Tensor | None = None, trace_lam: float | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """u = I + c·prev (prev omitted at t = 1), s = H(u − θ), and the carried state ``out``:
    ``subtract`` v' = u − θ·s, ``zero`` v' = u·(1 − s) (the LIF, c = λ, prev = v), or ``accumulate``
    â = λ·prev + s (SAF, Eq. 4–5: c = −θ·λ, prev = â[t−1]); with ``trace_lam`` also OTTT's presynaptic trace of
    the spikes, â = λ_a·trace + s (trace omitted at t = 1), in the same pass. Returns (u, s, s as a bool mask, out,
    â or None)."""
    u = current if prev is None else torch.add(current, prev, alpha=c)
    mask = u > theta if strict else u >= theta
    s = mask.to(u.dtype)
    a = None if trace_lam is None else (s if trace is None else torch.add(s, trace, alpha=trace_lam))
    if mode == "subtract":
        return u, s, mask, torch.add(u, s, alpha=-theta), a
    if mode == "zero":
        return u, s, mask, u * (1 - s), a
    return u, s, mask, (s if prev is None else torch.add(s, prev, alpha=lam)), a


def _step_backward(saved: torch.Tensor, spikes: torch.Tensor, g_s: torch.Tensor | None, g_o: torch.Tensor | None,
                   surrogate: Callable[[torch.Tensor, float], torch.Tensor], a: float, theta: float,
                   mode: str) -> torch.Tensor:
    """∂L/∂u = g_s·h + g_out·∂out/∂u with h = dH/du (the surrogate at u − θ) and ∂out/∂u = 1 − θ·h (subtract),
    (1 − s) − u·h (zero) or h (accumulate); a missing g is zero. ``surrogate(x, a)`` is a surrogate's ``grad``.

    ``saved`` is v' for ``subtract`` (u − θ is then v' where s = 1 and v' − θ where s = 0, bit for bit: v' = u − θ·s
    rounds to u − θ and to u exactly), u otherwise; ``spikes`` is s, as floats or as a bool mask (None for
    ``accumulate``, which does not need it)."""
    fired = spikes if spikes is None or spikes.dtype == torch.bool else spikes != 0
    if mode == "subtract":
        h = surrogate(torch.where(fired, saved, saved - theta), a)
    else:
        u, h = saved, surrogate(saved - theta, a)
    if mode == "accumulate":
        return h * (g_o if g_s is None else g_s if g_o is None else g_s + g_o)
    g_u = None if g_s is None else g_s * h
    if g_o is not None:
        g_ou = g_o * (1 - theta * h) if mode == "subtract" else g_o * (1 - fired.to(u.dtype)) - g_o * u * h
        g_u = g_ou if g_u is None else g_u + g_ou
    return g_u


_KERNELS = {"forward": _step_forward, "backward": _step_backward}


def compile_kernels(enabled: bool = True) -> None:
    """Run the neuron step's element-wise forward and backward as ``torch.compile``'d kernels (one fused loop each
    on CPU, one Triton kernel each on CUDA: ≈ 4–5× less time than the eager passes on a conv layer's output) or,
    ``enabled=False``, as eager PyTorch. Compiling costs seconds once per process (shape-generic: dynamic=True);
    each (surrogate, mode, spike, which gradients arrive) combination is one specialisation, so the global dynamo
    recompile limit is raised to 32 (default 8) to keep a process that trains several kinds of nets compiled."""
    if enabled and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        raise SpecError("--compile needs a C++ compiler on PATH (torch.compile builds its CPU kernels with it, and "
                        "Triton's launcher on CUDA); install g++ (Debian: apt install g++) or train without --compile")
    if enabled:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
    _KERNELS.update(forward=torch.compile(_step_forward, dynamic=True) if enabled else _step_forward,
                    backward=torch.compile(_step_backward, dynamic=True) if enabled else _step_backward)


class _NeuronStep(torch.autograd.Function):
    """One neuron step as one autograd node: ``_step_forward`` (4 element-wise passes in eager mode where the spike
    and the reset as separate operations take 7; one fused loop when compiled, the OTTT trace included) and the
    surrogate backward ``_step_backward``, which does no work for an absent gradient (online rules cut the carried state
    before it is used); ∂L/∂I = ∂L/∂u, ∂L/∂prev = c·∂L/∂u (+ λ·g_out for ``accumulate``); the trace â = λ_a·trace + s
    passes its gradient to s (∂â/∂s = 1) and λ_a·g_â to the previous trace.

    Saved for backward, chosen to share storage with what training keeps anyway: with subtractive reset the new
    membrane v' (the carried state) instead of u, with the spikes s (which a spike view's next synapse saves for its
    weight gradient) or, in the trace view, whose synapse saves the trace instead, s as a 1-byte mask."""

    @staticmethod
    def forward(ctx, current: torch.Tensor, prev: torch.Tensor | None, p: LIF, c: float, mode: str, lam: float,
                trace: torch.Tensor | None = None, trace_lam: float | None = None):
        u, s, mask, out, a = _KERNELS["forward"](current, prev, c, p.theta, p.strict, mode, lam, trace, trace_lam)
        fired = None if mode == "accumulate" else s if trace_lam is None else mask
        ctx.save_for_backward(out if mode == "subtract" else u, fired)
        ctx.p, ctx.c, ctx.mode, ctx.lam, ctx.trace_lam = p, c, mode, lam, trace_lam
        ctx.set_materialize_grads(False)
        return s, out, a

    @staticmethod
    def backward(ctx, g_s: torch.Tensor | None, g_o: torch.Tensor | None, g_a: torch.Tensor | None):
        saved, spikes = ctx.saved_tensors
        p: LIF = ctx.p
        if g_a is not None:
            g_s = g_a if g_s is None else g_s + g_a
        if g_s is None and g_o is None:
            return None, None, None, None, None, None, None, None
        g_u = _KERNELS["backward"](saved, spikes, g_s, g_o, p.surrogate.grad, p.surrogate.param, p.theta, ctx.mode)
        g_prev = None
        if ctx.needs_input_grad[1]:
            g_prev = ctx.c * g_u if ctx.mode != "accumulate" or g_o is None else ctx.c * g_u + ctx.lam * g_o
        g_trace = ctx.trace_lam * g_a if ctx.needs_input_grad[6] and g_a is not None else None
        return g_u, g_prev, None, None, None, None, g_trace, None


def lif_step(current: torch.Tensor, v: torch.Tensor | None, p: LIF) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: (I[t], v[t-1]) -> (s[t], v[t]); ``v=None`` means v[0] = 0."""
    s, v_next, _ = _NeuronStep.apply(current, v, p, p.lam, "subtract" if p.subtract else "zero", 0.0, None, None)
    return s, v_next


def lif_trace_step(current: torch.Tensor, v: torch.Tensor | None, trace: torch.Tensor | None, p: LIF, lam: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``lif_step`` and OTTT's presynaptic trace of its spikes in one kernel ("Online Training Through Time for
    Spiking Neural Networks", arXiv:2210.04195, Eq. 8): (I[t], v[t−1], â[t−1]) -> (s[t], v[t], â[t]) with
    â[t] = λ·â[t−1] + s[t]; ``trace=None`` means â[0] = 0."""
    return _NeuronStep.apply(current, v, p, p.lam, "subtract" if p.subtract else "zero", 0.0, trace, lam)


def saf_step(current: torch.Tensor, prev: torch.Tensor | None, p: LIF, lam: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAF's neuron ("Spike Accumulation Forwarding for Effective Training of Spiking Neural Networks",
    arXiv:2310.02772, Eq. 4–5): u[t] = Û[t] − θ·λ·â[t−1], s[t] = H(u[t] − θ), â[t] = λ·â[t−1] + s[t], with
    Û[t] = Σ_τ λ^{t−τ}·I[τ], the same spikes as ``lif_step`` with subtractive reset; (Û[t], â[t−1]) -> (s[t], â[t]);
    ``prev=None`` means â[0] = 0."""
    s, a, _ = _NeuronStep.apply(current, prev, p, -p.theta * lam, "accumulate", lam, None, None)
    return s, a
