"""Loihi 2's vocabulary: the constants and rules of the chip (and of Lava's bit-accurate models of it), stated once.

The quantizer (``export.quantize``), the limits check (``export.loihi_limits``), the Lava graph (``deploy.network``),
the shared arithmetic (``deploy.fixed_point``), sizing and resources import them from here.

State and messages (lava-nc 0.10.0, ``PyLifModelBitAcc``, ``PyDenseModelBitAcc``): the membrane v and the current
u are 24-bit signed (|v| ≤ 2^23 − 1, u wraps at 2^23); activations and thresholds are shifted left by
``ACT_SHIFT`` = 6 before they meet the state (V += a << 6, spike when v > vth << 6); decays are 12-bit factors of
``DECAY_UNITY`` = 4096; graded messages carry 24 bits; Dense/Sparse accumulate in int32.

Weights: 8-bit mantissas in one of Lava's sign modes (``lava.utils.weightutils.SignMode``), decided by the signs of
the whole matrix (zeros count as both): mixed (the lowest bit is dropped, so mantissas are even, in [−256, 254]),
excitatory [0, 255], inhibitory [−255, 0].

Resources (``NEURONS_PER_CORE`` …): ``CORE_LIMITS`` gives each number and where it comes from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnchip.spec import Named, NeuronKind

STATE_BITS = 24
V_MAX = 2 ** (STATE_BITS - 1) - 1  # |v| of the 24-bit signed state
WRAP = 2 ** (STATE_BITS - 1)  # the current u wraps past ±2^23 (Lava's single wrap)
ACT_SHIFT = 6  # Lava: activations and thresholds are shifted left by 6 before they meet the state
ACT_SHIFT_SCALE = 2**ACT_SHIFT
VTH_BITS = 17
VTH_MAX = 2**VTH_BITS - 1  # threshold mantissa
NEVER_FIRES = VTH_MAX + 1  # vth << 6 = 2^23 > any 24-bit membrane: a readout on Lava's LIF
DECAY_BITS = 12
DECAY_UNITY = 2**DECAY_BITS  # 12-bit decays: factor (4096 − d)/4096
NO_CURRENT = DECAY_UNITY - 1  # du: the current forgets everything every step
MESSAGE_BITS = 24  # graded-spike payload
MESSAGE_SHIFT = (-MESSAGE_BITS + 1, MESSAGE_BITS - 1)  # an EM-PF message is its 24-bit spike shifted by these
WEIGHT_BITS = 8  # synaptic weight mantissa
INT32_MAX = 2**31 - 1  # Dense/Sparse/Conv accumulators
LAVA_CONV_MAX = 127  # Lava's Conv keeps kernel size, stride, padding, dilation and groups in int8 variables
MAX_LAVA_DELAY = 63  # synaptic delays have 6 bits (Lava's DelayDense / DelaySparse)
WEIGHT_EXP = (-31, 31)  # shifts of the int32 accumulator that keep their meaning (beyond: always 0 or overflow)

# Lava's sign modes (lava.utils.weightutils.SignMode) and each one's mantissa grid (lowest, highest, step)
SIGN_MODES = {"mixed": 1, "excitatory": 2, "inhibitory": 3}
MANTISSA_GRID = {"mixed": (-2**WEIGHT_BITS, 2**WEIGHT_BITS - 2, 2), "excitatory": (0, 2**WEIGHT_BITS - 1, 1),
                 "inhibitory": (-(2**WEIGHT_BITS - 1), 0, 1)}

# an EM-PF stage's per-step tables: (float name in the lowered Stage, integer name in the QStage / Lava process)
EMPF_TABLES = (("lam", "lam"), ("input_scale", "scale"), ("theta", "theta"), ("reset_offset", "offset"))
EMPF_FLOAT_TABLES = tuple(f for f, _ in EMPF_TABLES)
EMPF_INT_TABLES = tuple(i for _, i in EMPF_TABLES)

# Loihi 2's resources. Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2", technology brief
# (2021): 128 neuromorphic cores per chip, up to 1 M neurons (8,192 per core) and up to 120 M synapses per chip.
# Per-core memory and fan-in are not in that brief. We use Loihi 1's published per-core figures as the estimate
# (M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1), 2018:
# 128 KB of synaptic memory and 4,096 input axons per core), labelled as an estimate wherever they are used.
CORES_PER_CHIP = 128
NEURONS_PER_CORE = 8192
SYNAPSES_PER_CHIP = 120_000_000
SYNAPSES_PER_CORE = SYNAPSES_PER_CHIP // CORES_PER_CHIP
SYNAPTIC_MEMORY_PER_CORE = 128 * 2**10  # bytes (estimate, see above)
AXONS_PER_CORE = 4096  # input axons (fan-in sources) one core addresses (estimate, see above)
CORE_LIMITS = {
    "neurons_per_core": (NEURONS_PER_CORE, "Intel Loihi 2 brief (2021): 1 M neurons / 128 cores"),
    "synapses_per_core": (SYNAPSES_PER_CORE, "Intel Loihi 2 brief (2021): 120 M synapses / 128 cores"),
    "synaptic_memory_bytes_per_core": (SYNAPTIC_MEMORY_PER_CORE, "estimate: Loihi 1 (Davies et al. 2018)"),
    "axons_per_core": (AXONS_PER_CORE, "estimate: Loihi 1 (Davies et al. 2018)"),
    "cores_per_chip": (CORES_PER_CHIP, "Intel Loihi 2 brief (2021)"),
}


def sign_mode(values: Any) -> str:
    """Lava's sign mode of a weight matrix from its (possibly non-zero) entries: zeros count as ≥ 0 and ≤ 0."""
    v = np.asarray(values)
    lo, hi = v.min(initial=0), v.max(initial=0)
    if lo < 0 < hi:
        return "mixed"
    return "inhibitory" if lo < 0 else "excitatory"


