"""Lower a NIR graph (docs/nir-schema.md, or a foreign one) to chip *stages*, in float.

A stage is one neuron population and the linear map that feeds it. Every chain of linear nodes
between two neuron nodes (Affine/Linear, Conv2d, AvgPool2d/SumPool2d, Flatten) is affine,
``I = A·x + b``, so it is composed into one matrix ``A`` [n_out, n_in] and bias ``b`` [n_out]
(x flattened in C-order). Convolutions and pooling are built as sparse (CSR) operators from their window
taps and multiplied, so a dense matrix of a conv layer never exists; ``A`` is stored CSR (a Lava ``Sparse``)
when fewer than ``SPARSE_MAX_DENSITY`` of its entries are non-zero, else dense (a Lava ``Dense``). The neuron's
discrete-time equation (DESIGN.md, "Neuron semantics") is

    u[t] = λ·v[t-1] + g·(A·x[t] + b) + β;  s[t] = u[t] ≥ θ (ge) or u[t] > θ (gt);
    v[t] = u[t] − θ·s[t] (subtract) or u[t]·(1 − s[t]) (zero);  readout: v[t] = v[t-1] + g·(A·x[t] + b)

where the per-neuron input gain g and leak offset β come from NIR's continuous-time parameters and
are folded into ``A`` and ``b`` here (our own graphs have g = 1, β = 0). Our graphs carry λ, θ,
reset and compare in ``metadata["snnchip"]``; a foreign graph is read with an explicit
``Interpretation``. Both are read by the executor's readers, not re-derived here: ``check_graph``
(flat nodes, order, back edges, shapes) and ``compile_neuron`` (u = a·v + b·x + c, so λ = a,
g = b, β = c). Feedback edges and branches are refused by name. snnchip's EM-PF (kind ``empf``) is a stage of
kind ``empf`` carrying its per-step tables [T, n] (λ̂, a, θ̂, r; A and b unscaled). snnchip's SRM
(kind ``srm`` on a CubaLIF: i = λ_syn·i + g·x, v = λ·v + i, both reset on a spike) is a stage of kind
``srm`` with its input scale g folded into ``A`` and ``b`` and reset ``zero_both``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import nir
import numpy as np
import scipy.sparse as sp
import torch

from snnchip.errors import UnsupportedNodeError
from snnchip.export.nir_exec import compile_neuron
from snnchip.export.nir_import import check_graph, recorded_interpretation, snnchip_semantics
from snnchip.spec import Interpretation, check_T

LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten)
NEURON_TYPES = (nir.LIF, nir.IF, nir.I, nir.CubaLIF)
SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten",
             "LIF/IF (snnchip kind 'lif', or foreign with reset to zero)", "CubaLIF (snnchip kind 'srm')",
             "LIF/IF (snnchip kind 'empf')", "I (readout integrator)")
MAX_SYNAPSES = 2**28  # entries of one stage's matrix (a Loihi 2 chip holds ~2^27 synapses); bigger is refused
SPARSE_MAX_DENSITY = 0.25  # a composed map with fewer non-zero entries than this fraction is stored CSR (Lava Sparse)
Weight = np.ndarray | sp.csr_matrix  # a stage's [n_out, n_in] matrix: dense, or CSR when sparse


class StageTraits:
    """What a stage's ``kind`` and ``weight`` say, for the float ``Stage`` and the integer ``QStage`` alike."""

    @property
    def spiking(self) -> bool:
        return self.kind in ("lif", "srm", "empf")

    @property
    def graded(self) -> bool:
        return self.kind == "empf"

    @property
    def synapse(self) -> str:
        """"sparse" (CSR weights, a Lava Sparse) or "dense" (a Lava Dense)."""
        return "sparse" if sp.issparse(self.weight) else "dense"


