"""Calibration inputs for the data headroom: check them, and measure the largest state each float stage reaches.

``stage_peaks`` runs the lowered float stages (``export.lowering``: the chip's graph in real units, before any
rounding) on calibration inputs x [T, B, *input_shape] and returns per stage (I, V): I = max over steps, samples and
neurons of |i| (the current: the step's input a = Σ_p W_p·x_p[t − d_p] + b, decayed by λ_syn where the neuron
keeps one) and V = max of λ·v + i (the membrane before its reset, from above), the two states the chip holds in 24
bits (u wraps, v clips: ``deploy.fixed_point``). The membrane's negative excursions are not measured: an IF
integrating inhibition drifts far below zero, and sizing the scale for that would cost resolution where spikes
are decided; below −B the chip's membrane clips (counted by ``hw_sim.chip``). An EM-PF stage's (I, V) are its
input term's largest |a[t]·x| and its membrane's largest |m| (EM-PF Eq. 7, folded: m = λ̂ v + a x; its graded spike
m − θ̂ depends on m in both directions, so both count). The neuron steps are ``snnchip.neurons``'s equations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnchip.errors import DataError
from snnchip.export.lowering import INPUT, LoweredNet, Stage
from snnchip.identity import sha256_arrays
from snnchip.neurons import current_step, empf_step, li_step, lif_step
from snnchip.spec import NeuronKind

CHUNK = 256  # samples run at a time


def check_calibration_input(x: Any, net: LoweredNet, input_range: float, where: str = "calibration input"
                            ) -> np.ndarray:
    """``x`` as float64 [T, B, *input_shape], or a ``DataError`` naming what is wrong: not a real array, a shape
    other than [T of the deployment, B ≥ 1, *the graph's input shape], NaN/inf, or values beyond the input range
    the deployment takes (its runs refuse those, so they cannot calibrate it)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    if np.iscomplexobj(x) or not (np.issubdtype(np.asarray(x).dtype, np.number) or np.asarray(x).dtype == bool):
        raise DataError(f"{where}: expected an array of real numbers, got dtype {np.asarray(x).dtype}")
    x = np.asarray(x, dtype=np.float64)
    shape = tuple(net.input_shape)
    if x.ndim != 2 + len(shape) or tuple(x.shape[2:]) != shape or x.shape[1] == 0:
        raise DataError(f"{where}: shape {x.shape}; this graph takes [T, batch ≥ 1, *{shape}]")
    if x.shape[0] != net.T:
        raise DataError(f"{where}: {x.shape[0]} time steps; the deployment runs T = {net.T} (calibrate on inputs of "
                        "the length it will run)")
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(f"{where}: holds {int(bad.sum())} NaN or infinite value(s), the first at index "
                        f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    largest = float(np.abs(x).max(initial=0.0))
    if largest > input_range:
        raise DataError(f"{where}: |x| reaches {largest:g}, beyond the deployment's input range {input_range:g} "
                        "(its runs refuse such inputs); pass --input-range / input_range ≥ it")
    return x


def describe(x: np.ndarray) -> dict[str, Any]:
    """What the manifest records of calibration inputs: their shape and sha256 (``identity.sha256_arrays``)."""
    return {"shape": list(x.shape), "sha256": sha256_arrays(np.asarray(x, np.float64))}


def _drive(stage: Stage, out: dict[str, list[np.ndarray]], t: int, batch: int) -> np.ndarray:
    """a[t] = Σ_p W_p·x_p[t − d_p] + b for one stage [B, n] (zero before a source's first step)."""
    a = np.broadcast_to(stage.bias, (batch, stage.size)).astype(np.float64)
    for p in stage.inputs:
        if t >= p.delay:
            x = out[p.source][t - p.delay]
            a = a + np.asarray(p.weight @ x.T).T  # dense, CSR or Kernel: each maps [n_in, B] to [n_out, B]
    return a


def _peaks_of_chunk(net: LoweredNet, x: np.ndarray, peaks: dict[str, list[float]]) -> None:
    T, batch = x.shape[0], x.shape[1]
    out: dict[str, list[np.ndarray]] = {INPUT: list(x)}
    state = {st.name: {"i": np.zeros((batch, st.size)), "v": np.zeros((batch, st.size)),
                       "s": np.zeros((batch, st.size))} for st in net.stages}
    for st in net.stages:
        out[st.name] = []
    for t in range(T):
        for st in net.stages:
            a, z = _drive(st, out, t, batch), state[st.name]
            if st.graded:
                tab = {k: v[t] for k, v in st.tables.items()}
                m, s, z["v"] = empf_step(z["v"], a, lam=tab["lam"], scale=tab["input_scale"], theta=tab["theta"],
                                         offset=tab["reset_offset"])
                peak = peaks[st.name]
                peak[0] = max(peak[0], float(np.abs(tab["input_scale"] * a).max(initial=0.0)))
                peak[1] = max(peak[1], float(np.abs(m).max(initial=0.0)))
                out[st.name].append(s)
                continue
            i = current_step(z["i"], a, a_syn=st.lam_syn, b_syn=1.0) if st.current else a
            membrane = li_step(z["v"], i, a=st.lam)
            peak = peaks[st.name]
            peak[0] = max(peak[0], float(np.abs(i).max(initial=0.0)))
            peak[1] = max(peak[1], float(membrane.max(initial=0.0)))
            if not st.spiking:
                z["v"] = membrane
                out[st.name].append(np.zeros_like(membrane))
                continue
            _, s, z["v"] = lif_step(z["v"], i, a=st.lam, theta=st.theta, reset=st.reset, compare=st.spike,
                                    s_prev=z["s"], reset_by=st.reset_by)
            z["i"], z["s"] = (i * (1 - s) if st.kind == NeuronKind.SRM else i), s
            out[st.name].append(s)


def stage_peaks(net: LoweredNet, x: np.ndarray, chunk: int = CHUNK) -> dict[str, tuple[float, float]]:
    """(I, V) per stage of ``net`` (module docstring: I the largest |current|, V the largest membrane before its
    reset; an EM-PF stage's largest |input term| and |m|) on checked inputs ``x`` [T, B, *input_shape] (float64)."""
    x = x.reshape(x.shape[0], x.shape[1], -1)
    peaks = {st.name: [0.0, 0.0] for st in net.stages}
    for b in range(0, x.shape[1], chunk):
        _peaks_of_chunk(net, x[:, b:b + chunk], peaks)
    return {st.name: (peaks[st.name][0], peaks[st.name][1]) for st in net.stages}
