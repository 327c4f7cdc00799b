"""Quantization-aware calibration: fine-tune a model with the chip's weights in the forward pass.

``snn-export MODEL.pt --target loihi --calibrate -o DIR`` (``cli_calibrate``):

1. the plain (folded) model: ``from_plain(spec, plain_parameters(model))``, i.e. the network export sees;
2. fine-tune it with the model's own learning rule (``spec.method``, ``snnchip.train.run_iteration``) for a few
   epochs at a small learning rate, every synaptic layer applying the weights the Loihi quantizer produces for
   its current float weights, straight-through:

       W_used = W + (Q(W) − W).detach(),   b_used = b + (Q_b(b) − b).detach()
       Q(W) = mant(W·c/2^e)·2^e/c,  Q_b(b) = round(b·c)/c           (docs/loihi-fixed-point.md, §2)

   where the stage scale c, the exponent e and the mantissa grid (sign mode) are those of
   ``snnchip.export.loihi.deployment_from_graph`` for the current weights: the quantizer is run on the model's
   NIR graph (``spec_to_nir``) and Q applies its (c, e, grid) elementwise with ``export.quantize.to_mantissa``,
   so Q(W) is bit for bit the dequantized weight ``dequantize_weight`` of the deployment (tested). c and e are
   recomputed after every optimizer step (the quantizer is invalidated in the ``step`` callback and also
   whenever a parameter's version counter changes), i.e. Q always equals what exporting *now* would give.
   Thresholds need no rounding (c is chosen so that vth = c·θ is exact) and λ, θ are not trained;
3. snap: the calibrated float weights are replaced by their chip values Q(W) (float32), so that the float model
   that is exported, saved and validated is the network the chip runs (without it the straight-through "shadow"
   weights drift: digits demo MLP with a 130× outlier weight, 10 epochs: float 78.9 % vs chip 95.1 % unsnapped,
   95.3 % vs 95.1 % snapped);
4. export the calibrated model (``export_loihi``) to DIR and write, atomically each, ``DIR/model.calibrated.pt``
   (the plain spec and the calibrated float weights; a normal checkpoint that ``snn-export``/``snn-validate``
   read) and ``DIR/calibration.json``: float and bit-exact chip (``ChipSimulator``) test accuracy, their gap and
   the float/chip decision agreement, before and after, plus the settings.

Layering: this module is in hw_sim because the chip accuracy needs ``ChipSimulator``; it imports export and
train (stages to its left); export does not import it. ``snnchip.cli`` routes ``--calibrate`` here.

Supported stages: a stage whose composed matrix A holds the layer's weights elementwise, i.e. a ``linear``
layer (optionally after ``flatten``) or a ``conv2d`` with no pooling between it and the previous neuron.
Pooling composes kernel entries into sums (A is no longer elementwise in W) and is refused by name, as are
feedback edges (not deployable) and EM-PF/SRM neurons (their per-step tables and trace decays are not modelled
by the straight-through quantizer yet).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from snnchip.checkpoint import save_checkpoint
from snnchip.errors import SnnchipError, SpecError
from snnchip.export.loihi import Deployment, deployment_from_graph, export_loihi
from snnchip.export.nir_export import spec_to_nir
from snnchip.export.quantize import SaturationWarning, mantissa_range, to_mantissa
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.spec import NetworkSpec

DEFAULT_EPOCHS = 3
DEFAULT_LR = 2e-4
CALIBRATED_NAME = "model.calibrated.pt"
RECORD_NAME = "calibration.json"


def synaptic_layers(spec: NetworkSpec) -> list[str]:
    """Names of the synaptic layers (= stage names); refuse stages whose matrix is not elementwise in W."""
    if spec.feedback:
        raise SpecError("calibration: feedback edges cannot be deployed to Loihi (format version 1)")
    names, chain = [], []
    for layer in spec.layers:
        if not layer.synaptic:
            chain.append(layer)
            continue
        pooled = [la.name for la in chain if la.op != "flatten"]
        if pooled:
            raise SpecError(f"calibration: stage {layer.name!r} is fed through {pooled} ({chain[0].op}); pooling "
                            "composes weights into sums, which the elementwise straight-through quantizer cannot "
                            "express (supported: linear, flatten → linear, conv2d without pooling before it)")
        if layer.neuron is None or layer.neuron.kind not in ("lif", "readout"):
            kind = None if layer.neuron is None else layer.neuron.kind
            raise SpecError(f"calibration: layer {layer.name!r} has neuron {kind!r}; Loihi export supports lif and "
                            "readout")
        names.append(layer.name)
        chain = []
    return names


def quantize_like(w: np.ndarray, scale: float, exp: int, grid: tuple[int, int, int]) -> np.ndarray:
    """Q(W) = mant(W·c/2^e)·2^e/c on the grid (lo, hi, step), float64 — the quantizer's own rounding."""
    lo, hi, step = grid
    m, _ = to_mantissa(np.asarray(w, np.float64) * scale / 2.0**exp, lo, hi, step)
    return m * 2.0**exp / scale


