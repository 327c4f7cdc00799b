"""Learning rules as small strategies over one shared time loop (``run_iteration``).

A rule only says which view flows between layers, whether the temporal graph is cut every step,
at which steps backward runs and on which loss, and when the optimizer steps:

- ``bptt``    full graph; L = ℓ(mean_t o[t], y); one backward.
- ``ottt-o``  OTTT (Xiao et al. 2022): trace view, state detached each step, L[t] = ℓ(o[t], y)/T with
              backward every step, optimizer step every step. ``ottt-a``: same, one optimizer step.
- ``sltt``    SLTT (Meng et al. 2023, Eq. 12–14): spike view, state detached, L[t] = ℓ(o[t], y)/T,
              backward every step (spatial path only). ``sltt-k``: backward at K steps drawn without
              replacement per iteration (Algorithm 1), the others forward under no_grad.
- ``saf-e``   SAF (Eq. 6): accumulation view, per-step loss L_E[t] = ℓ(o[t], y)/T, optimizer step every
              step (Algorithm 1). ``saf-f`` (Eq. 7): only the final step has a graph, loss
              L_F = ℓ(Ô[T]/Λ, y) on the weighted rate, Λ = Σ_{t=1..T} λ^{T−t}.
- ``empf``    EM-PF online training (EM-PF paper, Eq. 4–5, Algorithm 1): spike view (floating-point spikes),
              state detached every step, L[t] = ℓ(o[t], y)/T with backward every step, one optimizer step.
              ``empf-random-bp``: backward at one random step per batch (random BP = the sltt-k sampler, K = 1).
              Needs EM-PF neurons (``empf.configure_empf``); bptt also runs on EM-PF nets (STBP).
- ``edbp``    event-driven BP (Zhu et al. 2022, S9, S17–S21; ``edbp.py``): SRM neurons, the whole window forward
              layer by layer, spike-count loss, gradients only through spike times, one optimizer step.
              Needs an edbp spec (``edbp.configure_edbp``); bptt also runs SRM nets (surrogate gradient).
ℓ = (1−α)·CE + α·MSE(one-hot) (OTTT supplement, Sec. C). Online rules keep only the current step's graph.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snnchip.errors import SpecError
from snnchip.spec import NetworkSpec, NeuronKind

from .edbp import iteration as edbp_iteration
from .encoding import time_major
from .model import SpikingNet, detach_state
from .views import SafView, SpikeView, TraceView


@dataclass(frozen=True)
class Rule:
    name: str
    view: str  # spike | trace | saf
    online: bool  # cut the temporal graph every step
    loss: str  # mean | step | final | count (edbp's S9)
    step_every_t: bool = False
    sampled: bool = False  # SLTT-K
    k: int | None = None  # a fixed K for sampled rules (random BP: 1)


RULES = {r.name: r for r in (
    Rule("bptt", "spike", online=False, loss="mean"),
    Rule("ottt-o", "trace", online=True, loss="step", step_every_t=True),
    Rule("ottt-a", "trace", online=True, loss="step"),
    Rule("sltt", "spike", online=True, loss="step"),
    Rule("sltt-k", "spike", online=True, loss="step", sampled=True),
    Rule("saf-e", "saf", online=True, loss="step", step_every_t=True),
    Rule("saf-f", "saf", online=True, loss="final"),
    Rule("empf", "spike", online=True, loss="step"),
    Rule("empf-random-bp", "spike", online=True, loss="step", sampled=True, k=1),
    Rule("edbp", "spike", online=False, loss="count"),
)}
METHODS = tuple(RULES)


def get_rule(method: str) -> Rule:
    if method not in RULES:
        raise SpecError(f"unknown training method {method!r}; valid: {', '.join(METHODS)}")
    return RULES[method]


def mixed_loss(out: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """ℓ(o, y) = (1−α)·CE(o, y) + α·MSE(o, one_hot(y))."""
    ce = F.cross_entropy(out, y)
    if alpha == 0:
        return ce
    return (1 - alpha) * ce + alpha * F.mse_loss(out, F.one_hot(y, out.shape[-1]).to(out.dtype))


def shared_lambda(spec: NetworkSpec, field: str = "lam") -> float:
    """The λ of the traces (OTTT) and accumulations (SAF), or with ``field="lam_syn"`` the λ_syn of a Xylo
    network's current-based traces: all spiking layers must share it (0 without any)."""
    lams = {getattr(la.neuron, field) for la in spec.layers if la.neuron is not None and la.neuron.spiking}
    if len(lams) > 1:
        raise SpecError(f"OTTT/SAF traces need one {'λ' if field == 'lam' else 'λ_syn'} for all spiking layers, got "
                        f"{sorted(lams)}")
    return lams.pop() if lams else 0.0


