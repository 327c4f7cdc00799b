"""Float stages -> Loihi 2 fixed-point parameters (pure, deterministic; no Lava import).

Equations (docs/loihi-fixed-point.md has the derivation). Each stage gets a scale c > 0: a real
membrane value x is the 24-bit integer V = 64·c·x (Lava shifts activations and thresholds by 2^6).

- weights: Dense/Sparse mantissas m (8 bits; mixed sign: even values in [−256, 254] because Lava drops the
  lowest bit; excitatory [0, 255]; inhibitory [−255, 0]) and a shared exponent e ≤ 0 with
  m·2^e ≈ c·W. Lava's Dense and Sparse send a = (Σ m·s) << e (>> −e for e < 0, rounding toward −∞).
  A CSR stage is quantized entry by entry on its stored values (``weight_values``), which gives the
  mantissas the dense matrix would get (its zeros quantize to 0 either way) and keeps the pattern.
- threshold: vth = c·θ, an integer ≤ 2^17 − 1 (c is adjusted so that c·θ is exact).
- leak: dv = round(4096·(1 − λ)) (12 bits); no current state (du = 4095), except for the SRM
  (kind ``srm``, our CubaLIF): du = round(4096·(1 − λ_syn)) ∈ [0, 4096], the current decays by
  (4096 − du)/4096 (no Lava +1 offset), its input scale is already folded into the weights.
- bias: an integer in activation units, bq = round(c·b), injected each step through the neuron's
  input (V += 64·bq), so that it starts with the stage's first input (see docs: latency).
- real-valued input: graded spikes xq = round(x·2^q) (24-bit payload), first Dense uses e − q.

Scale choice: the weight grid is 2^e/c with e = ⌈log2(c·max|W| / m_max)⌉, i.e. always the full
mantissa, so a larger c only refines the membrane (threshold, bias, leak rounding). c is therefore
taken as large as the 24-bit headroom allows: c_head = (2^23 − 1) / (64·B) for the one-step bound
B = θ + max_i(Σ_j |W_ij|·x_max + |b_i|) (readout: B = T·max_i(...)). Candidates
c ∈ {2^⌊log2 c_head⌋, c_head, c_fit·2^⌊log2(c_head/c_fit)⌋} (c_fit = m_max / max|W|: the
mantissa filled exactly), each rounded down so that vth = c·θ is an integer; the one with the
smallest maximal weight/bias/threshold error wins (ties: the power of two, which is lossless for
parameters on a binary grid). A bound the headroom cannot meet raises
``QuantizationError``; a T-step worst case that could saturate warns (``SaturationWarning``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from snnchip.errors import QuantizationError
from snnchip.export.lowering import LoweredNet, Stage, StageTraits, Weight

V_MAX = 2**23 - 1  # 24-bit signed state
VTH_MAX = 2**17 - 1
ACT_SHIFT = 6  # Lava: activations and thresholds are shifted left by 6
ACT_SHIFT_SCALE = 2**ACT_SHIFT
DECAY_UNITY = 4096  # 12-bit decays
MESSAGE_BITS = 24  # graded-spike payload of the input
INT32_MAX = 2**31 - 1


class SaturationWarning(UserWarning):
    """A stage's worst-case membrane over T steps exceeds the 24-bit state (it may saturate)."""


@dataclass(frozen=True)
class QStage(StageTraits):
    """Integer parameters of one stage, exactly as deploy hands them to Lava."""

    name: str
    kind: str  # "lif" | "srm" | "readout"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: Weight  # int32 [n_out, n_in] (dense, or CSR for a Lava Sparse), exact under Lava's sign-mode truncation
    weight_exp: int
    bias: np.ndarray  # int32 [n_out], activation units (V += 64·bias each step)
    num_message_bits: int  # 24 for the graded input of the first stage, else 0 (binary spikes)
    dv: int
    vth: int  # 0 for the readout
    scale: float  # c: V = 64·c·x
    reset: str = "subtract"
    spike: str = "ge"
    du: int = DECAY_UNITY - 1  # srm: the current's decay (factor 4096 − du, 0 ≤ du ≤ 4096); unused otherwise
    shift: int = 0  # empf: graded message = s >> shift (s in membrane units, the message has spike_frac_bits)
    spike_frac_bits: int = 0  # empf: the message is s_real·2^spike_frac_bits
    tables: dict[str, np.ndarray] | None = None  # empf: int64 [T, n] lam (lq), scale (aq), theta (th), offset (r)


