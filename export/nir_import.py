"""Read and check NIR graphs: ours (docs/nir-schema.md) and foreign ones (snnTorch, Norse, ...).

``read_graph`` wraps ``nir.read``; ``check_graph`` flattens nested subgraphs, orders the nodes for
discrete-time execution and infers every node's per-sample (unbatched) output shape. Anything
unreadable, truncated or inconsistent raises ``NIRFormatError``; a node type or semantics we do
not know raises ``UnsupportedNodeError``. Both name the node and never leak a raw traceback.

Cycles: nodes are ordered by a depth-first search from the Input nodes; an edge that closes a cycle
(it points at a node still on the search stack) is a *back edge* and delivers its source's value of
the previous step (zeros at t = 1). This is the one-step-delay convention of our feedback edges and
of snnTorch/Norse recurrent subgraphs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np

from snnchip.errors import NIRFormatError, UnsupportedNodeError
from snnchip.spec import Interpretation

SCHEMA_VERSION = 1
NEURON_TYPES = (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI)
SPIKING_TYPES = (nir.LIF, nir.IF, nir.CubaLIF, nir.Threshold)
KNOWN_TYPES = {cls.__name__: cls for cls in (
    nir.Input, nir.Output, nir.NIRGraph, nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d,
    nir.SumPool2d, nir.AvgPool2d, nir.Flatten, nir.Delay, nir.Threshold, *NEURON_TYPES)}
# How each node type stores its defining fields in the HDF5 file (besides "type" and "metadata").
_STORED_AS = {"Input": ("shape",), "Output": ("shape",), "NIRGraph": ("nodes", "edges"), "Flatten": ()}
Shape = tuple[int, ...]
PARSE_TIMEOUT_S = 2.0


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


# ------------------------------------------------------------------------------------------ reading
def _required_fields(type_name: str) -> tuple[str, ...]:
    if type_name in _STORED_AS:
        return _STORED_AS[type_name]
    return tuple(f.name for f in dataclasses.fields(KNOWN_TYPES[type_name])
                 if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _prescan(group: Any, where: str, path: Path) -> None:
    """Check node types and required fields in the HDF5 tree before ``nir.read`` builds objects."""
    if "type" not in group:
        raise NIRFormatError(f"{path}: node {where!r} has no 'type' field; the file is not a NIR graph "
                             "or is truncated")
    raw = group["type"][()]
    type_name = raw.decode("utf8", "replace") if isinstance(raw, bytes) else str(raw)
    if type_name not in KNOWN_TYPES:
        raise UnsupportedNodeError(f"{path}: node {where!r} has type {type_name!r}, which snnchip cannot read; "
                                   f"supported: {', '.join(sorted(KNOWN_TYPES))}")
    missing = [f for f in _required_fields(type_name) if f not in group]
    if missing:
        raise NIRFormatError(f"{path}: node {where!r} ({type_name}) lacks field(s) {missing}; "
                             "re-export the graph with a complete NIR writer")
    if type_name == "NIRGraph":
        for name in group["nodes"]:
            _prescan(group["nodes"][name], f"{where}.{name}" if where else name, path)


def _parse_in_child(path: Path) -> None:
    """Read every dataset in a forked child first: on some corrupt heaps HDF5 loops forever in C code.

    A child that hangs past ``PARSE_TIMEOUT_S`` (+1 s per 10 MB) is killed and the file reported corrupt;
    ordinary read errors are left to the in-process read, which names them.
    """
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # child: touch every dataset, report only success or failure
        code = 1
        try:
            import h5py

            def touch(_name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    obj[()]

            with h5py.File(path, "r") as f:
                f.visititems(touch)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + PARSE_TIMEOUT_S + path.stat().st_size / 1e7
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise NIRFormatError(f"{path}: the HDF5 library hangs reading this file; it is corrupt, re-export it")
        time.sleep(0.002)


def read_graph(path: str | os.PathLike) -> nir.NIRGraph:
    """Read a ``.nir`` file with ``nir.read`` and check it; every failure is a named snnchip error."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NIRFormatError(f"{path}: no such NIR file")
    _parse_in_child(path)
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NIRFormatError(f"{path}: HDF5 file without a NIR 'node' group; not a NIR graph")
            _prescan(f["node"], "", path)
        graph = nir.read(path, type_check=False)
    except (NIRFormatError, UnsupportedNodeError):
        raise
    except Exception as exc:  # h5py, nir's asserts, numpy: any of them means a corrupt file
        raise NIRFormatError(f"{path}: corrupt or truncated NIR file ({type(exc).__name__}: {exc}); "
                             "re-export it") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFormatError(f"{path}: the top-level node is a {type(graph).__name__}, not a NIRGraph")
    check_graph(graph, where=str(path))
    return graph


