"""Inference with the LIF recursion: the reference every later stage (NIR, chip, Lava) is compared with."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from snnchip.checkpoint import Checkpoint, load_checkpoint
from snnchip.errors import CheckpointError

from .model import SpikingNet, build_model
from .rules import time_major
from .views import SpikeView


@dataclass
class SimResult:
    """``output`` [T, B, C] = Σ_{τ≤t} o[τ] (the readout integrator, docs/nir-schema.md);
    ``spikes`` {layer: [T, B, *shape]} for every spiking layer."""

    output: torch.Tensor
    spikes: dict[str, torch.Tensor]


def simulate(model: SpikingNet, x: torch.Tensor, T: int | None = None) -> SimResult:
    """Run the LIF network in eval mode without gradients on x [B, ...] (encoded over T or spec.T
    steps) or x [T, B, ...] (used as given)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            xs = time_major(x, model.spec, T)
            state: dict = {}
            outs, spikes = [], {}
            view = SpikeView()
            for t in range(xs.shape[0]):
                o, state, s = model.step(xs[t], state, view)
                outs.append(o)
                for name, v in s.items():
                    spikes.setdefault(name, []).append(v)
        return SimResult(torch.cumsum(torch.stack(outs), 0), {n: torch.stack(v) for n, v in spikes.items()})
    finally:
        model.train(was_training)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[SpikingNet, Checkpoint]:
    """Rebuild the trained module from a ``model.pt`` (snnchip.checkpoint format)."""
    ckpt = load_checkpoint(path, map_location=map_location)
    model = build_model(ckpt.spec)
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state_dict does not match its spec: {str(exc)[:300]}") from None
    return model.to(map_location), ckpt