class ChipQuantizer:
    """Straight-through Loihi quantization of every synaptic layer of a plain model (``attach``/``detach``).

    ``targets()`` runs the export quantizer (``deployment_from_graph``) on the model's current float weights
    and returns, per layer, Q(W) and Q_b(b) in the model's dtype (``exact`` keeps them in float64, equal bit for
    bit to the deployment's dequantized weights; float32 rounds them to the nearest float32, at most 6e-8
    relative); the parametrizations return W + (Q(W) − W).detach() (and the same for b).
    """

    def __init__(self, model: nn.Module, input_range: float = 1.0, input_frac_bits: int = 8):
        self.model = model
        self.spec: NetworkSpec = model.spec
        self.layers = synaptic_layers(self.spec)
        self.input_range, self.input_frac_bits = input_range, input_frac_bits
        self._key: tuple | None = None
        self._targets: dict[str, dict[str, torch.Tensor]] = {}
        self.exact: dict[str, dict[str, np.ndarray]] = {}
        self.refreshes = 0

    # -- the raw (float) parameters, whether or not the parametrizations are attached
    def raw(self, layer: str, field: str) -> torch.Tensor | None:
        syn = getattr(self.model, layer)
        if parametrize.is_parametrized(syn, field):
            return getattr(syn.parametrizations, field).original
        return getattr(syn, field)

    def raw_parameters(self) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name in self.layers:
            entry = {"weight": self.raw(name, "weight").detach().cpu().to(torch.float32).numpy().copy()}
            b = self.raw(name, "bias")
            if b is not None:
                entry["bias"] = b.detach().cpu().to(torch.float32).numpy().copy()
            out[name] = entry
        return out

    def deployment(self) -> Deployment:
        """The deployment export would write for the current float weights (warnings silenced)."""
        graph = spec_to_nir(self.spec, self.raw_parameters())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SaturationWarning)
            return deployment_from_graph(graph, input_range=self.input_range, input_frac_bits=self.input_frac_bits)

    def _version_key(self) -> tuple:
        key = []
        for name in self.layers:
            for field in ("weight", "bias"):
                p = self.raw(name, field)
                if p is not None:
                    key.append((p.data_ptr(), p._version))
        return tuple(key)

    def invalidate(self) -> None:
        self._key = None

    def targets(self) -> dict[str, dict[str, torch.Tensor]]:
        key = self._version_key()
        if key == self._key:
            return self._targets
        params = self.raw_parameters()
        dep = self.deployment()
        out, self.exact = {}, {}
        for st, q in zip(dep.net.stages, dep.qnet.stages, strict=True):
            e = q.weight_exp + (dep.qnet.input_frac_bits if q.num_message_bits else 0)
            grid = mantissa_range(st.weight)
            ref = self.raw(q.name, "weight")
            exact = {"weight": quantize_like(params[q.name]["weight"], q.scale, e, grid)}
            if "bias" in params[q.name]:
                exact["bias"] = np.round(params[q.name]["bias"].astype(np.float64) * q.scale) / q.scale
            self.exact[q.name] = exact  # float64, bit for bit the dequantized deployment
            out[q.name] = {k: torch.as_tensor(v, dtype=ref.dtype, device=ref.device) for k, v in exact.items()}
        self._targets, self._key = out, key
        self.refreshes += 1
        return out

    def attach(self) -> ChipQuantizer:
        for name in self.layers:
            syn = getattr(self.model, name)
            for field in ("weight", "bias"):
                if getattr(syn, field, None) is not None and not parametrize.is_parametrized(syn, field):
                    parametrize.register_parametrization(syn, field, _StraightThrough(self, name, field),
                                                         unsafe=True)
        return self

    def detach(self) -> None:
        """Remove the parametrizations, keeping the float weights (the ones calibration trained)."""
        for name in self.layers:
            syn = getattr(self.model, name)
            for field in ("weight", "bias"):
                if parametrize.is_parametrized(syn, field):
                    parametrize.remove_parametrizations(syn, field, leave_parametrized=False)