# ----------------------------------------------------------------------------------------- metadata
def snnchip_semantics(node: nir.NIRNode, name: str) -> dict[str, Any] | None:
    """``node.metadata['snnchip']`` as plain Python values, or None for a foreign node.

    Raises ``UnsupportedNodeError`` for an unknown schema version and ``NIRFormatError`` for missing keys.
    """
    meta = node.metadata.get("snnchip") if isinstance(node.metadata, dict) else None
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise NIRFormatError(f"node {name!r}: metadata['snnchip'] must be a dict, got {type(meta).__name__}")
    meta = {k: _plain(v) for k, v in meta.items()}
    if meta.get("version") != SCHEMA_VERSION:
        raise UnsupportedNodeError(f"node {name!r}: snnchip metadata version {meta.get('version')!r}; this "
                                   f"snnchip reads version {SCHEMA_VERSION} (docs/nir-schema.md); upgrade snnchip")
    if isinstance(node, NEURON_TYPES):
        missing = [k for k in ("layer", "kind", "lam", "theta", "reset", "spike", "discretization", "dt")
                   if k not in meta]
        if missing:
            raise NIRFormatError(f"node {name!r}: snnchip metadata lacks {missing} (docs/nir-schema.md)")
        for key, options in (("reset", ("subtract", "zero")), ("spike", ("ge", "gt"))):
            if meta[key] not in options:
                raise UnsupportedNodeError(f"node {name!r}: snnchip metadata {key}={meta[key]!r}; known: {options}")
        if meta["kind"] == "empf":
            return _empf_semantics(node, name, meta)
        numbers = ("lam", "theta", "dt") + (("lam_syn", "input_scale") if meta["kind"] == "srm" else ())
        for key in numbers:
            if not isinstance(meta.get(key), (int, float)) or not math.isfinite(meta[key]):
                raise NIRFormatError(f"node {name!r}: snnchip metadata {key}={meta.get(key)!r} is not a finite number")
        if meta["kind"] == "srm" and (meta.get("reset_current") is not True or meta["reset"] != "zero"):
            raise UnsupportedNodeError(f"node {name!r}: an srm node resets current and voltage to zero "
                                       f"(reset='zero', reset_current=True), got reset={meta['reset']!r}, "
                                       f"reset_current={meta.get('reset_current')!r}")
    return meta


EMPF_ARRAYS = ("lam", "theta", "input_scale", "reset_offset")
EMPF_KEYS = frozenset(("version", "layer", "kind", "T", "graded", "reset", "spike", "discretization", "dt",
                       *EMPF_ARRAYS))


