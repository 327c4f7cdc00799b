"""Export a ``model.pt`` or a ``.nir`` graph to one target, returning the lines that describe the result.

Targets: ``nir`` (the graph and an interpretation report), ``loihi`` (the deploy directory and its
quantization report), ``xylo`` (the Xylo deploy directory and its mapping report),
``onnx`` (a single-step stateful model, run once in onnxruntime), ``netx`` (lava-dl's
HDF5 file). Foreign graphs are read with ``Interpretation.overriding(recorded, **overrides)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from snnchip.errors import DataError, SpecError
from snnchip.options import option
from snnchip.spec import Interpretation

TARGETS = ("nir", "loihi", "onnx", "netx", "xylo")
WIDE_WEIGHTS = {"auto": None, "8bit": False, "wide": True}  # --weights -> export.loihi's wide_weights
WEIGHT_CHOICES = tuple(WIDE_WEIGHTS)
HEADROOM_CHOICES = ("auto", "T", "step", "data")


def precision_args(weights: str, headroom: str) -> dict[str, Any]:
    """``--weights`` and ``--headroom`` as ``export.loihi``'s ``wide_weights`` and ``headroom`` (None: "auto",
    decided per graph by ``precision_of``)."""
    return {"wide_weights": WIDE_WEIGHTS[weights],
            "headroom": None if headroom == "auto" else headroom}


HEADROOM_WORDS = {"T": "T steps", "step": "one step", "data": "the calibration inputs' states (current × margin)"}
DEFAULT_NAMES = {"nir": "model.nir", "loihi": "deploy", "onnx": "model.onnx", "netx": "model.net",
                 "xylo": "deploy-xylo"}


@dataclass
class ExportConfig:
    """What ``export`` takes besides the interpretation of a foreign graph."""

    model: str = option(help="model.pt written by snn-train, or a .nir graph", positional=True, path="input")
    target: str = option(help="what to write", choices=TARGETS)
    out: str = option(help="output file (nir, onnx, netx) or directory (loihi)", flag=("-o", "--out"),
                      path="output")
    T: int | None = option(None, help="time steps for a foreign .nir graph (ours record T)")
    max_memory: float | None = option(None, help="loihi/netx: refuse, before building it, a deployment whose export "
                                      "needs more than this many GiB (default: the memory available now)")
    weights: str = option("auto", choices=WEIGHT_CHOICES, help="loihi: 8bit: one 8-bit mantissa per synapse; wide: "
                          "every projection as two 8-bit synapse sets (the mantissas and their residual's: twice the "
                          "synapses), each weight exact to the membrane's resolution; auto: wide for a foreign graph, "
                          "8bit for a snnchip model")
    headroom: str = option("auto", choices=HEADROOM_CHOICES, help="loihi: T: each membrane's scale covers its worst "
                           "case over T steps (never saturates; coarser as T grows); step: one step of the largest "
                           "current (finer; saturates if inputs stay maximal, identically in Lava); data: the states "
                           "seen on calibration inputs (the current times --margin), never beyond one step "
                           "(finest; saturates beyond them); auto: data with --calibration-input, else step for a "
                           "foreign graph, T for a snnchip model")
    calibration_input: str | None = option(None, path="input", help="loihi: .npy inputs [T, batch, *features] (as "
                                           "snn-run --input) that size each stage's scale (--headroom data); a "
                                           "model.pt with --headroom data uses its training set")
    margin: float = option(1.5, help="loihi, --headroom data: each stage's current is given this many times the "
                           "largest one seen on the calibration inputs (≥ 1; the membrane gets its largest)")
    input_range: float | None = option(None, help="loihi: the largest |x| of the inputs the deployment takes; its "
                                       "fixed point is sized for it and every run refuses inputs beyond it (default: "
                                       "1, inputs in [-1, 1], as every snn-train dataset)")


def export(cfg: ExportConfig, overrides: dict[str, Any] | None = None) -> list[str]:
    """Write ``cfg.model`` as ``cfg.target`` to ``cfg.out``; ``overrides``: ``Interpretation`` fields given
    explicitly for a foreign graph. Returns the report lines."""
    if (cfg.weights, cfg.headroom) != ("auto", "auto") and cfg.target != "loihi":
        raise SpecError(f"--weights and --headroom apply to --target loihi, not {cfg.target}")
    if (cfg.calibration_input is not None or cfg.headroom == "data") and cfg.target != "loihi":
        raise SpecError(f"--calibration-input and --headroom data apply to --target loihi, not {cfg.target}")
    if not 1.0 <= cfg.margin < float("inf"):
        raise SpecError(f"--margin must be a finite number ≥ 1, got {cfg.margin}")
    if cfg.input_range is not None and cfg.target != "loihi":
        raise SpecError(f"--input-range applies to --target loihi, not {cfg.target}")
    if cfg.input_range is not None and not 0 < cfg.input_range < float("inf"):
        raise SpecError(f"--input-range must be a positive, finite number, got {cfg.input_range}")
    return _WRITERS[cfg.target](cfg, overrides or {})


def _nir(cfg: ExportConfig, given: dict[str, Any]) -> list[str]:
    from snnchip.export.nir_export import interpretation_report, model_graph, write_nir
    from snnchip.export.nir_graph import check_graph

    graph = model_graph(cfg.model, Interpretation.overriding(None, **given))
    write_nir(graph, cfg.out)
    checked = check_graph(graph)
    return [f"wrote {cfg.out}: {len(checked.nodes)} nodes, {len(checked.edges)} edges "
            f"({len(checked.back_edges)} recurrent)",
            "interpretation report (what a plain NIR reader would get wrong):",
            *(f"  {line}" for line in interpretation_report(graph))]


def _loihi(cfg: ExportConfig, given: dict[str, Any]) -> list[str]:
    from snnchip.arrayfile import load_input
    from snnchip.export.loihi import load_deploy, read_model_graph
    from snnchip.export.nir_meta import recorded_interpretation
    from snnchip.export.quantize_report import format_report
    from snnchip.export.writers import resolve
    from snnchip.workflows.model_data import export_measured

    graph = read_model_graph(cfg.model)
    interpretation = resolve(graph, Interpretation.overriding(recorded_interpretation(graph), **given))
    calibration = None
    try:
        calibration = None if cfg.calibration_input is None else load_input(cfg.calibration_input)
        out = export_measured(graph, cfg.out, interpretation=interpretation, T=cfg.T, source=cfg.model,
                              max_memory=_bytes(cfg.max_memory),
                              input_range=1.0 if cfg.input_range is None else cfg.input_range,
                              calibration_input=calibration, margin=cfg.margin,
                              **precision_args(cfg.weights, cfg.headroom))
    except DataError as exc:
        if cfg.calibration_input is None:
            raise
        what = str(exc).removeprefix("calibration input: ")
        if not what.startswith(str(cfg.calibration_input)):
            what = f"{cfg.calibration_input}: {what}"
        raise DataError(f"--calibration-input {what}") from None
    dep = load_deploy(out)
    res = dep.manifest["resources"]
    precision = dep.manifest["precision"]
    read = [] if interpretation is None else [f"interpretation: {interpretation.describe()}"]
    return [*read, format_report(dep.qnet.report), *_calibration_lines(dep, calibration),
            f"weights: {'wide (two 8-bit synapse sets per projection)' if precision['synapse_sets'] == 2 else '8-bit'}"
            f", headroom: {HEADROOM_WORDS[precision['headroom']]} ({precision['why']})",
            f"wrote {out}: {dep.depth} stages, {res['neurons']} neurons, {res['synapses']} synapses, "
            f"T = {dep.T}, Lava latency {dep.depth} steps (run T + {dep.depth}); inputs |x| ≤ "
            f"{dep.qnet.input_range:g}; sealed (sha256 of model.nir, params.npz and every manifest value)"]


def _calibration_lines(dep: Any, x: Any) -> list[str]:
    """The data headroom's calibration inputs and margin, and the chip's saturation on those inputs."""
    cal = dep.manifest.get("calibration")
    if dep.manifest["precision"]["headroom"] != "data":
        return []
    from snnchip.hw_sim.chip import ChipSimulator, saturation_lines

    margin = dep.manifest["precision"]["margin"]
    data = "the training set" if x is None else f"the calibration inputs {cal['shape']} (sha256 {cal['sha256'][:12]}…)"
    lines = [f"data headroom: the largest current × {margin:g} and the largest membrane of each stage on {data}"]
    if x is not None:
        updates = {q.name: (dep.T + dep.depth) * x.shape[1] * q.size for q in dep.qnet.stages}
        counts = ChipSimulator(dep).run(x, states=False).meta["saturation"]
        lines += [f"on the calibration inputs, {line}" if i == 0 else line
                  for i, line in enumerate(saturation_lines(counts, updates))]
    return lines


def _onnx(cfg: ExportConfig, given: dict[str, Any]) -> list[str]:
    import numpy as np

    from snnchip.export.nir_export import model_graph
    from snnchip.export.onnx_export import OPSET, check_onnx_name, onnx_model, run_onnx, write_onnx

    check_onnx_name(cfg.out)
    interpretation = Interpretation.overriding(None, **given)
    model = onnx_model(model_graph(cfg.model, interpretation), interpretation)
    write_onnx(model, cfg.out)
    in_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    run_onnx(cfg.out, np.zeros((1, 1, *in_shape), np.float32))  # onnxruntime loads and runs it
    return [f"wrote {cfg.out}: single-step ONNX model (opset {OPSET}), {len(model.graph.node)} ops",
            f"  inputs:  {', '.join(i.name for i in model.graph.input)}",
            f"  outputs: {', '.join(o.name for o in model.graph.output)}",
            "  drive it over time with snnchip.export.onnx_export.run_onnx(path, x[T, B, ...])"]


def _netx(cfg: ExportConfig, given: dict[str, Any]) -> list[str]:
    from snnchip.export.loihi import read_model_graph
    from snnchip.export.netx import INPUT_MESSAGE_BITS, export_netx
    from snnchip.export.nir_meta import recorded_interpretation
    from snnchip.export.quantize_report import format_report

    graph = read_model_graph(cfg.model)
    dep = export_netx(graph, cfg.out, Interpretation.overriding(recorded_interpretation(graph), **given), cfg.T)
    return [format_report(dep.qnet.report),
            f"wrote {cfg.out}: {dep.depth} dense layers, T = {dep.T}; load with "
            f"lava.lib.dl.netx.hdf5.Network({os.fspath(cfg.out)!r}, input_message_bits={INPUT_MESSAGE_BITS}) and "
            f"feed round(x * 2^{dep.qnet.input_frac_bits}) of the flattened input; layer k lags k Lava steps"]


def _bytes(gib: float | None) -> float | None:
    return None if gib is None else gib * 2**30


def _xylo(cfg: ExportConfig, given: dict[str, Any]) -> list[str]:
    from snnchip.workflows.xylo import export_lines

    return export_lines(cfg.model, cfg.out, given, cfg.T)


_WRITERS = {"nir": _nir, "loihi": _loihi, "onnx": _onnx, "netx": _netx, "xylo": _xylo}
