"""What a deploy directory may hold: Loihi 2's limits, checked field by field when the directory is read.

``check_manifest`` checks what manifest.json holds about the whole network (T, encoding, the input, the stage
list); ``check_neuron`` (its registers) and ``check_synapses`` (its projections, bias and tables) check one stage
as read (its manifest entry and its params.npz arrays, any format version) against the limits the quantizer
(``quantize``) keeps. Each failure raises ``DeployError`` naming the
file, the stage and the field:

- kind, reset, spike: known names; float λ, λ_syn in [0, 1] and θ > 0 where the stage spikes (as ``lowering``
  admits them); latency ≥ 1;
- dv: 12-bit decay 0..4095; du: the current's decay register 0..4095; vth: threshold mantissa 1..2^17 − 1 where
  the stage spikes, 2^17 (never fires) for a readout; vsub (a subtraction other than vth) 1..2^23 − 1;
- per projection: a known source whose size matches the matrix's columns; weights 8-bit mantissas on the sign
  mode's grid (mixed: even values in [−256, 254]; excitatory [0, 255]; inhibitory [−255, 0]); weight_exp in
  ``WEIGHT_EXP`` (the wide weights' residual mantissas and exponent alike); num_message_bits 0..24; delay ≥ 0;
  extra Lava delay 0..``MAX_LAVA_DELAY``;
- max_spikes 1..255, above 1 only for a LIF/CubaLIF with reset subtract and compare ge;
- bias: |b| ≤ (2^23 − 1) / 64 (V += 64·b); EM-PF: spike_frac_bits 0..8, shift in ``MESSAGE_SHIFT``, message cap
  1..2^23 − 1, integer tables within the 24-bit state; every float finite.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from snnchip.errors import DeployError
from snnchip.export.loihi2 import (
    ACT_SHIFT_SCALE,
    DECAY_UNITY,
    MAX_LAVA_DELAY,
    MESSAGE_BITS,
    MESSAGE_SHIFT,
    NEVER_FIRES,
    V_MAX,
    VTH_MAX,
    WEIGHT_EXP,
)
from snnchip.export.lowering import Stage, synapse_of
from snnchip.export.qnet import SPIKE_FRAC_BITS, QStage
from snnchip.export.weight_grid import mantissa_range, weight_values
from snnchip.spec import ENCODINGS, SPIKE_CONDITIONS, T_MAX, NeuronKind

KINDS = ("lif", "cubalif", "srm", "empf", "readout")
RESETS = ("subtract", "zero", "zero_next")
MAX_SPIKES = 255  # spikes per step a neuron may send as one count (Xylo's neuron sends up to 31)
BIAS_MAX = V_MAX // ACT_SHIFT_SCALE


def _fail(where: str, field: str, value: Any, need: str) -> None:
    raise DeployError(f"{where}: {field} = {value!r:.60} is invalid: {need}")


def _int(where: str, field: str, value: Any, lo: int, hi: int, why: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        _fail(where, field, value, f"an integer in {lo}..{hi} ({why})")
    return int(value)


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
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**31 for d in value):
        _fail(where, field, value, "a non-empty list of positive integers")
    return tuple(value)


def check_manifest(man: Any, where: str) -> None:
    """Check what manifest.json says of the whole network (``where``: the file)."""
    if not isinstance(man, dict):
        _fail(where, "manifest", man, "a JSON object")
    _int(where, "T", man.get("T"), 1, T_MAX, "time steps")
    _one_of(where, "encoding", man.get("encoding"), ENCODINGS)
    inp = man.get("input")
    if not isinstance(inp, dict):
        _fail(where, "input", inp, "an object with shape, frac_bits and range")
    _shape(where, "input.shape", inp.get("shape"))
    _int(where, "input.frac_bits", inp.get("frac_bits"), 0, MESSAGE_BITS - 1, "graded input x·2^q in 24 bits")
    _real(where, "input.range", inp.get("range"), positive=True)
    stages = man.get("stages")
    if not isinstance(stages, list) or not stages:
        _fail(where, "stages", stages, "a non-empty list")
    if not isinstance(man.get("quantization"), list):
        _fail(where, "quantization", man.get("quantization"), "the quantization report (a list)")
    names: set[str] = set()
    for k, s in enumerate(stages):
        name = s.get("name") if isinstance(s, dict) else None
        if not isinstance(name, str) or not name or name in names or name == "input":
            _fail(where, f"stages[{k}].name", name, "a unique, non-empty string other than 'input'")
        names.add(name)
    if "output" in man and man["output"] not in names:
        _fail(where, "output", man["output"], "the name of a stage")


def _array(at: str, field: str, a: Any, shape: tuple[int, ...], integer: bool) -> np.ndarray:
    a = np.asarray(a)
    kind_ok = np.issubdtype(a.dtype, np.integer) if integer else np.issubdtype(a.dtype, np.number)
    if not kind_ok or a.shape != shape:
        _fail(at, field, f"{a.dtype} array {a.shape}", f"{'an integer' if integer else 'a numeric'} array of shape "
              f"{shape}")
    if not integer and not np.isfinite(a).all():
        _fail(at, field, "an array with NaN or infinity", "finite values")
    return a


def check_neuron(at: str, q: QStage, st: Stage) -> None:
    """Check a stage's neuron fields (``at`` names the file and the stage)."""
    kind = _one_of(at, "kind", q.kind, KINDS)
    if st.kind != kind:
        _fail(at, "kind", st.kind, f"{kind!r}, as the integer stage")
    _shape(at, "out_shape", list(q.out_shape))
    _one_of(at, "reset", q.reset, RESETS)
    _one_of(at, "spike", q.spike, SPIKE_CONDITIONS)
    _int(at, "dv", q.dv, 0, DECAY_UNITY - 1, "12-bit voltage decay")
    _int(at, "du", q.du, 0, DECAY_UNITY - 1, "12-bit current decay register")
    _int(at, "latency", q.latency, 1, T_MAX, "Lava steps from the input")
    _real(at, "scale", q.scale, positive=True)
    spiking = kind in (NeuronKind.LIF, NeuronKind.CUBALIF, NeuronKind.SRM)
    if spiking:
        _int(at, "vth", q.vth, 1, VTH_MAX, "threshold mantissa")
    elif kind == NeuronKind.READOUT and q.vth != NEVER_FIRES:
        _fail(at, "vth", q.vth, f"{NEVER_FIRES}: a readout runs on Lava's LIF and must never fire")
    if q.vsub is not None:
        _int(at, "vsub", q.vsub, 1, V_MAX, "the mantissa a subtractive reset removes")
    for key, value in (("lam", st.lam), ("lam_syn", st.lam_syn)):
        if not 0.0 <= _real(at, key, value) <= 1.0 and spiking:
            _fail(at, key, value, "a decay factor in [0, 1]")
    _real(at, "theta", st.theta, positive=spiking)
    if q.max_spikes != 1:
        _int(at, "max_spikes", q.max_spikes, 1, MAX_SPIKES, "spikes per step, sent as one graded count")
        if kind not in (NeuronKind.LIF, NeuronKind.CUBALIF) or (q.reset, q.spike) != ("subtract", "ge"):
            _fail(at, "max_spikes", q.max_spikes, "1 unless the stage is a LIF or CubaLIF with reset subtract and "
                  "compare ge (the neuron that sends several spikes per step)")
    if kind == NeuronKind.EMPF:
        _int(at, "shift", q.shift, *MESSAGE_SHIFT, "graded message shift")
        _int(at, "spike_frac_bits", q.spike_frac_bits, 0, SPIKE_FRAC_BITS, "graded message fraction bits")
        _int(at, "message_cap", q.message_cap, 1, V_MAX, "the largest graded message")


