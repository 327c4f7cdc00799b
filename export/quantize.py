"""Float stages -> Loihi 2 fixed-point parameters (pure, deterministic; no Lava import).

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
- graded messages (the real-valued input, EM-PF spikes): a payload s·2^q (24 bits); the projection's exponent
  is e − q. The input's q (``input_frac_bits``, unless given) is the largest ≤ 16 for which its payloads fit 24 bits
  and every Dense reading it keeps its worst-case sum inside Lava's int32 accumulator; an EM-PF stage's q_s ≤ 8 is
  the largest for which every Dense it feeds does.
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

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from snnchip.errors import QuantizationError, SpecError
from snnchip.export.kernel import Kernel
from snnchip.export.loihi2 import (
    ACT_SHIFT,
    ACT_SHIFT_SCALE,
    DECAY_UNITY,
    EMPF_FLOAT_TABLES,
    EMPF_INT_TABLES,
    INT32_MAX,
    MESSAGE_BITS,
    MESSAGE_SHIFT,
    NEVER_FIRES,
    NO_CURRENT,
    V_MAX,
    VTH_MAX,
    WEIGHT_EXP,
    mantissa_grid,
)
from snnchip.export.lowering import INPUT, LoweredNet, Schedule, Stage, StageTraits, Weight, schedule, synapse_of

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


def geometric_sum(lam: float, T: int) -> float:
    """Σ_{k=0}^{T−1} λ^k = (λ^T − 1)/(λ − 1), evaluated as expm1(T·log1p(λ − 1))/(λ − 1) near λ = 1 (accurate
    there) and directly below 1/2; T at λ = 1, inf where it overflows; λ ≥ 0. O(1) for any T."""
    if lam == 1.0:
        return float(T)
    if lam < 0.5:
        return (1.0 - lam**T) / (1.0 - lam)
    try:
        return math.expm1(T * math.log1p(lam - 1.0)) / (lam - 1.0)
    except OverflowError:
        return math.inf


def weight_values(weight: Weight) -> np.ndarray:
    """The entries that may be non-zero: the whole of a dense matrix, the stored entries of a CSR one, the entries
    of a kernel (each shared by many synapses)."""
    if isinstance(weight, Kernel):
        return weight.kernel
    return weight.data if sp.issparse(weight) else np.asarray(weight)


def _with_values(weight: Weight, values: np.ndarray) -> Weight:
    """A projection of ``weight``'s layout (dense, CSR with its sparsity pattern, a kernel) holding ``values``."""
    if isinstance(weight, Kernel):
        return weight.with_kernel(values)
    return sp.csr_matrix((values, weight.indices, weight.indptr), shape=weight.shape) if sp.issparse(weight) \
        else values


def synapse_sum(weight: Weight, values: np.ndarray) -> float:
    """Σ over the synapses of per-entry ``values`` (``weight_values``' layout): a kernel entry counts once per
    synapse that shares it."""
    if isinstance(weight, Kernel):
        return float(weight.with_kernel(values.astype(np.float64)).apply(np.ones(weight.shape[1])).sum())
    return float(np.sum(values))


def row_abs_sum(weight: Weight) -> np.ndarray:
    """Σ_j |W_ij| per row [n_out] (float64)."""
    if isinstance(weight, Kernel):
        return weight.row_abs_sum()
    if sp.issparse(weight):
        rows = np.repeat(np.arange(weight.shape[0]), np.diff(weight.indptr))
        return np.bincount(rows, weights=np.abs(weight.data.astype(np.float64)), minlength=weight.shape[0])
    return np.abs(np.asarray(weight, np.float64)).sum(axis=1)


def mantissa_range(weight: Weight) -> tuple[int, int, int]:
    """(lowest, highest, step) of the 8-bit mantissa grid for this weight matrix's sign mode (``loihi2``)."""
    return mantissa_grid(weight_values(weight))


def _exponent(w: np.ndarray, c: float, lo: int, hi: int) -> int:
    """The smallest e with every c·W/2^e inside [lo, hi] (0 for an all-zero matrix)."""
    need = [math.log2(c * float(w.max()) / hi)] if hi > 0 and w.max(initial=0) > 0 else []
    need += [math.log2(c * float(-w.min()) / -lo)] if lo < 0 and w.min(initial=0) < 0 else []
    return math.ceil(max(need)) if need else 0


