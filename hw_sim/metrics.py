"""NeuroBench's metrics (neurobench 2.3.0, "NeuroBench: A Framework for Benchmarking Neuromorphic Computing
Algorithms and Systems", arXiv:2304.04640), computed from our runs with its definitions:

    footprint             bytes of the parameters (the float model: float32 weights and biases of its connection
                          layers; the chip: its configuration memory, stated per target)
    connection_sparsity   zero weights / all weights of the connection layers (Linear/Affine, recurrent included)
    activation_sparsity   zero outputs / all outputs of the spiking neuron layers, over layers, steps and samples
    synaptic_operations   per sample, summed over connection layers and steps: Effective_MACs / Effective_ACs
                          Σ_out Σ_in [w ≠ 0]·[x ≠ 0] (ACs when the layer's input of that step is all in {−1, 0, 1},
                          else MACs; biases are not operations); Dense = n_out·n_in per layer and step
    membrane_updates      per sample: every neuron of a spiking layer at the first step, then each neuron whose
                          membrane potential changed from the step before

The readout is no spiking layer (as in a snnTorch model whose output is a Linear summed over time), so its neurons
count neither in activation sparsity nor in membrane updates; its input connection counts in the operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


@dataclass
class Connection:
    """A connection layer: ``weight`` [n_out, n_in] (a matrix, or a weight-shared convolution ``export.kernel.Kernel``)
    and what it received, ``inputs`` [T, B, n_in]; ``graded``: its source sends graded values (EM-PF), so its
    operations are MACs whatever values a step holds (the chip's record keeps only whether a message was sent)."""

    weight: Any
    inputs: np.ndarray
    graded: bool = False


def _kernel(w: Any) -> bool:
    return hasattr(w, "with_kernel")


def _nonzero(w: Any) -> Any:
    """The indicator [w ≠ 0] in the weight's own form (a conv stays a kernel: no expansion)."""
    if _kernel(w):
        return w.with_kernel((w.kernel != 0).astype(np.float64))
    return (w != 0).astype(np.float64) if sp.issparse(w) else (np.asarray(w) != 0).astype(np.float64)


def _dense(w: Any) -> int:
    """Dense's count per step: every connection of the layer (a conv's taps that land inside the input)."""
    if _kernel(w):
        return int(np.rint(w.with_kernel(np.ones_like(w.kernel, np.float64)).apply(np.ones(w.shape[1]))).sum())
    return int(np.prod(w.shape))


@dataclass
class MetricSums:
    """The run-dependent metrics as sums over samples, so that batches add up to exactly the whole set's values:
    ``add`` one batch's connections, spiking layers' outputs and potentials at a time, ``result`` for the metrics."""

    macs: float = 0.0
    acs: float = 0.0
    dense: float = 0.0
    zeros: int = 0  # zero outputs of the spiking layers
    outputs: int = 0  # all outputs of the spiking layers
    updates: int = 0  # membrane updates
    samples: int = 0

    def add(self, connections: list[Connection], spikes: list[np.ndarray] = (),
            potentials: list[np.ndarray] = ()) -> MetricSums:
        """One batch: ``connections`` (inputs [T, B, n_in]), ``spikes`` and ``potentials`` [T, B, ...] per layer."""
        batch = next((a.shape[1] for a in [*(c.inputs for c in connections), *spikes, *potentials]), 0)
        for c in connections:
            nz, total = _nonzero(c.weight), _dense(c.weight)
            for x in c.inputs:
                x = np.asarray(x).reshape(batch, -1)
                ops = float(np.asarray(nz @ (x != 0).T.astype(np.float64)).sum())
                if not c.graded and np.isin(x, (-1, 0, 1)).all():
                    self.acs += ops
                else:
                    self.macs += ops
                self.dense += total * batch
        self.outputs += sum(a.size for a in spikes)
        self.zeros += sum(a.size - np.count_nonzero(a) for a in spikes)
        self.updates += sum(v[0].size + int(np.count_nonzero(np.diff(v, axis=0))) for v in potentials)
        self.samples += batch
        return self

    def operations(self) -> dict[str, float]:
        b = self.samples or 1
        return {"Effective_MACs": self.macs / b, "Effective_ACs": self.acs / b, "Dense": self.dense / b}

    def activation_sparsity(self) -> float:
        return 0.0 if self.outputs == 0 else float(self.zeros / self.outputs)

    def membrane_updates(self) -> float:
        return self.updates / (self.samples or 1)

    def result(self, weights: list[Any], footprint: int) -> dict[str, float]:
        """The metrics (module docstring) of what was added, with the static ones of ``weights``."""
        return {"footprint": footprint, "connection_sparsity": connection_sparsity(weights),
                "activation_sparsity": self.activation_sparsity(), **self.operations(),
                "membrane_updates": self.membrane_updates()}


def synaptic_operations(connections: list[Connection]) -> dict[str, float]:
    """Effective_MACs, Effective_ACs and Dense per sample (module docstring)."""
    return MetricSums().add(connections).operations()


def activation_sparsity(spikes: list[np.ndarray]) -> float:
    """Zero outputs / all outputs of the spiking layers (each [T, B, ...])."""
    return MetricSums().add([], spikes).activation_sparsity()


def membrane_updates(potentials: list[np.ndarray]) -> float:
    """Per sample: all neurons at the first step, then those whose potential changed (each [T, B, ...])."""
    return MetricSums().add([], [], potentials).membrane_updates()


def connection_sparsity(weights: list[Any]) -> float:
    """Zero weights / all weights: a matrix's entries (a sparse one's without expanding it: ResNet-18's shortcuts
    are 65536 × 65536), a conv's kernel entries (each stored once)."""
    zeros = total = 0
    for w in weights:
        v = w.kernel if _kernel(w) else w
        size = int(np.prod(v.shape))
        total += size
        zeros += size - int(np.count_nonzero(v.data if sp.issparse(v) else np.asarray(v)))
    return 0.0 if total == 0 else round(zeros / total, 4)


def metrics(connections: list[Connection], spikes: list[np.ndarray], potentials: list[np.ndarray],
            footprint: int) -> dict[str, float]:
    """The metrics of one run (module docstring)."""
    return MetricSums().add(connections, spikes, potentials).result([c.weight for c in connections], footprint)


def _delayed(x: np.ndarray, d: int) -> np.ndarray:
    return x if d == 0 else np.concatenate([np.zeros_like(x[:d]), x[:-d]])


def float_metrics(graph: object, xs: np.ndarray, interpretation: object = None, batch_size: int = 64
                  ) -> dict[str, float]:
    """The metrics of a NIR graph's float run on ``xs`` [T, B, *input_shape] (the NIR executor, foreign neurons read
    with ``interpretation``; the connection layers are the lowered projections, one per source and delay), run
    ``batch_size`` samples at a time."""
    import torch

    from snnchip.export.lowering import INPUT, lower
    from snnchip.export.nir_exec import NIRExecutor

    T = xs.shape[0]
    net = lower(graph, interpretation, T=T)
    executor = NIRExecutor(graph, interpretation, T=T)
    sums, step = MetricSums(), max(1, batch_size)
    for start in range(0, xs.shape[1], step):
        xb = xs[:, start:start + step]
        res = executor.run(torch.as_tensor(xb, dtype=torch.float64))
        spk = {k: np.asarray(v, dtype=np.float64) for k, v in res.spikes.items()}
        flat = xb.reshape(T, xb.shape[1], -1)
        connections, spiking, potentials = [], [], []
        for st in net.stages:
            for p in st.inputs:
                src = flat if p.source == INPUT else spk[p.source].reshape(T, xb.shape[1], -1)
                connections.append(Connection(p.weight, _delayed(src, p.delay)))
            if st.spiking:
                spiking.append(spk[st.name])
                node = next(n for n in (st.name, f"{st.name}_neuron") if n in res.states)
                potentials.append(np.asarray(res.states[node]))
        sums.add(connections, spiking, potentials)
    params = sum(np.asarray(getattr(node, k)).size for node in graph.nodes.values()
                 for k in ("weight", "bias") if getattr(node, k, None) is not None)
    return sums.result([p.weight for st in net.stages for p in st.inputs], footprint=4 * int(params))


def chip_metrics(cfg: object, x: np.ndarray, record: object) -> dict[str, float]:
    """The metrics of a Xylo run (``hw_sim.xylo``): input counts ``x`` [B, steps, n_in] and its record. The
    footprint is the configuration memory: int8 weights, 16-bit thresholds and biases, 4-bit dashes."""
    spikes = record.spikes.transpose(1, 0, 2)  # [steps, B, n_hidden] counts
    prev = _delayed(spikes, 1)
    connections = [Connection(cfg.w_in[:, :, 0].T, x.transpose(1, 0, 2)),
                   Connection(cfg.w_rec[:, :, 0].T, prev), Connection(cfg.w_out.T, prev)]
    if np.any(cfg.w_in[:, :, 1]) or np.any(cfg.w_rec[:, :, 1]):
        connections += [Connection(cfg.w_in[:, :, 1].T, x.transpose(1, 0, 2)), Connection(cfg.w_rec[:, :, 1].T, prev)]
    footprint = (cfg.w_in.size + cfg.w_rec.size + cfg.w_out.size
                 + 2 * (cfg.threshold.size + cfg.threshold_out.size + cfg.bias.size + cfg.bias_out.size)
                 + (cfg.dash_mem.size + cfg.dash_syn.size + cfg.dash_mem_out.size + cfg.dash_syn_out.size + 1) // 2)
    return metrics(connections, [spikes], [record.vmem.transpose(1, 0, 2)], footprint=int(footprint))


class LoihiChipMetrics:
    """The metrics of a bit-exact Loihi 2 run (``hw_sim.chip``, software timing), batch by batch (``add``): the
    quantized projections (each Dense/Sparse of a wide-weight projection counts as a connection layer) fed by the
    input [T, B, ...] or the stages' spikes [T, B, ...], and the spiking stages' v. The footprint is the synaptic
    memory: one byte per stored 8-bit mantissa (every entry of a Dense, the non-zero ones of a Sparse, a kernel's
    entries once)."""

    def __init__(self, qnet: object) -> None:
        self.qnet = qnet
        self.sums = MetricSums()

    def add(self, xs: np.ndarray, spikes: dict[str, np.ndarray], potentials: dict[str, np.ndarray]) -> None:
        flat = xs.reshape(xs.shape[0], xs.shape[1], -1)
        connections = []
        for q in self.qnet.stages:
            for p in q.inputs:
                src = flat if p.source == "input" else spikes[p.source].reshape(flat.shape[0], flat.shape[1], -1)
                graded = p.source != "input" and self.qnet.stage(p.source).graded
                connections += [Connection(w, _delayed(src.astype(np.float64), p.delay), graded) for w, _ in p.parts]
        spiking = [q.name for q in self.qnet.stages if q.spiking]
        self.sums.add(connections, [spikes[k] for k in spiking], [potentials[k] for k in spiking])

    def result(self) -> dict[str, float]:
        return self.sums.result([w for q in self.qnet.stages for p in q.inputs for w, _ in p.parts],
                                footprint=stored_weights(self.qnet))


def stored_weights(qnet: object) -> int:
    """Weight values a Loihi deployment stores: a kernel's entries once, a sparse matrix's non-zeros, a dense
    matrix's entries (each synapse set of a wide projection)."""
    return int(sum(w.nnz if sp.issparse(w) else (w.kernel.size if _kernel(w) else w.size)
                   for q in qnet.stages for p in q.inputs for w, _ in p.parts))
