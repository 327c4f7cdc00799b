"""Lower a NIR graph (docs/nir-schema.md, or a foreign one) to chip *stages*, in float.

A stage is one neuron population. Whatever reaches it through linear nodes (Affine/Linear, Scale, Conv1d/Conv2d,
AvgPool2d/SumPool2d, Flatten, Delay) is affine in the outputs of its *sources* (the Input and other neuron
populations), so it arrives as a sum of *projections*, one per (source, delay):

    I_n[t] = Σ_p A_p · x_{source(p)}[t − d_p] + b_n

(x flattened in C-order). Each path from a source to the neuron is composed into a matrix (convolutions and pooling
as sparse operators built from their window taps, so a dense conv matrix never exists) and paths from the same
source with the same delay are summed. d_p counts the path's recurrent (back) edges, one step each, as the NIR
executor runs them, plus its Delay nodes (a Delay with per-element values splits the path by value). ``A_p`` is
stored CSR (a Lava ``Sparse``) when fewer than ``SPARSE_MAX_DENSITY`` of its entries are non-zero, else dense.
The bias b_n is what the linear nodes output with every source at zero (each node's bias counted once, recurrent
Affines included from t = 0, as in NIR's dataflow).

Every neuron runs through the one reader of NIR neuron semantics, ``compile_neuron`` (u = a·v + b·x + c; current-
based: i = a_syn·i + b_syn·x): λ = a, the per-neuron input gain (b, or b·b_syn) is folded into every A_p and b_n,
c into b_n (non-current neurons only). Kinds: ``lif`` (spiking, no current state), ``cubalif`` (a current kept
through the spike: NIR's CubaLIF; Lava's own LIF), ``srm`` (snnchip's event-driven-BP neuron: current and voltage
reset), ``empf`` (graded, per-step tables [T, n]: λ̂, a, θ̂, r) and ``readout`` (the non-spiking neuron feeding the
Output: I, LI or CubaLI; its v is the output). ``export.schedule`` gives each stage its Lava latency and each projection
the extra delay that re-aligns inputs arriving along paths of different depth.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import nir
import numpy as np
import scipy.sparse as sp
import torch

from snnchip.errors import UnsupportedNodeError
from snnchip.export.kernel import Kernel, compose
from snnchip.export.loihi2 import EMPF_FLOAT_TABLES, SynapseLayout
from snnchip.export.nir_exec import compile_neuron
from snnchip.export.nir_graph import CheckedGraph, check_graph, window
from snnchip.export.nir_meta import graph_meta, recorded_interpretation, snnchip_semantics
from snnchip.export.writers import leak_hint, resolve
from snnchip.spec import NEURON_KINDS, Interpretation, NeuronKind, check_T

LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d,
                nir.Flatten, nir.Delay)
NEURON_TYPES = (nir.LIF, nir.IF, nir.I, nir.LI, nir.CubaLIF, nir.CubaLI)
SUPPORTED = ("Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten",
             "Delay", "LIF/IF", "CubaLIF", "I/LI/CubaLI (the readout feeding the Output)")
MAX_SYNAPSES = 2**28  # entries of one matrix (a Loihi 2 chip holds ~2^27 synapses); bigger is refused
SPARSE_MAX_DENSITY = 0.25  # a composed map with fewer non-zero entries than this fraction is stored CSR (Lava Sparse)
INPUT = "input"  # the source name of projections from the network input
Weight = np.ndarray | sp.csr_matrix | Kernel  # a projection's [n_out, n_in] map: dense, CSR when sparse, or a kernel


def synapse_of(weight: Weight) -> SynapseLayout:
    """The layout of a projection's weights (``SynapseLayout``)."""
    return SynapseLayout.CONV if isinstance(weight, Kernel) else \
        SynapseLayout.SPARSE if sp.issparse(weight) else SynapseLayout.DENSE


class StageTraits:
    """What a stage's ``kind`` says, for the float ``Stage`` and the integer ``QStage`` alike."""

    @property
    def spiking(self) -> bool:
        return self.kind != NeuronKind.READOUT

    @property
    def graded(self) -> bool:
        return self.kind == NeuronKind.EMPF

    @property
    def current(self) -> bool:
        """The neuron keeps a synaptic current i = λ_syn·i + x (CubaLIF, SRM, CubaLI)."""
        return self.lam_syn > 0.0


