"""snnchip: train spiking networks online, export them through NIR, deploy them to Lava / Loihi 2, and certify that
the chip computes what the trained model computes.

The entry points (imported on first use, so ``import snnchip`` stays light)::

    import snnchip
    spec = snnchip.model_spec("mlp", (64,), 10, T=6)               # a zoo network (NetworkSpec)
    model = snnchip.build_model(spec)                               # a torch.nn.Module: model(x[T, B, 64]) -> o[t]
    metrics = snnchip.fit(snnchip.TrainConfig(out="runs/mlp"))      # online training, writes runs/mlp/model.pt
    model, ckpt = snnchip.load_model("runs/mlp/model.pt")
    result = snnchip.simulate(model, x)                             # readout Σ o and spikes, no gradients
    graph = snnchip.export_to_nir(model, "model.nir")              # from the in-memory model or a model.pt
    graph = snnchip.read_nir("foreign.nir")                          # checked NIR graph (snnTorch, Norse, ...)
    snnchip.export_loihi(model, "deploy/")                           # Loihi 2 deploy directory
    chip = snnchip.ChipSimulator("deploy/").run(x)                  # bit-exact fixed-point simulator
    report = snnchip.validate(model, snnchip.ValidateConfig())      # the validation ladder (in memory or a path)
    report = snnchip.validate("snntorch.nir", interpretation={"writer": "snntorch"}, x=x, labels=y)  # any graph

Layers (docs/architecture.md): the core package (spec, checkpoint, errors, atomic, options, lava_compat) ←
``snnchip.train`` ← ``snnchip.export`` ← ``snnchip.deploy`` ← ``snnchip.hw_sim``; ``snnchip.workflows`` and the
command-line face ``snnchip.cli`` above them all.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "NetworkSpec": "snnchip.spec", "LayerSpec": "snnchip.spec", "NeuronSpec": "snnchip.spec",
    "Interpretation": "snnchip.spec",
    "model_spec": "snnchip.train", "build_model": "snnchip.train", "load_model": "snnchip.train",
    "simulate": "snnchip.train", "fit": "snnchip.train.trainer", "TrainConfig": "snnchip.train.trainer",
    "export_to_nir": "snnchip.export.nir_export", "read_nir": "snnchip.export.nir_read",
    "export_loihi": "snnchip.workflows.model_data", "load_deploy": "snnchip.export.loihi",
    "ChipSimulator": "snnchip.hw_sim.chip",
    "validate": "snnchip.workflows.validate", "ValidateConfig": "snnchip.workflows.validate",
}
_RENAMED = {"read_nir": "read_graph", "export_loihi": "export_measured"}
__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module 'snnchip' has no attribute {name!r}")
    value = getattr(importlib.import_module(_ENTRY_POINTS[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
