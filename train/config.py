"""What ``snn-train`` and ``fit`` take: ``TrainConfig``, its checks (``check_config``), the defaults each method
resolves (``resolved``, ``neuron_for``, ``learning_rate``) and the network spec it builds (``build_spec``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from snnchip.discretize import dash_of, lam_of
from snnchip.errors import SpecError
from snnchip.options import option
from snnchip.spec import NetworkSpec, NeuronKind, NeuronSpec, check_T
from snnchip.xylo_limits import check_sizes

from .data import DATASETS, Dataset
from .edbp import configure_edbp, edbp_options
from .empf import VARIANTS, configure_empf
from .events import MAX_SENSOR
from .rules import METHODS, get_rule
from .zoo import MODELS, model_spec

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-2, "adamw": 1e-2}
EDBP_LR = 5e-3  # adam/adamw
DEFAULT_BATCH = 64
EDBP_BATCH = 16
SLTT_K = 2
PROFILES = ("default", "loihi-builtin", "xylo")
MAX_EPOCHS = 100_000
MAX_BATCH = 2**20
MAX_LR = 1e3  # far above any published rate; larger ones overflow float32 in the optimizer step
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
    overwrite: bool = option(False, help="train a new model in place of OUT/model.pt (an OUT holding one is refused "
                             "without --resume or --overwrite)")
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


def neuron_for(cfg: TrainConfig) -> NeuronSpec:
    """Method defaults (the papers' own): λ = 0.5 and sigmoid for BPTT/OTTT/SAF, λ = 1 − 1/1.1 and triangle for SLTT;
    ``--profile xylo``: Xylo's neuron with its decays on the bit-shift grid."""
    sltt = cfg.method.startswith("sltt")
    lam = cfg.lam if cfg.lam is not None else (SLTT_LAMBDA if sltt else 0.5)
    surrogate = cfg.surrogate or ("triangle" if sltt else "sigmoid")
    if cfg.profile == "xylo":
        tau_s = 1.0 / (1.0 - lam_of(max(dash_of(1.0 - 1.0 / (cfg.tau_s or 2.0)), 1)))
        return NeuronSpec(kind=NeuronKind.XYLO, lam=lam_of(dash_of(lam)), theta=cfg.theta, surrogate=surrogate,
                          tau_s=tau_s)
    return NeuronSpec(lam=lam, theta=cfg.theta, reset=cfg.reset, spike=cfg.spike, surrogate=surrogate)


def flag(name: str) -> str:
    """The command-line flag of config field ``name``."""
    return "--" + name.replace("_", "-")


def _integer(cfg: TrainConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
        raise SpecError(f"{flag(name)} must be an integer in {lo}..{hi}, got {value!r}")


def _real(cfg: TrainConfig, name: str, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bounds = f"{'>' if lo_open else '>='} {lo:g}" + ("" if hi == math.inf else f" and <= {hi:g}")
        raise SpecError(f"{flag(name)} must be a finite number {bounds}, got {value!r}")


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
    _real(cfg, "lr", 0.0, MAX_LR, lo_open=True)
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
    if len(spiking) != 1 or spec.layers[-1].neuron is None or spec.layers[-1].neuron.kind != NeuronKind.READOUT:
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


def learning_rate(cfg: TrainConfig) -> float:
    """``--lr``, or the default of the optimizer (event-driven BP with Adam/AdamW: ``EDBP_LR``)."""
    if cfg.lr is not None:
        return cfg.lr
    return EDBP_LR if cfg.method == "edbp" and cfg.optimizer != "sgd" else DEFAULT_LR[cfg.optimizer]


def resolved(cfg: TrainConfig, key: str) -> Any:
    """The value option ``key`` stands for: every ``None`` default resolved to the method's (``__post_init__``
    resolves those the config itself needs: the batch size, SLTT-K's K, the profile's neuron options)."""
    if key == "lr":
        return learning_rate(cfg)
    if key in ("lam", "surrogate"):
        return getattr(neuron_for(cfg), key)
    if key in ("tau_m", "tau_s", "tau_grad", "targets") and cfg.method == "edbp":
        return edbp_options(cfg)[key]
    if key == "hidden":
        return tuple(int(h) for h in str(cfg.hidden).split(",") if h.strip())
    return getattr(cfg, key)