@dataclass(frozen=True)
class Projection:
    """The synapses from one source into a stage: I += weight · x_source[t − delay] (float, real units)."""

    source: str  # INPUT or a stage name
    weight: Weight  # [n_out, n_source], float64
    delay: int = 0  # steps: 0 the same step; 1 per recurrent edge; NIR Delay steps

    @property
    def synapse(self) -> str:
        return synapse_of(self.weight)


@dataclass(frozen=True)
class Stage(StageTraits):
    """One neuron population and its projections (float, real units)."""

    name: str
    kind: str  # "lif" | "cubalif" | "srm" | "empf" | "readout"
    inputs: tuple[Projection, ...]
    bias: np.ndarray  # [n_out], float64
    out_shape: tuple[int, ...]
    lam: float = 1.0
    theta: float = 1.0
    reset: str = "subtract"  # "subtract" | "zero" | "zero_next" (srm: zero, and the current too)
    spike: str = "ge"
    reset_by: float | None = None  # the amount "subtract" removes when it is not θ (snnTorch's delayed subtraction)
    lam_syn: float = 0.0  # current decay λ_syn (cubalif, srm, readouts with a current); 0: no current state
    tables: dict[str, np.ndarray] | None = None  # empf: lam, input_scale, theta, reset_offset, each [T, n_out]
    max_spikes: int = 1  # > 1: up to that many spikes per step, sent as a count (Xylo's neuron; reset subtract, ≥)

    @property
    def size(self) -> int:
        return math.prod(self.out_shape)


@dataclass(frozen=True)
class LoweredNet:
    """Stages in run order (a stage's same-step sources come before it); the first reads the real-valued input."""

    input_shape: tuple[int, ...]
    stages: tuple[Stage, ...]
    T: int | None
    encoding: str
    output: str  # the stage whose v (readout) or spikes are the network output

    @property
    def has_readout(self) -> bool:
        return self.stage(self.output).kind == NeuronKind.READOUT

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def size_of(self, source: str) -> int:
        return math.prod(self.input_shape) if source == INPUT else self.stage(source).size


def _unsupported(name: str, node: object, why: str) -> UnsupportedNodeError:
    return UnsupportedNodeError(
        f"node {name!r} ({type(node).__name__}) cannot be deployed to Loihi: {why}; supported: {', '.join(SUPPORTED)}")


# ------------------------------------------------------------------------------------- linear operators
def _operator(name: str, node: object, shape: tuple[int, ...], out_shape: tuple[int, ...]
              ) -> tuple[Weight | None, np.ndarray | None]:
    """One linear node as (M, c) with y = M·x + c on C-order flattened vectors (None: identity, no bias).

    Affine/Linear give their dense W; Scale a diagonal; Conv y[o, p] = Σ_{i, tap} W[o, i, tap]·x[i, window(p, tap)]
    + b[o] (per group) gives a ``Kernel``, and so does pooling y[c, p] = g·Σ_tap x[c, window(p, tap)] (g = 1 sum,
    1/kernel average, zero padding counted) as a depthwise kernel of g's; neither is ever expanded here.
    """
    n = math.prod(shape)
    if isinstance(node, (nir.Flatten, nir.Delay, nir.Input, nir.Output)):  # a nested subgraph's ports pass through
        return None, None
    if isinstance(node, nir.Scale):
        return sp.diags(np.broadcast_to(np.asarray(node.scale, np.float64), shape).reshape(-1), format="csr"), None
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != n:
            raise _unsupported(name, node, f"weight {w.shape} does not take an input of shape {shape} (stored "
                                           "transposed, as (in, out)? NIR's Affine/Linear weight is (out, in))")
        bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if isinstance(node, nir.Affine) else None
        return w, None if bias is None else np.broadcast_to(bias, (w.shape[0],))
    win = window(name, node, shape[1:])
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight, dtype=np.float64)
        c_out = w.shape[0]
        bias = None if node.bias is None else np.repeat(
            np.broadcast_to(np.asarray(node.bias, np.float64).reshape(-1), (c_out,)), math.prod(out_shape[1:]))
        return Kernel(w, tuple(shape), tuple(out_shape), win.stride, win.pad_before, win.pad_after, win.dilation,
                      win.groups), bias
    gain = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / math.prod(win.kernel)
    return Kernel(np.full((shape[0], 1, *win.kernel), gain), tuple(shape), tuple(out_shape), win.stride,
                  win.pad_before, win.pad_after, win.dilation, shape[0]), None