class _StraightThrough(nn.Module):
    """W ↦ W + (Q(W) − W).detach(): the chip's weight forward, the identity backward."""

    def __init__(self, quantizer: ChipQuantizer, layer: str, field: str):
        super().__init__()
        self.__dict__["quantizer"] = quantizer  # not a submodule
        self.layer, self.field = layer, field

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        q = self.quantizer.targets()[self.layer][self.field]
        return w + (q - w).detach()


def snap_to_chip(quant: ChipQuantizer, passes: int = 3, tol: float = 1e-6) -> dict[str, float]:
    """Set every synaptic layer's float weights and biases to Q(W), Q_b(b) (float32), repeated (at most
    ``passes`` times) until quantizing them again changes nothing (snapping moves the row sums, hence the scale c
    and the grid, a little); return the residual max |Q(Ŵ) − Ŵ| per layer."""
    residual: dict[str, float] = {}
    for _ in range(passes):
        targets = quant.targets()
        with torch.no_grad():
            for name, entry in targets.items():
                for field, value in entry.items():
                    quant.raw(name, field).copy_(value)
        quant.invalidate()
        again = quant.targets()
        residual = {name: max(float((again[name][f] - quant.raw(name, f).detach()).abs().max()) for f in again[name])
                    for name in again}
        if max(residual.values(), default=0.0) <= tol:
            break
    return residual


