"""The NIR reference executor: any checked NIR graph run in PyTorch, discrete time, batched.

Every step t = 1..T visits the nodes in the order of ``check_graph`` (layer l+1 sees layer l's
output of the same step); a recurrent (back) edge delivers its source's value of step t − 1
(zeros at t = 1). Several edges into one node add up. Every neuron, ours or foreign, runs through
``snnchip.neurons.neuron_step`` on the discrete parameters ``compile_neuron`` reads from the node
(``snnchip.neurons.NeuronParams``). Spiking nodes output s, non-spiking ones (LI, I, CubaLI) output v.

* Our nodes (``metadata["snnchip"]``, docs/nir-schema.md) follow it exactly: ``lif`` is ``lif_step`` with a = λ,
  b = 1, c = 0 and the stored θ, reset and comparison; ``readout`` (nir.I) is ``li_step`` with a = b = 1;
  ``srm`` (nir.CubaLIF, discretization ``exact``) is ``cuba_lif_step`` with a_syn = lam_syn, b_syn = input_scale,
  a = lam (λ_mem), b = 1, c = 0, reset ``zero`` and the current reset; ``empf`` (nir.LIF or nir.IF) is
  ``empf_step`` with the [T, C] tables of the metadata, broadcast over H, W (row t − 1 at step t); its NIR fields
  (the t = 1 values) are ignored. A kind, version or discretization we cannot honour raises
  ``UnsupportedNodeError``.
* Foreign nodes are NIR's ODEs discretised under the ``Interpretation`` by ``snnchip.discretize`` (Euler or exact
  decay, dt), with the interpretation's reset and comparison; a foreign CubaLIF keeps its current at a spike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from snnchip.discretize import current_coefficients, if_coefficients, lif_coefficients
from snnchip.errors import DataError, UnsupportedNodeError
from snnchip.neurons import NeuronParams, heaviside, neuron_step
from snnchip.spec import Interpretation, NeuronKind
from snnchip.summary import result_repr

from .nir_graph import CheckedGraph, check_graph, window
from .nir_meta import NEURON_TYPES, SPIKING_TYPES, recorded_interpretation, snnchip_semantics
from .writers import resolve

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------ neuron nodes
def _tensor(value: Any, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    return torch.tensor(np.array(value, dtype=np.float64), dtype=dtype, device=device)


def compile_neuron(name: str, node: nir.NIRNode, interpretation: Interpretation,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> NeuronParams:
    """Discrete parameters of a neuron node (tensors of ``dtype`` on ``device``): from ``metadata["snnchip"]`` if
    present, else from NIR + interpretation."""
    meta = snnchip_semantics(node, name)
    t = lambda v: _tensor(v, dtype, device)  # noqa: E731
    if meta is not None:
        kind = meta["kind"]
        wanted = "exact" if kind == NeuronKind.SRM else "euler"
        if meta["discretization"] != wanted or float(meta["dt"]) != 1.0:
            raise UnsupportedNodeError(f"node {name!r}: snnchip metadata asks for {meta['discretization']} with "
                                       f"dt={meta['dt']}; this executor honours {kind} only with {wanted}, dt=1 "
                                       "(schema v1)")
        if kind == NeuronKind.SRM and isinstance(node, nir.CubaLIF):
            return NeuronParams(t(meta["lam"]), t(1.0), t(0.0), t(meta["theta"]), "zero", meta["spike"],
                                syn=(t(meta["lam_syn"]), t(meta["input_scale"])), reset_syn=True)
        if kind == NeuronKind.XYLO and isinstance(node, nir.CubaLIF):
            return NeuronParams(t(meta["lam"]), t(1.0), t(0.0), t(meta["theta"]), "subtract", "ge",
                                syn=(t(meta["lam_syn"]), t(1.0)), max_spikes=int(meta["max_spikes"]))
        if kind == NeuronKind.LIF and isinstance(node, (nir.LIF, nir.IF)):
            return NeuronParams(t(meta["lam"]), t(1.0), t(0.0), t(meta["theta"]), meta["reset"], meta["spike"])
        if kind == NeuronKind.READOUT and isinstance(node, nir.I):
            return NeuronParams(t(1.0), t(1.0), t(0.0), None)
        if kind == NeuronKind.EMPF and isinstance(node, (nir.LIF, nir.IF)):
            return _empf_params(node, meta, dtype, device)
        raise UnsupportedNodeError(f"node {name!r}: snnchip neuron kind {kind!r} on a {type(node).__name__} node "
                                   "cannot be executed by this reference executor yet (supported: lif on LIF/IF, "
                                   "srm and xylo on CubaLIF, readout on I, empf on LIF/IF); upgrade snnchip")
    interpretation = interpretation.at(name)
    syn = None
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        syn = tuple(map(t, current_coefficients(node.tau_syn, node.w_in, interpretation)))
    if isinstance(node, (nir.IF, nir.I)):
        a, b, c = map(t, if_coefficients(node.r, interpretation))
    else:
        tau = node.tau_mem if syn is not None else node.tau
        a, b, c = map(t, lif_coefficients(tau, node.r, node.v_leak, interpretation))
    spiking = isinstance(node, SPIKING_TYPES)
    return NeuronParams(a, b, c, t(node.v_threshold) if spiking else None, interpretation.reset,
                        interpretation.compare, t(node.v_reset) if spiking else 0.0, syn,
                        semantics=f"NIR {type(node).__name__} read as {interpretation}")


def _empf_params(node: nir.NIRNode, meta: dict[str, Any], dtype: torch.dtype, device: torch.device | str
                 ) -> NeuronParams:
    """EM-PF folded form (metadata validated by ``snnchip_semantics``): tables [T, C] viewed as [T, C, 1, ...]
    so that row t broadcasts over the node's shape (C, H, W)."""
    ndim = np.ndim(node.v_threshold)

    def table(key: str) -> Tensor:
        arr = np.asarray(meta[key], dtype=np.float64)
        return _tensor(arr.reshape(arr.shape + (1,) * (ndim - 1)), dtype, device)

    return NeuronParams(table("lam"), table("input_scale"), _tensor(0.0, dtype, device), table("theta"), "subtract",
                        "ge",
                        graded=True, offset=table("reset_offset"), steps=int(meta["T"]),
                        semantics="snnchip v1 (empf: graded, per step)")


