"""One training iteration per library on a benchmark net: each adapter returns (model, iteration, steps with
backward), the model and data on the given device.

- ours (``bptt ottt-a ottt-o sltt sltt-k saf-e saf-f empf``): built from the net's ``NetworkSpec``, run with
  ``snnchip.train.rules.iterate`` (the training loop without its one read of the loss);
- ``sj-bptt``: SpikingJelly multi-step ``LIFNode`` + ``layer.*`` (``step_mode='m'``), one backward on the mean
  output;
- ``sj-ottt`` / ``sj-sltt``: SpikingJelly's ``OTTTLIFNode`` (inside ``layer.OTTTSequential``) / ``SLTTLIFNode``,
  single-step mode (the only mode they allow), trained with SpikingJelly's own loop
  ``learning.ottt_online_training(..., online=False)`` (backward every step, one optimizer step): the
  counterparts of our ``ottt-a`` / ``sltt``;
- ``snntorch-bptt``: snnTorch ``Leaky`` (subtractive reset) in the tutorial's explicit time loop.

Variants, ``METHOD+VARIANT``: ``+eager`` our rule with eager neuron kernels (not torch.compile'd); ``+graph`` our rule
captured as one CUDA graph per iteration (``snnchip.train.cuda_graph``; CUDA only, rules with fixed backward steps;
its iteration carries ``peak_memory_bytes``, the memory its capture took, since a replay allocates nothing);
``+cl`` our rule with the convolution weights channels-last too, like the activations (``rules._fast_layout``), so
that no convolution reorders its weights (same gradients bit for bit on the CPU; ``snn-bench memory`` shows the
reorders' temporaries);
``+torch`` a SpikingJelly method with its neurons forced onto SpikingJelly's Torch reference implementation
(``SJ_LIF_CUDA_IMPLEMENTATION=torch``; by default SpikingJelly 2.0 picks its native CUDA, then its Triton kernels
on a GPU: ``sj_implementation`` tells which ran).

Neurons match ours where the peer can express it: soft (subtractive) reset, no input decay, θ = 1, λ = 0.5
(τ = 2) except SLTT (λ = 1 − 1/1.1, τ = 1.1); loss cross-entropy for everybody (per step /T for online rules,
on the mean output for BPTT); SGD lr 1e-3, the optimizer step is part of the iteration.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from snnchip.errors import BenchmarkError
from snnchip.spec import NetworkSpec, NeuronSpec
from snnchip.train.config import SLTT_LAMBDA

from . import nets

OURS = ("bptt", "ottt-a", "ottt-o", "sltt", "sltt-k", "saf-e", "saf-f", "empf")
PEERS = ("sj-bptt", "sj-ottt", "sj-sltt", "snntorch-bptt")
VARIANTS = {"eager": OURS, "graph": tuple(m for m in OURS if m != "sltt-k"), "cl": ("bptt", "ottt-a", "sltt"),
            "torch": ("sj-bptt", "sj-ottt", "sj-sltt")}
METHODS = OURS + PEERS + tuple(f"{m}+{v}" for v, ms in VARIANTS.items() for m in ms)
SJ_IMPLEMENTATION = "SJ_LIF_CUDA_IMPLEMENTATION"
LAM = 0.5
LR = 1e-3
EXTRA_HINT = "install the peers with `make setup-bench` (pip extra `bench`: spikingjelly, snntorch, loguru)"
Iteration = tuple[nn.Module, Callable[[], None], int]


def base(method: str) -> str:
    """The method without its variant: ``ottt-a+graph`` -> ``ottt-a``."""
    return method.partition("+")[0]


def method_neuron(method: str) -> NeuronSpec:
    """The LIF neuron of ``method`` (``snn-train``'s defaults, ``trainer.neuron_for``): λ = 0.5 and a sigmoid
    surrogate, or for SLTT λ = 1 − 1/1.1 and a triangle surrogate."""
    sltt = method.startswith("sltt") or base(method) == "sj-sltt"
    return NeuronSpec(lam=SLTT_LAMBDA if sltt else LAM, surrogate="triangle" if sltt else "sigmoid")


def ours(net: NetworkSpec, method: str, x: torch.Tensor, y: torch.Tensor, graph: bool = False,
         channels_last: bool = False) -> Iteration:
    """Our rule ``method`` on ``net`` (EM-PF: the net's LIF neurons configured as EM-PF's bn variant); ``graph``:
    captured as a CUDA graph (``snnchip.train.cuda_graph``), replayed per iteration; ``channels_last``: the
    convolution weights in channels-last layout."""
    from snnchip.train.cuda_graph import GraphedIteration
    from snnchip.train.empf import configure_empf
    from snnchip.train.model import build_model
    from snnchip.train.rules import iterate

    model = build_model(configure_empf(net, "bn") if method == "empf" else net).to(x.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    k = max(1, net.T // 4)
    rng = random.Random(0)

    def step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    if not graph:
        def iteration() -> None:
            iterate(model, x, y, method, net.T, k=k, rng=rng, step=step)
    else:
        graphed = GraphedIteration(model, x, y, method, net.T, k=k, step=step)

        def iteration() -> None:
            graphed(x, y)

        iteration.peak_memory_bytes = graphed.peak_memory_bytes
    return model, iteration, {"sltt-k": k, "saf-f": 1}.get(method, net.T)


def _lam(net: NetworkSpec) -> float:
    """λ of the net's spiking neurons (``method_neuron``)."""
    return next(la.neuron.lam for la in net.layers if la.neuron is not None and la.neuron.spiking)


def _sj_lif(tau: float, step_mode: str, kind: str = "lif") -> nn.Module:
    from spikingjelly.activation_based import neuron, surrogate

    cls = {"lif": neuron.LIFNode, "ottt": neuron.OTTTLIFNode, "sltt": neuron.SLTTLIFNode}[kind]
    return cls(tau=tau, decay_input=False, v_threshold=1.0, v_reset=None, step_mode=step_mode,
               surrogate_function=surrogate.Sigmoid(alpha=4.0))


def spikingjelly_bptt(net: NetworkSpec, x: torch.Tensor, y: torch.Tensor) -> Iteration:
    """SpikingJelly multi-step BPTT (torch backend)."""
    from spikingjelly.activation_based import functional, layer

    model = nn.Sequential(*nets.plain_layers(net, lambda: _sj_lif(1 / (1 - _lam(net)), "m"), layer, step_mode="m"))
    model = model.to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_seq = x.unsqueeze(0).expand(net.T, *x.shape)

    def iteration() -> None:
        functional.reset_net(model)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_seq).mean(0), y).backward()
        opt.step()

    return model, iteration, net.T


