"""A weight-shared projection: a convolution kernel that stays a kernel from lowering to the chip.

    y[o, p] = Σ_{c ∈ group(o)} Σ_tap K[o, c, tap] · x[g(o)·C_in/groups + c, p·stride − pad_before + tap·dilation]

on C-order flattened (C, *spatial) vectors, zero outside the input (padding contributes nothing). ``Kernel`` is the
third form of a projection's weight besides a dense matrix and a CSR one: it is what a Conv1d/Conv2d node (and a
pooling, as a depthwise kernel) lowers to, and what quantize, the deploy directory, the simulator and Lava's
``Conv`` hold. ``to_csr`` expands it (the matrix the dense/sparse path would build, entry for entry); ``apply`` runs
it batched (torch, float64 unless told); ``conv_numpy`` runs it in NumPy only (Lava process models, which must not
call torch).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp


def window_taps(in_size: tuple[int, ...], out_size: tuple[int, ...], kernel: tuple[int, ...],
                stride: tuple[int, ...], pad_before: tuple[int, ...], dilation: tuple[int, ...]
                ) -> tuple[np.ndarray, ...]:
    """Flat (output position, input position, kernel tap) of every tap of an n-D window that lands inside the input
    (zero padding contributes nothing): i = o·stride − pad_before + tap·dilation on every axis."""
    axes = []
    for d in range(len(in_size)):
        o, tap = np.meshgrid(np.arange(out_size[d]), np.arange(kernel[d]), indexing="ij")
        i = o * stride[d] - pad_before[d] + tap * dilation[d]
        ok = (i >= 0) & (i < in_size[d])
        axes.append((o[ok], i[ok], tap[ok]))
    out, inp, tap = axes[0]
    for d in range(1, len(axes)):
        o2, i2, t2 = axes[d]
        out = (out[:, None] * out_size[d] + o2).ravel()
        inp = (inp[:, None] * in_size[d] + i2).ravel()
        tap = (tap[:, None] * kernel[d] + t2).ravel()
    return out, inp, tap


@dataclass(frozen=True, eq=False)
class Kernel:
    """A convolution [n_out, n_in] held as its kernel [C_out, C_in/groups, *k] and geometry (module docstring)."""

    kernel: np.ndarray
    in_shape: tuple[int, ...]  # (C_in, *spatial)
    out_shape: tuple[int, ...]  # (C_out, *spatial)
    stride: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1

    GEOMETRY = ("in_shape", "out_shape", "stride", "pad_before", "pad_after", "dilation", "groups")

    @property
    def shape(self) -> tuple[int, int]:
        return math.prod(self.out_shape), math.prod(self.in_shape)

    @property
    def dtype(self) -> np.dtype:
        return self.kernel.dtype

    @property
    def symmetric_padding(self) -> bool:
        return self.pad_before == self.pad_after

    def geometry(self) -> dict[str, Any]:
        """The geometry as JSON values (the deploy directory's manifest)."""
        return {k: (list(v) if isinstance(v, tuple) else int(v)) for k in self.GEOMETRY for v in [getattr(self, k)]}

    @classmethod
    def from_geometry(cls, kernel: np.ndarray, geometry: dict[str, Any]) -> Kernel:
        """The Kernel of ``kernel`` and a ``geometry()`` dict; inconsistent values raise ``ValueError``."""
        g = {k: (tuple(int(x) for x in geometry[k]) if k != "groups" else int(geometry[k])) for k in cls.GEOMETRY}
        k = cls(np.asarray(kernel), **g)
        k.check()
        return k

    def check(self) -> None:
        """Raise ``ValueError`` where the kernel and the geometry do not describe one convolution."""
        nd = len(self.in_shape) - 1
        c_out, c_in = self.out_shape[0], self.in_shape[0]
        ok = (self.kernel.ndim == nd + 2 and len(self.out_shape) == nd + 1 and nd in (1, 2)
              and all(len(t) == nd for t in (self.stride, self.pad_before, self.pad_after, self.dilation))
              and self.groups >= 1 and c_in % self.groups == 0 and c_out % self.groups == 0
              and self.kernel.shape[:2] == (c_out, c_in // self.groups)
              and min(self.stride + self.dilation) >= 1 and min(self.pad_before + self.pad_after) >= 0)
        if ok:
            want = tuple((self.in_shape[1 + d] + self.pad_before[d] + self.pad_after[d]
                          - self.dilation[d] * (self.kernel.shape[2 + d] - 1) - 1) // self.stride[d] + 1
                         for d in range(nd))
            ok = want == tuple(self.out_shape[1:])
        if not ok:
            raise ValueError(f"kernel {self.kernel.shape} with geometry {self.geometry()} is not a convolution")

    # ------------------------------------------------------------------------------ values (quantize's algebra)
    def with_kernel(self, values: np.ndarray) -> Kernel:
        return replace(self, kernel=np.asarray(values).reshape(self.kernel.shape))

    def same_geometry(self, other: Kernel) -> bool:
        return all(getattr(self, k) == getattr(other, k) for k in self.GEOMETRY) and \
            self.kernel.shape == other.kernel.shape

    def astype(self, dtype: Any) -> Kernel:
        return self.with_kernel(self.kernel.astype(dtype))

    def __mul__(self, factor: float) -> Kernel:
        return self.with_kernel(self.kernel * factor)

    __rmul__ = __mul__

    def __truediv__(self, factor: float) -> Kernel:
        return self.with_kernel(self.kernel / factor)

    def __add__(self, other: Any) -> Kernel:
        if isinstance(other, (int, float)) and other == 0:  # sum() starts from 0
            return self
        if not isinstance(other, Kernel) or not self.same_geometry(other):
            return NotImplemented
        return self.with_kernel(self.kernel + other.kernel)

    __radd__ = __add__

    def __sub__(self, other: Kernel) -> Kernel:
        if not isinstance(other, Kernel) or not self.same_geometry(other):
            return NotImplemented
        return self.with_kernel(self.kernel - other.kernel)

    # ------------------------------------------------------------------------------ as a matrix
    def to_csr(self) -> sp.csr_matrix:
        """The [n_out, n_in] matrix (one stored entry per tap that lands inside the input)."""
        n_in, n_out = math.prod(self.in_shape[1:]), math.prod(self.out_shape[1:])
        out, inp, tap = window_taps(self.in_shape[1:], self.out_shape[1:], self.kernel.shape[2:], self.stride,
                                    self.pad_before, self.dilation)
        c_out, c_in_g = self.kernel.shape[:2]
        group_of = np.arange(c_out) // (c_out // self.groups)
        co = np.arange(c_out)[:, None, None]
        ci = group_of[:, None, None] * c_in_g + np.arange(c_in_g)[None, :, None]
        rows, cols = np.broadcast_arrays(co * n_out + out, ci * n_in + inp)
        vals = np.broadcast_to(self.kernel.reshape(c_out, c_in_g, -1)[:, :, tap], rows.shape)
        return sp.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=self.shape)

    def toarray(self) -> np.ndarray:
        """The dense [n_out, n_in] matrix (small kernels only: tests, references)."""
        return self.to_csr().toarray()

    def apply(self, x: np.ndarray, dtype: Any = None, pool_first: bool = False) -> np.ndarray:
        """y = K ⊛ x for x [..., n_in] (numpy) -> [..., n_out], computed by torch in ``dtype`` (default float64).

        ``pool_first``: a 2-D kernel that is a compact kernel c repeated r times per axis (``compact``; a pooling
        composed into a conv), with strides divisible by r and no dilation, runs as the r×r sum pooling of the
        padded input, then c at stride / r: Σ_k K[k]·x[s·o + k] = Σ_j c[j]·Σ_{i<r} x[s·o + r·j + i], the same sum
        with 1/r² of the products (the same value for integers; floats may round differently)."""
        import torch

        x = np.asarray(x)
        t = torch.as_tensor(x.reshape(-1, x.shape[-1])).to(dtype or torch.float64)
        return self.apply_torch(t, pool_first=pool_first).reshape(*x.shape[:-1], self.shape[0]).numpy()

    def apply_torch(self, x: Any, pool_first: bool = False) -> Any:
        """``apply`` on a torch tensor x [N, n_in] -> [N, n_out] in x's dtype and device (differentiable in x: the
        convolution with the kernel held constant)."""
        import torch
        import torch.nn.functional as F

        t = x.reshape(-1, *self.in_shape)
        pads = [p for d in reversed(range(len(self.stride))) for p in (self.pad_before[d], self.pad_after[d])]
        if any(pads):
            t = F.pad(t, pads)
        kernel, stride = self.kernel, self.stride
        compact, repeat = self.compact if pool_first and len(stride) == 2 else (kernel, (1,) * len(stride))
        if any(r > 1 for r in repeat) and all(d == 1 for d in self.dilation) and \
                all(s % r == 0 for s, r in zip(stride, repeat, strict=True)):
            t = F.avg_pool2d(t, repeat, stride=repeat, divisor_override=1)  # the window's sum
            kernel, stride = compact, tuple(s // r for s, r in zip(stride, repeat, strict=True))
        conv = F.conv1d if len(stride) == 1 else F.conv2d
        y = conv(t, torch.as_tensor(kernel).to(dtype=x.dtype, device=x.device), stride=stride,
                 dilation=self.dilation, groups=self.groups)
        return y.reshape(x.shape[0], self.shape[0])

    @functools.cached_property
    def compact(self) -> tuple[np.ndarray, tuple[int, ...]]:
        """(c, r) with the kernel = c repeated r[d] times along each spatial axis d, exactly (a pooling composed into a
        conv repeats each tap over the pooling window): the largest r ≤ 4 per axis that divides the axis and
        reproduces the kernel (cached; the kernel is not edited)."""
        k, repeat = self.kernel, []
        for axis in range(2, k.ndim):
            r = next((r for r in (4, 3, 2) if k.shape[axis] % r == 0 and np.array_equal(
                np.repeat(k.take(range(0, k.shape[axis], r), axis=axis), r, axis=axis), k)), 1)
            k = k.take(range(0, k.shape[axis], r), axis=axis)
            repeat.append(r)
        return k, tuple(repeat)

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        """K·x for x [n_in] or [n_in, B] (the matrix product's layout)."""
        x = np.asarray(x, np.float64)
        return self.apply(x) if x.ndim == 1 else self.apply(x.T).T

    @functools.cached_property
    def abs_sum_bound(self) -> float:
        """max_o Σ_{c, tap} |K[o, c, tap]|: a bound on every output's Σ_j |A_ij| (cached; the kernel is not edited)."""
        return float(np.abs(self.kernel).reshape(self.kernel.shape[0], -1).sum(axis=1).max(initial=0))

    def row_abs_sum(self) -> np.ndarray:
        """Σ_j |A_ij| per output [n_out]: |K| applied to an input of ones (the taps that land, as ``to_csr``)."""
        return self.with_kernel(np.abs(self.kernel.astype(np.float64))).apply(np.ones(self.shape[1]))

    def row_count(self) -> np.ndarray:
        """Non-zero synapses per output [n_out] (what ``to_csr`` stores, zeros left out)."""
        return np.rint(self.with_kernel((self.kernel != 0).astype(np.float64)).apply(np.ones(self.shape[1])))

    def connections(self) -> int:
        """Non-zero synapses of the expanded matrix."""
        return int(self.row_count().sum())


def conv_numpy(k: Kernel, x: np.ndarray) -> np.ndarray:
    """K ⊛ x in NumPy alone (int64 for integer inputs, exact): x [..., n_in] -> [..., n_out]; by sliding windows
    (im2col) and one einsum per call. For Lava process models, which must not call torch."""
    nd = len(k.stride)
    x = np.asarray(x)
    lead = x.shape[:-1]
    dtype = np.int64 if np.issubdtype(x.dtype, np.integer) or x.dtype == bool else np.float64
    xs = x.reshape(-1, *k.in_shape).astype(dtype)
    xs = np.pad(xs, [(0, 0), (0, 0)] + [(k.pad_before[d], k.pad_after[d]) for d in range(nd)])
    ks = k.kernel.shape[2:]
    span = tuple(k.dilation[d] * (ks[d] - 1) + 1 for d in range(nd))
    win = np.lib.stride_tricks.sliding_window_view(xs, span, axis=tuple(range(2, 2 + nd)))
    index = tuple(slice(None, None, k.stride[d]) for d in range(nd)) + \
        tuple(slice(None, None, k.dilation[d]) for d in range(nd))
    win = win[(slice(None), slice(None)) + index]  # [B, C_in, *out, *k]
    win = win[(slice(None), slice(None)) + tuple(slice(0, k.out_shape[1 + d]) for d in range(nd))]
    g = k.groups
    b = win.shape[0]
    win = win.reshape(b, g, k.in_shape[0] // g, *win.shape[2:])
    w = k.kernel.astype(dtype).reshape(g, k.out_shape[0] // g, *k.kernel.shape[1:])
    sub = "xyz"[:nd]
    kk = "ijk"[:nd]
    y = np.einsum(f"bgc{sub}{kk},goc{kk}->bgo{sub}", win, w, optimize=True)
    return y.reshape(*lead, k.shape[0])


# ---------------------------------------------------------------------------------------------- composition
def _pool_gains(k: Kernel) -> np.ndarray | None:
    """Per channel g of a pooling (a depthwise kernel of one value g_c per channel, no padding, no dilation)."""
    c = k.in_shape[0]
    if k.groups != c or k.out_shape[0] != c or k.kernel.shape[1] != 1 or any(k.pad_before + k.pad_after) \
            or any(d != 1 for d in k.dilation):
        return None
    flat = k.kernel.reshape(c, -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else None


def _diagonal(m: Any) -> np.ndarray | None:
    """The diagonal of a square CSR matrix that is diagonal (a Scale node), else None."""
    if not sp.issparse(m) or m.shape[0] != m.shape[1]:
        return None
    m = sp.csr_matrix(m)
    d = m.diagonal()
    return d if m.nnz == np.count_nonzero(d) or (m - sp.diags(d)).count_nonzero() == 0 else None


def _per_channel(values: np.ndarray, channels: int) -> np.ndarray | None:
    """One value per channel of a C-order (C, ...) vector, or None where a channel's values differ."""
    v = values.reshape(channels, -1)
    return v[:, 0] if np.all(v == v[:, :1]) else None


def _times_input_gains(k: Kernel, g: np.ndarray) -> np.ndarray:
    """K[o, c, ...]·g[input channel of (o, c)] (the input channel of group-local c is group(o)·C_in/groups + c)."""
    c_out, c_in_g = k.kernel.shape[:2]
    index = (np.arange(c_out) // (c_out // k.groups))[:, None] * c_in_g + np.arange(c_in_g)[None, :]
    return k.kernel * g[index].reshape(c_out, c_in_g, *([1] * (k.kernel.ndim - 2)))


def _with_padding_after(k: Kernel, kernel: np.ndarray, stride: tuple[int, ...], before: tuple[int, ...],
                        in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Kernel:
    """The kernel over ``in_shape`` with padding after each axis just large enough for ``out_shape``."""
    after = tuple(max(0, (out_shape[1 + d] - 1) * stride[d] + kernel.shape[2 + d] - in_shape[1 + d] - before[d])
                  for d in range(len(stride)))
    out = Kernel(kernel, in_shape, out_shape, stride, before, after, (1,) * len(stride), k.groups)
    out.check()
    return out


def _conv_after_pool(conv: Kernel, pool: Kernel, g: np.ndarray) -> Kernel | None:
    """conv ∘ pool as one kernel where that is exact: the pool's window no larger than its stride (every input
    position feeds one pooled value per tap), and no pooled value the conv reads in its padding standing on real
    input (the pool covers its input, or the conv never reads past the pooled border)."""
    nd = len(conv.stride)
    kp, sp_ = pool.kernel.shape[2:], pool.stride
    if any(kp[d] > sp_[d] for d in range(nd)):
        return None
    kc, dc = conv.kernel.shape[2:], conv.dilation
    for d in range(nd):
        n_y, n_x = pool.out_shape[1 + d], pool.in_shape[1 + d]
        last = (conv.out_shape[1 + d] - 1) * conv.stride[d] - conv.pad_before[d] + (kc[d] - 1) * dc[d]
        if last >= n_y and n_y * sp_[d] < n_x:
            return None
    size = tuple((kc[d] - 1) * dc[d] * sp_[d] + kp[d] for d in range(nd))
    base = _times_input_gains(conv, g)
    out = np.zeros((*conv.kernel.shape[:2], *size), dtype=base.dtype)
    for taps in np.ndindex(*kp):  # every pooled tap t lands at u·d·s + t
        index = tuple(slice(taps[d], taps[d] + (kc[d] - 1) * dc[d] * sp_[d] + 1, dc[d] * sp_[d]) for d in range(nd))
        out[(slice(None), slice(None)) + index] = base
    stride = tuple(conv.stride[d] * sp_[d] for d in range(nd))
    before = tuple(conv.pad_before[d] * sp_[d] for d in range(nd))
    return _with_padding_after(conv, out, stride, before, pool.in_shape, conv.out_shape)


def _pool_after_conv(pool: Kernel, g: np.ndarray, conv: Kernel) -> Kernel:
    """pool ∘ conv as one kernel (always exact: an unpadded pool reads only real conv outputs):
    K'[o, c, t·s_c + u·d_c] += g_o·K[o, c, u], stride s_p·s_c, the conv's padding before."""
    nd = len(conv.stride)
    kp, kc, sc, dc = pool.kernel.shape[2:], conv.kernel.shape[2:], conv.stride, conv.dilation
    size = tuple((kp[d] - 1) * sc[d] + (kc[d] - 1) * dc[d] + 1 for d in range(nd))
    base = conv.kernel * g.reshape(-1, *([1] * (nd + 1)))
    out = np.zeros((*conv.kernel.shape[:2], *size), dtype=base.dtype)
    for taps in np.ndindex(*kp):
        index = tuple(slice(taps[d] * sc[d], taps[d] * sc[d] + (kc[d] - 1) * dc[d] + 1, dc[d]) for d in range(nd))
        out[(slice(None), slice(None)) + index] += base
    stride = tuple(pool.stride[d] * sc[d] for d in range(nd))
    return _with_padding_after(conv, out, stride, conv.pad_before, conv.in_shape, pool.out_shape)


def compose(m: Any, a: Any) -> Kernel | None:
    """m·a as one ``Kernel`` where it is one exactly, else None (the caller expands): a conv after a pooling
    (``_conv_after_pool``), a pooling after a conv (``_pool_after_conv``), a per-channel gain (a diagonal, e.g. a
    Scale node) before or after a kernel."""
    if isinstance(m, Kernel) and isinstance(a, Kernel):
        if a.kernel.ndim != m.kernel.ndim or m.in_shape != a.out_shape:
            return None
        if (g := _pool_gains(a)) is not None and (k := _conv_after_pool(m, a, g)) is not None:
            return k
        if (g := _pool_gains(m)) is not None:
            return _pool_after_conv(m, g, a)
        return None
    if isinstance(a, Kernel) and (d := _diagonal(m)) is not None:
        g = _per_channel(d, a.out_shape[0])
        return None if g is None else a.with_kernel(a.kernel * g.reshape(-1, *([1] * (a.kernel.ndim - 1))))
    if isinstance(m, Kernel) and (d := _diagonal(a)) is not None:
        g = _per_channel(d, m.in_shape[0])
        return None if g is None else m.with_kernel(_times_input_gains(m, g))
    return None
