"""Write a network as NIR exactly per docs/nir-schema.md (schema version 1).

Neurons use standard NIR nodes with the forward-Euler mapping for dt = 1, so a plain NIR reader
gets as close as NIR allows: the LIF u[t] = λ·v[t−1] + I[t] is written as
τ·dv/dt = (v_leak − v) + r·I with τ = 1/(1 − λ), r = τ, v_leak = 0 (Euler: v += (−v + τ·I)/τ),
v_threshold = θ, v_reset = 0; λ = 1 becomes ``nir.IF(r=1)``; the readout o[t] = W·s[t] + b is an
Affine followed by ``nir.I(r=1)`` whose state is Σ_{τ≤t} o[τ]. The exact semantics (λ, θ, reset,
spike comparison) travel in ``metadata["snnchip"]``; ``interpretation_report`` lists what a reader
that ignores it gets wrong.

The SRM neuron of event-driven BP (kind ``srm``, Zhu et al. 2022, S14–S16; ``snnchip.train.edbp``) is a
current-based LIF with reset of current and voltage: i[t] = λ_syn·i[t−1] + c·I[t]; v[t] = λ_mem·v[t−1] + i[t];
s = H(v − θ); i, v ← 0 at a spike, with λ_syn = e^{−1/τs}, λ_mem = e^{−1/τm}, c = τm/(τm − τs)·(λ_mem − λ_syn)
(exactly the kernel ε of S16). It is written as ``nir.CubaLIF`` in the *exact* (zero-order hold) mapping, dt = 1:
tau_syn = τs, tau_mem = τm, w_in = c/(1 − λ_syn), r = 1/(1 − λ_mem), v_leak = 0, v_threshold = θ, v_reset = 0,
so that a reader discretising exactly (d = e^{−1/τ}: i = d_syn·i + (1 − d_syn)·w_in·x, v = d·v + (1 − d)·r·i) gets
λ_syn, c, λ_mem and a unit drive; what plain NIR cannot say (the current reset, u ≥ θ) is in the metadata.

The EM-PF neuron (kind ``empf``, folded form of ``snnchip.train.empf``: m[t] = λ̂[t]·v[t−1] + a[t]·I[t];
s[t] = ReLU(m[t] − θ̂[t]), a float; v[t] = m[t] − s[t] + r[t]) has no NIR node: no NIR neuron has per-step
parameters, graded spikes or a reset offset. It is written as the neuron of the first step, in the LIF Euler
mapping above with the input scale in r: ``nir.LIF(tau=1/(1 − λ̂[1]), r=a[1]·tau, v_leak=0, v_threshold=θ̂[1],
v_reset=0)`` (``nir.IF(r=a[1])`` when λ̂[1] = 1 everywhere, or ≥ 1 anywhere: no positive τ makes a leak ≥ 1),
per element (channels broadcast over H, W), and marked with ``metadata["snnchip"]`` kind ``empf``: the [T, C]
arrays ``lam``, ``theta``, ``input_scale``, ``reset_offset``, ``T`` and ``graded: True``. Our readers run the
recursion from the metadata or refuse the node; ``interpretation_report`` says what a plain reader gets wrong.
Binary synaptic layers write their ±1 weights as plain weights with ``metadata["snnchip"] = {"version": 1,
"layer": name, "binary": True}`` (1 bit per weight; for the Loihi stage).
"""

from __future__ import annotations

import argparse
import io
import math
import os
from pathlib import Path
from typing import Any

import nir
import numpy as np

from snnchip.atomic import write_bytes_atomic
from snnchip.errors import SpecError, UnsupportedNodeError
from snnchip.spec import Interpretation, LayerSpec, NetworkSpec, NeuronSpec