@dataclass(frozen=True)
class Stage(StageTraits):
    """One neuron population fed by a composed affine map (float, real units)."""

    name: str
    kind: str  # "lif" | "srm" | "readout"
    weight: Weight  # [n_out, n_in], float64: dense, or CSR (sp.csr_matrix) when sparse (``storage``)
    bias: np.ndarray  # [n_out], float64
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    lam: float = 1.0
    theta: float = 1.0
    reset: str = "subtract"
    spike: str = "ge"
    lam_syn: float = 0.0  # srm: the current's decay λ_syn (its input scale is folded into weight and bias)
    tables: dict[str, np.ndarray] | None = None  # empf: lam, input_scale, theta, reset_offset, each [T, n_out]


@dataclass(frozen=True)
class LoweredNet:
    """A feed-forward chain of stages; the first one reads the (real-valued) input."""

    input_shape: tuple[int, ...]
    stages: tuple[Stage, ...]
    T: int | None
    encoding: str

    @property
    def has_readout(self) -> bool:
        return self.stages[-1].kind == "readout"


def _unsupported(name: str, node: object, why: str) -> UnsupportedNodeError:
    return UnsupportedNodeError(
        f"node {name!r} ({type(node).__name__}) cannot be deployed to Loihi: {why}; "
        f"supported: {', '.join(SUPPORTED)}")


def _pair(v: object) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v, dtype=np.int64))
    return (int(a[0]), int(a[-1]))


def _axis_taps(n_in: int, n_out: int, k: int, stride: int, pad: int) -> tuple[np.ndarray, ...]:
    """Valid (output, input, tap) index triples of a sliding window on one axis: i = o·stride − pad + tap."""
    o, tap = np.meshgrid(np.arange(n_out), np.arange(k), indexing="ij")
    i = o * stride - pad + tap
    ok = (i >= 0) & (i < n_in)
    return o[ok], i[ok], tap[ok]


def _window_taps(in_hw: tuple[int, ...], out_hw: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (output position, input position, kernel tap) of every tap of a 2-D window that lands inside the input
    (zero padding contributes nothing)."""
    (oh, ih, th), (ow, iw, tw) = (_axis_taps(in_hw[d], out_hw[d], kernel[d], stride[d], pad[d]) for d in (0, 1))
    return ((oh[:, None] * out_hw[1] + ow).ravel(), (ih[:, None] * in_hw[1] + iw).ravel(),
            (th[:, None] * kernel[1] + tw).ravel())


def _padding(name: str, node: object, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Zero padding before the input on each axis (PyTorch's 'same' pads (k − 1)//2 before, the rest after)."""
    pad = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    if pad == "valid":
        return (0, 0)
    if pad == "same":
        if stride != (1, 1):
            raise _unsupported(name, node, "padding 'same' needs stride 1")
        return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return _pair(pad)


def _operator(name: str, node: object, shape: tuple[int, ...], out_shape: tuple[int, ...]
              ) -> tuple[Weight | None, np.ndarray | None]:
    """One linear node as (M, c) with y = M·x + c on C-order flattened vectors (None: identity, no bias).

    Affine/Linear give their dense W; Conv2d y[o, p] = Σ_{i, tap} W[o, i, tap]·x[i, p·s − pad + tap] + b[o] and
    2-D pooling y[c, p] = g·Σ_tap x[c, p·s − pad + tap] (g = 1 sum, 1/(k_h·k_w) average, zero padding counted)
    give CSR matrices built from their window taps, so a dense [n_out, n_in] matrix never exists.
    """
    if isinstance(node, nir.Flatten):
        return None, None
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.shape[1] != math.prod(shape):
            raise _unsupported(name, node, f"weight {w.shape} does not take an input of shape {shape}")
        bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if isinstance(node, nir.Affine) else None
        return w, None if bias is None else np.broadcast_to(bias, (w.shape[0],))
    if len(shape) != 3:
        raise _unsupported(name, node, f"needs a (C, H, W) input, got shape {shape}")
    n_in, n_out = math.prod(shape[1:]), math.prod(out_shape[1:])
    taps = math.prod(np.shape(node.weight)[:2]) * math.prod(np.shape(node.weight)[2:]) \
        if isinstance(node, nir.Conv2d) else shape[0] * math.prod(_pair(node.kernel_size))
    _bounded(name, node, taps * n_out)
    if isinstance(node, nir.Conv2d):
        if node.groups != 1 or _pair(node.dilation) != (1, 1):
            raise _unsupported(name, node, "only groups=1, dilation=1 convolutions are supported")
        w = np.asarray(node.weight, dtype=np.float64)
        kernel, stride = (w.shape[2], w.shape[3]), _pair(node.stride)
        out, inp, tap = _window_taps(shape[1:], out_shape[1:], kernel, stride, _padding(name, node, kernel, stride))
        co, ci = np.arange(w.shape[0])[:, None, None], np.arange(w.shape[1])[None, :, None]
        rows, cols = np.broadcast_arrays(co * n_out + out, ci * n_in + inp)
        vals = w.reshape(w.shape[0], w.shape[1], -1)[:, :, tap]
        m = sp.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(w.shape[0] * n_out, shape[0] * n_in))
        bias = None if node.bias is None else np.repeat(
            np.broadcast_to(np.asarray(node.bias, np.float64).reshape(-1), (w.shape[0],)), n_out)
        return m, bias
    kernel, stride, pad = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
    out, inp, _ = _window_taps(shape[1:], out_shape[1:], kernel, stride, pad)
    c = np.arange(shape[0])[:, None]
    gain = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (kernel[0] * kernel[1])
    rows, cols = np.broadcast_arrays(c * n_out + out, c * n_in + inp)
    return sp.csr_matrix((np.full(rows.size, gain), (rows.ravel(), cols.ravel())),
                         shape=(shape[0] * n_out, shape[0] * n_in)), None


