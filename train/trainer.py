"""The training loop: ``fit(config)`` trains a spec-built model with one learning rule (the config and its
defaults: ``config``; resuming: ``resume``).

The fresh model gets the data-driven initialisation (``rate_init``: every hidden spiking layer scaled to fire at
``init_rate`` on a training batch); Adam at 1e-2 (edbp 5e-3 with batch 16), train/README.md says why.
Every epoch, the silent and saturated layers (``activity.rate_flags``) are warned about (``LayerActivityWarning``)
and recorded in ``metrics.json`` (``rate_flags``).
On the CPU torch gets as many threads as the net's size and the free cores repay (``threads``). Cosine
learning-rate schedule (per epoch), evaluation with ``simulate`` every epoch, ``metrics.json``
(written atomically), ``curves.png`` and ``model.pt`` (every epoch; optimizer, scheduler, scaler and RNG
state in ``extra`` for an exact ``resume``). A non-finite loss raises ``TrainingError`` and leaves the last
good checkpoint in place. Under ``torchrun`` the same loop runs data-parallel (``distributed.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from snnchip.atomic import atomic_path, write_text_atomic
from snnchip.checkpoint import save_checkpoint
from snnchip.errors import SpecError, TrainingError
from snnchip.lock import exclusive
from snnchip.spec import NetworkSpec

from .activity import LayerActivityWarning, RateFlag, rate_flags
from .config import TrainConfig, build_spec, check_config, learning_rate, pick_device
from .cuda_graph import GraphedIteration
from .data import Dataset, load_dataset
from .distributed import World, launched, process_group
from .inference import simulate
from .model import SpikingNet, build_model, parameter_memory_bits
from .neuron import compile_kernels
from .rate_init import calibrate_rates, init_batch_statistics
from .resume import Progress, restore
from .rules import mixed_loss, run_iteration
from .threads import threads_for


def summary(cfg: TrainConfig, metrics: dict[str, Any]) -> list[str]:
    """The one-screen summary of a run's ``metrics`` (``fit``'s return value)."""
    rows = metrics["epochs"]
    if not rows:
        return [f"snn-train: nothing to do (already at --epochs {cfg.epochs} or --max-steps); {cfg.out}/model.pt"]
    last = rows[-1]
    rates = ", ".join(f"{k} {v:.3f}" for k, v in last["firing_rate"].items())
    lines = [f"snn-train: {cfg.model} / {cfg.method} on {cfg.dataset}, T={cfg.T}, {len(rows)} epoch(s) recorded, "
             f"last epoch {last['epoch']}",
             f"  test accuracy {last['test_acc']:.4f} (best {metrics['best_test_acc']:.4f}), test loss "
             f"{last['test_loss']:.4f}, train accuracy {last['train_acc']:.4f}",
             f"  {last['time_s']:.1f} s/epoch, peak memory {last['peak_memory_bytes'] / 2**20:.1f} MiB "
             f"({last['peak_memory_kind']}), firing rate: {rates}"]
    for flag in last.get("rate_flags", []):
        lines.append(f"  warning: {RateFlag(**flag).message()}")
    mem = metrics["parameter_memory_bits"]
    if mem["binary_bits"] < mem["float_bits"]:
        lines.append(f"  parameter memory {mem['binary_bits'] / 8 / 1024:.1f} KiB with binary weights vs "
                     f"{mem['float_bits'] / 8 / 1024:.1f} KiB float ({mem['ratio']:.2f}x)")
    lines.append(f"  wrote {cfg.out}/model.pt, {cfg.out}/metrics.json, {cfg.out}/curves.png")
    return lines


def make_optimizer(cfg: TrainConfig, model: SpikingNet) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``. For ``--cuda-graph`` its step must run inside a CUDA graph without reading the
    device and follow the learning-rate schedule there: the learning rate is a device tensor (the scheduler fills
    it in place), Adam/AdamW run ``capturable`` and SGD ``fused``."""
    lr = learning_rate(cfg)
    graph: dict[str, Any] = {}
    if cfg.cuda_graph:
        device = next(model.parameters()).device
        graph = {"lr": torch.tensor(lr, device=device)} | ({"fused": True} if cfg.optimizer == "sgd"
                                                           else {"capturable": True})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), **({"lr": lr} | graph), momentum=0.9,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(model.parameters(), **({"lr": lr} | graph), weight_decay=cfg.weight_decay)


