"""Write a network as NIR exactly per docs/nir-schema.md (schema version 1).

Neurons use standard NIR nodes with the mappings of ``snnchip.discretize``, so a plain NIR reader gets as close
as NIR allows: our LIF (``snnchip.neurons.lif_step`` with a = λ) in the forward-Euler mapping for dt = 1
(``euler_lif_fields``: τ = 1/(1 − λ), r = τ, v_leak = 0, v_threshold = θ, v_reset = 0; λ = 1 becomes
``nir.IF(r=1)``); the readout o[t] = W·s[t] + b as an Affine followed by ``nir.I(r=1)`` whose state is
Σ_{τ≤t} o[τ]. The exact semantics (λ, θ, reset, spike comparison) travel in ``metadata["snnchip"]``;
``interpretation_report`` lists what a reader that ignores it gets wrong.

The SRM neuron of event-driven BP (kind ``srm``; ``snnchip.neurons.cuba_lif_step`` with both traces reset) is
written as ``nir.CubaLIF`` in the *exact* (zero-order hold) mapping, dt = 1 (``srm_cubalif_fields``), so that a
reader discretising exactly gets λ_syn, the input scale and λ_mem (``srm_decays``) and a unit drive; what plain
NIR cannot say (the current reset, u ≥ θ) is in the metadata.

The EM-PF neuron (kind ``empf``, ``snnchip.neurons.empf_step`` with the folded tables of ``snnchip.train.empf``)
has no NIR node: no NIR neuron has per-step parameters, graded spikes or a reset offset. It is written as the
neuron of the first step, in the LIF Euler mapping above with the input scale in r (``euler_lif_fields(λ̂[1],
a[1])``; ``nir.IF(r=a[1])`` when λ̂[1] ≥ 1 anywhere: no positive τ makes a leak ≥ 1), per element (channels
broadcast over H, W), and marked with ``metadata["snnchip"]`` kind ``empf``: the [T, C] arrays ``lam``, ``theta``,
``input_scale``, ``reset_offset``, ``T`` and ``graded: True``. Our readers run the recursion from the metadata or
refuse the node; ``interpretation_report`` says what a plain reader gets wrong.
Binary synaptic layers write their ±1 weights (±κ_k along output channel k with ``binary_scale``) as plain
weights with ``metadata["snnchip"] = {"version": 1, "layer": name, "binary": True}`` (1 bit per weight, and a
scale per channel; for the Loihi stage).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from snnchip.atomic import write_bytes_atomic
from snnchip.discretize import decay, euler_lif_fields, lif_coefficients, srm_cubalif_fields, srm_decays
from snnchip.errors import SpecError, UnsupportedNodeError
from snnchip.spec import XYLO_MAX_SPIKES, Interpretation, LayerSpec, NetworkSpec, NeuronKind, NeuronSpec

from .nir_graph import check_graph
from .nir_meta import EMPF_ARRAYS, SCHEMA_VERSION, graph_meta, recorded_interpretation, snnchip_semantics
from .nir_read import read_graph

Params = dict[str, dict[str, np.ndarray]]


def _param(params: Params, key: str, field: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        value = np.asarray(params[key][field], dtype=np.float32)
    except KeyError:
        raise SpecError(f"parameters lack {key}.{field}; pass plain_parameters(model) of the same spec") from None
    if value.shape != shape:
        raise SpecError(f"parameter {key}.{field} has shape {value.shape}, the spec needs {shape}")
    return value


def _synapse(layer: LayerSpec, in_shape: tuple[int, ...], out_shape: tuple[int, ...], params: Params) -> nir.NIRNode:
    if layer.op == "linear":
        weight = _param(params, layer.name, "weight", (out_shape[0], in_shape[0]))
        if not layer.bias:
            return nir.Linear(weight=weight)
        return nir.Affine(weight=weight, bias=_param(params, layer.name, "bias", out_shape))
    if layer.op == "conv2d":
        k = layer.kernel_size
        weight = _param(params, layer.name, "weight", (out_shape[0], in_shape[0], k, k))
        bias = _param(params, layer.name, "bias", out_shape[:1]) if layer.bias else np.zeros(out_shape[0], np.float32)
        return nir.Conv2d(input_shape=in_shape[1:], weight=weight, stride=layer.effective_stride,
                          padding=layer.padding, dilation=1, groups=1, bias=bias)
    if layer.op in ("avgpool", "sumpool"):
        pool = nir.AvgPool2d if layer.op == "avgpool" else nir.SumPool2d
        return pool(kernel_size=np.array([layer.kernel_size] * 2), stride=np.array([layer.effective_stride] * 2),
                    padding=np.array([layer.padding] * 2))
    return nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)


def _neuron(layer: LayerSpec, shape: tuple[int, ...], params: Params, T: int) -> nir.NIRNode:
    neuron: NeuronSpec = layer.neuron
    meta = {"snnchip": {"version": SCHEMA_VERSION, "layer": layer.name, "kind": neuron.kind, "lam": neuron.lam,
                        "theta": neuron.theta, "reset": neuron.reset, "spike": neuron.spike,
                        "discretization": "euler", "dt": 1.0}}
    ones = np.ones(shape, np.float32)
    if neuron.kind == NeuronKind.READOUT:
        return nir.I(r=ones, metadata=meta)
    if neuron.kind == NeuronKind.SRM:
        return _srm(neuron, meta, ones)
    if neuron.kind == NeuronKind.XYLO:
        return _xylo(neuron, meta, ones)
    if neuron.kind == NeuronKind.EMPF:
        return _empf(layer, shape, params, T)
    if neuron.kind != NeuronKind.LIF:
        raise UnsupportedNodeError(f"layer {layer.name!r}: NIR export of neuron kind {neuron.kind!r} is not "
                                   "defined yet (docs/nir-schema.md); it lands with its issue")
    if neuron.lam == 1.0:
        return nir.IF(r=ones, v_threshold=ones * neuron.theta, v_reset=0 * ones, metadata=meta)
    tau, r = euler_lif_fields(neuron.lam)
    return nir.LIF(tau=ones * tau, r=ones * r, v_leak=0 * ones, v_threshold=ones * neuron.theta, v_reset=0 * ones,
                   metadata=meta)


def _srm(neuron: NeuronSpec, meta: dict, ones: np.ndarray) -> nir.CubaLIF:
    """The SRM neuron as ``nir.CubaLIF`` (exact mapping; module docstring, docs/nir-schema.md)."""
    p = srm_decays(neuron.tau_m, neuron.tau_s)
    meta["snnchip"].update(lam=p.lam_mem, lam_syn=p.lam_syn, input_scale=p.input_scale, tau_m=neuron.tau_m,
                           tau_s=neuron.tau_s, reset="zero", reset_current=True, discretization="exact")
    fields = {k: ones * v for k, v in srm_cubalif_fields(neuron.tau_m, neuron.tau_s).items()}
    return nir.CubaLIF(**fields, v_leak=0 * ones, v_threshold=ones * neuron.theta, v_reset=0 * ones, metadata=meta)


def _xylo(neuron: NeuronSpec, meta: dict, ones: np.ndarray) -> nir.CubaLIF:
    """Xylo's neuron as ``nir.CubaLIF`` (Euler, dt = 1: τ_syn = 1/(1 − λ_syn), w_in = τ_syn, τ_mem = 1/(1 − λ),
    r = τ_mem, so the drive is unit), several spikes per step in metadata (``max_spikes``)."""
    tau_mem, r = euler_lif_fields(neuron.lam)
    tau_syn, w_in = euler_lif_fields(neuron.lam_syn)
    meta["snnchip"].update(lam_syn=neuron.lam_syn, max_spikes=XYLO_MAX_SPIKES)
    return nir.CubaLIF(tau_syn=ones * tau_syn, tau_mem=ones * tau_mem, r=ones * r, w_in=ones * w_in, v_leak=0 * ones,
                       v_threshold=ones * neuron.theta, v_reset=0 * ones, metadata=meta)


def _empf(layer: LayerSpec, shape: tuple[int, ...], params: Params, T: int) -> nir.NIRNode:
    """The folded EM-PF neuron as the neuron of its first step (module docstring), marked kind ``empf``."""
    if layer.options.get("empf") != "folded":
        raise SpecError(f"layer {layer.name!r}: export takes the folded EM-PF form; pass plain_spec(spec) and "
                        f"plain_parameters(model) (got empf={layer.options.get('empf')!r})")
    tables = {k: _param(params, layer.name, k, (T, shape[0])) for k in EMPF_ARRAYS}
    meta = {"snnchip": {"version": SCHEMA_VERSION, "layer": layer.name, "kind": NeuronKind.EMPF, "T": T, "graded": True,
                        "reset": "subtract", "spike": "ge", "discretization": "euler", "dt": 1.0, **tables}}
    first = {k: np.broadcast_to(v[0].reshape((-1,) + (1,) * (len(shape) - 1)), shape).astype(np.float32)
             for k, v in tables.items()}
    zeros = np.zeros(shape, np.float32)
    lam, scale, theta = first["lam"], first["input_scale"], first["theta"]
    if np.any(lam >= 1.0):
        return nir.IF(r=scale, v_threshold=theta, v_reset=zeros, metadata=meta)
    tau = euler_lif_fields(lam.astype(np.float64))[0].astype(np.float32)
    return nir.LIF(tau=tau, r=scale * tau, v_leak=zeros, v_threshold=theta, v_reset=zeros, metadata=meta)


def _binary_meta(node: nir.NIRNode, layer: LayerSpec, params: Params) -> nir.NIRNode:
    """Mark a binary synaptic layer: its weight must be exactly ±1 (sign(W_f)), or with ``binary_scale`` ±κ_k with
    one κ_k > 0 per output channel k (1 bit per weight and a scale per channel)."""
    if not layer.options.get("binary"):
        return node
    weight = np.abs(np.asarray(params[layer.name]["weight"]))
    kappa = weight.reshape(len(weight), -1)[:, :1].reshape((-1,) + (1,) * (weight.ndim - 1)) \
        if layer.options.get("binary_scale") else np.ones(1, weight.dtype)
    if not (np.all(weight == kappa) and np.all(kappa > 0)):
        raise SpecError(f"layer {layer.name!r} is binary but its exported weight is not exactly "
                        + ("±κ_k per output channel" if layer.options.get("binary_scale") else "±1")
                        + "; pass plain_parameters(model)")
    node.metadata = {"snnchip": {"version": SCHEMA_VERSION, "layer": layer.name, "binary": True}}
    return node


UNEXPORTABLE_OPTIONS = {
    "seca": "SECA attention (an input-dependent gate with no NIR node)",
}


def _refuse_unexportable(layer: LayerSpec) -> None:
    """Training parametrisations that fold away are gone after ``plain_spec``; these cannot be expressed."""
    for option, why in UNEXPORTABLE_OPTIONS.items():
        if layer.options.get(option) not in (None, "none"):
            raise UnsupportedNodeError(f"layer {layer.name!r} has {why}; NIR export supports sequential networks "
                                       "with feedback edges and residual shortcuts")


def spec_to_nir(spec: NetworkSpec, params: Params) -> nir.NIRGraph:
    """The NIR graph of ``spec`` with folded ``params`` (``plain_parameters(model)``), per docs/nir-schema.md."""
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(spec.input_shape)})}
    edges: list[tuple[str, str]] = []
    prev, in_shape = "input", spec.input_shape
    neuron_of: dict[str, str] = {}
    for layer, out_shape in zip(spec.layers, spec.shapes(), strict=True):
        _refuse_unexportable(layer)
        nodes[layer.name] = _binary_meta(_synapse(layer, in_shape, out_shape, params), layer, params)
        edges.append((prev, layer.name))
        prev, in_shape = layer.name, out_shape
        if layer.neuron is not None:
            neuron_of[layer.name] = f"{layer.name}_neuron"
            nodes[neuron_of[layer.name]] = _neuron(layer, out_shape, params, spec.T)
            edges.append((prev, neuron_of[layer.name]))
            prev = neuron_of[layer.name]
    shapes = dict(zip((la.name for la in spec.layers), spec.shapes(), strict=True))
    for layer in spec.layers:  # a residual shortcut: the source's output joins the layer's current at its neuron
        if "shortcut" not in layer.options:
            continue
        src = neuron_of.get(layer.options["shortcut"], layer.options["shortcut"])
        if "shortcut_weight" in params.get(layer.name, {}):
            src_shape = shapes[layer.options["shortcut"]]
            stride = src_shape[1] // shapes[layer.name][1]
            weight = _param(params, layer.name, "shortcut_weight", (shapes[layer.name][0], src_shape[0], 1, 1))
            name = f"{layer.name}_shortcut"
            nodes[name] = nir.Conv2d(input_shape=src_shape[1:], weight=weight, stride=(stride, stride),
                                     padding=(0, 0), dilation=1, groups=1, bias=np.zeros(weight.shape[0], np.float32))
            edges += [(src, name), (name, neuron_of[layer.name])]
        elif "shortcut_scale" in params.get(layer.name, {}):
            shape = shapes[layer.name]
            scale = _param(params, layer.name, "shortcut_scale", (shape[0],))
            name = f"{layer.name}_shortcut"
            nodes[name] = nir.Scale(scale=np.ascontiguousarray(
                np.broadcast_to(scale.reshape(-1, *([1] * (len(shape) - 1))), shape), dtype=np.float32))
            edges += [(src, name), (name, neuron_of[layer.name])]
        else:
            edges.append((src, neuron_of[layer.name]))
    for fb in spec.feedback:
        if len(shapes[fb.src]) != 1 or len(shapes[fb.dst]) != 1:
            raise UnsupportedNodeError(f"feedback {fb.key}: NIR 1.0.8 has no reshape node, so feedback is exported "
                                       f"only between flat layers (got {shapes[fb.src]} -> {shapes[fb.dst]})")
        name = f"feedback_{fb.key}"
        weight = _param(params, f"feedback.{fb.key}", "weight", (shapes[fb.dst][0], shapes[fb.src][0]))
        nodes[name] = nir.Linear(weight=weight)
        edges += [(neuron_of[fb.src], name), (name, neuron_of[fb.dst])]
    nodes["output"] = nir.Output(output_type={"output": np.array([spec.num_classes])})
    edges.append((prev, "output"))
    meta = {"snnchip": {"version": SCHEMA_VERSION, "T": spec.T, "encoding": spec.encoding, "method": spec.method,
                        "model": spec.model, "spec_json": spec.to_json()}}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    check_graph(graph, where=f"export of {spec.model!r}")
    return graph


def nir_bytes(graph: nir.NIRGraph) -> memoryview:
    """``graph`` as the bytes of a NIR HDF5 file (serialized in memory: HDF5 errors while writing a file on a full
    disk surface as noise at garbage collection instead of an exception)."""
    buf = io.BytesIO()
    nir.write(buf, graph)
    return buf.getbuffer()


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` as a NIR file, atomically."""
    write_bytes_atomic(path, nir_bytes(graph))


