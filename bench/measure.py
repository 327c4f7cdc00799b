"""How the benchmarks measure: warm-up and timing, peak memory, the FLOP model, the machine's throughput limit, and
profiling. Every function takes a ``device``; on CUDA, timing synchronises the device around each call, memory is
``torch.cuda.max_memory_allocated`` and the profile counts kernel launches.

Protocol of one training iteration (``measure_iteration``): ``warmup`` untimed calls (one-time costs: allocator,
oneDNN/cuDNN primitive creation, ``torch.compile``, recompiles on paths first taken later), one untimed call that
counts peak memory, then ``repeats`` timed calls (median and minimum wall time, median process CPU time).

Peak memory on the CPU: the peak bytes of the distinct storages autograd saves for backward
(``torch.autograd.graph.saved_tensors_hooks``; a storage saved twice counts once; the model's parameters are
excluded), i.e. the activation memory of a rule, counted the same way for every library. On CUDA: the allocator's
peak during the call minus what was allocated before the warm-up (the model and its batch), so that what a library
keeps from one iteration to the next (SpikingJelly: its neurons' states and the gradients, freed and rebuilt during
the next iteration) counts as it does for a library that frees everything at the end of an iteration.
``snn-bench memory`` (``memory.py``) breaks that peak down.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnchip.spec import NetworkSpec

from .nets import plain_layers

GEMM = 1024
MEMORY_KIND = {"cpu": "autograd_saved_storage_bytes", "cuda": "cuda_max_allocated"}
MEMORY_BASE = "before_warmup"  # what the CUDA peak is taken above (``measure_iteration``)


def on_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if on_cuda(device):
        torch.cuda.synchronize(device)


def memory_kind(device: torch.device | str) -> str:
    return MEMORY_KIND["cuda" if on_cuda(device) else "cpu"]


def time_calls(fn: Callable[[], object], repeats: int, device: torch.device | str = "cpu", warmup: int = 1
               ) -> dict[str, Any]:
    """``warmup`` untimed calls, then ``repeats`` timed ones: wall seconds of each (device synchronised before and
    after), their median and minimum, and the median process CPU seconds."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"time_per_iter_s": statistics.median(wall), "min_time_s": min(wall), "times_s": wall,
            "cpu_per_iter_s": statistics.median(cpu)}


class SavedStorages:
    """While active (``with``): the distinct storages autograd saves for backward (parameters excluded), their live
    bytes and the peak of those bytes with, at that peak, the bytes per site (``file:function`` of the innermost
    caller outside torch that saved them). A storage counts once, with the bytes of the largest view saved from it:
    a batch sliced from a dataset tensor counts as the batch, a tensor saved by two nodes counts once. ``mark``:
    each storage's first save and last release also leave a torch.profiler marker ``snnchip.saved:<pointer>`` /
    ``snnchip.released:<pointer>`` (``memory.py`` lines them up with the allocations)."""

    def __init__(self, model: nn.Module, mark: bool = False):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.mark = mark
        self.live: dict[int, list] = {}  # storage pointer -> [bytes, references, site]
        self.total = self.peak = 0
        self.sites_at_peak: dict[str, int] = {}

    def __enter__(self) -> SavedStorages:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda packed: packed.t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, t: torch.Tensor) -> _Packed:
        key = t.untyped_storage().data_ptr()
        if key in self.params:
            return _Packed(t, None, None)
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [0, 0, _site()]
            self._marker("saved", key)
        size = t.numel() * t.element_size()
        if size > entry[0]:
            self.total += size - entry[0]
            entry[0] = size
            if self.total > self.peak:
                self.peak = self.total
                self.sites_at_peak = {}
                for nbytes, _, site in self.live.values():
                    self.sites_at_peak[site] = self.sites_at_peak.get(site, 0) + nbytes
        entry[1] += 1
        return _Packed(t, self, key)

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.total -= entry[0]
            del self.live[key]
            self._marker("released", key)

    def _marker(self, what: str, key: int) -> None:
        if self.mark:
            with torch.profiler.record_function(f"snnchip.{what}:{key}"):
                pass


class _Packed:
    """What a saved tensor is packed into: the tensor, and its release when autograd frees it."""

    def __init__(self, t: torch.Tensor, owner: SavedStorages | None, key: int | None):
        self.t, self.owner, self.key = t, owner, key

    def __del__(self):
        if self.owner is not None:
            self.owner._release(self.key)


def _site() -> str:
    """``file:function`` of the innermost caller outside torch (and outside this module)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}torch{os.sep}" not in name and name != __file__:
            return f"{Path(name).name}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def saved_storage_peak(model: nn.Module, fn: Callable[[], object]) -> int:
    """Peak bytes of the distinct storages saved for backward while ``fn()`` runs (``SavedStorages``)."""
    with SavedStorages(model) as saved:
        fn()
    return saved.peak


def peak_memory(model: nn.Module, fn: Callable[[], object], device: torch.device | str = "cpu",
                base: int | None = None) -> int:
    """Peak bytes of one call of ``fn``: saved-for-backward storages on the CPU (``saved_storage_peak``), on CUDA the
    allocator's peak during the call above ``base`` bytes (default: what is allocated just before the call)."""
    if not on_cuda(device):
        return saved_storage_peak(model, fn)
    sync(device)
    base = torch.cuda.memory_allocated(device) if base is None else base
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def measure_iteration(model: nn.Module, iteration: Callable[[], object], device: torch.device | str = "cpu",
                      warmup: int = 3, repeats: int = 5) -> dict[str, Any]:
    """The protocol of the module docstring: ``time_calls`` fields plus ``peak_memory_bytes``."""
    sync(device)
    base = torch.cuda.memory_allocated(device) if on_cuda(device) else None
    for _ in range(warmup):
        iteration()
    peak = peak_memory(model, iteration, device, base)
    return {**time_calls(iteration, repeats, device, warmup=0), "peak_memory_bytes": peak}


