"""One float stage -> its Loihi 2 fixed-point parameters (pure, deterministic; no Lava import): the LIF family
(``quantize_stage``) and EM-PF (``quantize_empf_stage``).

Equations (docs/loihi-fixed-point.md has the derivation). Each stage gets a scale c > 0: a real
membrane value x is the 24-bit integer V = 64·c·x (Lava shifts activations and thresholds by 2^6).
Every projection into a stage (its own Lava Dense/Sparse) shares the stage's scale and has its own exponent:

- weights: Dense/Sparse mantissas m (8 bits; mixed sign: even values in [−256, 254] because Lava drops the
  lowest bit; excitatory [0, 255]; inhibitory [−255, 0]) and a shared exponent e with m·2^e ≈ c·W. Lava's Dense
  and Sparse send a = (Σ m·s) << e (>> −e for e < 0, rounding toward −∞). A CSR projection is quantized entry by
  entry on its stored values (``weight_values``), which gives the mantissas the dense matrix would get.
- wide weights (``quantize(..., wide_weights=True)``): a projection is two Dense/Sparse of the same layout, m·2^e
  and the residual's mantissas m_lo·2^f ≈ c·W − m·2^e (f ≥ −1 for even mantissas, whose sums >> 1 are exact for
  binary spikes; f ≥ 0 otherwise): every weight is within half a step of the residual's grid, one activation unit
  1/c while e ≤ 6 (7 for single-signed weights), instead of half of 2^e/c (twice that for mixed signs).
- threshold: vth = c·θ, an integer ≤ 2^17 − 1 (c is adjusted so that c·θ is exact). Readouts never fire
  (vth = 2^17: vth << 6 = 2^23 exceeds every 24-bit membrane).
- leak: dv = round(4096·(1 − λ)) (12 bits). Current (Lava's LIF register du, factor 4096 − (du + 1)):
  du = round(4096·(1 − λ_syn)) − 1 for neurons with a current state (CubaLIF, SRM, CubaLI), du = 4095 (no current
  memory) otherwise; the current's input scale is already folded into the weights.
- bias: an integer in activation units, bq = round(c·b), injected each step through the neuron's input
  (V += 64·bq), so that it starts with the stage's first input (see docs: latency).

Scale choice: the weight grid is 2^e/c with e = ⌈log2(c·max|W| / m_max)⌉, i.e. always the full mantissa, so a
larger c refines the membrane (threshold, bias, leak rounding) and, with wide weights, the weights. c is therefore
taken as large as the 24-bit headroom allows: c_head = (2^23 − 1) / (64·B) with R = max_i(Σ_p Σ_j |W_p,ij|·x_max(p)
+ |b_i|), the largest current I = R·Σ_{k<T} λ_syn^k and B = θ + I·Σ_{k<T} λ^k over T steps (``headroom="T"``,
readouts always) or B = θ + I for one step (``headroom="step"``, or where the T-step bound leaves c·θ < 1), or
from data (``headroom="data"``): B = min(B_guaranteed, max(μ·I, V, θ)) with I the largest |current| and V the
largest membrane (before its reset) of the float stage on calibration inputs (``export.stage_peaks``), μ ≥ 1 the
margin on the current (whose overflow wraps, flipping its sign) and B_guaranteed the one-step bound (the T-step
bound for readouts); beyond B the 24-bit state saturates (v clips, the current wraps), identically in Lava and the
simulator, which counts it (``hw_sim.chip``).
Candidates c ∈ {2^⌊log2 c_head⌋, c_head, c_fit·2^⌊log2(c_head/c_fit)⌋} (c_fit fills the mantissa of the largest
weight exactly), each rounded down so that vth = c·θ is an integer; the one with the smallest maximal
weight/bias/threshold error wins (ties: the power of two, which is lossless for parameters on a binary grid). A
bound the headroom cannot meet raises ``QuantizationError``; a T-step worst case that could saturate under the
T-step headroom warns (``SaturationWarning``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from snnchip.errors import QuantizationError, SpecError
from snnchip.export.loihi2 import (
    ACT_SHIFT,
    ACT_SHIFT_SCALE,
    DECAY_UNITY,
    EMPF_FLOAT_TABLES,
    EMPF_INT_TABLES,
    NEVER_FIRES,
    NO_CURRENT,
    V_MAX,
    VTH_MAX,
    current_decay,
    held_current_decay,
    held_voltage_decay,
    voltage_decay,
)
from snnchip.export.lowering import INPUT, Stage, Weight
from snnchip.export.qnet import SPIKE_FRAC_BITS, QProjection, QStage, SaturationWarning
from snnchip.export.weight_grid import (
    fit_scale,
    geometric_sum,
    grid_exponent,
    int32_mantissas,
    mantissa_range,
    residual_mantissas,
    row_abs_sum,
    synapse_sum,
    to_mantissa,
    weight_values,
    with_values,
)
from snnchip.spec import NeuronKind


def _candidate(stage: Stage, weights: list[Weight], c: float, exps: list[int] | None, wide: bool = False
               ) -> tuple[float, dict]:
    """Quantize at scale c: (score = the largest weight/bias/threshold error, parameters and error summaries);
    ``wide``: each projection also gets the residual's mantissas (``residual_mantissas``)."""
    vth = NEVER_FIRES
    if stage.spiking and stage.kind != NeuronKind.EMPF:
        vth = min(VTH_MAX, max(1, math.floor(c * stage.theta * (1 + 1e-12))))
        c = vth / stage.theta
    bq = np.round(stage.bias * c)
    score = float(np.abs(stage.bias - bq / c).max(initial=0.0))
    vsub = None if stage.reset_by is None else int(round(stage.reset_by * c))
    if stage.spiking and stage.kind != NeuronKind.EMPF:
        score = max(score, abs(stage.theta - vth / c), 0.0 if vsub is None else abs(stage.reset_by - vsub / c))
    projs = []
    for i, w in enumerate(weights):
        values = weight_values(w)
        lo, hi, step = mantissa_range(values)
        e = grid_exponent(values, c, lo, hi) if exps is None else exps[i]
        m, clipped = to_mantissa(values * c / 2.0**e, lo, hi, step)
        applied, low, low_exp, grid = m * 2.0**e, None, 0, step * 2.0**e
        if wide and (part := residual_mantissas(values * c - applied)) is not None:
            m_lo, low_exp, step_lo = part
            applied, low, grid = applied + m_lo * 2.0**low_exp, with_values(w, m_lo), step_lo * 2.0**low_exp
        err = np.abs(values - applied / c)
        projs.append(dict(e=e, step=step, m=with_values(w, m), clipped=int(synapse_sum(w, clipped)), low=low,
                          low_exp=low_exp, grid=grid, werr_max=float(err.max(initial=0.0)),
                          werr_sum=synapse_sum(w, err)))
        score = max(score, projs[-1]["werr_max"])
    return score, dict(c=c, vth=vth, vsub=vsub, bq=bq, projections=projs)


