"""``snn-bench peers``: our training rules next to SpikingJelly and snnTorch on the same nets, data and T.

Two networks, random data (seed 0), the same for every library:

- ``conv``: 3×32×32 → conv64 → LIF → conv128 → LIF → avgpool2 → conv256 → LIF → avgpool2 → fc10, batch 32;
- ``mlp``: 784 → 512 → LIF → 512 → LIF → 10, batch 128.

Methods: ours (``bptt ottt-a ottt-o sltt sltt-k saf-e saf-f empf``, built from a ``NetworkSpec`` and run with
``snnchip.train.rules.run_iteration``) and the peers' own training code:

- ``sj-bptt``: SpikingJelly multi-step ``LIFNode`` + ``layer.*`` (``step_mode='m'``, torch backend), one backward
  on the mean output;
- ``sj-ottt`` / ``sj-sltt``: SpikingJelly's ``OTTTLIFNode`` (inside ``layer.OTTTSequential``) / ``SLTTLIFNode``,
  single-step mode (the only mode they allow), trained with SpikingJelly's own loop
  ``learning.ottt_online_training(..., online=False)`` (backward every step, one optimizer step), which is the
  counterpart of our ``ottt-a`` / ``sltt``;
- ``snntorch-bptt``: snnTorch ``Leaky`` (subtractive reset) in the tutorial's explicit time loop.

Neurons match ours where the peer can express it: soft (subtractive) reset, no input decay, θ = 1, λ = 0.5
(τ = 2) except SLTT (λ = 1 − 1/1.1, τ = 1.1); loss cross-entropy for everybody (per step /T for online rules,
on the mean output for BPTT); SGD lr 1e-3, the optimizer step is part of the timed iteration.

Each configuration runs in a fresh subprocess (``python bench/peers.py --one CONFIG``): ``warmup`` (≥ 1)
iterations, the first of them under a saved-tensor hook for memory, then the median of ``repeats`` timed
iterations (also reported: their minimum and the median process CPU time, less sensitive to a shared machine).

Peak memory is counted the same way for every library: the peak bytes of the distinct storages that autograd
holds for backward (``torch.autograd.graph.saved_tensors_hooks``; a storage saved twice counts once; the
model's parameters are excluded), i.e. the activation memory of a rule. Module/state tensors that are not saved
for backward (membranes, traces: O(1) in T for every library) are not in it.

The machine's limit: the achievable throughput of the net's own synaptic layers (the same convs/linears as a
plain ANN, forward + backward at the same batch, in the faster of NCHW and channels-last) and a 1024² GEMM,
measured per net at the start of the run and
again inside every configuration's process right after its timed iterations (the fraction uses the latter, so a
busy shared machine slows both sides of the ratio alike). A method's
ideal time is (F·T + B·n_bp) / throughput, with F and B the forward and backward FLOPs of one step (backward =
weight gradients everywhere + input gradients except the first layer) and n_bp the steps that run backward
(T; K for sltt-k; 1 for saf-f); we report ideal / measured.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snnchip.train.bench import saved_storage_peak

OURS = ("bptt", "ottt-a", "ottt-o", "sltt", "sltt-k", "saf-e", "saf-f", "empf")
PEERS = ("sj-bptt", "sj-ottt", "sj-sltt", "snntorch-bptt")
METHODS = OURS + PEERS
NETS: dict[str, dict[str, Any]] = {
    "conv": {"input": [3, 32, 32], "widths": [64, 128, 256], "batch": 32},
    "mlp": {"input": [784], "widths": [512, 512], "batch": 128},
}
NUM_CLASSES = 10
LAM, SLTT_LAM = 0.5, 1 - 1 / 1.1
LR = 1e-3
GEMM = 1024
EXTRA_HINT = "install the peers with `make setup-bench` (pip extra `bench`: spikingjelly, snntorch, loguru)"


# ------------------------------------------------------------------------------------------- the two nets
def is_conv(net: dict[str, Any]) -> bool:
    return len(net["input"]) == 3


def layer_shapes(net: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """(kind, in, out, spatial positions of the output) for every synaptic layer; conv layers are 3×3, pad 1."""
    if not is_conv(net):
        dims = [net["input"][0], *net["widths"], NUM_CLASSES]
        return [("linear", a, b, 1) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    c, h, w = net["input"]
    (c1, c2, c3), out = net["widths"], []
    for cin, cout, pool_after in ((c, c1, False), (c1, c2, True), (c2, c3, True)):
        out.append(("conv", cin, cout, h * w))
        if pool_after:
            h, w = h // 2, w // 2
    return [*out, ("linear", c3 * h * w, NUM_CLASSES, 1)]


def step_flops(net: dict[str, Any]) -> tuple[float, float]:
    """(forward, backward) FLOPs of one time step's synaptic layers at the net's batch (2 per MAC)."""
    fwd = bwd = 0.0
    for i, (kind, cin, cout, pos) in enumerate(layer_shapes(net)):
        macs = net["batch"] * pos * cout * cin * (9 if kind == "conv" else 1)
        fwd += 2 * macs
        bwd += 2 * macs * (1 if i == 0 else 2)  # weight gradient; input gradient except for the first layer
    return fwd, bwd


def our_spec(net: dict[str, Any], T: int, neuron):
    """The benchmark net as a ``NetworkSpec`` (our zoo has the MLP, not this conv net)."""
    from snnchip.spec import LayerSpec, NetworkSpec, NeuronSpec

    readout = NeuronSpec(kind="readout")
    if not is_conv(net):
        from snnchip.train.zoo import mlp

        return mlp(tuple(net["input"]), NUM_CLASSES, T, neuron, hidden=tuple(net["widths"]))
    c1, c2, c3 = net["widths"]
    conv = dict(op="conv2d", kernel_size=3, padding=1, neuron=neuron)
    layers = (LayerSpec("conv1", out_channels=c1, **conv), LayerSpec("conv2", out_channels=c2, **conv),
              LayerSpec("pool1", "avgpool", kernel_size=2), LayerSpec("conv3", out_channels=c3, **conv),
              LayerSpec("pool2", "avgpool", kernel_size=2), LayerSpec("flatten", "flatten"),
              LayerSpec("out", "linear", out_features=NUM_CLASSES, neuron=readout))
    return NetworkSpec(input_shape=tuple(net["input"]), layers=layers, T=T, num_classes=NUM_CLASSES,
                       model="bench-conv")


def plain_layers(net: dict[str, Any], neuron: Callable[[], nn.Module] | None) -> list[nn.Module]:
    """The net as a flat list of torch modules; ``neuron()`` after every hidden synaptic layer (None: none)."""
    mods: list[nn.Module] = []
    shapes = layer_shapes(net)
    for i, (kind, cin, cout, _) in enumerate(shapes):
        if kind == "linear" and is_conv(net):
            mods.append(nn.Flatten())
        mods.append(nn.Conv2d(cin, cout, 3, padding=1) if kind == "conv" else nn.Linear(cin, cout))
        if i == len(shapes) - 1:
            break
        if neuron is not None:
            mods.append(neuron())
        if kind == "conv" and i >= 1:
            mods.append(nn.AvgPool2d(2))
    return mods


def data(net: dict[str, Any], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(net["batch"], *net["input"], generator=g)
    return x, torch.randint(0, NUM_CLASSES, (net["batch"],), generator=g)


# ------------------------------------------------------------------------------------------- iterations
def _ours(net, T: int, method: str, x, y) -> tuple[nn.Module, Callable[[], None], int]:
    from snnchip.spec import NeuronSpec
    from snnchip.train.empf import configure_empf
    from snnchip.train.model import build_model
    from snnchip.train.rules import run_iteration

    sltt = method.startswith("sltt")
    neuron = NeuronSpec(lam=SLTT_LAM if sltt else LAM, surrogate="triangle" if sltt else "sigmoid")
    spec = our_spec(net, T, neuron)
    model = build_model(configure_empf(spec, "bn") if method == "empf" else spec)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    k = max(1, T // 4)
    rng = random.Random(0)

    def step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    def iteration():
        run_iteration(model, x, y, method, T, k=k, rng=rng, step=step)

    n_bp = {"sltt-k": k, "saf-f": 1}.get(method, T)
    return model, iteration, n_bp


def _sj_lif(tau: float, step_mode: str, kind: str = "lif"):
    from spikingjelly.activation_based import neuron, surrogate

    cls = {"lif": neuron.LIFNode, "ottt": neuron.OTTTLIFNode, "sltt": neuron.SLTTLIFNode}[kind]
    return cls(tau=tau, decay_input=False, v_threshold=1.0, v_reset=None, step_mode=step_mode,
               surrogate_function=surrogate.Sigmoid(alpha=4.0))


def _sj_bptt(net, T: int, x, y):
    from spikingjelly.activation_based import functional, layer

    mods = []
    for m in plain_layers(net, lambda: _sj_lif(1 / (1 - LAM), "m")):
        if isinstance(m, nn.Conv2d):
            m = layer.Conv2d(m.in_channels, m.out_channels, 3, padding=1, step_mode="m")
        elif isinstance(m, nn.Linear):
            m = layer.Linear(m.in_features, m.out_features, step_mode="m")
        elif isinstance(m, nn.AvgPool2d):
            m = layer.AvgPool2d(2, step_mode="m")
        elif isinstance(m, nn.Flatten):
            m = layer.Flatten(step_mode="m")
        mods.append(m)
    model = nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_seq = x.unsqueeze(0).expand(T, *x.shape)

    def iteration():
        functional.reset_net(model)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_seq).mean(0), y).backward()
        opt.step()

    return model, iteration, T


def _sj_online_loop():
    """SpikingJelly's ``learning.online_learning.ottt_online_training``, loaded from its file: importing the
    ``learning`` package pulls in ``monitor`` -> ``torch.utils.tensorboard`` -> tensorboard (a large dependency
    the training loop never uses)."""
    import importlib.util

    import spikingjelly.activation_based as sj

    name = "spikingjelly.activation_based.learning.online_learning"
    if name not in sys.modules:
        path = Path(sj.__file__).parent / "learning" / "online_learning.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].ottt_online_training


def _sj_online(net, T: int, x, y, kind: str):
    from spikingjelly.activation_based import functional, layer

    ottt_online_training = _sj_online_loop()
    tau = 1 / (1 - (SLTT_LAM if kind == "sltt" else LAM))
    mods = plain_layers(net, lambda: _sj_lif(tau, "s", kind))
    model = layer.OTTTSequential(*mods) if kind == "ottt" else nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_seq = x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:])  # SpikingJelly's loop takes [B, T, ...]
    y_seq = y.unsqueeze(1).expand(-1, T)

    def iteration():
        functional.reset_net(model)
        ottt_online_training(model, opt, x_seq, y_seq, lambda out, target: F.cross_entropy(out, target) / T,
                             online=False)

    return model, iteration, T


class _SnnTorchNet(nn.Module):
    """The tutorial pattern: explicit membranes, one Python loop over time, outputs stacked."""

    def __init__(self, net):
        import snntorch as snn

        super().__init__()
        self.layers = nn.ModuleList(plain_layers(net, lambda: snn.Leaky(beta=LAM, reset_mechanism="subtract")))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        import snntorch as snn

        mems = [m.reset_mem() if isinstance(m, snn.Leaky) else None for m in self.layers]
        outs = []
        for x in x_seq:
            h = x
            for i, m in enumerate(self.layers):
                if isinstance(m, snn.Leaky):
                    h, mems[i] = m(h, mems[i])
                else:
                    h = m(h)
            outs.append(h)
        return torch.stack(outs)


def _snntorch_bptt(net, T: int, x, y):
    model = _SnnTorchNet(net)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_seq = x.unsqueeze(0).expand(T, *x.shape)

    def iteration():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_seq).mean(0), y).backward()
        opt.step()

    return model, iteration, T


def make_iteration(net: dict[str, Any], T: int, method: str, seed: int = 0, compile: bool = False):
    """(model, one training iteration, steps with backward) of ``method`` on the net's random batch; ``compile``:
    our LIF kernels through torch.compile (``snn-train --compile``)."""
    torch.manual_seed(seed)
    x, y = data(net, seed)
    if method in OURS:
        from snnchip.train.neuron import compile_kernels

        compile_kernels(compile)
        return _ours(net, T, method, x, y)
    if method == "sj-bptt":
        return _sj_bptt(net, T, x, y)
    if method in ("sj-ottt", "sj-sltt"):
        return _sj_online(net, T, x, y, method[3:])
    if method == "snntorch-bptt":
        return _snntorch_bptt(net, T, x, y)
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


# ------------------------------------------------------------------------------------------- measuring
def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """One configuration (run this in a fresh process; ``warmup`` ≥ 1): median s/iteration, peak saved bytes."""
    torch.set_num_threads(cfg["threads"])
    model, iteration, n_bp = make_iteration(cfg["net"], cfg["T"], cfg["method"], compile=cfg.get("compile", False))
    peak = saved_storage_peak(model, iteration)  # the first warm-up iteration, under the hook (compiles, if asked)
    for _ in range(cfg["warmup"] - 1):
        iteration()
    times, cpu = [], []
    for _ in range(cfg["repeats"]):
        t0, c0 = time.perf_counter(), time.process_time()
        iteration()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"time_per_iter_s": statistics.median(times), "min_time_s": min(times), "times_s": times,
            "cpu_per_iter_s": statistics.median(cpu), "n_bp": n_bp, "load_avg": os.getloadavg()[0],
            "peak_memory_bytes": peak, "throughput": throughput(cfg["net"], cfg["threads"], repeats=3)}


def throughput(net: dict[str, Any], threads: int, repeats: int = 5) -> dict[str, float]:
    """Achievable FLOP/s: the net's synaptic layers as a plain ANN (forward + backward, the net's batch), and a
    GEMM×GEMM float32 matmul; medians of ``repeats`` after one warm-up."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(*plain_layers(net, None))
    x, _ = data(net)

    def timed(fn) -> tuple[float, float, float]:
        """(median wall, min wall, median process CPU seconds) of ``fn()``."""
        fn()
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return statistics.median(wall), min(wall), statistics.median(cpu)

    def fwd_bwd(inp: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(inp).sum().backward()
        return run

    fwd, bwd = step_flops(net)
    a, b = torch.randn(GEMM, GEMM), torch.randn(GEMM, GEMM)
    # the faster of the two activation layouts is the limit (channels-last convolutions are ≈ 15 % faster here)
    layouts = {"nchw": timed(fwd_bwd(x))}
    if is_conv(net):
        layouts["channels_last"] = timed(fwd_bwd(x.contiguous(memory_format=torch.channels_last)))
    layout = min(layouts, key=lambda k: layouts[k][0])
    layers, gemm = layouts[layout], timed(lambda: a @ b)
    return {"layers_flops_per_s": (fwd + bwd) / layers[0], "layers_flops_per_s_best": (fwd + bwd) / layers[1],
            "layers_flops_per_cpu_s": (fwd + bwd) / layers[2], "gemm_flops_per_s": 2 * GEMM**3 / gemm[0],
            "gemm_flops_per_s_best": 2 * GEMM**3 / gemm[1], "step_forward_flops": fwd, "step_backward_flops": bwd,
            "layers_layout": layout, **{f"layers_flops_per_s_{k}": (fwd + bwd) / v[0] for k, v in layouts.items()}}


def profile(net: dict[str, Any], T: int, method: str, threads: int, top: int = 12, compile: bool = True
            ) -> dict[str, Any]:
    """torch.profiler over one iteration (after one warm-up): the top ops by self CPU time, per time step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    _, iteration, _ = make_iteration(net, T, method, compile=compile)
    iteration()
    t0 = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        iteration()
    wall = time.perf_counter() - t0
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    ops = [{"op": e.key, "calls_per_step": e.count / T, "self_ms_per_step": e.self_cpu_time_total / 1e3 / T,
            "share": e.self_cpu_time_total / total} for e in events[:top]]
    return {"method": method, "T": T, "wall_s_profiled": wall, "ops": ops,
            "ops_per_step": sum(e.count for e in events) / T}


# ------------------------------------------------------------------------------------------- the suite
def _subprocess(args: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(lines[-1])


def check_peers(methods: list[str]) -> None:
    """Raise ImportError naming the extra when a peer method is asked for and its library is missing."""
    for lib, prefix in (("spikingjelly", "sj-"), ("snntorch", "snntorch-")):
        if any(m.startswith(prefix) for m in methods):
            try:
                importlib.import_module("spikingjelly.activation_based" if lib == "spikingjelly" else lib)
            except ImportError as exc:
                raise ImportError(f"{lib} is not importable ({exc}); {EXTRA_HINT}") from None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"torch": torch.__version__, "python": platform.python_version()}
    for lib in ("spikingjelly", "snntorch"):
        try:
            from importlib.metadata import version

            out[lib] = version(lib)
        except Exception:  # not installed
            out[lib] = None
    return out


def run_suite(nets: dict[str, dict[str, Any]], Ts: list[int], methods: list[str], repeats: int = 5,
              warmup: int = 1, threads: int | None = None, timeout: float = 900.0, json_path: str | None = None,
              log: Callable[[str], None] = print, compile: bool = True) -> dict[str, Any]:
    """Every (net, T, method) in a fresh subprocess, each net's throughput first; saves after every row;
    ``compile``: ours with the torch.compile'd LIF kernels (the peers have no such option)."""
    check_peers(methods)
    threads = threads or torch.get_num_threads()
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "threads": threads, "processor": platform.processor(),
                    "load_avg_start": list(os.getloadavg())},
        "versions": versions(), "repeats": repeats, "warmup": warmup, "memory_kind": "autograd_saved_storage_bytes",
        "nets": nets, "throughput": {}, "rows": [], "ours_compiled": compile,
    }
    for name, net in nets.items():
        tp = _subprocess(["--throughput", json.dumps({"net": net, "threads": threads})], timeout)
        result["throughput"][name] = tp
        log(f"{name}: layers {tp.get('layers_flops_per_s', 0) / 1e9:.1f} GFLOP/s, "
            f"GEMM {tp.get('gemm_flops_per_s', 0) / 1e9:.1f} GFLOP/s")
        for T in Ts:
            for method in methods:
                cfg = {"net": net, "T": T, "method": method, "repeats": repeats, "warmup": warmup, "threads": threads,
                       "compile": compile and method in OURS}
                row = {"net": name, "T": T, "method": method, **_subprocess(["--one", json.dumps(cfg)], timeout)}
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
                    _write(json_path, json.dumps(result, indent=2))
    result["machine"]["load_avg_end"] = list(os.getloadavg())
    if json_path:
        _write(json_path, json.dumps(result, indent=2))
    return result