def _batches(ds_x: torch.Tensor, ds_y: torch.Tensor, batch_size: int, temporal: bool, device, order=None):
    order = torch.arange(len(ds_x)) if order is None else order
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        x = ds_x[idx].to(device)
        yield (x.transpose(0, 1) if temporal else x), ds_y[idx].to(device)


def evaluate(model: SpikingNet, ds: Dataset, device, mse_alpha: float, batch_size: int = 256) -> dict[str, Any]:
    """Test accuracy and loss on Σ_t o[t] (loss ℓ(mean_t o[t], y)) and firing rate per spiking layer.

    Rate-coded inputs are drawn from a fixed seed inside a forked RNG: evaluation is reproducible and never
    shifts the training random stream (so a resumed run equals an uninterrupted one).
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        return _evaluate(model, ds, device, mse_alpha, batch_size)


def _evaluate(model: SpikingNet, ds: Dataset, device, mse_alpha: float, batch_size: int) -> dict[str, Any]:
    correct, loss_sum, n = 0, 0.0, 0
    spikes: dict[str, float] = {}
    for x, y in _batches(ds.x_test, ds.y_test, batch_size, ds.temporal, device):
        res = simulate(model, x)
        score = res.output[-1]
        correct += int((score.argmax(-1) == y).sum())
        loss_sum += float(mixed_loss(score / res.output.shape[0], y, mse_alpha)) * len(y)
        n += len(y)
        for name, s in res.spikes.items():
            spikes[name] = spikes.get(name, 0.0) + float(s.float().mean(dim=tuple(range(2, s.dim()))).sum() /
                                                         s.shape[0])
    return {"test_acc": correct / n, "test_loss": loss_sum / n, "firing_rate": {k: v / n for k, v in spikes.items()}}


def peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)), "peak_memory_kind": "cuda_allocated"}
    scale = 1 if sys.platform == "darwin" else 1024
    return {"peak_memory_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale),
            "peak_memory_kind": "process_max_rss"}


def fit(cfg: TrainConfig, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns the metrics written to ``OUT/metrics.json`` (by rank 0 under torchrun).

    Rank 0 holds ``OUT``'s lock (``snnchip.lock``) for the run: a second run on the same OUT is refused."""
    check_config(cfg)
    trained = Path(cfg.out) / "model.pt"
    if trained.exists() and not (cfg.resume or cfg.overwrite):
        raise SpecError(f"{trained} holds a trained model: pass --resume to continue it or --overwrite to replace it")
    device = pick_device(cfg.device)
    if cfg.cuda_graph and launched():
        raise SpecError("--cuda-graph trains in one process, without torchrun: the data-parallel gradient all-reduce "
                        "is not captured")
    if cfg.cuda_graph and device.type != "cuda":
        raise SpecError(f"--cuda-graph needs a CUDA device; this run is on {device.type}")
    with process_group(device) as world:
        if cfg.batch_size % world.size:
            raise SpecError(f"--batch-size {cfg.batch_size} is the global batch: it must be a multiple of the "
                            f"{world.size} processes")
        with exclusive(cfg.out, "snn-train") if world.main else contextlib.nullcontext():
            return _fit(cfg, dataset, world)


def _fit(cfg: TrainConfig, dataset: Dataset | None, world: World) -> dict[str, Any]:
    ds = dataset or load_dataset(cfg.dataset, cfg.data_dir, flat=cfg.model.startswith("mlp"), T=cfg.T,
                                 downsample=cfg.downsample)
    torch.manual_seed(cfg.seed)
    spec = build_spec(cfg, ds)
    with threads_for(spec, world.device):
        return _train(cfg, ds, spec, world)


