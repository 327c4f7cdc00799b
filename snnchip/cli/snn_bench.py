"""``snn-bench train|peers|hwsim``: benchmark tables, plots and JSON."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from snnchip.cli.command import base_parser, run_command
from snnchip.errors import SnnchipError

BENCHES = {
    "train": ("snnchip.train.bench", "run"),
    "hwsim": ("snnchip.hw_sim.bench", "run"),
}
# Defaults that differ per benchmark (the parser's are None): peers runs both of its nets at their own batch sizes.
BENCH_DEFAULTS = {
    "train": {"model": "mlp", "methods": "bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f", "batch_size": 32},
    "peers": {"model": "conv,mlp", "methods": "all"},
    "hwsim": {"batch_size": 32},
}


def peers_from_checkout(args: argparse.Namespace) -> int:
    """``snn-bench peers`` runs ``bench/peers.py`` of the repository checkout (bench/ is not installed)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "peers.py"
    if not path.is_file():
        raise SnnchipError(f"snn-bench peers needs a snnchip repository checkout (editable install): {path} "
                           f"does not exist")
    spec = importlib.util.spec_from_file_location("snnchip_bench_peers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(args)


def parser() -> argparse.ArgumentParser:
    p = base_parser(
        "snn-bench",
        "Benchmarks (time per iteration, peak memory, simulator speed); tables, plots and --json output.",
        "  snn-bench train --model mlp --methods bptt,ottt-a,sltt --T 4,8,16,32 --json out.json\n"
        "  snn-bench hwsim --json hwsim.json\n"
        "  snn-bench peers --model conv --T 4,16 --json peers.json --plot peers.png --markdown docs/BENCHMARKS.md\n"
        "    (peers: from a repository checkout with `make setup-bench`; SpikingJelly and snnTorch side by side)\n",
    )
    p.add_argument("which", choices=[*BENCHES, "peers"])
    p.add_argument("--model", default=None, help="train: a zoo model (default mlp); peers: conv,mlp (default both)")
    p.add_argument("--methods", default=None, help="train: default bptt,ottt-o,ottt-a,sltt,sltt-k,saf-e,saf-f; "
                   "peers: all (default), ours, peers, or a list")
    p.add_argument("--T", default="4,8,16,32", help="comma-separated time steps")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (peers: 32 conv, 128 mlp)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="peers: torch threads (default: torch's)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="peers: our rules with eager LIF kernels (default: torch.compile'd, as snn-train --compile)")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--markdown", default=None, help="peers: write the Markdown report (docs/BENCHMARKS.md)")
    return p


def handle(args: argparse.Namespace) -> int:
    for key, value in BENCH_DEFAULTS[args.which].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.which == "peers":
        return peers_from_checkout(args)
    module, func = BENCHES[args.which]
    return getattr(importlib.import_module(module), func)(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
