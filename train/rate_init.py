"""Data-driven initialisation: each hidden spiking layer's weights scaled, first layer to last, to a target rate.

LSUV (Mishkin & Matas, "All you need is a good init", arXiv 1511.06422) rescales each layer's weights in turn,
first to last, so that its output has unit variance on one batch of training data. For a spiking layer the
quantity that decides whether it learns is its firing rate: a layer that never reaches θ passes nothing forward
(the layers above it see no input, the readout gets zero gradient), and a saturated one passes no information.
``calibrate_rates`` therefore scales layer l's synaptic weight and bias by one factor c_l so that

    I_l[t] = c_l·(W_l h_{l−1}[t] + b_l) + F_l[t],      mean over t, samples, units of s_l[t] = target,

with the layers below already calibrated (F_l: feedback and shortcut currents, not scaled). The rate grows with
c_l; c_l is found by bisection on log c over the recorded currents (the neuron alone is re-run, not the net).
The LIF (either reset) and the SRM (reset to zero) are positively homogeneous in (I, θ): scaling the current by c
gives the spikes of threshold θ/c, so this is per-layer threshold balancing (Sengupta et al., "Going Deeper in
Spiking Neural Networks: VGG and Residual Architectures", arXiv 1802.02627) carried by the weights; λ, θ, reset
and surrogate stay the method's, and export sees ordinary weights. Calibrated: every LIF layer and every SRM layer
but event-driven BP's output layer (its spike counts are what the loss S9 trains). EM-PF layers learn λ[t], θ[t]
and normalise their membrane; ``init_batch_statistics`` starts their BatchNorms' running statistics from the same
batch (the eval-mode network then normalises as training does from the first step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from snnchip.errors import SpecError

from .edbp import SRM
from .encoding import time_major
from .model import SpikingNet
from .neuron import LIF
from .views import SpikeView
from .xylo_neuron import XyloNeuron

MAX_DOUBLINGS = 30
BISECTIONS = 30
TOLERANCE = 0.02  # relative: a layer ends within 2 % of the target rate


@dataclass(frozen=True)
class LayerCalibration:
    """One layer's rate on the calibration batch before and after, and the factor its weight and bias got."""

    rate_before: float
    rate_after: float
    scale: float


class _Recorder(SpikeView):
    """The spike view that also keeps, per step, one layer's synaptic current W h + b and its total input current."""

    def __init__(self, synapse, name: str):
        self.target, self.name = synapse, name
        self.synaptic: list[torch.Tensor] = []
        self.total: list[torch.Tensor] = []

    def synapse(self, op, h, state):
        current = super().synapse(op, h, state)
        if op is self.target:
            self.synaptic.append(current)
        return current

    def neuron(self, p, current, state, new, name):
        if name == self.name:
            self.total.append(current)
        return super().neuron(p, current, state, new, name)


def _rate(neuron: LIF | SRM | XyloNeuron, synaptic: list[torch.Tensor], other: list[torch.Tensor], c: float) -> float:
    """Mean spikes per neuron and step of ``neuron`` driven by c·synaptic[t] + other[t], t = 1..T."""
    v, spikes = None, 0.0
    for t, (i_syn, i_other) in enumerate(zip(synaptic, other, strict=True)):
        s, v = neuron.step(c * i_syn + i_other, v, t)
        spikes = spikes + s.mean()
    return float(spikes) / len(synaptic)


def _solve(rate: Callable[[float], float], target: float) -> float:
    """c > 0 with rate(c) within ``TOLERANCE``·target of target: double or halve c from 1 until target is bracketed,
    then bisect on log c. Where the rate cannot reach the target (an input that is all zero) the bracket end nearest
    to it."""
    lo = hi = 1.0
    r_lo = r_hi = rate(1.0)
    for _ in range(MAX_DOUBLINGS):
        if r_hi >= target:
            break
        lo, r_lo, hi = hi, r_hi, hi * 2
        r_hi = rate(hi)
    for _ in range(MAX_DOUBLINGS):
        if r_lo <= target:
            break
        hi, r_hi, lo = lo, r_lo, lo / 2
        r_lo = rate(lo)
    for _ in range(BISECTIONS):
        if not r_lo <= target <= r_hi or min(target - r_lo, r_hi - target) <= TOLERANCE * target:
            break
        mid = math.sqrt(lo * hi)
        r_mid = rate(mid)
        if r_mid < target:
            lo, r_lo = mid, r_mid
        else:
            hi, r_hi = mid, r_mid
    return hi if abs(r_hi - target) <= abs(r_lo - target) else lo


def calibrated_layers(model: SpikingNet) -> list[str]:
    """The layers ``calibrate_rates`` scales, in order: every LIF and Xylo layer (rate: mean spike count), and every
    SRM layer but the last (event-driven
    BP's output layer, whose spike counts the loss S9 trains)."""
    srm = [name for name, n in model.neurons.items() if isinstance(n, SRM)]
    return [name for name, n in model.neurons.items() if isinstance(n, (LIF, XyloNeuron)) or name in srm[:-1]]


def _encoded(model: SpikingNet, x: torch.Tensor) -> torch.Tensor:
    """``x`` over time as the data-driven initialisation reads it (``time_major``; rate codes drawn once, from a
    random stream forked and seeded 0, so the training stream is untouched)."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(0)
        return time_major(x, model.spec)


@torch.no_grad()
def init_batch_statistics(model: SpikingNet, x: torch.Tensor) -> int:
    """Set the running statistics of every BatchNorm of ``model`` (EM-PF's membrane BN per step, SECA-II's) to
    those of one train-mode pass over ``x`` (as ``calibrate_rates`` reads it), a cumulative average over its
    calls; returns how many there are. PyTorch starts them at (μ, σ²) = (0, 1), the statistics of no data: an
    EM-PF layer with κ-scaled binary weights, whose membrane is far below 1, is then silent in eval mode (tests,
    export) until the running averages catch up (measured: conv2 of the digits convnet at initialisation, every
    layer of the CIFAR-10 ResNet-18 after 2 optimizer steps). Training's batch statistics are not changed."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    xs = _encoded(model, x)
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    try:
        model(xs)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


@torch.no_grad()
def calibrate_rates(model: SpikingNet, x: torch.Tensor, target: float) -> dict[str, LayerCalibration]:
    """Scale the weight and bias (``Synapse.scale_``) of each of ``calibrated_layers``, first to last, so that it fires
    at mean rate ``target`` on ``x`` ([B, *input_shape], encoded over ``spec.T`` steps, or [T, B, *input_shape]).
    Rate-coded inputs are drawn once, from a forked random stream. Returns each layer's rates and factor."""
    if not 0 < target < 1:
        raise SpecError(f"the target firing rate of the data-driven initialisation must be in (0, 1), got {target}")
    xs = _encoded(model, x)
    was_training = model.training
    model.eval()
    report: dict[str, LayerCalibration] = {}
    try:
        for name in calibrated_layers(model):
            synapse, neuron = getattr(model, name), model.neurons[name]
            rec = _Recorder(synapse, name)
            state: dict = {}
            for t in range(xs.shape[0]):
                _, state, _ = model.step(xs[t], state, rec)
            other = [total - syn for total, syn in zip(rec.total, rec.synaptic, strict=True)]

            def rate(c: float, neuron=neuron, rec=rec, other=other) -> float:
                return _rate(neuron, rec.synaptic, other, c)

            c = _solve(rate, target)
            report[name] = LayerCalibration(rate(1.0), rate(c), c)
            synapse.scale_(c)
    finally:
        model.train(was_training)
    return report
