"""A deployment's size before it is built: neurons, synapses, Loihi 2 cores and chips, and the memory the export
needs, computed from sparsity patterns alone, so that a network too large for the machine is refused in seconds.

Every projection (``snnchip.export.lowering``) is a product of its path's linear nodes. Their sparsity patterns are
separable: a convolution or a pooling maps channels by a small pattern (all-to-all per group, or one-to-one) and
each spatial axis by its window taps, so the pattern of a conv/pool chain is the Kronecker product of a channel
pattern and one pattern per axis, composed factor by factor (boolean products of matrices of a few hundred
entries); its non-zeros are the product of the factors' non-zeros. An Affine/Linear makes the pattern dense. The
count is exact for conv/pool chains and an upper bound where paths merge.

Memory: a CSR projection stores int32 mantissas and float64 weights with their int32 column indices; a dense one
int32 and float64 matrices; wide weights (two synapse sets) add a second int32 matrix, and count their synapses
twice (an upper bound: a residual that rounds to zero is none). Composing the sparse products costs about
``PEAK_FACTOR`` times what is stored, plus a fixed ``BASE_BYTES`` (measured on conv nets: tests/test_sizing.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from snnchip.errors import ResourceError
from snnchip.export.kernel import Kernel, compose
from snnchip.export.loihi2 import CORES_PER_CHIP, NEURONS_PER_CORE, SYNAPSES_PER_CORE, SYNAPTIC_MEMORY_PER_CORE
from snnchip.export.lowering import NEURON_TYPES, SPARSE_MAX_DENSITY, Matrices, Paths
from snnchip.export.nir_graph import check_graph, window
from snnchip.export.nir_meta import recorded_interpretation, snnchip_semantics
from snnchip.export.writers import resolve
from snnchip.spec import Interpretation

PEAK_FACTOR = 3.0
BASE_BYTES = 64 * 2**20  # the export's own working memory besides the matrices (graph copies, small tensors)
INT_BYTES, FLOAT_BYTES, INDEX_BYTES = 4, 8, 4


@dataclass(frozen=True)
class Pattern:
    """A sparsity pattern [n_out, n_in]: ``channels`` ⊗ ``axes`` (boolean factors), or dense with ``nnz`` entries."""

    shape: tuple[int, int]
    channels: np.ndarray | None = None
    axes: tuple[np.ndarray, ...] = ()
    dense_nnz: int | None = None
    kernel: Kernel | None = None  # the projection stays this weight-shared kernel (lowering's ``compose``)

    @property
    def nnz(self) -> int:
        if self.dense_nnz is not None:
            return self.dense_nnz
        return int(np.count_nonzero(self.channels)) * math.prod(int(np.count_nonzero(a)) for a in self.axes)


def _dense(rows: int, cols: int, nnz: int | None = None) -> Pattern:
    return Pattern((rows, cols), dense_nnz=rows * cols if nnz is None else nnz)


def _taps(n_in: int, n_out: int, kernel: int, stride: int, dilation: int, before: int) -> np.ndarray:
    o, tap = np.meshgrid(np.arange(n_out), np.arange(kernel), indexing="ij")
    i = o * stride - before + tap * dilation
    out = np.zeros((n_out, n_in), bool)
    ok = (i >= 0) & (i < n_in)
    out[o[ok], i[ok]] = True
    return out


class Patterns:
    """The sparsity-pattern algebra of ``lowering.Paths``."""

    @staticmethod
    def operator(name: str, node: object, shape: tuple[int, ...], out_shape: tuple[int, ...]
                 ) -> tuple[Pattern | None, None]:
        n_in, n_out = math.prod(shape), math.prod(out_shape)
        if isinstance(node, (nir.Flatten, nir.Delay, nir.Input, nir.Output, nir.Scale)):
            return None, None  # identity (a Scale is diagonal: it keeps the pattern)
        if isinstance(node, (nir.Affine, nir.Linear)):
            return _dense(n_out, n_in, int(np.count_nonzero(node.weight))), None
        kernel, _ = Matrices.operator(name, node, shape, out_shape)  # a Kernel: small, never expanded
        win = window(name, node, shape[1:])
        axes = tuple(_taps(shape[1 + d], out_shape[1 + d], win.kernel[d], win.stride[d], win.dilation[d],
                           win.pad_before[d]) for d in range(len(shape) - 1))
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            c_out, c_in = out_shape[0], shape[0]
            g_out, g_in = np.arange(c_out) // (c_out // win.groups), np.arange(c_in) // (c_in // win.groups)
            group = g_out[:, None] == g_in[None, :]
            return Pattern((n_out, n_in), group, axes, kernel=kernel), None
        return Pattern((n_out, n_in), np.eye(shape[0], dtype=bool), axes, kernel=kernel), None

    @staticmethod
    def product(m: Pattern, a: Pattern) -> Pattern:
        """The pattern of m·a."""
        shape = (m.shape[0], a.shape[1])
        if m.dense_nnz is not None or a.dense_nnz is not None or len(m.axes) != len(a.axes):
            return _dense(*shape)
        axes = tuple((x.astype(np.int64) @ y.astype(np.int64)) > 0 for x, y in zip(m.axes, a.axes, strict=True))
        kernel = compose(m.kernel, a.kernel) if m.kernel is not None and a.kernel is not None else None
        return Pattern(shape, (m.channels.astype(np.int64) @ a.channels.astype(np.int64)) > 0, axes, kernel=kernel)

    @staticmethod
    def select_rows(m: Pattern | None, rows: np.ndarray, n_rows: int) -> Pattern:
        """Some rows of m (a Delay with several values): counted as all of m, an upper bound."""
        return m if m is not None else Pattern((n_rows, n_rows), np.eye(1, dtype=bool), ())


@dataclass
class DeploymentSize:
    """What a deployment of the graph would hold, and what writing it costs."""

    stages: list[dict[str, Any]] = field(default_factory=list)
    synapse_sets: int = 1  # 2 with wide weights

    @property
    def neurons(self) -> int:
        return sum(s["neurons"] for s in self.stages)

    @property
    def synapses(self) -> int:
        return sum(s["synapses"] for s in self.stages)

    @property
    def stored_bytes(self) -> int:
        return sum(s["bytes"] for s in self.stages)

    @property
    def peak_bytes(self) -> int:
        return int(PEAK_FACTOR * self.stored_bytes) + BASE_BYTES

    @property
    def cores(self) -> int:
        return sum(s["cores"] for s in self.stages)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / CORES_PER_CHIP)

    def summary(self) -> str:
        largest = sorted(self.stages, key=lambda s: -s["synapses"])[:3]
        return (f"{len(self.stages)} stages, {self.neurons:,} neurons, {self.synapses:,} synapses (largest: "
                + ", ".join(f"{s['name']} {s['synapses']:,}" for s in largest)
                + f"), {self.cores} Loihi 2 cores on {self.chips} chip(s); the export writes about "
                f"{self.stored_bytes / 2**30:.2f} GiB and needs about {self.peak_bytes / 2**30:.2f} GiB of memory")


def _projection_bytes(rows: int, cols: int, nnz: int, sets: int = 1) -> int:
    """Bytes of one projection's float weights and ``sets`` integer matrices (dense, or CSR with their indices)."""
    if nnz < SPARSE_MAX_DENSITY * rows * cols:
        return (sets + 1) * (nnz * INDEX_BYTES + (rows + 1) * INDEX_BYTES) + nnz * (sets * INT_BYTES + FLOAT_BYTES)
    return rows * cols * (sets * INT_BYTES + FLOAT_BYTES)


