"""Lower a NIR graph (docs/nir-schema.md, or a foreign one) to chip *stages*, in float.

A stage is one neuron population and the linear map that feeds it. Every chain of linear nodes
between two neuron nodes (Affine/Linear, Conv2d, AvgPool2d/SumPool2d, Flatten) is affine,
``I = A·x + b``, so it is composed into one dense matrix ``A`` [n_out, n_in] and bias ``b`` [n_out]
(x flattened in C-order). The neuron's discrete-time equation (DESIGN.md, "Neuron semantics") is

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
import torch

from snnchip.errors import UnsupportedNodeError
from snnchip.export.nir_exec import compile_neuron
from snnchip.export.nir_import import check_graph, recorded_interpretation, snnchip_semantics
from snnchip.spec import Interpretation

LINEAR_TYPES = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Flatten)
NEURON_TYPES = (nir.LIF, nir.IF, nir.I, nir.CubaLIF)
SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten",
             "LIF/IF (snnchip kind 'lif', or foreign with reset to zero)", "CubaLIF (snnchip kind 'srm')",
             "LIF/IF (snnchip kind 'empf')", "I (readout integrator)")


@dataclass(frozen=True)
class Stage:
    """One neuron population fed by a composed affine map (float, real units)."""

    name: str
    kind: str  # "lif" | "srm" | "readout"
    weight: np.ndarray  # [n_out, n_in], float64
    bias: np.ndarray  # [n_out], float64
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    lam: float = 1.0
    theta: float = 1.0
    reset: str = "subtract"
    spike: str = "ge"
    lam_syn: float = 0.0  # srm: the current's decay λ_syn (its input scale is folded into weight and bias)
    tables: dict[str, np.ndarray] | None = None  # empf: lam, input_scale, theta, reset_offset, each [T, n_out]

    @property
    def spiking(self) -> bool:
        return self.kind in ("lif", "srm", "empf")

    @property
    def graded(self) -> bool:
        return self.kind == "empf"


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


def _apply(name: str, node: object, x: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Apply one linear node to a batch ``x`` [N, *shape] (float64); return the batch and its new shape."""
    import torch.nn.functional as F

    if isinstance(node, nir.Flatten):
        return x.reshape(x.shape[0], -1), (math.prod(shape),)
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.shape[1] != math.prod(shape):
            raise _unsupported(name, node, f"weight {w.shape} does not take an input of shape {shape}")
        y = x.reshape(x.shape[0], -1) @ w.T
        if isinstance(node, nir.Affine):
            y = y + np.asarray(node.bias, dtype=np.float64).reshape(-1)
        return y, (w.shape[0],)
    if len(shape) != 3:
        raise _unsupported(name, node, f"needs a (C, H, W) input, got shape {shape}")
    t = torch.from_numpy(x.reshape(x.shape[0], *shape))
    if isinstance(node, nir.Conv2d):
        if node.groups != 1 or _pair(node.dilation) != (1, 1):
            raise _unsupported(name, node, "only groups=1, dilation=1 convolutions are supported")
        pad = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        bias = None if node.bias is None else torch.from_numpy(np.asarray(node.bias, np.float64).reshape(-1))
        y = F.conv2d(t, torch.from_numpy(np.asarray(node.weight, np.float64)), bias,
                     stride=_pair(node.stride), padding=pad)
    else:
        k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        y = F.avg_pool2d(t, k, s, p, count_include_pad=True)
        if isinstance(node, nir.SumPool2d):
            y = y * (k[0] * k[1])
    return y.numpy(), tuple(y.shape[1:])


def _compose(chain: list[tuple[str, object]], in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The affine map of a chain of linear nodes as (A [n_out, n_in], b [n_out], out_shape)."""
    n_in = math.prod(in_shape)
    x = np.concatenate([np.zeros((1, n_in)), np.eye(n_in)]).reshape(n_in + 1, *in_shape)
    shape = in_shape
    for name, node in chain:
        x, shape = _apply(name, node, x, shape)
    y = x.reshape(n_in + 1, -1)
    return (y[1:] - y[0]).T.copy(), y[0].copy(), shape


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

    Foreign neurons are read with ``interpretation``, else the one recorded in the graph
    (``metadata['snnchip_interpretation']``), else NIR's defaults (Euler, dt = 1, reset to v_reset, >).
    The graph is read by ``check_graph`` (flat nodes, run order, back edges, shapes).
    """
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
        a, b, out_shape = _compose(chain, shape)
        if math.prod(out_shape) != a.shape[0]:
            raise _unsupported(cur, node, f"input of shape {out_shape} does not match the neuron")
        stages.append(Stage(weight=a * gain[:, None], bias=b * gain + offset, in_shape=shape,
                            out_shape=out_shape, **params))
        chain, shape = [], out_shape
    if chain or not stages:
        raise UnsupportedNodeError("the graph must end in a neuron (LIF/IF or the readout I) before its Output; "
                                   f"found linear nodes {[n for n, _ in chain]} after the last neuron")
    meta = (graph.metadata or {}).get("snnchip", {}) if hasattr(graph, "metadata") else {}
    steps = T if T is not None else meta.get("T")
    for i, st in enumerate(stages):
        if st.tables is not None and steps is not None:
            if int(steps) > st.tables["lam"].shape[0]:
                raise UnsupportedNodeError(f"layer {st.name!r}: its EM-PF tables hold {st.tables['lam'].shape[0]} "
                                           f"steps; cannot run T = {steps}")
            stages[i] = replace(st, tables={k: v[: int(steps)] for k, v in st.tables.items()})
    return LoweredNet(in_shape, tuple(stages), None if steps is None else int(steps),
                      str(meta.get("encoding", "direct")))
