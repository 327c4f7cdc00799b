"""``snn-train``: the arguments (parsed by ``snnchip.cli.train_parser``) to ``fit``, and a one-screen summary."""

from __future__ import annotations

import argparse

from .trainer import TrainConfig, fit


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_namespace(args)
    metrics = fit(cfg)
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
