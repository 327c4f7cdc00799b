"""A batch as the time loop reads it: ``[T, batch, *input_shape]``, encoded over time by the spec's encoding
(direct: the same frame every step; rate: Bernoulli spikes with probability x, "Online Training Through Time for
Spiking Neural Networks", arXiv:2210.04195, Sec. 5)."""

from __future__ import annotations

import torch

from snnchip.errors import SpecError
from snnchip.spec import NetworkSpec


def time_major(x: torch.Tensor, spec: NetworkSpec, T: int | None = None) -> torch.Tensor:
    """Inputs [T, B, *input_shape]: x as given if it has a time axis, else repeated (direct encoding) or
    sampled as Bernoulli spikes with probability x (rate encoding) for T = ``T`` or ``spec.T`` steps."""
    if x.dim() == len(spec.input_shape) + 2:
        return x
    if x.dim() != len(spec.input_shape) + 1 or tuple(x.shape[1:]) != spec.input_shape:
        raise SpecError(f"input of shape {tuple(x.shape)} does not match [batch, *{spec.input_shape}] "
                        f"or [T, batch, *{spec.input_shape}]")
    steps = T or spec.T
    if spec.encoding == "rate":
        return torch.bernoulli(x.clamp(0, 1).unsqueeze(0).expand(steps, *x.shape))
    return x.unsqueeze(0).expand(steps, *x.shape)
