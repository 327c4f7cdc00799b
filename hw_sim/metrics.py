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
    and what it received, ``inputs`` [T, B, n_in]."""

    weight: Any
    inputs: np.ndarray


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


def synaptic_operations(connections: list[Connection]) -> dict[str, float]:
    """Effective_MACs, Effective_ACs and Dense per sample (module docstring)."""
    macs = acs = dense = 0.0
    batch = None
    for c in connections:
        nz, total = _nonzero(c.weight), _dense(c.weight)
        batch = c.inputs.shape[1]
        for x in c.inputs:
            x = np.asarray(x).reshape(batch, -1)
            ops = float(np.asarray(nz @ (x != 0).T.astype(np.float64)).sum())
            if np.isin(x, (-1, 0, 1)).all():
                acs += ops
            else:
                macs += ops
            dense += total * batch
    b = batch or 1
    return {"Effective_MACs": macs / b, "Effective_ACs": acs / b, "Dense": dense / b}


def activation_sparsity(spikes: list[np.ndarray]) -> float:
    """Zero outputs / all outputs of the spiking layers (each [T, B, ...])."""
    total = sum(s.size for s in spikes)
    return 0.0 if total == 0 else float(sum(s.size - np.count_nonzero(s) for s in spikes) / total)


def membrane_updates(potentials: list[np.ndarray]) -> float:
    """Per sample: all neurons at the first step, then those whose potential changed (each [T, B, ...])."""
    updates, batch = 0, 1
    for v in potentials:
        batch = v.shape[1]
        updates += v[0].size + int(np.count_nonzero(np.diff(v, axis=0)))
    return updates / batch


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
    return {"footprint": footprint, "connection_sparsity": connection_sparsity([c.weight for c in connections]),
            "activation_sparsity": activation_sparsity(spikes), **synaptic_operations(connections),
            "membrane_updates": membrane_updates(potentials)}


def _delayed(x: np.ndarray, d: int) -> np.ndarray:
    return x if d == 0 else np.concatenate([np.zeros_like(x[:d]), x[:-d]])


def float_metrics(graph: object, xs: np.ndarray, interpretation: object = None) -> dict[str, float]:
    """The metrics of a NIR graph's float run on ``xs`` [T, B, *input_shape] (the NIR executor, foreign neurons read
    with ``interpretation``; the connection layers are the lowered projections, one per source and delay)."""
    import torch

    from snnchip.export.lowering import INPUT, lower
    from snnchip.export.nir_exec import NIRExecutor

    net = lower(graph, interpretation, T=xs.shape[0])
    res = NIRExecutor(graph, interpretation, T=xs.shape[0]).run(torch.as_tensor(xs, dtype=torch.float64))
    spk = {k: np.asarray(v, dtype=np.float64) for k, v in res.spikes.items()}
    states = {k: np.asarray(v) for k, v in res.states.items()}
    flat = xs.reshape(xs.shape[0], xs.shape[1], -1)
    connections, spiking, potentials = [], [], []
    for st in net.stages:
        for p in st.inputs:
            src = flat if p.source == INPUT else spk[p.source].reshape(flat.shape[0], flat.shape[1], -1)
            connections.append(Connection(p.weight, _delayed(src, p.delay)))
        if st.spiking:
            spiking.append(spk[st.name])
            node = next(n for n in (st.name, f"{st.name}_neuron") if n in states)
            potentials.append(states[node])
    params = sum(np.asarray(getattr(node, k)).size for node in graph.nodes.values()
                 for k in ("weight", "bias") if getattr(node, k, None) is not None)
    return metrics(connections, spiking, potentials, footprint=4 * int(params))


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


def loihi_chip_metrics(qnet: object, xs: np.ndarray, spikes: dict[str, np.ndarray],
                       potentials: dict[str, np.ndarray]) -> dict[str, float]:
    """The metrics of a bit-exact Loihi 2 run (``hw_sim.chip``, software timing): the quantized projections (each
    Dense/Sparse of a wide-weight projection counts as a connection layer) fed by the input ``xs`` [T, B, ...] or
    the stages' ``spikes`` [T, B, ...], and the spiking stages' v. The footprint is the synaptic memory: one byte
    per stored 8-bit mantissa (every entry of a Dense, the non-zero ones of a Sparse)."""
    flat = xs.reshape(xs.shape[0], xs.shape[1], -1)
    connections, stored = [], 0
    for q in qnet.stages:
        for p in q.inputs:
            src = flat if p.source == "input" else spikes[p.source].reshape(flat.shape[0], flat.shape[1], -1)
            for w, _ in p.parts:
                connections.append(Connection(w, _delayed(src.astype(np.float64), p.delay)))
                stored += w.nnz if sp.issparse(w) else (w.kernel.size if _kernel(w) else w.size)
    spiking = [q.name for q in qnet.stages if q.spiking]
    return metrics(connections, [spikes[k] for k in spiking], [potentials[k] for k in spiking], footprint=int(stored))
