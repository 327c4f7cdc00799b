"""Quantization-aware fine-tuning: train with the chip's weights in the forward pass, straight-through.

Every synaptic layer applies the weights a chip quantizer gives for its current float weights:

    W_used = W + (Q(W) − W).detach(),   b_used = b + (Q_b(b) − b).detach()

``Q`` is passed in as a function of the raw float parameters (``ChipQuantizer(model, quantize)``), so training
knows nothing of the chip: the calibration workflow hands it the Loihi quantizer of ``snnchip.export``. Q is
recomputed whenever a parameter changed (after every optimizer step, and whenever a parameter's version counter
moves), i.e. it always equals what exporting *now* would give. ``snap_to_chip`` finally replaces the float
weights by Q(W), so that the float model that is saved and validated is the network the chip runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from snnchip.errors import SnnchipError, SpecError

from .rules import run_iteration

Params = dict[str, dict[str, np.ndarray]]
Quantize = Callable[[Params], Params]  # raw float parameters -> the chip's float values Q(W), Q_b(b), per layer


class ChipQuantizer:
    """Straight-through quantization of the synaptic layers of a plain model (``attach``/``detach``).

    ``quantize(raw_parameters())`` returns, per layer, Q(W) (and Q_b(b)) as float64; ``targets()`` holds them in
    the model's dtype (float32 rounds to the nearest float32, at most 6e-8 relative).
    """

    def __init__(self, model: nn.Module, quantize: Quantize) -> None:
        self.model, self.quantize = model, quantize
        self.layers = [la.name for la in model.spec.layers if la.synaptic]
        self._key: tuple | None = None
        self._targets: dict[str, dict[str, torch.Tensor]] = {}
        self.refreshes = 0

    def raw(self, layer: str, field: str) -> torch.Tensor | None:
        """The float parameter, whether or not the parametrization is attached."""
        syn = getattr(self.model, layer)
        if parametrize.is_parametrized(syn, field):
            return getattr(syn.parametrizations, field).original
        return getattr(syn, field)

    def raw_parameters(self) -> Params:
        out = {}
        for name in self.layers:
            entry = {"weight": self.raw(name, "weight").detach().cpu().to(torch.float32).numpy().copy()}
            b = self.raw(name, "bias")
            if b is not None:
                entry["bias"] = b.detach().cpu().to(torch.float32).numpy().copy()
            out[name] = entry
        return out

    def _version_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for name in self.layers for field in ("weight", "bias")
                     if (p := self.raw(name, field)) is not None)

    def invalidate(self) -> None:
        self._key = None

    def targets(self) -> dict[str, dict[str, torch.Tensor]]:
        key = self._version_key()
        if key != self._key:
            chip = self.quantize(self.raw_parameters())
            self._targets = {name: {k: torch.as_tensor(v).to(self.raw(name, k)) for k, v in entry.items()}
                             for name, entry in chip.items()}
            self._key = key
            self.refreshes += 1
        return self._targets

    def attach(self) -> ChipQuantizer:
        for name in self.layers:
            syn = getattr(self.model, name)
            for field in ("weight", "bias"):
                if getattr(syn, field, None) is not None and not parametrize.is_parametrized(syn, field):
                    parametrize.register_parametrization(syn, field, _StraightThrough(self, name, field),
                                                         unsafe=True)
        return self

    def detach(self) -> None:
        """Remove the parametrizations, keeping the float weights (the ones fine-tuning trained)."""
        for name in self.layers:
            syn = getattr(self.model, name)
            for field in ("weight", "bias"):
                if parametrize.is_parametrized(syn, field):
                    parametrize.remove_parametrizations(syn, field, leave_parametrized=False)


class _StraightThrough(nn.Module):
    """W ↦ W + (Q(W) − W).detach(): the chip's weight forward, the identity backward."""

    def __init__(self, quantizer: ChipQuantizer, layer: str, field: str) -> None:
        super().__init__()
        self.__dict__["quantizer"] = quantizer  # not a submodule
        self.layer, self.field = layer, field

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = self.quantizer.targets()[self.layer][self.field]
        return w + (q - w).detach()


def snap_to_chip(quant: ChipQuantizer, passes: int = 3, tol: float = 1e-6) -> dict[str, float]:
    """Set every synaptic layer's float weights and biases to Q(W), Q_b(b) (float32), repeated (at most ``passes``
    times) until quantizing them again changes nothing (snapping moves the row sums, hence the scale and the grid,
    a little); return the residual max |Q(Ŵ) − Ŵ| per layer."""
    residual: dict[str, float] = {}
    for _ in range(passes):
        with torch.no_grad():
            for name, entry in quant.targets().items():
                for field, value in entry.items():
                    quant.raw(name, field).copy_(value)
        quant.invalidate()
        again = quant.targets()
        residual = {name: max(float((again[name][f] - quant.raw(name, f).detach()).abs().max()) for f in again[name])
                    for name in again}
        if max(residual.values(), default=0.0) <= tol:
            break
    return residual


def fine_tune(model: nn.Module, data, quantize: Quantize, epochs: int, lr: float, batch_size: int = 64,
              seed: int = 0, log: Callable[[str], None] | None = None) -> ChipQuantizer:
    """Fine-tune a plain model in place with straight-through chip weights and its own learning rule
    (``spec.method``, Adam); returns the (detached) quantizer."""
    spec = model.spec
    if epochs < 0 or not lr > 0 or batch_size <= 0:
        raise SpecError(f"fine-tuning needs epochs ≥ 0, lr > 0 and batch size > 0, got {epochs}, {lr}, {batch_size}")
    quant = ChipQuantizer(model, quantize).attach()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)
        quant.invalidate()

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
                loss, _ = run_iteration(model, x, y_train[idx], spec.method, None if data.temporal else spec.T, k=k,
                                        mse_alpha=alpha, step=step, rng=rng)
                if not math.isfinite(loss):
                    raise SnnchipError(f"calibration: non-finite loss in epoch {epoch + 1}; lower --calibrate-lr")
                total, n = total + loss, n + 1
            if log is not None:
                log(f"calibration epoch {epoch + 1}/{epochs}: loss {total / max(n, 1):.4f}")
    finally:
        quant.detach()
        model.eval()
    return quant