def _sj_online_loop() -> Callable[..., Any]:
    """SpikingJelly's ``learning.online_learning.ottt_online_training``, loaded from its file: importing the
    ``learning`` package pulls in ``monitor`` -> ``torch.utils.tensorboard`` -> tensorboard (a large dependency
    the training loop never uses)."""
    import spikingjelly.activation_based as sj

    name = "spikingjelly.activation_based.learning.online_learning"
    if name not in sys.modules:
        path = Path(sj.__file__).parent / "learning" / "online_learning.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name].ottt_online_training


def spikingjelly_online(net: NetworkSpec, x: torch.Tensor, y: torch.Tensor, kind: str) -> Iteration:
    """SpikingJelly's OTTT (``kind="ottt"``) or SLTT (``"sltt"``) with its own online training loop."""
    from spikingjelly.activation_based import functional, layer

    ottt_online_training = _sj_online_loop()
    tau = 1 / (1 - _lam(net))
    mods = nets.plain_layers(net, lambda: _sj_lif(tau, "s", kind))
    model = (layer.OTTTSequential(*mods) if kind == "ottt" else nn.Sequential(*mods)).to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_seq = x.unsqueeze(1).expand(x.shape[0], net.T, *x.shape[1:])  # SpikingJelly's loop takes [B, T, ...]
    y_seq = y.unsqueeze(1).expand(-1, net.T)

    def iteration() -> None:
        functional.reset_net(model)
        ottt_online_training(model, opt, x_seq, y_seq, lambda out, target: F.cross_entropy(out, target) / net.T,
                             online=False)

    return model, iteration, net.T


