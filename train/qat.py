"""Quantization-aware fine-tuning: train with the chip's arithmetic in the forward pass, straight-through.

The chip computes every stage's current with quantized projections Q(A_p) and bias Q(b) (a stage: one neuron
population; a projection: everything reaching it from one source, composed: pooling into the next convolution,
a recurrent edge, a residual skip). Fine-tuning adds, to the current each synaptic layer computes, the chip's
error of that stage, its matrices held constant:

    I_used[t] = I_float[t] + Σ_p E_p·x_source(p)[t − d_p] + e_b,   E_p = Q(A_p) − A_p,  e_b = Q(b) − b,

so the forward is the chip's current Σ_p Q(A_p)·x + Q(b), the gradient of the layer's parameters is taken at
the chip's values as if Q were the identity (straight-through, at the stage level: a stage's composed matrix
is the quantized object, not a layer's own weights), and the gradient into the sources is Q(A_p)ᵀ·g.

The errors come from a function of the model (``ChipCorrection(model, errors)``): training knows nothing of the
chip; the calibration workflow hands it the Loihi quantizer of ``snnchip.export``. They are recomputed whenever
a parameter changed. ``snap`` finally replaces a layer's float weights by its chip values where the stage is
that layer alone (Q applies elementwise), so that the model saved and validated is the network the chip runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from snnchip.errors import SnnchipError, SpecError

from .rules import get_rule, run_iteration


@dataclass
class StageError:
    """The chip's error of one stage: (source, delay, ΔA) per projection and Δb [n_out]; ΔA is a matrix [n_out,
    n_source] (dense or sparse) or, for a weight-shared projection, a function x [B, n_source] -> ΔA·x [B, n_out]
    (its convolution: a CIFAR ResNet's errors as matrices would be 4.5·10⁸ entries)."""

    projections: list[tuple[str, int, torch.Tensor]]
    bias: torch.Tensor


Errors = Callable[[nn.Module], dict[str, StageError]]


def _spikes(value: object) -> torch.Tensor:
    """A source's spikes from what a view carries (the trace view carries (spikes, trace))."""
    return value[0] if isinstance(value, tuple) else value


class ChipCorrection:
    """The chip's error added to every stage's current (``attach``/``detach`` on a ``SpikingNet``)."""

    def __init__(self, model: nn.Module, errors: Errors) -> None:
        self.model, self.errors = model, errors
        self._key: tuple | None = None
        self._errors: dict[str, StageError] = {}
        self.refreshes = 0

    def _version_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.model.parameters())

    def current(self) -> dict[str, StageError]:
        key = self._version_key()
        if key != self._key:
            self._errors, self._key = self.errors(self.model), key
            self.refreshes += 1
        return self._errors

    def __call__(self, layer: str, x: torch.Tensor, outs: dict[str, object], state: dict, shape: torch.Size
                 ) -> torch.Tensor | None:
        err = self.current().get(layer)
        if err is None:
            return None
        delta = err.bias.expand(shape[0], -1).clone()
        for source, delay, m in err.projections:
            if delay == 0:
                value = x if source == "input" else _spikes(outs[source])
            else:
                value = state.get("fb:" + source)
                if value is None:
                    continue
                value = _spikes(value)
            flat = value.flatten(1)
            delta = delta + (m(flat) if callable(m) else (m @ flat.to(m.dtype).T).T)
        return delta.view(shape).to(x.dtype)

    def attach(self) -> ChipCorrection:
        self.model.correction = self
        return self

    def detach(self) -> None:
        self.model.correction = None


def fine_tune(model: nn.Module, data, errors: Errors, epochs: int, lr: float, batch_size: int = 64,
              seed: int = 0, log: Callable[[str], None] | None = None) -> ChipCorrection:
    """Fine-tune a plain model in place with the chip's current in the forward pass and the model's own learning
    rule (a spike-view rule for SAF models: SLTT; Adam); returns the (detached) correction."""
    spec = model.spec
    if epochs < 0 or not lr > 0 or batch_size <= 0:
        raise SpecError(f"fine-tuning needs epochs ≥ 0, lr > 0 and batch size > 0, got {epochs}, {lr}, {batch_size}")
    method = spec.method
    if method == "edbp":
        raise SpecError("calibration: event-driven BP trains through its own forward (no per-step currents to "
                        "correct); calibrate is available for the other rules")
    if get_rule(method).view == "saf":  # SAF carries spike accumulations between layers, the chip spikes
        method = "sltt"
    correction = ChipCorrection(model, errors).attach()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = data.train
    k, alpha = spec.options.get("k"), float(spec.options.get("mse_alpha", 0.0) or 0.0)
    model.train()
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(y_train), generator=gen)
            total, n = 0.0, 0
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                x = x_train[idx]
                x = x.transpose(0, 1) if data.temporal else x
                loss, _ = run_iteration(model, x, y_train[idx], method, None if data.temporal else spec.T, k=k,
                                        mse_alpha=alpha, step=step, rng=rng)
                if not math.isfinite(loss):
                    raise SnnchipError(f"calibration: non-finite loss in epoch {epoch + 1}; lower --calibrate-lr")
                total, n = total + loss, n + 1
            if log is not None:
                log(f"calibration epoch {epoch + 1}/{epochs}: loss {total / max(n, 1):.4f}")
    finally:
        correction.detach()
        model.eval()
    return correction


def snap(model: nn.Module, chip_values: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    """Set the weights (and biases) of the layers in ``chip_values`` to their chip values; returns their names."""
    with torch.no_grad():
        for name, entry in chip_values.items():
            for field, value in entry.items():
                getattr(getattr(model, name), field).copy_(value)
    return sorted(chip_values)
