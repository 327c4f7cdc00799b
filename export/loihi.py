"""The Loihi deploy directory: ``model.nir`` (float), ``params.npz`` (integers), ``manifest.json``.

``export_loihi`` lowers and quantizes a NIR graph (or a ``model.pt``) and writes the directory
atomically; ``load_deploy`` reads it back into a ``Deployment`` (the float stages and the integer
parameters) for hw_sim and deploy. Stage k (1-based) of a deployment runs with k steps of Lava
latency: software step t of stage k is Lava step t + k; a run lasts T + depth steps.

Format version 2: each stage's manifest entry names its ``synapse`` ("dense": a Lava Dense, params.npz holds
``<stage>/weight`` [n_out, n_in]; "sparse": a Lava Sparse, params.npz holds the CSR arrays
``<stage>/weight/{data,indices,indptr,shape}``; the same for ``weight_float``). Version 1 directories (every
stage dense, no ``synapse`` key) are still read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import scipy.sparse as sp

from snnchip import lava_compat
from snnchip.atomic import atomic_dir
from snnchip.errors import DeployError
from snnchip.export.loihi_limits import check_manifest, check_stage
from snnchip.export.lowering import LoweredNet, Stage, Weight, lower
from snnchip.export.nir_export import model_graph, nir_bytes
from snnchip.export.nir_import import recorded_interpretation
from snnchip.export.quantize import QStage, QuantizedNet, format_report, quantize
from snnchip.spec import Interpretation

FORMAT = {"name": "snnchip-loihi-deploy", "version": 2}
READABLE_VERSIONS = (1, 2)  # version 1: every stage dense
CSR_PARTS = ("data", "indices", "indptr", "shape")
FILES = ("model.nir", "params.npz", "manifest.json")
_STAGE_KEYS = ("name", "kind", "in_shape", "out_shape", "weight_exp", "num_message_bits", "dv", "vth", "scale",
               "reset", "spike", "du", "shift", "spike_frac_bits")
TABLES = (("lam", "lam"), ("input_scale", "scale"), ("theta", "theta"), ("reset_offset", "offset"))  # float, int


def process_of(q: QStage) -> str:
    """The Lava process a stage's neurons run on: Lava's own LIF only where it is exact."""
    if not q.spiking:
        return "snnchip.Integrator"
    if q.kind == "srm":
        return "snnchip.CubaLIF"
    if q.kind == "empf":
        return "snnchip.EMPF"
    return "lava.LIF" if (q.reset, q.spike) == ("zero", "gt") else "snnchip.SubLIF"


def _pack_weight(key: str, w: Weight) -> dict[str, np.ndarray]:
    """params.npz arrays of one matrix: ``key`` itself when dense, ``key/{data,indices,indptr,shape}`` when CSR."""
    if not sp.issparse(w):
        return {key: w}
    return {f"{key}/data": w.data, f"{key}/indices": w.indices, f"{key}/indptr": w.indptr,
            f"{key}/shape": np.asarray(w.shape, dtype=np.int64)}


def _unpack_weight(arrays: dict[str, np.ndarray], key: str, synapse: str) -> Weight:
    """The matrix ``_pack_weight`` stored under ``key`` (``synapse``: "dense" or "sparse")."""
    if synapse == "dense":
        return arrays[key]
    if synapse != "sparse":
        raise ValueError(f"unknown synapse type {synapse!r} (valid: dense, sparse)")
    data, indices, indptr, shape = (arrays[f"{key}/{part}"] for part in CSR_PARTS)
    return sp.csr_matrix((data, indices, indptr), shape=tuple(int(n) for n in shape))


@dataclass(frozen=True)
class Deployment:
    """A quantized network ready for hw_sim or Lava: float stages, integer stages, manifest."""

    net: LoweredNet
    qnet: QuantizedNet
    manifest: dict[str, Any]
    path: Path | None = None

    @property
    def depth(self) -> int:
        return len(self.qnet.stages)

    @property
    def T(self) -> int:
        return int(self.qnet.T)


def _read_graph(graph_or_path: nir.NIRGraph | str | os.PathLike) -> nir.NIRGraph:
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    return model_graph(graph_or_path)


def _manifest(net: LoweredNet, qnet: QuantizedNet, interp: Interpretation | None) -> dict[str, Any]:
    stages = []
    for k, q in enumerate(qnet.stages, start=1):
        entry = {key: getattr(q, key) for key in _STAGE_KEYS}
        entry.update(in_shape=list(q.in_shape), out_shape=list(q.out_shape), process=process_of(q),
                     synapse=q.synapse, latency=k,
                     lam=net.stages[k - 1].lam, theta=net.stages[k - 1].theta, lam_syn=net.stages[k - 1].lam_syn)
        stages.append(entry)
    report = qnet.report
    return {
        "format": FORMAT,
        "versions": lava_compat.versions(),
        "T": qnet.T,
        "encoding": qnet.encoding,
        "input": {"shape": list(qnet.input_shape), "handling": "graded spikes xq = round(x * 2^q) from a "
                  "RingBuffer into the first Dense (num_message_bits = 24, weight_exp includes -q)",
                  "frac_bits": qnet.input_frac_bits, "range": qnet.input_range},
        "interpretation": None if interp is None else dataclasses.asdict(interp),  # foreign graphs only
        "latency": {"per_stage": {q.name: k for k, q in enumerate(qnet.stages, start=1)},
                    "lava_steps": "T + depth", "depth": len(qnet.stages)},
        "stages": stages,
        "quantization": report,
        "resources": {"per_stage": {r["stage"]: {"neurons": r["neurons"], "synapses": r["synapses"],
                                                 "synapse": r["synapse"]} for r in report},
                      "neurons": sum(r["neurons"] for r in report), "synapses": sum(r["synapses"] for r in report)},
    }


def deployment_from_graph(graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None,
                          input_range: float = 1.0, input_frac_bits: int = 8, weight_exp: int | None = None,
                          spike_bounds: dict[str, float] | None = None) -> Deployment:
    """Lower and quantize ``graph`` in memory (what ``export_loihi`` writes; ``weight_exp``: see ``quantize``)."""
    net = lower(graph, interpretation, T)
    if "snnchip" not in (graph.metadata or {}):
        interpretation = interpretation or recorded_interpretation(graph) or Interpretation()
    else:
        interpretation = None  # our own graph: its metadata fixes the semantics
    if net.T is None:
        raise DeployError("the number of time steps T is unknown (a foreign graph carries none): pass T / --T")
    qnet = quantize(net, net.T, input_range, input_frac_bits, weight_exp, spike_bounds)
    return Deployment(net, qnet, _manifest(net, qnet, interpretation))


def measured_spike_bounds(source: object, graph: nir.NIRGraph) -> dict[str, float] | None:
    """Max graded (EM-PF) spike per layer of a ``model.pt``'s float graph on its training set (None otherwise)."""
    kinds = [((getattr(n, "metadata", None) or {}).get("snnchip") or {}).get("kind") for n in graph.nodes.values()]
    if "empf" not in kinds or isinstance(source, nir.NIRGraph) or Path(source).suffix != ".pt":
        return None
    import torch

    from snnchip.checkpoint import load_checkpoint
    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.train.data import load_dataset

    cfg = (load_checkpoint(source).metrics or {}).get("config") or {}
    if "dataset" not in cfg:
        return None
    T = int((graph.metadata or {}).get("snnchip", {}).get("T", 1))
    x = load_dataset(cfg["dataset"], cfg.get("data_dir"), flat=len(graph.nodes["input"].input_type["input"]) == 1,
                     T=T).x_train
    ex, peak = NIRExecutor(graph, dtype=torch.float64), {}
    for b in range(0, len(x), 256):
        xb = x[b:b + 256]
        res = ex.run(xb.unsqueeze(0).expand(T, *xb.shape))
        for k, s in res.spikes.items():
            peak[k] = max(peak.get(k, 0.0), float(s.max()))
    return peak