def to_mantissa(y: np.ndarray, lo: int, hi: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Round ``y`` to the mantissa grid (multiples of ``step`` in [lo, hi]); also return the clipped mask."""
    m = step * np.round(y / step)
    return np.clip(m, lo, hi).astype(np.int64), (m < lo) | (m > hi)


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


def _int32(m: Weight) -> Weight:
    """The mantissas as int32 (CSR: explicit zeros dropped, so nnz counts the synapses)."""
    m = m.astype(np.int32)
    if sp.issparse(m):
        m.eliminate_zeros()
    return m


def _fit_scale(w: np.ndarray, lo: int, hi: int) -> float:
    """The largest c with every c·W inside the mantissa grid [lo, hi] at exponent 0 (inf for W = 0)."""
    fits = ([hi / float(w.max())] if w.max(initial=0) > 0 else []) + \
        ([lo / float(w.min())] if w.min(initial=0) < 0 else [])
    return min(fits, default=math.inf)


def residual_mantissas(r: np.ndarray, f: int | None = None) -> tuple[np.ndarray, int, int] | None:
    """Wide weights' second part: the residual r = c·W − m·2^e (activation units) on its own 8-bit grid, (mantissas,
    exponent f, grid step) with m_lo·2^f ≈ r and f (unless given) the smallest that fits, no finer than the
    activation unit (f ≥ −1 for even mantissas, whose sums >> 1 are exact for binary spikes; f ≥ 0 otherwise); None
    where the first part is exact."""
    if f is None and not np.any(np.round(r)):
        return None
    lo, hi, step = mantissa_range(r)
    f = max(_exponent(r, 1.0, lo, hi), -(step // 2)) if f is None else f
    m, _ = to_mantissa(r / 2.0**f, lo, hi, step)
    return m, f, step


def _candidate(stage: Stage, weights: list[Weight], c: float, exps: list[int] | None, wide: bool = False
               ) -> tuple[float, dict]:
    """Quantize at scale c: (score = the largest weight/bias/threshold error, parameters and error summaries);
    ``wide``: each projection also gets the residual's mantissas (``residual_mantissas``)."""
    vth = NEVER_FIRES
    if stage.spiking and stage.kind != "empf":
        vth = min(VTH_MAX, max(1, math.floor(c * stage.theta * (1 + 1e-12))))
        c = vth / stage.theta
    bq = np.round(stage.bias * c)
    score = float(np.abs(stage.bias - bq / c).max(initial=0.0))
    vsub = None if stage.reset_by is None else int(round(stage.reset_by * c))
    if stage.spiking and stage.kind != "empf":
        score = max(score, abs(stage.theta - vth / c), 0.0 if vsub is None else abs(stage.reset_by - vsub / c))
    projs = []
    for i, w in enumerate(weights):
        values = weight_values(w)
        lo, hi, step = mantissa_range(values)
        e = _exponent(values, c, lo, hi) if exps is None else exps[i]
        m, clipped = to_mantissa(values * c / 2.0**e, lo, hi, step)
        applied, low, low_exp, grid = m * 2.0**e, None, 0, step * 2.0**e
        if wide and (part := residual_mantissas(values * c - applied)) is not None:
            m_lo, low_exp, step_lo = part
            applied, low, grid = applied + m_lo * 2.0**low_exp, _with_values(w, m_lo), step_lo * 2.0**low_exp
        err = np.abs(values - applied / c)
        projs.append(dict(e=e, step=step, m=_with_values(w, m), clipped=int(synapse_sum(w, clipped)), low=low,
                          low_exp=low_exp, grid=grid, werr_max=float(err.max(initial=0.0)),
                          werr_sum=synapse_sum(w, err)))
        score = max(score, projs[-1]["werr_max"])
    return score, dict(c=c, vth=vth, vsub=vsub, bq=bq, projections=projs)


