"""A model's weights as the chip applies them, for quantization-aware calibration (``workflows.calibrate``).

``chip_deployment`` quantizes (spec, plain parameters) in memory; ``quantization_errors`` is, per stage, what the
chip adds to the float current (Q(A_p) − A_p per projection, Q(b) − b); ``chip_weights`` re-quantizes the layers the
chip quantizes entry by entry (``elementwise_layers``) on their deployment's grids.
"""

from __future__ import annotations

import warnings

import numpy as np

from snnchip.export.loihi import Deployment, deployment_from_graph
from snnchip.export.lowering import Weight
from snnchip.export.qnet import QStage, SaturationWarning, dequantize_weight, frac_bits
from snnchip.export.weight_grid import mantissa_range, residual_mantissas, to_mantissa
from snnchip.spec import NetworkSpec


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
        (p,), (real,) = q.inputs, st.inputs
        frac = frac_bits(dep.qnet, p.source)
        cw = np.asarray(params[name]["weight"], np.float64) * q.scale
        lo, hi, step = mantissa_range(real.weight)
        m, _ = to_mantissa(cw / 2.0 ** (p.weight_exp + frac), lo, hi, step)
        applied = m * 2.0 ** (p.weight_exp + frac)
        if p.low is not None:
            m_lo, f, _ = residual_mantissas(cw - applied, p.low_exp + frac)
            applied = applied + m_lo * 2.0**f
        out[name] = {"weight": applied / q.scale}
        if "bias" in params[name]:
            out[name]["bias"] = np.round(np.asarray(params[name]["bias"], np.float64) * q.scale) / q.scale
    return out
