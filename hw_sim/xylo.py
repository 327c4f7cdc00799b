"""Our bit-exact Xylo simulator: a ``XyloConfig`` run on a batch of input spike counts, in NumPy integers.

The arithmetic is that of SynSense's xylosim 0.1.3 (``src/v2/cpp``, read from its source; tests/test_xylo.py
checks every spike and state against it). All states are 16-bit and every addition saturates,
sat(x) = min(max(x, −2¹⁵), 2¹⁵ − 1); the decay of a state x by a bit shift ``dash`` is

    dec(x, dash) = x >> dash  (arithmetic shift), or sign(x) where that is 0      (λ = 1 − 2^−dash)

Step t, for hidden neurons (n, two currents k) and output neurons (one current):

    1. deliver: I_k ← sat(I_k + c_j · (w_jk << shift)) for each source j in turn: the inputs first
       (c_j = min(x_j[t], 15)), then the hidden neurons' spike counts of step t − 1 (c_j = min(s_j[t−1], 31));
       the output neurons receive the hidden counts of step t − 1 through w_out << shift_out
    2. I_k ← I_k − dec(I_k, dash_syn_k)
    3. dv = wrap16(−dec(V, dash_mem));  dv = sat(dv + Σ_k I_k);  dv = sat(dv + bias);  V ← sat(V + dv)
    4. s = min(⌊V / θ⌋, s_max) where V ≥ θ, else 0;  V ← V − s·θ     (s_max: 31 hidden, 1 output)

The saturation makes step 1 depend on the order of the sources; a batch row whose sums cannot leave the 16-bit
range in any order (checked from the positive and negative parts separately) takes one matrix product, the others
are delivered source by source. wrap16 is the two's-complement wrap of C++'s int16_t, visible only at V = −2¹⁵
with dash = 0. Returned: the spike counts and every state after each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnchip.export.xylo_config import XyloConfig
from snnchip.xylo_limits import LIMITS, STATE_MAX, STATE_MIN

SPIKES_IN = LIMITS["spikes_in"].value
SPIKES_HIDDEN = LIMITS["spikes_hidden"].value
SPIKES_OUT = LIMITS["spikes_out"].value


@dataclass
class XyloRecord:
    """Per sample and step (all int64): ``spikes`` [B, T, n_hidden] counts, ``isyn`` [B, T, n_hidden, 2],
    ``vmem`` [B, T, n_hidden], ``spikes_out``, ``isyn_out`` and ``vmem_out`` [B, T, n_out]."""

    spikes: np.ndarray
    isyn: np.ndarray
    vmem: np.ndarray
    spikes_out: np.ndarray
    isyn_out: np.ndarray
    vmem_out: np.ndarray

    FIELDS = ("spikes", "isyn", "vmem", "spikes_out", "isyn_out", "vmem_out")


def sat(x: np.ndarray) -> np.ndarray:
    """Saturate to the 16-bit state range."""
    return np.clip(x, STATE_MIN, STATE_MAX)


def decay(x: np.ndarray, dash: np.ndarray) -> np.ndarray:
    """dec(x, dash) = x >> dash, or sign(x) where the shift gives 0."""
    d = np.right_shift(x, dash)
    return np.where(d == 0, np.sign(x), d)


def wrap16(x: np.ndarray) -> np.ndarray:
    return (x + 2 ** 15) % 2 ** 16 - 2 ** 15


def deliver(state: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """state [B, N, S] after sat(state + c_j · w_j) for every source j in order (counts [B, J], weights [J, N, S])."""
    b, n, s = state.shape
    w = weights.reshape(len(weights), n * s).astype(np.float64)  # exact: |Σ| < 2^53
    c = counts.astype(np.float64)
    flat = state.reshape(b, n * s)
    high = flat + (c @ np.clip(w, 0, None)).astype(np.int64)
    low = flat + (c @ np.clip(w, None, 0)).astype(np.int64)
    out = flat + (c @ w).astype(np.int64)
    ordered = np.flatnonzero(((high > STATE_MAX) | (low < STATE_MIN)).any(axis=1))
    if ordered.size:
        rows = flat[ordered].copy()
        wi = w.astype(np.int64)
        for j in range(len(weights)):
            rows = sat(rows + counts[ordered, j, None].astype(np.int64) * wi[j])
        out[ordered] = rows
    return out.reshape(b, n, s)


def evolve(i_syn: np.ndarray, v: np.ndarray, dash_syn: np.ndarray, dash_mem: np.ndarray, threshold: np.ndarray,
           bias: np.ndarray, max_spikes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-4 of the module docstring for one population: (I [B, N, S], V [B, N]) -> (spikes, I, V)."""
    i_syn = i_syn - decay(i_syn, dash_syn)
    dv = sat(wrap16(-decay(v, dash_mem)) + i_syn.sum(axis=-1))
    v = sat(v + sat(dv + bias))
    spikes = np.where(v >= threshold, np.minimum(v // threshold, max_spikes), 0)
    return spikes, i_syn, v - spikes * threshold


def run(cfg: XyloConfig, x: np.ndarray) -> XyloRecord:
    """Run ``cfg`` on input spike counts ``x`` [B, T, n_in] (non-negative integers) from the reset state."""
    cfg.check()
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != cfg.n_in:
        raise ValueError(f"input must be [batch, T, {cfg.n_in}] spike counts, got shape {x.shape}")
    if x.size and (not np.issubdtype(x.dtype, np.integer) or x.min() < 0):
        raise ValueError("input must be non-negative integer spike counts")
    b, steps, _ = x.shape
    nh, no = cfg.n_hidden, cfg.n_out
    w_hidden = np.concatenate([cfg.w_in.astype(np.int64) << cfg.shift_in, cfg.w_rec.astype(np.int64) << cfg.shift_rec])
    w_out = (cfg.w_out.astype(np.int64) << cfg.shift_out)[:, :, None]
    dash_syn, dash_mem = cfg.dash_syn.astype(np.int64), cfg.dash_mem.astype(np.int64)
    dash_syn_out, dash_mem_out = cfg.dash_syn_out.astype(np.int64)[:, None], cfg.dash_mem_out.astype(np.int64)
    th, th_out = cfg.threshold.astype(np.int64), cfg.threshold_out.astype(np.int64)
    bias, bias_out = cfg.bias.astype(np.int64), cfg.bias_out.astype(np.int64)
    i_h, v_h = np.zeros((b, nh, 2), np.int64), np.zeros((b, nh), np.int64)
    i_o, v_o = np.zeros((b, no, 1), np.int64), np.zeros((b, no), np.int64)
    s_h = np.zeros((b, nh), np.int64)
    rec = XyloRecord(*(np.zeros(shape, np.int64) for shape in
                       ((b, steps, nh), (b, steps, nh, 2), (b, steps, nh), (b, steps, no), (b, steps, no),
                        (b, steps, no))))
    for t in range(steps):
        prev = np.minimum(s_h, SPIKES_HIDDEN)
        i_h = deliver(i_h, np.concatenate([np.minimum(x[:, t].astype(np.int64), SPIKES_IN), prev], axis=1), w_hidden)
        i_o = deliver(i_o, prev, w_out)
        s_h, i_h, v_h = evolve(i_h, v_h, dash_syn, dash_mem, th, bias, SPIKES_HIDDEN)
        s_o, i_o, v_o = evolve(i_o, v_o, dash_syn_out, dash_mem_out, th_out, bias_out, SPIKES_OUT)
        rec.spikes[:, t], rec.isyn[:, t], rec.vmem[:, t] = s_h, i_h, v_h
        rec.spikes_out[:, t], rec.isyn_out[:, t], rec.vmem_out[:, t] = s_o, i_o[:, :, 0], v_o
    return rec