def make_view(rule: Rule, spec: NetworkSpec):
    kinds = {la.neuron.kind for la in spec.layers if la.neuron is not None and la.neuron.spiking}
    if rule.name.startswith("empf") and kinds != {NeuronKind.EMPF}:
        raise SpecError(f"{rule.name} trains EM-PF neurons; this network has {sorted(kinds)}")
    if rule.name == "edbp" and kinds != {NeuronKind.SRM}:
        raise SpecError(f"edbp trains SRM neurons (edbp.configure_edbp); this network has {sorted(kinds)}")
    if NeuronKind.SRM in kinds and rule.name not in ("edbp", "bptt"):
        raise SpecError(f"{rule.name} does not train SRM neurons; use edbp (or bptt)")
    if NeuronKind.XYLO in kinds and (rule.view == "saf" or kinds != {NeuronKind.XYLO}):
        raise SpecError(f"{rule.name} does not train Xylo neurons" + (
            " (SAF's accumulations equal a LIF without a synaptic current); use ottt-o, ottt-a, sltt, sltt-k or "
            "bptt with --profile xylo" if rule.view == "saf" else " beside other kinds; give every layer one kind"))
    if rule.view != "spike" and NeuronKind.EMPF in kinds:
        raise SpecError(f"{rule.name} needs LIF neurons; train EM-PF networks with empf (or bptt)")
    if rule.view == "spike":
        return SpikeView()
    if any("shortcut" in la.options for la in spec.layers):
        raise SpecError(f"{rule.name} does not support residual shortcuts; use a spike-view rule (bptt, sltt, empf)")
    lam = shared_lambda(spec)
    if rule.view == "trace":
        return TraceView(lam, shared_lambda(spec, "lam_syn") if NeuronKind.XYLO in kinds else 0.0)
    bad = [la.name for la in spec.layers if la.neuron is not None and la.neuron.spiking
           and la.neuron.reset != "subtract"]
    if bad:
        raise SpecError(f"SAF equals the LIF only with subtractive reset; layers {bad} reset to zero")
    return SafView(lam)


def run_iteration(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, method: str, T: int | None = None,
                  k: int | None = None, mse_alpha: float = 0.0, step: Callable[[], None] | None = None,
                  backward: Callable[[torch.Tensor], None] | None = None,
                  rng: random.Random | None = None) -> tuple[float, torch.Tensor]:
    """One training iteration of ``method`` on a batch; returns (summed loss, class scores Σ_t o[t]).

    Gradients accumulate into ``.grad``; ``step()`` (optimizer step + zero_grad) is called every step
    for ottt-o/saf-e and once at the end otherwise; ``backward(loss)`` defaults to ``loss.backward()``.
    The loss is read from the device once, after the iteration (``iterate`` does not read it at all).
    """
    loss, score = iterate(model, x, y, method, T, k, mse_alpha, step, backward, rng)
    return float(loss), score


def iterate(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, method: str, T: int | None = None,
            k: int | None = None, mse_alpha: float = 0.0, step: Callable[[], None] | None = None,
            backward: Callable[[torch.Tensor], None] | None = None,
            rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``run_iteration`` without any host synchronisation: (summed loss as a 0-d device tensor, class scores). Every
    decision of the time loop is made from Python values (the rule, T, the drawn steps), never from a tensor, so
    the iteration can be queued asynchronously on a GPU or captured as a CUDA graph (``cuda_graph.py``)."""
    rule = get_rule(method)
    xs = time_major(x, model.spec, T)
    steps = xs.shape[0]
    bp_steps = _backward_steps(rule, steps, k, rng or random)
    view = make_view(rule, model.spec)
    backward = backward or (lambda loss: loss.backward())
    if rule.name == "edbp":
        return edbp_iteration(model, xs, y, step, backward)
    state: dict = {}
    outputs, total = [], None
    score = None
    for t in range(steps):
        if rule.online:
            state = detach_state(state)
        with torch.set_grad_enabled(t in bp_steps):
            o, state, _ = model.step(_fast_layout(xs[t]), state, view, record=False)
            score = o.detach() if score is None else score + o.detach()
            if not rule.online:
                outputs.append(o)
            elif t in bp_steps:
                loss = _online_loss(rule, model, o, state, y, mse_alpha, steps)
                backward(loss)
                total = loss.detach() if total is None else total + loss.detach()
                if rule.step_every_t and step is not None:
                    step()
    if not rule.online:
        loss = mixed_loss(torch.stack(outputs).mean(0), y, mse_alpha)
        backward(loss)
        total = loss.detach()
    if not rule.step_every_t and step is not None:
        step()
    return total, score


def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Image batches in channels-last layout, which oneDNN (CPU) and cuDNN convolutions run fastest in; every
    layer's output and state then stays channels-last. Values are those of the NCHW computation up to float
    rounding (the convolution's summation order)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _backward_steps(rule: Rule, T: int, k: int | None, rng: random.Random) -> set[int]:
    if rule.loss == "final":
        return {T - 1}
    if not rule.sampled:
        return set(range(T))
    k = rule.k or k
    if k is None or not 0 < k <= T:
        raise SpecError(f"sltt-k needs 0 < K <= T, got K={k}, T={T}")
    return set(rng.sample(range(T), k))


def _online_loss(rule: Rule, model: SpikingNet, o, state, y, alpha: float, T: int) -> torch.Tensor:
    if rule.loss == "step":
        return mixed_loss(o, y, alpha) / T
    lam = shared_lambda(model.spec)
    weight = sum(lam ** (T - 1 - t) for t in range(T))
    return mixed_loss(state["o:" + model.readout_name] / weight, y, alpha)


def gradients(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, method: str, T: int | None = None,
              **opts) -> dict[str, torch.Tensor]:
    """The gradient ``method`` accumulates over one iteration (summed over steps), without optimizer step.

    ``opts``: ``k`` (sltt-k), ``mse_alpha``, ``rng`` (random.Random for sltt-k's steps).
    """
    model.zero_grad(set_to_none=True)
    run_iteration(model, x, y, method, T, **opts)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads
