"""The accuracy table: every learning rule on digits at ``snn-train``'s default settings, CPU, one thread.

    python -m snnchip.bench.accuracy --model convnet --epochs 5 --json out.json
    python -m snnchip.bench.accuracy --model mlp --epochs 20 [--methods bptt,ottt-a,...]

Per method: final and best test accuracy, epochs, mean seconds per epoch, and peak activation memory of one
training iteration (autograd saved-tensor bytes, one default batch; ``bench.saved_tensor_peak``); printed as the
markdown table of README.md. Everything else (T, K, learning rate, batch size, initialisation) is ``TrainConfig``'s
default for the method, as ``snn-train --dataset digits --model M --method X --epochs N`` runs it.
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

MODELS = ("mlp", "convnet")

def accuracy_table(methods: list[str], model: str = "mlp", epochs: int = 20, seed: int = 0) -> list[dict]:
    """One training run per method at its defaults; accuracies, seconds per epoch, peak saved-tensor bytes."""
    ds = load_dataset("digits", flat=model == "mlp")
    rows = []
    for method in methods:
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(out=out, model=model, method=method, epochs=epochs, seed=seed, device="cpu", quiet=True)
            metrics = fit(cfg, dataset=ds)
            net, _ = load_model(f"{out}/model.pt")
        x, y = ds.x_train[:cfg.batch_size], ds.y_train[:cfg.batch_size]
        mem = saved_tensor_peak(net, x, y, method, cfg.T, k=cfg.k, mse_alpha=cfg.mse_alpha, rng=random.Random(0))
        rows.append({"method": method, "model": model, "final_test_acc": metrics["final_test_acc"],
                     "best_test_acc": metrics["best_test_acc"], "epochs": epochs,
                     "time_per_epoch_s": statistics.mean(h["time_s"] for h in metrics["epochs"]),
                     "peak_saved_tensor_bytes": mem, "T": cfg.T, "k": cfg.k, "batch_size": cfg.batch_size,
                     "lr": metrics["epochs"][0]["lr"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| method | final test acc | best | epochs | s/epoch | peak memory saved for backward |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        name = f"{r['method']} (K={r['k']})" if r["k"] is not None else r["method"]
        lines.append(f"| {name} | {r['final_test_acc']:.2%} | {r['best_test_acc']:.2%} | {r['epochs']} | "
                     f"{r['time_per_epoch_s']:.2f} | {r['peak_saved_tensor_bytes'] / 1024:.1f} KiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnchip.bench.accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated learning rules (default: all)")
    p.add_argument("--model", default="mlp", choices=MODELS, help="digits model (default: mlp)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per method (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    def body() -> int:
        methods = options.names(args.methods, METHODS, "--methods")
        if args.epochs < 1:
            raise BenchmarkError(f"--epochs must be at least 1, got {args.epochs}")
        torch.set_num_threads(1)
        rows = accuracy_table(methods, args.model, args.epochs, args.seed)
        print(markdown(rows))
        if args.json:
            write_text_atomic(args.json, json.dumps(rows, indent=2))
        return 0

    return options.command(p.prog, body)

if __name__ == "__main__":
    raise SystemExit(main())
