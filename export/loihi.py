"""The Loihi deploy directory: ``model.nir`` (float), ``params.npz`` (integers), ``manifest.json``.

``export_loihi`` lowers and quantizes a NIR graph (or a ``model.pt``) and writes the directory atomically;
``load_deploy`` reads it back into a ``Deployment`` (the float stages and the integer parameters) for hw_sim and
deploy. Stage n runs with ``latency`` steps of Lava latency: its software step t is Lava step t + latency; a run
lasts T + depth steps (depth: the largest latency).

Each stage's manifest entry lists its ``inputs`` (projections): source (``input`` or a stage),
``synapse`` ("dense": a Lava Dense, params.npz holds ``<stage>/in<i>/weight`` [n_out, n_source]; "sparse": a Lava
Sparse, the CSR arrays ``<stage>/in<i>/weight/{data,indices,indptr,shape}``; the same for ``weight_float``),
``weight_exp``, ``num_message_bits``, ``delay`` (software steps), ``lava_delay`` (extra synaptic delay on
Lava: a DelayDense/DelaySparse) and ``low_exp``: null, or the exponent of the wide weights' residual mantissas
``<stage>/in<i>/weight_low`` (a second Dense/Sparse of the same layout). Format version 5 adds the manifest's
``seal`` (``export.seal``: the sha256 of model.nir, params.npz and of every manifest value), checked on every read.
Version 4 (no seal), version 3 (no ``low_exp``) and versions 1 and 2 (a chain: one input per stage, from the stage
before; the SRM's current decay stored as 4096 − factor) are still read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import scipy.sparse as sp

from snnchip import lava_compat
from snnchip.arrayfile import load_npz
from snnchip.atomic import atomic_dir
from snnchip.errors import DeployError, OutputError, UnsupportedNodeError
from snnchip.export.loihi_limits import check_manifest, check_neuron, check_synapses
from snnchip.export.lowering import INPUT, LoweredNet, Projection, Stage, Weight, lower, schedule
from snnchip.export.nir_export import nir_bytes
from snnchip.export.nir_meta import multi_spike_nodes, recorded_interpretation
from snnchip.export.quantize import (
    NEVER_FIRES,
    QProjection,
    QStage,
    QuantizedNet,
    SaturationWarning,
    dequantize_weight,
    frac_bits,
    mantissa_range,
    quantize,
    residual_mantissas,
    to_mantissa,
)
from snnchip.export.seal import SealCheck, check_format, check_seal, refuse_edited, sealed_manifest_json
from snnchip.export.sizing import check_feasible, deployment_size
from snnchip.identity import sha256_file
from snnchip.spec import Interpretation, NetworkSpec

FORMAT = {"name": "snnchip-loihi-deploy", "version": 5}
READABLE_VERSIONS = (1, 2, 3, 4, 5)  # 1, 2: chains (version 1: every stage dense); 3: no wide weights; 4: no seal
CSR_PARTS = ("data", "indices", "indptr", "shape")
FILES = ("model.nir", "params.npz", "manifest.json")
_STAGE_KEYS = ("name", "kind", "dv", "vth", "vsub", "scale", "reset", "spike", "du", "lam_syn", "latency", "shift",
               "spike_frac_bits")
_INPUT_KEYS = ("source", "weight_exp", "num_message_bits", "delay", "lava_delay")
TABLES = (("lam", "lam"), ("input_scale", "scale"), ("theta", "theta"), ("reset_offset", "offset"))  # float, int


def process_of(q: QStage) -> str:
    """The Lava process a stage's neurons run on: Lava's own LIF wherever it is exact (reset to zero, ``>``, the
    current kept through a spike; every readout, as a LIF that never fires), our processes otherwise."""
    if q.kind == "empf":
        return "snnchip.EMPF"
    if not q.spiking or (q.kind in ("lif", "cubalif") and (q.reset, q.spike) == ("zero", "gt")):
        return "lava.LIF"
    return "snnchip.CubaLIF"


def synapse_process(p: QProjection) -> str:
    """The Lava process of a projection: Dense or Sparse, their Delay variants when it needs extra delay."""
    return f"lava.{'Delay' if p.lava_delay else ''}{'Sparse' if p.synapse == 'sparse' else 'Dense'}"


BUILTIN = {"lava.Dense", "lava.Sparse", "lava.DelayDense", "lava.DelaySparse", "lava.LIF", "lava.RingBuffer"}


def hardware_processes(dep: Deployment) -> dict[str, Any]:
    """The Lava processes a deployment runs on, each marked Lava built-in (Intel's lava-loihi extension has Loihi 2
    models for them) or snnchip custom (Python models only: on hardware it needs custom neuron microcode)."""
    rows = [{"stage": "input", "process": "lava.RingBuffer", "role": "graded input spikes"}]
    for q in dep.qnet.stages:
        rows += [{"stage": q.name, "process": synapse_process(p),
                  "role": f"synapses from {p.source}" + (" (wide weights' residual)" if part else "")}
                 for p in q.inputs for part in range(len(p.parts))]
        rows.append({"stage": q.name, "process": process_of(q), "role": "neurons" if q.spiking else "readout"})
        if np.any(np.asarray(q.bias) != 0):
            rows.append({"stage": q.name, "process": "lava.RingBuffer", "role": "bias, injected from the stage's "
                         "first input step (a host-side source on hardware)"})
    for r in rows:
        r["builtin"] = r["process"] in BUILTIN
    custom = sorted({r["process"] for r in rows if not r["builtin"]})
    return {"processes": rows, "builtin_only": not custom, "custom": custom}


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
    seal: SealCheck | None = None  # what load_deploy found of the directory's seal (None: built in memory)

    @property
    def depth(self) -> int:
        return self.qnet.depth

    @property
    def T(self) -> int:
        return int(self.qnet.T)


def read_model_graph(source: Any) -> nir.NIRGraph:
    """A NIR graph as given, or the graph of a ``SpikingNet``, a ``model.pt`` or a ``.nir`` file."""
    if isinstance(source, nir.NIRGraph):
        return source
    from snnchip.export.nir_export import model_graph

    return model_graph(source)


def _manifest(net: LoweredNet, qnet: QuantizedNet, interp: Interpretation | None) -> dict[str, Any]:
    stages = []
    for st, q in zip(net.stages, qnet.stages, strict=True):
        entry = {key: getattr(q, key) for key in _STAGE_KEYS}
        entry.update(out_shape=list(q.out_shape), process=process_of(q), lam=st.lam, theta=st.theta,
                     reset_by=st.reset_by,
                     inputs=[{**{k: getattr(p, k) for k in _INPUT_KEYS}, "synapse": p.synapse,
                              "process": synapse_process(p), "low_exp": None if p.low is None else p.low_exp}
                             for p in q.inputs])
        stages.append(entry)
    report = qnet.report
    return {
        "format": FORMAT,
        "versions": lava_compat.versions(),
        "T": qnet.T,
        "encoding": qnet.encoding,
        "input": {"shape": list(qnet.input_shape), "handling": "graded spikes xq = round(x * 2^q) from a "
                  "RingBuffer into the Dense/Sparse of every projection from the input (num_message_bits = 24, "
                  "weight_exp includes -q)", "frac_bits": qnet.input_frac_bits, "range": qnet.input_range},
        "output": qnet.output,
        "interpretation": None if interp is None else dataclasses.asdict(interp),  # foreign graphs only
        "latency": {"per_stage": {q.name: q.latency for q in qnet.stages}, "lava_steps": "T + depth",
                    "depth": qnet.depth},
        "stages": stages,
        "quantization": report,
        "resources": {"per_stage": {r["stage"]: {"neurons": r["neurons"], "synapses": r["synapses"]} for r in report},
                      "neurons": sum(r["neurons"] for r in report), "synapses": sum(r["synapses"] for r in report)},
    }


def deployment_from_graph(graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None,
                          input_range: float = 1.0, input_frac_bits: int | None = None, weight_exp: int | None = None,
                          spike_bounds: dict[str, float] | None = None, max_memory: float | None = None,
                          wide_weights: bool | None = None, headroom: str | None = None) -> Deployment:
    """Lower and quantize ``graph`` in memory (what ``export_loihi`` writes; ``weight_exp``, ``wide_weights``,
    ``headroom``: see ``quantize``; None: ``precision_of`` the graph).

    The deployment's size is computed first (``sizing.deployment_size``): one that would need more than
    ``max_memory`` bytes (default: the memory available now) is refused with its numbers before anything is built.
    """
    multi = multi_spike_nodes(graph)
    if multi:
        name, m = next(iter(multi.items()))
        raise UnsupportedNodeError(f"node {name!r} emits up to {m} spikes per step (Xylo's neuron, --profile xylo); "
                                   "Loihi 2's neurons emit one: export it with --target xylo")
    precision = precision_of(graph, wide_weights, headroom, weight_exp)
    check_feasible(deployment_size(graph, interpretation, precision["synapse_sets"]), max_memory)
    net = lower(graph, interpretation, T)
    if "snnchip" not in (graph.metadata or {}):
        interpretation = interpretation or recorded_interpretation(graph) or Interpretation()
    else:
        interpretation = None  # our own graph: its metadata fixes the semantics
    if net.T is None:
        raise DeployError("the number of time steps T is unknown (a foreign graph carries none): pass T / --T")
    qnet = quantize(net, net.T, input_range, input_frac_bits, weight_exp, spike_bounds,
                    precision["synapse_sets"] == 2, precision["headroom"])
    manifest = _manifest(net, qnet, interpretation)
    manifest["precision"] = precision
    return Deployment(net, qnet, manifest)


def precision_of(graph: nir.NIRGraph, wide_weights: bool | None = None, headroom: str | None = None,
                 weight_exp: int | None = None) -> dict[str, Any]:
    """The synapse sets (2: wide weights) and membrane headroom of ``graph``'s deployment (``quantize``), and why.

    What is not given (None) follows the graph: a foreign graph's weights never saw the chip's grid and nothing
    calibrates them, so it gets precision (wide weights, the one-step headroom: the scale does not shrink with T);
    a snnchip model gets resources and guarantees (8-bit weights, which ``--calibrate`` serves, and the T-step
    headroom, which never saturates); fixed exponents (netx) hold one weight matrix per layer."""
    foreign = "snnchip" not in (graph.metadata or {}) and weight_exp is None
    why = "fixed exponents (netx)" if weight_exp is not None else \
        "a foreign graph: precision first" if foreign else "a snnchip model: resources and guarantees first"
    wide = foreign if wide_weights is None else wide_weights
    room = ("step" if foreign else "T") if headroom is None else headroom
    asked = [name for name, given in (("weights", wide_weights), ("headroom", headroom)) if given is not None]
    return {"synapse_sets": 2 if wide else 1, "headroom": room,
            "why": f"{' and '.join(asked)} as asked" if len(asked) == 2 else
            f"{why}{'; ' + asked[0] + ' as asked' if asked else ''}"}


def graded_spike_peaks(graph: nir.NIRGraph, x: Any) -> dict[str, float] | None:
    """Max graded (EM-PF) spike per layer of ``graph``'s float executor on static inputs ``x`` [N, *input_shape]
    (each presented for the graph's T steps); None when the graph has no graded layer."""
    kinds = [((getattr(n, "metadata", None) or {}).get("snnchip") or {}).get("kind") for n in graph.nodes.values()]
    if "empf" not in kinds:
        return None
    import torch

    from snnchip.export.nir_exec import NIRExecutor

    T = int((graph.metadata or {}).get("snnchip", {}).get("T", 1))
    ex, peak = NIRExecutor(graph, dtype=torch.float64), {}
    for b in range(0, len(x), 256):
        xb = torch.as_tensor(x[b:b + 256])
        res = ex.run(xb.unsqueeze(0).expand(T, *xb.shape))
        for k, s in res.spikes.items():
            peak[k] = max(peak.get(k, 0.0), float(s.max()))
    return peak


def measured_spike_bounds(source: object, graph: nir.NIRGraph) -> dict[str, float] | None:
    """``graded_spike_peaks`` on the training set recorded in a ``model.pt`` (None for other sources)."""
    if not isinstance(source, (str, os.PathLike)) or Path(source).suffix != ".pt" or \
            graded_spike_peaks(graph, []) is None:
        return None
    from snnchip.checkpoint import load_checkpoint
    from snnchip.train.data import load_dataset

    cfg = (load_checkpoint(source).metrics or {}).get("config") or {}
    if "dataset" not in cfg:
        return None
    T = int((graph.metadata or {}).get("snnchip", {}).get("T", 1))
    flat = len(graph.nodes["input"].input_type["input"]) == 1
    return graded_spike_peaks(graph, load_dataset(cfg["dataset"], cfg.get("data_dir"), flat=flat, T=T).x_train)


def check_replaceable(out_dir: str | os.PathLike) -> None:
    """A deploy directory is written in place of nothing, an empty directory or an earlier deploy directory (one
    with ``manifest.json``); anything else at ``out_dir`` would be replaced whole, so it is refused."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise OutputError(f"{out}: exists and is not a deploy directory (no manifest.json); a deploy directory "
                          f"replaces its destination whole, so name a new or empty directory")


def export_loihi(graph_or_path: Any, out_dir: str | os.PathLike, interpretation: Interpretation | None = None,
                 T: int | None = None, source: str | os.PathLike | None = None,
                 spike_bounds: dict[str, float] | None = None, max_memory: float | None = None,
                 wide_weights: bool | None = None, headroom: str | None = None, input_range: float = 1.0) -> Path:
    """Write the deploy directory for a NIR graph, a ``SpikingNet``, a ``.nir`` file or a ``model.pt``; return its
    path. ``source``: the ``model.pt`` a given graph came from: its training set sizes graded spikes (unless
    ``spike_bounds`` are given) and the manifest records its path and sha256. ``wide_weights``, ``headroom``,
    ``input_range`` (the largest |x| the deployment takes): see ``deployment_from_graph``. The manifest seals the
    files and its own values (``export.seal``)."""
    check_replaceable(out_dir)
    graph = read_model_graph(graph_or_path)
    origin = source or graph_or_path
    sets = precision_of(graph, wide_weights)["synapse_sets"]
    check_feasible(deployment_size(graph, interpretation, sets), max_memory)  # before measuring spikes on data
    dep = deployment_from_graph(graph, interpretation, T, spike_bounds=spike_bounds if spike_bounds is not None
                                else measured_spike_bounds(origin, graph), max_memory=max_memory,
                                wide_weights=wide_weights, headroom=headroom, input_range=input_range)
    if isinstance(origin, (str, os.PathLike)) and Path(origin).is_file():
        dep.manifest["source"] = {"path": str(origin), "sha256": sha256_file(origin)}
    arrays = {}
    for st, q in zip(dep.net.stages, dep.qnet.stages, strict=True):
        arrays.update({f"{q.name}/bias": q.bias, f"{q.name}/bias_float": st.bias})
        for i, (p, pf) in enumerate(zip(q.inputs, st.inputs, strict=True)):
            arrays.update({**_pack_weight(f"{q.name}/in{i}/weight", p.weight),
                           **_pack_weight(f"{q.name}/in{i}/weight_float", pf.weight),
                           **({} if p.low is None else _pack_weight(f"{q.name}/in{i}/weight_low", p.low))})
        if q.tables is not None:
            arrays.update({f"{q.name}/table/{fk}": st.tables[fk] for fk, _ in TABLES})
            arrays.update({f"{q.name}/qtable/{qk}": q.tables[qk] for _, qk in TABLES})
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        (tmp / "model.nir").write_bytes(nir_bytes(graph))
        np.savez(tmp / "params.npz", **arrays)
        (tmp / "manifest.json").write_text(sealed_manifest_json(tmp, dep.manifest), encoding="utf-8")
    return out


def _read_params(path: Path) -> dict[str, np.ndarray]:
    """Every array of params.npz (never unpickled); an unreadable file raises ``DeployError`` naming it."""
    try:
        return load_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DeployError(f"{path}: corrupt or not a params archive ({type(exc).__name__}: {str(exc)[:200]}); "
                          "re-run `snn-export --target loihi`") from None


def load_deploy(deploy_dir: str | os.PathLike, allow_edited: bool = False) -> Deployment:
    """Read a deploy directory; a missing or corrupt file, a file or value that no longer matches the manifest's
    seal (unless ``allow_edited``: the ``Deployment``'s ``seal`` then says what was edited), or a value outside
    Loihi 2's limits (``loihi_limits``) raises ``DeployError`` naming the file, the stage and the field."""
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
    where = path / "manifest.json"
    version = check_format(man, where, FORMAT["name"], READABLE_VERSIONS)
    sealed = check_seal(path, man, version)
    if not allow_edited:
        refuse_edited(path, sealed)
    check_manifest(man, str(where))
    arrays = _read_params(path / "params.npz")
    pairs = []
    for i, s in enumerate(man["stages"]):
        at = f"{where}: stage {i + 1} ({s['name']!r})"
        try:
            pairs.append(_read_stage(s, arrays, version, i, man["stages"][i - 1]["name"] if i else INPUT))
        except KeyError as exc:
            raise DeployError(f"{at}: no {exc} in the manifest entry or params.npz; re-export the directory") from None
        except (TypeError, ValueError, AttributeError) as exc:  # a field of the wrong type, a CSR triple scipy refuses
            raise DeployError(f"{at}: invalid entry or arrays ({type(exc).__name__}: {exc})") from None
        st, q = pairs[-1]
        check_neuron(at, q, st)
        if s.get("process", process_of(q)) != process_of(q):
            raise DeployError(f"{at}: process = {s['process']!r} is invalid: this stage runs on {process_of(q)}")
    sizes = {INPUT: math.prod(man["input"]["shape"]), **{q.name: q.size for _, q in pairs}}
    for i, (st, q) in enumerate(pairs):
        check_synapses(f"{where}: stage {i + 1} ({q.name!r})", f"{path / 'params.npz'}: stage {i + 1} ({q.name!r})",
                       q, st, man["T"], sizes)
    inp = man["input"]
    output = man.get("output", pairs[-1][0].name)
    net = LoweredNet(tuple(inp["shape"]), tuple(st for st, _ in pairs), man["T"], man["encoding"], output)
    qnet = QuantizedNet(net.input_shape, tuple(q for _, q in pairs), man["T"], man["encoding"], inp["frac_bits"],
                        inp["range"], output, man["quantization"])
    _check_schedule(where, net, qnet)
    return Deployment(net, qnet, man, path, sealed)


def _check_schedule(where: Path, net: LoweredNet, qnet: QuantizedNet) -> None:
    """The latencies and extra Lava delays a directory records are those its graph needs (``schedule``)."""
    try:
        plan = schedule(net)
    except UnsupportedNodeError as exc:
        raise DeployError(f"{where}: the stages' projections cannot run on Lava ({exc})") from None
    for q in qnet.stages:
        if q.latency != plan.latency[q.name]:
            raise DeployError(f"{where}: stage {q.name!r}: latency = {q.latency} is invalid: its projections give "
                              f"{plan.latency[q.name]}")
        for i, (p, e) in enumerate(zip(q.inputs, plan.extra[q.name], strict=True)):
            if p.lava_delay != e:
                raise DeployError(f"{where}: stage {q.name!r}, input {i}: lava_delay = {p.lava_delay} is invalid: "
                                  f"the schedule needs {e}")


def _read_stage(s: dict[str, Any], arrays: dict[str, np.ndarray], version: int, index: int, previous: str
                ) -> tuple[Stage, QStage]:
    """One manifest entry and its arrays as (float ``Stage``, integer ``QStage``); a version 1/2 entry is the chain
    stage it was: one dense/sparse input from the stage before, latency index + 1."""
    name, graded = s["name"], s["kind"] == "empf"
    if version >= 3:
        entries = [(e, f"{name}/in{i}") for i, e in enumerate(s["inputs"])]
        fields = {k: s[k] for k in _STAGE_KEYS}
    else:
        entries = [({"source": previous, "weight_exp": s["weight_exp"], "num_message_bits": s["num_message_bits"],
                     "delay": 0, "lava_delay": 0, "synapse": s.get("synapse", "dense")}, name)]
        fields = {k: s[k] for k in _STAGE_KEYS if k in s}
        fields.update(latency=index + 1, lam_syn=s.get("lam_syn", 0.0))
        if s["kind"] == "srm":  # versions 1/2 stored the current's factor as 4096 − du
            fields.update(reset="zero", du=int(s["du"]) - 1)
        if s["kind"] == "readout":  # versions 1/2 stored vth 0 (their readout process had none); Lava's LIF fires
            fields.update(vth=NEVER_FIRES)
    q_inputs = tuple(QProjection(e["source"], _unpack_weight(arrays, f"{key}/weight", e["synapse"]),
                                 e["weight_exp"], e["num_message_bits"], e["delay"], e["lava_delay"],
                                 *(() if e.get("low_exp") is None else
                                   (_unpack_weight(arrays, f"{key}/weight_low", e["synapse"]), e["low_exp"])))
                     for e, key in entries)
    f_inputs = tuple(Projection(e["source"], _unpack_weight(arrays, f"{key}/weight_float", e["synapse"]),
                                e["delay"]) for e, key in entries)
    out_shape = tuple(s["out_shape"])
    stage = Stage(name=name, kind=s["kind"], inputs=f_inputs, bias=arrays[f"{name}/bias_float"], out_shape=out_shape,
                  lam=s["lam"], theta=s["theta"], reset=fields["reset"], spike=s["spike"],
                  lam_syn=fields.get("lam_syn", 0.0), reset_by=s.get("reset_by"),
                  tables={fk: arrays[f"{name}/table/{fk}"] for fk, _ in TABLES} if graded else None)
    q = QStage(**fields, inputs=q_inputs, out_shape=out_shape, bias=arrays[f"{name}/bias"],
               tables={qk: arrays[f"{name}/qtable/{qk}"] for _, qk in TABLES} if graded else None)
    return stage, q


def chip_deployment(spec: NetworkSpec, params: dict[str, dict[str, np.ndarray]], wide_weights: bool | None = None,
                    headroom: str | None = None) -> Deployment:
    """The deployment of (``spec``, plain ``params``) in memory, saturation warnings silenced (a caller that
    quantizes after every optimizer step reports on the final deployment)."""
    from snnchip.export.nir_export import spec_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        return deployment_from_graph(spec_to_nir(spec, params), wide_weights=wide_weights, headroom=headroom)


def _dequantized(dep: Deployment, q: QStage) -> tuple[list[Weight], np.ndarray]:
    """The real projections and bias the chip applies for a stage, in the float stage's units (an EM-PF stage's
    integer weights carry its input scale's power of two 2^ka, which its tables divide out)."""
    unit = 2.0 ** next((r.get("input_scale_exp", 0) for r in dep.qnet.report if r["stage"] == q.name), 0)
    weights = [dequantize_weight(p, frac_bits(dep.qnet, p.source), q.scale) / unit for p in q.inputs]
    return weights, q.bias.astype(np.float64) / q.scale / unit


def quantization_errors(dep: Deployment) -> dict[str, tuple[list[tuple[str, int, Weight]], np.ndarray]]:
    """Per stage, what the chip adds to its float current: (source, delay, Q(A_p) − A_p) per projection and
    Q(b) − b (float64, the projections' layout)."""
    out = {}
    for st, q in zip(dep.net.stages, dep.qnet.stages, strict=True):
        weights, bias = _dequantized(dep, q)
        out[q.name] = ([(p.source, p.delay, w - p.weight) for p, w in zip(st.inputs, weights, strict=True)],
                       bias - st.bias)
    return out


def elementwise_layers(spec: NetworkSpec) -> list[str]:
    """The synaptic layers whose stage is the layer's own weights: fed by the previous neuron (or the input) through
    flatten alone, with no shortcut or feedback into it; the chip quantizes those weights entry by entry."""
    into = {fb.dst for fb in spec.feedback}
    names, chain = [], []
    for layer in spec.layers:
        if not layer.synaptic:
            chain.append(layer)
            continue
        if all(la.op == "flatten" for la in chain) and layer.name not in into and "shortcut" not in layer.options:
            names.append(layer.name)
        chain = []
    return names


def chip_weights(spec: NetworkSpec, params: dict[str, dict[str, np.ndarray]], dep: Deployment
                 ) -> dict[str, dict[str, np.ndarray]]:
    """Per layer of ``elementwise_layers``, the real weights and bias the chip applies, in the layer's layout:
    Q(W) = mant(W·c/2^e)·2^e/c on the stage's grid (plus the residual's mantissas on theirs, 2^f/c, with wide
    weights), Q_b(b) = round(b·c)/c (float64; bit for bit the deployment's dequantized weights)."""
    stages = {q.name: (st, q) for st, q in zip(dep.net.stages, dep.qnet.stages, strict=True)}
    out = {}
    for name in elementwise_layers(spec):
        st, q = stages[name]
        if q.graded:  # EM-PF: binary weights are exact; its tables are not weights
            continue
        (p,), (pf,) = q.inputs, st.inputs
        frac = frac_bits(dep.qnet, p.source)
        cw = np.asarray(params[name]["weight"], np.float64) * q.scale
        lo, hi, step = mantissa_range(pf.weight)
        m, _ = to_mantissa(cw / 2.0 ** (p.weight_exp + frac), lo, hi, step)
        applied = m * 2.0 ** (p.weight_exp + frac)
        if p.low is not None:
            m_lo, f, _ = residual_mantissas(cw - applied, p.low_exp + frac)
            applied = applied + m_lo * 2.0**f
        out[name] = {"weight": applied / q.scale}
        if "bias" in params[name]:
            out[name]["bias"] = np.round(np.asarray(params[name]["bias"], np.float64) * q.scale) / q.scale
    return out
