"""``snn-bench deploy``: the seeds' networks at CIFAR-10 size on the way to the chip.

Per model (``--model``, default ``vgg,resnet18,empf-resnet18``: OTTT's VGG-11, SLTT's ResNet-18, EM-PF's ResNet-18
with binary weights and membrane BN): train ``--max-steps`` optimizer steps (default 2; EM-PF's ResNet 40) on
CIFAR-10-format files (``--data-dir``; without it, class-structured synthetic images written in the CIFAR-10
python-pickle layout to a temporary directory), then

- ``snn-export model.pt --target loihi`` as its own process: wall seconds and peak RSS (``os.wait4``), the deploy
  directory's size beside the model's float32 parameters, connections, stored weights, Loihi 2 cores and chips,
  or the one-line refusal when the export refuses;
- the bit-exact chip simulator against the float model's PyTorch inference on the same ``--batch-size`` test
  inputs (seconds per sample, fastest of ``--repeats``, one thread each; their ratio is the number to compare);
- Lava ``Loihi2SimCfg(fixed_pt)`` on ``--lava-samples`` samples (default 0: about 10 s per Lava step at VGG-11
  scale): seconds per Lava step (T + latency steps per sample, start-up included) and whether it equals the chip
  simulator on every spike.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from snnchip.atomic import write_text_atomic

from . import measure, options
from .options import BenchConfig

# name: (zoo model, rule, default optimizer steps before the export)
MODELS = {"vgg": ("vgg", "ottt-a", 2), "resnet18": ("resnet18", "sltt", 2), "empf-resnet18": ("resnet18", "empf", 40)}
SYNTHETIC_PER_BATCH = 64  # images per CIFAR-10 batch file of the synthetic set (6 files: 320 train, 64 test)


def write_synthetic_cifar(root: Path, seed: int = 0) -> Path:
    """CIFAR-10 python-pickle batches ``data_batch_1..5`` and ``test_batch`` of class-structured noise: each class a
    random prototype image, each sample its prototype plus Gaussian noise (σ = 40 of 255)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (10, 3 * 32 * 32))
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        y = rng.integers(0, 10, SYNTHETIC_PER_BATCH)
        x = np.clip(prototypes[y] + rng.normal(0, 40, (len(y), prototypes.shape[1])), 0, 255).astype(np.uint8)
        (root / name).write_bytes(pickle.dumps({b"data": x, b"labels": y.tolist()}, protocol=2))
    return root


def _export(model_pt: Path, out: Path) -> dict[str, Any]:
    """``snn-export model_pt --target loihi -o out`` as a child process: wall seconds, peak RSS (``os.wait4``), and
    its refusal line where it refuses."""
    code = "import sys; from snnchip.cli.snn_export import main; sys.exit(main(sys.argv[1:]))"
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, str(model_pt), "--target", "loihi", "-o", str(out)],
                                stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        row: dict[str, Any] = {"export_s": time.perf_counter() - started, "export_exit": proc.returncode,
                               "export_peak_rss_gib": usage.ru_maxrss / 2**20}
        stdout.seek(0)
        stderr.seek(0)
        lines = (stdout if proc.returncode == 0 else stderr).read().strip().splitlines() or ["(no output)"]
    row["export_summary" if proc.returncode == 0 else "refused"] = lines[-1]
    return row


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def bench_model(name: str, data_dir: Path, work: Path, cfg: BenchConfig, T: int) -> dict[str, Any]:
    """Train, export, time and (optionally) run in Lava one model (module docstring)."""
    import torch

    from snnchip.export.loihi import load_deploy
    from snnchip.export.nir_export import model_graph
    from snnchip.export.sizing import deployment_size
    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.hw_sim.metrics import stored_weights
    from snnchip.train import fit, load_model, simulate
    from snnchip.train.config import TrainConfig
    from snnchip.workflows.model_data import training_inputs

    model, method, default_steps = MODELS[name]
    steps = cfg.max_steps or default_steps
    run_dir = work / f"run-{name}"
    started = time.perf_counter()
    fit(TrainConfig(dataset="cifar10", data_dir=str(data_dir), model=model, method=method, T=T,
                    batch_size=min(cfg.batch_size, 16), max_steps=steps, seed=0, out=str(run_dir), quiet=True))
    row: dict[str, Any] = {"model": name, "method": method, "T": T, "train_steps": steps,
                           "train_s": time.perf_counter() - started}
    net, _ = load_model(run_dir / "model.pt")
    row["float32_parameter_bytes"] = 4 * sum(p.numel() for p in net.state_dict().values() if p.is_floating_point())
    dep_dir = work / f"deploy-{name}"
    row.update(_export(run_dir / "model.pt", dep_dir))
    if "refused" in row:
        return row
    dep = load_deploy(dep_dir)
    res = dep.manifest["resources"]
    graph = model_graph(dep_dir / "model.nir")  # the model's graph, as written beside the deployment
    size = deployment_size(graph, None, dep.manifest["precision"]["synapse_sets"])
    row.update(connections=res["synapses"], neurons=res["neurons"], stored_weights=stored_weights(dep.qnet),
               cores=size.cores, chips=size.chips, deploy_dir_bytes=_directory_bytes(dep_dir))
    row["deploy_dir_over_weights"] = row["deploy_dir_bytes"] / row["float32_parameter_bytes"]
    xs = training_inputs(run_dir / "model.pt", samples=cfg.batch_size)
    sim = ChipSimulator(dep)
    chip_s = measure.time_calls(lambda: sim.run(xs, states=False), cfg.repeats, warmup=cfg.warmup)["min_time_s"]
    x_t = torch.as_tensor(xs, dtype=torch.float32)
    float_s = measure.time_calls(lambda: simulate(net, x_t), cfg.repeats, warmup=cfg.warmup)["min_time_s"]
    n = xs.shape[1]
    row.update(batch=n, chip_s_per_sample=chip_s / n, float_s_per_sample=float_s / n,
               chip_over_float=chip_s / float_s)
    if cfg.lava_samples:
        row.update(_lava(dep, sim, xs[:, :cfg.lava_samples]))
    return row


