"""Whether a deployment is the one a model gives: derive it again from the model and compare the two bit for bit.

A deploy directory's seal (``export.seal``) shows that its files are the ones snn-export wrote together; it says
nothing about which model they came from (a recorded sha256 of a ``model.pt`` is only a claim). ``rederive``
quantizes the model again with the options the manifest records (T, input range, interpretation, precision, the
measured graded-spike bounds, the data headroom's per-stage peaks and margin), and ``differences`` compares every
integer and float the chip and the float graph use: the input's grid, each stage's registers, weights and
residuals, exponents, delays, biases and tables.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from snnchip.export.loihi import Deployment, deployment_from_graph, read_model_graph
from snnchip.export.nir_meta import graph_meta
from snnchip.export.qnet import SaturationWarning
from snnchip.spec import Interpretation

NET_FIELDS = ("input_shape", "T", "encoding", "input_frac_bits", "input_range", "output")
SHOWN = 3  # differences spelled out in a message
UNUSED_WITHOUT = {"low_exp": "low"}  # a field that means nothing while the other one is None


def rederive(dep: Deployment, model: Any) -> Deployment:
    """The deployment ``model`` (a ``model.pt``, a ``.nir`` file, a ``SpikingNet`` or a NIR graph) gives with the
    options ``dep``'s manifest records."""
    man = dep.manifest
    graph = read_model_graph(model if not isinstance(model, os.PathLike) else os.fspath(model))
    precision = man.get("precision") or {}
    interp = man.get("interpretation")
    bounds = {r["stage"]: r["graded_spike_measured"] for r in man.get("quantization") or []
              if isinstance(r, dict) and "graded_spike_measured" in r}
    peaks = {r["stage"]: (r["observed_current"], r["observed_membrane"]) for r in man.get("quantization") or []
             if isinstance(r, dict) and "observed_current" in r}
    has_T = graph_meta(graph).T is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        return deployment_from_graph(
            graph, Interpretation(**interp) if isinstance(interp, dict) else None, None if has_T else man.get("T"),
            input_range=man["input"]["range"], spike_bounds=bounds or None,
            wide_weights=precision["synapse_sets"] == 2 if "synapse_sets" in precision else None,
            headroom=precision.get("headroom"), peaks=peaks or None,
            **({"margin": precision["margin"]} if "margin" in precision else {}))


def _is_array(x: Any) -> bool:
    return sp.issparse(x) or isinstance(x, np.ndarray)


def _arrays(a: Any, b: Any, where: str, out: list[str]) -> None:
    if sp.issparse(a) != sp.issparse(b):
        out.append(f"{where}: {'sparse' if sp.issparse(a) else 'dense'} here, "
                   f"{'sparse' if sp.issparse(b) else 'dense'} from the model")
        return
    if a.shape != b.shape:
        out.append(f"{where}: shape {tuple(a.shape)} here, {tuple(b.shape)} from the model")
        return
    if sp.issparse(a):
        a, b = sp.csr_matrix(a), sp.csr_matrix(b)
        diff = (a != b).tocoo()
        if diff.nnz:
            i, j = int(diff.row[0]), int(diff.col[0])
            out.append(f"{where}: {diff.nnz} of {a.shape[0] * a.shape[1]} values differ (first at [{i}, {j}]: "
                       f"{a[i, j]} here, {b[i, j]} from the model)")
        return
    a, b = np.asarray(a), np.asarray(b)
    differ = (a != b) & ~((a != a) & (b != b))  # NaN equals NaN here: a value is compared as stored
    if differ.any():
        idx = tuple(int(k) for k in np.unravel_index(int(np.argmax(differ)), a.shape))
        out.append(f"{where}: {int(differ.sum())} of {a.size} values differ (first at {list(idx)}: {a[idx]} here, "
                   f"{b[idx]} from the model)")


def _walk(a: Any, b: Any, where: str, out: list[str]) -> None:
    """Append to ``out`` every place where ``a`` (the deployment) and ``b`` (the model's) differ."""
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        for f in dataclasses.fields(a):
            if f.name in UNUSED_WITHOUT and getattr(a, UNUSED_WITHOUT[f.name]) is None \
                    and getattr(b, UNUSED_WITHOUT[f.name], None) is None:
                continue
            _walk(getattr(a, f.name), getattr(b, f.name, None), f"{where}, {f.name}", out)
    elif _is_array(a) and _is_array(b):
        _arrays(a, b, where, out)
    elif _is_array(a) or _is_array(b):
        out.append(f"{where}: {type(a).__name__} here, {type(b).__name__} from the model")
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _walk(a.get(key), b.get(key), f"{where}[{key!r}]", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} entries here, {len(b)} from the model")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{where}[{i}]", out)
    elif not (a == b or (a != a and b != b)):
        out.append(f"{where}: {a!r} here, {b!r} from the model")


def differences(dep: Deployment, derived: Deployment) -> list[str]:
    """Every value in which ``dep`` differs from ``derived`` (the model's deployment), each named by stage and
    field; empty when they are the same bit for bit."""
    out: list[str] = []
    for name in NET_FIELDS:
        _walk(getattr(dep.qnet, name), getattr(derived.qnet, name), f"the network's {name}", out)
    if [q.name for q in dep.qnet.stages] != [q.name for q in derived.qnet.stages]:
        out.append(f"stages {[q.name for q in dep.qnet.stages]} here, {[q.name for q in derived.qnet.stages]} from "
                   "the model")
        return out
    for st, q, st2, q2 in zip(dep.net.stages, dep.qnet.stages, derived.net.stages, derived.qnet.stages, strict=True):
        _walk(q, q2, f"stage {q.name!r} (chip)", out)
        _walk(st, st2, f"stage {q.name!r} (float)", out)
    return out


def xylo_differences(dep: Any, model: Any, bounds: dict[str, float] | None) -> list[str]:
    """Every value in which a Xylo deployment ``dep`` (``export.xylo.XyloDeployment``) differs from the mapping
    ``model`` (a model.pt) gives with its scales sized for ``bounds`` (the states its training set reaches, as the
    export measured them: ``snnchip.workflows.model_data.xylo_bounds``): weights, shifts, dashes, thresholds,
    biases, T, the readout and its scale; empty when the same bit for bit."""
    from snnchip.export.xylo import map_graph

    graph = read_model_graph(model if not isinstance(model, os.PathLike) else os.fspath(model))
    derived = map_graph(graph, None, None, bounds)
    out: list[str] = []
    _walk(dep.mapping.config.arrays(), derived.config.arrays(), "params", out)
    for name in ("T", "readout", "readout_scale", "hidden_scale"):
        _walk(getattr(dep.mapping, name), getattr(derived, name), f"the mapping's {name}", out)
    return out


def summary(found: list[str]) -> str:
    """The first ``SHOWN`` differences and how many more, as one line."""
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(found[:SHOWN]) + more
