"""A spiking network built from a ``NetworkSpec``, stepped one time step at a time.

``SpikingNet.step(x[t], state, view)`` runs every layer once (layer l+1 sees layer l's output of the
same step; feedback edges deliver the previous step's output: I_dst[t] += W_fb · s_src[t−1]).
The *view* decides what flows between layers (see ``views.py``): spikes (BPTT, SLTT, inference),
spikes with a presynaptic trace (OTTT), or spike accumulations (SAF). The neuron of a layer is
``neuron.lif_step`` (LIF), ``edbp.srm_step`` (SRM) or ``empf.EMPF.step`` (EM-PF).

A layer's ``options["scale"]`` multiplies its neuron's output before the next layer (OTTT VGG);
``options["weight_std"]`` standardises its weight (``synapse.py``). ``plain_parameters`` folds both
into plain weights.

Residual shortcuts (an extension by layer options; the spec stays sequential): a synaptic layer with
``options["shortcut"] = "<earlier layer>"`` adds that layer's output to its input current,
I[t] = W h[t] + b + P(h_src[t]), P = identity when the shapes match, else a binary 1×1 conv (scaled by κ_k
when the layer's binary weights are, ``empf.binarize_scaled``) with the stride that matches them
(``shortcuts.<layer>.weight``). Spike views only (bptt, sltt, sltt-k, empf); ResNet-18 in ``zoo.py``.

SRM layers (neuron kind ``srm``, event-driven BP, ``edbp.py``) carry the state (i, v) of their current-based
recursion; ``options["weight_norm"]`` (S22) folds into the plain weight like ``weight_std``.

EM-PF layers (neuron kind ``empf``, ``empf.py``) have per-step parameters in ``empf.<layer>.*``; the step
index t travels in the state (``state["t"]``). ``fold_empf_bn`` folds every EM-PF variant into the ``folded``
form (EM-PF Eq. 7–8), which ``plain_parameters`` exports.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from snnchip.errors import SpecError
from snnchip.spec import LayerSpec, NetworkSpec, NeuronKind

from .edbp import SRM
from .empf import EMPF, FOLDED_KEYS, layer_variant
from .encoding import time_major
from .neuron import LIF
from .synapse import Synapse, shape_op
from .views import SpikeView
from .xylo_neuron import XyloNeuron

FOLDED_OPTIONS = ("weight_std", "scale", "weight_norm")
RESERVED_NAMES = ("feedback", "empf", "shortcuts")
_NEURON_FROM_SPEC = {NeuronKind.SRM: SRM.from_spec, NeuronKind.XYLO: XyloNeuron.from_spec}  # other spiking kinds: LIF
State = dict


class SpikingNet(nn.Module):
    """The trainable network of a spec; parameters are ``<layer>.weight|bias|gain``,
    ``feedback.<src>__<dst>.weight`` and ``empf.<layer>.*`` (EM-PF neurons)."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        shapes = spec.shapes()
        in_shapes = [spec.input_shape, *shapes[:-1]]
        self.neurons: dict[str, LIF | EMPF | SRM | XyloNeuron] = {}
        self.scales: dict[str, float] = {}
        self.empf = nn.ModuleDict()
        self.shortcuts = nn.ModuleDict()
        shape_of = dict(zip((la.name for la in spec.layers), shapes, strict=True))
        for layer, in_shape, shape in zip(spec.layers, in_shapes, shapes, strict=True):
            _check_supported(layer)
            if "shortcut" in layer.options:
                self.shortcuts[layer.name] = _shortcut(layer, shape_of, shape)
            self.add_module(layer.name, Synapse(layer, in_shape) if layer.synaptic else shape_op(layer))
            if layer.neuron is not None and layer.neuron.kind == NeuronKind.EMPF:
                self.empf[layer.name] = EMPF(layer.neuron, layer_variant(layer), spec.T, shape)
                self.neurons[layer.name] = self.empf[layer.name]
                self.scales[layer.name] = float(layer.options.get("scale", 1.0))
            elif layer.neuron is not None and layer.neuron.spiking:
                make = _NEURON_FROM_SPEC.get(layer.neuron.kind, LIF.from_spec)
                self.neurons[layer.name] = make(layer.neuron)
                self.scales[layer.name] = float(layer.options.get("scale", 1.0))
        index = {layer.name: i for i, layer in enumerate(spec.layers)}
        self.feedback = nn.ModuleDict({
            fb.key: nn.Linear(math.prod(shapes[index[fb.src]]), math.prod(shapes[index[fb.dst]]), bias=False)
            for fb in spec.feedback
        })
        self.feedback_into = {layer.name: [fb for fb in spec.feedback if fb.dst == layer.name] for layer in spec.layers}
        self.feedback_sources = {fb.src for fb in spec.feedback}
        self.correction = None  # the chip's error of each stage's current, while fine-tuning for it (train.qat)

    @property
    def readout_name(self) -> str:
        return self.spec.layers[-1].name

    def forward(self, x: torch.Tensor, return_spikes: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run all time steps: x [T, batch, *input_shape] (or [batch, *input_shape], encoded over ``spec.T`` steps
        by the spec's encoding) → the readout o[t] [T, batch, classes] (class scores: ``.sum(0)``), and with
        ``return_spikes`` the spikes {layer: [T, batch, *shape]}. Differentiable through time (BPTT); the online
        rules train through ``step`` (``snnchip.train.run_iteration``)."""
        xs = time_major(x, self.spec)
        state: State = {}
        view = SpikeView()
        outs, spikes = [], {}
        for t in range(xs.shape[0]):
            o, state, s = self.step(xs[t], state, view)
            outs.append(o)
            for name, v in s.items():
                spikes.setdefault(name, []).append(v)
        out = torch.stack(outs)
        return (out, {n: torch.stack(v) for n, v in spikes.items()}) if return_spikes else out

    def extra_repr(self) -> str:
        s = self.spec
        neurons = [f"{la.name}: {la.neuron.kind}" + (f"(λ={la.neuron.lam:g}, θ={la.neuron.theta:g}, "
                                                     f"reset={la.neuron.reset}, spike={la.neuron.spike})"
                                                     if la.neuron.kind == NeuronKind.LIF else "")
                   for la in s.layers if la.neuron is not None]
        return (f"model={s.model!r}, input_shape={s.input_shape}, classes={s.num_classes}, T={s.T}, "
                f"method={s.method!r}, encoding={s.encoding!r}\nneurons: " + "; ".join(neurons))

    def step(self, x: torch.Tensor, state: State, view, record: bool = True
             ) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """One time step: (x[t], state[t-1]) -> (readout o[t], state[t], spikes s[t] per spiking layer). The view
        consumes ``state``'s neuron entries (``views.py``); ``record=False`` returns no spikes (the training loop
        reads none, and collecting them would hold every layer's spikes to the step's end)."""
        new: State = {"t": state.get("t", 0) + 1}
        spikes: dict[str, torch.Tensor] = {}
        h = view.source(x, state, new)
        outs: dict[str, torch.Tensor] = {}
        for layer in self.spec.layers:
            op = getattr(self, layer.name)
            if not layer.synaptic:
                h = outs[layer.name] = view.shape(op, h)
                continue
            current = view.synapse(op, h, state)
            if layer.name in self.shortcuts:
                current = current + self.shortcuts[layer.name](outs[layer.options["shortcut"]])
            for fb in self.feedback_into[layer.name]:
                prev = state.get("fb:" + fb.src)
                if prev is not None:
                    current = current + view.feedback(self.feedback[fb.key], prev, current.shape)
            if self.correction is not None:  # quantization-aware fine-tuning (qat.ChipCorrection)
                delta = self.correction(layer.name, x, outs, state, current.shape)
                current = current if delta is None else current + delta
            if layer.neuron.kind == NeuronKind.READOUT:
                out = view.readout(current, state, new, layer.name)
                view.end_step(state, new)
                return out, new, spikes
            s, h = view.neuron(self.neurons[layer.name], current, state, new, layer.name)
            if record:
                spikes[layer.name] = s
            h = outs[layer.name] = view.scale(h, self.scales[layer.name])
            if layer.name in self.feedback_sources:
                new["fb:" + layer.name] = h
        raise AssertionError("unreachable: the spec guarantees a final readout")


def _shortcut(layer: LayerSpec, shape_of: dict, shape: tuple[int, ...]) -> nn.Module:
    """The residual path into ``layer``: identity, or a binary 1×1 conv when channels or size change."""
    src = layer.options["shortcut"]
    if src not in shape_of or list(shape_of).index(src) >= list(shape_of).index(layer.name):
        raise SpecError(f"layer {layer.name!r}: shortcut source {src!r} must be an earlier layer")
    src_shape = shape_of[src]
    if src_shape == shape:
        return ChannelScale(shape[0]) if layer.options.get("shortcut_scale") else nn.Identity()
    stride = src_shape[-1] // shape[-1] if len(shape) == 3 else 0
    binary = {"binary": True, **({"binary_scale": True} if layer.options.get("binary_scale") else {})}
    proj = LayerSpec(f"{layer.name}_shortcut", "conv2d", out_channels=shape[0], kernel_size=1, stride=stride,
                     bias=False, options=binary) if len(shape) == 3 and len(src_shape) == 3 else None
    if proj is None or stride < 1 or proj.output_shape(src_shape) != shape:
        raise SpecError(f"layer {layer.name!r}: no 1×1 projection maps shortcut {src!r} {src_shape} to {shape}")
    return Synapse(proj, src_shape)


class ChannelScale(nn.Module):
    """y = c_k·x on channel k (axis 1 of [B, C, …]): the identity shortcut of a plain EM-PF layer whose κ_k moved
    into its input scale (``plain_parameters``); ``scale`` is a buffer, not trained."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.reshape(-1, *([1] * (x.dim() - 2))).to(x.dtype)


def _folds_kappa(layer: LayerSpec) -> bool:
    """Whether ``plain_parameters`` moves a layer's κ_k into its EM-PF input scale: binary weights with
    ``binary_scale`` into an EM-PF neuron."""
    return (bool(layer.options.get("binary") and layer.options.get("binary_scale"))
            and layer.neuron is not None and layer.neuron.kind == NeuronKind.EMPF)


def _check_supported(layer: LayerSpec) -> None:
    if layer.name in RESERVED_NAMES:
        raise SpecError(f"a layer may not be named {layer.name!r} (reserved: {', '.join(RESERVED_NAMES)})")
    if layer.synaptic and layer.neuron is None:
        raise SpecError(f"layer {layer.name!r}: snnchip.train needs a neuron (lif, empf, srm, xylo or readout) after "
                        f"every synaptic layer")


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

    Binary layers export sign(W_f), exactly ±1. An EM-PF layer's entry also has ``lam``, ``theta``,
    ``input_scale``, ``reset_offset``, each float32 [T, C] (C = out_features or out_channels, broadcast over H, W):
    the parameters of ``snnchip.neurons.empf_step`` in the ``folded`` form (EM-PF Eq. 7–8, membrane BN folded with
    its running statistics, i.e. eval mode). A layer with a projected residual shortcut also has
    ``shortcut_weight`` [Cout, Cin, 1, 1] (stride = input size / output size). With ``binary_scale`` the channel
    scale κ_k moves into the input scale, a·(κ_k·S x + b + P h) = (a·κ_k)·(S x + b/κ_k + (P/κ_k) h), so the weight
    stays ±1 (the chip then stores one-bit mantissas); an identity shortcut (P = I) becomes the per-channel scale
    ``shortcut_scale`` = 1/κ_k [C] (``plain_spec`` marks the layer so that its plain model has a ``ChannelScale``
    there). A layer without an EM-PF neuron keeps κ_k·sign(W_f), ±κ_k along row k.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    scale_in = 1.0
    with torch.no_grad():
        for layer in model.spec.layers:
            if layer.synaptic:
                syn: Synapse = getattr(model, layer.name)
                if syn.seca is not None:
                    raise SpecError(f"layer {layer.name!r}: SECA (EM-PF Eq. 9–10) is an input-dependent gate "
                                    f"that plain weights cannot express; SECA models train and simulate only")
                if syn.binary and scale_in != 1.0:
                    raise SpecError(f"layer {layer.name!r}: a binary weight cannot absorb the scale {scale_in}")
                entry = {"weight": _np(syn.plain_weight() * scale_in)}
                if syn.bias is not None:
                    entry["bias"] = _np(syn.bias)
                if layer.name in model.empf:
                    entry.update({k: _np(v) for k, v in model.empf[layer.name].folded().items()})
                shortcut = model.shortcuts[layer.name] if layer.name in model.shortcuts else None
                if shortcut is not None and model.scales.get(layer.options["shortcut"], 1.0) != 1.0:
                    raise SpecError(f"layer {layer.name!r}: a shortcut from a scaled layer cannot be folded")
                if isinstance(shortcut, Synapse):
                    entry["shortcut_weight"] = _np(shortcut.plain_weight())
                if _folds_kappa(layer):
                    if isinstance(shortcut, (nn.Identity, ChannelScale)):
                        channels = entry["weight"].shape[0]
                        entry["shortcut_scale"] = _np(shortcut.scale) if isinstance(shortcut, ChannelScale) \
                            else np.ones(channels, np.float32)
                    _fold_channel_scale(entry)
                out[layer.name] = entry
            if layer.name in model.scales:
                scale_in = model.scales[layer.name]
        for fb in model.spec.feedback:
            out[f"feedback.{fb.key}"] = {"weight": _np(model.feedback[fb.key].weight * model.scales[fb.src])}
    return out


def _fold_channel_scale(entry: dict[str, np.ndarray]) -> None:
    """κ_k of an EM-PF layer's ±κ_k weight rows into its input scale (``plain_parameters``), in place."""
    w = entry["weight"]
    kappa = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    kappa = np.where(kappa > 0, kappa, 1.0).astype(np.float32)
    per_row = kappa.reshape(-1, *([1] * (w.ndim - 1)))
    entry["weight"] = (w / per_row).astype(np.float32)
    entry["input_scale"] = (entry["input_scale"] * kappa).astype(np.float32)
    if "bias" in entry:
        entry["bias"] = (entry["bias"] / kappa).astype(np.float32)
    if "shortcut_weight" in entry:
        entry["shortcut_weight"] = (entry["shortcut_weight"] / kappa[:, None, None, None]).astype(np.float32)
    if "shortcut_scale" in entry:
        entry["shortcut_scale"] = (entry["shortcut_scale"] / kappa).astype(np.float32)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def plain_spec(spec: NetworkSpec) -> NetworkSpec:
    """The spec without the options ``plain_parameters`` folds away (weight_std, scale); EM-PF layers become the
    ``folded`` variant. ``binary`` stays (sign of ±1 is itself: it tells export the weights fit in 1 bit)."""
    shapes = dict(zip((la.name for la in spec.layers), spec.shapes(), strict=True))

    def options(la: LayerSpec) -> dict:
        opts = {k: v for k, v in la.options.items() if k not in FOLDED_OPTIONS}
        if _folds_kappa(la) and "shortcut" in la.options and shapes[la.options["shortcut"]] == shapes[la.name]:
            opts["shortcut_scale"] = True  # the identity shortcut of a layer whose κ_k moves out (1/κ_k)
        return {**opts, "empf": "folded"} if la.neuron is not None and la.neuron.kind == NeuronKind.EMPF else opts

    return dataclasses.replace(spec, layers=tuple(dataclasses.replace(la, options=options(la)) for la in spec.layers))


def from_plain(spec: NetworkSpec, params: dict[str, dict[str, np.ndarray]]) -> SpikingNet:
    """The model of ``plain_spec(spec)`` loaded with ``plain_parameters`` (strict: every tensor must be given)."""
    model = build_model(plain_spec(spec))
    state = {}
    for name, entry in params.items():
        for k, v in entry.items():
            key = f"empf.{name}.{k}" if k in FOLDED_KEYS else f"{name}.{k}"
            key = {"shortcut_weight": f"shortcuts.{name}.weight",
                   "shortcut_scale": f"shortcuts.{name}.scale"}.get(k, key)
            state[key] = torch.from_numpy(np.asarray(v))
    model.load_state_dict(state, strict=True)
    return model


def fold_empf_bn(model: SpikingNet) -> SpikingNet:
    """A copy of ``model`` in eval mode whose EM-PF layers are the ``folded`` form (EM-PF Eq. 7–8): membrane BN
    (running statistics), α, β and the per-step λ, θ become per-step, per-channel λ̂, θ̂, input scale and reset
    offset. Synaptic weights (binary, standardised, scaled) are kept as they are; the copy computes the same
    spikes and outputs as ``model.eval()``."""
    spec = model.spec
    layers = tuple(dataclasses.replace(la, options={**la.options, "empf": "folded"})
                   if la.neuron is not None and la.neuron.kind == NeuronKind.EMPF else la for la in spec.layers)
    ref = next(model.parameters())
    folded = build_model(dataclasses.replace(spec, layers=layers)).to(ref.device, ref.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("empf.")}
    for name, neuron in model.empf.items():
        state.update({f"empf.{name}.{k}": v for k, v in neuron.folded().items()})
    folded.load_state_dict(state, strict=True)
    return folded.eval()


def parameter_memory_bits(model: SpikingNet) -> dict[str, float]:
    """Parameter memory of the trainable tensors: ``float_bits`` (every value 32-bit) vs ``binary_bits`` (weights of
    binary synapses, incl. SECA-II's BConv, at 1 bit and a 32-bit κ_k per output channel where scaled, the rest
    32-bit), and their ratio (EM-PF paper Sec. 5.1)."""
    total = binary = scales = 0
    for name, p in model.named_parameters():
        total += p.numel()
        module = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        if name.endswith("weight") and (getattr(module, "binary", False) or name.endswith("seca.bconv.weight")):
            binary += p.numel()
            scales += p.shape[0] if getattr(module, "binary_scale", False) else 0
    float_bits, binary_bits = 32 * total, 32 * (total - binary + scales) + binary
    return {"float_bits": float_bits, "binary_bits": binary_bits, "ratio": float_bits / max(binary_bits, 1)}
