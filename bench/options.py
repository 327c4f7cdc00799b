"""The settings of ``snn-bench`` (``BenchConfig``, from which the command's options are generated), checked
before any work: one ``BenchmarkError`` line (exit code 2) for a bad value, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from snnchip.errors import BenchmarkError, SnnchipError
from snnchip.options import option

BENCHES = ("train", "peers", "hwsim", "memory", "headroom", "deploy")
DEFAULT_T = "4,8,16,32"
# Defaults that differ per benchmark (the config's are None): peers runs both of its nets at their own batch sizes.
BENCH_DEFAULTS = {
    "train": {"model": "mlp", "methods": "bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f", "batch_size": 32},
    "peers": {"model": "conv,mlp", "methods": "all"},
    "hwsim": {"batch_size": 32},
    "memory": {"model": "vgg,conv", "methods": "ottt-a,sj-ottt,sltt,sj-sltt", "batch_size": 8},
    "headroom": {},
    "deploy": {"model": "vgg,resnet18,empf-resnet18", "batch_size": 32, "T": "4"},
}


@dataclass
class BenchConfig:
    """One benchmark run (``snn-bench WHICH`` options)."""

    which: str = option(help="the benchmark", positional=True, choices=BENCHES)
    model: str | None = option(None, help="train: a zoo model (default mlp); peers, memory: conv, mlp, vgg, "
                               "comma-separated (default conv,mlp; memory: vgg,conv); deploy: vgg, resnet18, "
                               "empf-resnet18 (default all three)")
    methods: str | None = option(None, help="train: default bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f; "
                                 "peers: all (default), ours, peers, or a list; memory: default "
                                 "ottt-a,sj-ottt,sltt,sj-sltt")
    T: str | None = option(None, help=f"comma-separated time steps (default {DEFAULT_T}; hwsim: the first; deploy: "
                           "one, default 4)")
    batch_size: int | None = option(None, help="default 32 (peers: 32 conv, 128 mlp and vgg; memory: 8)")
    warmup: int = option(3, help="untimed iterations first: one-time costs such as allocation, kernel creation "
                         "and (re)compilation")
    repeats: int = option(5, help="timed iterations; the median is reported")
    device: str = option("cpu", help="train, peers: cpu, cuda or cuda:N")
    threads: int = option(1, help="torch threads (1: on a busy machine more threads wait for each other and "
                          "single timings can be 10-100x off)")
    compile: bool = option(True, help="peers: our rules with eager LIF kernels (default: torch.compile'd, as "
                           "snn-train --compile)", flag="--no-compile")
    max_steps: int | None = option(None, help="deploy: optimizer steps of training before the export (default: 2; "
                                   "empf-resnet18: 40, since after 2 its folded λ̂ reach 2.15 and the export refuses "
                                   "it by name)")
    data_dir: str | None = option(None, help="deploy: CIFAR-10 python-pickle batches (default: synthetic images in "
                                  "that layout)", path="input")
    lava_samples: int = option(0, help="deploy: samples run in Lava fixed_pt beside the chip simulator (0: none; "
                               "about 10 s per Lava step at VGG-11 scale)")
    json: str | None = option(None, help="write the results as JSON here", path="output")
    plot: str | None = option(None, help="write a PNG plot here", path="output")
    markdown: str | None = option(None, help="peers: write the Markdown report (docs/BENCHMARKS.md)", path="output")

    def with_defaults(self) -> BenchConfig:
        """This config with the per-benchmark defaults filled in where a value was not given."""
        given = {**BENCH_DEFAULTS[self.which], "T": BENCH_DEFAULTS[self.which].get("T", DEFAULT_T)}
        return replace(self, **{k: v for k, v in given.items() if getattr(self, k) is None})


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


def prepare(args: argparse.Namespace | BenchConfig) -> None:
    """Check the shared options (``repeats``, ``warmup``, ``batch_size``, ``threads``, ``json``, ``plot``,
    ``markdown``) and apply ``--threads``."""
    for name in ("repeats", "warmup", "batch_size", "threads", "max_steps"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise BenchmarkError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if getattr(args, "lava_samples", 0) < 0:
        raise BenchmarkError(f"--lava-samples must be at least 0, got {args.lava_samples}")
    for name in ("json", "plot", "markdown"):
        path = getattr(args, name, None)
        if path and Path(path).is_dir():
            raise BenchmarkError(f"--{name} {path} is a directory; give a file name")
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
