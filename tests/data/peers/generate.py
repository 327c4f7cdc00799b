"""Write the peer-library golden files: NIR graphs exported by snnTorch, Norse, Sinabs, Rockpool and Spyx with
each library's own export function, and each library's own simulation of the same network on a fixed input.

This script runs ONLY in a separate virtual environment that holds the peer libraries (never in snnchip's own
venv: the libraries pin other versions of nir and would replace its torch); the files here were generated in
one such environment (and a second one for Spyx 0.1.20). README.md in this folder lists how those environments
are built; ``versions.json`` records the exact versions of the last run.

    <peer venv>/bin/python tests/data/peers/generate.py                 # every library importable here
    <peer venv>/bin/python tests/data/peers/generate.py snntorch norse  # only these
    <spyx 0.1 venv>/bin/python tests/data/peers/generate.py spyx_haiku  # Spyx 0.1.20 (Haiku) needs its own venv

For every case it writes ``<case>.nir`` and ``<case>.npz``. The npz holds, time-major:
``x`` [T, batch, *features] (the input), ``output`` [T, batch, ...] (what the library's network returns:
output-layer spikes, or the readout's membrane for an LI readout), ``spikes/<node>`` for every spiking NIR node
(named as in the .nir file, nested nodes as ``sub.node``) and ``v/<node>`` where the library exposes its membrane
(its own variable, as the library stores it), plus ``interp_dt``, ``interp_discretization``, ``interp_reset``,
``interp_compare`` (the snnchip Interpretation closest to the library's semantics) and ``interp_exact`` (True where
that Interpretation is the library's arithmetic exactly; README.md says why not elsewhere).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

HERE = Path(__file__).resolve().parent
RATE_RANGE = (0.05, 0.50)
MAX_FILE_BYTES = 200_000


@dataclass
class Case:
    """One golden file pair and what reproduces it."""

    name: str
    library: str
    network: str
    graph: Any
    x: np.ndarray
    output: np.ndarray
    spikes: dict[str, np.ndarray]
    v: dict[str, np.ndarray] = field(default_factory=dict)
    interp: tuple[float, str, str, str] = (1.0, "euler", "v_reset", "gt")
    exact: bool = True


# ------------------------------------------------------------------------------------------ helpers
def binary_input(seed: int, shape: tuple[int, ...], p: float) -> np.ndarray:
    """Seeded Bernoulli(p) spikes of ``shape`` [T, batch, *features], float32."""
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


def real_input(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Seeded non-negative real input of ``shape`` (uniform in [0, scale)), float32."""
    return (np.random.default_rng(seed).random(shape) * scale).astype(np.float32)