def layer_cores(neurons: int, synapses: int, kernel_bytes: list[tuple[int, int]]) -> int:
    """Loihi 2 cores of one layer, its neurons split evenly across them (``loihi2.CORE_LIMITS``): at most
    ``NEURONS_PER_CORE`` neurons per core; the expanded (dense/CSR) synapses split with the neurons, at most
    ``SYNAPSES_PER_CORE`` per core; and each core that holds a slice of a weight-shared layer stores the kernels of
    its output channels once. ``kernel_bytes``: (output channels, bytes of one channel's kernel, every synapse set)
    per kernel projection; a core holds whole channels, their kernels within ``SYNAPTIC_MEMORY_PER_CORE``.
    A channel whose kernel alone exceeds a core's memory raises ``ResourceError``."""
    cores = max(1, math.ceil(neurons / NEURONS_PER_CORE), math.ceil(synapses / SYNAPSES_PER_CORE))
    per_channel = sum(b for _, b in kernel_bytes)
    if per_channel:
        if per_channel > SYNAPTIC_MEMORY_PER_CORE:
            raise ResourceError(f"one output channel's kernels need {per_channel:,} bytes, more than the "
                                f"{SYNAPTIC_MEMORY_PER_CORE:,} bytes of synaptic memory of a Loihi 2 core (estimate)")
        channels = max(c for c, _ in kernel_bytes)
        cores = max(cores, math.ceil(channels / (SYNAPTIC_MEMORY_PER_CORE // per_channel)))
    return cores


def deployment_size(graph: nir.NIRGraph, interpretation: Interpretation | None = None, synapse_sets: int = 1
                    ) -> DeploymentSize:
    """The size of ``graph``'s Loihi deployment, from patterns (nothing large is allocated); ``synapse_sets``: 2
    with wide weights. A projection that stays a weight-shared kernel stores its kernel (int mantissas and float
    weights), not its synapses; its synapses still count the connections it makes."""
    checked = check_graph(graph)
    interp = resolve(checked, interpretation or recorded_interpretation(graph) or Interpretation())
    neurons = {n for n, v in checked.nodes.items() if isinstance(v, NEURON_TYPES)}
    paths = Paths(checked, neurons, interp, Patterns)
    size = DeploymentSize(synapse_sets=synapse_sets)
    for name in (n for n in checked.order if n in neurons):
        n_out = math.prod(checked.shapes[name])
        merged: dict[tuple[str, int], tuple[int, int, Kernel | None]] = {}
        for pred, back in checked.predecessors(name):
            for src, d, pattern in paths.terms(pred):
                cols = math.prod(checked.shapes[src])
                nnz = min(n_out if pattern is None else pattern.nnz, n_out * cols)
                key = (src, d + int(back))
                kernel = None if pattern is None or key in merged else pattern.kernel
                merged[key] = (cols, min(merged.get(key, (cols, 0, None))[1] + nnz, n_out * cols), kernel)
        layer = (snnchip_semantics(checked.nodes[name], name) or {}).get("layer", name.removesuffix("_neuron"))
        shared = [k for _, _, k in merged.values() if k is not None]
        expanded = [(cols, nnz) for cols, nnz, k in merged.values() if k is None]
        synapses = synapse_sets * sum(nnz for _, nnz, _ in merged.values())
        size.stages.append({
            "name": layer, "neurons": n_out, "synapses": synapses,
            "weights": synapse_sets * (sum(k.kernel.size for k in shared) + sum(nnz for _, nnz in expanded)),
            "cores": layer_cores(n_out, synapse_sets * sum(nnz for _, nnz in expanded),
                                 [(k.out_shape[0], synapse_sets * k.kernel[0].size) for k in shared]),
            "bytes": sum(_projection_bytes(n_out, cols, nnz, synapse_sets) for cols, nnz in expanded)
            + sum(k.kernel.size * (synapse_sets * INT_BYTES + FLOAT_BYTES) for k in shared)})
    return size


def available_memory() -> int:
    """Bytes the machine can give now (MemAvailable of /proc/meminfo; the physical memory elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_feasible(size: DeploymentSize, max_memory: float | None = None) -> None:
    """Refuse, with the numbers and the ways out, a deployment whose export would need more than ``max_memory``
    bytes (default: the memory available now)."""
    budget = available_memory() if max_memory is None else max_memory
    if size.peak_bytes > budget:
        raise ResourceError(
            f"the Loihi deployment is too large for this machine: {size.summary()}, above the budget of "
            f"{budget / 2**30:.2f} GiB (--max-memory). T does not change this; fewer channels or smaller "
            "inputs, sparser connections, " + ("8-bit weights (--weights 8bit: one synapse set, not two), "
                                               if size.synapse_sets == 2 else "")
            + "or a machine with more memory (and --max-memory) do")
