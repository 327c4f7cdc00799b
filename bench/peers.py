"""``snn-bench peers``: our training rules next to SpikingJelly and snnTorch on the same nets, data and T.

Nets: ``nets``; iterations: ``adapters``; measuring: ``measure``; the report: ``report``. Each configuration
(net, T, method) runs in a fresh subprocess (``python -m snnchip.bench.peers --one CONFIG``) under the protocol
of ``measure.measure_iteration``.

The machine's limit: the achievable throughput of the net's own synaptic layers (the same convs/linears as a plain
ANN, forward + backward at the same batch, in the faster of NCHW and channels-last) and a 1024² GEMM, measured per
net at the start of the run and again inside every configuration's process right after its timed iterations (the
fraction uses the latter, so a busy shared machine slows both sides of the ratio alike). A method's ideal time is
(F·T + B·n_bp) / throughput, with F and B the forward and backward FLOPs of one step (``measure.step_flops``) and
n_bp the steps that run backward (T; K for sltt-k; 1 for saf-f); we report ideal / measured.

On CUDA each row also has ``cuda_peak_total_bytes`` (the allocator's peak over the measured iterations, parameters,
gradients and data included: comparable to what a paper reports as GPU memory), ``kernel_launches_per_step`` and the
top device ops of one profiled iteration (``measure.profile``), and for SpikingJelly the implementation its LIF ran
(``adapters.sj_implementation``). ``run_suite``'s ``deadline`` skips what would start after it, so a run with a
time limit keeps every row it finished (the JSON is rewritten after each).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from snnchip.atomic import write_text_atomic
from snnchip.errors import BenchmarkError

from . import adapters, measure, nets, options, report
from .options import BenchConfig

MODULE = "snnchip.bench.peers"


def measure_one(cfg: dict[str, Any]) -> dict[str, Any]:
    """One configuration (run it in a fresh process): ``measure.measure_iteration`` fields, the steps with backward,
    and the throughput limit measured right after, in the same process."""
    torch.set_num_threads(cfg["threads"])
    device = cfg.get("device", "cpu")
    model, iteration, n_bp = adapters.make_iteration(cfg["name"], cfg["net"], cfg["T"], cfg["method"], device,
                                                     compile=cfg.get("compile", False))
    row = measure.measure_iteration(model, iteration, device, cfg["warmup"], cfg["repeats"])
    if measure.on_cuda(device):
        row["cuda_peak_total_bytes"] = int(torch.cuda.max_memory_allocated(device))
        captured = getattr(iteration, "peak_memory_bytes", None)
        if captured is not None:  # a CUDA graph allocates at capture; its replays allocate nothing
            row.update(peak_memory_bytes=captured, memory_at="capture")
        prof = measure.profile(iteration, cfg["T"], device, top=5)
        row.update(kernel_launches_per_step=prof["kernel_launches_per_step"], ops_per_step=prof["ops_per_step"],
                   top_ops=prof["ops"])
        if cfg["method"].startswith("sj-"):
            row["sj_implementation"] = adapters.sj_implementation()
    return {**row, "n_bp": n_bp, "load_avg": load_average()[0],
            "throughput": net_throughput(cfg["name"], cfg["net"], device, repeats=3)}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (NaN where the system does not report them, as some sandboxes do not)."""
    try:
        return list(os.getloadavg())
    except OSError:
        return [math.nan] * 3


def net_throughput(name: str, net: dict[str, Any], device: str = "cpu", repeats: int = 5) -> dict[str, Any]:
    """``measure.throughput`` of the benchmark net ``name`` on its random batch."""
    x, _ = nets.data(net, device=device)
    return measure.throughput(nets.spec(name, net, 1), x, device, repeats)


def profile(name: str, net: dict[str, Any], T: int, method: str, device: str = "cpu", compile: bool = True
            ) -> dict[str, Any]:
    """``measure.profile`` of one iteration of ``method`` on the net."""
    _, iteration, _ = adapters.make_iteration(name, net, T, method, device, compile=compile)
    return {"method": method, "net": name, **measure.profile(iteration, T, device)}


def _subprocess(args: list[str], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1],
                "stderr_tail": proc.stderr[-3000:]}
    return json.loads(lines[-1])


def _machine(threads: int, device: str) -> dict[str, Any]:
    machine = {"cpu_count": os.cpu_count(), "threads": threads, "processor": platform.processor(),
               "device": device, "load_avg_start": load_average()}
    if measure.on_cuda(device):
        machine["gpu"] = torch.cuda.get_device_name(device)
    return machine