def _bounded(name: str, node: object, entries: int) -> None:
    """Refuse, before allocating, a matrix of more than ``MAX_SYNAPSES`` entries."""
    if entries > MAX_SYNAPSES:
        raise _unsupported(name, node, f"its matrix would hold {entries} entries, more than the {MAX_SYNAPSES} "
                                       "snnchip builds")


def _product(m: Weight, a: Weight) -> Weight:
    """m·a; CSR only when both factors are (a dense factor makes the product dense)."""
    if sp.issparse(m) and sp.issparse(a):
        return sp.csr_matrix(m @ a)
    if sp.issparse(a):
        return np.asarray((a.T @ m.T).T)
    return np.asarray(m @ a)


def storage(a: Weight) -> Weight:
    """The composed matrix as CSR when fewer than ``SPARSE_MAX_DENSITY`` of its entries are non-zero, else dense."""
    nnz = a.count_nonzero() if sp.issparse(a) else int(np.count_nonzero(a))
    if nnz < SPARSE_MAX_DENSITY * math.prod(a.shape):
        a = sp.csr_matrix(a)
        a.eliminate_zeros()
        return a
    return a.toarray() if sp.issparse(a) else a


def scale_rows(a: Weight, g: np.ndarray) -> Weight:
    """diag(g)·a, one product per entry (same values for dense and CSR)."""
    g = np.broadcast_to(np.asarray(g, dtype=np.float64).reshape(-1), (a.shape[0],))
    if not sp.issparse(a):
        return a * g[:, None]
    out = a.copy()
    out.data = out.data * np.repeat(g, np.diff(out.indptr))
    return out


def _compose(chain: list[tuple[str, object]], in_shape: tuple[int, ...], shapes: dict[str, tuple[int, ...]]
             ) -> tuple[Weight, np.ndarray, tuple[int, ...]]:
    """The affine map of a chain of linear nodes as (A [n_out, n_in], b [n_out], out_shape): A = M_k·…·M_1,
    b = M_k(…(M_2·c_1 + c_2)…) + c_k, kept CSR while every factor is (``storage`` then picks the format)."""
    a, b, shape = None, np.zeros(math.prod(in_shape)), in_shape
    for name, node in chain:
        m, c = _operator(name, node, shape, shapes[name])
        if m is not None and a is not None and not (sp.issparse(m) and sp.issparse(a)):
            _bounded(name, node, m.shape[0] * a.shape[1])  # the dense product
        if m is not None:
            a = m if a is None else _product(m, a)
            b = np.asarray(m @ b).reshape(-1)
        if c is not None:
            b = b + c
        shape = shapes[name]
    return storage(sp.identity(b.size, format="csr") if a is None else a), b, shape