@dataclass(frozen=True)
class QuantizedNet:
    input_shape: tuple[int, ...]
    stages: tuple[QStage, ...]
    T: int | None
    encoding: str
    input_frac_bits: int
    input_range: float
    report: list[dict] = field(default_factory=list)


def geometric_sum(lam: float, T: int) -> float:
    """Σ_{k=0}^{T−1} λ^k = (λ^T − 1)/(λ − 1), evaluated as expm1(T·log1p(λ − 1))/(λ − 1) (accurate near λ = 1);
    T at λ = 1, 1 at λ = 0, inf where it overflows; λ ≥ 0. O(1) for any T."""
    if lam == 1.0:
        return float(T)
    if lam == 0.0:
        return 1.0
    try:
        return math.expm1(T * math.log1p(lam - 1.0)) / (lam - 1.0)
    except OverflowError:
        return math.inf


def weight_values(weight: Weight) -> np.ndarray:
    """The entries that may be non-zero: the whole of a dense matrix, the stored entries of a CSR one."""
    return weight.data if sp.issparse(weight) else np.asarray(weight)


def _with_values(weight: Weight, values: np.ndarray) -> Weight:
    """A matrix of ``weight``'s layout (dense, or CSR with its sparsity pattern) holding ``values``."""
    return sp.csr_matrix((values, weight.indices, weight.indptr), shape=weight.shape) if sp.issparse(weight) \
        else values


def _row_abs_sum(weight: Weight) -> np.ndarray:
    """Σ_j |W_ij| per row [n_out] (float64)."""
    if sp.issparse(weight):
        rows = np.repeat(np.arange(weight.shape[0]), np.diff(weight.indptr))
        return np.bincount(rows, weights=np.abs(weight.data.astype(np.float64)), minlength=weight.shape[0])
    return np.abs(np.asarray(weight, np.float64)).sum(axis=1)


def mantissa_range(weight: Weight) -> tuple[int, int, int]:
    """(lowest, highest, step) of the 8-bit mantissa grid for this weight matrix's sign mode (zeros count as ≥ 0
    and ≤ 0, as in Lava's ``determine_sign_mode``)."""
    v = weight_values(weight)
    if v.min(initial=0) < 0 < v.max(initial=0):
        return -256, 254, 2
    if v.min(initial=0) < 0:
        return -255, 0, 1
    return 0, 255, 1


def _exponent(w: np.ndarray, c: float, lo: int, hi: int) -> int:
    """The smallest e with every c·W/2^e inside [lo, hi] (0 for an all-zero matrix)."""
    need = [math.log2(c * float(w.max()) / hi)] if hi > 0 and w.max(initial=0) > 0 else []
    need += [math.log2(c * float(-w.min()) / -lo)] if lo < 0 and w.min(initial=0) < 0 else []
    return math.ceil(max(need)) if need else 0


