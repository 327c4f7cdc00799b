"""A model's weights as Xylo applies them: what ``snn-export --target xylo --calibrate`` corrects.

``export.xylo`` maps a stage's float weights A to int8 weights and a shift, W = round(σ·A / λ̂_syn / 2^shift), and
the readout's bias to the output weights of a bias neuron; the chip's hidden currents then carry
Q(A) = W·2^shift·λ̂_syn / σ per unit of input (and the readout's Q(A_out) = W_out·2^shift_out·λ̂_in / σ_out). The
quantization error of a stage is Q(A) − A per projection (input, recurrent, readout) and Q(b) − b: the same
``StageError`` the Loihi quantizer gives calibration (``workflows.chip_values``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from snnchip.discretize import lam_of
from snnchip.export.lowering import INPUT, LoweredNet, lower
from snnchip.spec import NetworkSpec


@dataclass
class XyloChip:
    """A mapping in memory (``export.xylo.XyloMapping``) and the lowered float net it was mapped from."""

    mapping: Any
    net: LoweredNet


def xylo_chip(spec: NetworkSpec, params: dict[str, dict[str, np.ndarray]], data: Any) -> XyloChip:
    """The Xylo mapping of (``spec``, plain ``params``), sized for the states the training set ``data`` reaches, as
    the export of the saved model sizes it (``model_data.dataset_state_bounds``)."""
    from snnchip.export.nir_export import spec_to_nir
    from snnchip.export.xylo import map_graph
    from snnchip.workflows.model_data import dataset_state_bounds

    graph = spec_to_nir(spec, params)
    return XyloChip(map_graph(graph, bounds=dataset_state_bounds(graph, data)), lower(graph))


def xylo_errors(chip: XyloChip) -> dict[str, tuple[list[tuple[str, int, np.ndarray]], np.ndarray]]:
    """Per stage, what Xylo adds to its float current (module docstring): (source, delay, Q(A_p) − A_p) per
    projection and Q(b) − b, float64, [n_out, n_source]."""
    from snnchip.export.xylo import dense_weight

    cfg, rep = chip.mapping.config, chip.mapping.report
    hid, out = rep["hidden"], rep["readout"]
    n_h = hid["neurons"]
    unit_h = hid["lam_syn_hat"] / hid["scale"]
    unit_o = lam_of(out["dash_syn_out"]) / out["scale"]
    applied = {(INPUT, 0): cfg.w_in[:, :n_h, 0].T * 2.0 ** cfg.shift_in * unit_h,
               (hid["layer"], 1): cfg.w_rec[:n_h, :n_h, 0].T * 2.0 ** cfg.shift_rec * unit_h}
    stages = {st.name: st for st in chip.net.stages}
    errors = {}
    for name, chip_weights, chip_bias in (
            (hid["layer"], applied, cfg.bias[:n_h] / hid["scale"]),
            (out["layer"], {(hid["layer"], 0): cfg.w_out[:n_h].T * 2.0 ** cfg.shift_out * unit_o},
             cfg.w_out[n_h] * 2.0 ** cfg.shift_out * unit_o if hid["bias_neuron"] else np.zeros(cfg.n_out))):
        st = stages[name]
        projections = [(p.source, p.delay, chip_weights[p.source, p.delay] - dense_weight(p.weight)) for p in st.inputs]
        errors[name] = (projections, np.asarray(chip_bias, np.float64) - st.bias)
    return errors


def xylo_decider(chip: XyloChip) -> Callable[[torch.Tensor], np.ndarray]:
    """Xylo's class per sample (``hw_sim.xylo``; the readout's argmax at the last step) as a function of spike
    counts xs [T, B, *input_shape]."""
    from snnchip.export.xylo import chip_input, readout_of
    from snnchip.hw_sim import xylo as sim

    mapping = chip.mapping
    return lambda xs: readout_of(sim.run(mapping.config, chip_input(xs.numpy(), mapping)), mapping).argmax(-1)