# ------------------------------------------------------------------------------------------- FLOPs and the limit
def synaptic_layers(net: NetworkSpec) -> list[tuple[str, int, int, int, int]]:
    """(op, in channels/features, out, output positions, kernel area) of every synaptic layer."""
    out, shape = [], net.input_shape
    for layer in net.layers:
        nxt = layer.output_shape(shape)
        if layer.op == "conv2d":
            out.append(("conv2d", shape[0], nxt[0], nxt[1] * nxt[2], layer.kernel_size ** 2))
        elif layer.op == "linear":
            out.append(("linear", shape[0], nxt[0], 1, 1))
        shape = nxt
    return out


def step_flops(net: NetworkSpec, batch: int) -> tuple[float, float]:
    """(forward, backward) FLOPs of one time step's synaptic layers at ``batch`` (2 per multiply-accumulate;
    backward = weight gradients everywhere + input gradients except for the first layer)."""
    fwd = bwd = 0.0
    for i, (_, cin, cout, positions, area) in enumerate(synaptic_layers(net)):
        macs = batch * positions * cout * cin * area
        fwd += 2 * macs
        bwd += 2 * macs * (1 if i == 0 else 2)
    return fwd, bwd


def throughput(net: NetworkSpec, x: torch.Tensor, device: torch.device | str = "cpu", repeats: int = 5
               ) -> dict[str, Any]:
    """Achievable FLOP/s: the net's synaptic layers as a plain ANN (forward + backward on the batch ``x``, in the
    faster of NCHW and channels-last for images), and a GEMM×GEMM float32 matmul; medians and bests of
    ``repeats`` timed calls after one warm-up."""
    torch.manual_seed(0)
    model = nn.Sequential(*plain_layers(net, None)).to(device)

    def fwd_bwd(inp: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(inp).sum().backward()
        return run

    fwd, bwd = step_flops(net, x.shape[0])
    a, b = torch.randn(GEMM, GEMM, device=device), torch.randn(GEMM, GEMM, device=device)
    layouts = {"nchw": time_calls(fwd_bwd(x), repeats, device)}
    if x.dim() == 4:
        layouts["channels_last"] = time_calls(fwd_bwd(x.contiguous(memory_format=torch.channels_last)), repeats,
                                              device)
    layout = min(layouts, key=lambda k: layouts[k]["time_per_iter_s"])
    layers, gemm = layouts[layout], time_calls(lambda: a @ b, repeats, device)
    flops = fwd + bwd
    return {"layers_flops_per_s": flops / layers["time_per_iter_s"],
            "layers_flops_per_s_best": flops / layers["min_time_s"],
            "layers_flops_per_cpu_s": flops / layers["cpu_per_iter_s"],
            "gemm_flops_per_s": 2 * GEMM**3 / gemm["time_per_iter_s"],
            "gemm_flops_per_s_best": 2 * GEMM**3 / gemm["min_time_s"], "step_forward_flops": fwd,
            "step_backward_flops": bwd, "layers_layout": layout,
            **{f"layers_flops_per_s_{k}": flops / v["time_per_iter_s"] for k, v in layouts.items()}}


# ------------------------------------------------------------------------------------------- profiling
def kernel_launches(events: Iterable[Any]) -> int:
    """Host-side kernel launches among torch.profiler's averaged events (``key``, ``count``): the CUDA runtime and
    driver launch calls (``cudaLaunchKernel``, ``cuLaunchKernel`` and their ``Ex`` forms) and CUDA-graph launches
    (one each)."""
    return sum(e.count for e in events if "LaunchKernel" in e.key or e.key in ("cudaGraphLaunch", "cuGraphLaunch"))


def profile(iteration: Callable[[], object], T: int, device: torch.device | str = "cpu", top: int = 12
            ) -> dict[str, Any]:
    """torch.profiler over one iteration (after one warm-up): the top ops by self time (device time on CUDA, CPU
    time otherwise) per time step, ops per step and kernel launches per step (0 on the CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda(device) else [])
    iteration()
    sync(device)
    t0 = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        iteration()
        sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    self_time = "self_device_time_total" if on_cuda(device) else "self_cpu_time_total"
    ranked = sorted(events, key=lambda e: getattr(e, self_time), reverse=True)
    total = sum(getattr(e, self_time) for e in ranked) or 1.0
    ops = [{"op": e.key, "calls_per_step": e.count / T, "self_ms_per_step": getattr(e, self_time) / 1e3 / T,
            "share": getattr(e, self_time) / total} for e in ranked[:top]]
    return {"T": T, "device": str(device), "wall_s_profiled": wall, "ops": ops,
            "ops_per_step": sum(e.count for e in events) / T,
            "kernel_launches_per_step": kernel_launches(events) / T}
