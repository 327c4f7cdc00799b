"""The float neuron steps: each family's discrete-time equation, written once.

Discrete time t = 1..T, dt = 1 step; x[t] is the neuron's input current of the step (the synaptic layer's output),
H the Heaviside step. The spiking families' steps return the potential before the reset, the output and the new
state; ``li_step`` returns v.

LIF / IF (``lif_step``): the LIF of "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
Networks" (SLTT, arXiv:2302.14311, Eq. 2, λ = 1 − 1/τ), as in "Online Training Through Time for Spiking Neural
Networks" (OTTT, arXiv:2210.04195), with NIR's input gain b and leak offset c (``snnchip.discretize``):

    u[t] = a·v[t−1] + b·x[t] + c
    s[t] = H(u[t] − θ)                    ``ge``: 1 where u ≥ θ;  ``gt``: 1 where u > θ
    v[t] = u − θ·s (``subtract``)  |  u·(1 − s) (``zero``)  |  u + (v_reset − u)·s (``v_reset``)

Our LIF has a = λ, b = 1, c = 0; an IF has a = 1. A neuron that emits several spikes per step (``max_spikes`` M > 1:
SynSense Xylo's, "xylo" kind) outputs the count s[t] = min(⌊u[t]/θ⌋, M)·H(u[t] − θ) and subtracts s·θ.
Two resets act one step later, as snnTorch's neurons do
("snnTorch", Eshraghian et al., arXiv:2109.12894): ``subtract_next`` subtracts θ·s[t−1] after the leak,
u[t] = a·v[t−1] + b·x[t] + c − θ·s[t−1], and ``zero_next`` zeroes the whole next step, u[t] = (1 − s[t−1])·(a·v[t−1]
+ b·x[t] + c) (the input of that step is lost too); for both v[t] = u[t] and the state keeps s.

LI / I / readout integrator (``li_step``): v[t] = a·v[t−1] + b·x[t] + c, no spike; the output is v. The readout of
our nets (a = b = 1, c = 0) outputs Σ_{τ≤t} x[τ].

Current-based LIF (``cuba_lif_step``): a synaptic current drives the LIF,

    i[t] = a_syn·i[t−1] + b_syn·x[t];  then ``lif_step`` on x = i[t];  i[t] ← i[t]·(1 − s[t]) with ``reset_current``

A foreign CubaLIF keeps its current through a spike; the SRM of event-driven BP (Zhu et al., "Training Spiking
Neural Networks with Event-driven Backpropagation", NeurIPS 2022, Eq. S14–S16) resets both traces: with a_syn = λ_syn,
b_syn = ε(0), a = λ_mem, b = 1, c = 0 and reset ``zero`` (``snnchip.discretize.srm_decays``) the recursion equals the
kernel sum u[t] = Σ_{t_last < t_m ≤ t} x[t_m]·ε(t − t_m) of S14 (tests/test_neurons.py checks it). CubaLI is
``current_step`` followed by ``li_step``.

EM-PF (``empf_step``): the graded neuron of "Comprehensive Online Training and Deployment for Spiking Neural
Networks" (arXiv:2410.07547), Eq. 3 with the per-step parameters of Eq. 5 and the folded batch norm of Eq. 7–8
(λ̂, θ̂, the input scale a and the reset offset r; the signs as derived in ``snnchip.train.empf``):

    m[t] = λ̂[t]·v[t−1] + a[t]·x[t];   s[t] = (m − θ̂[t])·H(m − θ̂[t]) (a float);   v[t] = m − s + r[t]

Why one function over array operators: three consumers hold three array types (the NIR reference executor torch
tensors, the Lava floating_pt process models NumPy arrays, which must not import torch because Lava forks its
workers, and the ONNX graph builder symbolic values whose operators emit ONNX nodes). Each step uses only ``+``,
``-``, ``*``, a comparison and ``heaviside``'s cast of the comparison to the potential's dtype, so the one definition
runs on all three, and the ONNX graph is this equation traced, not a transcription of it. The training kernels of
the SRM and EM-PF (``snnchip.train.edbp``, ``snnchip.train.empf``) call these steps with their surrogate-gradient
spike as ``fire`` (and EM-PF's membrane BN as ``normalize``); the LIF's training kernel (``snnchip.train.neuron``)
is fused and compiled for speed and tested equal to ``lif_step``.
This module imports only the standard library, so Lava's workers can import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Array = Any  # a NumPy array, a torch tensor or a symbolic ONNX value: anything with + - * >= > and a dtype cast


def heaviside(u: Array, theta: Array, compare: str = "ge") -> Array:
    """H(u − θ) in u's dtype: 1 where u ≥ θ (``ge``) or u > θ (``gt``), else 0."""
    fired = u >= theta if compare == "ge" else u > theta
    cast = getattr(fired, "astype", None) or fired.to  # NumPy and symbolic values have astype, torch tensors to
    return cast(u.dtype)