def _scale_candidates(stage: Stage, weights: list[Weight], c_head: float, exps: list[int] | None) -> list[float]:
    if exps is not None:  # netx: exponents fixed; the largest c ≤ c_head whose mantissas fit them
        c_top = min([c_head] + [fit_scale(weight_values(w), *mantissa_range(weight_values(w))[:2]) * 2.0**e
                                for w, e in zip(weights, exps, strict=True)])
        return [2.0 ** math.floor(math.log2(c_top)), c_top]
    cands = [2.0 ** math.floor(math.log2(c_head)), c_head]
    w_max = max((float(np.abs(weight_values(w)).max(initial=0.0)) for w in weights), default=0.0)
    if w_max > 0:  # the largest c ≤ c_head at which the largest weight fills its mantissa exactly
        lo, hi, _ = mantissa_range(np.concatenate([weight_values(w).ravel() for w in weights]))
        c_fit = (hi if hi > 0 else -lo) / w_max
        cands.append(c_fit * 2.0 ** math.floor(math.log2(c_head / c_fit)))
    return cands


def _projections(stage: Stage, best: dict) -> tuple[QProjection, ...]:
    """The integer projections of a chosen candidate (exponents before the −q of graded sources)."""
    return tuple(QProjection(p.source, int32_mantissas(b["m"]), int(b["e"]), 0, p.delay,
                             low=None if b["low"] is None else int32_mantissas(b["low"]), low_exp=int(b["low_exp"]))
                 for p, b in zip(stage.inputs, best["projections"], strict=True))