def _product(m: Weight, a: Weight) -> Weight:
    """m·a: a ``Kernel`` where the product is one (``compose``), else CSR when both factors are (a dense factor
    makes the product dense; a kernel that does not compose is expanded)."""
    composed = compose(m, a)
    if composed is not None:
        return composed
    m, a = as_matrix(m), as_matrix(a)
    if sp.issparse(m) and sp.issparse(a):
        return sp.csr_matrix(m @ a)
    if m.shape[0] * a.shape[1] > MAX_SYNAPSES:
        raise UnsupportedNodeError(f"a composed matrix would hold {m.shape[0] * a.shape[1]} dense entries, more than "
                                   f"the {MAX_SYNAPSES} snnchip builds")
    if sp.issparse(a):
        return np.asarray((a.T @ m.T).T)
    return np.asarray(m @ a)


def as_matrix(a: Weight) -> np.ndarray | sp.csr_matrix:
    """A kernel expanded to its CSR matrix (refused beyond ``MAX_SYNAPSES`` entries); matrices as they are."""
    if not isinstance(a, Kernel):
        return a
    entries = a.shape[0] * math.prod(a.kernel.shape[1:])
    if entries > MAX_SYNAPSES:
        raise UnsupportedNodeError(f"a convolution that cannot stay a kernel would expand to {entries} entries, "
                                   f"more than the {MAX_SYNAPSES} snnchip builds")
    return a.to_csr()


def storage(a: Weight) -> Weight:
    """The composed projection as stored: a kernel as it is; a matrix as CSR when fewer than ``SPARSE_MAX_DENSITY``
    of its entries are non-zero, else dense."""
    if isinstance(a, Kernel):
        return a
    nnz = a.count_nonzero() if sp.issparse(a) else int(np.count_nonzero(a))
    if nnz < SPARSE_MAX_DENSITY * math.prod(a.shape):
        a = sp.csr_matrix(a)
        a.eliminate_zeros()
        return a
    return a.toarray() if sp.issparse(a) else a


def scale_rows(a: Weight, g: np.ndarray) -> Weight:
    """diag(g)·a, one product per entry (same values for dense, CSR and a kernel whose g is per output channel)."""
    g = np.broadcast_to(np.asarray(g, dtype=np.float64).reshape(-1), (a.shape[0],))
    if isinstance(a, Kernel):
        per_channel = g.reshape(a.out_shape[0], -1)
        if np.all(per_channel == per_channel[:, :1]):
            return a.with_kernel(a.kernel * per_channel[:, 0].reshape(-1, *([1] * (a.kernel.ndim - 1))))
        a = as_matrix(a)
    if not sp.issparse(a):
        return a * g[:, None]
    out = a.copy()
    out.data = out.data * np.repeat(g, np.diff(out.indptr))
    return out


