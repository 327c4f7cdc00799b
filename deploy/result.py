"""What every chip backend (hw_sim's bit-exact simulator, the Lava network) returns from a run."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from snnchip.atomic import atomic_path
from snnchip.errors import DeployError, SpecError
from snnchip.export.qnet import QStage, QuantizedNet
from snnchip.summary import result_repr

TIMINGS = ("software", "lava")


def check_input(x: np.ndarray, input_shape: tuple[int, ...], T: int) -> np.ndarray:
    """Validate ``x`` [T, B ≥ 1, *input_shape] of finite real numbers (an array, or a torch tensor on any device,
    with or without a graph); return it as float64 [T, B, n_in] in host memory."""
    if hasattr(x, "detach"):  # a torch tensor (this module does not import torch: Lava's processes read it)
        x = x.detach().cpu().double().numpy()
    if np.iscomplexobj(x):
        raise DeployError("input holds complex numbers; the chip takes real inputs (pass x.real or abs(x))")
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DeployError(f"input is not an array of real numbers ({exc})") from None
    if x.ndim < 2 or tuple(x.shape[2:]) != tuple(input_shape) or x.shape[0] != T or x.shape[1] == 0:
        raise DeployError(f"input has shape {x.shape}; expected [T={T}, batch ≥ 1, *{tuple(input_shape)}]")
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        first = tuple(int(i) for i in bad[0])
        raise DeployError(f"input holds {len(bad)} NaN or infinite value(s), the first at index {first}; the chip "
                          "takes finite inputs")
    return x.reshape(x.shape[0], x.shape[1], -1)


def accept_input(x: np.ndarray, qnet: QuantizedNet, clip: bool = False) -> tuple[np.ndarray, int]:
    """``check_input``, then the deployment's input contract (its recorded encoding and range); return the input as
    float64 [T, B, n_in] and the number of values clipped.

    The quantizer sizes the input's fixed point (x·2^q in 24 bits, every Dense sum inside Lava's int32 accumulator)
    for |x| ≤ the recorded range; beyond it Lava's int32 sums wrap and the deployment no longer computes what the
    float graph does (and the chip simulator and Lava need not agree). An input outside it raises ``DeployError``
    with the numbers, unless ``clip``: then it is clipped to ±range, the same for every backend, and counted. A
    rate-coded deployment takes spikes: every value 0 or 1 (``clip`` does not apply).
    """
    xs = check_input(x, qnet.input_shape, qnet.T)
    if qnet.encoding == "rate":
        off = (xs != 0) & (xs != 1)
        if off.any():
            first = int(np.argmax(off))
            raise DeployError(f"input holds {int(off.sum())} value(s) that are not spikes (the first, "
                              f"{xs.reshape(-1)[first]:g}, at {_index(first, xs.shape, qnet.input_shape)}); this "
                              "deployment's encoding is rate: it takes 0 or 1, so encode intensities first (spikes = "
                              "rng.random(x.shape) < x)")
        return xs, 0
    limit = float(qnet.input_range)
    over = np.abs(xs) > limit
    count = int(over.sum())
    if count and not clip:
        worst = int(np.argmax(np.abs(xs)))
        largest = float(np.abs(xs).reshape(-1)[worst])
        raise DeployError(f"input holds {count} value(s) outside the deployment's input range |x| ≤ {limit:g} (the "
                          f"largest, |x| = {largest:g}, at {_index(worst, xs.shape, qnet.input_shape)}); its fixed "
                          "point is exact only inside it: scale the inputs, re-export with --input-range "
                          f"{_rounded_up(largest):g}, or clip them to ±{limit:g} (--clip-inputs, clip=True)")
    return (np.clip(xs, -limit, limit) if count else xs), count


def _rounded_up(x: float) -> float:
    """``x`` rounded up to 3 significant digits (a range that covers it)."""
    step = 10.0 ** (math.floor(math.log10(x)) - 2)
    return math.ceil(x / step) * step


def _index(flat: int, shape: tuple[int, ...], input_shape: tuple[int, ...]) -> str:
    """'[t=.., sample .., feature ..]' of a flat index into [T, B, n_in] (the feature as an index of input_shape)."""
    t, b, i = np.unravel_index(flat, shape)
    feature = tuple(int(k) for k in np.unravel_index(int(i), input_shape))
    return f"[t={int(t)}, sample {int(b)}, feature {feature if len(feature) > 1 else feature[0]}]"


def check_timing(timing: str) -> None:
    if timing not in TIMINGS:
        raise SpecError(f"timing {timing!r}; valid: {', '.join(TIMINGS)} (software: latency removed, t = 1..T; lava: "
                        "Lava's own T + depth steps)")


@dataclass
class RunResult:
    """Outputs of a run, time-major.

    ``output`` [T, B, C]: the readout integrator's state Σ_{τ≤t} o[τ] in real units (for a graph
    without a readout: the last layer's spikes); ``output_raw``: the same as chip integers (None in
    floating point); ``spikes[layer]`` [T, B, *shape] bool; ``states[layer]`` {"u", "v"} [T, B, *shape]
    (u: the step's input current, v: the membrane after reset). ``timing`` is "software" (latency
    removed, t = 1..T) or "lava" (Lava's own steps, T + depth of them); ``latency[layer]`` = k means
    software step t of that layer is Lava step t + k.
    """

    output: np.ndarray
    output_raw: np.ndarray | None
    spikes: dict[str, np.ndarray]
    states: dict[str, dict[str, np.ndarray]]
    latency: dict[str, int]
    timing: str = "software"
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return result_repr("RunResult", self.output, self.spikes, timing=self.timing,
                           states=f"u/v of {len(self.states)} layers" if self.states else None)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``output`` and ``spikes/<layer>`` (plus ``output_raw`` when present) to an .npz, atomically."""
        arrays = {"output": self.output, **{f"spikes/{k}": v for k, v in self.spikes.items()}}
        if self.output_raw is not None:
            arrays["output_raw"] = self.output_raw
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)


