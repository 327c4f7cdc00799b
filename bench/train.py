"""``snn-bench train``: time per training iteration and peak memory per method and T on a digits batch, and the
cosine similarity of SLTT's gradient with BPTT's (SLTT paper, Fig. 3: Meng et al., "Towards Memory- and
Time-Efficient Backpropagation for Training Spiking Neural Networks", arXiv:2302.14311).

Timing and memory follow ``measure.measure_iteration`` (untimed warm-up, one untimed iteration counting memory,
then the timed ones; on CUDA the allocator's peak instead of the saved-tensor count).

Event-driven BP: ``edbp`` trains the SRM net of ``edbp.configure_edbp`` (Table S1 digits row) with the event-driven
backward, ``bptt-srm`` the same net with BPTT (surrogate gradient through the SRM recursion); edbp rows add
``gradient_events`` per layer of the freshly initialised net (``edbp.gradient_events``: output spikes, input steps
that receive a gradient, and T·N·B, what BPTT differentiates).

EM-PF methods are named ``empf[-parallel][-random-bp]``: the bn variant (or parallel) trained with the ``empf`` /
``empf-random-bp`` rule. When a parallel EM-PF method is benchmarked, the inference table compares the step-by-step
loop (``simulate``) with all steps at once (``simulate_parallel``) on the same parallel network (EM-PF paper,
Sec. 4.3, "Inference time").
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from snnchip.atomic import write_text_atomic
from snnchip.errors import BenchmarkError
from snnchip.train.config import pick_device
from snnchip.train.data import load_dataset
from snnchip.train.edbp import DEFAULTS, configure_edbp, gradient_events
from snnchip.train.empf import configure_empf
from snnchip.train.encoding import time_major
from snnchip.train.inference import simulate, simulate_parallel
from snnchip.train.model import SpikingNet, build_model
from snnchip.train.rules import METHODS, gradients, run_iteration
from snnchip.train.zoo import MODELS, model_spec

from . import measure, options, report
from .adapters import method_neuron
from .options import BenchConfig

SRM_METHODS = {"edbp": "edbp", "bptt-srm": "bptt"}  # benchmark name -> rule, on the edbp (SRM) net
EMPF_METHODS = {"empf": ("empf", "bn"), "empf-random-bp": ("empf-random-bp", "bn"),
                "empf-parallel": ("empf", "parallel"), "empf-parallel-random-bp": ("empf-random-bp", "parallel")}
BENCH_METHODS = tuple(m for m in METHODS if m not in EMPF_METHODS) + tuple(EMPF_METHODS) + ("bptt-srm",)


def rule_and_variant(method: str) -> tuple[str, str | None]:
    """A benchmark method name -> (learning rule, EM-PF variant or None)."""
    return EMPF_METHODS.get(method) or (SRM_METHODS.get(method, method), None)


def saved_tensor_peak(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, method: str, T: int, **opts: Any) -> int:
    """Peak bytes saved for backward during one iteration of ``method`` (no optimizer step;
    ``measure.saved_storage_peak``)."""
    peak = measure.saved_storage_peak(model, lambda: run_iteration(model, x, y, method, T, **opts))
    model.zero_grad(set_to_none=True)
    return peak


def _cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    va = torch.cat([a[k].flatten() for k in sorted(a)])
    vb = torch.cat([b[k].flatten() for k in sorted(a)])
    return float(torch.nn.functional.cosine_similarity(va, vb, dim=0))


def _model(model_name: str, method: str, ds, T: int, device: torch.device) -> tuple[SpikingNet, str]:
    """The benchmark's model for ``method`` (its default neuron, seed 0) and the rule that trains it."""
    rule, variant = rule_and_variant(method)
    torch.manual_seed(0)
    spec = model_spec(model_name, ds.input_shape, ds.num_classes, T, method_neuron(method))
    if method in SRM_METHODS:
        spec = configure_edbp(spec, **DEFAULTS["digits"])
    return build_model(configure_empf(spec, variant) if variant else spec).to(device), rule


