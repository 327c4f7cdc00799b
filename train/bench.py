"""``snn-bench train``: median time per training iteration and peak memory per method and T, and the cosine
similarity of SLTT's gradient with BPTT's (SLTT paper, Fig. 3).

Event-driven BP: ``edbp`` trains the SRM net of ``edbp.configure_edbp`` (Table S1 digits row) with the event-driven
backward, ``bptt-srm`` the same net with BPTT (surrogate gradient through the SRM recursion); edbp rows add
``gradient_events`` per layer of the freshly initialised net (``edbp.gradient_events``: output spikes, input steps
that receive a gradient, and T·N·B, what BPTT differentiates).

EM-PF methods are named ``empf[-parallel][-random-bp]`` (``empf.bench_method``): the bn variant (or parallel)
trained with the ``empf`` / ``empf-random-bp`` rule. When a parallel EM-PF method is benchmarked, the inference
table compares the step-by-step loop (``simulate``) with all steps at once (``simulate_parallel``) on the same
parallel network (EM-PF paper, Sec. 4.3, "Inference time").

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over one iteration (minus what was allocated
before); on CPU the peak bytes of the distinct storages autograd keeps for backward (``saved_storage_peak``,
counted with ``torch.autograd.graph.saved_tensors_hooks``; a storage saved twice counts once, parameters are not
counted), i.e. the activation memory a rule needs; ``snn-bench peers`` counts the same way.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from snnchip.atomic import atomic_path, write_text_atomic
from snnchip.errors import SpecError
from snnchip.spec import NeuronSpec

from .data import load_dataset
from .edbp import DEFAULTS, configure_edbp, gradient_events
from .empf import bench_method, configure_empf
from .inference import simulate, simulate_parallel
from .model import SpikingNet, build_model
from .rules import get_rule, gradients, run_iteration, time_major
from .trainer import SLTT_LAMBDA, pick_device
from .zoo import model_spec


def saved_storage_peak(model: torch.nn.Module, fn: Callable[[], object]) -> int:
    """Peak bytes of the distinct storages saved for backward while ``fn()`` runs (parameters excluded). A storage
    counts once, with the bytes of the largest view saved from it: a batch sliced from a dataset tensor counts as
    the batch, a tensor saved by two nodes counts once."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    live: dict[int, list[int]] = {}  # storage pointer -> [bytes, references]
    total, peak = [0], [0]

    class Packed:
        def __init__(self, t: torch.Tensor):
            self.t, self.key = t, t.untyped_storage().data_ptr()
            if self.key in params:
                self.key = None
                return
            entry = live.setdefault(self.key, [0, 0])
            size = t.numel() * t.element_size()
            if size > entry[0]:
                total[0] += size - entry[0]
                entry[0] = size
                peak[0] = max(peak[0], total[0])
            entry[1] += 1

        def __del__(self):
            if self.key is None:
                return
            entry = live[self.key]
            entry[1] -= 1
            if entry[1] == 0:
                total[0] -= entry[0]
                del live[self.key]

    with torch.autograd.graph.saved_tensors_hooks(Packed, lambda p: p.t):
        fn()
    return peak[0]


def saved_tensor_peak(model: SpikingNet, x, y, method: str, T: int, **opts) -> int:
    """Peak bytes saved for backward during one iteration of ``method`` (no optimizer step; ``saved_storage_peak``)."""
    peak = saved_storage_peak(model, lambda: run_iteration(model, x, y, method, T, **opts))
    model.zero_grad(set_to_none=True)
    return peak


def _peak_memory(model, x, y, method, T, device, **opts) -> int:
    if device.type != "cuda":
        return saved_tensor_peak(model, x, y, method, T, **opts)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run_iteration(model, x, y, method, T, **opts)
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def _time_iteration(model, x, y, method, T, opt, device, repeats: int, **opts) -> float:
    def step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = []
    for _ in range(repeats + 1):  # the first run warms up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        run_iteration(model, x, y, method, T, step=step, **opts)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    va = torch.cat([a[k].flatten() for k in sorted(a)])
    vb = torch.cat([b[k].flatten() for k in sorted(a)])
    return float(torch.nn.functional.cosine_similarity(va, vb, dim=0))


SRM_METHODS = {"edbp": "edbp", "bptt-srm": "bptt"}  # benchmark name -> rule, on the edbp (SRM) net