# --------------------------------------------------------------------------------- accuracy, float and chip
def _test_inputs(spec: NetworkSpec, data, samples: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    from snnchip.train.rules import time_major

    x, y = data.test
    n = len(y) if samples is None else min(samples, len(y))
    x, y = x[:n], np.asarray(y[:n])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        xs = x.transpose(0, 1) if data.temporal else time_major(x, spec)
    return xs.float().contiguous(), y


def accuracies(model: nn.Module, dep: Deployment, xs: torch.Tensor, y: np.ndarray, batch_size: int = 256
               ) -> dict[str, float]:
    """Float (``simulate``) and bit-exact chip (``ChipSimulator``) accuracy on time-major inputs, and the gap."""
    from snnchip.train import simulate

    chip = ChipSimulator(dep)
    f_pred, c_pred = [], []
    for i in range(0, xs.shape[1], batch_size):
        xb = xs[:, i:i + batch_size]
        f_pred.append(simulate(model, xb).output[-1].argmax(-1).cpu().numpy())
        c_pred.append(np.asarray(chip.run(xb.numpy()).output)[-1].argmax(-1))
    f, c = np.concatenate(f_pred), np.concatenate(c_pred)
    fa, ca = float(np.mean(f == y)), float(np.mean(c == y))
    return {"float_accuracy": fa, "chip_accuracy": ca, "gap_points": 100.0 * (fa - ca),
            "decision_agreement": float(np.mean(f == c)), "samples": int(len(y))}


# ------------------------------------------------------------------------------------------- calibration
def calibrate_model(model: nn.Module, data, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
                    batch_size: int = 64, seed: int = 0, method: str | None = None,
                    log=None) -> ChipQuantizer:
    """Fine-tune a plain model in place with straight-through chip weights; returns the (detached) quantizer."""
    from snnchip.train import run_iteration

    spec: NetworkSpec = model.spec
    method = method or spec.method
    if epochs < 0 or lr <= 0 or batch_size <= 0:
        raise SpecError(f"calibration needs epochs ≥ 0, lr > 0 and batch size > 0, got {epochs}, {lr}, {batch_size}")
    quant = ChipQuantizer(model).attach()
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
                loss, _ = run_iteration(model, x, y_train[idx], method, None if data.temporal else spec.T, k=k,
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


def calibrate(model_path: str | Path, out_dir: str | Path, dataset: str = "digits", data_dir: str | None = None,
              epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR, batch_size: int = 64, seed: int = 0,
              samples: int | None = None, snap: bool = True, log=print) -> dict[str, Any]:
    """Calibrate ``model_path``, export it to ``out_dir`` and record the accuracies before and after.

    ``snap``: the exported (and saved) weights are the chip's weights Q(W) of the calibrated float weights, so
    that the float reference is the network the chip runs (``after``); ``after_unsnapped`` records the
    calibrated float weights themselves, which after several epochs may sit far from their quantized values
    (the straight-through estimator only trains Q(W)). ``snap_residual``: max |Q(Ŵ) − Ŵ| per layer when the
    snapped weights are quantized again (0 up to float32 rounding unless the stage scale c moved).
    """
    from snnchip.train import from_plain, load_model, plain_parameters, plain_spec
    from snnchip.train.data import load_dataset

    t0 = time.perf_counter()
    model, ckpt = load_model(model_path)
    spec = plain_spec(ckpt.spec)
    synaptic_layers(spec)  # refuse unsupported networks before any work
    torch.manual_seed(seed)
    plain = from_plain(ckpt.spec, plain_parameters(model)).eval()
    data = load_dataset(dataset, data_dir, spec=spec)
    xs, y = _test_inputs(spec, data, samples)
    quant = ChipQuantizer(plain)
    before = accuracies(plain, quant.deployment(), xs, y)
    log(f"before calibration: float {before['float_accuracy']:.2%}, chip {before['chip_accuracy']:.2%} "
        f"(gap {before['gap_points']:+.2f} points, agreement {before['decision_agreement']:.2%})")
    quant = calibrate_model(plain, data, epochs, lr, batch_size, seed, log=log)
    shadow = accuracies(plain, quant.deployment(), xs, y)
    residual = snap_to_chip(quant) if snap else None
    dep = quant.deployment()
    after = accuracies(plain, dep, xs, y)
    if snap:
        log(f"calibrated float weights (before snapping): float {shadow['float_accuracy']:.2%}, chip "
            f"{shadow['chip_accuracy']:.2%}")
    log(f"after calibration:  float {after['float_accuracy']:.2%}, chip {after['chip_accuracy']:.2%} "
        f"(gap {after['gap_points']:+.2f} points, agreement {after['decision_agreement']:.2%})")
    record = {
        "model": str(model_path), "method": spec.method, "dataset": dataset, "T": spec.T,
        "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "optimizer": "adam",
        "quantizer": "straight-through W + (Q(W) - W).detach(), Q = export.quantize of the current weights; "
                     "scale c and exponent e recomputed after every optimizer step",
        "quantizer_refreshes": quant.refreshes, "snapped": snap,
        "before": before, "after": after, "after_unsnapped": shadow, "snap_residual": residual,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = Path(out_dir)
    graph = spec_to_nir(spec, plain_parameters(plain))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)  # the same warnings were shown by no one: report below
        export_loihi(graph, out)
    save_checkpoint(out / CALIBRATED_NAME, spec, plain.state_dict(),
                    metrics={"calibration": record, "source": dict(ckpt.metrics)}, extra={})
    from snnchip.atomic import write_text_atomic

    write_text_atomic(out / RECORD_NAME, json.dumps(record, indent=2))
    return record


def cli_calibrate(args: argparse.Namespace) -> int:
    """``snn-export MODEL.pt --target loihi --calibrate [--calibrate-epochs N] [--calibrate-lr LR] -o DIR``."""
    from snnchip.export.loihi import load_deploy
    from snnchip.export.quantize import format_report

    if args.target != "loihi":
        raise SnnchipError(f"--calibrate fine-tunes for the Loihi quantizer; it needs --target loihi, not "
                           f"{args.target!r}")
    if Path(args.model).suffix != ".pt":
        raise SnnchipError(f"--calibrate needs a model.pt written by snn-train (it trains), got {args.model}")
    record = calibrate(args.model, args.out, dataset=args.dataset, data_dir=args.data_dir,
                       epochs=args.calibrate_epochs, lr=args.calibrate_lr)
    dep = load_deploy(args.out)
    print(format_report(dep.qnet.report))
    b, a = record["before"], record["after"]
    print(f"{'':<22}{'float':>9}{'chip':>9}{'gap (pts)':>11}{'agreement':>11}")
    rows = [("before calibration", b)]
    if record["snapped"]:
        rows.append(("calibrated, unsnapped", record["after_unsnapped"]))
    for label, r in (*rows, ("after calibration", a)):
        print(f"{label:<22}{r['float_accuracy']:>9.2%}{r['chip_accuracy']:>9.2%}{r['gap_points']:>+11.2f}"
              f"{r['decision_agreement']:>11.2%}")
    print(f"wrote {args.out}: deploy directory of the calibrated model, {CALIBRATED_NAME}, {RECORD_NAME} "
          f"({record['seconds']:.1f} s)")
    return 0
