"""``snn-train``: the arguments (parsed by ``snnchip.cli.train_parser``) to ``fit``, and a one-screen summary.

``python -m snnchip.train.cli ARGS`` is the same command; it is what ``torchrun`` starts on every rank
(``snn-train --nproc N`` runs ``torchrun --standalone --nproc-per-node N -m snnchip.train.cli ARGS``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from snnchip.errors import SpecError

from .distributed import launched
from .trainer import TrainConfig, fit


def run(args: argparse.Namespace) -> int:
    nproc = getattr(args, "nproc", 1)
    if nproc < 1:
        raise SpecError(f"--nproc must be at least 1, got {nproc}")
    if nproc > 1:
        if launched():
            raise SpecError("--nproc starts torchrun itself; under torchrun leave it out (--nproc-per-node sets it)")
        return launch(args)
    cfg = TrainConfig.from_namespace(args)
    metrics = fit(cfg)
    if not _is_rank0():
        return 0
    rows = metrics["epochs"]
    if not rows:
        print(f"snn-train: nothing to do (already at --epochs {cfg.epochs} or --max-steps); {cfg.out}/model.pt")
        return 0
    last = rows[-1]
    print(f"snn-train: {cfg.model} / {cfg.method} on {cfg.dataset}, T={cfg.T}, {len(rows)} epoch(s) recorded, "
          f"last epoch {last['epoch']}")
    print(f"  test accuracy {last['test_acc']:.4f} (best {metrics['best_test_acc']:.4f}), test loss "
          f"{last['test_loss']:.4f}, train accuracy {last['train_acc']:.4f}")
    rates = ", ".join(f"{k} {v:.3f}" for k, v in last["firing_rate"].items())
    print(f"  {last['time_s']:.1f} s/epoch, peak memory {last['peak_memory_bytes'] / 2**20:.1f} MiB "
          f"({last['peak_memory_kind']}), firing rate: {rates}")
    mem = metrics["parameter_memory_bits"]
    print(f"  parameter memory {mem['binary_bits'] / 8 / 1024:.1f} KiB with binary weights vs "
          f"{mem['float_bits'] / 8 / 1024:.1f} KiB float ({mem['ratio']:.2f}x)")
    print(f"  wrote {cfg.out}/model.pt, {cfg.out}/metrics.json, {cfg.out}/curves.png")
    return 0


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The single-node torchrun command line for ``args`` (options at their defaults are left out)."""
    from snnchip.cli import train_parser

    argv = []
    for action in train_parser()._actions:
        if not action.option_strings or action.dest in ("help", "version", "nproc"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if action.nargs == 0 else [flag, str(value)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
            "-m", "snnchip.train.cli", *argv]


def launch(args: argparse.Namespace) -> int:
    """``snn-train --nproc N``: run torchrun; a failing rank stops all of them (torchrun's summary names it)."""
    rc = subprocess.call(torchrun_command(args))
    if rc:
        print(f"snn-train: the {args.nproc}-process run failed (exit code {rc}); torchrun stopped every rank, "
              "the failing rank's traceback is above", file=sys.stderr)
    return rc


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    from snnchip.cli import train

    sys.exit(record(train)())
