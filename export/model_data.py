"""What exporting a ``model.pt`` measures on the training set its checkpoint records: the largest graded (EM-PF) spike
per layer, which sizes the message bits and scales of the stages it feeds, and the encoded training inputs, which
size the data headroom (``export_loihi``; ``snn-validate`` derives the same deployment from them)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from snnchip.export.nir_meta import graph_meta
from snnchip.export.quantize_stages import DATA_MARGIN
from snnchip.spec import NeuronKind

PEAKS_BATCH_BYTES = 2**29  # memory of one batch of ``graded_spike_peaks`` (a ResNet-18 at T = 4: 10 samples)
CALIBRATION_SAMPLES = 512  # training samples that size a snnchip model's data headroom and its graded spikes


def _graded(graph: nir.NIRGraph) -> bool:
    """Whether ``graph`` has a graded (EM-PF) layer."""
    return any(((getattr(n, "metadata", None) or {}).get("snnchip") or {}).get("kind") == NeuronKind.EMPF
               for n in graph.nodes.values())


def _recorded_training(source: object) -> tuple[Any, dict[str, Any]] | None:
    """(checkpoint, its training config) of a ``model.pt`` that records its dataset; None for other sources."""
    if not isinstance(source, (str, os.PathLike)) or Path(source).suffix != ".pt":
        return None
    from snnchip.checkpoint import load_checkpoint

    ckpt = load_checkpoint(source)
    cfg = (ckpt.metrics or {}).get("config") or {}
    return (ckpt, cfg) if "dataset" in cfg else None


def graded_spike_peaks(graph: nir.NIRGraph, x: Any) -> dict[str, float] | None:
    """Max graded (EM-PF) spike per layer of ``graph``'s float executor on static inputs ``x`` [N, *input_shape]
    (each presented for the graph's T steps); None when the graph has no graded layer."""
    if not _graded(graph):
        return None
    import torch

    from snnchip.export.nir_exec import NIRExecutor

    T = graph_meta(graph).T or 1
    ex, peak = NIRExecutor(graph, dtype=torch.float64), {}
    # the executor keeps every neuron's spikes and states of a batch (float64, stacked once more at the end)
    per_sample = 3 * 8 * T * sum(math.prod(ex.checked.shapes[n]) for n, op in ex.ops.items() if op.neuron is not None)
    chunk = int(min(256, max(1, PEAKS_BATCH_BYTES // per_sample)))
    for b in range(0, len(x), chunk):
        xb = torch.as_tensor(x[b:b + chunk])
        res = ex.run(xb.unsqueeze(0).expand(T, *xb.shape))
        for k, s in res.spikes.items():
            peak[k] = max(peak.get(k, 0.0), float(s.max()))
    return peak


def graded_spike_bounds(graph: nir.NIRGraph, x_train: Any) -> dict[str, float] | None:
    """The graded-spike bounds of a model's deployment: ``graded_spike_peaks`` on the first ``CALIBRATION_SAMPLES``
    training inputs ``x_train`` times the data margin ``DATA_MARGIN`` (a sample, not the whole set: CIFAR-10's
    50 000 images through a float64 ResNet would take hours); None when the graph has no graded layer."""
    peaks = graded_spike_peaks(graph, x_train[:CALIBRATION_SAMPLES])
    return None if peaks is None else {k: DATA_MARGIN * v for k, v in peaks.items()}


def measured_spike_bounds(source: object, graph: nir.NIRGraph) -> dict[str, float] | None:
    """``graded_spike_bounds`` on the training set a ``model.pt`` records (None for other sources)."""
    recorded = _recorded_training(source) if _graded(graph) else None
    if recorded is None:
        return None
    from snnchip.train.data import load_dataset

    cfg = recorded[1]
    T = graph_meta(graph).T or 1
    flat = len(graph.nodes["input"].input_type["input"]) == 1
    return graded_spike_bounds(graph, load_dataset(cfg["dataset"], cfg.get("data_dir"), flat=flat, T=T).x_train)


def training_inputs(source: object, graph: nir.NIRGraph, samples: int = CALIBRATION_SAMPLES) -> np.ndarray | None:
    """The first ``samples`` training inputs [T, samples, *input_shape] of the dataset a ``model.pt`` records,
    encoded as it trains (rate codes from seed 0); None for other sources."""
    recorded = _recorded_training(source)
    if recorded is None:
        return None
    import torch

    from snnchip.train.data import load_dataset
    from snnchip.train.rules import time_major

    ckpt, cfg = recorded
    data = load_dataset(cfg["dataset"], cfg.get("data_dir"), spec=ckpt.spec)
    x = data.x_train[:samples]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        xs = x.transpose(0, 1) if data.temporal else time_major(torch.as_tensor(x), ckpt.spec)
    return xs.double().numpy()
