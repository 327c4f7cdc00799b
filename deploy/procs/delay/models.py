"""CPU process models of Lava's ``DelayDense`` and ``DelaySparse`` with the per-delay weight matrices built once.

Lava's models (lava-nc 0.10.0, ``proc/dense/models.py``, ``proc/sparse/models.py``) rebuild the stack of per-delay
matrices [W·[D_ij = k]]_{k = 0..max delay} on every step; ``DelaySparse`` compares its delay matrix with each k
through scipy's ``==`` on a non-zero scalar, which allocates a dense boolean [n_out, n_in] array: 4 GiB per step
for a 65 536-neuron shortcut of a CIFAR-size ResNet. The weights and delays of these non-learning processes never
change, so the stack is built on the first step here and the arithmetic is otherwise Lava's:

    a_out[t] = a_buff[:, 0];  a_buff[:, 0] = 0;  a_buff = roll(a_buff, −1);
    a_buff[:, k] += (Σ_j w'_ij·[D_ij = k]·s_j) shifted by weight_exp   (k = 0 .. max delay)

with w' Lava's clipped and truncated weights (``snnchip.deploy.fixed_point.effective_weights``) in fixed_pt and the
float weights as they are in floating_pt. ``snnchip.deploy.network`` selects these models through
``Loihi2SimCfg(exception_proc_model_map=…)``; ``tests/test_deploy_lava.py`` checks them against Lava's own.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from snnchip import lava_compat
from snnchip.deploy.fixed_point import effective_weights
from snnchip.export.weight_grid import with_values

_dense = lava_compat.lava_module("proc.dense.models")
_sparse = lava_compat.lava_module("proc.sparse.models")


def _per_delay(weights: np.ndarray | sp.spmatrix, delays: np.ndarray | sp.spmatrix, depth: int
               ) -> list[np.ndarray | sp.csr_matrix]:
    """[W·[D = k] for k in 0 .. depth − 1], CSR where W is sparse (the delays read at W's entries)."""
    if not sp.issparse(weights):
        d = np.broadcast_to(np.asarray(delays), weights.shape)
        return [np.where(d == k, weights, 0) for k in range(depth)]
    w = sp.csr_matrix(weights)
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    d = np.asarray(sp.csr_matrix(delays)[rows, w.indices]).ravel() if sp.issparse(delays) else np.full(w.nnz, delays)
    out = []
    for k in range(depth):
        m = with_values(w, np.where(d == k, w.data, 0))
        m.eliminate_zeros()
        out.append(m)
    return out


class _Precomputed:
    """``run_spk`` of a delayed projection from its per-delay matrices (module docstring)."""

    fixed = True

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff[:, 0])
        s = self.s_in.recv()
        if not hasattr(self, "_stack"):
            w = effective_weights(self.weights, self.proc_params.get("num_weight_bits", 8)) if self.fixed \
                else self.weights
            self._stack = _per_delay(w, self.delays, self.a_buff.shape[-1])
        s = np.asarray(s, np.int64 if self.fixed else np.float64)
        e = self.proc_params.get("weight_exp", 0) if self.fixed else 0
        self.a_buff[:, 0] = 0
        self.a_buff = np.roll(self.a_buff, -1, axis=1)
        for k, m in enumerate(self._stack):
            a = m @ s if sp.issparse(m) else (m * s).sum(axis=1)  # Lava's order of the float sums
            self.a_buff[:, k] += (a << e if e > 0 else a >> -e) if self.fixed else a


class DelayDenseFixed(_Precomputed, _dense.PyDelayDenseModelBitAcc):
    """Lava's bit-accurate DelayDense, its delay stack built once."""


class DelayDenseFloat(_Precomputed, _dense.PyDelayDenseModelFloat):
    """Lava's floating-point DelayDense, its delay stack built once."""

    fixed = False


class DelaySparseFixed(_Precomputed, _sparse.PyDelaySparseModelBitAcc):
    """Lava's bit-accurate DelaySparse, its delay stack built once."""


class DelaySparseFloat(_Precomputed, _sparse.PyDelaySparseModelFloat):
    """Lava's floating-point DelaySparse, its delay stack built once."""

    fixed = False


def exception_models(cfg: str) -> dict[type, type]:
    """``Loihi2SimCfg``'s ``exception_proc_model_map`` for run configuration ``cfg`` (fixed_pt or floating_pt)."""
    dense = lava_compat.lava_module("proc.dense.process")
    sparse = lava_compat.lava_module("proc.sparse.process")
    fixed = cfg == "fixed_pt"
    return {dense.DelayDense: DelayDenseFixed if fixed else DelayDenseFloat,
            sparse.DelaySparse: DelaySparseFixed if fixed else DelaySparseFloat}
