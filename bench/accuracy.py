"""The accuracy table: every method on digits, MLP (hidden 128), T = 6, 20 epochs, CPU.

    python -m snnchip.bench.accuracy --json out.json [--epochs 20] [--methods bptt,ottt-a,...]

Per method: final and best test accuracy, mean seconds per epoch, and peak activation memory of one
training iteration (autograd saved-tensor bytes, batch 64; ``train.saved_tensor_peak``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile

import torch

from snnchip.atomic import write_text_atomic
from snnchip.errors import BenchmarkError
from snnchip.train.data import load_dataset
from snnchip.train.inference import load_model
from snnchip.train.rules import METHODS
from snnchip.train.trainer import TrainConfig, fit

from . import options
from .train import saved_tensor_peak


def accuracy_table(methods: list[str], epochs: int = 20, T: int = 6, k: int = 2, seed: int = 0) -> list[dict]:
    """One training run per method; its accuracies, seconds per epoch and peak saved-tensor bytes."""
    ds = load_dataset("digits", flat=True)
    x, y = ds.x_train[:64], ds.y_train[:64]
    rows = []
    for method in methods:
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(out=out, method=method, T=T, k=k if method == "sltt-k" else None, epochs=epochs,
                              seed=seed, device="cpu", quiet=True)
            metrics = fit(cfg, dataset=ds)
            model, _ = load_model(f"{out}/model.pt")
        mem = saved_tensor_peak(model, x, y, method, T, k=cfg.k, rng=random.Random(0))
        rows.append({"method": method, "final_test_acc": metrics["final_test_acc"],
                     "best_test_acc": metrics["best_test_acc"],
                     "time_per_epoch_s": statistics.mean(h["time_s"] for h in metrics["epochs"]),
                     "peak_saved_tensor_bytes": mem, "epochs": epochs, "T": T,
                     "k": cfg.k})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnchip.bench.accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--T", type=int, default=6)
    p.add_argument("--k", type=int, default=2, help="K for sltt-k (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    def body() -> int:
        methods = options.names(args.methods, METHODS, "--methods")
        if min(args.epochs, args.T, args.k) < 1:
            raise BenchmarkError(f"--epochs, --T and --k must be at least 1, got {args.epochs}, {args.T}, {args.k}")
        torch.set_num_threads(1)
        rows = accuracy_table(methods, args.epochs, args.T, args.k, args.seed)
        print(f"{'method':8} {'final acc':>9} {'best acc':>9} {'s/epoch':>8} {'peak KiB':>9}")
        for r in rows:
            print(f"{r['method']:8} {r['final_test_acc']:>9.4f} {r['best_test_acc']:>9.4f} "
                  f"{r['time_per_epoch_s']:>8.2f} {r['peak_saved_tensor_bytes'] / 1024:>9.1f}")
        if args.json:
            write_text_atomic(args.json, json.dumps(rows, indent=2))
        return 0

    return options.command(p.prog, body)

if __name__ == "__main__":
    raise SystemExit(main())
