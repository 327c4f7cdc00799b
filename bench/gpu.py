"""The GPU run in one command, for a lent machine with a time limit (``bench/gpu.sh`` installs and starts it):
``python -m snnchip.bench.gpu --out DIR [--budget S]``. The CUDA test set, ``snn-bench memory`` and
``snn-bench peers`` on CUDA run inside one time budget, the most important first; every file is written as soon as
it holds something, so a run cut off keeps what it finished, and ``--stages``, ``--nets``, ``--methods`` and
``--tests-k`` make a shorter second run.

Stages, in this order:

``env``     ``env.json``: the card (nvidia-smi: name, driver, memory, clocks, power limit), torch/CUDA/cuDNN/Triton
            versions, and the card's measured ceilings (``ceilings``: bf16, TF32 and fp32 GEMMs, a device-to-device
            copy), read by ``report.gpu_section``.
``tests``   ``pytest.log``: ``pytest -m cuda`` (tests/test_cuda.py), its summary line also in env.json.
``memory``  ``memory.json`` / ``memory.log``: ``snn-bench memory`` (``memory.py``) on the card: where one iteration's
            memory goes, OTTT_A and SLTT, ours (also with channels-last weights, ``+cl``) and SpikingJelly's, on
            VGG-11 at the peers' batch and T.
``peers``   ``PLAN``: ``peers_vgg.json`` (OTTT's VGG-11 at CIFAR-10 shape, batch 128, T = 6; ``+cl`` last), then
            ``peers_conv.json`` (the conv net at T = 4 and 32; at T = 4 our eager kernels and SpikingJelly's Torch
            reference LIF; then T = 16), each configuration in a fresh process (``peers.run_suite``), none started
            after the deadline.
``report``  ``BENCHMARKS_gpu.md`` (``report.gpu_section``) and ``peers_gpu.png``; the Markdown is printed last.

``--device cpu --tiny`` runs the same plumbing at toy sizes on a CPU (tests/test_bench_gpu.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from snnchip.atomic import write_text_atomic
from snnchip.errors import BenchmarkError

from . import measure, nets, options, peers, report

MAIN = ["ottt-a", "sj-ottt", "sltt", "sj-sltt", "ottt-a+graph", "sltt+graph", "bptt", "sj-bptt", "snntorch-bptt",
        "bptt+graph", "sltt-k", "saf-e"]
SJ_TORCH = ["sj-ottt+torch", "sj-sltt+torch", "sj-bptt+torch"]  # SpikingJelly on its Torch reference LIF
EAGER = ["ottt-a+eager", "sltt+eager", "bptt+eager"]  # our rules without torch.compile'd kernels
CL = ["ottt-a+cl", "sltt+cl"]  # our rules with channels-last convolution weights
PLAN = [  # (file, net, T list, methods), in the order they run
    ("peers_vgg.json", "vgg", [6], MAIN + SJ_TORCH + CL),
    ("peers_conv.json", "conv", [4, 32], MAIN),
    ("peers_conv.json", "conv", [4], EAGER + SJ_TORCH),
    ("peers_conv.json", "conv", [16], MAIN),
]
TINY = {"conv": {"input": [3, 8, 8], "widths": [4, 4, 8], "batch": 2},
        "vgg": {"input": [3, 8, 8], "widths": [4, "M", 8], "batch": 2}}
STAGES = ("env", "tests", "memory", "peers", "report")
TESTS_CAP_S = 150  # the CUDA test set's share of the budget at most
MEMORY_CAP_S = 90  # the memory breakdown's share at most
MEMORY = ["--model", "vgg", "--T", "6", "--batch-size", "128", "--methods",
          "ottt-a,sj-ottt,sltt,sj-sltt,ottt-a+cl,sltt+cl"]
MEMORY_TINY = ["--model", "conv", "--T", "2", "--batch-size", "2", "--methods", "ottt-a", "--warmup", "1",
               "--no-compile"]
REPORT_RESERVE_S = 20  # kept for the report after the benchmarks
GEMM_N, COPY_BYTES = 8192, 2**30


def nvidia_smi() -> dict[str, str]:
    """The card as nvidia-smi reports it (name, driver, memory, clocks, power limit, temperature, performance
    state); ``{"error": ...}`` where it cannot be run."""
    fields = ("name", "driver_version", "memory.total", "clocks.sm", "clocks.max.sm", "clocks.mem", "power.limit",
              "temperature.gpu", "pstate")
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    if out.returncode != 0:
        return {"error": out.stderr.strip() or f"exit {out.returncode}"}
    return dict(zip(fields, (v.strip() for v in out.stdout.splitlines()[0].split(",")), strict=False))


def _gemm_rate(n: int, dtype: torch.dtype, device: str, g: torch.Generator) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=g) for _ in range(2))
    return 2 * n**3 / measure.time_calls(lambda: a @ b, 10, device, warmup=3)["time_per_iter_s"]


def _copy_rate(nbytes: int, device: str, g: torch.Generator) -> float:
    src = torch.randn(nbytes // 4, device=device, generator=g)
    dst = torch.empty_like(src)
    return 2 * nbytes / measure.time_calls(lambda: dst.copy_(src), 10, device, warmup=3)["time_per_iter_s"]


def ceilings(device: str, gemm_n: int = GEMM_N, copy_bytes: int = COPY_BYTES) -> dict[str, float]:
    """The card's measured ceilings (medians of 10 after 3 warm-ups, random data): FLOP/s of a gemm_n³ matrix product
    in bf16, in float32 with TF32 allowed and with it forbidden, and bytes/s (read + written) of a device copy."""
    g = torch.Generator(device=device).manual_seed(0)
    out: dict[str, float] = {}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for key, dtype, allow in (("gemm_bf16_flops_per_s", torch.bfloat16, tf32),
                                  ("gemm_tf32_flops_per_s", torch.float32, True),
                                  ("gemm_fp32_flops_per_s", torch.float32, False)):
            torch.backends.cuda.matmul.allow_tf32 = allow
            out[key] = _gemm_rate(gemm_n, dtype, device, g)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    out["copy_bytes_per_s"] = _copy_rate(copy_bytes, device, g)
    if measure.on_cuda(device):
        torch.cuda.empty_cache()  # the benchmarks' processes get the card's memory back
    return out


def environment(device: str, tiny: bool) -> dict[str, Any]:
    """``env.json``: the card, the versions, the ceilings."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        triton = version("triton")
    except PackageNotFoundError:  # the CPU build of torch comes without it
        triton = None
    env: dict[str, Any] = {"nvidia_smi": nvidia_smi() if measure.on_cuda(device) else {"error": "no CUDA device"},
                           "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                        "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
                                        "triton": triton}}
    if measure.on_cuda(device):
        p = torch.cuda.get_device_properties(device)
        env["device"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_bytes": p.total_memory,
                         "multiprocessors": p.multi_processor_count, "l2_bytes": getattr(p, "L2_cache_size", None)}
    env["ceilings"] = ceilings(device, 256, 2**24) if tiny else ceilings(device)
    return env


