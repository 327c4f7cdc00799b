"""NIR graphs as snnchip runs them: nested subgraphs flattened, nodes ordered for discrete time, shapes inferred.

``check_graph`` returns a ``CheckedGraph``: flat nodes (a nested subgraph's nodes named ``sub.node``), edges,
the run order, the back edges, and every node's per-sample (unbatched) output shape, with each node's fields
checked. Anything inconsistent raises ``NIRFormatError``; a node type we do not know raises
``UnsupportedNodeError``; both name the node.

Cycles: nodes are ordered by a depth-first search from the Input nodes; an edge that closes a cycle (it points at
a node still on the search stack) is a *back edge* and delivers its source's value of the previous step (zeros at
t = 1). This is the one-step-delay convention of our feedback edges and of snnTorch/Norse recurrent subgraphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from snnchip.errors import NIRFormatError, UnsupportedNodeError

from .nir_meta import NEURON_TYPES, snnchip_semantics

KNOWN_TYPES = {cls.__name__: cls for cls in (
    nir.Input, nir.Output, nir.NIRGraph, nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d,
    nir.SumPool2d, nir.AvgPool2d, nir.Flatten, nir.Delay, nir.Threshold, *NEURON_TYPES)}
Shape = tuple[int, ...]


@dataclass
class CheckedGraph:
    """A flat, ordered, shape-checked view of a NIR graph (nested subgraphs inlined as ``sub.node``)."""

    graph: nir.NIRGraph
    nodes: dict[str, nir.NIRNode]
    edges: list[tuple[str, str]]
    order: list[str]
    back_edges: set[tuple[str, str]]
    shapes: dict[str, Shape]
    inputs: list[str]
    outputs: list[str]

    def predecessors(self, name: str) -> list[tuple[str, bool]]:
        """``(source, is_back_edge)`` for every edge into ``name``."""
        return [(a, (a, b) in self.back_edges) for a, b in self.edges if b == name]


def _flatten(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
    """Inline nested NIRGraph nodes; an edge to/from a subgraph goes to its single Input/Output."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    ports: dict[str, tuple[str, str]] = {}
    if not isinstance(graph.nodes, dict) or not isinstance(graph.edges, (list, tuple)):
        raise NIRFormatError(f"graph {prefix or '<top>'!r}: nodes must be a dict and edges a list")
    for name, node in graph.nodes.items():
        full = f"{prefix}{name}"
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten(node, f"{full}.")
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            ins = [n for n, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [n for n, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise NIRFormatError(f"subgraph {full!r} needs exactly one Input and one Output node, has "
                                     f"{len(ins)} and {len(outs)}")
            ports[full] = (f"{full}.{ins[0]}", f"{full}.{outs[0]}")
        elif type(node).__name__ in KNOWN_TYPES and isinstance(node, KNOWN_TYPES[type(node).__name__]):
            nodes[full] = node
        else:
            raise UnsupportedNodeError(f"node {full!r} has type {type(node).__name__}, which snnchip cannot "
                                       f"execute; supported: {', '.join(sorted(KNOWN_TYPES))}")
    for edge in graph.edges:
        if not (isinstance(edge, (list, tuple)) and len(edge) == 2 and all(isinstance(e, str) for e in edge)):
            raise NIRFormatError(f"graph {prefix or '<top>'!r}: malformed edge {edge!r}; edges are (src, dst) names")
        src, dst = (f"{prefix}{e}" for e in edge)
        src = ports[src][1] if src in ports else src
        dst = ports[dst][0] if dst in ports else dst
        for end in (src, dst):
            if end not in nodes:
                raise NIRFormatError(f"edge {edge!r} names node {end!r}, which is not in the graph")
        edges.append((src, dst))
    return nodes, edges


def _order(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]) -> tuple[list[str], set]:
    """Reverse DFS post-order from the Input nodes, and the back edges closing cycles."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    state: dict[str, int] = {}  # 1 on stack, 2 done
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    for root in (n for n, v in nodes.items() if isinstance(v, nir.Input)):
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[node] = 2
                post.append(node)
            elif state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    unreachable = [n for n in nodes if n not in state]
    if unreachable:
        raise NIRFormatError(f"node(s) {unreachable} cannot be reached from any Input node; connect or remove them")
    return post[::-1], back


def _array(node: nir.NIRNode, name: str, field: str) -> np.ndarray:
    value = getattr(node, field, None)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise NIRFormatError(f"node {name!r}: field {field!r} is not numeric ({value!r})") from None
    if not np.all(np.isfinite(arr)):
        raise NIRFormatError(f"node {name!r}: field {field!r} has NaN or infinite values")
    return arr


def _ints(value: Any, name: str, field: str, n: int) -> tuple[int, ...]:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise NIRFormatError(f"node {name!r}: {field} must be an int or {n} ints, got {value!r}")
    return tuple(int(v) for v in arr)


def _declared(shape: Any, name: str, what: str) -> Shape | None:
    if shape is None:
        return None
    arr = np.asarray(shape).reshape(-1)
    if arr.size == 0 and np.asarray(shape).ndim == 0:
        return None
    if not np.issubdtype(arr.dtype, np.number) or np.any(arr <= 0) or np.any(arr != np.round(arr)):
        raise NIRFormatError(f"node {name!r}: {what} {shape!r} is not a list of positive ints")
    return tuple(int(v) for v in arr)


@dataclass(frozen=True)
class Window:
    """A sliding window (convolution or pooling) read from any NIR form of its fields: int, tuple or array
    stride/padding/dilation, ``'same'``/``'valid'`` padding (str or bytes). Output position o of an axis reads input
    positions o·stride − pad_before + tap·dilation (taps 0..kernel−1); padding is zeros. PyTorch's ``'same'`` pads
    dilation·(kernel − 1) in total, the smaller half before."""

    kernel: Shape
    stride: Shape
    dilation: Shape
    pad_before: Shape
    pad_after: Shape
    groups: int = 1

    def out_size(self, size: Shape) -> Shape:
        return tuple((size[i] + self.pad_before[i] + self.pad_after[i] - self.dilation[i] * (self.kernel[i] - 1) - 1)
                     // self.stride[i] + 1 for i in range(len(size)))


def window(name: str, node: nir.NIRNode, size: Shape) -> Window:
    """The ``Window`` of a Conv1d/Conv2d/SumPool2d/AvgPool2d node over per-channel input ``size``."""
    n = len(size)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = _array(node, name, "weight")
        kernel, dilation = tuple(int(k) for k in w.shape[2:]), _ints(node.dilation, name, "dilation", n)
        groups = _ints(node.groups, name, "groups", 1)[0]
    else:
        kernel, dilation, groups = _ints(node.kernel_size, name, "kernel_size", n), (1,) * n, 1
    stride = _ints(node.stride, name, "stride", n)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if isinstance(padding, str) and padding in ("same", "valid"):
        total = [d * (k - 1) if padding == "same" else 0 for d, k in zip(dilation, kernel, strict=True)]
        before, after = tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
        if padding == "same" and max(stride) != 1:
            raise NIRFormatError(f"node {name!r}: padding 'same' needs stride 1, got {stride}")
    else:
        before = after = _ints(padding, name, "padding", n)
    win = Window(kernel, stride, dilation, before, after, groups)
    if min(stride) < 1 or min(dilation) < 1 or min(before) < 0 or groups < 1 or min(win.out_size(size)) < 1:
        raise NIRFormatError(f"node {name!r}: kernel {kernel}, stride {stride}, dilation {dilation}, padding "
                             f"{before}/{after} do not fit input {size}")
    return win


def _out_shape(name: str, node: nir.NIRNode, shape: Shape) -> Shape:
    """Per-sample output shape of ``node`` for per-sample input ``shape``; checks the node's fields."""
    if isinstance(node, (nir.Input, nir.Output)):  # a subgraph's Input receives, an Output passes on
        port = "input" if isinstance(node, nir.Input) else "output"
        declared = _declared(getattr(node, f"{port}_type").get(port), name, f"{port} shape")
        if declared is not None and math.prod(declared) != math.prod(shape):
            raise NIRFormatError(f"{type(node).__name__} {name!r} declares shape {declared} but receives {shape}")
        return shape
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = _array(node, name, "weight")
        if w.ndim != 2:
            raise NIRFormatError(f"node {name!r}: weight must be 2-D [out, in], got shape {w.shape}")
        if not shape or shape[-1] != w.shape[1]:
            transposed = bool(shape) and shape[-1] == w.shape[0]
            hint = ("; it looks stored transposed, as (in, out) (Spyx's Haiku versions write Linear weights so): "
                    "NIR's Affine/Linear weight is (out, in), transpose it") if transposed else ""
            raise NIRFormatError(f"node {name!r}: weight {w.shape} expects {w.shape[1]} inputs, gets shape {shape}"
                                 + hint)
        if isinstance(node, nir.Affine) and _array(node, name, "bias").size not in (1, w.shape[0]):
            raise NIRFormatError(f"node {name!r}: bias has {node.bias.size} values, weight has {w.shape[0]} rows")
        return (*shape[:-1], w.shape[0])
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        n = 1 if isinstance(node, nir.Conv1d) else 2
        w = _array(node, name, "weight")
        groups = _ints(node.groups, name, "groups", 1)[0]
        if w.ndim != n + 2 or len(shape) != n + 1 or groups < 1 or shape[0] != w.shape[1] * groups \
                or w.shape[0] % groups:
            raise NIRFormatError(f"node {name!r}: weight {w.shape} (groups={groups}) does not fit input {shape}")
        declared = _declared(node.input_shape, name, "input_shape")
        if declared is not None and declared != shape[1:]:
            raise NIRFormatError(f"node {name!r}: input_shape {declared} but receives {shape[1:]}")
        if _array(node, name, "bias").size not in (1, w.shape[0]):
            raise NIRFormatError(f"node {name!r}: bias has {np.size(node.bias)} values for {w.shape[0]} channels")
        return (w.shape[0], *window(name, node, shape[1:]).out_size(shape[1:]))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if len(shape) != 3:
            raise NIRFormatError(f"node {name!r}: 2-D pooling needs a (C, H, W) input, gets {shape}")
        return (shape[0], *window(name, node, shape[1:]).out_size(shape[1:]))
    if isinstance(node, nir.Flatten):
        declared = _declared(node.input_type.get("input"), name, "input_type")
        if declared is not None and math.prod(declared) != math.prod(shape):
            raise NIRFormatError(f"Flatten {name!r} declares input {declared} but receives {shape}")
        start, end = _ints(node.start_dim, name, "start_dim", 1)[0], _ints(node.end_dim, name, "end_dim", 1)[0]
        nd = len(shape)
        s, e = start % nd if -nd <= start < nd else None, end % nd if -nd <= end < nd else None
        if s is None or e is None or s > e:
            raise NIRFormatError(f"Flatten {name!r}: dims {start}..{end} do not fit the unbatched input {shape}")
        return (*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])
    fields = {nir.Scale: ("scale",), nir.Delay: ("delay",), nir.Threshold: ("threshold",),
              nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"), nir.IF: ("r", "v_threshold", "v_reset"),
              nir.LI: ("tau", "r", "v_leak"), nir.I: ("r",),
              nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
              nir.CubaLI: ("tau_syn", "tau_mem", "r", "v_leak", "w_in")}[type(node)]
    for field in fields:
        arr = _array(node, name, field)
        try:
            ok = np.broadcast_shapes(arr.shape, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise NIRFormatError(f"node {name!r}: {field} has shape {arr.shape}, which does not broadcast to the "
                                 f"node's input shape {shape}")
        if field.startswith("tau") and np.any(arr <= 0):
            raise NIRFormatError(f"node {name!r}: {field} must be > 0")
        if field == "delay" and np.any(arr < 0):
            raise NIRFormatError(f"node {name!r}: delay must be >= 0")
    return shape


MAX_NODE_VALUES = 2**24  # values per sample of one node: 16 Loihi 2 chips' neurons (2^20 each); bigger is refused


def _bounded(where: str, name: str, shape: Shape) -> Shape:
    """``shape``, or ``NIRFormatError`` when it holds more than ``MAX_NODE_VALUES`` (before anything is allocated)."""
    if math.prod(shape) > MAX_NODE_VALUES:
        raise NIRFormatError(f"{where}: node {name!r} has shape {shape} = {math.prod(shape)} values per sample, more "
                             f"than the {MAX_NODE_VALUES} snnchip runs")
    return shape


def _refuse_algebraic_loops(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]], where: str) -> None:
    """Every cycle must pass a neuron or a Delay, whose previous output closes it; a cycle of stateless nodes has no
    value at any step."""
    stateless = {n for n, v in nodes.items() if not isinstance(v, (*NEURON_TYPES, nir.Delay, nir.Input))}
    succ: dict[str, list[str]] = {n: [] for n in stateless}
    for a, b in edges:
        if a in stateless and b in stateless:
            succ[a].append(b)
    state: dict[str, int] = {}
    for root in stateless:
        stack = [(root, iter(succ[root]))]
        if root in state:
            continue
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                loop = [n for n, _ in stack][[n for n, _ in stack].index(nxt):]
                raise NIRFormatError(f"{where}: the cycle {' -> '.join([*loop, nxt])} passes no neuron or Delay: "
                                     "an algebraic loop with no value at any step")
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))