def _row_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  {r['net']:4} T={r['T']:<3} {r['method']:14} error: {r['error']}"
    return (f"  {r['net']:4} T={r['T']:<3} {r['method']:14} {1e3 * r['time_per_iter_s']:10.1f} ms "
            f"{r['peak_memory_bytes'] / 2**20:9.1f} MiB  {100 * r.get('fraction_of_limit', math.nan):5.1f}% of limit")


def _write(path: str, text: str) -> None:
    tmp = Path(path).with_suffix(Path(path).suffix + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------- reports
PAIRS = (("ottt-a", "sj-ottt", 0.7), ("sltt", "sj-sltt", 0.7), ("bptt", "sj-bptt", None),
         ("bptt", "snntorch-bptt", None), ("saf-e", "ottt-o", 0.75))
ONLINE = ("ottt-a", "ottt-o", "sltt", "sltt-k", "saf-e", "saf-f", "empf", "sj-ottt", "sj-sltt")


def _index(result) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(r["net"], r["T"], r["method"]): r for r in result["rows"] if "time_per_iter_s" in r}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``run_suite`` results as one (rows appended; header fields of the first; later runs' start/end
    load averages and dates listed in ``runs``)."""
    out = {**results[0], "nets": {}, "throughput": {}, "rows": [],
           "runs": [{"date": r["date"], "machine": r["machine"]} for r in results]}
    for r in results:
        out["nets"].update(r["nets"])
        out["throughput"].update(r["throughput"])
        out["rows"] += r["rows"]
    return out


def _pct(r: dict[str, Any], key: str) -> str:
    return f"{100 * r[key]:.0f}" if key in r else "–"


def markdown(result: dict[str, Any], profiles: dict[str, Any] | None = None, notes: str = "") -> str:
    """docs/BENCHMARKS.md from a ``run_suite`` result (and optional ``profile`` results): every number comes
    from the JSON."""
    idx, m, v = _index(result), result["machine"], result["versions"]
    methods = list(dict.fromkeys(r["method"] for r in result["rows"]))
    errors = [r for r in result["rows"] if "error" in r]
    out = [
        "# Training benchmarks: snnchip vs SpikingJelly and snnTorch",
        "",
        "Generated by `bench/peers.py` (`snn-bench peers`) from its JSON; do not edit the numbers by hand. "
        "Reproduce: `make setup-bench`, then `snn-bench peers --T 4,16 --json peers.json --plot peers.png "
        "--markdown BENCHMARKS.md` (tables only), or with profiles and findings: `python bench/peers.py --profile "
        "conv 4 ottt-a > profile_conv_ottt-a.json` and `python bench/peers.py --markdown peers.json "
        "profile_*.json --notes bench/peers_findings.md --out docs/BENCHMARKS.md`. The JSON, profiles and plot of "
        "this report are in `docs/benchmarks/`.",
        "",
        f"Run {result['date']}: {m['cpu_count']} CPUs, {m['threads']} torch thread(s), torch {v['torch']}, "
        f"SpikingJelly {v['spikingjelly']}, snnTorch {v['snntorch']}, Python {v['python']}; load average "
        f"{m['load_avg_start'][0]:.2f} at start, {m.get('load_avg_end', [math.nan])[0]:.2f} at end"
        + "".join(f"; another run {r['date']} (load {r['machine']['load_avg_start'][0]:.2f} at start, "
                  f"{r['machine'].get('load_avg_end', [math.nan])[0]:.2f} at end)" for r in result.get("runs", [])[1:])
        + ". "
        f"{result['warmup']} warm-up iteration(s) (the first one counts memory), then {result['repeats']} timed "
        f"iterations; each configuration in a fresh process. Our rules ran with "
        + ("torch.compile'd neuron kernels (`snn-train --compile`)" if result.get("ours_compiled") else
           "eager neuron kernels") + " and channels-last activations.",
        "",
        "Columns: **median** wall seconds per iteration (the headline figure), **min** wall seconds, **CPU** = "
        "median process CPU seconds per iteration (all threads; on a shared machine the least disturbed measure), "
        "**MiB** = peak bytes of the distinct storages autograd saves for backward (`saved_tensors_hooks`, "
        "parameters excluded; identical counting for all libraries), **% limit** = ideal ÷ measured time, ideal = "
        "(forward FLOPs · T + backward FLOPs · steps with backward) ÷ the throughput of the net's own layers as a "
        "plain ANN (in the faster of NCHW and channels-last) measured in the same process: wall median vs wall "
        "median, best vs best, CPU vs CPU.",
        "",
    ]
    for net_name, net in result["nets"].items():
        tp = result["throughput"].get(net_name, {})
        Ts = sorted({r["T"] for r in result["rows"] if r["net"] == net_name})
        out += [f"## `{net_name}`: input {tuple(net['input'])}, widths {tuple(net['widths'])}, batch {net['batch']}",
                ""]
        if "step_forward_flops" in tp:
            out += [f"One step = {tp['step_forward_flops'] / 1e9:.3f} GFLOP forward, "
                    f"{tp['step_backward_flops'] / 1e9:.3f} GFLOP backward. Throughput of the layers as an ANN at the "
                    f"start of the (last) run: {tp['layers_flops_per_s'] / 1e9:.1f} GFLOP/s median, "
                    f"{tp.get('layers_flops_per_s_best', math.nan) / 1e9:.1f} best "
                    f"({GEMM}² GEMM: {tp.get('gemm_flops_per_s_best', tp['gemm_flops_per_s']) / 1e9:.1f} best)"
                    + "".join(f"; {k}: {tp[f'layers_flops_per_s_{k}'] / 1e9:.1f} GFLOP/s median"
                              for k in ("nchw", "channels_last") if f"layers_flops_per_s_{k}" in tp) + ".", ""]
        for T in Ts:
            out += [f"**T = {T}**", "",
                    "| method | median s | min s | CPU s | MiB | % limit (median) | % limit (best) | % limit (CPU) |",
                    "|---|---|---|---|---|---|---|---|"]
            for method in methods:
                r = idx.get((net_name, T, method))
                if r is not None:
                    out.append(f"| {method} | {r['time_per_iter_s']:.3f} | {r['min_time_s']:.3f} | "
                               f"{r['cpu_per_iter_s']:.3f} | {r['peak_memory_bytes'] / 2**20:.1f} | "
                               f"{_pct(r, 'fraction_of_limit')} | {_pct(r, 'fraction_of_limit_best')} | "
                               f"{_pct(r, 'fraction_of_limit_cpu')} |")
            out.append("")
        out += ["Ratios ours ÷ reference (target in brackets; ✓/✗ judged on the CPU-time ratio):", "",
                "| pair | T | median wall | min wall | CPU | peak memory |", "|---|---|---|---|---|---|"]
        for ours, ref, target in PAIRS:
            for T in Ts:
                a, b = idx.get((net_name, T, ours)), idx.get((net_name, T, ref))
                if a is None or b is None:
                    continue
                cpu = a["cpu_per_iter_s"] / b["cpu_per_iter_s"]
                ok = "" if target is None else (" ✓" if cpu <= target else " ✗")
                mem = a["peak_memory_bytes"] / b["peak_memory_bytes"] if b["peak_memory_bytes"] else math.nan
                label = f"{ours} ÷ {ref}" + ("" if target is None else f" (≤ {target})")
                out.append(f"| {label} | {T} | {a['time_per_iter_s'] / b['time_per_iter_s']:.2f} | "
                           f"{a['min_time_s'] / b['min_time_s']:.2f} | {cpu:.2f}{ok} | {mem:.2f} |")
        lo, hi = (Ts[0], Ts[-1]) if Ts else (None, None)
        growth = []
        for method in methods:
            if method in ONLINE and (net_name, lo, method) in idx and (net_name, hi, method) in idx:
                a, b = idx[net_name, lo, method]["peak_memory_bytes"], idx[net_name, hi, method]["peak_memory_bytes"]
                growth.append(f"{method} {b / a:.2f}" + (" ✓" if b <= 1.1 * a else " ✗"))
        if growth and lo != hi:
            out += ["", f"Online rules, peak memory at T={hi} ÷ T={lo} (target ≤ 1.1): " + ", ".join(growth) + "."]
        out.append("")
    repeated: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in result["rows"]:
        if "time_per_iter_s" in r:
            repeated.setdefault((r["net"], r["T"], r["method"]), []).append(r)
    repeated = {k: rs for k, rs in repeated.items() if len(rs) > 1}
    if repeated:
        out += ["## Repeatability: configurations measured in more than one run", "",
                "The tables above show the last run's row; every run of the configuration (median s / CPU s):", "",
                "| net | T | method | runs |", "|---|---|---|---|"]
        out += [f"| {n} | {T} | {mm} | " + ", ".join(f"{r['time_per_iter_s']:.3f} / {r['cpu_per_iter_s']:.3f}"
                                                     for r in rs) + " |" for (n, T, mm), rs in repeated.items()]
        out.append("")
    if errors:
        out += ["Configurations that failed: " + "; ".join(f"{r['net']} T={r['T']} {r['method']}: {r['error']}"
                                                          for r in errors), ""]
    for name, prof in (profiles or {}).items():
        out += [f"## Profile: {name} (`{prof['method']}`, T={prof['T']}, torch.profiler, one iteration, "
                f"{prof['wall_s_profiled']:.2f} s profiled, {prof['ops_per_step']:.0f} ops per step)", "",
                "| op | calls/step | self ms/step | share |", "|---|---|---|---|"]
        out += [f"| `{o['op']}` | {o['calls_per_step']:.1f} | {o['self_ms_per_step']:.2f} | {100 * o['share']:.1f}% |"
                for o in prof["ops"]]
        out.append("")
    if notes:
        out += [notes.strip(), ""]
    return "\n".join(out)


def plot(result: dict[str, Any], path: str) -> None:
    """Seconds per iteration and peak memory vs T, one column per net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(result["nets"])
    fig, axes = plt.subplots(2, len(nets), figsize=(6 * len(nets), 8), squeeze=False)
    idx = _index(result)
    for j, net in enumerate(nets):
        for i, method in enumerate(dict.fromkeys(r["method"] for r in result["rows"])):
            pts = sorted((T, r) for (n, T, mm), r in idx.items() if n == net and mm == method)
            if not pts:
                continue
            kw = {"linestyle": "--" if method in PEERS else "-", "marker": "o", "label": method,
                  "color": plt.cm.tab20(i % 20)}
            Ts = [T for T, _ in pts]
            axes[0, j].plot(Ts, [r["time_per_iter_s"] for _, r in pts], **kw)
            axes[1, j].plot(Ts, [r["peak_memory_bytes"] / 2**20 for _, r in pts], **kw)
        axes[0, j].set(title=f"{net}: time per iteration", xlabel="T", ylabel="s", yscale="log")
        axes[1, j].set(title=f"{net}: peak saved-tensor memory", xlabel="T", ylabel="MiB", yscale="log")
        if axes[0, j].lines:
            axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- entry points
