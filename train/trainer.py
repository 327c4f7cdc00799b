"""The training loop: ``fit(config)`` trains a spec-built model with one learning rule.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snnchip.atomic import atomic_path, write_text_atomic
from snnchip.checkpoint import load_checkpoint, save_checkpoint
from snnchip.discretize import dash_of, lam_of
from snnchip.errors import SpecError, TrainingError
from snnchip.lock import exclusive
from snnchip.options import option
from snnchip.spec import NetworkSpec, NeuronSpec, check_T
from snnchip.xylo_limits import check_sizes

from .activity import LayerActivityWarning, RateFlag, rate_flags
from .cuda_graph import GraphedIteration
from .data import DATASETS, Dataset, load_dataset
from .distributed import World, launched, process_group
from .edbp import configure_edbp, edbp_options
from .empf import VARIANTS, configure_empf
from .events import MAX_SENSOR
from .inference import simulate
from .model import SpikingNet, build_model, parameter_memory_bits
from .neuron import compile_kernels
from .rate_init import calibrate_rates
from .rules import METHODS, get_rule, mixed_loss, run_iteration
from .threads import threads_for
from .zoo import MODELS, model_spec

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-2, "adamw": 1e-2}
EDBP_LR = 5e-3  # adam/adamw
DEFAULT_BATCH = 64
EDBP_BATCH = 16
SLTT_K = 2
PROFILES = ("default", "loihi-builtin", "xylo")
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20
SLTT_LAMBDA = 1 - 1 / 1.1


@dataclass
class TrainConfig:
    """Everything ``fit`` takes; each field is also a ``snn-train`` option and a ``[train]`` key of a pipeline
    config. ``None`` means the method's default."""

    out: str = option(help="run directory (model.pt, metrics.json, curves.png)", flag="--out")
    dataset: str = option("digits", help="digits (embedded); from --data-dir: mnist, fashion-mnist, cifar10, and the "
                          "event datasets as published: nmnist, shd, dvsgesture, cifar10dvs, or dvs (our .npz)",
                          choices=DATASETS)
    data_dir: str | None = option(None, help="directory with the local dataset files", path="input")
    downsample: int = option(1, help="nmnist, dvsgesture, cifar10dvs: pool the sensor's pixels K×K (K divides its "
                             "size: 4 makes DVS128's 128×128 frames 32×32)", metavar="K")
    model: str = option("mlp", help="a zoo model", choices=tuple(MODELS))
    hidden: str = option("128", help="comma-separated hidden widths of mlp")
    method: str = option("ottt-a", help="learning rule", choices=METHODS)
    T: int = option(6, help="time steps")
    k: int | None = option(None, help=f"SLTT-K: steps with backward per batch, 0 < K <= T (default {SLTT_K})")
    epochs: int = option(20, help="training epochs")
    batch_size: int | None = option(None, help=f"global batch size (default {DEFAULT_BATCH}; edbp {EDBP_BATCH})")
    lr: float | None = option(None, help=f"learning rate (default: adam/adamw {DEFAULT_LR['adam']:g}, edbp "
                              f"{EDBP_LR:g}; sgd {DEFAULT_LR['sgd']:g})")
    optimizer: str = option("adam", help="optimizer", choices=("sgd", "adam", "adamw"))
    weight_decay: float = option(0.0, help="weight decay")
    mse_alpha: float = option(0.05, help="loss (1-α)·CE + α·MSE (OTTT), α in [0, 1]")
    encoding: str = option("direct", help="input encoding per step", choices=("direct", "rate"))
    lam: float | None = option(None, help="LIF leak λ (default: 0.5; SLTT 1 - 1/1.1)")
    theta: float = option(1.0, help="threshold θ")
    reset: str = option("subtract", help="reset after a spike", choices=("subtract", "zero"))
    spike: str = option("ge", help="spike when u >= θ (ge) or u > θ (gt)", choices=("ge", "gt"))
    bias: bool = option(True, help="synaptic layers without bias (needed by --target netx, whose biases act "
                        "from step 1)", flag="--no-bias")
    surrogate: str | None = option(None, help="surrogate gradient (default: sigmoid; SLTT triangle)",
                                   choices=("sigmoid", "triangle", "rectangle"))
    init_rate: float = option(0.2, help="data-driven initialisation: scale each hidden LIF/SRM layer's weights, "
                              "first to last, so that it fires at this mean rate on one batch of training data "
                              "(LSUV for spiking layers); 0 keeps PyTorch's default initialisation")
    seed: int = option(0, help="random seed")
    device: str = option("auto", help="auto (cuda when present), cpu, cuda", choices=("auto", "cpu", "cuda"))
    amp: bool = option(False, help="mixed precision on CUDA")
    compile: bool = option(False, help="fuse the LIF step's element-wise work with torch.compile (CPU: needs a C++ "
                           "compiler; costs seconds once, then about 10 % faster conv-net iterations)")
    cuda_graph: bool = option(False, help="CUDA: capture one training iteration (all T steps, their backward passes "
                              "and the optimizer step) as a CUDA graph and replay it per batch; every batch must "
                              "have the same shape, so each epoch's last partial batch is left out; not with "
                              "sltt-k, empf-random-bp, --amp or --nproc > 1")
    max_steps: int | None = option(None, help="stop after N optimizer iterations")
    resume: bool = option(False, help="resume exactly from OUT/model.pt")
    quiet: bool = option(False, help="no progress bar")
    empf_variant: str = option("bn", help="EM-PF neuron: fixed λ/θ, learnable per-step λ[t]/θ[t], + membrane BN, "
                               "parallel, mixed (resnet18 blocks: first neuron parallel, second bn)",
                               choices=VARIANTS)
    random_bp: bool = option(False, help="EM-PF: backward at one random step per batch (rule empf-random-bp)")
    seca: str = option("none", help="EM-PF channel attention (conv)", choices=("none", "i", "ii"))
    binary_first_last: bool = option(False, help="EM-PF: binarise the first and last synaptic layers too")
    tau_m: float | None = option(None, help="edbp: SRM τm (default: Table S1 row of the dataset)")
    tau_s: float | None = option(None, help="edbp: SRM τs (default: Table S1)")
    tau_grad: float | None = option(None, help="edbp: backward kernel h = e^(-t/τ_grad) (default: Table S1)")
    targets: str | None = option(None, help="edbp: target spike counts N_correct,N_wrong of the output neurons "
                                 "(default: Table S1, 5,1 for digits/MNIST)")
    profile: str = option("default", help="loihi-builtin: train what Lava's built-in processes compute exactly "
                          "(sets --reset zero --spike gt --no-bias), so the deployment needs no custom neuron "
                          "microcode on Loihi 2; xylo: train SynSense Xylo's neuron (a synaptic current with "
                          "λ_syn = 1 − 1/τs, τs = --tau-s or 2; λ rounded to 1 − 2^−dash; subtractive reset; up to "
                          "31 spikes per step; no biases) and check the net against Xylo's sizes (16 inputs, one "
                          "hidden layer of ≤ 1000, ≤ 8 classes); BPTT only", choices=PROFILES)

    def __post_init__(self) -> None:
        if self.random_bp and self.method == "empf":
            self.method = "empf-random-bp"
        if self.profile == "loihi-builtin":
            self.reset, self.spike, self.bias = "zero", "gt", False
        if self.profile == "xylo":  # Xylo adds biases to the membrane, its neurons' input goes through the current
            self.reset, self.spike, self.bias = "subtract", "ge", False
        if self.batch_size is None:
            self.batch_size = EDBP_BATCH if self.method == "edbp" else DEFAULT_BATCH
        if self.k is None and self.method == "sltt-k":
            self.k = min(SLTT_K, self.T)


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