def model_graph(source: Any, interpretation: Interpretation | None = None) -> nir.NIRGraph:
    """The NIR graph of an in-memory ``SpikingNet``, a ``model.pt`` (via ``snnchip.train``) or a ``.nir`` file
    (read and checked).

    For a foreign ``.nir`` (no ``metadata["snnchip"]``) and a given ``interpretation``, the
    interpretation is recorded in ``graph.metadata["snnchip_interpretation"]`` so that every later
    consumer reads the graph the same way (docs/nir-schema.md, "Foreign graphs").
    """
    from snnchip.train import SpikingNet, load_model, plain_parameters, plain_spec

    if isinstance(source, SpikingNet):
        return spec_to_nir(plain_spec(source.spec), plain_parameters(source))
    path = Path(source)
    if path.suffix == ".pt":
        model, checkpoint = load_model(path)
        return spec_to_nir(plain_spec(checkpoint.spec), plain_parameters(model))
    graph = read_graph(path)
    if interpretation is not None and not graph_meta(graph).own:
        graph.metadata["snnchip_interpretation"] = interpretation.record()
    return graph


def export_to_nir(model: Any, path: str | os.PathLike | None = None) -> nir.NIRGraph:
    """The NIR graph of a ``SpikingNet`` (its folded weights, docs/nir-schema.md) or a ``model.pt``; written to
    ``path`` (atomically) when given."""
    graph = model_graph(model)
    if path is not None:
        write_nir(graph, path)
    return graph