def _uniform(name: str, node: object, value: object, what: str) -> float:
    a = np.asarray(value, dtype=np.float64)
    if a.size == 0 or not np.all(a == a.reshape(-1)[0]):
        raise _unsupported(name, node, f"{what} must be the same for every neuron of the layer (Lava's LIF "
                                       f"has one per process)")
    return float(a.reshape(-1)[0])


def _check_kind(name: str, node: object) -> None:
    """Refuse an snnchip neuron kind the chip cannot run (before its metadata is validated in detail)."""
    meta = (getattr(node, "metadata", None) or {}).get("snnchip")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind is not None and kind not in ("lif", "readout", "srm", "empf"):
        raise _unsupported(name, node, f"snnchip neuron kind {kind!r} is not supported")
    if kind is None and isinstance(node, nir.CubaLIF):
        raise _unsupported(name, node, "a foreign CubaLIF keeps its current through a spike; only snnchip's srm "
                                       "kind (both traces reset to zero) runs on the chip")


def _neuron(name: str, node: object, interp: Interpretation) -> tuple[dict, np.ndarray, np.ndarray]:
    """Neuron parameters plus the per-neuron input gain g and leak offset β folded into the stage.

    The semantics come from the one reader of NIR neurons: ``snnchip_semantics`` for our kind and
    ``compile_neuron`` for the discrete parameters u = a·v + b·x + c (a = λ, b = g, c = β).
    """
    _check_kind(name, node)
    meta = snnchip_semantics(node, name)
    p = compile_neuron(name, node, interp, torch.float64)
    layer = str(meta["layer"]) if meta is not None else name.removesuffix("_neuron")
    if p.graded:  # empf: per-step tables [T, C(, 1, 1)] broadcast over the node's shape -> [T, n] (C order)
        shape = np.shape(node.v_threshold)
        tables = {key: np.broadcast_to(val.numpy(), (p.steps, *shape)).reshape(p.steps, -1).astype(np.float64)
                  for key, val in (("lam", p.a), ("input_scale", p.b), ("theta", p.theta), ("reset_offset", p.offset))}
        return dict(name=layer, kind="empf", tables=tables), np.ones(1), np.zeros(1)
    gain = p.b.numpy().reshape(-1)
    offset = p.c.numpy().reshape(-1)
    if p.theta is None:
        return dict(name=layer, kind="readout"), gain, np.zeros(1)
    lam = _uniform(name, node, p.a.numpy(), "the leak λ")
    extra = {}
    if p.syn is not None:  # srm: i = λ_syn·i + g_syn·x, v = λ·v + i, both reset to 0 on a spike
        extra = dict(kind="srm", lam_syn=_uniform(name, node, p.syn[0].numpy(), "the current decay λ_syn"))
        gain = gain * p.syn[1].numpy().reshape(-1)
        if not 0.0 <= extra["lam_syn"] <= 1.0:
            raise _unsupported(name, node, f"current decay λ_syn = {extra['lam_syn']} (needs 0 ≤ λ_syn ≤ 1)")
    theta = _uniform(name, node, p.theta.numpy(), "the threshold")
    reset = p.reset
    if reset == "v_reset":
        if np.any(np.asarray(p.v_reset, np.float64) != 0):
            raise _unsupported(name, node, "reset to a non-zero v_reset (Loihi resets to 0 or subtracts θ)")
        reset = "zero"
    if not 0.0 <= lam <= 1.0 or theta <= 0:
        raise _unsupported(name, node, f"leak λ = {lam} (needs 0 ≤ λ ≤ 1) or threshold θ = {theta} (needs > 0)")
    params = dict(name=layer, kind="lif", lam=lam, theta=theta, reset=reset, spike=p.compare)
    if extra:  # "zero_both": u and v reset (no NIR/netx CUBA neuron does this, so netx's reset check refuses it)
        params.update(extra, reset="zero_both")
    return params, gain, offset


