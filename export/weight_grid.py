"""The arithmetic of weight grids, on every layout a projection has (dense, CSR, a weight-shared ``Kernel``): entries,
row sums, the 8-bit mantissa grid of a sign mode, exponents, rounding, the wide weights' residual, the smallest
mantissas of the same weights (docs/loihi-fixed-point.md §2)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from snnchip.export.kernel import Kernel
from snnchip.export.loihi2 import WEIGHT_EXP, mantissa_grid

if TYPE_CHECKING:  # annotations only: the fixed-point arithmetic imports this module without the NIR lowering
    from snnchip.export.lowering import Weight


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


def with_values(weight: Weight, values: np.ndarray) -> Weight:
    """A projection of ``weight``'s layout (dense, CSR with its sparsity pattern, a kernel) holding ``values``; a
    CSR matrix gets its own index arrays, so that editing it (``eliminate_zeros``) leaves ``weight`` as it was."""
    if isinstance(weight, Kernel):
        return weight.with_kernel(values)
    return sp.csr_matrix((values, weight.indices.copy(), weight.indptr.copy()), shape=weight.shape) \
        if sp.issparse(weight) else values


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


def grid_exponent(w: np.ndarray, c: float, lo: int, hi: int) -> int:
    """The smallest e with every c·W/2^e inside [lo, hi] (0 for an all-zero matrix)."""
    need = [math.log2(c * float(w.max()) / hi)] if hi > 0 and w.max(initial=0) > 0 else []
    need += [math.log2(c * float(-w.min()) / -lo)] if lo < 0 and w.min(initial=0) < 0 else []
    return math.ceil(max(need)) if need else 0


def to_mantissa(y: np.ndarray, lo: int, hi: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Round ``y`` to the mantissa grid (multiples of ``step`` in [lo, hi]); also return the clipped mask."""
    m = step * np.round(y / step)
    return np.clip(m, lo, hi).astype(np.int64), (m < lo) | (m > hi)


def int32_mantissas(m: Weight) -> Weight:
    """The mantissas as int32 (CSR: explicit zeros dropped, so nnz counts the synapses)."""
    m = m.astype(np.int32)
    if sp.issparse(m):
        m.eliminate_zeros()
    return m


def fit_scale(w: np.ndarray, lo: int, hi: int) -> float:
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
    f = max(grid_exponent(r, 1.0, lo, hi), -(step // 2)) if f is None else f
    m, _ = to_mantissa(r / 2.0**f, lo, hi, step)
    return m, f, step


def halved(m: Weight, e: int) -> tuple[Weight, int]:
    """The same applied weights with the smallest mantissas: while every mantissa is a multiple of twice its sign
    mode's grid step, halve them and raise the exponent. Exact on Lava, which shifts the integer sum:
    (Σ m·s) >> n = (Σ (m/2)·s) >> (n − 1), and likewise left."""
    values = np.asarray(weight_values(m), np.int64)
    if not values.any():
        return m, e
    step = mantissa_grid(values)[2]
    while e < WEIGHT_EXP[1] and not np.any(values % (2 * step)):
        values, e = values // 2, e + 1
    return with_values(m, values.astype(np.int32)), e
