"""``snn-bench train|peers|hwsim``: benchmark tables, plots and JSON."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from snnchip.cli.command import base_parser, run_command

BENCHES = {
    "train": ("snnchip.bench.train", "run"),
    "peers": ("snnchip.bench.peers", "run"),
    "hwsim": ("snnchip.bench.hwsim", "run"),
}
# Defaults that differ per benchmark (the parser's are None): peers runs both of its nets at their own batch sizes.
BENCH_DEFAULTS = {
    "train": {"model": "mlp", "methods": "bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f", "batch_size": 32},
    "peers": {"model": "conv,mlp", "methods": "all"},
    "hwsim": {"batch_size": 32},
}


def parser() -> argparse.ArgumentParser:
    p = base_parser(
        "snn-bench",
        "Benchmarks (time per iteration, peak memory, simulator speed); tables, plots and --json output.",
        "  snn-bench train --model mlp --methods bptt,ottt-a,sltt --T 4,8,16,32 --json out.json --plot train.png\n"
        "  snn-bench hwsim --json hwsim.json --plot hwsim.png\n"
        "  snn-bench peers --model conv --T 4,16 --json peers.json --plot peers.png --markdown docs/BENCHMARKS.md\n"
        "    (peers: SpikingJelly and snnTorch side by side; install them with `make setup-bench`)\n",
    )
    p.add_argument("which", choices=list(BENCHES))
    p.add_argument("--model", default=None, help="train: a zoo model (default mlp); peers: conv, mlp, vgg, "
                   "comma-separated (default conv,mlp)")
    p.add_argument("--methods", default=None, help="train: default bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f; "
                   "peers: all (default), ours, peers, or a list")
    p.add_argument("--T", default="4,8,16,32", help="comma-separated time steps (hwsim: the first; default "
                   "4,8,16,32)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (peers: 32 conv, 128 mlp and vgg)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first: one-time costs such as "
                   "allocation, kernel creation and (re)compilation (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="timed iterations; the median is reported (default 5)")
    p.add_argument("--device", default="cpu", help="train, peers: cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a busy machine more threads "
                   "wait for each other and single timings can be 10-100x off)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="peers: our rules with eager LIF kernels (default: torch.compile'd, as snn-train --compile)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--plot", default=None, help="write a PNG plot here")
    p.add_argument("--markdown", default=None, help="peers: write the Markdown report (docs/BENCHMARKS.md)")
    return p


def handle(args: argparse.Namespace) -> int:
    for key, value in BENCH_DEFAULTS[args.which].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    module, func = BENCHES[args.which]
    return getattr(importlib.import_module(module), func)(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