def export_loihi(graph_or_path: nir.NIRGraph | str | os.PathLike, out_dir: str | os.PathLike,
                 interpretation: Interpretation | None = None, T: int | None = None,
                 source: str | os.PathLike | None = None) -> Path:
    """Write the deploy directory for a NIR graph, a ``.nir`` file or a ``model.pt``; return its path."""
    graph = _read_graph(graph_or_path)
    dep = deployment_from_graph(graph, interpretation, T, spike_bounds=measured_spike_bounds(
        source or graph_or_path, graph))
    arrays = {}
    for st, q in zip(dep.net.stages, dep.qnet.stages, strict=True):
        arrays.update({**_pack_weight(f"{q.name}/weight", q.weight), f"{q.name}/bias": q.bias,
                       **_pack_weight(f"{q.name}/weight_float", st.weight), f"{q.name}/bias_float": st.bias})
        if q.tables is not None:
            arrays.update({f"{q.name}/table/{fk}": st.tables[fk] for fk, _ in TABLES})
            arrays.update({f"{q.name}/qtable/{qk}": q.tables[qk] for _, qk in TABLES})
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        (tmp / "model.nir").write_bytes(nir_bytes(graph))
        np.savez(tmp / "params.npz", **arrays)
        (tmp / "manifest.json").write_text(json.dumps(dep.manifest, indent=2), encoding="utf-8")
    return out


