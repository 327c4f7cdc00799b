"""Xylo's neuron for training (neuron kind ``xylo``, ``--profile xylo``): the float twin of SynSense Xylo's hidden
neuron, ``snnchip.neurons.cuba_lif_step`` with a_syn = λ_syn, b_syn = 1, a = λ, subtractive reset and up to
``XYLO_MAX_SPIKES`` spikes per step (``snnchip.neurons.spike_count``). The count's gradient is the spec's
surrogate of H(u − θ) (straight-through for the count above one spike); the reset is not differentiated through,
as in BPTT's LIF. Trained with BPTT and the online rules but SAF: SLTT and SLTT-K (Meng et al., "Towards Memory- and
Time-Efficient Backpropagation for Training Spiking Neural Networks", arXiv:2302.14311) cut the state (i, v) every
step, so that the input of step t reaches u[t] through the current with factor 1 (the spatial path of Eqs. 12–13);
OTTT_O/A (Xiao et al., "Online Training Through Time for Spiking Neural Networks", arXiv:2210.04195) weight it by
the presynaptic trace of this neuron's kernel (``views.TraceView`` with λ_syn). SAF is refused: its accumulations
equal a LIF without a current."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snnchip.neurons import spike_count
from snnchip.spec import XYLO_MAX_SPIKES, NeuronSpec

from .neuron import SURROGATES, _Heaviside


@dataclass
class XyloNeuron:
    lam: float
    lam_syn: float
    theta: float
    surrogate: object

    @classmethod
    def from_spec(cls, spec: NeuronSpec) -> XyloNeuron:
        return cls(spec.lam, spec.lam_syn, spec.theta, SURROGATES[spec.surrogate](spec.slope, spec.theta))

    def step(self, current: torch.Tensor, state: tuple | None, t: int) -> tuple[torch.Tensor, tuple]:
        """(I[t], (i, v)[t−1]) -> (s[t], (i, v)[t]); ``state=None`` is i = v = 0."""
        i = current if state is None else self.lam_syn * state[0] + current
        u = i if state is None else self.lam * state[1] + i
        h = _Heaviside.apply(u - self.theta, self.surrogate, False)
        count = spike_count(u.detach(), self.theta, XYLO_MAX_SPIKES)
        s = h + (count - h.detach())  # the count forward, the surrogate of H(u − θ) backward
        return s, (i, u - self.theta * count)