def np32(t: Any) -> np.ndarray:
    """A torch/jax array as float32 numpy."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float32)


def write(case: Case) -> dict[str, Any]:
    """Write ``<name>.nir`` and ``<name>.npz``; check firing rates and sizes; return the versions.json entry."""
    rates = {k: float(np.mean(s)) for k, s in case.spikes.items()}
    lo, hi = RATE_RANGE
    for k in rates:
        if not lo <= rates[k] <= hi:
            raise SystemExit(f"{case.name}: firing rate of {k} is {rates[k]:.3f}, outside {RATE_RANGE}")
    for k, s in case.spikes.items():
        if not np.all((s == 0) | (s == 1)):
            raise SystemExit(f"{case.name}: {k} holds values other than 0 and 1 (multi-spike output)")
    nir_path, npz_path = HERE / f"{case.name}.nir", HERE / f"{case.name}.npz"
    nir.write(str(nir_path), case.graph)
    dt, disc, reset, compare = case.interp
    arrays = {"x": case.x, "output": case.output, **{f"spikes/{k}": s for k, s in case.spikes.items()},
              **{f"v/{k}": v for k, v in case.v.items()}, "interp_dt": np.float64(dt),
              "interp_discretization": np.str_(disc), "interp_reset": np.str_(reset),
              "interp_compare": np.str_(compare), "interp_exact": np.bool_(case.exact)}
    np.savez_compressed(npz_path, **{k: np.asarray(v) for k, v in arrays.items()})
    for p in (nir_path, npz_path):
        if p.stat().st_size > MAX_FILE_BYTES:
            raise SystemExit(f"{p.name} is {p.stat().st_size} bytes, over {MAX_FILE_BYTES}")
    types = sorted({type(n).__name__ for n in _all_nodes(case.graph)})
    try:
        nir.read(str(nir_path))
        read_error = None
    except Exception as exc:  # recorded: the file as the library wrote it does not read back with this nir
        read_error = f"{type(exc).__name__}: {exc}"
        print(f"  note: nir.read refuses {nir_path.name}: {read_error}")
    print(f"{case.name:<28} {case.library:<9} x{tuple(case.x.shape)} rates "
          + ", ".join(f"{k}={r:.3f}" for k, r in rates.items()))
    return {"library": case.library, "version": md.version(case.library.split("_")[0]), "network": case.network,
            "node_types": types, "T": int(case.x.shape[0]), "batch": int(case.x.shape[1]),
            "interpretation": {"dt": dt, "discretization": disc, "reset": reset, "compare": compare},
            "interpretation_exact": case.exact, "firing_rates": {k: round(r, 4) for k, r in rates.items()},
            **({"nir_read_error": read_error} if read_error else {})}


def _all_nodes(graph: nir.NIRGraph):
    for node in graph.nodes.values():
        yield node
        if isinstance(node, nir.NIRGraph):
            yield from _all_nodes(node)


def per_sample_io(graph: nir.NIRGraph, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nir.NIRGraph:
    """Replace the Input/Output types by the per-sample shapes (for exporters that keep the sample's batch dims,
    which ``nir.read`` then rejects in its type check); every other node is left as the library wrote it."""
    graph.nodes["input"] = nir.Input({"input": np.array(in_shape)})
    graph.nodes["output"] = nir.Output({"output": np.array(out_shape)})
    return graph


def torch_recorder(modules: dict[str, Any], pick: Callable[[Any], Any]):
    """Forward hooks that append ``pick(output)`` of each named module per call; returns the store."""
    store: dict[str, list] = {k: [] for k in modules}
    for key, mod in modules.items():
        mod.register_forward_hook(lambda _m, _i, out, key=key: store[key].append(np32(pick(out))))
    return store


# ------------------------------------------------------------------------------------------ snnTorch
def snntorch_run(net, x, neurons):
    """Step an snnTorch init_hidden net over T; collect the spikes and the stored membrane of each neuron module."""
    import torch

    spikes = torch_recorder(neurons, lambda out: out[0] if isinstance(out, tuple) else out)
    mems = {k: [] for k in neurons}
    outs = []
    with torch.no_grad():
        for m in neurons.values():
            m.reset_hidden()
        for t in range(x.shape[0]):
            out = net(torch.as_tensor(x[t]))
            outs.append(np32(out[0] if isinstance(out, tuple) else out))
            for k, m in neurons.items():
                mems[k].append(np32(m.mem))
    return (np.stack(outs), {k: np.stack(v) for k, v in spikes.items()}, {k: np.stack(v) for k, v in mems.items()})


def snntorch_cases() -> list[Case]:
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir

    def full(n, value):
        return torch.full((n,) if isinstance(n, int) else n, value)

    def leaky(shape, beta, reset, **kw):
        return snn.Leaky(beta=full(shape, beta), threshold=full(shape, 1.0), init_hidden=True,
                         reset_mechanism=reset, **kw)

    cases = []
    T, B = 25, 3
    for reset in ("subtract", "zero"):
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(12, 10), leaky(10, 0.9, reset), torch.nn.Linear(10, 4),
                                  leaky(4, 0.8, reset, output=True))
        with torch.no_grad():
            net[0].weight.mul_(2.5)
            net[2].weight.mul_(3.0)
        x = binary_input(11, (T, B, 12), 0.3)
        graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
        out, spk, mem = snntorch_run(net, x, {"1": net[1], "3": net[3]})
        cases.append(Case(f"snntorch_leaky_{reset}", "snntorch", f"Linear(12,10)-Leaky-Linear(10,4)-Leaky, {reset}",
                          graph, x, out, spk, mem, (1e-4, "euler", "zero" if reset == "zero" else "subtract_next",
                                                    "gt"), exact=True))

    class Recurrent(torch.nn.Module):
        def __init__(self, cell: str, reset: str):
            super().__init__()
            self.fc1 = torch.nn.Linear(12, 10)
            if cell == "rleaky":
                self.lif1 = snn.RLeaky(beta=0.9, linear_features=10, init_hidden=True, reset_mechanism=reset)
                self.lif2 = leaky(4, 0.8, reset, output=True)
            else:
                self.lif1 = snn.RSynaptic(alpha=0.7, beta=0.9, linear_features=10, init_hidden=True,
                                          reset_mechanism=reset)
                self.lif2 = snn.Synaptic(alpha=full(4, 0.7), beta=full(4, 0.8), threshold=full(4, 1.0),
                                         init_hidden=True, reset_mechanism=reset, output=True)
            self.fc2 = torch.nn.Linear(10, 4)

        def forward(self, x):
            return self.lif2(self.fc2(self.lif1(self.fc1(x))))

    for cell, reset, gains in (("rleaky", "subtract", (2.5, 1.0, 3.0)), ("rsynaptic", "subtract", (1.0, 0.5, 1.5)),
                               ("rsynaptic", "zero", (1.2, 0.5, 1.5))):
        torch.manual_seed(2)
        net = Recurrent(cell, reset)
        with torch.no_grad():
            net.fc1.weight.mul_(gains[0])
            net.lif1.recurrent.weight.mul_(gains[1])
            net.lif1.recurrent.bias.mul_(gains[1])
            net.fc2.weight.mul_(gains[2])
        x = binary_input(12, (T, B, 12), 0.3)
        graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
        out, spk, mem = snntorch_run(net, x, {"lif1.lif": net.lif1, "lif2": net.lif2})
        rec, ff = ("RLeaky", "Leaky") if cell == "rleaky" else ("RSynaptic", "Synaptic")
        cases.append(Case(f"snntorch_{cell}_{reset}", "snntorch",
                          f"Linear(12,10)-{rec}(rec Linear 10x10)-Linear(10,4)-{ff}, {reset}",
                          graph, x, out, spk, mem, (1e-4, "euler", f"{reset}_next", "gt"), exact=True))

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1), leaky((4, 5, 5), 0.85, "zero"),
                              torch.nn.AvgPool2d(2, stride=1), torch.nn.Flatten(), torch.nn.Linear(64, 5),
                              leaky(5, 0.8, "zero", output=True))
    with torch.no_grad():
        net[0].weight.mul_(6.0)
        net[0].bias.add_(0.5)
        net[4].weight.mul_(6.0)
        net[4].bias.add_(0.4)
    x = real_input(13, (20, 2, 1, 9, 9))
    graph = export_to_nir(net, torch.zeros(1, 1, 9, 9), ignore_dims=[0])
    out, spk, mem = snntorch_run(net, x, {"1": net[1], "5": net[5]})
    cases.append(Case("snntorch_conv_zero", "snntorch",
                      "Conv2d(1,4,3,s2,p1)-Leaky-AvgPool2d(2,s1)-Flatten-Linear(64,5)-Leaky, zero",
                      graph, x, out, spk, mem, (1e-4, "euler", "zero", "gt"), exact=True))
    return cases


def snntorch_mixed_cases() -> list[Case]:
    """The mixed graph users meet: Conv-Leaky-Pool-Linear-RLeaky-Linear-Leaky, where snnTorch's reset to zero acts
    the same step on a Leaky and the whole next step on an RLeaky (one global reset cannot describe it)."""
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir

    class Mixed(torch.nn.Module):
        def __init__(self, reset: str):
            super().__init__()
            full = torch.full
            self.conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.lif0 = snn.Leaky(beta=full((4, 5, 5), 0.85), threshold=full((4, 5, 5), 1.0), init_hidden=True,
                                  reset_mechanism=reset)
            self.pool = torch.nn.AvgPool2d(2, stride=1)
            self.flat = torch.nn.Flatten()
            self.fc1 = torch.nn.Linear(64, 10)
            self.lif1 = snn.RLeaky(beta=0.9, linear_features=10, init_hidden=True, reset_mechanism=reset)
            self.fc2 = torch.nn.Linear(10, 4)
            self.lif2 = snn.Leaky(beta=full((4,), 0.8), threshold=full((4,), 1.0), init_hidden=True,
                                  reset_mechanism=reset, output=True)

        def forward(self, x):
            return self.lif2(self.fc2(self.lif1(self.fc1(self.flat(self.pool(self.lif0(self.conv(x))))))))

    cases = []
    for reset in ("zero", "subtract"):
        torch.manual_seed(4)
        net = Mixed(reset)
        with torch.no_grad():
            net.conv.weight.mul_(3.5)
            net.conv.bias.add_(0.1)
            net.fc1.weight.mul_(4.0 if reset == "zero" else 1.8)
            net.lif1.recurrent.weight.mul_(0.8)
            net.fc2.weight.mul_(3.0)
        x = real_input(14, (20, 2, 1, 9, 9))
        graph = export_to_nir(net, torch.zeros(1, 1, 9, 9), ignore_dims=[0])
        out, spk, mem = snntorch_run(net, x, {"lif0": net.lif0, "lif1.lif": net.lif1, "lif2": net.lif2})
        interp = (1e-4, "euler", "zero_next" if reset == "zero" else "subtract_next", "gt")
        cases.append(Case(f"snntorch_mixed_{reset}", "snntorch",
                          f"Conv2d(1,4,3,s2,p1)-Leaky-AvgPool2d(2,s1)-Flatten-Linear(64,10)-RLeaky(rec 10x10)-"
                          f"Linear(10,4)-Leaky, {reset}", graph, x, out, spk, mem, interp, exact=reset == "subtract"))
    return cases


# ------------------------------------------------------------------------------------------ Norse
def norse_cases() -> list[Case]:
    import norse.torch as norse
    import torch

    dt = 1e-3

    def box(shape, tau_inv):
        return norse.LIFBoxParameters(tau_mem_inv=torch.full(shape, tau_inv), v_th=torch.ones(shape),
                                      v_leak=torch.zeros(shape), v_reset=torch.zeros(shape), method="heaviside")

    def cuba(shape):
        return norse.LIFParameters(tau_syn_inv=torch.full(shape, 200.0), tau_mem_inv=torch.full(shape, 100.0),
                                   v_leak=torch.zeros(shape), v_th=torch.ones(shape), v_reset=torch.zeros(shape),
                                   method="heaviside")

    def iaf(shape):
        return norse.IAFParameters(v_th=torch.ones(shape), v_reset=torch.zeros(shape), method="heaviside")

    def case(name, network, seed, layers, gains, x, interp_dt, exact):
        """Build SequentialState(*layers()) under ``seed``, scale weights / shift biases by ``gains``
        {index: (weight factor, bias offset)}, export, and step it over x recording cells 1 and 3."""
        torch.manual_seed(seed)
        model = norse.SequentialState(*layers())
        with torch.no_grad():
            for i, (w, b) in gains.items():
                model[i].weight.mul_(w)
                model[i].bias.add_(b)
        graph = norse.to_nir(model, torch.zeros(x.shape[2:]), dt=dt)
        graph.infer_types()  # norse leaves Conv2d types None, which nir.write cannot store
        cells = {"1": model[1], "3": model[3]}
        spikes = torch_recorder(cells, lambda out: out[0])
        vs = torch_recorder(cells, lambda out: out[1].v)
        outs, state = [], None
        with torch.no_grad():
            for t in range(x.shape[0]):
                out, state = model(torch.as_tensor(x[t]), state)
                outs.append(np32(out))
        spiking = {k: np.stack(s) for k, s in spikes.items() if not isinstance(cells[k], norse.LIBoxCell)}
        return Case(name, "norse", network, graph, x, np.stack(outs), spiking, {k: np.stack(v) for k, v in vs.items()},
                    (interp_dt, "euler", "v_reset", "gt"), exact)

    mlp = (25, 3, 12)
    return [
        case("norse_lifbox_li", "Linear(12,10)-LIFBoxCell-Linear(10,4)-LIBoxCell (LI readout)", 4,
             lambda: (torch.nn.Linear(12, 10), norse.LIFBoxCell(box((10,), 100.0), dt=dt), torch.nn.Linear(10, 4),
                      norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.full((4,), 50.0),
                                                            v_leak=torch.zeros(4)), dt=dt)),
             {0: (10.0, 0.5)}, binary_input(21, mlp, 0.3), dt * dt, True),
        case("norse_lif_cuba", "Linear(12,10)-LIFCell-Linear(10,4)-LIFCell (current-based)", 5,
             lambda: (torch.nn.Linear(12, 10), norse.LIFCell(cuba((10,)), dt=dt), torch.nn.Linear(10, 4),
                      norse.LIFCell(cuba((4,)), dt=dt)),
             {0: (3.0, 0.0), 2: (8.0, 0.3)}, binary_input(22, mlp, 0.3), dt * dt, False),
        case("norse_conv_lifbox", "Conv2d(1,4,3,s2,p1)-LIFBoxCell-Conv2d(4,3,3,s1,p1)-LIFBoxCell", 6,
             lambda: (torch.nn.Conv2d(1, 4, 3, stride=2, padding=1), norse.LIFBoxCell(box((4, 5, 5), 200.0), dt=dt),
                      torch.nn.Conv2d(4, 3, 3, stride=1, padding=1), norse.LIFBoxCell(box((3, 5, 5), 200.0), dt=dt)),
             {0: (6.0, 1.0), 2: (12.0, 1.0)}, real_input(23, (20, 2, 1, 9, 9)), dt * dt, True),
        case("norse_iaf", "Linear(12,10)-IAFCell-Linear(10,4)-IAFCell", 7,
             lambda: (torch.nn.Linear(12, 10), norse.IAFCell(iaf((10,))), torch.nn.Linear(10, 4),
                      norse.IAFCell(iaf((4,)))),
             {0: (1.0, 0.1), 2: (2.0, 0.25)}, binary_input(24, mlp, 0.3), 1.0, True),
    ]


# ------------------------------------------------------------------------------------------ Sinabs
def sinabs_cases() -> list[Case]:
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneReset, MembraneSubtract, SingleSpike
    from sinabs.nir import to_nir

    def run(model, x, neurons):
        """Sinabs squeeze layers take [(batch*time), ...] batch-major; returns time-major arrays."""
        T, B = x.shape[:2]
        rec = torch_recorder(neurons, lambda out: out)
        flat = torch.as_tensor(np.ascontiguousarray(x.swapaxes(0, 1)).reshape(B * T, *x.shape[2:]))
        for m in neurons.values():
            m.reset_states()
        with torch.no_grad():
            out = np32(model(flat))

        def tm(a):
            return a.reshape(B, T, *a.shape[1:]).swapaxes(0, 1)

        return tm(out), {k: tm(v[-1]) for k, v in rec.items()}

    cases = []
    T, B = 20, 2
    for kind, reset, gains in (("iaf", "subtract", (2.0, 0.25)), ("lif", "zero", (12.0, 3.0))):
        torch.manual_seed(8)
        if kind == "iaf":
            n1 = sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneSubtract())
            n2 = sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneSubtract())
        else:
            n1 = sl.LIFSqueeze(tau_mem=torch.full((4, 5, 5), 5.0), spike_threshold=torch.ones(4, 5, 5),
                               batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset())
            n2 = sl.LIFSqueeze(tau_mem=torch.full((5,), 4.0), spike_threshold=torch.ones(5), batch_size=B,
                               spike_fn=SingleSpike, reset_fn=MembraneReset())
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False), n1,
                                    sl.SumPool2d(2, stride=1), torch.nn.Flatten(), torch.nn.Linear(64, 5, bias=False),
                                    n2)
        with torch.no_grad():
            model[0].weight.mul_(gains[0])
            model[4].weight.mul_(gains[1])
        x = real_input(31, (T, B, 1, 9, 9))
        model(torch.zeros(B * T, 1, 9, 9))  # sinabs sizes its states on a first call; to_nir reads them
        graph = to_nir(model, torch.zeros(B, 1, 9, 9))
        graph.infer_types()  # sinabs leaves the Conv2d/Flatten types None, which nir.write cannot store
        out, spk = run(model, x, {"1": n1, "5": n2})
        reset_fn = "MembraneSubtract" if reset == "subtract" else "MembraneReset"
        cases.append(Case(f"sinabs_conv_{kind}", "sinabs",
                          f"Conv2d(1,4,3,s2,p1)-{kind.upper()}Squeeze-SumPool2d(2,s1)-Flatten-Linear(64,5)-"
                          f"{kind.upper()}Squeeze, SingleSpike, {reset_fn}",
                          graph, x, out, spk, {}, (1.0, "exact", reset, "ge"), exact=True))
    return cases


# ------------------------------------------------------------------------------------------ Rockpool
def rockpool_cases() -> list[Case]:
    import torch
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFNeuronTorch, LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    def run(model, x):
        """Rockpool takes [batch, time, n] and records every module's spikes by name."""
        xb = torch.as_tensor(np.ascontiguousarray(x.swapaxes(0, 1)))
        model.reset_state()
        with torch.no_grad():
            out, _, rec = model(xb, record=True)
        return np32(out).swapaxes(0, 1), rec

    cases = []
    T, B, dt = 25, 3, 1e-3
    for name, rec_flag, gain in (("rockpool_lif_cuba", False, 1.0), ("rockpool_lif_cuba_rec", True, 0.4)):
        torch.manual_seed(9)
        model = Sequential(LinearTorch((12, 10), has_bias=False),
                           LIFTorch(10, tau_mem=0.02, tau_syn=0.005, threshold=1.0, dt=dt, has_rec=rec_flag),
                           LinearTorch((10, 4), has_bias=False),
                           LIFTorch(4, tau_mem=0.02, tau_syn=0.005, threshold=1.0, dt=dt))
        with torch.no_grad():
            model[0].weight.mul_(0.15)
            model[2].weight.mul_(gain)
            if rec_flag:
                model[1].w_rec.mul_(0.1)
        x = binary_input(41, (T, B, 12), 0.3)
        graph = per_sample_io(to_nir(model), (12,), (4,))
        out, rec = run(model, x)
        spikes = {k: np32(rec[k]["spikes"]).swapaxes(0, 1) for k in ("1_LIFTorch", "3_LIFTorch")}
        vmem = {k: np32(rec[k]["vmem"]).swapaxes(0, 1) for k in ("1_LIFTorch", "3_LIFTorch")}
        hidden = "LIFTorch(has_rec, w_rec 10x10)" if rec_flag else "LIFTorch"
        cases.append(Case(name, "rockpool", f"LinearTorch(12,10)-{hidden}-LinearTorch(10,4)-LIFTorch", graph, x, out,
                          spikes, vmem, (dt, "exact", "subtract", "ge"), exact=False))

    torch.manual_seed(10)
    model = Sequential(LinearTorch((12, 10), has_bias=False), LIFNeuronTorch(10, tau_mem=0.02, threshold=1.0, dt=dt),
                       LinearTorch((10, 4), has_bias=False), LIFNeuronTorch(4, tau_mem=0.02, threshold=1.0, dt=dt))
    with torch.no_grad():
        model[0].weight.mul_(0.6)
        model[2].weight.abs_().mul_(0.5)
    x = binary_input(42, (T, B, 12), 0.3)
    graph = per_sample_io(to_nir(model), (12,), (4,))
    out, rec = run(model, x)
    spikes = {k: np32(rec[k]["spikes"]).swapaxes(0, 1) for k in ("1_LIFNeuronTorch", "3_LIFNeuronTorch")}
    vmem = {k: np32(rec[k]["vmem"]).swapaxes(0, 1) for k in ("1_LIFNeuronTorch", "3_LIFNeuronTorch")}
    cases.append(Case("rockpool_lifneuron", "rockpool", "LinearTorch(12,10)-LIFNeuronTorch-LinearTorch(10,4)-"
                      "LIFNeuronTorch", graph, x, out, spikes, vmem, (dt, "exact", "subtract", "ge"), exact=False))
    return cases