def interpretation_report(graph: nir.NIRGraph) -> list[str]:
    """Per neuron node, what a reader that follows plain NIR (ignoring ``metadata["snnchip"]``) gets wrong."""
    checked = check_graph(graph)
    lines = []
    for name in checked.order:
        meta = snnchip_semantics(checked.nodes[name], name)
        if meta is None or "kind" not in meta:
            continue
        lines.append(f"{name} ({type(checked.nodes[name]).__name__}, layer {meta['layer']}, {meta['kind']}):")
        lines += [f"  - {issue}" for issue in _issues(meta)]
    if not lines:
        recorded = recorded_interpretation(graph)
        lines.append("foreign graph (no snnchip metadata): " + (
            f"recorded interpretation {recorded.describe()}" if recorded else
            "each reader applies its own interpretation"))
    if checked.back_edges:
        lines.append("recurrent edges close cycles: we deliver the previous step's spikes (one step delay); "
                     "NIR does not define the timing of a cycle")
    return lines


def _issues(meta: dict[str, Any]) -> list[str]:
    if meta["kind"] == NeuronKind.READOUT:
        return ["integrator state = cumulative readout Σ o[t]; a reader wanting o[t] must difference it; "
                "exact under Euler with dt = 1 (r = 1)"]
    if meta["kind"] == NeuronKind.EMPF:
        return _empf_issues(meta)
    if meta["kind"] == NeuronKind.XYLO:
        return [f"up to {meta['max_spikes']} spikes per step (Xylo's neuron) stored only in metadata: a plain NIR "
                "reader fires once per step", "subtractive reset (v -= θ per spike) stored only in metadata"]
    if meta["kind"] == NeuronKind.SRM:
        return ["SRM (event-driven BP) as CubaLIF in the exact mapping: read it with --discretization exact; an "
                "Euler reader decays by 1 − 1/τ instead of e^(−1/τ) and misses ε",
                "the synaptic current is reset with v at a spike (reset_current) only in metadata: a plain NIR "
                "reader keeps the current",
                f"spike on u {'>=' if meta['spike'] == 'ge' else '>'} θ = {float(meta['theta']):g}; NIR compares v > θ"]
    lam, theta = float(meta["lam"]), float(meta["theta"])
    issues = []
    if meta["reset"] == "subtract":
        issues.append(f"subtractive reset (v -= θ = {theta:g}) stored only in metadata: a plain NIR reader "
                      "resets v to v_reset = 0")
    if meta["spike"] == "ge":
        issues.append(f"spike on u >= θ; NIR compares v > θ (differs only when u == {theta:g} exactly)")
    if lam == 1.0:
        issues.append("λ = 1 written as IF (r = 1): exact under any dt = 1 discretization")
    else:
        tau, r = euler_lif_fields(lam)
        back = float(decay(tau, Interpretation()))
        exactness = "exact" if back == lam else f"off by {abs(back - lam):.1e}"
        d, b, _ = (float(v) for v in lif_coefficients(tau, r, 0.0, Interpretation(discretization="exact")))
        issues.append(f"λ = {lam:g} as τ = {tau:.6g}: Euler dt = 1 round trip 1 − 1/τ is {exactness}; an "
                      f"exact-exponential reader decays by e^(−1/τ) = {d:.6g} and scales the input by "
                      f"r(1 − e^(−1/τ)) = {b:.6g} instead of 1")
    return issues


