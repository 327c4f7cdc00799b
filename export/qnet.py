"""The quantized network: the integers deploy hands to Lava and the bit-exact simulator (``QuantizedNet`` of
``QStage``s of ``QProjection``s), and the encodings between real values and them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnchip.export.kernel import Kernel
from snnchip.export.loihi2 import MESSAGE_BITS, NO_CURRENT, V_MAX
from snnchip.export.lowering import INPUT, StageTraits, Weight, synapse_of
from snnchip.export.weight_grid import weight_values

SPIKE_FRAC_BITS = 8  # graded EM-PF messages: s_real·2^8 (fewer where a Dense's int32 sum needs it)
INPUT_FRAC_BITS = 16  # the real-valued input: x·2^16 (fewer where its 24-bit payload or a Dense's int32 sum needs it)


class SaturationWarning(UserWarning):
    """A stage's worst-case membrane over T steps exceeds the 24-bit state (it may saturate)."""


@dataclass(frozen=True)
class QProjection:
    """Integer synapses of one projection, exactly as deploy hands them to a Lava Dense/Sparse."""

    source: str
    weight: Weight  # int32 [n_out, n_source] (dense, or CSR for a Lava Sparse), exact under Lava's truncation
    weight_exp: int  # includes −q of a graded source
    num_message_bits: int  # 24 for graded sources (the input, EM-PF stages), 0 for binary spikes
    delay: int = 0  # software steps (the float graph's)
    lava_delay: int = 0  # extra synaptic delay on Lava (a DelayDense/DelaySparse when > 0)
    low: Weight | None = None  # wide weights: the residual's mantissas, a second Dense/Sparse of the same layout
    low_exp: int = 0  # its exponent (includes −q of a graded source)

    @property
    def synapse(self) -> str:
        return synapse_of(self.weight)

    @property
    def parts(self) -> tuple[tuple[Weight, int], ...]:
        """(mantissas, exponent) of each Lava Dense/Sparse the projection is: one, or two with wide weights."""
        return ((self.weight, self.weight_exp),) + (() if self.low is None else ((self.low, self.low_exp),))

    @property
    def synapses(self) -> int:
        """Synapses on the chip: the non-zero mantissas of every part (a kernel's counted where they land)."""
        return sum(m.connections() if isinstance(m, Kernel) else int(np.count_nonzero(weight_values(m)))
                   for m, _ in self.parts)


@dataclass(frozen=True)
class QStage(StageTraits):
    """Integer parameters of one stage, exactly as deploy hands them to Lava."""

    name: str
    kind: str  # "lif" | "cubalif" | "srm" | "empf" | "readout"
    inputs: tuple[QProjection, ...]
    out_shape: tuple[int, ...]
    bias: np.ndarray  # int32 [n_out], activation units (V += 64·bias each step)
    dv: int
    vth: int  # NEVER_FIRES for the readout
    scale: float  # c: V = 64·c·x
    reset: str = "subtract"
    spike: str = "ge"
    du: int = NO_CURRENT  # the current's decay register (factor 4096 − (du + 1))
    vsub: int | None = None  # the mantissa "subtract" removes when it is not vth
    lam_syn: float = 0.0
    latency: int = 1  # software step t runs at Lava step t + latency
    shift: int = 0  # empf: graded message = s >> shift (s in membrane units, the message has spike_frac_bits)
    spike_frac_bits: int = 0  # empf: the message is s_real·2^spike_frac_bits
    tables: dict[str, np.ndarray] | None = None  # empf: int64 [T, n] lam (lq), scale (aq), theta (th), offset (r)
    max_spikes: int = 1  # > 1: s = min(⌊v / vth⌋, max_spikes) spikes per step, sent as a graded count
    message_cap: int = V_MAX  # empf: the largest message, so that no Dense it feeds leaves int32

    @property
    def size(self) -> int:
        return math.prod(self.out_shape)


@dataclass(frozen=True)
class QuantizedNet:
    input_shape: tuple[int, ...]
    stages: tuple[QStage, ...]
    T: int | None
    encoding: str
    input_frac_bits: int
    input_range: float
    output: str
    report: list[dict] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return max(q.latency for q in self.stages)

    def stage(self, name: str) -> QStage:
        return next(q for q in self.stages if q.name == name)


def frac_bits(qnet: QuantizedNet, source: str) -> int:
    """q of a source's messages: the input's frac bits, an EM-PF stage's spike frac bits, 0 for binary spikes."""
    return qnet.input_frac_bits if source == INPUT else qnet.stage(source).spike_frac_bits


def dequantize_weight(q: QProjection, frac: int, scale: float) -> Weight:
    """Real weights the chip applies: Ŵ = Σ_parts m·2^(e + q)/c (``frac`` = q of the projection's source)."""
    return sum(m.astype(np.float64) * 2.0 ** (e + frac) for m, e in q.parts) / scale


def encode_input(x: np.ndarray, frac: int) -> np.ndarray:
    """Real-valued input -> graded-spike payload xq = clip(round(x·2^q), ±(2^23 − 1)) (int64)."""
    lim = 2 ** (MESSAGE_BITS - 1) - 1
    return np.clip(np.round(np.asarray(x, np.float64) * 2.0**frac), -lim, lim).astype(np.int64)