def benchmark(model_name: str, methods: list[str], Ts: list[int], batch_size: int, repeats: int,
              device: torch.device) -> dict[str, Any]:
    """Digits batch of ``batch_size``; each method with its default neuron (DESIGN.md), seed 0."""
    for m in methods:
        get_rule(SRM_METHODS.get(m) or bench_method(m)[0])
    ds = load_dataset("digits", flat=model_name.startswith("mlp"))
    x, y = ds.x_train[:batch_size].to(device), ds.y_train[:batch_size].to(device)
    rows, cosines, inference = [], {}, []
    for T in Ts:
        for method in methods:
            rule, variant = bench_method(method)
            sltt = method.startswith("sltt")
            neuron = NeuronSpec(lam=SLTT_LAMBDA if sltt else 0.5, surrogate="triangle" if sltt else "sigmoid")
            torch.manual_seed(0)
            spec = model_spec(model_name, ds.input_shape, ds.num_classes, T, neuron)
            if method in SRM_METHODS:
                spec, rule = configure_edbp(spec, **DEFAULTS["digits"]), SRM_METHODS[method]
            model = build_model(configure_empf(spec, variant) if variant else spec).to(device)
            events = gradient_events(model, time_major(x, spec, T)) if method == "edbp" else None
            opts = {"k": max(1, T // 4), "rng": random.Random(0), "mse_alpha": 0.05}
            opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3)
            rows.append({"method": method, "T": T, "k": opts["k"] if method == "sltt-k" else None,
                         "time_per_iter_s": _time_iteration(model, x, y, rule, T, opt, device, repeats, **opts),
                         "peak_memory_bytes": _peak_memory(model, x, y, rule, T, device, **opts)})
            if events is not None:
                rows[-1]["gradient_events"] = events
            if variant == "parallel" and not any(r["T"] == T for r in inference):
                inference.append({"T": T, **{name: _time_call(fn, model, x, device, repeats) for name, fn in
                                             (("sequential_s", simulate), ("parallel_s", simulate_parallel))}})
        torch.manual_seed(0)
        neuron = NeuronSpec(lam=SLTT_LAMBDA, surrogate="triangle")
        model = build_model(model_spec(model_name, ds.input_shape, ds.num_classes, T, neuron)).to(device)
        cosines[str(T)] = _cosine(gradients(model, x, y, "sltt"), gradients(model, x, y, "bptt"))
    kind = "cuda_max_allocated" if device.type == "cuda" else "autograd_saved_storage_bytes"
    return {"model": model_name, "device": str(device), "batch_size": batch_size, "memory_kind": kind,
            "rows": rows, "cosine_sltt_bptt": cosines, "inference": inference}


def _time_call(fn, model, x, device, repeats: int) -> float:
    """Median seconds of ``fn(model, x)`` (a forward over T steps), after one warm-up call."""
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn(model, x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def plot_memory(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in result["rows"]):
        pts = [(r["T"], r["peak_memory_bytes"] / 2**20) for r in result["rows"] if r["method"] == method]
        ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.set(xlabel="T (time steps)", ylabel=f"peak memory (MiB, {result['memory_kind']})",
           title=f"{result['model']} on {result['device']}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    try:
        Ts = [int(t) for t in str(args.T).split(",") if t.strip()]
    except ValueError:
        raise SpecError(f"--T must be comma-separated integers, got {args.T!r}") from None
    if not Ts or min(Ts) <= 0:
        raise SpecError(f"--T needs positive time steps, got {args.T!r}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = benchmark(args.model, methods, Ts, args.batch_size, args.repeats, pick_device(args.device))
    print(f"snn-bench train: {result['model']}, batch {result['batch_size']}, {result['device']} "
          f"(memory: {result['memory_kind']})")
    width = max(8, *(len(r["method"]) for r in result["rows"]))
    print(f"  {'method':{width}} {'T':>4} {'ms/iter':>9} {'peak MiB':>9}")
    for r in result["rows"]:
        ms, mib = 1e3 * r["time_per_iter_s"], r["peak_memory_bytes"] / 2**20
        print(f"  {r['method']:{width}} {r['T']:>4} {ms:>9.2f} {mib:>9.3f}")
    for r in result["rows"]:
        if "gradient_events" in r:
            ev = r["gradient_events"]
            print(f"  {r['method']} T={r['T']} gradient-carrying events (spikes / input steps with a gradient / "
                  "T·N·B): " + ", ".join(f"{k} {e['spikes']}/{e['inputs']}/{e['dense']}" for k, e in ev.items()))
    for r in result["inference"]:
        print(f"  EM-PF parallel net inference, T={r['T']}: step loop {1e3 * r['sequential_s']:.2f} ms, all steps "
              f"at once {1e3 * r['parallel_s']:.2f} ms ({r['sequential_s'] / r['parallel_s']:.2f}x)")
    print("  cos(SLTT, BPTT) gradient: " + ", ".join(f"T={t}: {c:.4f}" for t, c in result["cosine_sltt_bptt"].items()))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    if args.plot:
        plot_memory(result, args.plot)
    if args.json or args.plot:
        print("  wrote " + ", ".join(str(Path(p)) for p in (args.json, args.plot) if p))
    return 0