def neuron_for(cfg: TrainConfig) -> NeuronSpec:
    """Method defaults (the papers' own): λ = 0.5 and sigmoid for BPTT/OTTT/SAF, λ = 1 − 1/1.1 and triangle for SLTT;
    ``--profile xylo``: Xylo's neuron with its decays on the bit-shift grid."""
    sltt = cfg.method.startswith("sltt")
    lam = cfg.lam if cfg.lam is not None else (SLTT_LAMBDA if sltt else 0.5)
    surrogate = cfg.surrogate or ("triangle" if sltt else "sigmoid")
    if cfg.profile == "xylo":
        tau_s = 1.0 / (1.0 - lam_of(max(dash_of(1.0 - 1.0 / (cfg.tau_s or 2.0)), 1)))
        return NeuronSpec(kind="xylo", lam=lam_of(dash_of(lam)), theta=cfg.theta, surrogate=surrogate, tau_s=tau_s)
    return NeuronSpec(lam=lam, theta=cfg.theta, reset=cfg.reset, spike=cfg.spike, surrogate=surrogate)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _integer(cfg: TrainConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
        raise SpecError(f"{_option(name)} must be an integer in {lo}..{hi}, got {value!r}")


def _real(cfg: TrainConfig, name: str, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bounds = f"{'>' if lo_open else '>='} {lo:g}" + ("" if hi == math.inf else f" and <= {hi:g}")
        raise SpecError(f"{_option(name)} must be a finite number {bounds}, got {value!r}")


def check_config(cfg: TrainConfig) -> None:
    """Every option in its range, each refusal naming the option (``SpecError``)."""
    get_rule(cfg.method)
    check_T(cfg.T, "--T")
    for name, hi in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH), ("max_steps", 2**62), ("seed", 2**63 - 1),
                     ("downsample", MAX_SENSOR)):
        _integer(cfg, name, 0 if name == "seed" else 1, hi)
    _integer(cfg, "k", 1, cfg.T)
    if cfg.method == "sltt-k" and cfg.k is None:
        raise SpecError(f"sltt-k needs --k with 0 < K <= T (T={cfg.T})")
    if cfg.random_bp and cfg.method != "empf-random-bp":
        raise SpecError(f"--random-bp applies to --method empf, not {cfg.method!r} (sltt-k --k 1 is its LIF form)")
    if cfg.cuda_graph and get_rule(cfg.method).sampled:
        raise SpecError(f"--cuda-graph: {cfg.method} draws its backward steps per batch, which a captured graph "
                        "would fix; use a rule with backward at fixed steps or train without --cuda-graph")
    if cfg.cuda_graph and cfg.amp:
        raise SpecError("--cuda-graph does not combine with --amp (the gradient scaler reads the device for "
                        "infinities every step, which a CUDA graph cannot capture)")
    _real(cfg, "mse_alpha", 0.0, 1.0)
    _real(cfg, "lr", 0.0, lo_open=True)
    _real(cfg, "weight_decay", 0.0)
    _real(cfg, "theta", 0.0, lo_open=True)
    _real(cfg, "lam", 0.0, 1.0)
    _real(cfg, "init_rate", 0.0, 1.0)
    for name in ("tau_m", "tau_s", "tau_grad"):
        _real(cfg, name, 0.0, lo_open=True)