def _train(cfg: TrainConfig, ds: Dataset, spec: NetworkSpec, world: World) -> dict[str, Any]:
    out, device = Path(cfg.out), world.device
    model = build_model(spec).to(device)
    pos = Progress()
    if not cfg.resume:
        pos.init = initialise(model, cfg, ds)
    opt = make_optimizer(cfg, model)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    amp = cfg.amp and device.type == "cuda"
    compile_kernels(cfg.compile)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if cfg.resume:
        pos = restore(out / "model.pt", cfg, spec, model, opt, sched, scaler)
    world.seed_rank_stream(cfg.seed, pos.global_step)
    net = world.wrap(model)  # what the rules train; checkpoints always hold model's own state_dict
    graph = None
    while pos.epoch < cfg.epochs and (cfg.max_steps is None or pos.global_step < cfg.max_steps):
        t0 = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        stats, graph = _train_epoch(cfg, net, ds, world, opt, scaler, amp, pos, out, graph)
        complete, lr = pos.batch == 0, float(opt.param_groups[0]["lr"])
        if complete:
            sched.step()
        if not world.main:
            continue
        record = {"epoch": pos.epoch + (0 if complete else 1), **stats, "complete": complete,
                  "time_s": time.perf_counter() - t0, **evaluate(model, ds, device, cfg.mse_alpha),
                  **peak_memory(device), "lr": lr, "steps": pos.global_step}
        record["rate_flags"] = _warn_rates(spec, record)
        if pos.history and pos.history[-1]["epoch"] == record["epoch"]:
            pos.history.pop()  # the rest of an epoch interrupted by --max-steps replaces its partial record
        pos.history.append(record)
        metrics = _metrics(cfg, pos, model, world)
        extra = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                 "torch_rng": torch.get_rng_state(), **pos.to_extra()}
        save_checkpoint(out / "model.pt", spec, model.state_dict(), metrics, extra)
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
        _plot(pos.history, out / "curves.png")
    return _metrics(cfg, pos, model, world)


def initialise(model: SpikingNet, cfg: TrainConfig, ds: Dataset) -> dict[str, dict[str, float]]:
    """The data-driven initialisation of a freshly built ``model`` on one batch of training inputs drawn with the
    run's seed: BatchNorm running statistics from that batch (``rate_init.init_batch_statistics``; EM-PF nets), then
    ``rate_init.calibrate_rates`` to ``cfg.init_rate`` (not when ``init_rate`` is 0).
    Returns {layer: {"rate_before", "rate_after", "scale"}} of the calibrated layers."""
    order = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.batch_size]
    x = ds.x_train[order].to(next(model.parameters()).device)
    x = x.transpose(0, 1) if ds.temporal else x
    init_batch_statistics(model, x)
    if not cfg.init_rate:
        return {}
    calibration = calibrate_rates(model, x, cfg.init_rate)
    return {name: dataclasses.asdict(c) for name, c in calibration.items()}


