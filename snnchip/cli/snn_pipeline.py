"""``snn-pipeline CONFIG.toml``: train → export → validate from one config (``snnchip.workflows.pipeline``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from snnchip.cli.command import base_parser, run_command


def parser() -> argparse.ArgumentParser:
    p = base_parser("snn-pipeline", "Train -> export -> validate from one TOML config, everything under one run "
                    "directory. Exit 0 when every validation gate passes, 1 when one fails.",
                    "  snn-pipeline configs/demo.toml\n  snn-pipeline configs/demo.toml --out runs/demo2\n"
                    "  snn-pipeline configs/demo.toml --overwrite   (train runs/demo anew)\n")
    p.add_argument("config", help="TOML config (see configs/)")
    p.add_argument("--out", default=None, help="run directory (default: the config's [run] out, else runs/NAME)")
    p.add_argument("--overwrite", action="store_true", help="train a new model in a run directory that already holds "
                   "one (replacing its model.pt; without it such a directory is refused unless [train] resume = true)")
    return p


def handle(args: argparse.Namespace) -> int:
    from snnchip.workflows.pipeline import run_pipeline

    return 0 if run_pipeline(args.config, args.out, overwrite=args.overwrite)["passed"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