def _scale_candidates(stage: Stage, weights: list[Weight], c_head: float, exps: list[int] | None) -> list[float]:
    if exps is not None:  # netx: exponents fixed; the largest c ≤ c_head whose mantissas fit them
        c_top = min([c_head] + [_fit_scale(weight_values(w), *mantissa_range(weight_values(w))[:2]) * 2.0**e
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
    return tuple(QProjection(p.source, _int32(b["m"]), int(b["e"]), 0, p.delay,
                             low=None if b["low"] is None else _int32(b["low"]), low_exp=int(b["low_exp"]))
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
        bound = min(bound, max(margin * peak[0], peak[1], theta0))
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
    dv = min(DECAY_UNITY - 1, round(DECAY_UNITY * (1 - stage.lam)))
    du = round(DECAY_UNITY * (1 - stage.lam_syn)) - 1 if stage.current else NO_CURRENT
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
        scale=float(c), vth=int(vth), dv=int(dv), lam=float(stage.lam), lam_q=1 - dv / DECAY_UNITY, du=int(du),
        lam_syn=float(stage.lam_syn), lam_syn_q=(NO_CURRENT - du) / DECAY_UNITY,
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
        room = min(bound, max(margin * peak[0], peak[1], theta_max))
    c_head = V_MAX / (ACT_SHIFT_SCALE * room) if room > 0 else 1.0
    c = 2.0 ** math.floor(math.log2(c_head))
    # graded spike bound for the stages it feeds: after any step v ≤ max(θ̂ + r) (fired: v = θ̂ + r; else
    # v = m + r < θ̂ + r), so with λ̂ ≥ 0, s = m − θ̂ ≤ λ̂_max·max(θ̂ + r, 0) + drive − min θ̂
    spike_bound = bound
    if lam.min(initial=0.0) >= 0:
        v_up = max(float((theta + off).max(initial=0.0)), 0.0)
        spike_bound = min(bound, max(0.0, lam_max * v_up + drive - float(theta.min(initial=0.0))))
    proxy = Stage(name=stage.name, kind="readout", inputs=stage.inputs, bias=stage.bias * 2.0**ka,
                  out_shape=stage.out_shape)
    _, best = _candidate(proxy, [p.weight * 2.0**ka for p in stage.inputs], c, None, wide)
    ints = dict(zip(EMPF_INT_TABLES, (np.round(DECAY_UNITY * lam), np.round(DECAY_UNITY * a / 2.0**ka),
                                      np.round(ACT_SHIFT_SCALE * c * theta), np.round(ACT_SHIFT_SCALE * c * off)),
                    strict=True))
    ints = {k: np.clip(v, -V_MAX, V_MAX + 1).astype(np.int64) for k, v in ints.items()}
    projs = _projections(stage, best)
    q = QStage(name=stage.name, kind="empf", inputs=projs, out_shape=stage.out_shape,
               bias=best["bq"].astype(np.int32), dv=0, vth=0, scale=float(c), reset="subtract", spike="ge",
               shift=int(ACT_SHIFT + round(math.log2(c)) - SPIKE_FRAC_BITS), spike_frac_bits=SPIKE_FRAC_BITS,
               tables=ints)
    err = lambda x, xq: float(np.abs(x - xq).max(initial=0.0))  # noqa: E731
    report = dict(
        stage=stage.name, kind="empf", neurons=stage.size, synapses=sum(p.synapses for p in projs), scale=float(c),
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


def _halved(m: Weight, e: int) -> tuple[Weight, int]:
    """The same applied weights with the smallest mantissas: while every mantissa is a multiple of twice its sign
    mode's grid step, halve them and raise the exponent. Exact on Lava, which shifts the integer sum:
    (Σ m·s) >> n = (Σ (m/2)·s) >> (n − 1), and likewise left."""
    values = np.asarray(weight_values(m), np.int64)
    if not values.any():
        return m, e
    step = mantissa_grid(values)[2]
    while e < WEIGHT_EXP[1] and not np.any(values % (2 * step)):
        values, e = values // 2, e + 1
    return _with_values(m, values.astype(np.int32)), e


def _fewest_bits(p: QProjection) -> QProjection:
    """``p`` with each part's mantissas ``_halved``: the row sums Σ|m| that bound a graded source's int32 sums (its
    message bits and cap, ``_message_bits``) shrink by the same factor; ±1 weights (EM-PF's binary layers, their
    κ_k in the input scale) keep one or two."""
    weight, weight_exp = _halved(p.weight, p.weight_exp)
    low, low_exp = (None, p.low_exp) if p.low is None else _halved(p.low, p.low_exp)
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
        if st.kind == "empf":
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


def warnings_of(r: dict) -> str:
    """A stage's report row in words: the membrane may saturate (its T-step bound exceeds 2^23 − 1; with the
    one-step headroom that is by choice), and/or the
    weights are coarse (one step of the weight grid, g·2^e/c with g the mantissa step of the sign mode, moves the
    membrane by at least θ = vth/c, so the rounding of a single synapse can decide a spike: vth ≤ g·2^e; the
    weights' relative error can still be small)."""
    room = {"step": "one-step headroom", "data": "data headroom"}.get(r.get("headroom"), "MAY saturate")
    out = [room] if r["may_saturate"] else []
    if r.get("coarse"):
        out.append(f"coarse: weight step {r['weight_step_theta']:.3g}θ (vth {r['vth']})")
    return ", ".join(out) or "none"


def _exponents(p: dict) -> str:
    """A projection's grid exponent, and its residual's after a comma with wide weights."""
    return str(p["grid_exp"]) + ("" if p.get("low_exp") is None else f",{p['low_exp']}")


def format_report(report: list[dict]) -> str:
    """The quantization report as a fixed-width table: a row per stage, a row per projection beneath it."""
    head = f"{'stage':<14}{'kind':<9}{'neurons':>8}{'synapses':>10}{'scale':>10}{'vth':>8}{'dv':>6}{'du':>6}" \
           f"{'latency':>8}  warnings"
    sub = f"{'  <- source':<23}{'synapse':>8}{'synapses':>10}{'exp':>7}{'delay':>6}{'+lava':>6}{'clipped':>9}" \
          f"{'max|dW|':>10}{'mean|dW|':>10}"
    lines = [head, sub, "-" * max(len(head), len(sub))]
    for r in report:
        lines.append(f"{r['stage']:<14}{r['kind']:<9}{r['neurons']:>8}{r['synapses']:>10}{r['scale']:>10.4g}"
                     f"{r['vth']:>8}{r['dv']:>6}{r.get('du', 0):>6}{r.get('latency', 0):>8}  {warnings_of(r)}")
        for p in r["projections"]:
            lines.append(f"{'  <- ' + p['source']:<23}{p['synapse']:>8}{p['synapses']:>10}{_exponents(p):>7}"
                         f"{p['delay']:>6}{p.get('lava_delay', 0):>6}{p['clipped_fraction']:>9.2%}"
                         f"{p['max_abs_weight_error']:>10.3g}{p['mean_abs_weight_error']:>10.3g}")
    return "\n".join(lines)
