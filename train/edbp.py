"""Event-driven backpropagation (Zhu et al., "Training Spiking Neural Networks with Event-driven Backpropagation",
NeurIPS 2022; equations S1–S28 of its supplement).

SRM neuron (S14–S16), discrete time t = 1..T, input current I[t] = (W·s_in)[t] (+ b):

    u[t] = Σ_{t_last < t_m ≤ t} I[t_m]·ε(t − t_m),   ε(k) = τm/(τm − τs)·(e^{−(k+1)/τm} − e^{−(k+1)/τs})   (S14, S16)
    s[t] = H(u[t] − θ)                                                                                  (S15)

t_last is the neuron's last output spike, so a spike forgets every earlier input. The forward runs it as the
current-based recursion ``snnchip.neurons.cuba_lif_step`` with both traces reset at a spike and the decays and
input scale of ``snnchip.discretize.srm_decays`` (``srm_step`` is its autograd form): one input at t_m gives
v[t] = c·(λ_mem^{k+1} − λ_syn^{k+1})/(λ_mem − λ_syn) with k = t − t_m, which is ε(k) (tests/test_train_edbp.py
checks it against the kernel sum).

Spike-count loss (S9), output layer n with C spiking neurons, batch of N, targets N_correct for the label and
N_wrong for the others: L = (1/N)·Σ_batch Σ_i ((N_i^target − Σ_t s_i[t])/T)². The class score is the spike count
Σ_t s_i[t]; in the spec a fixed identity readout ``count`` follows the spiking output layer, so ``simulate``'s
output [T, B, C] is the cumulative spike count Σ_{τ≤t} s[τ] and output[T−1] the class score.

Event-driven backward (S17–S21) with the smoothed kernel h(k) = e^{−k/τ_grad}. Sign convention: autograd carries
∂L/∂s on spike tensors, and ∂L/∂t_k = −∂L/∂s[t_k] (S10's ∂(Σ_t s)/∂t_k = −1), so at the output layer
∂L/∂t_k = 2/(N T²)·(N^target − Σ_t s[t]) (S17). For every input step t_m of a layer, t_next ≥ t_m is the neuron's
next output spike (none: no gradient) and, with g(t_k) = Σ_{t_last < t_m ≤ t_k} I[t_m]·h(t_k − t_m) the
h-smoothed ∂u/∂t at the spike (S2 with ∂ε/∂t_m replaced by h, Sec. 3.3):

    ∂L/∂t_m[s_in]  = Σ_i W_ij · h(t_next − t_m) / g(t_next) · ∂L/∂t_k|_{t_next}                (S18, S20)
    ∂L/∂W_ij       = Σ_{t_m} s_in,j[t_m] · ε(t_next − t_m) · ∂L/∂t_k|_{t_next} · (−1/g(t_next))   (S19, S21)

``_EventDrivenSRM`` returns both as gradients of two copies of the current I (one carrying the path to W, one to
s_in; ``edbp_current``), so conv, pooling and weight normalisation stay ordinary autograd. Choices:
- −1/(∂u/∂t) = −1/g is clamped to [−4, 0] as in the authors' code (g ≤ 0: no gradient; 0 < g < 1/4: −4), in both
  the S20 and S21 paths; the invariant S4 (Σ_m ∂t_k/∂t_m = 1 over the causal inputs of a spike) holds exactly
  for every spike with g ≥ 1/4.
- Neurons that never fire get no gradient in the paper's method (the gradient exists only at spike times), and
  input steps after a neuron's last spike get none either. In hidden layers we keep exactly that. In the output
  layer a silent neuron makes whole samples dead (measured on digits, T = 5–8: up to 24 % of the test samples
  without any output spike, best accuracy 69–77 %), so the output layer uses ``revive`` (recorded as
  ``spec.options["revive"]``): a neuron below its target (∂L/∂s < 0) that does not fire at the last step T gets a
  virtual spike there for the backward only, with the window since its last spike and r = 1/max(g, 1/4) (the
  clamp's bound also when g ≤ 0). It only ever adds the S21/S20 terms of a spike at T; the forward is unchanged.
- ∂u/∂t of S21 uses the same smoothed g as S20 (the paper substitutes h for ∂ε/∂t_m in S2, which is where
  −1/(∂u/∂t) comes from), so the weight and timing paths share one denominator.

Weight normalisation (S22–S28), per output channel k (a row of a linear weight, a filter of a conv):
W = γ_k·(W0 − E[W0])/sqrt(Var[W0] + ε) + β_k (biased variance, ε = 1e-5); the gradients S23–S28 are autograd's.
``Synapse.plain_weight`` applies it, so ``plain_parameters`` exports the folded W.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from snnchip.discretize import srm_decays
from snnchip.errors import SpecError
from snnchip.neurons import cuba_lif_step
from snnchip.spec import LayerSpec, NetworkSpec, NeuronKind, NeuronSpec

from .neuron import SURROGATES, surrogate_fire

CLAMP = 4.0  # |−1/(∂u/∂t)| ≤ 4, the authors' code
GRAD_CLIP = 1.0  # supplement Sec. G: the L2 norm of the gradient is clipped to 1
# Table S1 (MNIST, Fashion-MNIST); digits (8×8, the embedded set) takes the MNIST row.
DEFAULTS = {
    "mnist": {"tau_m": 5.0, "tau_s": 3.0, "tau_grad": 2.5, "targets": (5, 1)},
    "fashion-mnist": {"tau_m": 5.0, "tau_s": 3.0, "tau_grad": 2.5, "targets": (5, 1)},
    "digits": {"tau_m": 5.0, "tau_s": 3.0, "tau_grad": 2.5, "targets": (5, 1)},
    "dvs": {"tau_m": 8.0, "tau_s": 4.0, "tau_grad": 3.0, "targets": (15, 2)},  # the N-MNIST row
    "cifar10": {"tau_m": 7.0, "tau_s": 4.0, "tau_grad": 3.5, "targets": (10, 1)},
}


@dataclass(frozen=True)
class SRM:
    """One SRM layer (S14–S16) as the current-based recursion; ``step`` fires with the spec's surrogate, so BPTT can
    also train an SRM net (the edbp rule replaces that gradient with the event-driven one of ``_EventDrivenSRM``)."""

    tau_m: float
    tau_s: float
    theta: float
    strict: bool
    surrogate: object

    @classmethod
    def from_spec(cls, spec: NeuronSpec) -> SRM:
        return cls(spec.tau_m, spec.tau_s, spec.theta, spec.spike == "gt",
                   SURROGATES[spec.surrogate](spec.slope, spec.theta))

    @property
    def lam_mem(self) -> float:
        return srm_decays(self.tau_m, self.tau_s).lam_mem

    @property
    def lam_syn(self) -> float:
        return srm_decays(self.tau_m, self.tau_s).lam_syn

    @property
    def input_scale(self) -> float:
        """c = ε(0) (``snnchip.discretize.srm_decays``)."""
        return srm_decays(self.tau_m, self.tau_s).input_scale

    def kernel(self, k: torch.Tensor) -> torch.Tensor:
        """ε(k) of S16."""
        return self.tau_m / (self.tau_m - self.tau_s) * (torch.exp(-(k + 1) / self.tau_m) -
                                                         torch.exp(-(k + 1) / self.tau_s))

    def step(self, current: torch.Tensor, state: tuple | None, t: int) -> tuple[torch.Tensor, tuple]:
        """The neuron interface views call (as ``LIF.step``); the state is (i, v)."""
        return srm_step(current, state, self)


def srm_step(current: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None,
             p: SRM) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``snnchip.neurons.cuba_lif_step`` of the SRM (a_syn = λ_syn, b_syn = c, a = λ_mem, reset ``zero`` of both
    traces) with the surrogate gradient of ``p``: (I[t], (i, v)[t−1]) -> (s[t], (i, v)[t]); ``state=None`` is
    i = v = 0."""
    i, v = (0.0, 0.0) if state is None else state
    _, s, i, v = cuba_lif_step(i, v, current, a_syn=p.lam_syn, b_syn=p.input_scale, a=p.lam_mem, theta=p.theta,
                               reset="zero", reset_current=True,
                               fire=surrogate_fire(p.surrogate, p.strict))
    return s, (i, v)


