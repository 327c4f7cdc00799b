"""``snn-pipeline CONFIG.toml``: train → export → validate, everything under one run directory.

A config has one table per stage; its keys are the fields of the stage's config dataclass, which are also the
long options of the matching command (``TrainConfig`` = ``snn-train``, ``ValidateConfig`` = ``snn-validate``),
so a config line and a command-line flag mean the same thing::

    [run]
    out = "runs/demo"                     # run directory (overridden by --out)

    [train]                               # snn-train options (its --out is the run directory)
    dataset = "digits"
    model = "mlp"
    method = "ottt-a"
    T = 6
    epochs = 20

    [export]
    targets = ["nir", "loihi"]            # written to RUN/model.nir, RUN/deploy/, RUN/model.onnx, RUN/model.net
    weights = "auto"                      # loihi and the validated deployment: auto, 8bit or wide (--weights)
    headroom = "auto"                     # and: auto, T, step or data (--headroom; data: the training set)

    [validate]                            # snn-validate options; the report and plots go under RUN
    lava_samples = 20
    min_agreement = 0.98

The deployment certified is the one the export wrote (``RUN/deploy/``, ``RUN/deploy-xylo/`` for ``target = "xylo"``),
validated where it stands with the model.pt as its reference (``snn-validate RUN/deploy --model RUN/model.pt``: the
deployment derived again from the model must equal it bit for bit); a run whose targets leave out the validated
chip, or that names ``deploy_out``, certifies the model.pt and writes its certified directory as ``snn-validate`` does.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomllib

from snnchip.errors import SnnchipError
from snnchip.options import from_mapping

TABLES = ("run", "train", "export", "validate")


def load_config(path: str | Path) -> dict[str, Any]:
    """The TOML config at ``path``, its tables checked."""
    from snnchip.filekind import FileKind, expect

    p = Path(path)
    if not p.exists():
        raise SnnchipError(f"{p}: no such config file (see configs/ for examples)")
    if p.is_dir():
        found = sorted(q.name for q in p.glob("*.toml"))
        raise SnnchipError(f"{p} is a directory; expected a TOML pipeline config file"
                           + (f": one of {', '.join(found)} in it" if found else " (see configs/ for examples)"))
    expect(p, "a TOML pipeline config (see configs/ for examples)", (FileKind.TOML, FileKind.TEXT))
    try:
        config = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SnnchipError(f"{p}: not valid TOML: {exc}") from None
    unknown = set(config) - set(TABLES)
    if unknown:
        raise SnnchipError(f"{p}: unknown config tables {sorted(unknown)}; valid: {', '.join(TABLES)}")
    if "train" not in config:
        raise SnnchipError(f"{p}: a pipeline config needs a [train] table")
    for name, table in config.items():
        if not isinstance(table, dict):
            raise SnnchipError(f"{p}: [{name}] must be a table")
    return config


def run_pipeline(config_path: str | Path, out: str | Path | None = None,
                 log: Callable[[str], None] = print, overwrite: bool = False) -> dict[str, Any]:
    """Run the pipeline of ``config_path``; returns the validation report (``report["passed"]``).

    A run directory that already holds a trained run (``model.pt``) is refused, unless ``[train]`` resumes it
    (``resume = true``) or ``overwrite`` trains a new model in its place."""
    from snnchip.train.trainer import TrainConfig, fit, summary
    from snnchip.workflows.export import DEFAULT_NAMES, HEADROOM_CHOICES, WEIGHT_CHOICES, ExportConfig, export
    from snnchip.workflows.report import print_table, write_plots
    from snnchip.workflows.validate import ValidateConfig, validate

    config = load_config(config_path)
    run_dir = Path(out or config.get("run", {}).get("out") or f"runs/{Path(config_path).stem}")
    if "out" in config["train"]:
        raise SnnchipError(f"{config_path}: [train] out = {config['train']['out']!r}: the pipeline trains into its run "
                           "directory; set it as [run] out (or --out) and remove it from [train]")
    train_cfg = from_mapping(TrainConfig, config["train"], "[train]", out=str(run_dir),
                             **({"overwrite": True} if overwrite else {}))
    if (run_dir / "model.pt").exists() and not (train_cfg.resume or overwrite):
        raise SnnchipError(f"{run_dir}: holds a trained run (model.pt); the pipeline would train a new model in its "
                           "place: choose another run directory (--out), set resume = true in [train] to continue it, "
                           "or pass --overwrite to replace it")
    targets = config.get("export", {}).get("targets", ["nir", "loihi"])
    precision = {"weights": config.get("export", {}).get("weights", "auto"),
                 "headroom": config.get("export", {}).get("headroom", "auto")}
    bad = [t for t in targets if t not in DEFAULT_NAMES] if isinstance(targets, list) else [targets]
    if bad or set(config.get("export", {})) - {"targets", *precision} or precision["weights"] not in WEIGHT_CHOICES \
            or precision["headroom"] not in HEADROOM_CHOICES:
        raise SnnchipError(f"[export]: the keys are targets, a list of {', '.join(DEFAULT_NAMES)}, weights (one of "
                           f"{', '.join(WEIGHT_CHOICES)}) and headroom (one of {', '.join(HEADROOM_CHOICES)}); got "
                           f"{config.get('export')}")
    validate_cfg = from_mapping(ValidateConfig, {"dataset": train_cfg.dataset, "data_dir": train_cfg.data_dir,
                                                 **precision, **config.get("validate", {})}, "[validate]")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    log(f"== [1/3] train -> {run_dir}/model.pt")
    try:
        log("\n".join(summary(train_cfg, fit(train_cfg))))
    except BaseException:
        if created:  # nothing trained (missing data, bad config, interrupted): leave no empty run directory
            _remove_if_untrained(run_dir)
        raise
    for i, target in enumerate(targets, 1):
        dest = run_dir / DEFAULT_NAMES[target]
        log(f"== [2/3] export ({i}/{len(targets)}) --target {target} -> {dest}")
        log("\n".join(export(ExportConfig(model=str(run_dir / "model.pt"), target=target, out=str(dest),
                                          **(precision if target == "loihi" else {})))))
    subject = run_dir / "model.pt"
    if validate_cfg.target in targets and validate_cfg.deploy_out is None:  # one deploy directory, certified in place
        subject = run_dir / DEFAULT_NAMES[validate_cfg.target]
        validate_cfg = dataclasses.replace(validate_cfg, model=str(run_dir / "model.pt"))
    log(f"== [3/3] validate (the validation ladder) {subject}")
    report = validate(str(subject), validate_cfg)
    print_table(report)
    for p in write_plots(report, run_dir / "plots"):
        log(f"plot: {p}")
    from snnchip.atomic import write_text_atomic

    write_text_atomic(run_dir / "report.json",
                      json.dumps({k: v for k, v in report.items() if not k.startswith("_")}, indent=2))
    log(f"report: {run_dir / 'report.json'}")
    log(f"\npipeline finished in {(time.perf_counter() - started) / 60:.1f} min; everything is under {run_dir}/")
    return report


def _remove_if_untrained(run_dir: Path) -> None:
    """Remove ``run_dir`` when it holds nothing but the run's lock file."""
    from snnchip.options import RUN_FILES

    entries = list(run_dir.iterdir())
    if all(e.name == RUN_FILES[-1] and e.is_file() for e in entries):
        for e in entries:
            e.unlink()
        run_dir.rmdir()