class _SnnTorchNet(nn.Module):
    """The tutorial pattern: explicit membranes, one Python loop over time, outputs stacked."""

    def __init__(self, net: NetworkSpec):
        import snntorch as snn

        super().__init__()
        lam = _lam(net)
        self.layers = nn.ModuleList(nets.plain_layers(net, lambda: snn.Leaky(beta=lam, reset_mechanism="subtract")))

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


def snntorch_bptt(net: NetworkSpec, x: torch.Tensor, y: torch.Tensor) -> Iteration:
    """snnTorch BPTT in the tutorial's time loop."""
    model = _SnnTorchNet(net).to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x_seq = x.unsqueeze(0).expand(net.T, *x.shape)

    def iteration() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x_seq).mean(0), y).backward()
        opt.step()

    return model, iteration, net.T


def make_iteration(name: str, net: dict[str, Any], T: int, method: str, device: torch.device | str = "cpu",
                   seed: int = 0, compile: bool = False) -> Iteration:
    """(model, one training iteration, steps with backward) of ``method`` (a name of ``METHODS``) on the benchmark
    net ``name`` with the sizes of ``net`` and its random batch; ``compile``: our LIF kernels through torch.compile
    (``snn-train --compile``) unless the variant is ``+eager``."""
    if method not in METHODS:
        raise BenchmarkError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    plain, variant = base(method), method.partition("+")[2]
    if variant == "torch":
        _force_sj_implementation("torch")
    torch.manual_seed(seed)
    x, y = nets.data(net, seed, device)
    spec = nets.spec(name, net, T, method_neuron(method))
    if plain in OURS:
        from snnchip.train.neuron import compile_kernels

        compile_kernels(compile and variant != "eager")
        return ours(spec, plain, x, y, graph=variant == "graph", channels_last=variant == "cl")
    if plain == "sj-bptt":
        return spikingjelly_bptt(spec, x, y)
    if plain in ("sj-ottt", "sj-sltt"):
        return spikingjelly_online(spec, x, y, plain[3:])
    return snntorch_bptt(spec, x, y)


def _force_sj_implementation(name: str) -> None:
    """SpikingJelly reads ``SJ_LIF_CUDA_IMPLEMENTATION`` once, when its LIF operators are imported: set it before."""
    if "spikingjelly._ops.lif" in sys.modules and os.environ.get(SJ_IMPLEMENTATION) != name:
        raise BenchmarkError(f"SpikingJelly is already loaded in this process; {SJ_IMPLEMENTATION}={name} needs a "
                             "fresh one")
    os.environ[SJ_IMPLEMENTATION] = name


def sj_implementation() -> str | None:
    """The CUDA implementations SpikingJelly selected for its LIF in this process (``cuda``, ``triton``, ``torch``, or
    ``torch-reference`` where a call fell back to it), None if none; read from its operator registry (a private
    structure of SpikingJelly 2.0)."""
    lif = sys.modules.get("spikingjelly._ops.lif")
    try:
        chosen = {"torch-reference" if impl is None else impl.name for impl in lif._selection._selections.values()}
    except AttributeError:
        return None
    return ", ".join(sorted(chosen)) or None


def check_peers(methods: list[str]) -> None:
    """Refuse, naming the extra, a peer method whose library is not importable."""
    for lib, prefix in (("spikingjelly", "sj-"), ("snntorch", "snntorch-")):
        if any(m.startswith(prefix) for m in methods):
            try:
                importlib.import_module("spikingjelly.activation_based" if lib == "spikingjelly" else lib)
            except ImportError as exc:
                raise BenchmarkError(f"{lib} is not importable ({exc}); {EXTRA_HINT}") from None


def versions() -> dict[str, str | None]:
    """torch, Python and the peer libraries' versions (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"torch": torch.__version__, "python": platform.python_version()}
    for lib in ("spikingjelly", "snntorch"):
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out
