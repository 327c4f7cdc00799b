"""The chip's arithmetic as pure NumPy functions: shared by our Lava process models and hw_sim.

They reproduce lava-nc 0.10.0's bit-accurate models (``PyDenseModelBitAcc``, ``PySparseModelBitAcc``, their Delay
variants, ``PyLifModelBitAcc``) with zero neuron bias (deploy injects biases through the input), and add our
reset/compare options. Works on any leading batch dimensions; integers are int64.

Dense and Sparse (fixed_pt): w' = truncate(clip(w)) by sign mode (mixed: clip to [−256, 255], drop the lowest
bit, rounding toward −∞; excitatory [0, 255]; inhibitory [−255, 0]); a = Σ_j w'_ij·s_j, then
a << e (e > 0) or a >> −e (e ≤ 0, floor). A Sparse projection's w is a CSR matrix (scipy sparse product), a
Conv projection's a ``Kernel`` (the same sum over the taps that land, ``conv_fixed``).

Neuron (fixed_pt), per step with input a, current register du and threshold mantissa vth (Lava's LIF):
    u = wrap24(decay(u, du + 1) + (a << 6))  (du = 4095: no current memory, u = the step's input)
    v = clip(decay(v, dv) + u, −(2^23 − 1), 2^23 − 1),  decay(x, d) = sign(p)·(|p| >> 12), p = x·(4096 − d)
    v = 0 where s[t−1]                       (``zero_next``: the step after a spike is zeroed, its input too)
    s = v ≥ vth << 6 (ge)  or  v > vth << 6 (gt)
    v = v − (vsub << 6)·s (subtract; vsub = vth unless the reset amount differs)  or  v·(1 − s) (zero);
    u = u·(1 − s) too when the current resets (SRM)
    s = min(⌊v / (vth << 6)⌋, M)·[v ≥ vth << 6]   (a neuron sending up to M spikes per step as one count; subtract)
wrap24 is Lava's single wrap: x > 2^23 → x − 2^24, then x ≤ −2^23 → x + 2^24. Lava's LIF is the case reset zero,
``gt``, current kept; a readout is that LIF with vth = 2^17 (it never fires).

The floating_pt process models run the float steps of ``snnchip.neurons`` instead (with a = 1 − dv).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from snnchip.export.kernel import Kernel, conv_numpy
from snnchip.export.loihi2 import ACT_SHIFT, DECAY_BITS, DECAY_UNITY, V_MAX, WEIGHT_BITS, WRAP, sign_mode
from snnchip.export.weight_grid import with_values


def effective_weights(weight: np.ndarray | sp.spmatrix | Kernel, num_weight_bits: int = WEIGHT_BITS
                      ) -> np.ndarray | sp.csr_matrix | Kernel:
    """Lava Dense's / Sparse's clip + truncation by sign mode (``lava.utils.weightutils``), as int64.

    The sign mode counts zeros as ≥ 0 and ≤ 0 (Lava's ``np.min``/``np.max`` see a CSR matrix's implicit zeros);
    a CSR matrix stays CSR with its truncated-to-zero entries dropped (as Lava's ``truncate_weights`` does); a
    kernel's entries are truncated alike (a quantized kernel is on its grid already, so Lava's ``Conv``, which does
    not truncate, applies the same integers).
    """
    if isinstance(weight, Kernel):
        return weight.with_kernel(effective_weights(weight.kernel, num_weight_bits))
    sparse = sp.issparse(weight)
    w = (sp.csr_matrix(weight).data if sparse else np.asarray(weight)).astype(np.int64)
    mode = sign_mode(w)
    mode_sign, mixed = (-1 if mode == "inhibitory" else 1), int(mode == "mixed")
    w = mode_sign * w
    w = np.clip(w, -(2**WEIGHT_BITS) * mixed, 2**WEIGHT_BITS - 1)
    drop = WEIGHT_BITS - num_weight_bits + mixed
    w = mode_sign * ((w >> drop) << drop)
    if not sparse:
        return w
    out = with_values(weight, w)
    out.eliminate_zeros()
    return out


def dense_fixed(w_eff: np.ndarray | sp.csr_matrix, weight_exp: int, s: np.ndarray) -> np.ndarray:
    """a = (w_eff · s) shifted by ``weight_exp``; ``s`` is [..., n_in] binary or graded, result [..., n_out].

    Dense and Sparse compute the same integers (Lava's ``PySparseModelBitAcc.run_spk`` is ``PyDenseModelBitAcc``'s
    with a CSR product): the sum is exact (int64 here; the quantizer keeps it inside Lava's int32), then shifted
    left by e > 0 or right (floor) by −e.
    """
    s = np.asarray(s)
    if isinstance(w_eff, Kernel):
        a = conv_fixed(w_eff, s)
    elif sp.issparse(w_eff) and w_eff.nnz == w_eff.shape[0] and np.all(np.diff(w_eff.indptr) == 1):
        # one synapse per output (a shortcut): a gather, or none where output i reads input i
        same = w_eff.shape[0] == s.shape[-1] and np.array_equal(w_eff.indices, np.arange(w_eff.shape[0]))
        a = (s if same else s[..., w_eff.indices]) * w_eff.data
    elif sp.issparse(w_eff):
        flat = s.reshape(-1, s.shape[-1]).astype(np.int64)
        a = np.asarray(w_eff @ flat.T).T.reshape(*s.shape[:-1], w_eff.shape[0])
    elif float(np.abs(s).max(initial=0)) * float(np.abs(w_eff).sum(axis=1).max(initial=0)) < 2.0**52:
        a = (s.astype(np.float64) @ w_eff.T.astype(np.float64)).astype(np.int64)  # exact: every sum < 2^52
    else:
        a = s.astype(np.int64) @ w_eff.T
    return a << weight_exp if weight_exp > 0 else a >> -weight_exp if weight_exp < 0 else a


FLOAT32_EXACT = 2.0**24  # every integer below it is a float32, so are the partial sums of a float32 convolution
MAX_DIGITS = 4  # float32 passes a convolution may be split into (each about a tenth of one float64 pass on a CPU)


def conv_fixed(k: Kernel, s: np.ndarray) -> np.ndarray:
    """The integer convolution Σ m·s of a kernel, batched, exact: by torch in float32 where every partial sum is an
    integer below 2^24 (Σ|m|·|s| < 2^24 bounds them); else as a sum over base-2^b digits of s, s = Σ_i d_i·2^(b·i)
    (d_i = (s >> b·i) mod 2^b, the last one signed), Σ m·s = Σ_i 2^(b·i)·Σ m·d_i, each digit's convolution in
    float32 with (2^b − 1)·Σ|m| < 2^24, when at most ``MAX_DIGITS`` digits do; else in float64 below 2^53, else
    in int64 (``conv_numpy``). A pooling composed into the kernel is summed first (``Kernel.apply``'s
    ``pool_first``: the same integers, and every partial sum still within the bound); only the samples that receive
    a message this step are computed."""
    import torch

    flat = s.reshape(-1, s.shape[-1])
    live = np.flatnonzero(flat.any(axis=1))  # a sample with no message this step gets 0 (most, in a deep pipeline)
    if live.size == 0:
        return np.zeros((*s.shape[:-1], k.shape[0]), dtype=np.int64)
    x = flat if live.size == flat.shape[0] else flat[live]
    top, weights = float(np.abs(x).max()), k.abs_sum_bound
    bits = math.floor(math.log2((FLOAT32_EXACT - 1) / weights)) if 0 < weights < FLOAT32_EXACT / 2 else 0
    if top * weights < FLOAT32_EXACT:
        a = k.apply(x, torch.float32, pool_first=True).astype(np.int64)
    elif bits >= 1 and top < 2.0 ** (bits * MAX_DIGITS - 1):
        a, rest, shift = 0, np.asarray(x, np.int64), 0
        while float(np.abs(rest).max()) * weights >= FLOAT32_EXACT:
            digit = rest & ((1 << bits) - 1)
            a = a + (k.apply(digit, torch.float32, pool_first=True).astype(np.int64) << shift)
            rest, shift = rest >> bits, shift + bits
        a = a + (k.apply(rest, torch.float32, pool_first=True).astype(np.int64) << shift)
    elif top * weights < 2.0**53:
        a = k.apply(x, torch.float64, pool_first=True).astype(np.int64)
    else:
        a = conv_numpy(k, x)
    if live.size < flat.shape[0]:
        out = np.zeros((flat.shape[0], k.shape[0]), dtype=np.int64)
        out[live] = a
        a = out
    return a.reshape(*s.shape[:-1], k.shape[0])


def wrap24(x: np.ndarray) -> np.ndarray:
    """Lava's single 24-bit wrap (module docstring); ``x`` itself where nothing is out of range (the common case,
    told by two reductions instead of two full passes)."""
    if in_range(x, -WRAP + 1, WRAP):
        return x
    w = np.where(x > WRAP, x - 2 * WRAP, x)
    return np.where(w <= -WRAP, x + 2 * WRAP, w)


def clip24(x: np.ndarray) -> np.ndarray:
    """clip(x, −(2^23 − 1), 2^23 − 1); ``x`` itself where nothing is out of range."""
    return x if in_range(x, -V_MAX, V_MAX) else np.clip(x, -V_MAX, V_MAX)


def in_range(x: np.ndarray, lo: int, hi: int) -> bool:
    """lo ≤ x ≤ hi everywhere."""
    return x.size == 0 or (int(x.max()) <= hi and int(x.min()) >= lo)


def truncate(p: np.ndarray, bits: int = DECAY_BITS) -> np.ndarray:
    """p / 2^bits rounded toward zero, int64: floor of (p + (2^bits − 1)·[p < 0]) / 2^bits, the same as
    sign(p)·(|p| >> bits)."""
    r = p >> 63
    r &= (1 << bits) - 1
    r += p
    r >>= bits
    return r


def decay(x: np.ndarray, d: int) -> np.ndarray:
    """sign(p)·(|p| >> 12) with p = x·(4096 − d): Lava's decay. A factor 2^k is a shift of x by 12 − k (the same
    truncation, one multiplication fewer); factor 0 (d = 4096, no memory) is 0."""
    f = DECAY_UNITY - d
    if f == 0:
        return np.zeros_like(x)
    k = f.bit_length() - 1
    return truncate(x, DECAY_BITS - k) if f == 1 << k else truncate(x * f)


def integrate_fixed(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, du: int, dv: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The integration of one fixed-point step, int64: (pre, u, membrane, v) with pre = decay(u, du + 1) + (a << 6)
    the current before its wrap, u = wrap24(pre), membrane = decay(v, dv) + u before its clip and v = clip24(membrane)
    (u is ``pre`` itself and v ``membrane`` itself where nothing leaves the 24 bits)."""
    pre = np.asarray(a_in, dtype=np.int64) << ACT_SHIFT
    if du + 1 != DECAY_UNITY:  # else decay(u) = 0: no current memory
        pre += decay(np.asarray(u, dtype=np.int64), du + 1)
    u = wrap24(pre)
    membrane = decay(np.asarray(v, dtype=np.int64), dv) + u
    return pre, u, membrane, clip24(membrane)