def mantissa_grid(values: Any) -> tuple[int, int, int]:
    """(lowest, highest, step) of the 8-bit mantissa grid of a weight matrix's sign mode."""
    return MANTISSA_GRID[sign_mode(values)]


def voltage_decay(lam: Any) -> Any:
    """dv, the 12-bit register of a membrane decay λ: the factor (4096 − dv)/4096 nearest λ (dv ≤ 4095, so λ = 0
    is held as 1/4096). Scalars or arrays (NumPy's rounding, half to even, as Python's ``round``)."""
    return np.minimum(DECAY_UNITY - 1, np.round(DECAY_UNITY * (1 - np.asarray(lam, np.float64)))).astype(np.int64)


def current_decay(lam_syn: Any) -> Any:
    """du, the register of a current decay λ_syn: Lava's LIF multiplies the current by (4096 − (du + 1))/4096, so
    du = round(4096·(1 − λ_syn)) − 1 (−1, outside the register, where λ_syn rounds to no decay at all)."""
    return (np.round(DECAY_UNITY * (1 - np.asarray(lam_syn, np.float64))) - 1).astype(np.int64)


def held_voltage_decay(dv: Any) -> Any:
    """The membrane decay the chip applies for register dv: (4096 − dv)/4096."""
    return 1 - np.asarray(dv, np.float64) / DECAY_UNITY


def held_current_decay(du: Any) -> Any:
    """The current decay the chip applies for register du: (4096 − (du + 1))/4096."""
    return (NO_CURRENT - np.asarray(du, np.float64)) / DECAY_UNITY


# ------------------------------------------------------------------------------------- which process runs a stage
class LavaProcess(Named):
    """The process a stage or projection runs on, as the hardware-readiness table names it: Lava's own (``lava.``)
    wherever it is exact, ours (``snnchip.``, a CPU model of the same arithmetic) otherwise."""

    DENSE = "lava.Dense"
    SPARSE = "lava.Sparse"
    DELAY_DENSE = "lava.DelayDense"
    DELAY_SPARSE = "lava.DelaySparse"
    CONV = "lava.Conv"
    LIF = "lava.LIF"
    RING_BUFFER = "lava.RingBuffer"
    OUR_CONV = "snnchip.Conv"
    OUR_CUBALIF = "snnchip.CubaLIF"
    OUR_EMPF = "snnchip.EMPF"


class SynapseLayout(Named):
    """How a projection's weights are held, named as the deploy directory writes it."""

    DENSE = "dense"  # a matrix: a Lava Dense
    SPARSE = "sparse"  # CSR weights: a Lava Sparse
    CONV = "conv"  # a weight-shared kernel: Lava's Conv or ours


BUILTIN = frozenset(p for p in LavaProcess if p.startswith("lava."))
_SYNAPSE_PROCESS = {  # (needs Lava's extra delay, layout) -> process
    (False, SynapseLayout.DENSE): LavaProcess.DENSE, (False, SynapseLayout.SPARSE): LavaProcess.SPARSE,
    (True, SynapseLayout.DENSE): LavaProcess.DELAY_DENSE, (True, SynapseLayout.SPARSE): LavaProcess.DELAY_SPARSE}


def neuron_process(q: Any) -> LavaProcess:
    """The Lava process a stage's neurons run on (``q``: a stage with kind, spiking, reset, spike): Lava's own LIF
    wherever it is exact (reset to zero, ``>``, the current kept through a spike; every readout, as a LIF that never
    fires), our processes otherwise."""
    if q.kind == NeuronKind.EMPF:
        return LavaProcess.OUR_EMPF
    if not q.spiking or (q.kind in (NeuronKind.LIF, NeuronKind.CUBALIF) and (q.reset, q.spike) == ("zero", "gt")
                         and q.max_spikes == 1):
        return LavaProcess.LIF
    return LavaProcess.OUR_CUBALIF


def conv_on_lava(weight: Any, exponents: tuple[int, ...], num_message_bits: int, lava_delay: int) -> bool:
    """Whether a weight-shared projection runs exactly on Lava's own ``Conv``: its fixed_pt model ignores the weight
    exponent, does not truncate, takes symmetric padding only, has no synaptic delay, is 2-D, holds its geometry in
    int8 variables and wraps its sum to 24 bits, so every part must have exponent 0, the padding must be symmetric,
    messages binary, no extra delay, a 2-D kernel, groups, sizes, strides, paddings and dilations ≤ 127, and every
    output's Σ|m| below 2^23 (so the 24-bit wrap never acts)."""
    return (all(e == 0 for e in exponents) and num_message_bits == 0 and lava_delay == 0
            and weight.symmetric_padding and len(weight.stride) == 2 and weight.groups <= LAVA_CONV_MAX
            and max(weight.kernel.shape[2:] + weight.pad_before + weight.stride + weight.dilation) <= LAVA_CONV_MAX
            and weight.abs_sum_bound < WRAP)


def synapse_process(p: Any) -> LavaProcess:
    """The Lava process of a projection (``p``: a QProjection): Dense or Sparse (their Delay variants when it needs
    extra delay), Lava's Conv for a weight-shared kernel where it is exact (``conv_on_lava``), else ours."""
    if p.synapse == SynapseLayout.CONV:
        exact = conv_on_lava(p.weight, tuple(e for _, e in p.parts), p.num_message_bits, p.lava_delay)
        return LavaProcess.CONV if exact else LavaProcess.OUR_CONV
    return _SYNAPSE_PROCESS[bool(p.lava_delay), p.synapse]