from .nir_import import (
    EMPF_ARRAYS,
    SCHEMA_VERSION,
    check_graph,
    read_graph,
    recorded_interpretation,
    snnchip_semantics,
)

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
    if neuron.kind == "readout":
        return nir.I(r=ones, metadata=meta)
    if neuron.kind == "srm":
        return _srm(neuron, meta, ones)
    if neuron.kind == "empf":
        return _empf(layer, shape, params, T)
    if neuron.kind != "lif":
        raise UnsupportedNodeError(f"layer {layer.name!r}: NIR export of neuron kind {neuron.kind!r} is not "
                                   "defined yet (docs/nir-schema.md); it lands with its issue")
    if neuron.lam == 1.0:
        return nir.IF(r=ones, v_threshold=ones * neuron.theta, v_reset=0 * ones, metadata=meta)
    tau = ones / (1.0 - neuron.lam)
    return nir.LIF(tau=tau, r=tau.copy(), v_leak=0 * ones, v_threshold=ones * neuron.theta, v_reset=0 * ones,
                   metadata=meta)


def _srm(neuron: NeuronSpec, meta: dict, ones: np.ndarray) -> nir.CubaLIF:
    """The SRM neuron as ``nir.CubaLIF`` (exact mapping; module docstring, docs/nir-schema.md)."""
    from snnchip.train.edbp import SRM

    p = SRM.from_spec(neuron)
    meta["snnchip"].update(lam=p.lam_mem, lam_syn=p.lam_syn, input_scale=p.input_scale, tau_m=neuron.tau_m,
                           tau_s=neuron.tau_s, reset="zero", reset_current=True, discretization="exact")
    return nir.CubaLIF(tau_syn=ones * neuron.tau_s, tau_mem=ones * neuron.tau_m, r=ones / (1.0 - p.lam_mem),
                       v_leak=0 * ones, v_threshold=ones * neuron.theta, v_reset=0 * ones,
                       w_in=ones * (p.input_scale / (1.0 - p.lam_syn)), metadata=meta)


def _empf(layer: LayerSpec, shape: tuple[int, ...], params: Params, T: int) -> nir.NIRNode:
    """The folded EM-PF neuron as the neuron of its first step (module docstring), marked kind ``empf``."""
    if layer.options.get("empf") != "folded":
        raise SpecError(f"layer {layer.name!r}: export takes the folded EM-PF form; pass plain_spec(spec) and "
                        f"plain_parameters(model) (got empf={layer.options.get('empf')!r})")
    tables = {k: _param(params, layer.name, k, (T, shape[0])) for k in EMPF_ARRAYS}
    meta = {"snnchip": {"version": SCHEMA_VERSION, "layer": layer.name, "kind": "empf", "T": T, "graded": True,
                        "reset": "subtract", "spike": "ge", "discretization": "euler", "dt": 1.0, **tables}}
    first = {k: np.broadcast_to(v[0].reshape((-1,) + (1,) * (len(shape) - 1)), shape).astype(np.float32)
             for k, v in tables.items()}
    zeros = np.zeros(shape, np.float32)
    lam, scale, theta = first["lam"], first["input_scale"], first["theta"]
    if np.any(lam >= 1.0):
        return nir.IF(r=scale, v_threshold=theta, v_reset=zeros, metadata=meta)
    tau = (1.0 / (1.0 - lam.astype(np.float64))).astype(np.float32)
    return nir.LIF(tau=tau, r=scale * tau, v_leak=zeros, v_threshold=theta, v_reset=zeros, metadata=meta)


def _binary_meta(node: nir.NIRNode, layer: LayerSpec, params: Params) -> nir.NIRNode:
    """Mark a binary synaptic layer (its weight must be exactly ±1: sign(W_f), no scale)."""
    if not layer.options.get("binary"):
        return node
    weight = np.asarray(params[layer.name]["weight"])
    if not np.all(np.abs(weight) == 1.0):
        raise SpecError(f"layer {layer.name!r} is binary but its exported weight is not exactly ±1; pass "
                        "plain_parameters(model)")
    node.metadata = {"snnchip": {"version": SCHEMA_VERSION, "layer": layer.name, "binary": True}}
    return node