def check_synapses(at: str, arrays_at: str, q: QStage, st: Stage, T: int, sizes: dict[str, int]) -> None:
    """Check a stage's projections, bias and tables (``q`` integer, ``st`` float, its neurons checked): manifest
    fields named with ``at``, arrays with ``arrays_at``; ``sizes``: the number of values each source (the input,
    every stage) sends."""
    n_out = math.prod(q.out_shape)
    if not q.inputs or len(q.inputs) != len(st.inputs):
        _fail(at, "inputs", len(q.inputs), f"one or more projections, as many as the float stage ({len(st.inputs)})")
    for i, (p, real) in enumerate(zip(q.inputs, st.inputs, strict=True)):
        where, arrays_where = f"{at}, input {i}", f"{arrays_at}, input {i}"
        if p.source not in sizes or real.source != p.source:
            _fail(where, "source", p.source, f"one of {', '.join(sizes)}")
        _int(where, "weight_exp", p.weight_exp, *WEIGHT_EXP, "Dense/Sparse weight exponent")
        if p.low is not None:
            _int(where, "low_exp", p.low_exp, *WEIGHT_EXP, "the residual Dense/Sparse weight exponent")
        _int(where, "num_message_bits", p.num_message_bits, 0, MESSAGE_BITS, "0: binary spikes, else graded")
        _int(where, "delay", p.delay, 0, T_MAX, "steps of delay in the float graph")
        _int(where, "lava_delay", p.lava_delay, 0, MAX_LAVA_DELAY, "extra Lava synaptic delay")
        if real.delay != p.delay:
            _fail(where, "delay", real.delay, f"{p.delay}, as the integer projection")
        shape = (n_out, sizes[p.source])
        matrices = (("weight", p.weight, True), ("weight_float", real.weight, False)) + \
            ((("weight_low", p.low, True),) if p.low is not None else ())
        for field, w, integer in matrices:
            if w.shape != shape or synapse_of(w) != p.synapse:
                _fail(arrays_where, field, f"{type(w).__name__} {w.shape}", f"a {p.synapse} {list(shape)} matrix")
            _array(arrays_where, field, weight_values(w), weight_values(w).shape, integer)
            if not integer:
                continue
            m = weight_values(w)
            lo, hi, step = mantissa_range(m)
            off = (m < lo) | (m > hi) | (m % step != 0)
            if off.any():
                _fail(arrays_where, field, int(m[off][0]), f"8-bit mantissas on the grid {lo}..{hi} step {step} "
                      "(Lava's sign mode)")
    bias = _array(arrays_at, "bias", q.bias, (n_out,), integer=True)
    if np.abs(bias).max(initial=0) > BIAS_MAX:
        _fail(arrays_at, "bias", int(np.abs(bias).max()), f"|bias| ≤ {BIAS_MAX} (V += 64·bias in 24 bits)")
    _array(arrays_at, "bias_float", st.bias, (n_out,), integer=False)
    if q.graded:
        for key, table in (st.tables or {}).items():
            _array(arrays_at, f"table/{key}", table, (T, n_out), integer=False)
        for key, table in (q.tables or {}).items():
            a = _array(arrays_at, f"qtable/{key}", table, (T, n_out), integer=True)
            if np.abs(a).max(initial=0) > V_MAX + 1:
                _fail(arrays_at, f"qtable/{key}", int(np.abs(a).max()), f"values within ±{V_MAX + 1} (24-bit state)")