def _lava(dep: Any, sim: Any, xs: np.ndarray) -> dict[str, Any]:
    """Lava fixed_pt on ``xs`` sample by sample: seconds per Lava step (start-up included) and exactness."""
    from snnchip.deploy.network import build

    started = time.perf_counter()
    out = build(dep).run(xs, states=False)
    seconds = time.perf_counter() - started
    ref = sim.run(xs, states=False)
    exact = bool(np.array_equal(ref.output_raw, out.output_raw)
                 and all(np.array_equal(ref.spikes[k], out.spikes[k]) for k in ref.spikes))
    steps = xs.shape[1] * (xs.shape[0] + dep.depth)
    return {"lava_samples": int(xs.shape[1]), "lava_steps": int(steps), "lava_s_per_step": seconds / steps,
            "lava_equals_chip": exact}


def _line(r: dict[str, Any]) -> str:
    head = f"{r['model']:<15}{r['method']:<7}"
    if "refused" in r:
        return head + f"refused after {r['export_s']:.1f} s: {r['refused']}"
    lava = f"  Lava {r['lava_s_per_step']:.2f} s/step, equal {r['lava_equals_chip']}" if "lava_s_per_step" in r else ""
    return (head + f"{r['connections']:>12.3g}{r['stored_weights']:>11.3g}{r['cores']:>6} ({r['chips']})"
            f"{r['export_s']:>8.1f}{r.get('export_peak_rss_gib', float('nan')):>7.2f}"
            f"{r['deploy_dir_bytes'] / 1e6:>8.0f}{r['deploy_dir_over_weights']:>6.1f}x"
            f"{1e3 * r['chip_s_per_sample']:>9.1f}{1e3 * r['float_s_per_sample']:>9.1f}{r['chip_over_float']:>6.1f}x"
            + lava)


def run(args: BenchConfig) -> int:
    """``snn-bench deploy``. Reads ``model``, ``T`` (the first entry), ``batch_size``, ``max_steps``, ``data_dir``,
    ``lava_samples``, ``repeats``, ``warmup``, ``threads``, ``json``. Exit 1 when Lava and the chip disagree."""
    options.prepare(args)
    T = options.time_steps(args.T)[0]
    names = options.names(args.model, list(MODELS), "--model")
    rows = []
    print(f"{'model':<15}{'rule':<7}{'connections':>12}{'weights':>11}{'cores (chips)':>14}{'exp s':>7}"
          f"{'GiB':>7}{'dir MB':>8}{'/w':>7}{'chip ms':>9}{'float ms':>9}{'ratio':>7}")
    with tempfile.TemporaryDirectory(prefix="snn-bench-deploy-") as tmp:
        work = Path(tmp)
        data_dir = Path(args.data_dir) if args.data_dir else write_synthetic_cifar(work / "cifar10")
        for name in names:
            rows.append(bench_model(name, data_dir, work, args, T))
            print(_line(rows[-1]), flush=True)
    print(f"3x32x32 inputs, T = {T}; times per sample at batch {args.batch_size}, fastest of {args.repeats}, "
          f"{args.threads} thread(s); /w: the deploy directory over the model's float32 parameters")
    result = {"benchmark": "deploy", "data": args.data_dir or "synthetic CIFAR-10-format images", "results": rows}
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
        print(f"  wrote {args.json}")
    return 0 if all(r.get("lava_equals_chip", True) for r in rows) else 1
