"""What exporting a ``model.pt`` measures on the training set its checkpoint records: for Loihi 2 (loaded once for
both) the largest graded (EM-PF) spike per layer, which sizes the message bits and scales of the stages it feeds,
and the encoded training inputs, which size the data headroom; for Xylo the largest states (``xylo_bounds``). The
exports themselves (``export.loihi.export_loihi``, ``export.xylo.export_xylo``) load no dataset: their callers
(``snn-export``, ``snn-validate``, the pipeline, calibration, ``snnchip.export_loihi``) measure here and pass the
numbers."""

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


def measured_precision(source: object, graph: nir.NIRGraph, headroom: str | None,
                       spike_bounds: bool = True) -> dict[str, Any]:
    """The keywords of ``export_loihi`` that a ``model.pt``'s recorded training set gives (empty for any other source,
    or when nothing needs it): ``spike_bounds`` where the graph has graded layers (``graded_spike_bounds``; unless
    ``spike_bounds`` is False), and with ``headroom == "data"`` the first ``CALIBRATION_SAMPLES`` training inputs
    encoded as in training (``calibration_input``, ``calibration_source``). The dataset is loaded once for both."""
    bounds, inputs = spike_bounds and _graded(graph), headroom == "data"
    recorded = _recorded_training(source) if bounds or inputs else None
    if recorded is None:
        return {}
    ckpt, data = recorded[0], _training_set(*recorded)
    out: dict[str, Any] = {}
    if bounds:
        out["spike_bounds"] = graded_spike_bounds(graph, data.x_train)
    if inputs:
        out["calibration_input"] = encoded_inputs(data, ckpt.spec)
        out["calibration_source"] = "the model's training set (its first samples, encoded as in training)"
    return out


def training_inputs(source: object, samples: int = CALIBRATION_SAMPLES) -> np.ndarray | None:
    """The first ``samples`` training inputs of the dataset a ``model.pt`` records, encoded as it trains
    (``encoded_inputs``); None for other sources."""
    recorded = _recorded_training(source)
    return None if recorded is None else encoded_inputs(_training_set(*recorded), recorded[0].spec, samples)


def _training_set(ckpt: Any, cfg: dict[str, Any]) -> Any:
    """The dataset a checkpoint's training config names, shaped for its spec."""
    from snnchip.train.data import load_dataset

    return load_dataset(cfg["dataset"], cfg.get("data_dir"), spec=ckpt.spec)


def encoded_inputs(data: Any, spec: Any, samples: int = CALIBRATION_SAMPLES) -> np.ndarray:
    """The first ``samples`` training inputs of ``data`` [T, samples, *input_shape], encoded as the model ``spec``
    trains on them (rate codes from seed 0; event data as it is)."""
    import torch

    from snnchip.train.rules import time_major

    x = data.x_train[:samples]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        xs = x.transpose(0, 1) if data.temporal else time_major(torch.as_tensor(x), spec)
    return xs.double().numpy()


def export_measured(model: Any, out_dir: str | os.PathLike, **kw: Any) -> Path:
    """``snnchip.export_loihi``: ``export.loihi.export_loihi`` (same keywords) with what a ``model.pt`` source
    measures on its training set (``measured_precision``) where ``kw`` does not give it; the size is checked first
    (``check_size``), so a deployment too large for the machine is refused before any data is loaded."""
    from snnchip.export.loihi import check_replaceable, check_size, export_loihi, read_model_graph

    check_replaceable(out_dir)
    graph = read_model_graph(model)
    check_size(graph, kw.get("interpretation"), kw.get("wide_weights"), kw.get("max_memory"))  # before the data
    inputs = kw.get("headroom") == "data" and kw.get("calibration_input") is None
    measured = measured_precision(kw.get("source") or model, graph, "data" if inputs else None,
                                  spike_bounds=kw.get("spike_bounds") is None)
    return export_loihi(graph, out_dir, **{"source": model, **kw, **measured, "sized": True})


def xylo_bounds(source: object, graph: nir.NIRGraph) -> dict[str, float] | None:
    """What a ``model.pt``'s Xylo deployment is sized for: ``dataset_state_bounds`` on the training set it records;
    None for other sources."""
    recorded = _recorded_training(source)
    return None if recorded is None else dataset_state_bounds(graph, _training_set(*recorded))


def dataset_state_bounds(graph: nir.NIRGraph, ds: Any) -> dict[str, float] | None:
    """``export.xylo.state_bounds`` of ``graph`` on the training inputs of ``ds``; None unless they are spike counts
    over time (what Xylo takes)."""
    from snnchip.export.xylo import state_bounds

    x = np.asarray(ds.x_train)
    if not ds.temporal or not np.array_equal(x, np.round(x)):
        return None
    return state_bounds(graph, x.transpose(1, 0, *range(2, x.ndim)))
