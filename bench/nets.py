"""The networks of ``snn-bench peers``, the same for every library, and their random data (seed 0).

A net is described by ``{"input": [C, H, W] or [N], "widths": [...], "batch": B}`` under one of these names:

- ``conv``: 3×32×32 → conv64 → LIF → conv128 → LIF → avgpool2 → conv256 → LIF → avgpool2 → fc10, batch 32
  (every conv 3×3, padding 1; an average pool after every conv but the first);
- ``mlp``: 784 → 512 → LIF → 512 → LIF → 10, batch 128;
- ``vgg``: OTTT's VGG-11 (config A: 64,128,M,256,256,M,512,512,M,512,512; Xiao et al., "Online Training Through
  Time for Spiking Neural Networks", arXiv:2210.04195) at CIFAR-10 shape, batch 128: the layers of
  ``snnchip.train.zoo.vgg`` without its weight standardisation and scale, so that every library computes the
  same convolutions.

``spec`` gives the net as our ``NetworkSpec``; ``plain_layers`` the same net as a list of torch modules for the peers
and for the throughput limit, with a neuron module after every layer that spikes in the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import torch
from torch import nn

from snnchip.errors import BenchmarkError
from snnchip.spec import LayerSpec, NetworkSpec, NeuronSpec
from snnchip.train.zoo import VGG_A, mlp, vgg

NUM_CLASSES = 10
NETS: dict[str, dict[str, Any]] = {
    "conv": {"input": [3, 32, 32], "widths": [64, 128, 256], "batch": 32},
    "mlp": {"input": [784], "widths": [512, 512], "batch": 128},
    "vgg": {"input": [3, 32, 32], "widths": list(VGG_A), "batch": 128},
}


def _conv(net: dict[str, Any], T: int, neuron: NeuronSpec) -> NetworkSpec:
    layers: list[LayerSpec] = []
    for i, width in enumerate(net["widths"], 1):
        layers.append(LayerSpec(f"conv{i}", "conv2d", out_channels=width, kernel_size=3, padding=1, neuron=neuron))
        if i > 1:
            layers.append(LayerSpec(f"pool{i - 1}", "avgpool", kernel_size=2))
    layers += [LayerSpec("flatten", "flatten"),
               LayerSpec("out", "linear", out_features=NUM_CLASSES, neuron=NeuronSpec(kind="readout"))]
    return NetworkSpec(input_shape=tuple(net["input"]), layers=tuple(layers), T=T, num_classes=NUM_CLASSES,
                       model="bench-conv")


def _vgg(net: dict[str, Any], T: int, neuron: NeuronSpec) -> NetworkSpec:
    full = vgg(tuple(net["input"]), NUM_CLASSES, T, neuron, config=tuple(net["widths"]))
    return replace(full, layers=tuple(replace(layer, options={}) for layer in full.layers))


def _mlp(net: dict[str, Any], T: int, neuron: NeuronSpec) -> NetworkSpec:
    return mlp(tuple(net["input"]), NUM_CLASSES, T, neuron, hidden=tuple(net["widths"]))


BUILDERS: dict[str, Callable[[dict[str, Any], int, NeuronSpec], NetworkSpec]] = {
    "conv": _conv, "mlp": _mlp, "vgg": _vgg}


def spec(name: str, net: dict[str, Any], T: int, neuron: NeuronSpec | None = None) -> NetworkSpec:
    """The net ``name`` (a key of ``NETS``) with the sizes of ``net`` as our ``NetworkSpec``."""
    if name not in BUILDERS:
        raise BenchmarkError(f"unknown benchmark net {name!r}; valid: {', '.join(BUILDERS)}")
    return BUILDERS[name](net, T, neuron or NeuronSpec())


def plain_layers(net: NetworkSpec, neuron: Callable[[], nn.Module] | None, lib: ModuleType = nn,
                 **kw: Any) -> list[nn.Module]:
    """The spec's layers as torch modules from ``lib`` (``torch.nn``, or a library with the same class names and
    arguments, e.g. SpikingJelly's ``layer``; ``kw`` goes to every constructor), with ``neuron()`` after every
    spiking layer (None: no neurons, the net as a plain ANN)."""
    mods: list[nn.Module] = []
    shape = net.input_shape
    for layer in net.layers:
        if layer.op == "conv2d":
            mods.append(lib.Conv2d(shape[0], layer.out_channels, layer.kernel_size, layer.effective_stride,
                                   layer.padding, bias=layer.bias, **kw))
        elif layer.op == "linear":
            mods.append(lib.Linear(shape[0], layer.out_features, bias=layer.bias, **kw))
        elif layer.op == "avgpool":
            mods.append(lib.AvgPool2d(layer.kernel_size, layer.effective_stride, layer.padding, **kw))
        elif layer.op == "flatten":
            mods.append(lib.Flatten(**kw))
        else:
            raise BenchmarkError(f"layer {layer.name!r}: {layer.op} has no plain torch counterpart here")
        if neuron is not None and layer.neuron is not None and layer.neuron.spiking:
            mods.append(neuron())
        shape = layer.output_shape(shape)
    return mods


def data(net: dict[str, Any], seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch: inputs uniform in [0, 1) of shape [batch, *input], labels in 0..9 (drawn on the CPU, so
    every device sees the same numbers)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(net["batch"], *net["input"], generator=g)
    y = torch.randint(0, NUM_CLASSES, (net["batch"],), generator=g)
    return x.to(device), y.to(device)