def _iteration(model: SpikingNet, rule: str, x: torch.Tensor, y: torch.Tensor, T: int, k: int
               ) -> Callable[[], None]:
    """One training iteration of ``rule`` with an SGD step (lr 1e-3), K = ``k`` for sltt-k, MSE weight 0.05."""
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3)
    rng = random.Random(0)

    def step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    return lambda: run_iteration(model, x, y, rule, T, k=k, rng=rng, mse_alpha=0.05, step=step)


def _inference_times(model: SpikingNet, x: torch.Tensor, device: torch.device, warmup: int, repeats: int
                     ) -> dict[str, float]:
    """Median seconds of a T-step forward: the step loop (``simulate``) and all steps at once
    (``simulate_parallel``)."""
    return {name: measure.time_calls(lambda fn=fn: fn(model, x), repeats, device, warmup)["time_per_iter_s"]
            for name, fn in (("sequential_s", simulate), ("parallel_s", simulate_parallel))}


def benchmark(model_name: str, methods: list[str], Ts: list[int], batch_size: int, repeats: int,
              device: torch.device, warmup: int = 3) -> dict[str, Any]:
    """Digits batch of ``batch_size``; each method with its default neuron, seed 0."""
    ds = load_dataset("digits", flat=model_name.startswith("mlp"))
    x, y = ds.x_train[:batch_size].to(device), ds.y_train[:batch_size].to(device)
    rows, cosines, inference = [], {}, []
    for T in Ts:
        for method in methods:
            model, rule = _model(model_name, method, ds, T, device)
            events = gradient_events(model, time_major(x, model.spec, T)) if method == "edbp" else None
            k = max(1, T // 4)
            timing = measure.measure_iteration(model, _iteration(model, rule, x, y, T, k), device, warmup, repeats)
            rows.append({"method": method, "T": T, "k": k if method == "sltt-k" else None, **timing})
            if events is not None:
                rows[-1]["gradient_events"] = events
            if rule_and_variant(method)[1] == "parallel" and not any(r["T"] == T for r in inference):
                inference.append({"T": T, **_inference_times(model, x, device, warmup, repeats)})
        model, _ = _model(model_name, "sltt", ds, T, device)
        cosines[str(T)] = _cosine(gradients(model, x, y, "sltt"), gradients(model, x, y, "bptt"))
    return {"model": model_name, "device": str(device), "batch_size": batch_size, "threads": torch.get_num_threads(),
            "warmup": warmup, "repeats": repeats, "memory_kind": measure.memory_kind(device), "rows": rows,
            "cosine_sltt_bptt": cosines, "inference": inference}


def run(args: BenchConfig) -> int:
    """``snn-bench train``. Reads ``model`` (a zoo model), ``methods`` (comma-separated), ``T``, ``batch_size``,
    ``repeats``, ``warmup``, ``threads``, ``device``, ``json``, ``plot``."""
    options.prepare(args)
    Ts = options.time_steps(args.T)
    methods = options.names(args.methods, BENCH_METHODS, "--methods")
    if args.model not in MODELS:
        raise BenchmarkError(f"--model: unknown {args.model!r}; valid: {', '.join(MODELS)}")
    result = benchmark(args.model, methods, Ts, args.batch_size, args.repeats, pick_device(args.device), args.warmup)
    print(f"snn-bench train: {result['model']}, batch {result['batch_size']}, {result['device']}, "
          f"{result['threads']} thread(s), {result['warmup']} warm-up + {result['repeats']} timed iterations "
          f"(memory: {result['memory_kind']})")
    width = max(8, *(len(r["method"]) for r in result["rows"]))
    print(f"  {'method':{width}} {'T':>4} {'ms/iter':>9} {'min ms':>9} {'peak MiB':>9}")
    for r in result["rows"]:
        print(f"  {r['method']:{width}} {r['T']:>4} {1e3 * r['time_per_iter_s']:>9.2f} {1e3 * r['min_time_s']:>9.2f} "
              f"{r['peak_memory_bytes'] / 2**20:>9.3f}")
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
        report.plot_train(result, args.plot)
    if args.json or args.plot:
        print("  wrote " + ", ".join(str(Path(p)) for p in (args.json, args.plot) if p))
    return 0