def _projection_reports(projs: tuple[QProjection, ...], best: dict, unit: float = 1.0) -> list[dict]:
    """Per projection: layout, exponents, synapses and its weight errors over all n = n_out·n_in entries (a CSR
    stage's zeros are exact), in real units divided by ``unit``."""
    out = []
    for p, b in zip(projs, best["projections"], strict=True):
        n = math.prod(p.weight.shape)
        out.append(dict(source=p.source, synapse=p.synapse, grid_exp=int(b["e"]),
                        low_exp=None if p.low is None else int(b["low_exp"]), delay=p.delay,
                        synapses=p.synapses, clipped_fraction=b["clipped"] / n if n else 0.0,
                        max_abs_weight_error=b["werr_max"] / unit,
                        mean_abs_weight_error=b["werr_sum"] / n / unit if n else 0.0))
    return out


HEADROOMS = ("T", "step", "data")
DATA_MARGIN = 1.5  # μ of the data headroom: half again the largest current seen on the calibration inputs


def data_bound(guaranteed: float, peak: tuple[float, float], margin: float, floor: float) -> float:
    """The data headroom's membrane bound: min(guaranteed, max(μ·I, V, floor)) for the peaks (I, V) a stage reached
    on calibration inputs (``export.stage_peaks``) and its threshold as the floor."""
    return min(guaranteed, max(margin * peak[0], peak[1], floor))


def quantize_stage(stage: Stage, T: int | None, x_max: dict[str, float], weight_exp: int | None = None,
                   input_frac_bits: int = 0, wide: bool = False, headroom: str = "T",
                   peak: tuple[float, float] | None = None,
                   margin: float = DATA_MARGIN) -> tuple[QStage, dict]:
    """Quantize one LIF-family stage (lif, cubalif, srm, readout); ``x_max``: the largest message per source
    (the input's range, 1 for binary spikes, an EM-PF stage's graded bound). ``weight_exp`` fixes every
    projection's Dense exponent as Lava applies it (netx: 0, its files hold the effective integer weights; the
    input's projection then has e = weight_exp + ``input_frac_bits``). ``wide``, ``headroom``, ``peak`` (P of the
    data headroom), ``margin``: see ``quantize``."""
    if headroom not in HEADROOMS:
        raise SpecError(f"headroom {headroom!r}; valid: {', '.join(HEADROOMS)} (T: no saturation over T steps; "
                        "step: one step of the largest current; data: the largest current seen on calibration "
                        "inputs); pass one of them (--headroom)")
    if headroom == "data" and (peak is None or not margin >= 1.0):
        raise ValueError(f"stage {stage.name!r}: the data headroom needs the stage's observed peak and a margin "
                         f"≥ 1 (got {peak}, {margin})")
    weights = [p.weight for p in stage.inputs]
    drive = sum(row_abs_sum(p.weight) * x_max[p.source] for p in stage.inputs) + np.abs(stage.bias)
    row = float(np.max(drive, initial=0.0))
    if T is None and not stage.spiking:
        raise QuantizationError(f"stage {stage.name!r}: the readout's 24-bit headroom needs T; pass T")
    theta0 = max(stage.theta, stage.reset_by or 0.0) if stage.spiking else 0.0
    # current-based: |i| ≤ R·Σλ_syn^k and |v| ≤ θ + (that)·Σλ^k over T steps (no current: the current is the input)
    current = row if T is None else row * geometric_sum(stage.lam_syn, T)
    one_step = theta0 + current  # one step of the largest current
    full = one_step if T is None else theta0 + current * geometric_sum(stage.lam, T)
    bound = full
    if stage.spiking and (headroom != "T" or V_MAX / (ACT_SHIFT_SCALE * full) * stage.theta < 1):
        bound = one_step  # asked for, or the T-step worst case does not fit (warned below)
    if headroom == "data" and sum(peak) + theta0 > 0:  # a state never driven keeps the guaranteed bound
        bound = data_bound(bound, peak, margin, theta0)
    c_head = V_MAX / (ACT_SHIFT_SCALE * bound) if bound > 0 else float(VTH_MAX)
    if stage.spiking and c_head * stage.theta < 1:
        raise QuantizationError(
            f"stage {stage.name!r}: one-step membrane bound {bound:.4g} (θ = {stage.theta:.4g} + largest current "
            f"{current:.4g}) needs scale ≤ {c_head:.4g}, which gives a threshold mantissa < 1; reduce the weights or "
            "raise θ")
    exps = None if weight_exp is None else [weight_exp + (input_frac_bits if p.source == INPUT else 0)
                                            for p in stage.inputs]
    _, best = min((_candidate(stage, weights, c, exps, wide)
                   for c in _scale_candidates(stage, weights, c_head, exps)), key=lambda sc: sc[0])
    c, vth, bq = best["c"], best["vth"], best["bq"]
    dv = int(voltage_decay(stage.lam))
    du = int(current_decay(stage.lam_syn)) if stage.current else NO_CURRENT
    if not 0 <= du <= NO_CURRENT:
        raise QuantizationError(f"stage {stage.name!r}: current decay λ_syn = {stage.lam_syn} rounds to no decay "
                                "at all, which Lava's 12-bit du cannot express")
    may_saturate = ACT_SHIFT_SCALE * c * full > V_MAX * (1 + 1e-9)
    if may_saturate and headroom == "T":
        warnings.warn(SaturationWarning(
            f"stage {stage.name!r}: worst-case membrane over T={T} steps is {full:.4g} (real) = "
            f"{ACT_SHIFT_SCALE * c * full:.4g} (int) > 2^23 − 1; it saturates if inputs stay maximal"), stacklevel=3)
    projs = _projections(stage, best)
    q = QStage(name=stage.name, kind=stage.kind, inputs=projs, out_shape=stage.out_shape, bias=bq.astype(np.int32),
               dv=int(dv), vth=int(vth), scale=float(c), reset=stage.reset, spike=stage.spike, du=int(du),
               vsub=best["vsub"], lam_syn=float(stage.lam_syn), max_spikes=stage.max_spikes)
    step_int = max((b["grid"] for b in best["projections"]), default=0.0)  # one weight step, c units
    report = dict(
        stage=stage.name, kind=stage.kind, neurons=stage.size, synapses=sum(p.synapses for p in projs),
        scale=float(c), vth=int(vth), dv=int(dv), lam=float(stage.lam), lam_q=float(held_voltage_decay(dv)),
        du=int(du), lam_syn=float(stage.lam_syn), lam_syn_q=float(held_current_decay(du)),
        theta=float(stage.theta) if stage.spiking else None, theta_q=vth / c if stage.spiking else None,
        max_abs_bias_error=float(np.abs(stage.bias - bq / c).max(initial=0.0)),
        projections=_projection_reports(projs, best),
        state_bound_int=float(ACT_SHIFT_SCALE * c * one_step), state_bound_T_int=float(ACT_SHIFT_SCALE * c * full),
        may_saturate=bool(may_saturate), headroom=headroom if stage.spiking or headroom == "data" else "T",
        **({"observed_current": float(peak[0]), "observed_membrane": float(peak[1]), "margin": float(margin)}
           if headroom == "data" else {}),
        weight_step=step_int / c,
        weight_step_theta=step_int / vth if stage.spiking else None, coarse=bool(stage.spiking and step_int >= vth),
    )
    return q, report


