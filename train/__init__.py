"""snnchip.train: LIF neurons, learning rules (BPTT, OTTT, SLTT, SAF), models, data, trainer.

Other stages use ``build_model(spec)``, ``plain_parameters(model)`` (+ ``plain_spec(spec)``),
``simulate(model, x)`` and ``load_model(path)``.
"""

from .inference import SimResult, load_model, simulate
from .model import SpikingNet, build_model, plain_parameters, plain_spec
from .rules import METHODS, gradients, run_iteration
from .zoo import MODELS, convnet, mlp, mlp_feedback, model_spec, vgg

__all__ = [
    "METHODS", "MODELS", "SimResult", "SpikingNet", "build_model", "convnet", "fit", "gradients", "load_model",
    "mlp", "mlp_feedback", "model_spec", "plain_parameters", "plain_spec", "run_iteration", "simulate", "vgg",
]


def fit(*args, **kwargs):
    """Train a model (see ``snnchip.train.trainer.fit``); imported lazily (matplotlib, tqdm)."""
    from .trainer import fit as _fit

    return _fit(*args, **kwargs)
