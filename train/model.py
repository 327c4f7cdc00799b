"""A spiking network built from a ``NetworkSpec``, stepped one time step at a time.

``SpikingNet.step(x[t], state, view)`` runs every layer once (layer l+1 sees layer l's output of the
same step; feedback edges deliver the previous step's output: I_dst[t] += W_fb · s_src[t−1]).
The *view* decides what flows between layers (see ``views.py``): spikes (BPTT, SLTT, inference),
spikes with a presynaptic trace (OTTT), or spike accumulations (SAF). The neuron is always
``neuron.lif_step`` / ``LIF.fire``.

A layer's ``options["scale"]`` multiplies its neuron's output before the next layer (OTTT VGG);
``options["weight_std"]`` standardises its weight (``synapse.py``). ``plain_parameters`` folds both
into plain weights.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from snnchip.errors import SpecError
from snnchip.spec import LayerSpec, NetworkSpec

from .neuron import LIF
from .synapse import Synapse, shape_op

FOLDED_OPTIONS = ("weight_std", "scale")
State = dict


class SpikingNet(nn.Module):
    """The trainable network of a spec; parameters are ``<layer>.weight|bias|gain`` and
    ``feedback.<src>__<dst>.weight``."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        shapes = spec.shapes()
        in_shapes = [spec.input_shape, *shapes[:-1]]
        self.neurons: dict[str, LIF] = {}
        self.scales: dict[str, float] = {}
        for layer, in_shape in zip(spec.layers, in_shapes, strict=True):
            _check_supported(layer)
            self.add_module(layer.name, Synapse(layer, in_shape) if layer.synaptic else shape_op(layer))
            if layer.neuron is not None and layer.neuron.spiking:
                self.neurons[layer.name] = LIF.from_spec(layer.neuron)
                self.scales[layer.name] = float(layer.options.get("scale", 1.0))
        index = {layer.name: i for i, layer in enumerate(spec.layers)}
        self.feedback = nn.ModuleDict({
            fb.key: nn.Linear(math.prod(shapes[index[fb.src]]), math.prod(shapes[index[fb.dst]]), bias=False)
            for fb in spec.feedback
        })
        self.feedback_into = {layer.name: [fb for fb in spec.feedback if fb.dst == layer.name] for layer in spec.layers}
        self.feedback_sources = {fb.src for fb in spec.feedback}

    @property
    def readout_name(self) -> str:
        return self.spec.layers[-1].name

    def step(self, x: torch.Tensor, state: State, view) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """One time step: (x[t], state[t-1]) -> (readout o[t], state[t], spikes s[t] per spiking layer)."""
        new: State = {}
        spikes: dict[str, torch.Tensor] = {}
        h = view.source(x, state, new)
        for layer in self.spec.layers:
            op = getattr(self, layer.name)
            if not layer.synaptic:
                h = view.shape(op, h)
                continue
            current = view.synapse(op, h, state)
            for fb in self.feedback_into[layer.name]:
                prev = state.get("fb:" + fb.src)
                if prev is not None:
                    current = current + view.feedback(self.feedback[fb.key], prev, current.shape)
            if layer.neuron.kind == "readout":
                out = view.readout(current, state, new, layer.name)
                view.end_step(state, new)
                return out, new, spikes
            spikes[layer.name], h = view.neuron(self.neurons[layer.name], current, state, new, layer.name)
            h = view.scale(h, self.scales[layer.name])
            if layer.name in self.feedback_sources:
                new["fb:" + layer.name] = h
        raise AssertionError("unreachable: the spec guarantees a final readout")


def _check_supported(layer: LayerSpec) -> None:
    if layer.name == "feedback":
        raise SpecError("a layer may not be named 'feedback' (reserved for feedback weights)")
    if layer.synaptic and layer.neuron is None:
        raise SpecError(f"layer {layer.name!r}: snnchip.train needs a neuron (lif or readout) after every "
                        f"synaptic layer")
    if layer.neuron is not None and layer.neuron.kind not in ("lif", "readout"):
        raise SpecError(f"layer {layer.name!r}: neuron kind {layer.neuron.kind!r} is not supported by "
                        f"snnchip.train yet; supported: lif, readout")


def detach_state(state: State) -> State:
    """Cut the temporal graph: every state tensor (or tuple of tensors) is detached."""
    def cut(v):
        if isinstance(v, torch.Tensor):
            return v.detach()
        return tuple(cut(e) for e in v) if isinstance(v, tuple) else v
    return {k: cut(v) for k, v in state.items()}


def build_model(spec: NetworkSpec) -> SpikingNet:
    """The PyTorch module of a spec (LIF and readout neurons; any sequential spec with feedback)."""
    return SpikingNet(spec)


def plain_parameters(model: SpikingNet) -> dict[str, dict[str, np.ndarray]]:
    """Plain float32 weights with weight standardisation and post-neuron scales folded in.

    ``{layer: {"weight", "bias"?}}`` (linear [out, in], conv [Cout, Cin, k, k]; no "bias" when the
    layer has none) and ``{"feedback.<src>__<dst>": {"weight": [n_dst, n_src]}}``. A neuron's scale c
    is folded into every weight that reads its output: W·(c·s) = (c·W)·s. Use them with
    ``plain_spec(spec)``, which drops the folded options.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    scale_in = 1.0
    with torch.no_grad():
        for layer in model.spec.layers:
            if layer.synaptic:
                syn: Synapse = getattr(model, layer.name)
                entry = {"weight": _np(syn.plain_weight() * scale_in)}
                if syn.bias is not None:
                    entry["bias"] = _np(syn.bias)
                out[layer.name] = entry
            if layer.name in model.scales:
                scale_in = model.scales[layer.name]
        for fb in model.spec.feedback:
            out[f"feedback.{fb.key}"] = {"weight": _np(model.feedback[fb.key].weight * model.scales[fb.src])}
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def plain_spec(spec: NetworkSpec) -> NetworkSpec:
    """The spec without the options ``plain_parameters`` folds away (weight_std, scale)."""
    layers = tuple(dataclasses.replace(la, options={k: v for k, v in la.options.items() if k not in FOLDED_OPTIONS})
                   for la in spec.layers)
    return dataclasses.replace(spec, layers=layers)
