"""The Loihi deploy directory: ``model.nir`` (float), ``params.npz`` (integers), ``manifest.json``.

``export_loihi`` lowers and quantizes a NIR graph (or a ``model.pt``) and writes the directory atomically;
``load_deploy`` reads it back into a ``Deployment`` (the float stages and the integer parameters) for hw_sim and
deploy. Stage n runs with ``latency`` steps of Lava latency: its software step t is Lava step t + latency; a run
lasts T + depth steps (depth: the largest latency).

Each stage's manifest entry lists its ``inputs`` (projections): source (``input`` or a stage),
``synapse`` ("dense": a Lava Dense, params.npz holds ``<stage>/in<i>/weight`` [n_out, n_source]; "sparse": a Lava
Sparse, the CSR arrays ``<stage>/in<i>/weight/{data,indices,indptr,shape}``),
``weight_exp``, ``num_message_bits``, ``delay`` (software steps), ``lava_delay`` (extra synaptic delay on
Lava: a DelayDense/DelaySparse) and ``low_exp``: null, or the exponent of the wide weights' residual mantissas
``<stage>/in<i>/weight_low`` (a second Dense/Sparse of the same layout). Format version 6 adds ``synapse`` "conv":
a weight-shared kernel (``export.kernel.Kernel``), params.npz holds ``<stage>/in<i>/weight/kernel``
[C_out, C_in/groups, *k] (int16; and ``weight_low/kernel``), stored compact where a composed pooling repeats its
taps (``kernel_repeat``: the factor per spatial axis, ``np.repeat`` restores it), the manifest entry its ``geometry``
(in_shape, out_shape, stride, pad_before, pad_after, dilation, groups). Version 7 stores no float arrays: the
float stages are model.nir lowered again with the manifest's interpretation and T (``_float_stages``), checked
against the manifest's stages; version 8 adds an EM-PF stage's ``message_cap`` and stores its integer tables
``qtable/*`` per channel ([T, C], int32) where they are constant over each channel's positions. Version 5 added
the manifest's ``seal`` (``export.seal``: the sha256 of model.nir, params.npz and of every manifest value), checked
on every read. Version 6 (``weight_float``, ``bias_float`` and
EM-PF ``table/*`` in params.npz), 5 (no kernels), 4 (no seal), 3 (no ``low_exp``) and versions 1 and 2 (a chain:
one input per stage, from the stage before; the SRM's current decay stored as 4096 − factor) are still read.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import scipy.sparse as sp

from snnchip import lava_compat
from snnchip.atomic import atomic_dir
from snnchip.errors import DataError, DeployError, OutputError, SnnchipError, UnsupportedNodeError
from snnchip.export.kernel import Kernel
from snnchip.export.loihi2 import EMPF_TABLES, NEVER_FIRES, V_MAX, SynapseLayout, neuron_process, synapse_process
from snnchip.export.loihi_limits import check_manifest, check_neuron, check_synapses
from snnchip.export.lowering import INPUT, LoweredNet, Projection, Stage, Weight, lower
from snnchip.export.nir_export import nir_bytes
from snnchip.export.nir_meta import graph_meta, recorded_interpretation
from snnchip.export.nir_read import read_graph
from snnchip.export.precision import precision_of
from snnchip.export.qnet import QProjection, QStage, QuantizedNet
from snnchip.export.quantize import quantize
from snnchip.export.quantize_stages import DATA_MARGIN
from snnchip.export.schedule import schedule
from snnchip.export.seal import (
    SealCheck,
    check_format,
    check_seal,
    open_deploy_dir,
    read_params,
    refuse_edited,
    sealed_manifest_json,
)
from snnchip.export.sizing import check_feasible, deployment_size
from snnchip.export.stage_peaks import check_calibration_input, describe, stage_peaks
from snnchip.identity import sha256_file
from snnchip.spec import Interpretation, NeuronKind

FORMAT = {"name": "snnchip-loihi-deploy", "version": 8}
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)  # 1, 2: chains (version 1: every stage dense); 3: no wide weights; 4:
# no seal; 5: no kernels (every convolution a CSR matrix); 6: the float stages' arrays in params.npz; 7: no message
# cap (an EM-PF stage's graded messages capped at 2^23 − 1 only)
FLOAT_FROM_GRAPH = 7  # from this version on the float stages are model.nir lowered again, not params.npz arrays
CSR_PARTS = ("data", "indices", "indptr", "shape")
FILES = ("model.nir", "params.npz", "manifest.json")
_STAGE_KEYS = ("name", "kind", "dv", "vth", "vsub", "scale", "reset", "spike", "du", "lam_syn", "latency", "shift",
               "spike_frac_bits")
_INPUT_KEYS = ("source", "weight_exp", "num_message_bits", "delay", "lava_delay")


def _pack_weight(key: str, w: Weight) -> dict[str, np.ndarray]:
    """params.npz arrays of one projection: ``key`` itself when dense, ``key/{data,indices,indptr,shape}`` when CSR,
    ``key/kernel`` for a kernel (its geometry is in the manifest)."""
    if isinstance(w, Kernel):
        compact, repeat = w.compact
        return {f"{key}/kernel": _narrowest(compact),
                **({f"{key}/kernel_repeat": np.asarray(repeat, np.int64)} if any(r > 1 for r in repeat) else {})}
    if not sp.issparse(w):
        return {key: w}
    return {f"{key}/data": w.data, f"{key}/indices": w.indices, f"{key}/indptr": w.indptr,
            f"{key}/shape": np.asarray(w.shape, dtype=np.int64)}


def _narrowest(a: np.ndarray) -> np.ndarray:
    """A kernel in the narrowest dtype that holds its values exactly (8-bit mantissas in int16; float weights in
    float32 where that loses nothing): the values read back are the ones written."""
    narrow = a.astype(np.int16) if np.issubdtype(a.dtype, np.integer) else a.astype(np.float32)
    return narrow if np.array_equal(narrow, a) else a


def _pack_table(table: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """An EM-PF integer table [T, n] as params.npz stores it: [T, C] (one value per channel, C = out_shape[0])
    where it is constant over each channel's positions, as a folded BN's tables are, and int32 where that is exact."""
    steps = table.shape[0]
    per_channel = table.reshape(steps, out_shape[0], -1) if len(out_shape) > 1 else table[:, :, None]
    if (per_channel == per_channel[:, :, :1]).all():
        table = per_channel[:, :, 0]
    narrow = table.astype(np.int32)
    return narrow if np.array_equal(narrow, table) else table


def _unpack_table(table: np.ndarray, n: int) -> np.ndarray:
    """The [T, n] int64 table ``_pack_table`` stored (a [T, C] one repeated over each channel's n / C positions; a
    shape that does not divide n is left for the limits check to name)."""
    if table.ndim == 2 and 0 < table.shape[1] < n and n % table.shape[1] == 0:
        table = np.repeat(table, n // table.shape[1], axis=1)
    return table.astype(np.int64) if np.issubdtype(table.dtype, np.integer) else table


def _unpack_weight(arrays: dict[str, np.ndarray], key: str, synapse: str, geometry: dict | None = None) -> Weight:
    """The projection ``_pack_weight`` stored under ``key`` (``synapse``: "dense", "sparse" or "conv", whose
    ``geometry`` the manifest holds)."""
    if synapse == SynapseLayout.DENSE:
        return arrays[key]
    if synapse == SynapseLayout.CONV:
        if not isinstance(geometry, dict):
            raise ValueError("a conv projection needs its geometry")
        kernel = arrays[f"{key}/kernel"]
        for axis, r in enumerate(arrays.get(f"{key}/kernel_repeat", []), start=2):
            if not 1 <= int(r) <= 64:
                raise ValueError(f"kernel_repeat {int(r)} outside 1..64")
            kernel = np.repeat(kernel, int(r), axis=axis)
        return Kernel.from_geometry(kernel, geometry)
    if synapse != SynapseLayout.SPARSE:
        raise ValueError(f"unknown synapse type {synapse!r} (valid: dense, sparse, conv)")
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
        entry.update(out_shape=list(q.out_shape), process=neuron_process(q), lam=st.lam, theta=st.theta,
                     reset_by=st.reset_by, max_spikes=q.max_spikes, message_cap=q.message_cap,
                     inputs=[{**{k: getattr(p, k) for k in _INPUT_KEYS}, "synapse": p.synapse,
                              "process": synapse_process(p), "low_exp": None if p.low is None else p.low_exp,
                              **({"geometry": p.weight.geometry()} if p.synapse == SynapseLayout.CONV else {})}
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
                          wide_weights: bool | None = None, headroom: str | None = None,
                          calibration_input: Any = None, margin: float = DATA_MARGIN,
                          peaks: dict[str, tuple[float, float]] | None = None, sized: bool = False) -> Deployment:
    """Lower and quantize ``graph`` in memory (what ``export_loihi`` writes; ``weight_exp``, ``wide_weights``,
    ``headroom``, ``margin``: see ``quantize``; None: ``precision_of`` the graph).

    ``calibration_input`` x [T, batch, *input_shape] (``check_calibration_input``): the data headroom's inputs, whose
    per-stage peaks (``stage_peaks``) size each stage's scale; ``peaks`` gives those peaks directly instead (a
    manifest's, when a deployment is derived again). The deployment's size is computed first
    (``sizing.deployment_size``): one that would need more than ``max_memory`` bytes (default: the memory available
    now) is refused with its numbers before anything is built (``sized``: the caller has checked it already).
    """
    calibrated = calibration_input is not None or peaks is not None
    precision = precision_of(graph, wide_weights, headroom, weight_exp, calibrated)
    if (precision["headroom"] == "data") != calibrated:
        raise DataError("the data headroom needs calibration inputs (--calibration-input X.npy, calibration_input=)"
                        if not calibrated else f"calibration inputs size the data headroom; the headroom asked for "
                        f"is {precision['headroom']!r} (ask for 'data' or 'auto', or leave the inputs out)")
    if precision["headroom"] == "data" and not margin >= 1.0:
        raise DataError(f"the data headroom's margin must be ≥ 1 (a finite number), got {margin}")
    if not sized:
        check_feasible(deployment_size(graph, interpretation, precision["synapse_sets"]), max_memory)
    net = lower(graph, interpretation, T)
    if not graph_meta(graph).own:
        interpretation = interpretation or recorded_interpretation(graph) or Interpretation()
    else:
        interpretation = None  # our own graph: its metadata fixes the semantics
    if net.T is None:
        raise DeployError("the number of time steps T is unknown (a foreign graph carries none): pass T / --T")
    calibration = None
    if precision["headroom"] == "data":
        precision["margin"] = float(margin)
        if peaks is None:
            x = check_calibration_input(calibration_input, net, input_range)
            peaks, calibration = stage_peaks(net, x), describe(x)
    qnet = quantize(net, net.T, input_range, input_frac_bits, weight_exp, spike_bounds,
                    precision["synapse_sets"] == 2, precision["headroom"], peaks, margin)
    manifest = _manifest(net, qnet, interpretation)
    manifest["precision"] = precision
    if calibration is not None:
        manifest["calibration"] = calibration
    return Deployment(net, qnet, manifest)


def check_replaceable(out_dir: str | os.PathLike) -> None:
    """A deploy directory is written in place of nothing, an empty directory or an earlier deploy directory (one
    with ``manifest.json``); anything else at ``out_dir`` would be replaced whole, so it is refused."""
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise OutputError(f"{out}: exists and is not a deploy directory (no manifest.json); a deploy directory "
                          f"replaces its destination whole, so name a new or empty directory")


def check_size(graph: nir.NIRGraph, interpretation: Interpretation | None = None, wide_weights: bool | None = None,
               max_memory: float | None = None) -> None:
    """Refuse, with its numbers, a deployment of ``graph`` that would need more than ``max_memory`` bytes (default:
    the memory available now); callers check this before they measure anything on data."""
    check_feasible(deployment_size(graph, interpretation, precision_of(graph, wide_weights)["synapse_sets"]),
                   max_memory)


def export_loihi(graph_or_path: Any, out_dir: str | os.PathLike, interpretation: Interpretation | None = None,
                 T: int | None = None, source: str | os.PathLike | None = None,
                 spike_bounds: dict[str, float] | None = None, max_memory: float | None = None,
                 wide_weights: bool | None = None, headroom: str | None = None, input_range: float = 1.0,
                 calibration_input: Any = None, margin: float = DATA_MARGIN,
                 calibration_source: str | None = None, sized: bool = False) -> Path:
    """Write the deploy directory for a NIR graph, a ``SpikingNet``, a ``.nir`` file or a ``model.pt``; return its
    path. ``source``: the file a given graph came from (the manifest records its path and sha256).
    ``spike_bounds`` (the largest graded spike per EM-PF layer; None: their worst case), ``wide_weights``,
    ``headroom``, ``input_range`` (the largest |x| the deployment takes), ``calibration_input`` (x [T, batch,
    *input_shape]), ``margin``, ``sized`` (``check_size`` was called): see ``deployment_from_graph``;
    ``calibration_source``: what the calibration inputs are, for the manifest. Nothing here loads a dataset:
    ``snnchip.workflows.model_data`` measures a model.pt's bounds and inputs on its training set
    (``snnchip.export_loihi`` measures, then calls this). The manifest seals the files and its own values
    (``export.seal``)."""
    check_replaceable(out_dir)
    graph = read_model_graph(graph_or_path)
    origin = source or graph_or_path
    dep = deployment_from_graph(graph, interpretation, T, spike_bounds=spike_bounds, max_memory=max_memory,
                                wide_weights=wide_weights, headroom=headroom, input_range=input_range,
                                calibration_input=calibration_input, margin=margin, sized=sized)
    if isinstance(origin, (str, os.PathLike)) and Path(origin).is_file():
        dep.manifest["source"] = {"path": str(origin), "sha256": sha256_file(origin)}
    if calibration_source is not None and "calibration" in dep.manifest:
        dep.manifest["calibration"]["data"] = calibration_source
    arrays = {}
    for q in dep.qnet.stages:
        arrays[f"{q.name}/bias"] = q.bias
        for i, p in enumerate(q.inputs):
            arrays.update({**_pack_weight(f"{q.name}/in{i}/weight", p.weight),
                           **({} if p.low is None else _pack_weight(f"{q.name}/in{i}/weight_low", p.low))})
        if q.tables is not None:
            arrays.update({f"{q.name}/qtable/{qk}": _pack_table(q.tables[qk], q.out_shape) for _, qk in EMPF_TABLES})
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        (tmp / "model.nir").write_bytes(nir_bytes(graph))
        np.savez(tmp / "params.npz", **arrays)
        (tmp / "manifest.json").write_text(sealed_manifest_json(tmp, dep.manifest), encoding="utf-8")
    return out


def load_deploy(deploy_dir: str | os.PathLike, allow_edited: bool = False) -> Deployment:
    """Read a deploy directory; a missing or corrupt file, a file or value that no longer matches the manifest's
    seal (unless ``allow_edited``: the ``Deployment``'s ``seal`` then says what was edited), or a value outside
    Loihi 2's limits (``loihi_limits``) raises ``DeployError`` naming the file, the stage and the field."""
    path, man = open_deploy_dir(deploy_dir, FILES, "loihi")
    where = path / "manifest.json"
    version = check_format(man, where, FORMAT["name"], READABLE_VERSIONS)
    sealed = check_seal(path, man, version)
    if not allow_edited:
        refuse_edited(path, sealed)
    check_manifest(man, str(where))
    arrays = read_params(path / "params.npz", "loihi")
    floats = _float_stages(path, man) if version >= FLOAT_FROM_GRAPH else None
    pairs = []
    for i, s in enumerate(man["stages"]):
        at = f"{where}: stage {i + 1} ({s['name']!r})"
        try:
            pairs.append(_read_stage(s, arrays, version, i, man["stages"][i - 1]["name"] if i else INPUT,
                                     None if floats is None else floats[i]))
        except KeyError as exc:
            raise DeployError(f"{at}: no {exc} in the manifest entry or params.npz; re-export the directory") from None
        except (TypeError, ValueError, AttributeError) as exc:  # a field of the wrong type, a CSR triple scipy refuses
            raise DeployError(f"{at}: invalid entry or arrays ({type(exc).__name__}: {exc})") from None
        st, q = pairs[-1]
        check_neuron(at, q, st)
        if s.get("process", neuron_process(q)) != neuron_process(q):
            raise DeployError(f"{at}: process = {s['process']!r} is invalid: this stage runs on {neuron_process(q)}")
    sizes = {INPUT: math.prod(man["input"]["shape"]), **{q.name: q.size for _, q in pairs}}
    for i, (st, q) in enumerate(pairs):
        if floats is not None:
            _check_float_stage(f"{where}: stage {i + 1} ({q.name!r})", man["stages"][i], st)
        check_synapses(f"{where}: stage {i + 1} ({q.name!r})", f"{path / 'params.npz'}: stage {i + 1} ({q.name!r})",
                       q, st, man["T"], sizes)
    inp = man["input"]
    output = man.get("output", pairs[-1][0].name)
    net = LoweredNet(tuple(inp["shape"]), tuple(st for st, _ in pairs), man["T"], man["encoding"], output)
    qnet = QuantizedNet(net.input_shape, tuple(q for _, q in pairs), man["T"], man["encoding"], inp["frac_bits"],
                        inp["range"], output, man["quantization"])
    _check_schedule(where, net, qnet)
    return Deployment(net, qnet, man, path, sealed)


def _float_stages(path: Path, man: dict[str, Any]) -> tuple[Stage, ...]:
    """The float stages of a version ≥ 7 directory: its model.nir lowered again with the manifest's interpretation
    and T, as the export lowered it; they must be the manifest's stages, one for one."""
    where = path / "model.nir"
    interp = man.get("interpretation")
    try:
        net = lower(read_graph(where), Interpretation(**interp) if isinstance(interp, dict) else None, man["T"])
    except (SnnchipError, TypeError) as exc:
        raise DeployError(f"{where}: the float graph does not lower again ({exc})") from None
    names = [st.name for st in net.stages]
    if names != [s["name"] for s in man["stages"]]:
        raise DeployError(f"{where}: the graph lowers to the stages {names}, not the manifest's "
                          f"{[s['name'] for s in man['stages']]}")
    return net.stages


def _check_float_stage(at: str, s: dict[str, Any], stage: Stage) -> None:
    """The lowered float stage is the one the manifest entry describes (its kind, shape, neuron and projections)."""
    fields = {"kind": stage.kind, "out_shape": list(stage.out_shape), "lam": stage.lam, "theta": stage.theta,
              "reset_by": stage.reset_by, "max_spikes": stage.max_spikes,
              "inputs": [(p.source, p.delay, p.synapse) for p in stage.inputs]}
    entry = {**{k: s.get(k) for k in fields if k != "inputs"}, "max_spikes": s.get("max_spikes", 1),
             "inputs": [(e["source"], e["delay"], e["synapse"]) for e in s["inputs"]]}
    for key, value in fields.items():
        if entry[key] != value:
            raise DeployError(f"{at}: {key} = {entry[key]!r}, but model.nir lowers to {value!r}")


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


def _read_stage(s: dict[str, Any], arrays: dict[str, np.ndarray], version: int, index: int, previous: str,
                lowered: Stage | None = None) -> tuple[Stage, QStage]:
    """One manifest entry and its arrays as (float ``Stage``, integer ``QStage``); the float stage is ``lowered``
    (version ≥ 7, checked against the entry) or read from the arrays; a version 1/2 entry is the chain stage it was:
    one dense/sparse input from the stage before, latency index + 1."""
    name, graded = s["name"], s["kind"] == NeuronKind.EMPF
    if version >= 3:
        entries = [(e, f"{name}/in{i}") for i, e in enumerate(s["inputs"])]
        fields = {k: s[k] for k in _STAGE_KEYS}
    else:
        entries = [({"source": previous, "weight_exp": s["weight_exp"], "num_message_bits": s["num_message_bits"],
                     "delay": 0, "lava_delay": 0, "synapse": s.get("synapse", SynapseLayout.DENSE)}, name)]
        fields = {k: s[k] for k in _STAGE_KEYS if k in s}
        fields.update(latency=index + 1, lam_syn=s.get("lam_syn", 0.0))
        if s["kind"] == NeuronKind.SRM:  # versions 1/2 stored the current's factor as 4096 − du
            fields.update(reset="zero", du=int(s["du"]) - 1)
        if s["kind"] == NeuronKind.READOUT:  # versions 1/2 stored vth 0 (their readout process had none); a LIF fires
            fields.update(vth=NEVER_FIRES)
    if version < 6 and any(e["synapse"] == SynapseLayout.CONV for e, _ in entries):
        raise ValueError(f"synapse 'conv' needs format version 6, the directory says {version}")
    q_inputs = tuple(QProjection(e["source"], _unpack_weight(arrays, f"{key}/weight", e["synapse"], e.get("geometry")),
                                 e["weight_exp"], e["num_message_bits"], e["delay"], e["lava_delay"],
                                 *(() if e.get("low_exp") is None else
                                   (_unpack_weight(arrays, f"{key}/weight_low", e["synapse"], e.get("geometry")),
                                    e["low_exp"])))
                     for e, key in entries)
    out_shape = tuple(s["out_shape"])
    if lowered is not None:  # checked against the entry once the entry's values are known to be valid
        stage = lowered
    else:
        f_inputs = tuple(Projection(e["source"], _unpack_weight(arrays, f"{key}/weight_float", e["synapse"],
                                                                e.get("geometry")), e["delay"]) for e, key in entries)
        stage = Stage(name=name, kind=s["kind"], inputs=f_inputs, bias=arrays[f"{name}/bias_float"],
                      out_shape=out_shape, lam=s["lam"], theta=s["theta"], reset=fields["reset"], spike=s["spike"],
                      lam_syn=fields.get("lam_syn", 0.0), reset_by=s.get("reset_by"),
                      tables={fk: arrays[f"{name}/table/{fk}"] for fk, _ in EMPF_TABLES} if graded else None)
    q = QStage(**fields, inputs=q_inputs, out_shape=out_shape, bias=arrays[f"{name}/bias"],
               max_spikes=s.get("max_spikes", 1), message_cap=s.get("message_cap", V_MAX),
               tables={qk: _unpack_table(arrays[f"{name}/qtable/{qk}"], math.prod(out_shape)) for _, qk in EMPF_TABLES}
               if graded else None)
    return stage, q