def run(args: argparse.Namespace) -> int:
    """``snn-bench peers`` (called by ``snnchip.cli``): ``--model conv,mlp``, ``--methods all|ours|peers|a,b``."""
    from snnchip.errors import SnnchipError

    if getattr(args, "device", "cpu") != "cpu":
        raise SnnchipError("snn-bench peers measures on the CPU only (the peers' online rules have no fused kernels; "
                           "add a CUDA path before asking for one)")
    names = [n.strip() for n in (args.model or "conv,mlp").split(",") if n.strip()]
    if any(n not in NETS for n in names):
        raise SnnchipError(f"snn-bench peers: --model takes {', '.join(NETS)} (comma-separated), got {args.model!r}")
    spec = (args.methods or "all").strip()
    methods = {"all": list(METHODS), "ours": list(OURS), "peers": list(PEERS)}.get(spec) or \
        [m.strip() for m in spec.split(",") if m.strip()]
    if any(m not in METHODS for m in methods):
        raise SnnchipError(f"snn-bench peers: unknown method in {spec!r}; valid: {', '.join(METHODS)}")
    try:
        Ts = [int(t) for t in str(args.T).split(",") if t.strip()]
    except ValueError:
        raise SnnchipError(f"--T must be comma-separated integers, got {args.T!r}") from None
    nets = {n: {**NETS[n], **({"batch": args.batch_size} if args.batch_size else {})} for n in names}
    if args.repeats < 5:
        print(f"snn-bench peers: note: --repeats {args.repeats} (< 5) is a smoke run, not a benchmark")
    try:
        check_peers(methods)
    except ImportError as exc:
        raise SnnchipError(str(exc)) from None
    result = run_suite(nets, Ts, methods, repeats=args.repeats, threads=getattr(args, "threads", None),
                       json_path=args.json, compile=getattr(args, "compile", True))
    if args.plot:
        plot(result, args.plot)
    if getattr(args, "markdown", None):
        _write(args.markdown, markdown(result))
    written = [p for p in (args.json, args.plot, getattr(args, "markdown", None)) if p]
    if written:
        print("  wrote " + ", ".join(written))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", help="(internal) measure one configuration given as JSON; print JSON")
    p.add_argument("--throughput", help="(internal) measure a net's throughput given as JSON; print JSON")
    p.add_argument("--profile", nargs=3, metavar=("NET", "T", "METHOD"), help="torch.profiler over one iteration")
    p.add_argument("--markdown", nargs="+", metavar=("RESULT_JSON", "PROFILE_JSON"),
                   help="write docs/BENCHMARKS.md (to --out) from a result JSON and optional profile JSONs")
    p.add_argument("--notes", help="a Markdown file appended to the generated report")
    p.add_argument("--out", default="docs/BENCHMARKS.md")
    p.add_argument("--plot", default=None, help="with --markdown: also write the plot here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="--profile: ours with eager LIF kernels")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure(json.loads(a.one))))
    elif a.throughput:
        cfg = json.loads(a.throughput)
        print(json.dumps(throughput(cfg["net"], cfg["threads"])))
    elif a.profile:
        net, T, method = a.profile
        print(json.dumps(profile(NETS[net], int(T), method, a.threads or torch.get_num_threads(), compile=a.compile)))
    elif a.markdown:
        docs = {Path(path).stem: json.loads(Path(path).read_text()) for path in a.markdown}
        result = merge([d for d in docs.values() if "rows" in d])
        profiles = {name: d for name, d in docs.items() if "ops" in d}
        notes = Path(a.notes).read_text() if a.notes else ""
        _write(a.out, markdown(result, profiles, notes))
        if a.plot:
            plot(result, a.plot)
        print(f"wrote {a.out}" + (f", {a.plot}" if a.plot else ""))
    else:
        p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())