# ------------------------------------------------------------------------------------------ Spyx (Flax NNX)
def spyx_cases() -> list[Case]:
    import jax.numpy as jnp
    import spyx
    import spyx.nir
    from flax import nnx

    def run(model, x, taps):
        """spyx.nn.run over time-major x; hidden spikes by running the prefix Sequential up to each tap."""
        out, _ = spyx.nn.run(model, jnp.asarray(x))
        spikes = {}
        for key, upto in taps.items():
            sub = spyx.nn.Sequential(*model.layers[:upto + 1])
            spikes[key], _ = spyx.nn.run(sub, jnp.asarray(x))
        return np32(out), {k: np32(v) for k, v in spikes.items()}

    cases = []
    T, B = 25, 3
    rngs = nnx.Rngs(11)
    model = spyx.nn.Sequential(nnx.Linear(12, 10, rngs=rngs), spyx.nn.LIF((10,), beta=0.9, rngs=rngs),
                               nnx.Linear(10, 4, rngs=rngs), spyx.nn.LIF((4,), beta=0.8, rngs=rngs))
    model.layers[0].kernel[...] = model.layers[0].kernel[...] * 2.0
    model.layers[2].kernel[...] = model.layers[2].kernel[...] * 2.5
    x = binary_input(51, (T, B, 12), 0.3)
    graph = spyx.nir.to_nir(model, {"input": np.array([12])}, {"output": np.array([4])}, dt=1)
    out, spk = run(model, x, {"layer_1": 1, "layer_3": 3})
    cases.append(Case("spyx_lif", "spyx", "nnx.Linear(12,10)-LIF-nnx.Linear(10,4)-LIF (kernels (in,out), exported "
                      "transposed to (out,in))", graph, x, out, spk, {}, (1.0, "euler", "subtract", "gt"), exact=False))

    rngs = nnx.Rngs(12)
    model = spyx.nn.Sequential(nnx.Linear(12, 10, rngs=rngs), spyx.nn.RLIF((10,), beta=0.9, rngs=rngs),
                               nnx.Linear(10, 4, rngs=rngs), spyx.nn.LIF((4,), beta=0.8, rngs=rngs))
    model.layers[0].kernel[...] = model.layers[0].kernel[...] * 2.0
    model.layers[1].recurrent_w[...] = model.layers[1].recurrent_w[...] * 0.5
    model.layers[2].kernel[...] = model.layers[2].kernel[...] * 2.5
    x = binary_input(52, (T, B, 12), 0.3)
    graph = spyx.nir.to_nir(model, {"input": np.array([12])}, {"output": np.array([4])}, dt=1)
    out, spk = run(model, x, {"layer_1.layer_1.lif": 1, "layer_3": 3})
    cases.append(Case("spyx_rlif", "spyx", "nnx.Linear(12,10)-RLIF(rec 10x10)-nnx.Linear(10,4)-LIF", graph, x, out,
                      spk, {}, (1.0, "euler", "subtract", "gt"), exact=False))
    return cases