def _select_rows(m: Weight | None, rows: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """The rows ``rows`` of M (identity when None), the others zero."""
    keep = sp.diags(np.isin(np.arange(n_rows), rows).astype(np.float64), format="csr")
    return keep if m is None else sp.csr_matrix(keep @ as_matrix(m))


# ------------------------------------------------------------------------------------------- the graph
class Matrices:
    """The algebra paths are composed in when lowering: each linear node's matrix (``_operator``), products,
    row selection. ``snnchip.export.sizing`` composes sparsity patterns through the same paths instead."""

    operator = staticmethod(_operator)
    product = staticmethod(_product)
    select_rows = staticmethod(_select_rows)


class Paths:
    """Per node: its output as Σ (source, delay, matrix) over neuron/Input sources, and its rest value (what it
    outputs with every source at zero: the composed biases)."""

    def __init__(self, checked: CheckedGraph, neurons: set[str], interp: Interpretation, algebra: type = Matrices
                 ) -> None:
        self.c, self.neurons, self.interp, self.algebra = checked, neurons, interp, algebra
        self._terms: dict[str, list[tuple[str, int, Weight | None]]] = {}
        self._rest: dict[str, np.ndarray] = {}
        self._visiting: set[str] = set()

    def _enter(self, name: str) -> None:
        if name in self._visiting:
            raise UnsupportedNodeError(f"node {name!r} lies on a cycle of linear nodes with no neuron: an algebraic "
                                       "loop (every cycle needs a neuron, whose previous output closes it)")
        self._visiting.add(name)

    def rest(self, name: str) -> np.ndarray:
        if name in self._rest:
            return self._rest[name]
        node, size = self.c.nodes[name], math.prod(self.c.shapes[name])
        if name in self.neurons or name in self.c.inputs:
            value = np.zeros(size)
        else:
            self._enter(name)
            x = sum((self.rest(a) for a, _ in self.c.predecessors(name)), np.zeros(self._in_size(name)))
            if isinstance(node, nir.Delay) and np.any(x != 0):
                raise _unsupported(name, node, "it delays a constant (an upstream bias), which is then 0 for the "
                                               "first steps and not a bias; move the bias after the Delay")
            m, b = self._op(name)
            value = (x if m is None else np.asarray(m @ x).reshape(-1)) + (0.0 if b is None else b)
            self._visiting.discard(name)
        self._rest[name] = value
        return value

    def _in_size(self, name: str) -> int:
        preds = [a for a, back in self.c.predecessors(name) if not back] or [a for a, _ in self.c.predecessors(name)]
        return math.prod(self.c.shapes[preds[0]])

    def _op(self, name: str) -> tuple[Weight | None, np.ndarray | None]:
        preds = [a for a, back in self.c.predecessors(name) if not back] or [a for a, _ in self.c.predecessors(name)]
        return _operator(name, self.c.nodes[name], self.c.shapes[preds[0]], self.c.shapes[name])

    def terms(self, name: str) -> list[tuple[str, int, Weight | None]]:
        """(source, delay, M) with node output = Σ M·x_source[t − delay] + rest (M None: identity)."""
        if name in self._terms:
            return self._terms[name]
        node = self.c.nodes[name]
        if name in self.neurons or name in self.c.inputs:
            out = [(name, 0, None)]
        else:
            if not isinstance(node, (*LINEAR_TYPES, nir.Input, nir.Output)):
                raise _unsupported(name, node, "this node type cannot sit between neurons on the chip")
            self._enter(name)
            inputs = [(src, d + back, m) for a, back in self.c.predecessors(name) for src, d, m in self.terms(a)]
            preds = [a for a, back in self.c.predecessors(name) if not back] or [self.c.predecessors(name)[0][0]]
            op, _ = self.algebra.operator(name, node, self.c.shapes[preds[0]], self.c.shapes[name])
            alg, out = self.algebra, []
            for src, d, m in inputs:
                for extra, rows in self._delays(name, node):
                    part = m if rows is None else alg.select_rows(m, rows, math.prod(self.c.shapes[name]))
                    composed = part if op is None else (op if part is None else alg.product(op, part))
                    out.append((src, d + extra, composed))
            self._visiting.discard(name)
        self._terms[name] = out
        return out

    def _delays(self, name: str, node: object) -> Iterator[tuple[int, np.ndarray | None]]:
        """(steps, rows) groups of a node: one group (rows None) unless it is a Delay with several values."""
        if not isinstance(node, nir.Delay):
            yield 0, None
            return
        dt = self.interp.dt
        steps = np.rint(np.broadcast_to(np.asarray(node.delay, np.float64), self.c.shapes[name]).reshape(-1) / dt)
        for value in np.unique(steps):
            yield int(value), None if np.all(steps == value) else np.flatnonzero(steps == value)


def _uniform(name: str, node: object, value: object, what: str) -> float:
    a = np.asarray(value, dtype=np.float64)
    if a.size == 0 or not np.all(a == a.reshape(-1)[0]):
        raise _unsupported(name, node, f"{what} must be the same for every neuron of the layer (one per Lava process)")
    return float(a.reshape(-1)[0])


def _check_kind(name: str, node: object) -> None:
    """Refuse an snnchip neuron kind the chip cannot run (before its metadata is validated in detail)."""
    meta = (getattr(node, "metadata", None) or {}).get("snnchip")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind is not None and kind not in NEURON_KINDS:
        raise _unsupported(name, node, f"snnchip neuron kind {kind!r} is not supported")


def _per_neuron(name: str, node: object, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """A neuron field over the layer's neurons in C order: a scalar, per channel ((C, 1, 1) on (C, H, W)), or one
    value per neuron in any layout."""
    a = np.asarray(value, dtype=np.float64)
    n = math.prod(shape)
    try:
        return np.broadcast_to(a, shape).reshape(-1)
    except ValueError:
        if a.size == n:
            return a.reshape(-1)
        raise _unsupported(name, node, f"a parameter of shape {a.shape} does not broadcast over the layer's "
                                       f"neurons {shape}") from None


def _neuron(name: str, node: object, interp: Interpretation, is_output: bool, shape: tuple[int, ...]
            ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Neuron parameters plus the per-neuron input gain g and offset β folded into the stage (``compile_neuron``:
    u = a·v + b·x + c, current-based i = a_syn·i + b_syn·x; λ = a, g = b (·b_syn), β = c), over ``shape``."""
    _check_kind(name, node)
    meta = snnchip_semantics(node, name)
    p = compile_neuron(name, node, interp, torch.float64)
    layer = str(meta["layer"]) if meta is not None else name.removesuffix("_neuron")
    if p.graded:  # empf: per-step tables [T, C(, 1, 1)] broadcast over the node's shape -> [T, n] (C order)
        shape = np.shape(node.v_threshold)
        tables = {key: np.broadcast_to(val.numpy(), (p.steps, *shape)).reshape(p.steps, -1).astype(np.float64)
                  for key, val in zip(EMPF_FLOAT_TABLES, (p.a, p.b, p.theta, p.offset), strict=True)}
        return dict(name=layer, kind=NeuronKind.EMPF, tables=tables), np.ones(1), np.zeros(1)
    gain, offset = _per_neuron(name, node, p.b.numpy(), shape), _per_neuron(name, node, p.c.numpy(), shape)
    lam = _uniform(name, node, p.a.numpy(), "the leak λ")
    extra = {}
    if p.syn is not None:
        extra["lam_syn"] = _uniform(name, node, p.syn[0].numpy(), "the current decay λ_syn")
        if not 0.0 <= extra["lam_syn"] < 1.0:
            raise _unsupported(name, node, f"current decay λ_syn = {extra['lam_syn']} (needs 0 ≤ λ_syn < 1)")
        gain = gain * _per_neuron(name, node, p.syn[1].numpy(), shape)
        if np.any(offset != 0):
            raise _unsupported(name, node, "a current-based neuron with v_leak ≠ 0 (the chip adds constants to the "
                                           "current, where they would decay; set v_leak = 0)")
    if not 0.0 <= lam <= 1.0:
        raise _unsupported(name, node, f"leak λ = {lam} (needs 0 ≤ λ ≤ 1){leak_hint(node, interp.at(name))}")
    if p.theta is None:
        if not is_output:
            raise _unsupported(name, node, "a non-spiking neuron (I, LI, CubaLI) sends its membrane, not spikes; on "
                                           "the chip it can only be the readout feeding the Output")
        return dict(name=layer, kind=NeuronKind.READOUT, lam=lam, **extra), gain, offset
    theta = _uniform(name, node, p.theta.numpy(), "the threshold")
    if theta <= 0:
        raise _unsupported(name, node, f"threshold θ = {theta} (needs > 0)")
    reset, reset_by = p.reset, None
    if reset == "v_reset":
        if np.any(np.asarray(p.v_reset, np.float64) != 0):
            raise _unsupported(name, node, "reset to a non-zero v_reset (Loihi resets to 0 or subtracts θ)")
        reset = "zero"
    elif reset == "subtract_next":  # u[t] = λ·v + x − θ·s[t−1] = λ·(v − (θ/λ)·s[t−1]) + x
        if lam <= 0:
            raise _unsupported(name, node, "a delayed subtraction (subtract_next) with no leak memory (λ = 0)")
        reset, reset_by = "subtract", theta / lam
    kind = "srm" if p.reset_syn else ("cubalif" if p.syn is not None else "lif")
    if p.max_spikes > 1:
        extra["max_spikes"] = int(p.max_spikes)
    return dict(name=layer, kind=kind, lam=lam, theta=theta, reset=reset, reset_by=reset_by, spike=p.compare,
                **extra), gain, offset


def lower(graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None) -> LoweredNet:
    """Lower ``graph`` to ``Stage``s with their projections; ``T`` overrides the graph's ``metadata['snnchip']['T']``.

    T (either) must be an integer in 1..``T_MAX``: anything else is refused before any work.
    Foreign neurons are read with ``interpretation``, else the one recorded in the graph
    (``metadata['snnchip_interpretation']``), else NIR's defaults (Euler, dt = 1, reset to v_reset, >).
    """
    meta = graph_meta(graph)
    steps = check_T(T) if T is not None else meta.T
    for name, node in graph.nodes.items():
        _check_kind(name, node)
    checked = check_graph(graph)
    interp = resolve(checked, interpretation or recorded_interpretation(graph) or Interpretation())
    nodes = checked.nodes
    if len(checked.inputs) != 1 or len(checked.outputs) != 1:
        raise UnsupportedNodeError(f"the chip graph needs exactly one Input and one Output node, found inputs "
                                   f"{checked.inputs} and outputs {checked.outputs}")
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, *LINEAR_TYPES, *NEURON_TYPES)):
            raise _unsupported(name, node, "unknown node type")
    out_preds = checked.predecessors(checked.outputs[0])
    if len(out_preds) != 1 or not isinstance(nodes[out_preds[0][0]], NEURON_TYPES):
        raise UnsupportedNodeError("the graph must end in one neuron (a spiking LIF/IF/CubaLIF, or the readout I/LI/"
                                   f"CubaLI) feeding its Output; the Output is fed by {[a for a, _ in out_preds]}")
    output_node = out_preds[0][0]
    neurons = {n for n, v in nodes.items() if isinstance(v, NEURON_TYPES)}
    paths = Paths(checked, neurons, interp)
    stage_of: dict[str, str] = {}
    stages: list[Stage] = []
    for name in checked.order:
        if name not in neurons:
            continue
        params, gain, offset = _neuron(name, nodes[name], interp, name == output_node, checked.shapes[name])
        preds = checked.predecessors(name)
        if not preds:
            raise _unsupported(name, nodes[name], "a neuron must have an input")
        merged: dict[tuple[str, int], Weight] = {}
        n_out = math.prod(checked.shapes[name])
        for pred, back in preds:
            for src, d, m in paths.terms(pred):
                if src == name and d + back == 0:
                    raise _unsupported(name, nodes[name], "it feeds itself within the same step")
                m = sp.identity(n_out, format="csr") if m is None else m
                key = (src, d + int(back))
                merged[key] = m if key not in merged else _add(merged[key], m)
        bias = sum((paths.rest(pred) for pred, _ in preds), np.zeros(n_out))
        inputs = tuple(Projection(INPUT if src in checked.inputs else src, storage(scale_rows(m, gain)),
                                  d) for (src, d), m in merged.items())
        stages.append(Stage(inputs=inputs, bias=bias * gain + offset, out_shape=checked.shapes[name], **params))
        stage_of[name] = stages[-1].name
    stages = [replace(st, inputs=tuple(replace(p, source=stage_of.get(p.source, p.source)) for p in st.inputs))
              for st in stages]
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise UnsupportedNodeError(f"two neuron nodes map to the same layer name: {sorted(names)}")
    stages = _run_order(stages)
    for i, st in enumerate(stages):
        if st.tables is not None and steps is not None:
            if steps > st.tables["lam"].shape[0]:
                raise UnsupportedNodeError(f"layer {st.name!r}: its EM-PF tables hold {st.tables['lam'].shape[0]} "
                                           f"steps; cannot run T = {steps}")
            stages[i] = replace(st, tables={k: v[:steps] for k, v in st.tables.items()})
    return LoweredNet(checked.shapes[checked.inputs[0]], tuple(stages), steps,
                      meta.encoding, stage_of[output_node])


def _add(a: Weight, b: Weight) -> Weight:
    if isinstance(a, Kernel) and isinstance(b, Kernel) and a.same_geometry(b):
        return a + b
    a, b = as_matrix(a), as_matrix(b)
    if sp.issparse(a) and sp.issparse(b):
        return sp.csr_matrix(a + b)
    return np.asarray((a.toarray() if sp.issparse(a) else a) + (b.toarray() if sp.issparse(b) else b))


def _run_order(stages: list[Stage]) -> list[Stage]:
    """Stages ordered so that every same-step (delay 0) source runs before the stage it feeds."""
    done: list[Stage] = []
    left = list(stages)
    while left:
        ready = [s for s in left if all(p.delay > 0 or p.source == INPUT or p.source in {d.name for d in done}
                                        for p in s.inputs)]
        if not ready:
            raise UnsupportedNodeError(f"stages {[s.name for s in left]} feed each other within one step")
        done += ready
        left = [s for s in left if s not in ready]
    return done
