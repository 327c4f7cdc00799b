"""Inference with the LIF / EM-PF recursion: the reference every later stage (NIR, chip, Lava) is compared with;
``simulate_parallel`` runs parallel EM-PF networks with all time steps at once."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from snnchip.checkpoint import Checkpoint, load_checkpoint
from snnchip.errors import CheckpointError, SpecError
from snnchip.spec import NetworkSpec
from snnchip.summary import result_repr

from .data import Dataset
from .encoding import time_major
from .model import SpikingNet, build_model


@dataclass
class SimResult:
    """``output`` [T, B, C] = Σ_{τ≤t} o[τ] (the readout integrator, docs/nir-schema.md);
    ``spikes`` {layer: [T, B, *shape]} for every spiking layer."""

    output: torch.Tensor
    spikes: dict[str, torch.Tensor]

    def __repr__(self) -> str:
        return result_repr("SimResult", self.output, self.spikes)


def simulate(model: SpikingNet, x: torch.Tensor, T: int | None = None) -> SimResult:
    """Run the network in eval mode without gradients on x [B, ...] (encoded over T or spec.T steps) or
    x [T, B, ...] (used as given): the readout integrator Σ_{τ≤t} o[τ] and the spikes (``SpikingNet.forward``)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out, spikes = model(time_major(x, model.spec, T), return_spikes=True)
        return SimResult(torch.cumsum(out, 0), spikes)
    finally:
        model.train(was_training)


def encoded_test_set(spec: NetworkSpec, data: Dataset, samples: int | None = None
                     ) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``samples`` (default: all) test samples time-major [T, N, *input_shape], encoded once (rate codes
    drawn from seed 0 without touching the caller's random stream), and their labels."""
    x, y = data.test
    n = len(y) if samples is None else min(samples, len(y))
    x, y = x[:n], np.asarray(y[:n])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        xs = x.transpose(0, 1) if data.temporal else time_major(x, spec)
    return xs.float().contiguous(), y


def simulate_parallel(model: SpikingNet, x: torch.Tensor, T: int | None = None) -> SimResult:
    """``simulate`` for networks whose EM-PF layers are all the parallel variant (EM-PF paper, Fig. 2(a),
    Algorithm 1 line 10): no neuron carries state, so each layer runs on all T steps at once, time folded into
    the batch (I[1..T] = W x[1..T] + b in one call; s[t] = ReLU(I[t] − θ[t]))."""
    bad = [n for n, p in model.neurons.items() if getattr(p, "variant", None) != "parallel"]
    if bad or model.spec.feedback:
        raise SpecError(f"simulate_parallel needs parallel EM-PF neurons only and no feedback; layers {bad} carry "
                        f"state")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            xs = time_major(x, model.spec, T)
            steps, batch = xs.shape[:2]
            h, spikes, outs = xs.reshape(steps * batch, *xs.shape[2:]), {}, {}
            for layer in model.spec.layers:
                h = getattr(model, layer.name)(h)
                if layer.name in model.shortcuts:
                    h = h + model.shortcuts[layer.name](outs[layer.options["shortcut"]])
                if layer.neuron is not None and not layer.neuron.spiking:
                    out = h.view(steps, batch, *h.shape[1:])
                    return SimResult(torch.cumsum(out, 0), spikes)
                if layer.name in model.neurons:
                    spikes[layer.name] = model.neurons[layer.name].fire_all(h.view(steps, batch, *h.shape[1:]))
                    h = spikes[layer.name].reshape(h.shape) * model.scales[layer.name]
                outs[layer.name] = h
        raise AssertionError("unreachable: the spec guarantees a final readout")
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
