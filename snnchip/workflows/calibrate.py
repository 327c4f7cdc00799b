"""Quantization-aware calibration: ``snn-export MODEL.pt --target loihi --calibrate -o DIR``.

1. the plain (folded) model ``from_plain(spec, plain_parameters(model))``, i.e. the network export sees;
2. ``snnchip.train.qat.fine_tune`` with the Loihi quantizer ``snnchip.export.loihi.chip_weights`` as Q:
   W_used = W + (Q(W) − W).detach(), Q(W) = mant(W·c/2^e)·2^e/c, Q_b(b) = round(b·c)/c (the stage scale c,
   exponent e and mantissa grid those of the deployment of the current weights, recomputed after every step);
3. snap: the float weights become Q(W), so the float model that is exported, saved and validated is the network
   the chip runs (without it the straight-through "shadow" weights drift: digits demo MLP with a 130× outlier
   weight, 10 epochs: float 78.9 % vs chip 95.1 % unsnapped, 95.3 % vs 95.1 % snapped);
4. export the calibrated model to DIR and write, atomically each, ``DIR/model.calibrated.pt`` (a normal
   checkpoint) and ``DIR/calibration.json``: float and bit-exact chip test accuracy (``ChipSimulator``), their gap
   and decision agreement, before and after, plus the settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snnchip.errors import SnnchipError
from snnchip.options import option

CALIBRATED_NAME = "model.calibrated.pt"
RECORD_NAME = "calibration.json"


@dataclass
class CalibrationConfig:
    """Calibration settings (``snn-export --calibrate`` options)."""

    epochs: int = option(3, help="calibration epochs", flag="--calibrate-epochs")
    lr: float = option(2e-4, help="calibration learning rate, Adam", flag="--calibrate-lr")
    dataset: str = option("digits", help="calibration data and test set")
    data_dir: str | None = option(None, help="local dataset files (see snn-train --dataset)")
    batch_size: int = option(64, help="calibration batch size", flag="--calibrate-batch-size")
    seed: int = option(0, help="calibration seed", flag="--calibrate-seed")


def accuracies(model: nn.Module, dep: Any, xs: torch.Tensor, y: np.ndarray, batch_size: int = 256
               ) -> dict[str, float]:
    """Float (``simulate``) and bit-exact chip (``ChipSimulator``) accuracy on time-major inputs, and the gap."""
    from snnchip.hw_sim.chip import ChipSimulator
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


def calibrate(model_path: str | Path, out_dir: str | Path, cfg: CalibrationConfig | None = None,
              samples: int | None = None, snap: bool = True, log=print) -> dict[str, Any]:
    """Calibrate ``model_path``, export it to ``out_dir`` and record the accuracies before and after.

    ``snap``: the exported (and saved) weights are the chip's weights Q(W) of the calibrated float weights
    (``after``); ``after_unsnapped`` records the calibrated float weights themselves. ``snap_residual``:
    max |Q(Ŵ) − Ŵ| per layer when the snapped weights are quantized again.
    """
    from snnchip.checkpoint import save_checkpoint
    from snnchip.export.loihi import calibratable_layers, chip_weights, export_loihi
    from snnchip.export.nir_export import spec_to_nir
    from snnchip.train import from_plain, load_model, plain_parameters, plain_spec
    from snnchip.train.data import load_dataset
    from snnchip.train.inference import encoded_test_set
    from snnchip.train.qat import ChipQuantizer, fine_tune, snap_to_chip

    cfg = cfg or CalibrationConfig()
    t0 = time.perf_counter()
    model, ckpt = load_model(model_path)
    spec = plain_spec(ckpt.spec)
    calibratable_layers(spec)  # refuse unsupported networks before any work
    torch.manual_seed(cfg.seed)
    plain = from_plain(ckpt.spec, plain_parameters(model)).eval()
    data = load_dataset(cfg.dataset, cfg.data_dir, spec=spec)
    xs, y = encoded_test_set(spec, data, samples)

    def quantize(params: dict) -> dict:
        return chip_weights(spec, params)[1]

    def deployment(quant: ChipQuantizer) -> Any:
        return chip_weights(spec, quant.raw_parameters())[0]

    quant = ChipQuantizer(plain, quantize)
    before = accuracies(plain, deployment(quant), xs, y)
    log(f"before calibration: float {before['float_accuracy']:.2%}, chip {before['chip_accuracy']:.2%} "
        f"(gap {before['gap_points']:+.2f} points, agreement {before['decision_agreement']:.2%})")
    quant = fine_tune(plain, data, quantize, cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed, log=log)
    shadow = accuracies(plain, deployment(quant), xs, y)
    residual = snap_to_chip(quant) if snap else None
    after = accuracies(plain, deployment(quant), xs, y)
    if snap:
        log(f"calibrated float weights (before snapping): float {shadow['float_accuracy']:.2%}, chip "
            f"{shadow['chip_accuracy']:.2%}")
    log(f"after calibration:  float {after['float_accuracy']:.2%}, chip {after['chip_accuracy']:.2%} "
        f"(gap {after['gap_points']:+.2f} points, agreement {after['decision_agreement']:.2%})")
    record = {
        "model": str(model_path), "method": spec.method, "dataset": cfg.dataset, "T": spec.T,
        "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, "optimizer": "adam",
        "quantizer": "straight-through W + (Q(W) - W).detach(), Q = export.quantize of the current weights; "
                     "scale c and exponent e recomputed after every optimizer step",
        "quantizer_refreshes": quant.refreshes, "snapped": snap,
        "before": before, "after": after, "after_unsnapped": shadow, "snap_residual": residual,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = Path(out_dir)
    export_loihi(spec_to_nir(spec, plain_parameters(plain)), out)
    save_checkpoint(out / CALIBRATED_NAME, spec, plain.state_dict(),
                    metrics={"calibration": record, "source": dict(ckpt.metrics)}, extra={})
    from snnchip.atomic import write_text_atomic

    write_text_atomic(out / RECORD_NAME, json.dumps(record, indent=2))
    return record


def calibrate_and_export(export_cfg: Any, cfg: CalibrationConfig, log=print) -> list[str]:
    """``snn-export MODEL.pt --target loihi --calibrate -o DIR``: calibrate, export, and the report lines."""
    from snnchip.export.loihi import load_deploy
    from snnchip.export.quantize import format_report

    if export_cfg.target != "loihi":
        raise SnnchipError(f"--calibrate fine-tunes for the Loihi quantizer; it needs --target loihi, not "
                           f"{export_cfg.target!r}")
    if Path(export_cfg.model).suffix != ".pt":
        raise SnnchipError(f"--calibrate needs a model.pt written by snn-train (it trains), got {export_cfg.model}")
    record = calibrate(export_cfg.model, export_cfg.out, cfg, log=log)
    dep = load_deploy(export_cfg.out)
    lines = [format_report(dep.qnet.report), f"{'':<22}{'float':>9}{'chip':>9}{'gap (pts)':>11}{'agreement':>11}"]
    rows = [("before calibration", record["before"])]
    if record["snapped"]:
        rows.append(("calibrated, unsnapped", record["after_unsnapped"]))
    for label, r in (*rows, ("after calibration", record["after"])):
        lines.append(f"{label:<22}{r['float_accuracy']:>9.2%}{r['chip_accuracy']:>9.2%}{r['gap_points']:>+11.2f}"
                     f"{r['decision_agreement']:>11.2%}")
    lines.append(f"wrote {export_cfg.out}: deploy directory of the calibrated model, {CALIBRATED_NAME}, "
                 f"{RECORD_NAME} ({record['seconds']:.1f} s)")
    return lines