# ------------------------------------------------------------------------------------ other nodes
def _stateless(name: str, node: nir.NIRNode, in_shape: tuple[int, ...], interpretation: Interpretation,
               dtype: torch.dtype, device: torch.device | str):
    """The per-step function y = f(x) of a node without state (x batched: [B, *in_shape])."""
    t = lambda v: _tensor(v, dtype, device)  # noqa: E731
    if isinstance(node, (nir.Input, nir.Output)):
        return lambda x: x
    if isinstance(node, nir.Affine):
        w, b = t(node.weight), t(node.bias)
        return lambda x: x @ w.T + b
    if isinstance(node, nir.Linear):
        w = t(node.weight)
        return lambda x: x @ w.T
    if isinstance(node, nir.Scale):
        s = t(node.scale)
        return lambda x: x * s
    if isinstance(node, nir.Threshold):
        th = t(node.threshold)
        compare = interpretation.at(name).compare
        return lambda x: heaviside(x, th, compare)
    if isinstance(node, (nir.Conv1d, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d)):
        win = window(name, node, in_shape[1:])
        pad = [p for before, after in zip(reversed(win.pad_before), reversed(win.pad_after), strict=True)
               for p in (before, after)]  # F.pad's order: last axis first
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            conv = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
            w, b = t(node.weight), t(np.broadcast_to(node.bias, (node.weight.shape[0],)))
            return lambda x: conv(F.pad(x, pad), w, b, stride=win.stride, dilation=win.dilation, groups=win.groups)
        gain = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / math.prod(win.kernel)  # zero padding counted
        return lambda x: F.avg_pool2d(F.pad(x, pad), win.kernel, win.stride, divisor_override=1) * gain
    if isinstance(node, nir.Flatten):
        nd = len(in_shape)
        start, end = int(node.start_dim) % nd, int(node.end_dim) % nd
        return lambda x: x.flatten(start + 1, end + 1)
    raise UnsupportedNodeError(f"node {name!r}: {type(node).__name__} has no executor implementation")


