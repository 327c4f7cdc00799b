"""``snn-bench train|peers|hwsim|memory|headroom|deploy``: benchmark tables, plots and JSON."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from snnchip.cli.command import base_parser, run_command
from snnchip.cli.options import add_options, config

RUNNERS = {"train": "snnchip.bench.train", "peers": "snnchip.bench.peers", "hwsim": "snnchip.bench.hwsim",
           "memory": "snnchip.bench.memory", "headroom": "snnchip.bench.headroom", "deploy": "snnchip.bench.deploy"}


EXAMPLES = {
    "train": "  snn-bench train --model mlp --methods bptt,ottt-a,sltt --T 4,8,16,32 --json out.json --plot t.png\n",
    "hwsim": "  snn-bench hwsim --json hwsim.json --plot hwsim.png\n",
    "peers": "  snn-bench peers --model conv --T 4,16 --json peers.json --plot p.png --markdown docs/BENCHMARKS.md\n"
             "    (peers: SpikingJelly and snnTorch side by side; install them with `make setup-bench`)\n",
    "memory": "  snn-bench memory --model vgg --T 4 --batch-size 8 --json memory.json\n"
              "    (where one iteration's memory goes, ours and SpikingJelly's: gradients, saved for backward, ...)\n",
    "headroom": "  snn-bench headroom --json headroom.json\n"
                "    (per-layer spike agreement with the NIR reference, one-step vs data headroom, deep nets)\n",
    "deploy": "  snn-bench deploy --model vgg,resnet18 --json deploy.json\n"
              "    (VGG-11 and ResNet-18 at CIFAR-10 size: export time and memory, deploy directory, chip simulator vs "
              "float)\n",
}
WHAT = {"train": "time and peak memory per training iteration of each learning rule, over T",
        "peers": "our rules beside SpikingJelly and snnTorch on the same network",
        "hwsim": "the bit-exact chip simulator against Lava, per sample-step (a ratio on one machine)",
        "memory": "where one training iteration's memory goes, ours and SpikingJelly's",
        "headroom": "how faithful deep foreign graphs stay on the chip, layer by layer, one-step vs data headroom",
        "deploy": "the seeds' VGG-11 and ResNet-18 at CIFAR-10 size on the way to the chip: export, size, speed"}


def parser() -> argparse.ArgumentParser:
    from snnchip.bench.options import BenchConfig

    p = base_parser(
        "snn-bench",
        "Benchmarks (time per iteration, peak memory, simulator speed); tables, plots and --json output. "
        "`snn-bench BENCH --help` lists the options of one.", "".join(EXAMPLES.values()))
    sub = p.add_subparsers(dest="which", required=True, metavar="{" + ",".join(RUNNERS) + "}",
                           parser_class=type(p))
    for name in RUNNERS:
        sp = sub.add_parser(name, help=WHAT[name], description=f"snn-bench {name}: {WHAT[name]}.",
                            epilog="example:\n" + EXAMPLES[name], formatter_class=p.formatter_class)
        add_options(sp, BenchConfig, exclude=("which",))
    return p


def handle(args: argparse.Namespace) -> int:
    from snnchip.bench.options import BenchConfig

    cfg = config(BenchConfig, args).with_defaults()
    return importlib.import_module(RUNNERS[cfg.which]).run(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
