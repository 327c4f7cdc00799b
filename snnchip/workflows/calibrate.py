"""Quantization-aware calibration: ``snn-export MODEL.pt --target loihi|xylo --calibrate -o DIR``.

1. the plain (folded) model ``from_plain(spec, plain_parameters(model))``, i.e. the network export sees;
2. ``snnchip.train.qat.fine_tune`` with the chip's error of every stage (``snnchip.workflows.chip_values``:
   ``quantization_errors`` of the deployment of the current weights, recomputed after every optimizer step) added
   to the stage's current, its matrices held constant: the forward is the chip's current Σ_p Q(A_p)·x + Q(b),
   the gradient straight-through. Every stage type is covered: pooling composed into the next convolution,
   recurrent (feedback) and residual projections, EM-PF stages (their binary weights are exact; their
   full-precision layers are corrected);
3. snap: the float weights of the layers the chip quantizes entry by entry (``elementwise_layers``) become Q(W),
   so that the float model that is exported, saved and validated is the network the chip runs; composed stages
   keep their float weights (export quantizes the composition);
4. export the calibrated model to DIR and write, atomically each, ``DIR/model.calibrated.pt`` (a normal
   checkpoint that records the calibration data as its training set) and ``DIR/calibration.json``: float and
   bit-exact chip test accuracy, their gap and decision agreement, before and after, plus the settings.

The chip is a ``Quantizer``: Loihi 2 (``loihi_quantizer``: ``workflows.chip_values``, ``hw_sim.chip``) or Xylo
(``xylo_quantizer``: ``workflows.xylo_values``, ``hw_sim.xylo``; its stages' int8 weights with shifts and the
readout's bias neuron; nothing is snapped, because Xylo's grid is a stage's, not a layer's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snnchip.errors import SnnchipError
from snnchip.options import option
from snnchip.workflows.export import precision_args

CALIBRATED_NAME = "model.calibrated.pt"
RECORD_NAME = "calibration.json"


@dataclass
class CalibrationConfig:
    """Calibration settings (``snn-export --calibrate`` options)."""

    epochs: int = option(3, help="calibration epochs", flag="--calibrate-epochs")
    lr: float = option(2e-4, help="calibration learning rate, Adam", flag="--calibrate-lr")
    dataset: str = option("digits", help="calibration data and test set")
    data_dir: str | None = option(None, help="local dataset files (see snn-train --dataset)", path="input")
    batch_size: int = option(64, help="calibration batch size", flag="--calibrate-batch-size")
    seed: int = option(0, help="calibration seed", flag="--calibrate-seed")


@dataclass(frozen=True)
class Quantizer:
    """What calibration needs of a chip target: its deployment of (spec, plain parameters) in memory, that
    deployment's error per stage ({stage: ([(source, delay, ΔA)], Δb)}, float64), the chip's decisions (``decider``:
    a deployment's bit-exact simulator, built once, as a function of time-major inputs), the export of the
    calibrated model to a directory, and (None: nothing to snap) the chip values of the layers it quantizes entry
    by entry."""

    deployment: Callable[[Any, dict], Any]
    errors: Callable[[Any], dict]
    decider: Callable[[Any], Callable[[torch.Tensor], np.ndarray]]
    export: Callable[[Any, dict, Path], Any]
    chip_weights: Callable[[Any, dict, Any], dict] | None = None


def loihi_quantizer(wide_weights: bool | None = None, headroom: str | None = None) -> Quantizer:
    """Loihi 2 with ``wide_weights`` and ``headroom`` (None: a snnchip model's default)."""
    from snnchip.export.loihi import export_loihi
    from snnchip.export.nir_export import spec_to_nir
    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.workflows.chip_values import chip_deployment, chip_weights, quantization_errors

    def decider(dep: Any) -> Callable[[torch.Tensor], np.ndarray]:
        chip = ChipSimulator(dep)
        return lambda xb: np.asarray(chip.run(xb.numpy(), states=False).output)[-1].argmax(-1)  # decisions only

    return Quantizer(
        deployment=lambda spec, params: chip_deployment(spec, params, wide_weights, headroom),
        errors=quantization_errors, decider=decider,
        export=lambda spec, params, out: export_loihi(spec_to_nir(spec, params), out, wide_weights=wide_weights,
                                                      headroom=headroom),
        chip_weights=chip_weights)


def xylo_quantizer(data: Any) -> Quantizer:
    """Xylo, its scales sized for the states the training set ``data`` reaches (as its export sizes them)."""
    from snnchip.export.nir_export import spec_to_nir
    from snnchip.export.xylo import export_xylo
    from snnchip.workflows.model_data import dataset_state_bounds
    from snnchip.workflows.xylo_values import xylo_chip, xylo_decider, xylo_errors

    def export(spec: Any, params: dict, out: Path) -> Any:
        graph = spec_to_nir(spec, params)
        return export_xylo(graph, out, bounds=dataset_state_bounds(graph, data))

    return Quantizer(deployment=lambda spec, params: xylo_chip(spec, params, data), errors=xylo_errors,
                     decider=xylo_decider, export=export)


def accuracies(model: nn.Module, dep: Any, xs: torch.Tensor, y: np.ndarray, batch_size: int = 256,
               quantizer: Quantizer | None = None) -> dict[str, float]:
    """Float (``simulate``) and bit-exact chip (``quantizer``'s decisions; default Loihi 2's ``ChipSimulator``)
    accuracy on time-major inputs, and the gap."""
    from snnchip.train import simulate

    decide = (quantizer or loihi_quantizer()).decider(dep)
    f_pred, c_pred = [], []
    for i in range(0, xs.shape[1], batch_size):
        xb = xs[:, i:i + batch_size]
        f_pred.append(simulate(model, xb).output[-1].argmax(-1).cpu().numpy())
        c_pred.append(decide(xb))
    f, c = np.concatenate(f_pred), np.concatenate(c_pred)
    fa, ca = float(np.mean(f == y)), float(np.mean(c == y))
    return {"float_accuracy": fa, "chip_accuracy": ca, "gap_points": 100.0 * (fa - ca),
            "decision_agreement": float(np.mean(f == c)), "samples": int(len(y))}


def _torch(m: Any) -> torch.Tensor | Any:
    """An error matrix as torch: dense or sparse COO (float32); a weight-shared projection's error stays a kernel,
    applied as its convolution (``Kernel.apply_torch``) instead of the matrix it spans."""
    import scipy.sparse as sp

    from snnchip.export.kernel import Kernel

    if isinstance(m, Kernel):
        k = m.with_kernel(np.asarray(m.kernel, np.float32))
        return lambda x: k.apply_torch(x.to(torch.float32), pool_first=True)
    if sp.issparse(m):
        m = sp.coo_matrix(m, dtype=np.float32)
        return torch.sparse_coo_tensor(np.vstack([m.row, m.col]).astype(np.int64), m.data, size=m.shape,
                                       check_invariants=True)
    return torch.as_tensor(np.asarray(m, np.float32))


def chip_errors(model: nn.Module, wide_weights: bool | None = None, headroom: str | None = None,
                quantizer: Quantizer | None = None) -> dict[str, Any]:
    """The chip's error of every stage of a plain model, as ``qat.StageError``s of torch tensors (``quantizer``;
    default Loihi 2 with ``wide_weights`` and ``headroom``)."""
    from snnchip.train import plain_parameters
    from snnchip.train.qat import StageError

    quantizer = quantizer or loihi_quantizer(wide_weights, headroom)
    errors = quantizer.errors(quantizer.deployment(model.spec, plain_parameters(model)))
    return {name: StageError([(src, d, _torch(m)) for src, d, m in projections], _torch(bias))
            for name, (projections, bias) in errors.items()}


def calibrate(model_path: str | Path, out_dir: str | Path, cfg: CalibrationConfig | None = None,
              samples: int | None = None, snap: bool = True, log=print, wide_weights: bool | None = None,
              headroom: str | None = None, target: str = "loihi") -> dict[str, Any]:
    """Calibrate ``model_path`` for ``target`` (``loihi``: with ``wide_weights`` and ``headroom``, None: a snnchip
    model's default, ``export.precision.precision_of``; ``xylo``), export it to ``out_dir`` and record the
    accuracies before and after.

    ``snap``: the exported (and saved) weights of the layers the chip quantizes entry by entry are their chip
    values Q(W) (``after``; Loihi only); ``after_unsnapped`` records the calibrated float weights themselves.
    """
    from snnchip.checkpoint import save_checkpoint
    from snnchip.export.loihi import check_replaceable
    from snnchip.train import from_plain, load_model, plain_parameters, plain_spec
    from snnchip.train.data import load_dataset
    from snnchip.train.inference import encoded_test_set
    from snnchip.train.qat import fine_tune
    from snnchip.train.qat import snap as snap_layers

    cfg = cfg or CalibrationConfig()
    check_replaceable(out_dir)  # before training
    t0 = time.perf_counter()
    model, ckpt = load_model(model_path)
    spec = plain_spec(ckpt.spec)
    torch.manual_seed(cfg.seed)
    plain = from_plain(ckpt.spec, plain_parameters(model)).eval()
    data = load_dataset(cfg.dataset, cfg.data_dir, spec=spec)
    xs, y = encoded_test_set(spec, data, samples)
    quantizer = xylo_quantizer(data) if target == "xylo" else loihi_quantizer(wide_weights, headroom)

    def deployment() -> Any:
        return quantizer.deployment(spec, plain_parameters(plain))

    before = accuracies(plain, deployment(), xs, y, quantizer=quantizer)
    log(f"before calibration: float {before['float_accuracy']:.2%}, chip {before['chip_accuracy']:.2%} "
        f"(gap {before['gap_points']:+.2f} points, agreement {before['decision_agreement']:.2%})")
    correction = fine_tune(plain, data, lambda m: chip_errors(m, quantizer=quantizer), cfg.epochs, cfg.lr,
                           cfg.batch_size, cfg.seed, log=log)
    dep = deployment()
    shadow = accuracies(plain, dep, xs, y, quantizer=quantizer)
    snapped: list[str] = []
    if snap and quantizer.chip_weights is not None:
        values = quantizer.chip_weights(spec, plain_parameters(plain), dep)
        snapped = snap_layers(plain, {k: {f: torch.as_tensor(v, dtype=torch.float32) for f, v in e.items()}
                                      for k, e in values.items()})
        log(f"calibrated float weights (before snapping): float {shadow['float_accuracy']:.2%}, chip "
            f"{shadow['chip_accuracy']:.2%}; snapped to their chip values: {', '.join(snapped) or 'none'}")
    after = accuracies(plain, deployment(), xs, y, quantizer=quantizer) if snapped else shadow
    log(f"after calibration:  float {after['float_accuracy']:.2%}, chip {after['chip_accuracy']:.2%} "
        f"(gap {after['gap_points']:+.2f} points, agreement {after['decision_agreement']:.2%})")
    record = {
        "model": str(model_path), "method": spec.method, "target": target,
        **({"precision": dep.manifest["precision"]} if target == "loihi" else {}),
        "dataset": cfg.dataset, "T": spec.T,
        "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, "optimizer": "adam",
        "quantizer": f"stage-level straight-through: I + Σ_p (Q(A_p) - A_p)·x_p + Q(b) - b with the errors held "
                     f"constant, Q = the {'Xylo' if target == 'xylo' else 'Loihi'} quantizer of the current "
                     "weights, recomputed after every optimizer step",
        "quantizer_refreshes": correction.refreshes, "snapped": snapped,
        "before": before, "after": after, "after_unsnapped": shadow,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = Path(out_dir)
    quantizer.export(spec, plain_parameters(plain), out)
    source = dict(ckpt.metrics)
    trained_on = {**(source.get("config") or {}), "dataset": cfg.dataset, "data_dir": cfg.data_dir}
    save_checkpoint(out / CALIBRATED_NAME, spec, plain.state_dict(),
                    metrics={"calibration": record, "source": source, "config": trained_on}, extra={})
    from snnchip.atomic import write_text_atomic

    write_text_atomic(out / RECORD_NAME, json.dumps(record, indent=2))
    return record


def calibrate_and_export(export_cfg: Any, cfg: CalibrationConfig, log=print) -> list[str]:
    """``snn-export MODEL.pt --target loihi|xylo --calibrate -o DIR``: calibrate, export, and the report lines."""
    if export_cfg.target not in ("loihi", "xylo"):
        raise SnnchipError(f"--calibrate fine-tunes for a chip's quantizer; it needs --target loihi or xylo, not "
                           f"{export_cfg.target!r}")
    if Path(export_cfg.model).suffix != ".pt":
        raise SnnchipError(f"--calibrate needs a model.pt written by snn-train (it trains), got {export_cfg.model}")
    precision = precision_args(export_cfg.weights, export_cfg.headroom) if export_cfg.target == "loihi" else {}
    record = calibrate(export_cfg.model, export_cfg.out, cfg, log=log, target=export_cfg.target, **precision)
    if export_cfg.target == "xylo":
        from snnchip.export.xylo import load_xylo
        from snnchip.workflows.xylo import describe

        lines = describe(load_xylo(export_cfg.out))
    else:
        from snnchip.export.loihi import load_deploy
        from snnchip.export.quantize_report import format_report

        lines = [format_report(load_deploy(export_cfg.out).qnet.report)]
    lines.append(f"{'':<22}{'float':>9}{'chip':>9}{'gap (pts)':>11}{'agreement':>11}")
    rows = [("before calibration", record["before"])]
    if record["snapped"]:
        rows.append(("calibrated, unsnapped", record["after_unsnapped"]))
    for label, r in (*rows, ("after calibration", record["after"])):
        lines.append(f"{label:<22}{r['float_accuracy']:>9.2%}{r['chip_accuracy']:>9.2%}{r['gap_points']:>+11.2f}"
                     f"{r['decision_agreement']:>11.2%}")
    lines.append(f"wrote {export_cfg.out}: deploy directory of the calibrated model, {CALIBRATED_NAME}, "
                 f"{RECORD_NAME} ({record['seconds']:.1f} s)")
    return lines