def build_spec(cfg: TrainConfig, ds: Dataset) -> NetworkSpec:
    try:
        hidden = tuple(int(h) for h in str(cfg.hidden).split(",") if h.strip())
    except ValueError:
        raise SpecError(f"--hidden must be comma-separated integers, got {cfg.hidden!r}") from None
    spec = model_spec(cfg.model, ds.input_shape, ds.num_classes, cfg.T, neuron_for(cfg), hidden=hidden,
                      encoding=cfg.encoding, method=cfg.method,
                      options={"k": cfg.k, "mse_alpha": cfg.mse_alpha})
    if not cfg.bias:
        spec = dataclasses.replace(spec, layers=tuple(dataclasses.replace(la, bias=False) for la in spec.layers))
    if cfg.method.startswith("empf"):
        spec = configure_empf(spec, cfg.empf_variant, cfg.binary_first_last, cfg.seca)
    if cfg.method == "edbp":
        spec = configure_edbp(spec, **edbp_options(cfg), theta=cfg.theta, spike=cfg.spike)
    if cfg.profile == "xylo":
        _check_xylo_sizes(spec)
    return spec


def _check_xylo_sizes(spec: NetworkSpec) -> None:
    """--profile xylo: the net fits Xylo (``snnchip.xylo_limits``) before any training."""
    spiking = [la for la in spec.layers if la.neuron is not None and la.neuron.spiking]
    if len(spiking) != 1 or spec.layers[-1].neuron is None or spec.layers[-1].neuron.kind != "readout":
        raise SpecError(f"--profile xylo: Xylo holds one hidden layer and a readout; model {spec.model!r} has "
                        f"{len(spiking)} spiking layers (use --model mlp or mlp-feedback with one --hidden width)")
    check_sizes("--profile xylo", math.prod(spec.input_shape), spiking[0].out_features, spec.num_classes)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") or (name == "cuda" and not torch.cuda.is_available()):
        raise SpecError(f"--device {name!r} is not available here; valid: auto, cpu" +
                        (", cuda" if torch.cuda.is_available() else ""))
    return torch.device(name)


