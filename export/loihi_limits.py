"""What a deploy directory may hold: Loihi 2's limits, checked field by field when the directory is read.

``check_manifest`` checks manifest.json (types, ranges, known names, shapes that chain); ``check_stage`` checks one
stage's params.npz arrays against it (dtypes, shapes, finite floats, integers on the chip's grids). Each failure
raises ``DeployError`` naming the file, the stage and the field. The limits are the quantizer's (``quantize``):

- kind, process, synapse, reset (SRM: zero_both), spike: known names; float λ, λ_syn in [0, 1] and θ > 0 where
  the stage spikes (as ``lowering`` admits them);
- dv: 12-bit decay 0..4095; du (SRM current): 0..4096; vth: threshold mantissa 0..2^17 − 1 (≥ 1 where it spikes);
- weights: 8-bit mantissas on the sign mode's grid (mixed: even values in [−256, 254]; excitatory [0, 255];
  inhibitory [−255, 0]); weight_exp in ``WEIGHT_EXP``; bias: |b| ≤ (2^23 − 1) / 64 (V += 64·b);
- num_message_bits 0..24; input frac_bits 0..23; EM-PF: spike_frac_bits 0..8, shift in ``SHIFT``, integer
  tables within the 24-bit state; T in 1..``T_MAX``; every float finite.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from snnchip.errors import DeployError
from snnchip.export.lowering import Stage
from snnchip.export.quantize import (
    ACT_SHIFT_SCALE,
    DECAY_UNITY,
    MESSAGE_BITS,
    SPIKE_FRAC_BITS,
    V_MAX,
    VTH_MAX,
    QStage,
    mantissa_range,
    weight_values,
)
from snnchip.spec import ENCODINGS, RESET_MODES, SPIKE_CONDITIONS, T_MAX

KINDS = ("lif", "srm", "readout", "empf")
PROCESSES = ("lava.LIF", "snnchip.SubLIF", "snnchip.CubaLIF", "snnchip.EMPF", "snnchip.Integrator")
SYNAPSES = ("dense", "sparse")
WEIGHT_EXP = (-31, 31)  # shifts of Lava's integer accumulator that keep their meaning (beyond: always 0 or overflow)
SHIFT = (-MESSAGE_BITS + 1, MESSAGE_BITS - 1)  # an EM-PF message is a shifted 24-bit value
BIAS_MAX = V_MAX // ACT_SHIFT_SCALE


def _fail(where: str, field: str, value: Any, need: str) -> None:
    raise DeployError(f"{where}: {field} = {value!r:.60} is invalid: {need}")


def _int(where: str, field: str, value: Any, lo: int, hi: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _fail(where, field, value, f"an integer in {lo}..{hi} ({why})")
    return value


def _real(where: str, field: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (positive and value <= 0):
        _fail(where, field, value, "a finite number" + (" > 0" if positive else ""))
    return float(value)


def _one_of(where: str, field: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        _fail(where, field, value, f"one of {', '.join(options)}")
    return value


def _shape(where: str, field: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**31 for d in value):
        _fail(where, field, value, "a non-empty list of positive integers")
    return tuple(value)


def check_manifest(man: Any, where: str) -> None:
    """Check every value manifest.json holds that a deployment is built from (``where``: the file)."""
    if not isinstance(man, dict):
        _fail(where, "manifest", man, "a JSON object")
    _int(where, "T", man.get("T"), 1, T_MAX, "time steps")
    _one_of(where, "encoding", man.get("encoding"), ENCODINGS)
    inp = man.get("input")
    if not isinstance(inp, dict):
        _fail(where, "input", inp, "an object with shape, frac_bits and range")
    n_prev = math.prod(_shape(where, "input.shape", inp.get("shape")))
    _int(where, "input.frac_bits", inp.get("frac_bits"), 0, MESSAGE_BITS - 1, "graded input x·2^q in 24 bits")
    _real(where, "input.range", inp.get("range"), positive=True)
    stages = man.get("stages")
    if not isinstance(stages, list) or not stages:
        _fail(where, "stages", stages, "a non-empty list")
    if not isinstance(man.get("quantization"), list):
        _fail(where, "quantization", man.get("quantization"), "the quantization report (a list)")
    names = set()
    for k, s in enumerate(stages, start=1):
        if not isinstance(s, dict):
            _fail(where, f"stages[{k - 1}]", s, "an object")
        name = s.get("name")
        if not isinstance(name, str) or not name or name in names:
            _fail(where, f"stages[{k - 1}].name", name, "a unique, non-empty string")
        names.add(name)
        at = f"{where}: stage {k} ({name!r})"
        kind = _one_of(at, "kind", s.get("kind"), KINDS)
        _one_of(at, "process", s.get("process", PROCESSES[0]), PROCESSES)
        _one_of(at, "synapse", s.get("synapse", "dense"), SYNAPSES)
        _one_of(at, "reset", s.get("reset"), ("zero_both",) if kind == "srm" else RESET_MODES)
        _one_of(at, "spike", s.get("spike"), SPIKE_CONDITIONS)
        n_in, n_out = (math.prod(_shape(at, key, s.get(key))) for key in ("in_shape", "out_shape"))
        if n_in != n_prev:
            _fail(at, "in_shape", s["in_shape"], f"{n_prev} values in all (what the previous stage or the input "
                  "gives)")
        n_prev = n_out
        _int(at, "weight_exp", s.get("weight_exp"), *WEIGHT_EXP, "Dense/Sparse weight exponent")
        _int(at, "num_message_bits", s.get("num_message_bits"), 0, MESSAGE_BITS, "0: binary spikes, else graded")
        _int(at, "dv", s.get("dv"), 0, DECAY_UNITY - 1, "12-bit voltage decay")
        _int(at, "du", s.get("du", DECAY_UNITY - 1), 0, DECAY_UNITY, "12-bit current decay")
        _int(at, "vth", s.get("vth"), 1 if kind in ("lif", "srm") else 0, VTH_MAX, "threshold mantissa")
        _int(at, "shift", s.get("shift", 0), *SHIFT, "graded message shift")
        _int(at, "spike_frac_bits", s.get("spike_frac_bits", 0), 0, SPIKE_FRAC_BITS, "graded message fraction bits")
        _real(at, "scale", s.get("scale"), positive=True)
        for key in ("lam", "lam_syn"):
            if not 0.0 <= _real(at, key, s.get(key, 0.0)) <= 1.0 and kind in ("lif", "srm"):
                _fail(at, key, s[key], "a decay factor in [0, 1]")
        _real(at, "theta", s.get("theta"), positive=kind in ("lif", "srm"))
        if s.get("latency", k) != k:
            _fail(at, "latency", s["latency"], f"{k} (one step per stage)")


def _array(at: str, field: str, a: Any, shape: tuple[int, ...], integer: bool) -> np.ndarray:
    a = np.asarray(a)
    kind_ok = np.issubdtype(a.dtype, np.integer) if integer else np.issubdtype(a.dtype, np.number)
    if not kind_ok or a.shape != shape:
        _fail(at, field, f"{a.dtype} array {a.shape}", f"{'an integer' if integer else 'a numeric'} array of shape "
              f"{shape}")
    if not integer and not np.isfinite(a).all():
        _fail(at, field, "an array with NaN or infinity", "finite values")
    return a


def check_stage(at: str, q: QStage, st: Stage, T: int) -> None:
    """Check one stage's arrays (params.npz, read into ``q`` and ``st``) against its manifest entry (``at``)."""
    n_out, n_in = math.prod(q.out_shape), math.prod(q.in_shape)
    for field, w, integer in (("weight", q.weight, True), ("weight_float", st.weight, False)):
        if w.shape != (n_out, n_in) or (sp.issparse(w) != (q.synapse == "sparse")):
            _fail(at, field, f"{type(w).__name__} {w.shape}", f"a {q.synapse} [{n_out}, {n_in}] matrix")
        _array(at, field, weight_values(w), weight_values(w).shape, integer)
    m = weight_values(q.weight)
    lo, hi, step = mantissa_range(m)
    off = (m < lo) | (m > hi) | (m % step != 0)
    if off.any():
        _fail(at, "weight", int(m[off][0]), f"8-bit mantissas on the grid {lo}..{hi} step {step} (Lava's sign mode)")
    bias = _array(at, "bias", q.bias, (n_out,), integer=True)
    if np.abs(bias).max(initial=0) > BIAS_MAX:
        _fail(at, "bias", int(np.abs(bias).max()), f"|bias| ≤ {BIAS_MAX} (V += 64·bias in 24 bits)")
    _array(at, "bias_float", st.bias, (n_out,), integer=False)
    if q.graded:
        for key, table in (st.tables or {}).items():
            _array(at, f"table/{key}", table, (T, n_out), integer=False)
        for key, table in (q.tables or {}).items():
            a = _array(at, f"qtable/{key}", table, (T, n_out), integer=True)
            if np.abs(a).max(initial=0) > V_MAX + 1:
                _fail(at, f"qtable/{key}", int(np.abs(a).max()), f"values within ±{V_MAX + 1} (24-bit state)")