# ------------------------------------------------------------------------------------------ Spyx 0.1 (Haiku)
def spyx_haiku_cases() -> list[Case]:
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import spyx
    import spyx.nir

    def net(x):
        core = hk.DeepRNN([hk.Linear(10, with_bias=False), spyx.nn.LIF((10,), beta=0.9),
                           hk.Linear(4, with_bias=False), spyx.nn.LIF((4,), beta=0.8)])
        return hk.dynamic_unroll(core, x, core.initial_state(x.shape[1]), time_major=True)

    def hidden(x):
        core = hk.DeepRNN([hk.Linear(10, with_bias=False), spyx.nn.LIF((10,), beta=0.9)])
        return hk.dynamic_unroll(core, x, core.initial_state(x.shape[1]), time_major=True)

    T, B = 25, 3
    x = binary_input(61, (T, B, 12), 0.3)
    fn = hk.without_apply_rng(hk.transform(net))
    params = fn.init(jax.random.PRNGKey(13), jnp.asarray(x))
    params = {k: ({"w": v["w"] * (2.0 if k.endswith("linear") else 2.5)} if "w" in v else v)
              for k, v in params.items()}
    out, _ = fn.apply(params, jnp.asarray(x))
    hid = hk.without_apply_rng(hk.transform(hidden))
    sub = {k: v for k, v in params.items() if k in ("linear", "LIF")}
    h, _ = hid.apply(sub, jnp.asarray(x))
    graph = spyx.nir.to_nir(params, {"input": np.array([12])}, {"output": np.array([4])}, dt=1)
    return [Case("spyx_haiku_lif", "spyx_haiku", "hk.Linear(12->10)-LIF-hk.Linear(10->4)-LIF (Haiku w (in,out) "
                 "written untransposed)", graph, x, np32(out), {"LIF": np32(h), "LIF_1": np32(out)}, {},
                 (1.0, "euler", "subtract", "gt"), exact=False)]


LIBRARIES = {"snntorch": snntorch_cases, "snntorch_mixed": snntorch_mixed_cases, "norse": norse_cases,
             "sinabs": sinabs_cases, "rockpool": rockpool_cases,
             "spyx": spyx_cases, "spyx_haiku": spyx_haiku_cases}
DISTRIBUTIONS = ("nir", "nirtorch", "torch", "numpy", "snntorch", "norse", "sinabs", "rockpool", "spyx", "jax",
                 "jaxlib", "flax", "dm-haiku")


def main(argv: list[str]) -> int:
    wanted = argv or [k for k in LIBRARIES if k not in ("spyx_haiku", "snntorch_mixed")]
    path = HERE / "versions.json"
    record = json.loads(path.read_text()) if path.exists() else {"environments": {}, "files": {}}
    env = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    for lib in wanted:
        importlib.import_module({"spyx_haiku": "haiku", "snntorch_mixed": "snntorch"}.get(lib, lib))
        env_name = lib if lib in ("spyx_haiku", "snntorch_mixed") else "peers"
        record["environments"][env_name] = env
        for case in LIBRARIES[lib]():
            record["files"][case.name] = {**write(case), "environment": env_name}
    record["files"] = dict(sorted(record["files"].items()))
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