def join_batches(parts: Sequence[RunResult]) -> RunResult:
    """One ``RunResult`` of consecutive batches (each array concatenated along the batch axis 1)."""
    first = parts[0]
    if len(parts) == 1:
        return first

    def cat(arrays: list) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays, axis=1)

    return RunResult(output=cat([p.output for p in parts]), output_raw=cat([p.output_raw for p in parts]),
                     spikes={k: cat([p.spikes[k] for p in parts]) for k in first.spikes},
                     states={k: {var: cat([p.states[k][var] for p in parts]) for var in first.states[k]}
                             for k in first.states},
                     latency=first.latency, timing=first.timing, meta=first.meta)


def assemble(qnet: QuantizedNet, u: dict[str, np.ndarray], v: dict[str, np.ndarray], s: dict[str, np.ndarray],
             timing: str, fixed: bool, keep_states: bool = True, clock: str = "lava") -> RunResult:
    """A ``RunResult`` from per-stage arrays on Lava's clock ([T + depth, B, n]; stage n's software step t is Lava
    step t + latency(n)), or with ``clock`` "software" (``timing`` "software" only) from arrays that hold each
    stage's software steps 0 .. T − 1 already ([T, B, n]: the chip simulator computes no more).

    ``u``/``v`` must hold the output stage (and every stage when ``keep_states``), ``s`` every spiking stage. The
    output is the readout's v (/ (64·c) in fixed point) or, when the output stage spikes, its spikes.
    """
    T = int(qnet.T)
    latency = {q.name: q.latency for q in qnet.stages}

    def view(a: np.ndarray, q: QStage) -> np.ndarray:
        a = a[latency[q.name]:latency[q.name] + T] if timing == "software" and clock == "lava" else a
        return a.reshape(a.shape[0], a.shape[1], *q.out_shape)

    spikes = {q.name: view(s[q.name], q) for q in qnet.stages if q.spiking}
    states = {q.name: {"u": view(u[q.name], q), "v": view(v[q.name], q)} for q in qnet.stages} if keep_states else {}
    out = qnet.stage(qnet.output)
    if out.spiking:
        raw = spikes[out.name].reshape(*spikes[out.name].shape[:2], -1).astype(np.int64)
        output = raw.astype(np.float64)
    else:
        state = view(v[out.name], out)
        raw, output = (state, state / (64.0 * out.scale)) if fixed else (None, state)
    return RunResult(output=output, output_raw=raw, spikes=spikes, states=states, latency=latency, timing=timing)