def _empf_semantics(node: nir.NIRNode, name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Validate an EM-PF node (docs/nir-schema.md, "EM-PF neurons"): exactly the known keys, the four per-step
    arrays of shape [T, C] (C = the node's first dimension), finite, graded firing, subtractive reset, Euler, dt = 1.
    A reader that does not implement this recursion must refuse the node rather than run its NIR fields."""
    unknown = sorted(set(meta) - EMPF_KEYS)
    missing = sorted(EMPF_KEYS - set(meta))
    if unknown or missing:
        raise UnsupportedNodeError(f"node {name!r}: snnchip empf metadata has unknown keys {unknown} / lacks "
                                   f"{missing}; an empf node has exactly {sorted(EMPF_KEYS)} (docs/nir-schema.md)")
    T = meta["T"]
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise NIRFormatError(f"node {name!r}: snnchip empf metadata T={T!r} is not a positive int")
    if meta["graded"] is not True or meta["reset"] != "subtract" or meta["spike"] != "ge":
        raise UnsupportedNodeError(f"node {name!r}: an empf node fires graded spikes s = ReLU(m − θ̂[t]) with "
                                   f"v = m − s + r[t] (graded=True, reset='subtract', spike='ge'); got "
                                   f"graded={meta['graded']!r}, reset={meta['reset']!r}, spike={meta['spike']!r}")
    shape = np.shape(getattr(node, "v_threshold", ()))
    if not shape:
        raise UnsupportedNodeError(f"node {name!r}: an empf node is a {type(node).__name__}; schema v1 writes it "
                                   "as nir.LIF or nir.IF with per-element fields")
    for key in EMPF_ARRAYS:
        try:
            arr = np.asarray(meta[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise NIRFormatError(f"node {name!r}: snnchip empf metadata {key} is not a numeric array") from None
        if arr.shape != (T, shape[0]):
            raise NIRFormatError(f"node {name!r}: snnchip empf metadata {key} has shape {arr.shape}; it must be "
                                 f"[T, C] = {(T, shape[0])} (per step, per channel)")
        if not np.all(np.isfinite(arr)):
            raise NIRFormatError(f"node {name!r}: snnchip empf metadata {key} has non-finite values")
    if not isinstance(meta["dt"], (int, float)) or not math.isfinite(meta["dt"]):
        raise NIRFormatError(f"node {name!r}: snnchip metadata dt={meta['dt']!r} is not a finite number")
    return meta


def recorded_interpretation(graph: nir.NIRGraph) -> Interpretation | None:
    """The interpretation ``model_graph`` recorded in ``metadata["snnchip_interpretation"]`` of a foreign graph."""
    recorded = graph.metadata.get("snnchip_interpretation") if isinstance(graph.metadata, dict) else None
    if recorded is None:
        return None
    try:
        return Interpretation(**{k: _plain(v) for k, v in dict(recorded).items()})
    except (TypeError, ValueError) as exc:
        raise NIRFormatError(f"graph metadata snnchip_interpretation is invalid: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# ----------------------------------------------------------------------------------------- checking
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


def _window(node, name: str, shape: Shape, kernel: Shape, dilation: Shape, n: int) -> Shape:
    stride = _ints(node.stride, name, "stride", n)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if isinstance(padding, str) and padding == "same":
        return shape
    pad = _ints(0 if isinstance(padding, str) and padding == "valid" else padding, name, "padding", n)
    out = tuple((shape[i] + 2 * pad[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(n))
    if min(stride) < 1 or min(pad) < 0 or min(out) < 1:
        raise NIRFormatError(f"node {name!r}: kernel {kernel}, stride {stride}, padding {pad} do not fit input "
                             f"{shape}")
    return out


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
            raise NIRFormatError(f"node {name!r}: weight {w.shape} expects {w.shape[1]} inputs, gets shape {shape}")
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
        return (w.shape[0], *_window(node, name, shape[1:], w.shape[2:], _ints(node.dilation, name, "dilation", n), n))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        if len(shape) != 3:
            raise NIRFormatError(f"node {name!r}: 2-D pooling needs a (C, H, W) input, gets {shape}")
        kernel = _ints(node.kernel_size, name, "kernel_size", 2)
        return (shape[0], *_window(node, name, shape[1:], kernel, (1, 1), 2))
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
    for a, b in back:
        target_in = {shapes[p] for p, is_back in incoming[b] if not is_back}
        if target_in and shapes[a] not in target_in:
            raise NIRFormatError(f"{where}: recurrent edge {a!r} -> {b!r} delivers shape {shapes[a]} but {b!r} "
                                 f"takes {target_in.pop()}")
    for name, node in nodes.items():
        snnchip_semantics(node, name)
    return CheckedGraph(graph, nodes, edges, order, back, shapes, inputs, outputs)