def run_suite(net_sizes: dict[str, dict[str, Any]], Ts: list[int], methods: list[str], repeats: int = 5,
              warmup: int = 3, threads: int | None = None, timeout: float = 900.0, json_path: str | None = None,
              log: Callable[[str], None] = print, compile: bool = True, device: str = "cpu",
              deadline: float | None = None, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every (net, T, method) in a fresh subprocess, each net's throughput first; saves the JSON after every row;
    ``compile``: ours with the torch.compile'd LIF kernels (the peers have no such option); ``deadline`` (a
    ``time.monotonic()`` value): configurations not started by then are recorded as skipped, and none runs past
    it; ``into``: an earlier result of this function to add the rows to (a net measured there keeps its
    throughput)."""
    adapters.check_peers(methods)
    threads = threads or torch.get_num_threads()

    def run(args: list[str]) -> dict[str, Any]:
        left = timeout if deadline is None else min(timeout, deadline - time.monotonic())
        if left < 1:
            return {"error": "skipped: the run's time budget was spent"}
        return _subprocess(args, left)

    result: dict[str, Any] = into or {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(threads, device),
        "versions": {**adapters.versions(), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version() if measure.on_cuda(device) else None},
        "repeats": repeats, "warmup": warmup, "memory_kind": measure.memory_kind(device),
        "memory_base": measure.MEMORY_BASE,
        "nets": {}, "throughput": {}, "rows": [], "ours_compiled": compile,
    }
    result["nets"].update(net_sizes)
    for name, net in net_sizes.items():
        if name not in result["throughput"]:
            result["throughput"][name] = run(["--throughput", json.dumps({"name": name, "net": net,
                                                                          "threads": threads, "device": device})])
        tp = result["throughput"][name]
        log(f"{name}: layers {tp.get('layers_flops_per_s', 0) / 1e9:.1f} GFLOP/s, "
            f"GEMM {tp.get('gemm_flops_per_s', 0) / 1e9:.1f} GFLOP/s")
        for T in Ts:
            for method in methods:
                ours = adapters.base(method) in adapters.OURS
                cfg = {"name": name, "net": net, "T": T, "method": method, "repeats": repeats, "warmup": warmup,
                       "threads": threads, "device": device, "compile": compile and ours}
                row = {"net": name, "T": T, "method": method, **run(["--one", json.dumps(cfg)])}
                if "time_per_iter_s" in row:  # the limit measured in the same process, right after the timing
                    lim = row["throughput"]
                    flops = lim["step_forward_flops"] * T + lim["step_backward_flops"] * row["n_bp"]
                    row["ideal_s"] = flops / lim["layers_flops_per_s"]
                    row["fraction_of_limit"] = row["ideal_s"] / row["time_per_iter_s"]
                    row["fraction_of_limit_best"] = flops / lim["layers_flops_per_s_best"] / row["min_time_s"]
                    row["fraction_of_limit_cpu"] = flops / lim["layers_flops_per_cpu_s"] / row["cpu_per_iter_s"]
                result["rows"].append(row)
                log(_row_line(row))
                if json_path:
                    write_text_atomic(json_path, json.dumps(result, indent=2))
    result["machine"]["load_avg_end"] = load_average()
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=2))
    return result


def _row_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  {r['net']:4} T={r['T']:<3} {r['method']:14} error: {r['error']}"
    launches = f"  {r['kernel_launches_per_step']:6.1f} launches/step" if "kernel_launches_per_step" in r else ""
    return (f"  {r['net']:4} T={r['T']:<3} {r['method']:14} {1e3 * r['time_per_iter_s']:10.1f} ms "
            f"{r['peak_memory_bytes'] / 2**20:9.1f} MiB  {100 * r.get('fraction_of_limit', math.nan):5.1f}% of limit"
            + launches)


def run(args: BenchConfig) -> int:
    """``snn-bench peers``. Reads ``model`` (nets, comma-separated), ``methods`` (all, ours, peers or a list),
    ``T``, ``batch_size`` (None: each net's own), ``repeats``, ``warmup``, ``threads``, ``compile``, ``device``,
    ``json``, ``plot``, ``markdown``."""
    from snnchip.train.config import pick_device

    options.prepare(args)
    device = str(pick_device(args.device))
    names = options.names(args.model, list(nets.NETS), "--model")
    methods = options.names(args.methods, adapters.METHODS, "--methods",
                            {"all": adapters.METHODS, "ours": adapters.OURS, "peers": adapters.PEERS})
    Ts = options.time_steps(args.T)
    adapters.check_peers(methods)
    sizes = {n: {**nets.NETS[n], **({"batch": args.batch_size} if args.batch_size else {})} for n in names}
    result = run_suite(sizes, Ts, methods, repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                       json_path=args.json, compile=args.compile, device=device)
    if args.plot:
        report.plot_peers(result, args.plot)
    if args.markdown:
        write_text_atomic(args.markdown, report.markdown(result))
    written = [p for p in (args.json, args.plot, args.markdown) if p]
    if written:
        print("  wrote " + ", ".join(written))
    return 0


def _profile_command(name: str, T: str, method: str, device: str, threads: int | None, compile: bool) -> int:
    if name not in nets.NETS or not T.isdigit() or int(T) < 1:
        raise BenchmarkError(f"--profile takes a net ({', '.join(nets.NETS)}), a positive T and a method; got "
                             f"{name} {T} {method}")
    options.names(method, adapters.METHODS, "--profile METHOD")
    adapters.check_peers([method])
    if threads:
        torch.set_num_threads(threads)
    print(json.dumps(profile(name, nets.NETS[name], int(T), method, device, compile=compile)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m snnchip.bench.peers --profile NET T METHOD``, and the subprocess side of ``run_suite``."""
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    p.add_argument("--one", help="(internal) measure one configuration given as JSON; print JSON")
    p.add_argument("--throughput", help="(internal) measure a net's throughput given as JSON; print JSON")
    p.add_argument("--profile", nargs=3, metavar=("NET", "T", "METHOD"), help="torch.profiler over one iteration")
    p.add_argument("--device", default="cpu", help="--profile: cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="--profile: torch threads")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="--profile: ours with eager LIF kernels")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure_one(json.loads(a.one))))
    elif a.throughput:
        cfg = json.loads(a.throughput)
        torch.set_num_threads(cfg["threads"])
        print(json.dumps(net_throughput(cfg["name"], cfg["net"], cfg["device"])))
    elif a.profile:
        return options.command(p.prog, lambda: _profile_command(*a.profile, a.device, a.threads, a.compile))
    else:
        p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
