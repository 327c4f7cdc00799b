"""Named model constructors: each returns a ``NetworkSpec`` (build the module with ``build_model``).

- ``mlp``: [flatten] → (linear → LIF)×len(hidden) → linear readout.
- ``convnet``: small conv net for 1×8×8 digits: conv16 → LIF → avgpool2 → conv32 → LIF → avgpool2 → fc.
- ``vgg``: OTTT VGG-11 (config A: 64,128,M,256,256,M,512,512,M,512,512), average pooling, global average
  pooling, scaled weight standardisation on every conv and a scale factor 2.74 after every neuron
  (OTTT supplement, Sec. C.1: γ = 1/σ_H ≈ 2.74), as in the OTTT code.
- ``resnet18``: CIFAR-style ResNet-18 (3×3 stem, 4 stages × 2 basic blocks, widths 64-128-256-512, stride 2 at
  stages 2–4, global average pooling): each block is conv → neuron → conv (+ shortcut from the block input)
  → neuron, the shortcut an option of the block's second conv (``model.py``; identity, or a binary 1×1 conv
  with stride 2). The block's first conv carries ``options["block"] = "first"`` (EM-PF mixed blocks).
- ``mlp-feedback``: ``mlp`` plus a feedback edge from the last hidden layer to the first (a self-loop
  when there is one hidden layer), one step of delay.
- ``resnet-small``: one residual block on a conv stem (identity shortcut), pooling and a readout, for 8×8 digits.
"""

from __future__ import annotations

from collections.abc import Sequence

from snnchip.errors import SpecError
from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronKind, NeuronSpec

VGG_A = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)
VGG_SCALE = 2.74
RESNET18_WIDTHS = (64, 128, 256, 512)
READOUT = NeuronSpec(kind=NeuronKind.READOUT)
LIF = NeuronSpec()  # λ = 0.5, θ = 1, subtractive reset, u ≥ θ, sigmoid surrogate


def _net(input_shape, layers, T, num_classes, feedback=(), **kw) -> NetworkSpec:
    return NetworkSpec(input_shape=tuple(input_shape), layers=tuple(layers), T=T, num_classes=num_classes,
                       feedback=tuple(feedback), **kw)


def mlp(input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF, hidden: Sequence[int] = (128,),
        **kw) -> NetworkSpec:
    """[flatten] → (linear → ``neuron``) per width in ``hidden`` → linear readout (Σ_t o[t] is the score)."""
    layers = [LayerSpec("flatten", "flatten")] if len(input_shape) > 1 else []
    layers += [LayerSpec(f"fc{i + 1}", "linear", out_features=w, neuron=neuron) for i, w in enumerate(hidden)]
    layers.append(LayerSpec("out", "linear", out_features=num_classes, neuron=READOUT))
    return _net(input_shape, layers, T, num_classes, model="mlp", **kw)


def mlp_feedback(input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF,
                 hidden: Sequence[int] = (128,), **kw) -> NetworkSpec:
    """``mlp`` plus a one-step-delayed feedback edge from the last hidden layer to the first (OTTT R400, SAF)."""
    base = mlp(input_shape, num_classes, T, neuron, hidden, **kw)
    edge = FeedbackSpec(src=f"fc{len(hidden)}", dst="fc1")
    return _net(input_shape, base.layers, T, num_classes, feedback=(edge,), model="mlp-feedback", **kw)


def convnet(input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF, hidden: Sequence[int] = (),
            **kw) -> NetworkSpec:
    """conv16 → neuron → avgpool2 → conv32 → neuron → avgpool2 → flatten → linear readout (8×8 digits)."""
    _need_image(input_shape, "convnet")
    layers = [
        LayerSpec("conv1", "conv2d", out_channels=16, kernel_size=3, padding=1, neuron=neuron),
        LayerSpec("pool1", "avgpool", kernel_size=2),
        LayerSpec("conv2", "conv2d", out_channels=32, kernel_size=3, padding=1, neuron=neuron),
        LayerSpec("pool2", "avgpool", kernel_size=2),
        LayerSpec("flatten", "flatten"),
        LayerSpec("out", "linear", out_features=num_classes, neuron=READOUT),
    ]
    return _net(input_shape, layers, T, num_classes, model="convnet", **kw)


