"""Data-parallel throughput: training samples per second with 1 process vs N (``snn-train --nproc N``).

``python -m snnchip.bench.ddp --nproc 1 2 --methods ottt-a ottt-o bptt [--json out.json] [snn-train options]``

Each configuration is one fresh ``snn-train`` run of one epoch (digits by default); the rate is training samples
over the epoch's training time (``metrics.json`` ``time_s``, evaluation excluded), so process start-up and the
rendezvous are not counted. On a CPU-only box with few cores the processes share the cores: the numbers show
the synchronisation cost per rule, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from snnchip.atomic import write_text_atomic
from snnchip.errors import BenchmarkError
from snnchip.train.data import load_dataset
from snnchip.train.rules import METHODS

from . import options

SNN_TRAIN = "import sys; from snnchip.cli import train; sys.exit(train(sys.argv[1:]))"


def measure(nproc: int, method: str, extra: list[str]) -> float:
    """Training samples per second of one epoch of ``method`` on ``nproc`` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", SNN_TRAIN, "--method", method, "--epochs", "1", "--quiet",
               "--nproc", str(nproc), "--out", tmp, *extra]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise BenchmarkError(f"snn-train --method {method} --nproc {nproc} failed: {last}")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    n = len(load_dataset(metrics["config"]["dataset"], metrics["config"]["data_dir"], flat=True).x_train)
    return n / metrics["epochs"][0]["time_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnchip.bench.ddp", description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--methods", nargs="+", default=["ottt-a", "ottt-o", "bptt"])
    p.add_argument("--json", default=None, help="write the table as JSON")
    args, extra = p.parse_known_args(argv)  # the rest goes to snn-train (e.g. --T 6 --batch-size 128 --k 2)

    def body() -> int:
        methods = options.names(",".join(args.methods), METHODS, "--methods")
        if min(args.nproc) < 1:
            raise BenchmarkError(f"--nproc must be at least 1, got {args.nproc}")
        rows = []
        for method in methods:
            rates = {n: measure(n, method, extra) for n in args.nproc}
            rows.append({"method": method, "samples_per_s": rates})
            print(f"{method:8s} " + "  ".join(f"{n} proc: {r:8.0f} samples/s" for n, r in rates.items()), flush=True)
        if args.json:
            write_text_atomic(args.json, json.dumps({"args": extra, "rows": rows}, indent=2))
        return 0

    return options.command(p.prog, body)

if __name__ == "__main__":
    sys.exit(main())
