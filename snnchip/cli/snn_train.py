"""``snn-train``: ``TrainConfig``'s options → ``snnchip.train.fit``, and a one-screen summary.

``python -m snnchip.cli.snn_train ARGS`` is the same command; it is what ``torchrun`` starts on every rank
(``snn-train --nproc N`` runs ``torchrun --standalone --nproc-per-node N -m snnchip.cli.snn_train ARGS``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from snnchip import interrupts
from snnchip.cli.command import base_parser, run_command
from snnchip.cli.options import add_options, config
from snnchip.errors import SpecError

EXAMPLES = """\
  snn-train --dataset digits --model mlp --method ottt-a --T 6 --epochs 20 --out runs/mlp
  snn-train --dataset digits --model convnet --method sltt-k --k 2 --T 6 --out runs/conv
  snn-train --dataset mnist --data-dir ~/data/mnist --model mlp --hidden 400 --method saf-e --out r
  snn-train --dataset digits --model convnet --method empf --empf-variant bn --T 4 --out runs/empf
  snn-train --dataset digits --model mlp --method edbp --T 5 --optimizer adamw --lr 5e-4 --out runs/edbp
"""


def parser() -> argparse.ArgumentParser:
    from snnchip.train.trainer import TrainConfig

    p = base_parser("snn-train", "Train a spiking network with BPTT or an online rule (OTTT, SLTT, SAF, EM-PF, "
                    "event-driven BP).", EXAMPLES)
    add_options(p, TrainConfig)
    p.add_argument("--nproc", type=int, default=1, help="run N data-parallel processes on this machine via torchrun "
                   "(--batch-size is the global batch); multi-node: torchrun -m snnchip.cli.snn_train (default: 1)")
    return p


def handle(args: argparse.Namespace) -> int:
    from snnchip.train.distributed import launched
    from snnchip.train.trainer import TrainConfig, fit, summary

    if args.nproc < 1:
        raise SpecError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1:
        if args.cuda_graph:
            raise SpecError("--cuda-graph trains in one process; the data-parallel gradient all-reduce is not "
                            "captured (leave out --nproc)")
        if launched():
            raise SpecError("--nproc starts torchrun itself; under torchrun leave it out (--nproc-per-node sets it)")
        return launch(args)
    cfg = config(TrainConfig, args)
    metrics = fit(cfg)  # a silent/saturated-layer warning prints as one line (cli.command.run_command)
    if int(os.environ.get("RANK", "0")) == 0:
        print("\n".join(summary(cfg, metrics)))
    return 0


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The single-node torchrun command line for ``args`` (options at their defaults are left out)."""
    argv = []
    for action in parser()._actions:
        if not action.option_strings or action.dest in ("help", "version", "nproc"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if action.nargs == 0 else [flag, str(value)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
            "-m", "snnchip.cli.snn_train", *argv]


def launch(args: argparse.Namespace) -> int:
    """``snn-train --nproc N``: run torchrun; a failing rank stops all of them (torchrun's summary names it)."""
    proc = subprocess.Popen(torchrun_command(args))
    try:
        rc = proc.wait()
    except interrupts.INTERRUPTS as exc:  # hand the signal to torchrun, which stops its ranks, then end as it did
        proc.send_signal(signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if rc:
        print(f"snn-train: the {args.nproc}-process run failed (exit code {rc}); torchrun stopped every rank, "
              "the failing rank's traceback is above", file=sys.stderr)
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    sys.exit(record(main)())