def _capped(cmd: list[str], seconds: float, log_path: Path) -> str:
    """Run ``cmd``, its output in ``log_path``, killed (with every process it started) after ``seconds``; returns its
    last output line."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=max(seconds, 1))
        summary = (text.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        text, _ = proc.communicate()
        summary = f"stopped after {seconds:.0f} s (the run's time budget): {(text.strip().splitlines() or [''])[-1]}"
    write_text_atomic(log_path, text)
    return summary


def run_tests(out: Path, seconds: float, k: str | None) -> str:
    """``pytest -m cuda`` on tests/test_cuda.py, its output in ``pytest.log``, stopped after ``seconds``; returns its
    summary line."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    if importlib.util.find_spec("pytest_timeout"):
        cmd += ["--timeout", "100"]
    if k:
        cmd += ["-k", k]
    return _capped(cmd, seconds, out / "pytest.log")


def run_memory(out: Path, device: str, seconds: float, tiny: bool) -> str:
    """``snn-bench memory`` (``MEMORY``, or ``MEMORY_TINY``) into ``memory.json``, its table in ``memory.log``,
    stopped after ``seconds``; returns its last line."""
    cmd = [sys.executable, "-c", "import sys; from snnchip.cli.snn_bench import main; sys.exit(main())", "memory",
           *(MEMORY_TINY if tiny else MEMORY), "--device", device, "--json", str(out / "memory.json")]
    return _capped(cmd, seconds, out / "memory.log")