def vgg(input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF, hidden: Sequence[int] = (),
        config: Sequence[int | str] = VGG_A, **kw) -> NetworkSpec:
    """OTTT's VGG-11 (config A) with scaled weight standardisation and a 2.74 scale after every neuron."""
    _need_image(input_shape, "vgg")
    layers, size = [], min(input_shape[1:])
    for i, c in enumerate(config):
        if c == "M":
            size //= 2
            layers.append(LayerSpec(f"pool{i}", "avgpool", kernel_size=2))
        else:
            layers.append(LayerSpec(f"conv{i}", "conv2d", out_channels=c, kernel_size=3, padding=1, neuron=neuron,
                                    options={"weight_std": True, "scale": VGG_SCALE}))
    if size < 1:
        raise SpecError(f"vgg needs inputs of at least 8×8 pixels, got {tuple(input_shape)}")
    layers += [LayerSpec("gap", "avgpool", kernel_size=size), LayerSpec("flatten", "flatten"),
               LayerSpec("out", "linear", out_features=num_classes, neuron=READOUT)]
    return _net(input_shape, layers, T, num_classes, model="vgg", **kw)


def resnet18(input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF, hidden: Sequence[int] = (),
             widths: Sequence[int] = RESNET18_WIDTHS, **kw) -> NetworkSpec:
    """CIFAR-style ResNet-18 (EM-PF): 3×3 stem, 4 stages × 2 basic blocks with residual shortcuts, GAP."""
    _need_image(input_shape, "resnet18")
    layers = [LayerSpec("conv1", "conv2d", out_channels=widths[0], kernel_size=3, padding=1, neuron=neuron)]
    prev, size = "conv1", min(input_shape[1:])
    for stage, width in enumerate(widths, 1):
        for block in (1, 2):
            stride = 2 if stage > 1 and block == 1 else 1
            size = (size - 1) // stride + 1
            name = f"s{stage}b{block}"
            layers += [LayerSpec(f"{name}a", "conv2d", out_channels=width, kernel_size=3, stride=stride, padding=1,
                                 neuron=neuron, options={"block": "first"}),
                       LayerSpec(f"{name}b", "conv2d", out_channels=width, kernel_size=3, padding=1, neuron=neuron,
                                 options={"shortcut": prev})]
            prev = f"{name}b"
    layers += [LayerSpec("gap", "avgpool", kernel_size=size), LayerSpec("flatten", "flatten"),
               LayerSpec("out", "linear", out_features=num_classes, neuron=READOUT)]
    return _net(input_shape, layers, T, num_classes, model="resnet18", **kw)


def resnet_small(input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF,
                 hidden: Sequence[int] = (), width: int = 16, **kw) -> NetworkSpec:
    """conv → neuron, then one residual block (conv → neuron → conv + identity shortcut from the first conv →
    neuron), avgpool 2 → flatten → linear readout: a residual net small enough for 8×8 digits."""
    _need_image(input_shape, "resnet-small")
    layers = [LayerSpec("conv1", "conv2d", out_channels=width, kernel_size=3, padding=1, neuron=neuron),
              LayerSpec("conv2", "conv2d", out_channels=width, kernel_size=3, padding=1, neuron=neuron),
              LayerSpec("conv3", "conv2d", out_channels=width, kernel_size=3, padding=1, neuron=neuron,
                        options={"shortcut": "conv1"}),
              LayerSpec("pool", "avgpool", kernel_size=2), LayerSpec("flatten", "flatten"),
              LayerSpec("out", "linear", out_features=num_classes, neuron=READOUT)]
    return _net(input_shape, layers, T, num_classes, model="resnet-small", **kw)


def _need_image(input_shape, name: str) -> None:
    if len(input_shape) != 3:
        raise SpecError(f"model {name!r} needs image inputs (C, H, W), got shape {tuple(input_shape)}")


MODELS = {"mlp": mlp, "convnet": convnet, "vgg": vgg, "mlp-feedback": mlp_feedback, "resnet18": resnet18,
          "resnet-small": resnet_small}


def model_spec(name: str, input_shape: Sequence[int], num_classes: int, T: int, neuron: NeuronSpec = LIF,
               hidden: Sequence[int] = (128,), **kw) -> NetworkSpec:
    """The spec of a named model; ``kw`` goes to ``NetworkSpec`` (encoding, method, options)."""
    if name not in MODELS:
        raise SpecError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](input_shape, num_classes, T, neuron, hidden=hidden, **kw)
