"""``snn-bench memory``: where the memory of one training iteration goes, our rules and SpikingJelly's on the same
net (the nets and iterations of ``snn-bench peers``).

The allocator's peak during one iteration (after ``warmup`` others), above what the built model and its batch hold
(``peak_bytes``; so it includes whatever a library keeps between iterations and frees during the next one), and
every allocation live at that peak in exactly one category (they sum to ``peak_bytes``):

- ``gradients``: the ``.grad`` tensors the optimizer step reads;
- ``optimizer``: allocated inside ``torch.optim`` (optimizer state and the step's temporaries);
- ``saved_for_backward``: storages that autograd holds for backward at the peak (``measure.SavedStorages``);
- ``forward_other``: the forward's other live tensors: neuron states and traces carried to the next step, spikes,
  currents;
- ``backward_temporaries``: gradients of activations and the backward's workspaces.

``sites`` splits the live bytes at the peak by the Python function that allocated them; ``saved_peak_bytes`` and
``saved_sites`` give the saved-for-backward peak (at its own moment) by the function that saved them;
``held_between_iterations_bytes`` what is live after the iteration (SpikingJelly keeps its neurons' states and the
gradients until the next iteration resets them).

Measured from torch.profiler's allocation events (``profile_memory``): on the CPU the CPU allocator's, on CUDA the
caching allocator's allocations (not its reserved segments), the same accounting as
``torch.cuda.max_memory_allocated``. Attribution walks torch.profiler's event tree (``experimental_event_tree``, a
private structure of torch 2.x). CPU and CUDA kernels allocate differently (cuDNN and Triton workspaces, oneDNN
weight reorders), so CPU bytes tell where memory goes, not what a card will measure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.profiler import ProfilerActivity, profile, record_function

from snnchip.atomic import write_text_atomic
from snnchip.errors import BenchmarkError
from snnchip.train.config import pick_device

from . import adapters, measure, nets, options
from .options import BenchConfig

CATEGORIES = ("gradients", "optimizer", "saved_for_backward", "forward_other", "backward_temporaries")
BUILT, ITERATION = "snnchip.built", "snnchip.iteration"


def _allocations(events: list) -> tuple[list, dict[str, tuple[int, int]], list[tuple[int, str]]]:
    """The allocation events (frees have negative sizes) in time order, each with the chain of its ancestors'
    names; the [start, end] of the ``snnchip.built`` and ``snnchip.iteration`` ranges; the (start, name) of every
    other ``snnchip.*`` marker."""
    from torch._C._profiler import _EventType

    allocs, ranges, marks, stack = [], {}, [], [(e, ()) for e in events]
    while stack:
        event, chain = stack.pop()
        if event.tag == _EventType.Allocation:
            allocs.append((event.start_time_ns, event.extra_fields, chain))
            continue
        name = _name(event)
        if name in (BUILT, ITERATION):
            ranges[name] = (event.start_time_ns, event.end_time_ns)
        elif name.startswith("snnchip."):
            marks.append((event.start_time_ns, name))
        stack.extend((child, (*chain, name)) for child in event.children)
    allocs.sort(key=lambda a: a[0])
    return allocs, ranges, marks


def _mark_gradients(optimizer: torch.optim.Optimizer, *_: Any) -> None:
    """Before an optimizer step: a profiler marker ``snnchip.grad:<pointer>`` per gradient it will read (autograd may
    hand a backward's output over as ``.grad`` without allocating, so the allocation alone does not say)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                with record_function(f"snnchip.grad:{p.grad.untyped_storage().data_ptr()}"):
                    pass


def _name(event: Any) -> str:
    """An event's name (a Python call's may hold bytes that are not UTF-8: then "?")."""
    try:
        return event.name
    except UnicodeDecodeError:
        return "?"


def _category(chain: tuple[str, ...], saved: bool) -> str:
    if any(f"torch{'/'}optim{'/'}" in name for name in chain):
        return "optimizer"
    if saved:
        return "saved_for_backward"
    if any(name.startswith("autograd::engine") for name in chain):
        return "backward_temporaries"
    return "forward_other"


def _site(chain: tuple[str, ...]) -> str:
    """The innermost Python function outside torch among an allocation's ancestors, with the op that allocated."""
    op = next((n for n in reversed(chain) if n.startswith("aten::")), "?")
    for name in reversed(chain):
        if ".py(" in name and not name.startswith("torch/") and "/torch/" not in name:
            path, _, func = name.partition("): ")
            return f"{Path(path.split('(')[0]).name}:{func} ({op})"
    return op


def breakdown(build: Callable[[], adapters.Iteration], device: torch.device | str = "cpu", warmup: int = 2
              ) -> dict[str, Any]:
    """Build (model, iteration) with ``build()`` and measure one iteration after ``warmup`` others (module
    docstring); byte counts."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # the profiler names the card with its index
        device = torch.device("cuda", torch.cuda.current_device())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, profile_memory=True, with_stack=True) as prof:
        with record_function(BUILT):
            model, iteration, _ = build()
            measure.sync(device)
        for _ in range(warmup):
            iteration()
        hook = register_optimizer_step_pre_hook(_mark_gradients)
        try:
            with measure.SavedStorages(model, mark=True) as saved, record_function(ITERATION):
                iteration()
                measure.sync(device)
        finally:
            hook.remove()
    allocs, ranges, marks = _allocations(list(prof.profiler.kineto_results.experimental_event_tree()))
    built_end, (start, end) = ranges[BUILT][1], ranges[ITERATION]
    live: dict[int, list] = {}  # pointer -> [bytes, ancestors, saved, allocated after the build, a .grad]
    built = total = peak = 0  # live bytes allocated during the build, after it, and the peak of the latter
    at_peak: list[tuple[list, bool]] = []  # (entry, saved at the peak)
    events = sorted([(t, 0, f, chain) for t, f, chain in allocs if f.device == device]
                    + [(t, 1, name, None) for t, name in marks], key=lambda e: e[:2])
    for t, kind, what, chain in events:
        if kind == 1:  # a storage saved for backward, released by it, or an optimizer's .grad
            verb, _, ptr = what.partition(":")
            if int(ptr) in live:
                live[int(ptr)][4 if verb == "snnchip.grad" else 2] = verb != "snnchip.released"
            continue
        if what.alloc_size > 0:
            live[what.ptr] = [what.alloc_size, chain, False, t > built_end, False]
        elif what.ptr not in live:
            continue  # allocated before the profiler started
        entry = live[what.ptr] if what.alloc_size > 0 else live.pop(what.ptr)
        sign = 1 if what.alloc_size > 0 else -1
        if entry[3]:
            total += sign * entry[0]
        else:
            built += sign * entry[0]
        if start <= t <= end and total > peak:
            peak, at_peak = total, [(e, e[2]) for e in live.values() if e[3]]
    if not at_peak:
        raise BenchmarkError("the profiler recorded no allocation during the iteration")
    categories = dict.fromkeys(CATEGORIES, 0)
    sites: dict[str, int] = {}
    for (size, chain, _, _, grad), was_saved in at_peak:
        categories["gradients" if grad else _category(chain, was_saved)] += size
        sites[_site(chain)] = sites.get(_site(chain), 0) + size
    gradient_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {"peak_bytes": peak, "built_bytes": built, "categories": categories,
            "sites": dict(sorted(sites.items(), key=lambda kv: -kv[1])),
            "held_between_iterations_bytes": total, "saved_peak_bytes": saved.peak,
            "saved_sites": dict(sorted(saved.sites_at_peak.items(), key=lambda kv: -kv[1])),
            "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "gradient_bytes": gradient_bytes}


def run(args: BenchConfig) -> int:
    """``snn-bench memory``. Reads ``model`` (peer nets, comma-separated), ``methods`` (names of
    ``adapters.METHODS``), ``T``, ``batch_size``, ``warmup``, ``threads``, ``compile``, ``device``, ``json``."""
    options.prepare(args)
    Ts = options.time_steps(args.T)
    methods = options.names(args.methods, adapters.METHODS, "--methods")
    names = options.names(args.model, tuple(nets.NETS), "--model")
    adapters.check_peers(methods)
    device = pick_device(args.device)
    rows = []
    print(f"snn-bench memory: batch {args.batch_size}, {device}, {args.warmup} warm-up iteration(s); MiB live at the "
          "allocator's peak of one iteration, above the built model and batch")
    head = "  ".join(f"{c[:10]:>10}" for c in CATEGORIES)
    print(f"  {'net':5} {'method':14} {'T':>3} {'peak':>8}  {head}  {'saved peak':>10}  {'held after':>10}")
    for name in names:
        net = dict(nets.NETS[name], batch=args.batch_size)
        for T in Ts:
            for method in methods:
                build = partial(adapters.make_iteration, name, net, T, method, device, compile=args.compile)
                result = breakdown(build, device, args.warmup)
                rows.append({"net": name, "T": T, "method": method, **result})
                mib = lambda b: f"{b / 2**20:>10.2f}"  # noqa: E731
                print(f"  {name:5} {method:14} {T:>3} {result['peak_bytes'] / 2**20:>8.2f}  "
                      + "  ".join(mib(result["categories"][c]) for c in CATEGORIES)
                      + f"  {mib(result['saved_peak_bytes'])}  {mib(result['held_between_iterations_bytes'])}")
    if args.json:
        write_text_atomic(args.json, json.dumps({"device": str(device), "batch_size": args.batch_size,
                                                 "warmup": args.warmup, "compile": args.compile,
                                                 "versions": adapters.versions(), "rows": rows}, indent=2))
        print(f"  wrote {args.json}")
    return 0