def li_step(v: Array, x: Array, *, a: Array, b: Array = 1.0, c: Array = 0.0) -> Array:
    """LI / I / readout: v[t] = a·v[t−1] + b·x[t] + c (module docstring); returns v[t]."""
    return a * v + b * x + c


def current_step(i: Array, x: Array, *, a_syn: Array, b_syn: Array) -> Array:
    """The synaptic current of the current-based families: i[t] = a_syn·i[t−1] + b_syn·x[t]."""
    return a_syn * i + b_syn * x


DELAYED_RESETS = ("subtract_next", "zero_next")  # resets that need the previous step's spikes in the state


Fire = Callable[[Array, Array], Array]  # (potential, threshold) -> output: a training kernel's surrogate-gradient spike


def spike_count(u: Array, theta: Array, max_spikes: int) -> Array:
    """s = min(⌊u/θ⌋, M)·H(u − θ): the spikes of a neuron that emits up to M per step (module docstring)."""
    q = u // theta
    return heaviside(u, theta, "ge") * (q - (q - max_spikes) * heaviside(q, max_spikes, "gt"))


def lif_step(v: Array, x: Array, *, a: Array, theta: Array, b: Array = 1.0, c: Array = 0.0, reset: str = "subtract",
             compare: str = "ge", v_reset: Array = 0.0, s_prev: Array = 0.0, reset_by: Array | None = None,
             max_spikes: int = 1, fire: Fire | None = None) -> tuple[Array, Array, Array]:
    """LIF / IF (module docstring): (v[t−1], x[t]) -> (u[t], s[t], v[t]); ``s_prev`` = s[t−1] for the resets
    ``subtract_next`` and ``zero_next``; ``reset_by``: the amount ``subtract`` removes, when it is not θ;
    ``max_spikes`` > 1: up to that many spikes per step (``subtract`` reset only); ``fire``: s[t] = fire(u, θ) in
    place of H(u − θ) (the training kernels' spike with a surrogate gradient)."""
    u = li_step(v, x, a=a, b=b, c=c)
    if max_spikes > 1:
        s = spike_count(u, theta, max_spikes)
        return u, s, u - theta * s
    if reset == "subtract_next":
        u = u - theta * s_prev
    elif reset == "zero_next":
        u = u * (1 - s_prev)
    s = heaviside(u, theta, compare) if fire is None else fire(u, theta)
    if reset in DELAYED_RESETS:
        return u, s, u
    if reset == "subtract":
        return u, s, u - (theta if reset_by is None else reset_by) * s
    if reset == "zero":
        return u, s, u * (1 - s)
    return u, s, u + (v_reset - u) * s


def cuba_lif_step(i: Array, v: Array, x: Array, *, a_syn: Array, b_syn: Array, a: Array, theta: Array,
                  b: Array = 1.0, c: Array = 0.0, reset: str = "subtract", compare: str = "ge", v_reset: Array = 0.0,
                  reset_current: bool = False, s_prev: Array = 0.0, reset_by: Array | None = None,
                  max_spikes: int = 1, fire: Fire | None = None) -> tuple[Array, Array, Array, Array]:
    """Current-based LIF (module docstring): (i[t−1], v[t−1], x[t]) -> (u[t], s[t], i[t], v[t]); ``max_spikes``,
    ``fire`` as in ``lif_step``."""
    i = current_step(i, x, a_syn=a_syn, b_syn=b_syn)
    u, s, v = lif_step(v, i, a=a, theta=theta, b=b, c=c, reset=reset, compare=compare, v_reset=v_reset, s_prev=s_prev,
                       reset_by=reset_by, max_spikes=max_spikes, fire=fire)
    return u, s, i * (1 - s) if reset_current else i, v