def event_backward(s: torch.Tensor, g: torch.Tensor, grad_s: torch.Tensor, p: SRM, tau_grad: float,
                   revive: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """S20/S21 for one layer, all tensors [T, ...]: ``s`` its spikes, ``g`` g(t_k) at its spikes (and the running g at
    the last step, spike or not), ``grad_s`` = ∂L/∂s.

    Returns (∂L/∂I through the weights, ∂L/∂I through the inputs), each [T, ...]: with D = ∂L/∂s[t_next]·r(t_next),
    r = clamp(1/g, 0, 4) (= −(−1/g) clamped as in the authors' code, 0 for g ≤ 0): ε(t_next − t_m)·D and
    h(t_next − t_m)·D; zero where the neuron does not fire at or after t_m. ``revive`` (output layer only): a
    neuron below its target (∂L/∂s < 0) that is silent at the last step gets a virtual spike there with
    r = 1/max(g, 1/4) (module docstring, "silent output neurons").
    """
    T = s.shape[0]
    r = torch.where(g > 0, 1.0 / g.clamp(min=1.0 / CLAMP), torch.zeros_like(g)) * s
    if revive:
        virtual = (s[-1] == 0) & (grad_s[-1] < 0)
        s = torch.cat([s[:-1], torch.where(virtual, 1.0, s[-1]).to(s.dtype)[None]])
        r = torch.cat([r[:-1], torch.where(virtual, 1.0 / g[-1].clamp(min=1.0 / CLAMP), r[-1])[None]])
    steps = torch.arange(T, device=s.device).view(T, *([1] * (s.dim() - 1)))
    spike_at = torch.where(s > 0, steps, T)
    nxt = spike_at.flip(0).cummin(0).values.flip(0)  # t_next ≥ t_m, T when none
    fired = nxt < T
    nxt = nxt.clamp(max=T - 1)
    d = torch.gather(grad_s * r, 0, nxt) * fired
    lag = (nxt - steps).to(s.dtype)
    return p.kernel(lag) * d, torch.exp(-lag / tau_grad) * d


class _EventDrivenSRM(torch.autograd.Function):
    """Forward: the SRM recursion over all T steps; backward: S20/S21 (``event_backward``)."""

    @staticmethod
    def forward(ctx, current_w: torch.Tensor, current_x: torch.Tensor, p: SRM, tau_grad: float,
                revive: bool) -> torch.Tensor:
        state, spikes, gs, trace = None, [], [], None
        decay = math.exp(-1.0 / tau_grad)
        for t in range(current_w.shape[0]):
            s, state = srm_step(current_w[t], state, p)
            trace = current_w[t] if trace is None else decay * trace + current_w[t]  # g(t) since the last spike
            spikes.append(s)
            gs.append(trace * s)
            trace = trace * (1 - s)
        gs[-1] = trace + gs[-1]  # the last step keeps g also where the neuron is silent (``revive``)
        s, g = torch.stack(spikes), torch.stack(gs)
        ctx.save_for_backward(s, g)
        ctx.p, ctx.tau_grad, ctx.revive = p, tau_grad, revive
        return s

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        s, g = ctx.saved_tensors
        grad_w, grad_x = event_backward(s, g, grad_s, ctx.p, ctx.tau_grad, ctx.revive)
        return grad_w, grad_x, None, None, None


def edbp_layer(current_w: torch.Tensor, current_x: torch.Tensor, p: SRM, tau_grad: float,
               revive: bool = False) -> torch.Tensor:
    """Spikes [T, ...] of an SRM layer whose current I [T, ...] comes twice: ``current_w`` = W·s_in.detach()
    (+ b) carries the S21 gradient to W (and b), ``current_x`` = W.detach()·s_in the S20 gradient to s_in.
    ``revive``: virtual last-step spikes for silent neurons below target (the output layer)."""
    return _EventDrivenSRM.apply(current_w, current_x, p, tau_grad, revive)


def spike_count_loss(counts: torch.Tensor, y: torch.Tensor, targets: tuple[float, float], T: int) -> torch.Tensor:
    """S9: (1/N)·Σ_batch Σ_i ((N_i^target − count_i)/T)², counts [N, C]."""
    target = torch.full_like(counts, float(targets[1]))
    target.scatter_(1, y.view(-1, 1), float(targets[0]))
    return (((target - counts) / T) ** 2).sum(1).mean()


def configure_edbp(spec: NetworkSpec, tau_m: float, tau_s: float, tau_grad: float, targets: tuple[int, int],
                   theta: float = 1.0, spike: str = "ge") -> NetworkSpec:
    """The edbp version of a zoo spec: every spiking neuron an SRM (τm, τs, θ), the readout layer a spiking SRM
    output layer, followed by a fixed identity readout ``count`` (o[t] = s_out[t]); synaptic layers without bias
    and with weight normalisation (S22, in place of VGG's scaled weight standardisation and post-neuron scale).
    τ_grad, the targets and ``revive`` (virtual last-step spikes for silent output neurons below target) go to
    ``spec.options``."""
    if spec.feedback or any("shortcut" in la.options for la in spec.layers):
        raise SpecError("edbp trains feed-forward networks (no feedback edges or residual shortcuts)")
    srm = NeuronSpec(kind=NeuronKind.SRM, theta=theta, spike=spike, tau_m=tau_m, tau_s=tau_s)
    layers = [dataclasses.replace(la, neuron=srm, bias=False, options={**_without_vgg_scaling(la.options),
                                                                       "weight_norm": True})
              if la.synaptic else la for la in spec.layers]
    count = LayerSpec("count", "linear", out_features=spec.num_classes, bias=False,
                      neuron=NeuronSpec(kind=NeuronKind.READOUT), options={"identity": True})
    options = {**spec.options, "tau_grad": float(tau_grad), "targets": [int(targets[0]), int(targets[1])],
               "revive": True}
    return dataclasses.replace(spec, layers=(*layers, count), options=options)


def _without_vgg_scaling(options: dict) -> dict:
    """Layer options without VGG's scaled weight standardisation and post-neuron scale: weight normalisation (S22)
    takes their place (both would share one gain)."""
    return {k: v for k, v in options.items() if k not in ("weight_std", "scale")}


def edbp_options(cfg) -> dict:
    """τm, τs, τ_grad, targets of a ``TrainConfig``: its values, else the Table S1 row of its dataset (MNIST's for
    datasets the table does not list)."""
    row = dict(DEFAULTS.get(cfg.dataset, DEFAULTS["mnist"]))
    for key in ("tau_m", "tau_s", "tau_grad"):
        if getattr(cfg, key) is not None:
            row[key] = float(getattr(cfg, key))
    if cfg.targets is not None:
        try:
            row["targets"] = tuple(int(n) for n in str(cfg.targets).split(","))
        except ValueError:
            row["targets"] = ()
        if len(row["targets"]) != 2 or min(row["targets"]) < 0:
            raise SpecError(f"--targets must be N_correct,N_wrong (two integers >= 0), got {cfg.targets!r}")
    return row


def forward_layers(model, xs: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The training forward, layer by layer over all T steps (time folded into the batch for synapses):
    ({layer: spikes [T, B, *shape]}, readout o [T, B, C])."""
    spec = model.spec
    tau_grad = float(spec.options["tau_grad"])
    revive = bool(spec.options.get("revive", False))
    last = [la.name for la in spec.layers if la.neuron is not None and la.neuron.spiking][-1]
    T, B = xs.shape[:2]
    h = xs.reshape(T * B, *xs.shape[2:])
    spikes: dict[str, torch.Tensor] = {}
    for layer in spec.layers:
        op = getattr(model, layer.name)
        if not layer.synaptic:
            h = op(h)
            continue
        if layer.neuron.kind == NeuronKind.READOUT:
            return spikes, op(h).view(T, B, -1)
        w = op.plain_weight()
        cur_w = op.with_weight(h.detach(), w, op.bias)
        cur_x = op.with_weight(h, w.detach()) if h.requires_grad else cur_w.detach()
        s = edbp_layer(cur_w.view(T, B, *cur_w.shape[1:]), cur_x.view(T, B, *cur_x.shape[1:]),
                       model.neurons[layer.name], tau_grad, revive and layer.name == last)
        spikes[layer.name] = s
        h = s.reshape(T * B, *s.shape[2:])
    raise AssertionError("unreachable: the spec guarantees a final readout")


def iteration(model, xs: torch.Tensor, y: torch.Tensor, step: Callable[[], None] | None,
              backward: Callable[[torch.Tensor], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """One edbp iteration on xs [T, B, ...]: forward, S9 loss on the last SRM layer's spike counts, the event-driven
    backward, gradient L2 norm clipped to 1 (Sec. G), optimizer ``step``. Returns (loss as a 0-d tensor, class
    scores Σ_t o[t]), nothing read from the device."""
    if not isinstance(model, torch.nn.Module):
        raise SpecError("edbp runs in one process only: its layer-wise forward bypasses DistributedDataParallel, so "
                        "gradients would not be averaged; train without --nproc / torchrun")
    spikes, out = forward_layers(model, xs)
    counts = spikes[next(reversed(spikes))].sum(0)
    loss = spike_count_loss(counts.flatten(1), y, tuple(model.spec.options["targets"]), xs.shape[0])
    backward(loss)
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    if step is not None:
        step()
    return loss.detach(), out.detach().sum(0)


def gradient_events(model, xs: torch.Tensor) -> dict[str, dict[str, int]]:
    """Per SRM layer: ``spikes`` (output spikes: the events that carry ∂L/∂t_k, S20/S21), ``inputs`` (input steps
    t_m that receive a gradient, i.e. (neuron, t_m) with a spike at or after t_m) and ``dense`` = T·N·B (what
    BPTT differentiates: every neuron at every step)."""
    with torch.no_grad():
        spikes, _ = forward_layers(model, xs)
    out = {}
    for name, s in spikes.items():
        fired = s.flip(0).cummax(0).values.flip(0)
        out[name] = {"spikes": int(s.sum()), "inputs": int(fired.sum()), "dense": int(s.numel())}
    return out
