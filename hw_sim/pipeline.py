"""``snn-pipeline CONFIG.toml``: train -> export -> validate, everything under one run directory.

A config has one table per stage; its keys are the long options of the matching command
(``snn-train``, ``snn-validate``), so a config line and a command-line flag mean the same thing::

    [run]
    out = "runs/demo"                     # run directory (overridden by --out)

    [train]                               # snn-train options (--out is the run directory)
    dataset = "digits"
    model = "mlp"
    method = "ottt-a"
    T = 6
    epochs = 20

    [export]
    targets = ["nir", "loihi"]            # written to RUN/model.nir, RUN/deploy/, RUN/model.onnx

    [validate]                            # snn-validate options; --json and --plots go under RUN
    lava_samples = 20
    min_agreement = 0.98
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import tomllib

from snnchip.errors import SnnchipError

EXPORT_OUTPUTS = {"nir": "model.nir", "loihi": "deploy", "onnx": "model.onnx", "netx": "model.net"}


def _argv(table: dict[str, Any]) -> list[str]:
    """Turn a config table into command-line flags (``batch_size = 64`` -> ``--batch-size 64``)."""
    argv: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def load_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SnnchipError(f"{p}: no such config file (see configs/ for examples)")
    try:
        config = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SnnchipError(f"{p}: not valid TOML: {exc}") from None
    unknown = set(config) - {"run", "train", "export", "validate"}
    if unknown:
        raise SnnchipError(f"{p}: unknown config tables {sorted(unknown)}; valid: run, train, export, validate")
    if "train" not in config:
        raise SnnchipError(f"{p}: a pipeline config needs a [train] table")
    return config


def _stage_args(parser: argparse.ArgumentParser, argv: list[str], where: str) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit:
        raise SnnchipError(f"invalid options in the [{where}] table: {' '.join(argv)}") from None


def run(args: argparse.Namespace) -> int:
    """Run the whole pipeline described by ``args.config``; return the validation exit code."""
    from snnchip import cli

    config = load_config(args.config)
    out = Path(args.out or config.get("run", {}).get("out") or f"runs/{Path(args.config).stem}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    print(f"== [1/3] train -> {out}/model.pt", flush=True)
    train_args = _stage_args(cli.train_parser(), [*_argv(config["train"]), "--out", str(out)], "train")
    from snnchip.train.cli import run as train_run

    code = train_run(train_args)
    if code:
        return code

    targets = config.get("export", {}).get("targets", ["nir", "loihi"])
    bad = [t for t in targets if t not in EXPORT_OUTPUTS]
    if bad:
        raise SnnchipError(f"unknown export targets {bad}; valid: {', '.join(EXPORT_OUTPUTS)}")
    from snnchip.export.cli import run as export_run

    for i, target in enumerate(targets, 1):
        dest = out / EXPORT_OUTPUTS[target]
        print(f"== [2/3] export ({i}/{len(targets)}) --target {target} -> {dest}", flush=True)
        export_args = _stage_args(cli.export_parser(), [str(out / "model.pt"), "--target", target, "-o", str(dest)],
                                  "export")
        code = export_run(export_args)
        if code:
            return code

    print("== [3/3] validate (the equivalence ladder)", flush=True)
    validate_argv = [str(out / "model.pt")]
    validate_argv += _argv({"dataset": config["train"].get("dataset", "digits"), **config.get("validate", {})})
    validate_argv += ["--json", str(out / "report.json"), "--plots", str(out / "plots")]
    validate_args = _stage_args(cli.validate_parser(), validate_argv, "validate")
    from snnchip.hw_sim.cli import validate as validate_run

    code = validate_run(validate_args)
    minutes = (time.perf_counter() - started) / 60
    print(f"\npipeline finished in {minutes:.1f} min; everything is under {out}/", file=sys.stderr)
    return code