def run_peers(out: Path, device: str, deadline: float, tiny: bool, only_nets: list[str] | None,
              only_methods: list[str] | None, log: Callable[[str], None] = print) -> None:
    """The ``PLAN`` (filtered by ``only_nets``/``only_methods``), each file rewritten after every configuration."""
    results: dict[str, dict[str, Any]] = {}
    for file, name, Ts, methods in PLAN:
        chosen = [m for m in methods if only_methods is None or m in only_methods]
        if (only_nets is not None and name not in only_nets) or not chosen:
            continue
        sizes = {name: (TINY if tiny else nets.NETS)[name]}
        log(f"peers: {name} T={','.join(map(str, Ts))}: {', '.join(chosen)}")
        results[file] = peers.run_suite(sizes, Ts, chosen, repeats=2 if tiny else 10, warmup=1 if tiny else 3,
                                        json_path=str(out / file), log=log, device=device, deadline=deadline,
                                        into=results.get(file))


def write_report(out: Path, log: Callable[[str], None] = print) -> None:
    """``BENCHMARKS_gpu.md`` and ``peers_gpu.png`` from what the run wrote; the Markdown is printed."""
    files = [out / f for f in dict.fromkeys(file for file, *_ in PLAN) if (out / f).exists()]
    found = [json.loads(p.read_text()) for p in files]
    env_path = out / "env.json"
    env = json.loads(env_path.read_text()) if env_path.exists() else None
    if not found:
        log("report: no benchmark results to report")
        return
    merged = report.merge(found)
    text = "\n".join(report.gpu_section(merged, env))
    write_text_atomic(out / "BENCHMARKS_gpu.md", text)
    report.plot_peers(merged, str(out / "peers_gpu.png"))
    log(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snnchip.bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the files (created)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run (default 420)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    p.add_argument("--nets", default=None, help="peers: only these nets (vgg, conv)")
    p.add_argument("--methods", default=None, help="peers: only these methods of the plan")
    p.add_argument("--tests-k", default=None, help="tests: a pytest -k expression")
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu with --tiny to try the plumbing")
    p.add_argument("--tiny", action="store_true", help="toy sizes (plumbing check)")
    a = p.parse_args(argv)

    def body() -> int:
        start = time.monotonic()
        deadline = start + a.budget
        stages = options.names(a.stages, STAGES, "--stages")
        if a.device == "cuda" and not torch.cuda.is_available():
            raise BenchmarkError("no CUDA device here; --device cpu --tiny tries the plumbing on a CPU")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)

        def log(line: str) -> None:
            print(f"[{time.monotonic() - start:6.1f} s] {line}", flush=True)

        only_nets = a.nets and options.names(a.nets, list(nets.NETS), "--nets")
        only_methods = a.methods and options.names(a.methods, list(dict.fromkeys(m for *_, ms in PLAN for m in ms)),
                                                   "--methods")
        env: dict[str, Any] = {}

        def save_env() -> None:
            write_text_atomic(out / "env.json", json.dumps(env, indent=2))

        def stage(name: str, fn: Callable[[], None]) -> None:
            """One stage; an exception ends the stage, not the run (recorded in env.json, traceback printed)."""
            if name not in stages:
                return
            try:
                fn()
            except Exception as exc:  # a lent machine's time is spent: the later stages still run
                traceback.print_exc()
                env.setdefault("stage_errors", {})[name] = f"{type(exc).__name__}: {exc}"
                save_env()
                log(f"{name}: failed ({type(exc).__name__}: {exc}); going on")

        def env_stage() -> None:
            env.update(environment(a.device, a.tiny))
            save_env()
            log(f"env: {env.get('nvidia_smi')}, ceilings {env['ceilings']}")

        def tests_stage() -> None:
            env["tests"] = run_tests(out, min(TESTS_CAP_S, deadline - time.monotonic() - REPORT_RESERVE_S), a.tests_k)
            save_env()
            log(f"tests: {env['tests']}")

        def memory_stage() -> None:
            env["memory"] = run_memory(out, a.device, min(MEMORY_CAP_S, deadline - time.monotonic() - REPORT_RESERVE_S),
                                       a.tiny)
            save_env()
            log(f"memory: {env['memory']}")

        stage("env", env_stage)
        stage("tests", tests_stage)
        stage("memory", memory_stage)
        stage("peers", lambda: run_peers(out, a.device, deadline - REPORT_RESERVE_S, a.tiny, only_nets, only_methods,
                                         log))
        stage("report", lambda: write_report(out, log))
        log("done" + (f"; stages that failed: {env['stage_errors']}" if env.get("stage_errors") else ""))
        return 0

    return options.command(p.prog, body)


if __name__ == "__main__":
    sys.exit(main())
