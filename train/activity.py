"""Which spiking layers are silent or saturated, from their mean firing rates.

A layer whose mean rate (spikes per neuron and step) is below ``SILENT_RATE`` passes (almost) nothing forward: the
layers above it and the readout see no input and the readout gets no gradient. A layer of binary spikes (LIF, SRM)
above ``SATURATED_RATE`` fires at (almost) every step whatever the input, which carries no information either.
EM-PF spikes are real-valued (ReLU(m − θ)), so for them only the floor applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from snnchip.spec import NetworkSpec, NeuronKind

SILENT_RATE = 1e-3
SATURATED_RATE = 0.99
BINARY_SPIKES = (NeuronKind.LIF, NeuronKind.SRM)


class LayerActivityWarning(UserWarning):
    """A spiking layer is silent or saturated."""


@dataclass(frozen=True)
class RateFlag:
    """``layer`` fires at ``rate``, below the floor (``state`` "silent") or above the ceiling ("saturated")
    ``threshold``."""

    layer: str
    rate: float
    state: str
    threshold: float

    def message(self) -> str:
        side = "<" if self.state == "silent" else ">"
        return f"layer {self.layer} is {self.state}: firing rate {self.rate:.3g} {side} {self.threshold:g}"


def rate_flags(spec: NetworkSpec, rates: dict[str, float], floor: float = SILENT_RATE,
               ceiling: float = SATURATED_RATE) -> list[RateFlag]:
    """The silent (rate < ``floor``) and saturated (rate > ``ceiling``, binary-spike layers) layers among ``rates``
    ({layer: mean spikes per neuron and step}), in layer order."""
    kinds = {la.name: la.neuron.kind for la in spec.layers if la.neuron is not None}
    flags = []
    for layer, rate in rates.items():
        if rate < floor:
            flags.append(RateFlag(layer, rate, "silent", floor))
        elif rate > ceiling and kinds.get(layer) in BINARY_SPIKES:
            flags.append(RateFlag(layer, rate, "saturated", ceiling))
    return flags