def empf_step(v: Array, x: Array, *, lam: Array, scale: Array, theta: Array, offset: Array,
              fire: Fire | None = None, normalize: Callable[[Array], Array] | None = None
              ) -> tuple[Array, Array, Array]:
    """EM-PF, folded form (module docstring), with step t's λ̂, a, θ̂, r: (v[t−1], x[t]) -> (m[t], s[t], v[t]).

    Training hooks (``snnchip.train.empf``): ``fire`` = s[t] = fire(m, θ̂) in place of (m − θ̂)·H(m − θ̂) (the same
    value with autograd's gradient of Eq. 4–5); ``normalize``: the membrane BN of Eq. 6, m̂ = normalize(m), applied
    before the spike; it is folded into λ̂, a, θ̂, r at export, so no deployed step has it."""
    m = lam * v + scale * x
    if normalize is not None:
        m = normalize(m)
    s = (m - theta) * heaviside(m, theta, "ge") if fire is None else fire(m, theta)
    return m, s, m - s + offset


# ------------------------------------------------------------------------------- one node of any family
ARRAYS = ("a", "b", "c", "theta", "v_reset", "offset")  # the array parameters of a node, besides its current's
TABLES = ("a", "b", "theta", "offset")  # the parameters a per-step node holds as tables [steps, ...]


@dataclass(frozen=True)
class NeuronParams:
    """One neuron node's discrete parameters, as NIR readers compile them (``snnchip.export.nir_exec``).

    ``theta`` None: a non-spiking node (LI, I, CubaLI, readout) that outputs v; ``syn`` (a_syn, b_syn): a
    current-based node; ``reset_syn``: a spike also resets the current (the SRM); ``graded``: an EM-PF node with
    λ̂ = a, input scale = b, θ̂ = theta, reset offset r = offset; ``steps``: a, b, theta and offset are tables
    [steps, ...] whose row t − 1 applies at step t.
    """

    a: Array
    b: Array
    c: Array
    theta: Array | None
    reset: str = "subtract"  # subtract | zero | v_reset
    compare: str = "ge"  # ge | gt
    v_reset: Array = 0.0
    syn: tuple[Array, Array] | None = None
    reset_syn: bool = False
    graded: bool = False
    offset: Array | None = None
    steps: int | None = None
    semantics: str = "snnchip v1"
    max_spikes: int = 1  # > 1: several spikes per step (Xylo's neuron; ``lif_step``)

    def map_arrays(self, fn: Callable[[str, Array], Array]) -> NeuronParams:
        """These parameters with each array replaced by ``fn(name, array)`` (the current's named a_syn, b_syn)."""
        arrays = {k: fn(k, getattr(self, k)) for k in ARRAYS if getattr(self, k) is not None}
        syn = None if self.syn is None else (fn("a_syn", self.syn[0]), fn("b_syn", self.syn[1]))
        return dataclasses.replace(self, **arrays, syn=syn)

    @property
    def state_keys(self) -> tuple[str, ...]:
        """The state a node carries between steps: the current i (current-based), v, and s (delayed resets)."""
        return (("i",) if self.syn is not None else ()) + ("v",) + (("s",) if self.reset in DELAYED_RESETS else ())

    def at(self, t: int) -> NeuronParams:
        """The parameters of step index t (0-based): row t of every per-step table."""
        if self.steps is None:
            return self
        return dataclasses.replace(self, steps=None, **{k: getattr(self, k)[t] for k in TABLES
                                                        if getattr(self, k) is not None})


def neuron_step(p: NeuronParams, x: Array, state: dict[str, Array], t: int = 0) -> tuple[Array, dict[str, Array]]:
    """One step of node ``p`` at step index ``t`` (0-based) with the family step its parameters name: returns
    (s for spiking nodes, else v; the new state {"i" for current-based nodes, "v"})."""
    p = p.at(t)
    if p.graded:
        _, s, v = empf_step(state["v"], x, lam=p.a, scale=p.b, theta=p.theta, offset=p.offset)
        return s, {"v": v}
    if p.theta is None:
        new = {}
        if p.syn is not None:
            x = new["i"] = current_step(state["i"], x, a_syn=p.syn[0], b_syn=p.syn[1])
        new["v"] = li_step(state["v"], x, a=p.a, b=p.b, c=p.c)
        return new["v"], new
    lif = dict(a=p.a, theta=p.theta, b=p.b, c=p.c, reset=p.reset, compare=p.compare, v_reset=p.v_reset,
               s_prev=state.get("s", 0.0), max_spikes=p.max_spikes)
    delayed = p.reset in DELAYED_RESETS
    if p.syn is None:
        _, s, v = lif_step(state["v"], x, **lif)
        return s, {"v": v, **({"s": s} if delayed else {})}
    _, s, i, v = cuba_lif_step(state["i"], state["v"], x, a_syn=p.syn[0], b_syn=p.syn[1], reset_current=p.reset_syn,
                               **lif)
    return s, {"i": i, "v": v, **({"s": s} if delayed else {})}
