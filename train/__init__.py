"""snnchip.train: LIF, EM-PF and SRM neurons, learning rules (BPTT, OTTT, SLTT, SAF, EM-PF, event-driven BP), models,
data, trainer.

The folder ``train/`` at the repository's top is the package ``snnchip.train`` (pyproject's ``package-dir``).

Other stages use ``build_model(spec)``, ``plain_parameters(model)`` (+ ``plain_spec(spec)``),
``simulate(model, x)`` and ``load_model(path)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .edbp import configure_edbp
from .empf import configure_empf
from .inference import SimResult, load_model, simulate, simulate_parallel
from .model import (
    SpikingNet,
    build_model,
    fold_empf_bn,
    from_plain,
    parameter_memory_bits,
    plain_parameters,
    plain_spec,
)
from .rules import METHODS, gradients, run_iteration
from .zoo import MODELS, convnet, mlp, mlp_feedback, model_spec, vgg

if TYPE_CHECKING:
    from .data import Dataset
    from .trainer import TrainConfig

__all__ = [
    "METHODS", "MODELS", "SimResult", "SpikingNet", "build_model", "configure_edbp", "configure_empf", "convnet", "fit",
    "fold_empf_bn", "from_plain", "gradients", "load_model", "mlp", "mlp_feedback", "model_spec",
    "parameter_memory_bits", "plain_parameters", "plain_spec", "run_iteration", "simulate", "simulate_parallel",
    "vgg",
]


def fit(cfg: TrainConfig, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns the metrics written to ``OUT/metrics.json`` (``snnchip.train.trainer.fit``,
    imported on first use: it loads matplotlib and tqdm)."""
    from .trainer import fit as _fit

    return _fit(cfg, dataset)