def make_optimizer(cfg: TrainConfig, model: SpikingNet) -> torch.optim.Optimizer:
    """The optimizer of ``cfg``. For ``--cuda-graph`` its step must run inside a CUDA graph without reading the
    device and follow the learning-rate schedule there: the learning rate is a device tensor (the scheduler fills
    it in place), Adam/AdamW run ``capturable`` and SGD ``fused``."""
    lr = cfg.lr if cfg.lr is not None else EDBP_LR if cfg.method == "edbp" and cfg.optimizer != "sgd" \
        else DEFAULT_LR[cfg.optimizer]
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
        pos = _restore(out / "model.pt", cfg, spec, model, opt, sched, scaler)
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
    """The data-driven initialisation of a freshly built ``model`` (``rate_init.calibrate_rates`` to
    ``cfg.init_rate`` on one batch of training inputs drawn with the run's seed; nothing when ``init_rate`` is 0).
    Returns {layer: {"rate_before", "rate_after", "scale"}}."""
    if not cfg.init_rate:
        return {}
    order = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.batch_size]
    x = ds.x_train[order].to(next(model.parameters()).device)
    calibration = calibrate_rates(model, x.transpose(0, 1) if ds.temporal else x, cfg.init_rate)
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


@dataclass
class Progress:
    """Where training stands: epoch (0-based, in progress), global batches done in it, iterations done."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    history: list = dataclasses.field(default_factory=list)
    init: dict = dataclasses.field(default_factory=dict)  # the data-driven initialisation, per layer

    def to_extra(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
                "history_json": json.dumps(self.history), "init_json": json.dumps(self.init)}


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


RESUME_FREE = ("out", "resume", "max_steps", "epochs", "quiet", "device", "compile", "data_dir")


def _effective(cfg: TrainConfig, key: str) -> Any:
    """The value option ``key`` stands for (``None`` resolved to the method's default)."""
    if key == "lr":
        return cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    if key in ("lam", "surrogate"):
        return getattr(neuron_for(cfg), key)
    if key in ("tau_m", "tau_s", "tau_grad", "targets") and cfg.method == "edbp":
        return edbp_options(cfg)[key]
    if key == "hidden":
        return tuple(int(h) for h in str(cfg.hidden).split(",") if h.strip())
    return getattr(cfg, key)


def _changed_options(recorded: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The options (other than ``RESUME_FREE``) whose value differs from the checkpoint's run, named."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    old = TrainConfig(**{k: v for k, v in recorded.items() if k in names})
    return [f"{_option(k)} {_effective(cfg, k)!r} (the run used {_effective(old, k)!r})" for k in sorted(names)
            if k not in RESUME_FREE and _effective(cfg, k) != _effective(old, k)]


def _restore(path: Path, cfg: TrainConfig, spec, model, opt, sched, scaler) -> Progress:
    """Resume from ``path``: exactly where it stopped, with its options (``RESUME_FREE`` may change).

    Raising or lowering --epochs continues on the cosine schedule of the new length: epoch e (0-based) trains at
    lr0·(1 + cos(π·e/E))/2, as a run started with --epochs E would; the epochs already done keep their rates.
    """
    ckpt = load_checkpoint(path)
    recorded = (ckpt.metrics or {}).get("config") or {}
    changed = _changed_options(recorded, cfg) if recorded else []
    if changed or ckpt.spec != spec:
        raise TrainingError(f"{path}: cannot resume with options that differ from the run's: "
                            f"{'; '.join(changed) or 'the network spec'}; resume with the run's options, or train "
                            "into a new --out")
    model.load_state_dict(ckpt.state_dict)
    opt.load_state_dict(ckpt.extra["optimizer"])
    if cfg.cuda_graph:  # the captured step reads the learning rate from a tensor on the parameters' device
        for group in opt.param_groups:
            group["lr"] = torch.as_tensor(group["lr"], device=group["params"][0].device)
    sched.load_state_dict(ckpt.extra["scheduler"])
    scaler.load_state_dict(ckpt.extra["scaler"])
    torch.set_rng_state(ckpt.extra["torch_rng"])
    if sched.T_max != cfg.epochs:
        sched.T_max = cfg.epochs
        for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
            lr = base * (1 + math.cos(math.pi * sched.last_epoch / cfg.epochs)) / 2
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        sched._last_lr = [float(group["lr"]) for group in opt.param_groups]
    e = ckpt.extra
    return Progress(int(e["epoch"]), int(e["batch"]), int(e["global_step"]), json.loads(e["history_json"]),
                    json.loads(e.get("init_json", "{}")))


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
