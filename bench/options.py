"""The command-line values every ``snn-bench`` subcommand shares, checked before any work: one
``BenchmarkError`` line (exit code 2) for a bad value, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from snnchip.errors import BenchmarkError, SnnchipError


def time_steps(text: str) -> list[int]:
    """``"4,8,16"`` -> [4, 8, 16]: comma-separated positive integers."""
    try:
        Ts = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise BenchmarkError(f"--T must be comma-separated integers, got {text!r}") from None
    if not Ts or min(Ts) <= 0:
        raise BenchmarkError(f"--T needs positive time steps, got {text!r}")
    return Ts


def names(text: str, valid: Sequence[str], option: str, groups: Mapping[str, Sequence[str]] | None = None
          ) -> list[str]:
    """A comma-separated list of ``valid`` names, or one of the ``groups`` (e.g. ``all``)."""
    spec = str(text).strip()
    if groups and spec in groups:
        return list(groups[spec])
    chosen = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in valid]
    if unknown or not chosen:
        extra = f" or one of {', '.join(groups)}" if groups else ""
        raise BenchmarkError(f"{option}: unknown {', '.join(map(repr, unknown)) or 'empty list'}; valid: "
                             f"{', '.join(valid)} (comma-separated){extra}")
    return chosen


def prepare(args: argparse.Namespace) -> None:
    """Check the shared options (``repeats``, ``warmup``, ``batch_size``, ``threads``, ``json``, ``plot``,
    ``markdown``) and apply ``--threads``."""
    for option in ("repeats", "warmup", "batch_size", "threads"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise BenchmarkError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    for option in ("json", "plot", "markdown"):
        path = getattr(args, option, None)
        if path and Path(path).is_dir():
            raise BenchmarkError(f"--{option} {path} is a directory; give a file name")
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def command(prog: str, body: Callable[[], int]) -> int:
    """Run the body of a ``python -m snnchip.bench.*`` command: an ``SnnchipError`` becomes one line on stderr and
    exit code 2, as in ``snn-bench``."""
    try:
        return body()
    except SnnchipError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