UNEXPORTABLE_OPTIONS = {
    "shortcut": "a residual shortcut (the graph would need a branch and a merge, which the schema does not define yet)",
    "seca": "SECA attention (an input-dependent gate with no NIR node)",
}


def _refuse_unexportable(layer: LayerSpec) -> None:
    """Training parametrisations that fold away are gone after ``plain_spec``; these cannot be expressed."""
    for option, why in UNEXPORTABLE_OPTIONS.items():
        if layer.options.get(option) not in (None, "none"):
            raise UnsupportedNodeError(f"layer {layer.name!r} has {why}; NIR export supports sequential networks "
                                       "with feedback edges only")


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


def model_graph(path: str | os.PathLike, interpretation: Interpretation | None = None) -> nir.NIRGraph:
    """The NIR graph of a ``model.pt`` (via ``snnchip.train``) or a ``.nir`` file (read and checked).

    For a foreign ``.nir`` (no ``metadata["snnchip"]``) and a given ``interpretation``, the
    interpretation is recorded in ``graph.metadata["snnchip_interpretation"]`` so that every later
    consumer reads the graph the same way (docs/nir-schema.md, "Foreign graphs").
    """
    path = Path(path)
    if path.suffix == ".pt":
        from snnchip.train import load_model, plain_parameters, plain_spec

        model, checkpoint = load_model(path)
        return spec_to_nir(plain_spec(checkpoint.spec), plain_parameters(model))
    graph = read_graph(path)
    if interpretation is not None and "snnchip" not in graph.metadata:
        graph.metadata["snnchip_interpretation"] = {
            "dt": interpretation.dt, "discretization": interpretation.discretization,
            "reset": interpretation.reset, "compare": interpretation.compare}
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
            f"recorded interpretation dt={recorded.dt}, {recorded.discretization}, reset={recorded.reset}, "
            f"compare={recorded.compare}" if recorded else "each reader applies its own interpretation"))
    if checked.back_edges:
        lines.append("recurrent edges close cycles: we deliver the previous step's spikes (one step delay); "
                     "NIR does not define the timing of a cycle")
    return lines


def _issues(meta: dict[str, Any]) -> list[str]:
    if meta["kind"] == "readout":
        return ["integrator state = cumulative readout Σ o[t]; a reader wanting o[t] must difference it; "
                "exact under Euler with dt = 1 (r = 1)"]
    if meta["kind"] == "empf":
        return _empf_issues(meta)
    if meta["kind"] == "srm":
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
        tau = 1.0 / (1.0 - lam)
        back = 1.0 - 1.0 / tau
        exactness = "exact" if back == lam else f"off by {abs(back - lam):.1e}"
        issues.append(f"λ = {lam:g} as τ = {tau:.6g}: Euler dt = 1 round trip 1 − 1/τ is {exactness}; an "
                      f"exact-exponential reader decays by e^(−1/τ) = {math.exp(-1.0 / tau):.6g} and scales "
                      f"the input by r(1 − e^(−1/τ)) = {tau * (1 - math.exp(-1.0 / tau)):.6g} instead of 1")
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


def cli_export(args: argparse.Namespace) -> int:
    """``snn-export MODEL --target nir -o OUT``: write the graph atomically and print the interpretation report."""
    from snnchip.cli import interpretation_from_args

    graph = model_graph(args.model, interpretation_from_args(args))
    write_nir(graph, args.out)
    checked = check_graph(graph)
    print(f"wrote {args.out}: {len(checked.nodes)} nodes, {len(checked.edges)} edges "
          f"({len(checked.back_edges)} recurrent)")
    print("interpretation report (what a plain NIR reader would get wrong):")
    for line in interpretation_report(graph):
        print(f"  {line}")
    return 0