def lower(graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None) -> LoweredNet:
    """Lower ``graph`` to a chain of ``Stage``s; ``T`` overrides the graph's ``metadata['snnchip']['T']``.

    T (either) must be an integer in 1..``T_MAX``: anything else is refused before any work.
    Foreign neurons are read with ``interpretation``, else the one recorded in the graph
    (``metadata['snnchip_interpretation']``), else NIR's defaults (Euler, dt = 1, reset to v_reset, >).
    The graph is read by ``check_graph`` (flat nodes, run order, back edges, shapes).
    """
    meta = (getattr(graph, "metadata", None) or {}).get("snnchip", {})
    meta = meta if isinstance(meta, dict) else {}
    if T is not None:
        steps = check_T(T)
    else:
        steps = check_T(meta["T"], "the graph's metadata['snnchip']['T']") if "T" in meta else None
    interp = interpretation or recorded_interpretation(graph) or Interpretation()
    for name, node in graph.nodes.items():
        _check_kind(name, node)
    checked = check_graph(graph)
    nodes = checked.nodes
    if len(checked.inputs) != 1:
        raise UnsupportedNodeError(f"the graph needs exactly one Input node, found {checked.inputs}")
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in checked.edges:
        succ[src].append(dst)
    for n in checked.order:
        preds = checked.predecessors(n)
        if len(preds) > 1 or any(back for _, back in preds):
            raise _unsupported(n, nodes[n], f"{len(preds)} incoming edges (feedback and merges are not supported "
                                            "on the chip yet)")
    cur = checked.inputs[0]
    in_shape = checked.shapes[cur]
    stages: list[Stage] = []
    chain: list[tuple[str, object]] = []
    shape = in_shape
    while True:
        nxt = succ[cur]
        if len(nxt) != 1:
            raise _unsupported(cur, nodes[cur], f"{len(nxt)} outgoing edges (the chip graph must be a chain "
                                                "from Input to Output)")
        cur = nxt[0]
        node = nodes[cur]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, LINEAR_TYPES):
            chain.append((cur, node))
            continue
        if not isinstance(node, NEURON_TYPES):
            raise _unsupported(cur, node, "unknown node type")
        if not chain:
            raise _unsupported(cur, node, "a neuron must be fed by at least one linear node")
        if stages and not stages[-1].spiking:
            raise _unsupported(cur, node, "nothing may follow the readout integrator")
        params, gain, offset = _neuron(cur, node, interp)
        a, b, out_shape = _compose(chain, shape, checked.shapes)
        if math.prod(out_shape) != a.shape[0]:
            raise _unsupported(cur, node, f"input of shape {out_shape} does not match the neuron")
        stages.append(Stage(weight=scale_rows(a, gain), bias=b * gain + offset, in_shape=shape,
                            out_shape=out_shape, **params))
        chain, shape = [], out_shape
    if chain or not stages:
        raise UnsupportedNodeError("the graph must end in a neuron (LIF/IF or the readout I) before its Output; "
                                   f"found linear nodes {[n for n, _ in chain]} after the last neuron")
    for i, st in enumerate(stages):
        if st.tables is not None and steps is not None:
            if steps > st.tables["lam"].shape[0]:
                raise UnsupportedNodeError(f"layer {st.name!r}: its EM-PF tables hold {st.tables['lam'].shape[0]} "
                                           f"steps; cannot run T = {steps}")
            stages[i] = replace(st, tables={k: v[:steps] for k, v in st.tables.items()})
    return LoweredNet(in_shape, tuple(stages), steps,
                      str(meta.get("encoding", "direct")))