def _read_params(path: Path) -> dict[str, np.ndarray]:
    """Every array of params.npz (never unpickled); an unreadable file raises ``DeployError`` naming it."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DeployError(f"{path}: corrupt or not a params archive ({type(exc).__name__}: {str(exc)[:200]}); "
                          "re-run `snn-export --target loihi`") from None


def load_deploy(deploy_dir: str | os.PathLike) -> Deployment:
    """Read a deploy directory; a missing or corrupt file, or a value outside Loihi 2's limits
    (``loihi_limits``), raises ``DeployError`` naming the file, the stage and the field."""
    path = Path(deploy_dir)
    if not path.is_dir():
        raise DeployError(f"{path}: not a deploy directory (write one with `snn-export MODEL --target loihi -o DIR`)")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise DeployError(f"{path}: missing {', '.join(missing)}; re-run `snn-export --target loihi`")
    try:
        man = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path / 'manifest.json'}: corrupt ({exc})") from None
    fmt = man.get("format") if isinstance(man, dict) else None
    if not isinstance(fmt, dict) or fmt.get("name") != FORMAT["name"] or fmt.get("version") not in READABLE_VERSIONS:
        raise DeployError(f"{path / 'manifest.json'}: not a snnchip deploy manifest of a version this snnchip reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}; found {fmt!r}): re-export it with "
                          "`snn-export MODEL --target loihi -o DIR`")
    check_manifest(man, str(path / "manifest.json"))
    arrays = _read_params(path / "params.npz")
    net_stages, q_stages = [], []
    for k, s in enumerate(man["stages"], start=1):
        name, at = s["name"], f"{path / 'params.npz'}: stage {k} ({s['name']!r})"
        shapes = dict(in_shape=tuple(s["in_shape"]), out_shape=tuple(s["out_shape"]))
        graded, synapse = s["kind"] == "empf", s.get("synapse", "dense")  # version 1: every stage dense
        try:
            w_float, w_int = (_unpack_weight(arrays, f"{name}/{key}", synapse) for key in ("weight_float", "weight"))
            st = Stage(name=name, kind=s["kind"], weight=w_float, bias=arrays[f"{name}/bias_float"], lam=s["lam"],
                       theta=s["theta"], reset=s["reset"], spike=s["spike"], lam_syn=s.get("lam_syn", 0.0),
                       tables={fk: arrays[f"{name}/table/{fk}"] for fk, _ in TABLES} if graded else None, **shapes)
            q = QStage(**{**{key: s[key] for key in _STAGE_KEYS if key in s}, **shapes},
                       tables={qk: arrays[f"{name}/qtable/{qk}"] for _, qk in TABLES} if graded else None,
                       weight=w_int, bias=arrays[f"{name}/bias"])
        except KeyError as exc:
            raise DeployError(f"{path / 'params.npz'}: no array {exc} for stage {k} ({name!r}); re-export the "
                              "directory") from None
        except (TypeError, ValueError) as exc:  # a CSR triple scipy refuses
            raise DeployError(f"{at}: params.npz holds an invalid weight matrix ({exc})") from None
        check_stage(at, q, st, man["T"])
        if s.get("process", process_of(q)) != process_of(q):
            raise DeployError(f"{path / 'manifest.json'}: stage {k} ({name!r}): process = {s['process']!r} is invalid: "
                              f"this stage runs on {process_of(q)}")
        net_stages.append(st)
        q_stages.append(q)
    inp = man["input"]
    net = LoweredNet(tuple(inp["shape"]), tuple(net_stages), man["T"], man["encoding"])
    qnet = QuantizedNet(net.input_shape, tuple(q_stages), man["T"], man["encoding"], inp["frac_bits"],
                        inp["range"], man["quantization"])
    return Deployment(net, qnet, man, path)


def cli_export(args: argparse.Namespace) -> int:
    """``snn-export MODEL --target loihi -o DIR``: write the deploy directory and print the report."""
    from snnchip.cli import interpretation_from_args

    graph = _read_graph(args.model)
    out = export_loihi(graph, args.out, interpretation_from_args(args, recorded_interpretation(graph)), args.T,
                       source=args.model)
    dep = load_deploy(out)
    print(format_report(dep.qnet.report))
    res = dep.manifest["resources"]
    print(f"wrote {out}: {dep.depth} stages, {res['neurons']} neurons, {res['synapses']} synapses, "
          f"T = {dep.T}, Lava latency {dep.depth} steps (run T + {dep.depth})")
    return 0