def fire_fixed(u: np.ndarray, v: np.ndarray, vth: int, reset: str = "zero", spike: str = "gt",
               spiking: bool = True, reset_current: bool = False, vsub: int | None = None,
               s_prev: np.ndarray | None = None, max_spikes: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rest of the step from ``integrate_fixed``'s wrapped current u and clipped membrane v: spike and reset.
    v is the step's own array: it is reset in place. ``max_spikes`` M > 1 (reset subtract, compare ≥): s is the
    count min(⌊v / (vth << 6)⌋, M) where v ≥ vth << 6, int64, and v −= s·(vsub << 6)."""
    if not spiking:
        return u, v, np.zeros(v.shape, dtype=bool)
    th, sub = np.int64(vth) << ACT_SHIFT, np.int64(vth if vsub is None else vsub) << ACT_SHIFT
    if max_spikes > 1:
        s = np.where(v >= th, np.minimum(v // th, max_spikes), 0)
        v -= s * sub
        return u, v, s
    if reset == "zero_next" and s_prev is not None:
        np.copyto(v, 0, where=s_prev)
    s = v >= th if spike == "ge" else v > th
    if reset == "subtract":
        np.subtract(v, sub, out=v, where=s)
    elif reset == "zero":
        np.copyto(v, 0, where=s)
    return (np.where(s, 0, u) if reset_current else u), v, s


def neuron_step_fixed(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, du: int, dv: int, vth: int,
                      reset: str = "zero", spike: str = "gt", spiking: bool = True, reset_current: bool = False,
                      vsub: int | None = None, s_prev: np.ndarray | None = None, max_spikes: int = 1
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fixed-point step of the LIF family (module docstring): ``fire_fixed`` of ``integrate_fixed``; returns
    (u, v, s) as int64, int64, bool (int64 counts with ``max_spikes`` > 1). ``s_prev``: the previous step's spikes
    (``zero_next``)."""
    _, u, _, v = integrate_fixed(u, v, a_in, du, dv)
    return fire_fixed(u, v, vth, reset, spike, spiking, reset_current, vsub, s_prev, max_spikes)


def state_overflow(pre: np.ndarray, u: np.ndarray, membrane: np.ndarray, v: np.ndarray) -> tuple[int, int, int]:
    """How many values of a step leave the 24-bit state, from ``integrate_fixed``'s values: currents that wrap
    (u ≠ pre: pre was outside (−2^23, 2^23]), membranes clipped at the top (> 2^23 − 1) and at the bottom
    (< −(2^23 − 1)). All happen identically in Lava; counting them tells a run that left its headroom."""
    wrapped = 0 if u is pre else int(np.count_nonzero(u != pre))
    if v is membrane:
        return wrapped, 0, 0
    return wrapped, int(np.count_nonzero(membrane > V_MAX)), int(np.count_nonzero(membrane < -V_MAX))


def mul12(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """x·f/4096 rounded toward zero (the decay's arithmetic with a signed, possibly > 4096 factor f)."""
    return truncate(np.asarray(x, dtype=np.int64) * np.asarray(f, dtype=np.int64))


def empf_step_fixed(v: np.ndarray, a_in: np.ndarray, lq: np.ndarray, aq: np.ndarray, th: np.ndarray,
                    r: np.ndarray, shift: int, active: bool = True, cap: int = V_MAX
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int]]:
    """One fixed-point EM-PF step with the tables' row of this step; returns (m, v, msg) as int64 and the counts
    (membranes clipped at the top, at the bottom, messages the cap cut).

        u   = mul12(a << 6, aq[t])                       (input scale a[t] = aq[t]/4096 · 2^ka, 2^ka in the weights)
        m   = clip(mul12(v, lq[t]) + u, ±(2^23 − 1))     (λ̂[t] = lq[t]/4096)
        s   = (m − th[t])·[m ≥ th[t]]                     (graded spike in membrane units, th[t] = 64·c·θ̂[t])
        v   = clip(m − s + r[t], ±(2^23 − 1))            (r[t] = 64·c·r̂[t])
        msg = min(s >> shift, cap)        (s << −shift for shift < 0): the graded message, s·2^q_s/(64·c)
    ``cap`` ≤ 2^23 − 1 (the payload's 24 bits) is the stage's ``message_cap``: no Dense it feeds can leave int32.
    An inactive step (before the stage's first input or after its T steps) leaves v and sends nothing.
    """
    v = np.asarray(v, dtype=np.int64)
    if not active:
        z = np.zeros(np.broadcast_shapes(v.shape, np.shape(a_in)), dtype=np.int64)
        return z, v + z, z, (0, 0, 0)
    u = mul12(np.asarray(a_in, dtype=np.int64) << ACT_SHIFT, aq)
    pre = mul12(v, lq) + u
    m = clip24(pre)  # ``pre`` itself when nothing left the 24 bits: the counts below are then 0 without a pass
    s = np.where(m >= th, m - th, 0)
    v = clip24(m - s + np.asarray(r, dtype=np.int64))
    msg = s >> shift if shift >= 0 else s << -shift
    capped = msg.size > 0 and int(msg.max()) > cap
    counts = (0, 0) if m is pre else (int(np.count_nonzero(pre > V_MAX)), int(np.count_nonzero(pre < -V_MAX)))
    return m, v, np.minimum(msg, cap) if capped else msg, (*counts, int(np.count_nonzero(msg > cap)) if capped else 0)