def quantize_empf_stage(stage: Stage, T: int, x_max: dict[str, float], wide: bool = False,
                        peak: tuple[float, float] | None = None, margin: float = DATA_MARGIN
                        ) -> tuple[QStage, dict]:
    """Quantize an EM-PF stage (docs/loihi-fixed-point.md §2): c = 2^k (so that graded messages are shifts),
    weights W·2^ka with 2^ka ≥ max|a| (binary ±1 weights stay exact), per-step integer tables
    lq = round(4096·λ̂), aq = round(4096·a/2^ka), th = round(64·c·θ̂), r = round(64·c·r̂). The membrane bound B
    is the T-step worst case, or with ``peak`` = (I, M) (the data headroom: the largest |a·x| and |m| of the float
    stage on calibration inputs, ``export.stage_peaks``) min(B, max(``margin``·I, M, max θ̂)); beyond it m clips at
    24 bits, identically in Lava and the simulator, which counts it."""
    tab = stage.tables
    lam, a, theta, off = (np.asarray(tab[k], np.float64) for k in EMPF_FLOAT_TABLES)
    a_max = float(np.abs(a).max(initial=0.0)) or 1.0
    ka = math.ceil(math.log2(a_max))
    # the largest input term |a·(W x + b)| of any neuron: max_i max_t |a[t, i]|·Σ_p Σ_j |W_p,ij|·x_max(p) + |b_i|
    rows = sum(row_abs_sum(p.weight) * x_max[p.source] for p in stage.inputs) + np.abs(stage.bias)
    drive = float(np.max(np.abs(a).max(axis=0, initial=0.0) * rows, initial=0.0))
    lam_max = float(np.abs(lam).max(initial=0.0))
    theta_max = float(np.abs(theta).max(initial=0.0))
    bound = theta_max + (drive + float(np.abs(off).max(initial=0.0))) * geometric_sum(lam_max, T)
    if not math.isfinite(bound):
        raise QuantizationError(f"stage {stage.name!r}: the membrane bound over T={T} steps overflows (max λ̂ = "
                                f"{lam_max:.4g} > 1 compounds); lower T or λ̂")
    room = bound
    if peak is not None and sum(peak) > 0:  # a stage never driven keeps the guaranteed bound
        room = data_bound(bound, peak, margin, theta_max)
    c_head = V_MAX / (ACT_SHIFT_SCALE * room) if room > 0 else 1.0
    c = 2.0 ** math.floor(math.log2(c_head))
    # graded spike bound for the stages it feeds: after any step v ≤ max(θ̂ + r) (fired: v = θ̂ + r; else
    # v = m + r < θ̂ + r), so with λ̂ ≥ 0, s = m − θ̂ ≤ λ̂_max·max(θ̂ + r, 0) + drive − min θ̂
    spike_bound = bound
    if lam.min(initial=0.0) >= 0:
        v_up = max(float((theta + off).max(initial=0.0)), 0.0)
        spike_bound = min(bound, max(0.0, lam_max * v_up + drive - float(theta.min(initial=0.0))))
    proxy = Stage(name=stage.name, kind=NeuronKind.READOUT, inputs=stage.inputs, bias=stage.bias * 2.0**ka,
                  out_shape=stage.out_shape)
    _, best = _candidate(proxy, [p.weight * 2.0**ka for p in stage.inputs], c, None, wide)
    ints = dict(zip(EMPF_INT_TABLES, (np.round(DECAY_UNITY * lam), np.round(DECAY_UNITY * a / 2.0**ka),
                                      np.round(ACT_SHIFT_SCALE * c * theta), np.round(ACT_SHIFT_SCALE * c * off)),
                    strict=True))
    ints = {k: np.clip(v, -V_MAX, V_MAX + 1).astype(np.int64) for k, v in ints.items()}
    projs = _projections(stage, best)
    q = QStage(name=stage.name, kind=NeuronKind.EMPF, inputs=projs, out_shape=stage.out_shape,
               bias=best["bq"].astype(np.int32), dv=0, vth=0, scale=float(c), reset="subtract", spike="ge",
               shift=int(ACT_SHIFT + round(math.log2(c)) - SPIKE_FRAC_BITS), spike_frac_bits=SPIKE_FRAC_BITS,
               tables=ints)
    err = lambda x, xq: float(np.abs(x - xq).max(initial=0.0))  # noqa: E731
    report = dict(
        stage=stage.name, kind=NeuronKind.EMPF, neurons=stage.size, synapses=sum(p.synapses for p in projs),
        scale=float(c),
        vth=0, dv=0, lam=None, lam_q=None, theta=None, theta_q=None, input_scale_exp=ka,
        max_abs_lam_error=err(lam, ints["lam"] / DECAY_UNITY),
        max_abs_input_scale_error=err(a, ints["scale"] * 2.0**ka / DECAY_UNITY),
        max_abs_theta_error=err(theta, ints["theta"] / (ACT_SHIFT_SCALE * c)),
        max_abs_reset_offset_error=err(off, ints["offset"] / (ACT_SHIFT_SCALE * c)),
        max_abs_bias_error=float(np.abs(stage.bias * 2.0**ka - best["bq"] / c).max(initial=0.0)) / 2.0**ka,
        projections=_projection_reports(projs, best, 2.0**ka),
        state_bound_int=float(ACT_SHIFT_SCALE * c * room), state_bound_T_int=float(ACT_SHIFT_SCALE * c * bound),
        may_saturate=bool(ACT_SHIFT_SCALE * c * bound > V_MAX * (1 + 1e-9)), graded_spike_bound=spike_bound,
        headroom="T" if peak is None else "data",
        **({"observed_current": float(peak[0]), "observed_membrane": float(peak[1]), "margin": float(margin)}
           if peak is not None else {}),
    )
    return q, report