def check_graph(graph: nir.NIRGraph, where: str = "graph") -> CheckedGraph:
    """Flatten, order and shape-check ``graph``; raise ``NIRFormatError``/``UnsupportedNodeError`` naming the node."""
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFormatError(f"{where}: expected a nir.NIRGraph, got {type(graph).__name__}")
    nodes, edges = _flatten(graph)
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if not inputs or not outputs:
        raise NIRFormatError(f"{where}: the graph needs at least one Input and one Output node "
                             f"(has {len(inputs)} and {len(outputs)})")
    order, back = _order(nodes, edges)
    shapes: dict[str, Shape] = {}
    incoming: dict[str, list[tuple[str, bool]]] = {n: [] for n in nodes}
    for a, b in edges:
        incoming[b].append((a, (a, b) in back))
    for name in order:
        node = nodes[name]
        if isinstance(node, nir.Input) and not incoming[name]:
            shape = _declared(node.input_type.get("input"), name, "input shape")
            if shape is None:
                raise NIRFormatError(f"{where}: Input {name!r} has no shape")
            shapes[name] = _bounded(where, name, shape)
            continue
        fwd = {shapes[a] for a, is_back in incoming[name] if not is_back}
        if not fwd:
            raise NIRFormatError(f"{where}: node {name!r} is fed only by recurrent edges; give it a forward input")
        if len(fwd) != 1:
            raise NIRFormatError(f"{where}: node {name!r} receives inputs of different shapes {sorted(fwd)}")
        try:
            shapes[name] = _bounded(where, name, _out_shape(name, node, fwd.pop()))
        except (NIRFormatError, UnsupportedNodeError):
            raise
        except Exception as exc:  # a field of an unexpected kind (string where a number belongs, ...)
            raise NIRFormatError(f"{where}: node {name!r} ({type(node).__name__}) is malformed: {exc}") from None
    _refuse_algebraic_loops(nodes, edges, where)
    for a, b in back:
        target_in = {shapes[p] for p, is_back in incoming[b] if not is_back}
        if target_in and shapes[a] not in target_in:
            raise NIRFormatError(f"{where}: recurrent edge {a!r} -> {b!r} delivers shape {shapes[a]} but {b!r} "
                                 f"takes {target_in.pop()}")
    for name, node in nodes.items():
        snnchip_semantics(node, name)
    return CheckedGraph(graph, nodes, edges, order, back, shapes, inputs, outputs)