@dataclass
class NodeOp:
    """One node's step: ``neuron`` (NeuronParams), ``delay`` (steps per element) or a stateless ``fn``."""

    neuron: NeuronParams | None = None
    delay: Tensor | None = None
    fn: Any = None

    def init_state(self, batch: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
                   ) -> dict[str, Tensor]:
        zeros = torch.zeros((batch, *shape), dtype=dtype, device=device)
        if self.neuron is not None:
            return {k: zeros for k in self.neuron.state_keys}
        if self.delay is not None:
            return {"hist": torch.zeros((int(self.delay.max()) + 1, batch, *shape), dtype=dtype, device=device)}
        return {}

    def step(self, x: Tensor, state: dict[str, Tensor], t: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        if self.neuron is not None:
            return neuron_step(self.neuron, x, state, t)
        if self.delay is not None:  # y[t] = x[t − d]
            hist = torch.cat([x[None], state["hist"][:-1]])
            idx = self.delay.expand(x.shape)[None]
            return torch.gather(hist, 0, idx)[0], {"hist": hist}
        return self.fn(x), state


# -------------------------------------------------------------------------------------- executor
@dataclass
class ExecResult:
    """``output`` [T, B, n_out]; ``spikes`` {layer or node: [T, B, *shape]}; ``states`` {node: v [T, B, *shape]}
    (current-based nodes add ``<node>/i``); ``interpretation``: the one applied to foreign nodes, or None
    when every neuron followed ``metadata["snnchip"]``; ``semantics``: how each neuron node was read."""

    output: Tensor
    spikes: dict[str, Tensor]
    states: dict[str, Tensor]
    interpretation: Interpretation | None
    semantics: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        read = None if self.interpretation is None else self.interpretation.describe()
        return result_repr("ExecResult", self.output, self.spikes, interpretation=read)


class NIRExecutor:
    """Run a NIR graph in discrete time; see the module docstring for the semantics. Parameters, state and results
    are tensors of ``dtype`` on ``device`` (a CUDA device runs the same arithmetic there)."""

    def __init__(self, graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.checked: CheckedGraph = check_graph(graph)
        self.interpretation = resolve(self.checked, interpretation or recorded_interpretation(graph)
                                      or Interpretation())
        self.T, self.dtype, self.device = T, dtype, torch.device(device)
        if len(self.checked.inputs) != 1 or len(self.checked.outputs) != 1:
            raise UnsupportedNodeError(f"the executor runs graphs with one Input and one Output; this one has "
                                       f"inputs {self.checked.inputs} and outputs {self.checked.outputs}")
        self.ops: dict[str, NodeOp] = {}
        self.spike_names: dict[str, str] = {}
        self.semantics: dict[str, str] = {}
        for name in self.checked.order:
            self.ops[name] = self._compile(name)

    def _compile(self, name: str) -> NodeOp:
        node, checked = self.checked.nodes[name], self.checked
        if isinstance(node, NEURON_TYPES):
            params = compile_neuron(name, node, self.interpretation, self.dtype, self.device)
            self.semantics[name] = params.semantics
            if params.theta is not None:
                meta = snnchip_semantics(node, name)
                self.spike_names[name] = meta["layer"] if meta else name
            return NodeOp(neuron=params)
        if isinstance(node, nir.Delay):
            steps = np.rint(np.asarray(node.delay, np.float64) / self.interpretation.dt).astype(np.int64)
            steps = np.broadcast_to(steps, checked.shapes[name]).copy()
            return NodeOp(delay=torch.as_tensor(steps, device=self.device))
        if isinstance(node, nir.Threshold):
            self.spike_names[name] = name
        preds = [a for a, _ in checked.predecessors(name)]
        in_shape = checked.shapes[preds[0]] if preds else checked.shapes[name]
        return NodeOp(fn=_stateless(name, node, in_shape, self.interpretation, self.dtype, self.device))

    def rest(self, name: str) -> Tensor:
        """The node's output before the first step [1, *shape]: zero for the Input, neurons and Delays, a stateless
        node's function of its inputs' rest values (an Affine outputs its bias). A recurrent edge delivers this at
        t = 1, as NIR's dataflow has it (a recurrent Affine adds its bias from the first step)."""
        op, shape = self.ops[name], self.checked.shapes[name]
        if op.fn is None or isinstance(self.checked.nodes[name], nir.Input):
            return torch.zeros((1, *shape), dtype=self.dtype, device=self.device)
        preds = self.checked.predecessors(name)
        return op.fn(sum((self.rest(a) for a, _ in preds), torch.zeros((1, *self.checked.shapes[preds[0][0]]),
                                                                        dtype=self.dtype, device=self.device)))

    def run(self, x: Tensor | np.ndarray) -> ExecResult:
        """Run on ``x`` [T, B, *input_shape] (an array, or a tensor on any device); returns outputs, spikes and membrane
        traces of every step, on the executor's device."""
        c = self.checked
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).to(self.device, self.dtype)
        in_shape = c.shapes[c.inputs[0]]
        if x.ndim != 2 + len(in_shape) or tuple(x.shape[2:]) != in_shape:
            raise DataError(f"input has shape {tuple(x.shape)}; this graph takes [T, batch, *{in_shape}]")
        if self.T is not None and x.shape[0] != self.T:
            raise DataError(f"input has {x.shape[0]} time steps; the executor was built for T={self.T}")
        if not torch.isfinite(x).all():
            raise DataError("input contains NaN or infinite values")
        for name, op in self.ops.items():
            if op.neuron is not None and op.neuron.steps is not None and x.shape[0] > op.neuron.steps:
                raise DataError(f"input has {x.shape[0]} time steps; node {name!r} has per-step parameters for "
                                f"T={op.neuron.steps} steps only")
        batch = x.shape[1]
        state = {n: op.init_state(batch, c.shapes[n], self.dtype, self.device) for n, op in self.ops.items()}
        preds = {n: c.predecessors(n) for n in c.order}
        prev = {a: self.rest(a).expand(batch, *c.shapes[a]) for a, _ in c.back_edges}
        outputs, spikes, states = [], {n: [] for n in self.spike_names}, {}
        for t in range(x.shape[0]):
            vals: dict[str, Tensor] = {}
            for name in c.order:
                if name == c.inputs[0]:
                    vals[name] = x[t]
                    continue
                inp = sum(prev[a] if back else vals[a] for a, back in preds[name])
                vals[name], state[name] = self.ops[name].step(inp, state[name], t)
                for key, value in state[name].items():
                    if key in ("v", "i"):
                        states.setdefault(name if key == "v" else f"{name}/{key}", []).append(value)
            prev = {a: vals[a] for a in prev}
            outputs.append(vals[c.outputs[0]].reshape(batch, -1))
            for n in spikes:
                spikes[n].append(vals[n])
        used = any(not s.startswith("snnchip") for s in self.semantics.values())
        return ExecResult(torch.stack(outputs), {self.spike_names[n]: torch.stack(v) for n, v in spikes.items()},
                          {n: torch.stack(v) for n, v in states.items()},
                          self.interpretation if used else None, dict(self.semantics))
