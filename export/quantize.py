"""A lowered network -> its Loihi 2 fixed-point network (``QuantizedNet``; pure, deterministic; no Lava import).

Each stage is quantized in run order (``quantize_stages``: its scale c, weights, threshold, leak, bias), then the
network's messages are fixed:

- graded messages (the real-valued input, EM-PF spikes): a payload s·2^q (24 bits); the projection's exponent
  is e − q. The input's q (``input_frac_bits``, unless given) is the largest ≤ 16 for which its payloads fit 24 bits
  and every Dense reading it keeps its worst-case sum inside Lava's int32 accumulator; an EM-PF stage's q_s ≤ 8 is
  the largest for which every Dense it feeds does.
- projections reading graded spikes keep the smallest mantissas of the same weights (``weight_grid.halved``);
- every projection gets the latency and extra Lava delay of the schedule (``export.schedule``).

The modules: ``qnet`` (the integers), ``weight_grid`` (grid arithmetic), ``quantize_stages`` (one stage),
``quantize_report`` (the report); docs/loihi-fixed-point.md has the derivation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snnchip.errors import QuantizationError, SpecError
from snnchip.export.loihi2 import (
    ACT_SHIFT,
    ACT_SHIFT_SCALE,
    DECAY_UNITY,
    INT32_MAX,
    MESSAGE_BITS,
    MESSAGE_SHIFT,
    V_MAX,
)
from snnchip.export.lowering import INPUT, LoweredNet
from snnchip.export.qnet import INPUT_FRAC_BITS, SPIKE_FRAC_BITS, QProjection, QStage, QuantizedNet
from snnchip.export.quantize_stages import DATA_MARGIN, quantize_empf_stage, quantize_stage
from snnchip.export.schedule import Schedule, schedule
from snnchip.export.weight_grid import halved, row_abs_sum
from snnchip.spec import NeuronKind


def _largest_bits(cap: int, *limits: tuple[float, float]) -> int:
    """The largest q ≤ ``cap`` with value·2^q ≤ limit for every (value, limit) (values of 0 bound nothing)."""
    return min([cap] + [math.floor(math.log2(limit / value)) for value, limit in limits if value > 0])


def _message_bits(net: LoweredNet, stages: dict[str, QStage], worst: dict[str, float], input_frac_bits: int | None,
                  measured: dict[str, float] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """(q, cap): q per graded source: the input's ``input_frac_bits`` (an error if some Dense could overflow; None:
    the largest q ≤ 16 with 24-bit payloads and int32 sums), for each EM-PF stage the largest q_s ≤ 8 that keeps
    every Dense it feeds inside int32 for graded spikes up to its ``measured`` bound (the worst case without one),
    and 0 for a stage sending spike counts (an error if a Dense could overflow); cap per EM-PF stage: its largest
    message, min(2^23 − 1, ⌊(2^31 − 1) / R⌋) with R the largest row sum of |mantissas| among the Dense it feeds,
    so that no sum leaves int32 whatever the spikes."""
    rows: dict[str, list[float]] = {}
    for st in net.stages:
        for p in stages[st.name].inputs:
            if p.source == INPUT or stages[p.source].graded or stages[p.source].max_spikes > 1:
                rows.setdefault(p.source, []).extend(float(row_abs_sum(m).max(initial=0)) for m, _ in p.parts)
    need = {source: [r * worst[source] for r in rs] for source, rs in rows.items()}
    caps = {source: int(min(V_MAX, INT32_MAX // max(max(rs), 1))) for source, rs in rows.items()
            if source != INPUT and stages[source].graded}
    largest_input = max(need.get(INPUT, [0.0]))
    q = {INPUT: _largest_bits(INPUT_FRAC_BITS, (worst[INPUT], V_MAX), (largest_input, INT32_MAX))
         if input_frac_bits is None else input_frac_bits}
    if q[INPUT] < 0:
        raise QuantizationError(f"a Dense reading the input sums up to {largest_input:.3g} (input range "
                                f"{worst[INPUT]:.3g}), which overflows Lava's int32 accumulator even with no "
                                "fractional bits; lower the input range or the weights")
    for source, sums in need.items():
        largest = max(sums)
        if source == INPUT:
            if largest * 2.0**q[INPUT] > INT32_MAX:
                raise QuantizationError(f"a Dense reading the input sums up to {largest * 2.0**input_frac_bits:.3g}, "
                                        f"which overflows Lava's int32 accumulator; lower input_frac_bits (now "
                                        f"{input_frac_bits})")
            continue
        if not stages[source].graded:  # spike counts: integers as they are
            if largest > INT32_MAX:
                raise QuantizationError(f"stage {source!r}: up to {worst[source]:g} spikes per step overflow the "
                                        f"int32 Dense sum of the stages it feeds ({largest:.3g})")
            q[source] = 0
            continue
        seen = (measured or {}).get(source)
        bits = _largest_bits(SPIKE_FRAC_BITS, (max(rows[source]) * (worst[source] if seen is None else seen),
                                               INT32_MAX))
        if bits < 0:
            raise QuantizationError(f"stage {source!r}: its graded spikes (up to {worst[source]:.3g}"
                                    + (f"; {seen:.3g} measured on training data with its margin"
                                       if seen is not None else "")
                                    + ") overflow the int32 Dense sum of the stages it feeds even without "
                                    "fractional bits")
        q[source] = bits
    return q, caps


def _fewest_bits(p: QProjection) -> QProjection:
    """``p`` with each part's mantissas ``halved``: the row sums Σ|m| that bound a graded source's int32 sums (its
    message bits and cap, ``_message_bits``) shrink by the same factor; ±1 weights (EM-PF's binary layers, their
    κ_k in the input scale) keep one or two."""
    weight, weight_exp = halved(p.weight, p.weight_exp)
    low, low_exp = (None, p.low_exp) if p.low is None else halved(p.low, p.low_exp)
    return dataclasses.replace(p, weight=weight, weight_exp=weight_exp, low=low, low_exp=low_exp)


def quantize(net: LoweredNet, T: int | None = None, input_range: float = 1.0, input_frac_bits: int | None = None,
             weight_exp: int | None = None, spike_bounds: dict[str, float] | None = None, wide_weights: bool = False,
             headroom: str = "T", peaks: dict[str, tuple[float, float]] | None = None,
             margin: float = DATA_MARGIN
             ) -> QuantizedNet:
    """Quantize every stage of ``net``; the first reads graded real inputs with |x| ≤ ``input_range``.

    ``wide_weights``: every projection is two 8-bit synapse sets, the weights' mantissas and their residual's
    (twice the synapses), so a weight is exact to the membrane's resolution (1/c) instead of 8 bits.
    ``headroom``: "T" scales every spiking membrane for its worst case over T steps (it never saturates; the scale,
    and with it the resolution, shrinks with T where a neuron integrates without much leak); "step" for one step
    of the largest current, θ + R·Σλ_syn^k (beyond it the 24-bit state saturates, identically in Lava and the
    simulator; the report flags it). Readouts get the T-step bound. "data": each LIF-family stage (readouts too) is
    scaled for max(``margin`` × I, V) of ``peaks[stage]`` = (I, V), the largest |current| and membrane its float
    stage reached on calibration inputs (``export.stage_peaks``), never beyond the one-step bound (readouts: T-step);
    inputs that drive a state past it saturate (counted by ``hw_sim.chip``); EM-PF stages likewise, for their
    input term and membrane m (``quantize_empf_stage``); "step" leaves EM-PF stages at their T-step bound.
    ``input_frac_bits``: q of the input's payloads x·2^q (None: the largest ≤ 16 that fits, see ``_message_bits``).
    ``weight_exp`` (None: chosen per projection) fixes every Dense exponent (see ``quantize_stage``; it needs an
    explicit ``input_frac_bits``).
    ``spike_bounds`` {EM-PF stage: max graded spike measured on data}: the stages it feeds use it for their scale
    and its message bits q_s instead of the worst case (a bound of 0, a stage silent on the data: q_s only, the
    scales keep the worst case); larger spikes clip at the stage's ``message_cap`` (so
    Lava's int32 Dense sum cannot overflow) or the 24-bit state, identically in hw_sim and Lava.
    """
    if weight_exp is not None and input_frac_bits is None:
        raise SpecError(f"weight_exp={weight_exp} fixes every projection's exponent and needs an explicit "
                        "input_frac_bits (the input's grid): pass input_frac_bits (netx export passes both)")
    steps = T if T is not None else net.T
    plan: Schedule = schedule(net)
    worst: dict[str, float] = {INPUT: input_range}
    message_max: dict[str, float] = {INPUT: input_range}
    stages: dict[str, QStage] = {}
    reports: dict[str, dict] = {}
    graded = {st.name for st in net.stages if st.graded}
    seen: dict[str, float] = {}  # EM-PF stages' measured graded-spike bounds below their worst case
    for st in net.stages:
        if st.max_spikes > 1:  # its messages are spike counts, up to max_spikes (its own recurrence reads them too)
            worst[st.name] = message_max[st.name] = float(st.max_spikes)
    for st in net.stages:
        for p in st.inputs:
            if p.source in graded and p.source not in worst:
                raise QuantizationError(f"stage {st.name!r}: a recurrent input from the graded (EM-PF) stage "
                                        f"{p.source!r} is not supported on the chip")
            worst.setdefault(p.source, 1.0)  # binary spikes
            message_max.setdefault(p.source, 1.0)
        if headroom == "data" and st.name not in (peaks or {}):
            raise QuantizationError(f"stage {st.name!r}: the data headroom needs its observed peak (calibration "
                                    "inputs)")
        if st.kind == NeuronKind.EMPF:
            if steps is None:
                raise QuantizationError(f"stage {st.name!r}: an EM-PF stage needs T")
            q, r = quantize_empf_stage(st, steps, message_max, wide_weights,
                                       (peaks or {}).get(st.name) if headroom == "data" else None, margin)
            worst[st.name] = float(r["graded_spike_bound"])
            measured = (spike_bounds or {}).get(st.name)
            if measured is not None and measured < worst[st.name]:
                seen[st.name] = r["graded_spike_measured"] = float(measured)
            # a stage silent on the data (0) keeps the worst case for the scales of the stages it feeds
            message_max[st.name] = seen[st.name] if seen.get(st.name, 0) > 0 else worst[st.name]
        else:
            q, r = quantize_stage(st, steps, message_max, weight_exp, input_frac_bits or 0, wide_weights, headroom,
                                  (peaks or {}).get(st.name), margin)
        stages[st.name], reports[st.name] = q, r
    for name, q in stages.items():  # projections reading graded spikes: the smallest mantissas
        if any(p.source in graded for p in q.inputs):
            inputs = tuple(_fewest_bits(p) if p.source in graded else p for p in q.inputs)
            for rp, p in zip(reports[name]["projections"], inputs, strict=True):
                rp.update(grid_exp=p.weight_exp, low_exp=None if p.low is None else p.low_exp)
            stages[name] = dataclasses.replace(q, inputs=inputs)
    q_bits, caps = _message_bits(net, stages, worst, input_frac_bits, seen)
    out = []
    for st in net.stages:
        q = stages[st.name]
        inputs = tuple(dataclasses.replace(
            p, weight_exp=p.weight_exp - q_bits.get(p.source, 0), low_exp=p.low_exp - q_bits.get(p.source, 0),
            lava_delay=e,
            num_message_bits=MESSAGE_BITS if p.source in q_bits else 0)
            for p, e in zip(q.inputs, plan.extra[st.name], strict=True))
        q = dataclasses.replace(q, inputs=inputs, latency=plan.latency[st.name])
        if q.graded:
            bits = q_bits.get(st.name, SPIKE_FRAC_BITS)
            shift = int(ACT_SHIFT + round(math.log2(q.scale)) - bits)
            if not MESSAGE_SHIFT[0] <= shift <= MESSAGE_SHIFT[1]:
                lam_max = float(np.abs(q.tables["lam"]).max()) / DECAY_UNITY
                raise QuantizationError(
                    f"stage {st.name!r}: its membrane bound over T={steps} steps "
                    f"({reports[st.name]['state_bound_int'] / (ACT_SHIFT_SCALE * q.scale):.3g}, max λ̂ = "
                    f"{lam_max:.3g}) leaves a scale of 2^{round(math.log2(q.scale))}, so its graded messages would "
                    f"need a shift of {shift}, beyond {MESSAGE_SHIFT[0]}..{MESSAGE_SHIFT[1]}"
                    + (": a λ̂ above 1 compounds over the steps" if lam_max > 1 else ""))
            q = dataclasses.replace(q, spike_frac_bits=bits, shift=shift, message_cap=caps.get(st.name, V_MAX))
            reports[st.name].update(spike_frac_bits=bits, spike_shift=q.shift, message_cap=q.message_cap)
        for rp, p in zip(reports[st.name]["projections"], inputs, strict=True):
            rp.update(lava_delay=p.lava_delay, num_message_bits=p.num_message_bits)
        reports[st.name]["latency"] = q.latency
        out.append(q)
    return QuantizedNet(net.input_shape, tuple(out), steps, net.encoding, q_bits[INPUT], input_range, net.output,
                        [reports[st.name] for st in net.stages])