def to_mantissa(y: np.ndarray, lo: int, hi: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Round ``y`` to the mantissa grid (multiples of ``step`` in [lo, hi]); also return the clipped mask."""
    m = step * np.round(y / step)
    return np.clip(m, lo, hi).astype(np.int64), (m < lo) | (m > hi)


def dequantize_weight(q: QStage, input_frac_bits: int = 0) -> Weight:
    """Real weights the chip applies: Ŵ = m·2^e/c (the first stage's e includes −q of its graded input)."""
    e = q.weight_exp + (input_frac_bits if q.num_message_bits else 0)
    return q.weight.astype(np.float64) * 2.0**e / q.scale


def encode_input(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Real-valued input -> graded-spike payload xq = clip(round(x·2^q), ±(2^23 − 1)) (int64)."""
    lim = 2 ** (MESSAGE_BITS - 1) - 1
    return np.clip(np.round(np.asarray(x, np.float64) * 2.0**frac_bits), -lim, lim).astype(np.int64)


def _candidate(stage: Stage, c: float, exp: int | None = None) -> tuple[float, dict]:
    """Quantize at scale c: (score = the largest weight/bias/threshold error, parameters and error summary)."""
    w, b = weight_values(stage.weight), stage.bias
    lo, hi, step = mantissa_range(w)
    vth = 0
    if stage.spiking:
        vth = min(VTH_MAX, max(1, math.floor(c * stage.theta * (1 + 1e-12))))
        c = vth / stage.theta
    e = _exponent(w, c, lo, hi) if exp is None else exp
    y = w * c / 2.0**e
    m, clipped = to_mantissa(y, lo, hi, step)
    w_hat = m * 2.0**e / c
    bq = np.round(b * c)
    werr = np.abs(w - w_hat)
    errors = dict(clipped=int(clipped.sum()), werr_max=float(werr.max(initial=0.0)), werr_sum=float(werr.sum()),
                  berr_max=float(np.abs(b - bq / c).max(initial=0.0)))
    score = max(errors["werr_max"], errors["berr_max"])
    if stage.spiking:
        score = max(score, abs(stage.theta - vth / c))
    return score, dict(c=c, e=e, m=_with_values(stage.weight, m), vth=vth, bq=bq, errors=errors)


def _error_report(errors: dict, n: int, unit: float = 1.0) -> dict:
    """The report's weight and bias errors over all n = n_out·n_in entries (a CSR stage's zeros are exact), in
    real units divided by ``unit``."""
    return dict(clipped_fraction=errors["clipped"] / n if n else 0.0, max_abs_weight_error=errors["werr_max"] / unit,
                mean_abs_weight_error=errors["werr_sum"] / n / unit if n else 0.0,
                max_abs_bias_error=errors["berr_max"] / unit)


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


def quantize_stage(stage: Stage, T: int | None, x_max: float, frac_bits: int | None,
                   weight_exp: int | None = None) -> tuple[QStage, dict]:
    """Quantize one stage; ``frac_bits`` is q for the graded-input first stage, ``None`` for binary spikes.

    ``weight_exp`` fixes the Dense exponent the stage is deployed with (netx: 0, its files hold the
    effective integer weights); c is then the largest candidate ≤ c_head whose mantissas fit at it.
    """
    w, b = weight_values(stage.weight), stage.bias
    row = float((_row_abs_sum(stage.weight) * x_max + np.abs(b)).max(initial=0.0))
    if T is None and not stage.spiking:
        raise QuantizationError(f"stage {stage.name!r}: the readout's 24-bit headroom needs T; pass T")
    lam = stage.lam if stage.spiking else 1.0
    theta0 = stage.theta if stage.spiking else 0.0
    lam_syn = stage.lam_syn if stage.kind == "srm" else 0.0
    one_step = theta0 + row
    # srm: |i| ≤ R·Σλ_syn^k and |v| ≤ θ + (that)·Σλ^k over T steps (lif: λ_syn = 0, the current is the input)
    syn = 1.0 if T is None else geometric_sum(lam_syn, T)
    full = one_step if T is None else theta0 + row * syn * geometric_sum(lam, T)
    bound = full
    if stage.spiking and V_MAX / (ACT_SHIFT_SCALE * full) * stage.theta < 1:
        bound = one_step  # the T-step worst case does not fit: keep one step, warn below
    c_head = V_MAX / (ACT_SHIFT_SCALE * bound) if bound > 0 else float(VTH_MAX)
    if stage.spiking and c_head * stage.theta < 1:
        raise QuantizationError(
            f"stage {stage.name!r}: one-step membrane bound {bound:.4g} (θ = {stage.theta:.4g} + max input "
            f"{row:.4g}) needs scale ≤ {c_head:.4g}, which gives a threshold mantissa < 1; reduce the weights or "
            "raise θ")
    lo, hi, grid = mantissa_range(w)
    cands = [2.0 ** math.floor(math.log2(c_head)), c_head]
    if w.size and np.abs(w).max() > 0:  # the largest c ≤ c_head at which max|W| fills the mantissa exactly
        c_fit = (hi if hi > 0 else -lo) / float(np.abs(w).max())
        cands.append(c_fit * 2.0 ** math.floor(math.log2(c_head / c_fit)))
    exp = None if weight_exp is None else weight_exp + (frac_bits or 0)
    if exp is not None:
        c_top = min(c_head, _fit_scale(w, lo, hi) * 2.0**exp)
        cands = [2.0 ** math.floor(math.log2(c_top)), c_top]
    _, best = min((_candidate(stage, c, exp) for c in cands), key=lambda sc: sc[0])
    c, e, m, vth, bq = best["c"], best["e"], best["m"], best["vth"], best["bq"]
    if frac_bits is not None:
        worst = float(_row_abs_sum(m).max(initial=0)) * x_max * 2.0**frac_bits
        if worst > INT32_MAX:
            raise QuantizationError(f"stage {stage.name!r}: graded input sum up to {worst:.3g} overflows Lava's "
                                    f"int32 Dense accumulator; lower input_frac_bits (now {frac_bits})")
    dv = min(DECAY_UNITY - 1, round(DECAY_UNITY * (1 - lam)))
    du = round(DECAY_UNITY * (1 - lam_syn)) if stage.kind == "srm" else DECAY_UNITY - 1
    may_saturate = ACT_SHIFT_SCALE * c * full > V_MAX * (1 + 1e-9)
    if may_saturate:
        warnings.warn(SaturationWarning(
            f"stage {stage.name!r}: worst-case membrane over T={T} steps is {full:.4g} (real) = "
            f"{ACT_SHIFT_SCALE * c * full:.4g} (int) > 2^23 − 1; it saturates if inputs stay maximal"), stacklevel=3)
    q = QStage(name=stage.name, kind=stage.kind, in_shape=stage.in_shape, out_shape=stage.out_shape,
               weight=_int32(m), weight_exp=int(e - (frac_bits or 0)), bias=bq.astype(np.int32),
               num_message_bits=MESSAGE_BITS if frac_bits is not None else 0, dv=int(dv), vth=int(vth),
               scale=float(c), reset=stage.reset, spike=stage.spike, du=int(du))
    report = dict(
        stage=stage.name, kind=stage.kind, synapse=q.synapse, neurons=int(stage.weight.shape[0]),
        synapses=int(np.count_nonzero(weight_values(m))),
        scale=float(c), weight_exp=int(e), vth=int(vth), dv=int(dv), lam=float(lam),
        lam_q=1 - dv / DECAY_UNITY, du=int(du), lam_syn=float(lam_syn), lam_syn_q=1 - du / DECAY_UNITY,
        theta=float(stage.theta) if stage.spiking else None,
        theta_q=vth / c if stage.spiking else None, **_error_report(best["errors"], math.prod(stage.weight.shape)),
        state_bound_int=float(ACT_SHIFT_SCALE * c * one_step), state_bound_T_int=float(ACT_SHIFT_SCALE * c * full),
        may_saturate=bool(may_saturate), weight_step=grid * 2.0**e / c,
        weight_step_theta=grid * 2.0**e / vth if stage.spiking else None,
        coarse=bool(stage.spiking and grid * 2**e >= vth),
    )
    return q, report



SPIKE_FRAC_BITS = 8  # graded EM-PF messages: s_real·2^8 (fewer where the next Dense's int32 sum needs it)


def quantize_empf_stage(stage: Stage, T: int, x_max: float, frac_bits: int | None) -> tuple[QStage, dict]:
    """Quantize an EM-PF stage (docs/loihi-fixed-point.md §2): c = 2^k (so that graded messages are shifts),
    weights W·2^ka with 2^ka ≥ max|a| (binary ±1 weights stay exact), per-step integer tables
    lq = round(4096·λ̂), aq = round(4096·a/2^ka), th = round(64·c·θ̂), r = round(64·c·r̂)."""
    tab = stage.tables
    lam, a, theta, off = (np.asarray(tab[k], np.float64) for k in ("lam", "input_scale", "theta", "reset_offset"))
    a_max = float(np.abs(a).max(initial=0.0)) or 1.0
    ka = math.ceil(math.log2(a_max))
    w, b = stage.weight * 2.0**ka, stage.bias * 2.0**ka
    row = float((_row_abs_sum(stage.weight) * x_max + np.abs(stage.bias)).max(initial=0.0))
    lam_max = float(np.abs(lam).max(initial=0.0))
    bound = float(np.abs(theta).max(initial=0.0)) + (a_max * row + float(np.abs(off).max(initial=0.0))) * \
        geometric_sum(lam_max, T)
    if not math.isfinite(bound):
        raise QuantizationError(f"stage {stage.name!r}: the membrane bound over T={T} steps overflows (max λ̂ = "
                                f"{lam_max:.4g} > 1 compounds); lower T or λ̂")
    c_head = V_MAX / (ACT_SHIFT_SCALE * bound) if bound > 0 else 1.0
    c = 2.0 ** math.floor(math.log2(c_head))
    # graded spike bound for the next stage's headroom: after any step v ≤ max(θ̂ + r) (fired: v = θ̂ + r; else
    # v = m + r < θ̂ + r), so with λ̂ ≥ 0, s = m − θ̂ ≤ λ̂_max·max(θ̂ + r, 0) + max|a|·R − min θ̂
    spike_bound = bound
    if lam.min(initial=0.0) >= 0:
        v_up = max(float((theta + off).max(initial=0.0)), 0.0)
        spike_bound = min(bound, max(0.0, lam_max * v_up + a_max * row - float(theta.min(initial=0.0))))
    proxy = Stage(name=stage.name, kind="readout", weight=w, bias=b, in_shape=stage.in_shape,
                  out_shape=stage.out_shape)
    _, best = _candidate(proxy, c)
    e, m, bq = best["e"], best["m"], best["bq"]
    if frac_bits is not None:
        worst = float(_row_abs_sum(m).max(initial=0)) * x_max * 2.0**frac_bits
        if worst > INT32_MAX:
            raise QuantizationError(f"stage {stage.name!r}: graded input sum up to {worst:.3g} overflows Lava's "
                                    f"int32 Dense accumulator; lower the input frac bits (now {frac_bits})")
    ints = dict(lam=np.round(DECAY_UNITY * lam), scale=np.round(DECAY_UNITY * a / 2.0**ka),
                theta=np.round(ACT_SHIFT_SCALE * c * theta), offset=np.round(ACT_SHIFT_SCALE * c * off))
    ints = {k: np.clip(v, -V_MAX, V_MAX + 1).astype(np.int64) for k, v in ints.items()}
    q = QStage(name=stage.name, kind="empf", in_shape=stage.in_shape, out_shape=stage.out_shape,
               weight=_int32(m), weight_exp=int(e - (frac_bits or 0)), bias=bq.astype(np.int32),
               num_message_bits=MESSAGE_BITS if frac_bits is not None else 0, dv=0, vth=0, scale=float(c),
               reset="subtract", spike="ge", shift=int(ACT_SHIFT + round(math.log2(c)) - SPIKE_FRAC_BITS),
               spike_frac_bits=SPIKE_FRAC_BITS, tables=ints)
    err = lambda x, xq: float(np.abs(x - xq).max(initial=0.0))  # noqa: E731
    report = dict(
        stage=stage.name, kind="empf", synapse=q.synapse, neurons=int(w.shape[0]),
        synapses=int(np.count_nonzero(weight_values(m))), scale=float(c),
        weight_exp=int(e), vth=0, dv=0, lam=None, lam_q=None, theta=None, theta_q=None, input_scale_exp=ka,
        max_abs_lam_error=err(lam, ints["lam"] / DECAY_UNITY),
        max_abs_input_scale_error=err(a, ints["scale"] * 2.0**ka / DECAY_UNITY),
        max_abs_theta_error=err(theta, ints["theta"] / (ACT_SHIFT_SCALE * c)),
        max_abs_reset_offset_error=err(off, ints["offset"] / (ACT_SHIFT_SCALE * c)),
        **_error_report(best["errors"], math.prod(w.shape), 2.0**ka),
        state_bound_int=float(ACT_SHIFT_SCALE * c * bound), state_bound_T_int=float(ACT_SHIFT_SCALE * c * bound),
        may_saturate=False, graded_spike_bound=spike_bound,
    )
    return q, report


def _retarget_spikes(q: QStage, frac_bits: int) -> QStage:
    """An EM-PF stage whose graded messages carry ``frac_bits`` fractional bits (shift = 6 + log2 c − frac_bits)."""
    shift = ACT_SHIFT + round(math.log2(q.scale)) - frac_bits
    return dataclasses.replace(q, shift=int(shift), spike_frac_bits=int(frac_bits))


def quantize(net: LoweredNet, T: int | None = None, input_range: float = 1.0, input_frac_bits: int = 8,
             weight_exp: int | None = None, spike_bounds: dict[str, float] | None = None) -> QuantizedNet:
    """Quantize every stage of ``net``; the first reads graded real inputs with |x| ≤ ``input_range``.

    ``weight_exp`` (None: chosen per stage) fixes every stage's Dense exponent (see ``quantize_stage``).
    ``spike_bounds`` {EM-PF stage: max graded spike measured on data}: the next stage's scale uses it instead of
    the worst case (its message bits q_s still use the worst case, so Lava's int32 Dense sum cannot overflow;
    larger spikes only clip the 24-bit state, identically in hw_sim and Lava).
    """
    steps = T if T is not None else net.T
    stages, report = [], []
    for i, st in enumerate(net.stages):
        x_max, first_frac = (input_range, input_frac_bits) if i == 0 else (1.0, None)
        if i and stages[-1].graded:  # graded messages s·2^q_s from an EM-PF stage, |s| ≤ its spike bound
            x_max = float(report[-1]["graded_spike_bound"])
        if st.kind == "empf" and steps is None:
            raise QuantizationError(f"stage {st.name!r}: an EM-PF stage needs T")
        # after an EM-PF stage: the most message bits q_s ≤ 8 whose worst Dense sum fits Lava's int32 accumulator
        for frac in range(SPIKE_FRAC_BITS, -1, -1) if i and stages[-1].graded else [first_frac]:
            try:
                if st.kind == "empf":
                    q, r = quantize_empf_stage(st, steps, x_max, frac)
                else:
                    q, r = quantize_stage(st, steps, x_max, frac, weight_exp)
                break
            except QuantizationError:
                if not (i and stages[-1].graded) or frac == 0:
                    raise
        if i and stages[-1].graded:
            stages[-1] = _retarget_spikes(stages[-1], frac)
            report[-1]["spike_frac_bits"], report[-1]["spike_shift"] = frac, stages[-1].shift
            measured = (spike_bounds or {}).get(stages[-1].name)
            if measured is not None and 0 < measured < x_max:  # headroom from the measured graded spikes
                report[-1]["graded_spike_measured"] = float(measured)
                worst = r.get("graded_spike_bound")
                if st.kind == "empf":
                    q, r = quantize_empf_stage(st, steps, float(measured), frac)
                else:
                    q, r = quantize_stage(st, steps, float(measured), frac, weight_exp)
                if worst is not None:  # the chain of worst cases (int32 safety of the next q_s) stays data-free
                    r["graded_spike_bound"] = worst
        stages.append(q)
        report.append(r)
    return QuantizedNet(net.input_shape, tuple(stages), steps, net.encoding, input_frac_bits, input_range, report)


def warnings_of(r: dict) -> str:
    """A stage's report row in words: the membrane may saturate (its T-step bound exceeds 2^23 − 1), and/or the
    weights are coarse (one step of the weight grid, g·2^e/c with g the mantissa step of the sign mode, moves the
    membrane by at least θ = vth/c, so the rounding of a single synapse can decide a spike: vth ≤ g·2^e; the
    weights' relative error can still be small)."""
    out = ["MAY saturate"] if r["may_saturate"] else []
    if r.get("coarse"):
        out.append(f"coarse: weight step {r['weight_step_theta']:.3g}θ (vth {r['vth']})")
    return ", ".join(out) or "none"


def format_report(report: list[dict]) -> str:
    """The quantization report as a fixed-width table."""
    head = f"{'stage':<12}{'kind':<8}{'neurons':>8}{'synapses':>10}{'scale':>10}{'exp':>5}{'vth':>8}{'dv':>6}" \
           f"{'clipped':>9}{'max|dW|':>10}{'mean|dW|':>10}  warnings"
    lines = [head, "-" * len(head)]
    for r in report:
        lines.append(f"{r['stage']:<12}{r['kind']:<8}{r['neurons']:>8}{r['synapses']:>10}{r['scale']:>10.4g}"
                     f"{r['weight_exp']:>5}{r['vth']:>8}{r['dv']:>6}{r['clipped_fraction']:>9.2%}"
                     f"{r['max_abs_weight_error']:>10.3g}{r['mean_abs_weight_error']:>10.3g}  {warnings_of(r)}")
    return "\n".join(lines)