def _warn_rates(spec: NetworkSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The epoch's silent and saturated layers (test-set firing rates), each also a ``LayerActivityWarning``."""
    flags = rate_flags(spec, record["firing_rate"])
    for flag in flags:
        warnings.warn(LayerActivityWarning(f"epoch {record['epoch']}: {flag.message()}"), stacklevel=5)  # fit's caller
    return [dataclasses.asdict(f) for f in flags]


def _epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    return cfg.seed * 100003 + epoch


def _step_seed(cfg: TrainConfig, global_step: int) -> int:
    """Seed of the rule's random draws (SLTT-K's steps) at ``global_step``: equal on all ranks, any world size."""
    return (cfg.seed * 1000003 + global_step) * 7919


def _train_epoch(cfg, model, ds, world: World, opt, scaler, amp, pos: Progress, out,
                 graph: GraphedIteration | None = None) -> tuple[dict[str, float], GraphedIteration | None]:
    """Train from batch ``pos.batch`` of epoch ``pos.epoch`` to its end or to --max-steps; advances ``pos``.
    Returns the epoch's statistics (``train_samples``: the samples trained on) and, with --cuda-graph, the captured
    iteration (``graph``: one captured by an earlier epoch, or None to capture one on the first batch).

    ``model`` is the net, or its ``DataParallelNet`` under torchrun: this rank's share of each global batch.
    """
    model.train()
    device = world.device
    order = world.order(len(ds.x_train), _epoch_seed(cfg, 0), pos.epoch)
    loss_sum, correct, n = 0.0, torch.zeros((), dtype=torch.long, device=device), 0  # correct: read once, at the end
    n_batches = (len(ds.x_train) // cfg.batch_size) if cfg.cuda_graph else math.ceil(len(ds.x_train) / cfg.batch_size)
    if n_batches == 0:
        raise SpecError(f"--cuda-graph leaves out each epoch's last partial batch; the {len(ds.x_train)} training "
                        f"samples make no full batch of {cfg.batch_size}")
    from tqdm import tqdm

    bar = tqdm(total=n_batches, initial=pos.batch, desc=f"epoch {pos.epoch + 1}/{cfg.epochs} {cfg.method}",
               disable=cfg.quiet or not world.main, leave=False)

    def step():
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    local_batch = cfg.batch_size // world.size
    T = cfg.T if not ds.temporal else None
    for i, (x, y) in enumerate(_batches(ds.x_train, ds.y_train, local_batch, ds.temporal, device, order)):
        if i < pos.batch or i >= n_batches:
            continue
        if cfg.max_steps is not None and pos.global_step >= cfg.max_steps:
            break
        seed = _step_seed(cfg, pos.global_step)
        if world.distributed:
            model.plan(cfg.method, x.shape[0] if ds.temporal else cfg.T, cfg.k, seed)
        if cfg.cuda_graph:
            graph = graph or GraphedIteration(model, x, y, cfg.method, T, step=step, k=cfg.k, mse_alpha=cfg.mse_alpha,
                                              undo_warmup=opt)
            loss_t, score = graph(x, y)
            loss = float(loss_t)
        else:
            with torch.autocast(device.type, enabled=amp):
                loss, score = run_iteration(model, x, y, cfg.method, T, k=cfg.k, mse_alpha=cfg.mse_alpha, step=step,
                                            backward=lambda lo: scaler.scale(lo).backward(), rng=random.Random(seed))
        if not math.isfinite(loss):
            last = f"the last good checkpoint {out / 'model.pt'} is kept" if (out / "model.pt").exists() \
                else "no checkpoint was written yet"
            raise TrainingError(f"loss became {loss} at epoch {pos.epoch + 1}, iteration {pos.global_step + 1} "
                                f"({cfg.method}); {last}. Try a lower --lr or --mse-alpha.")
        pos.global_step += 1
        pos.batch = i + 1
        loss_sum += loss * len(y)
        correct += (score.argmax(-1) == y).sum()
        n += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
    bar.close()
    if pos.batch >= n_batches:
        pos.epoch, pos.batch = pos.epoch + 1, 0
    loss_sum, correct, n = world.sum([loss_sum, int(correct), n])
    return {"train_loss": loss_sum / max(n, 1), "train_acc": correct / max(n, 1), "train_samples": n}, graph


def _metrics(cfg: TrainConfig, pos: Progress, model: SpikingNet, world: World) -> dict[str, Any]:
    accs = [h["test_acc"] for h in pos.history]
    return {"config": dataclasses.asdict(cfg), "epochs": pos.history,
            "distributed": {"backend": world.backend, "world_size": world.size},
            "final_test_acc": accs[-1] if accs else None, "best_test_acc": max(accs) if accs else None,
            "init_calibration": pos.init, "parameter_memory_bits": parameter_memory_bits(model)}


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["test_loss"] for h in history], label="test")
    a.set(xlabel="epoch", ylabel="loss")
    b.plot(ep, [h["train_acc"] for h in history], label="train")
    b.plot(ep, [h["test_acc"] for h in history], label="test")
    b.set(xlabel="epoch", ylabel="accuracy")
    for ax in (a, b):
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