def _empf_issues(meta: dict[str, Any]) -> list[str]:
    tables = {k: np.asarray(meta[k], np.float64) for k in EMPF_ARRAYS}
    T = int(meta["T"])
    varies = [k for k, v in tables.items() if T > 1 and np.any(v != v[:1])]
    lam0 = tables["lam"][0]
    return [
        "EM-PF fires graded spikes s = ReLU(m − θ̂[t]) (a float, not 0/1) and subtracts s from m; a plain NIR "
        "reader emits 0/1 spikes on v > θ and resets v to v_reset = 0",
        f"per-step parameters (T = {T}) only in metadata; the NIR fields hold step 1's λ̂, a, θ̂"
        + (f"; {', '.join(varies)} change over the steps" if varies else " (constant over the steps here)"),
        "reset offset r[t] (added to v after firing; max |r| = "
        f"{float(np.abs(tables['reset_offset']).max()):.3g}) has no NIR field: a plain reader drops it",
        ("λ̂[1] ≥ 1 on some channels: written as IF (no decay) because no LIF τ > 0 gives a leak ≥ 1"
         if np.any(lam0 >= 1.0) else
         f"λ̂[1] in [{float(lam0.min()):.3g}, {float(lam0.max()):.3g}] as LIF τ = 1/(1 − λ̂[1]), r = a[1]·τ: "
         "step 1 is right only under Euler with dt = 1")
        + ("; λ̂ = 0 (parallel variant): no membrane memory" if np.all(tables["lam"] == 0) else ""),
    ]
