"""ONNX target: a network's NIR graph as a *stateful single-step* ONNX model, plus its driver ``run_onnx``.

Why one step with explicit state rather than an unrolled T-step graph: the model's size does not
grow with T, T is chosen at run time (as in ``snn-run``), and it streams (one call per sensor frame)
on any ONNX runtime, which is how a neuromorphic model is used online. The cost is a Python loop
over t in the driver, which is cheap next to the step itself.

The model computes, for one time step t (all tensors batched, float32):

    inputs   x [B, *input_shape], state.<node>.v (+ state.<node>.i for current-based neurons),
             state.<src>.out for every recurrent edge src -> dst (its value at t − 1)
    outputs  output [B, n_out] (the Output node: the readout integrator Σ_{τ≤t} o[τ] for our graphs),
             spikes.<layer> for every spiking node, and new_state.<...> matching every state input.

Each neuron's ops are ``snnchip.neurons.neuron_step`` itself, run on ``_Value``s: symbolic tensors whose
operators (+, −, ·, ≥, >, the cast to float) append ONNX nodes, on the parameters ``compile_neuron`` reads (the
same as the executor's). Synapses map to MatMul/Add, Conv, AveragePool (×k² for sum pooling) and Reshape. Delay
nodes are not exported.

Per-step neurons (EM-PF, kind ``empf``) need the step index: such a model has one more input, ``step`` (int64
scalar, 0-based: 0 at t = 1), and holds each per-step parameter as its [T, C, 1, ...] table, of which a ``Gather``
on ``step`` picks the row. One extra scalar input keeps the model's size independent of the batch and its state
interface unchanged, and ``run_onnx`` feeds it (t − 1); a step ≥ T is an index error in the runtime (``run_onnx``
raises ``DataError`` first). Models without per-step neurons have no ``step`` input.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from snnchip.atomic import atomic_path
from snnchip.errors import DataError, OutputError, UnsupportedNodeError
from snnchip.neurons import TABLES, NeuronParams, neuron_step
from snnchip.spec import Interpretation

from .nir_exec import NIRExecutor
from .nir_graph import window

OPSET = 17
REST_PREFIX = "snnchip.rest."
STEP_INPUT = "step"


class _Builder:
    """Accumulates ONNX nodes, initializers and value names while walking the graph in execution order."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value, name: str) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def ints(self, value, name: str) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        self.count += 1
        out = out or f"t{self.count}_{op_type}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.count}_{op_type}", **attrs))
        return out


def _window_attrs(name: str, node: nir.NIRNode, in_shape: tuple[int, ...]) -> dict:
    """ONNX's Conv / AveragePool attributes from the one reader of NIR windows (``nir_graph.window``)."""
    win = window(name, node, in_shape[1:])
    attrs = {"strides": list(win.stride), "pads": [*win.pad_before, *win.pad_after]}
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        attrs.update(dilations=list(win.dilation), group=win.groups)
    else:
        attrs["kernel_shape"] = list(win.kernel)
    return attrs


def _synapse(b: _Builder, name: str, node: nir.NIRNode, x: str, in_shape: tuple[int, ...],
             out_shape: tuple[int, ...]) -> str:
    if isinstance(node, (nir.Input, nir.Output)):
        return x
    if isinstance(node, (nir.Affine, nir.Linear)):
        y = b.op("MatMul", [x, b.const(np.asarray(node.weight).T, f"{name}.weight_t")])
        return b.op("Add", [y, b.const(node.bias, f"{name}.bias")]) if isinstance(node, nir.Affine) else y
    if isinstance(node, nir.Scale):
        return b.op("Mul", [x, b.const(node.scale, f"{name}.scale")])
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight)
        bias = np.broadcast_to(node.bias, (w.shape[0],))
        return b.op("Conv", [x, b.const(w, f"{name}.weight"), b.const(bias, f"{name}.bias")],
                    **_window_attrs(name, node, in_shape))
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        attrs = _window_attrs(name, node, in_shape)
        y = b.op("AveragePool", [x], count_include_pad=1, **attrs)
        if isinstance(node, nir.SumPool2d):
            y = b.op("Mul", [y, b.const(float(np.prod(attrs["kernel_shape"])), f"{name}.area")])
        return y
    if isinstance(node, nir.Flatten):
        return b.op("Reshape", [x, b.ints([0, *out_shape], f"{name}.shape")])
    raise UnsupportedNodeError(f"node {name!r}: {type(node).__name__} has no ONNX export (supported: Affine, "
                               "Linear, Scale, Conv1d/2d, Avg/SumPool2d, Flatten and the NIR neurons)")


def _operator(op_type: str, reflected: bool = False) -> Callable[[_Value, object], _Value]:
    """The ``_Value`` method of a binary operator: ``self op other`` (``other op self`` when ``reflected``)."""
    def method(self: _Value, other: object) -> _Value:
        return self._op(op_type, other, self) if reflected else self._op(op_type, self, other)
    return method


class _Value:
    """A float tensor of the graph being built: its operators append ONNX nodes to ``builder``, so that
    ``snnchip.neurons``' steps, written over array operators, emit their own graph. A number or array operand
    becomes an initializer; ``__array_ufunc__ = None`` makes NumPy hand ``array · value`` to ``__rmul__``."""

    __array_ufunc__ = None
    dtype = TensorProto.FLOAT

    def __init__(self, builder: _Builder, name: str | Callable[[], str]) -> None:
        self.builder, self._name = builder, name

    @property
    def name(self) -> str:
        """The value's name in the graph; a value made by a callable (a parameter) is added on first use."""
        if callable(self._name):
            self._name = self._name()
        return self._name

    def _op(self, op_type: str, *operands, **attrs) -> _Value:
        names = [o.name if isinstance(o, _Value) else self.builder.const(o, f"const{len(self.builder.inits)}")
                 for o in operands]
        return _Value(self.builder, self.builder.op(op_type, names, **attrs))

    __add__, __radd__ = _operator("Add"), _operator("Add", reflected=True)
    __sub__, __rsub__ = _operator("Sub"), _operator("Sub", reflected=True)
    __mul__, __rmul__ = _operator("Mul"), _operator("Mul", reflected=True)
    __ge__, __gt__ = _operator("GreaterOrEqual"), _operator("Greater")

    def __floordiv__(self, other: object) -> _Value:
        """⌊self / other⌋ (Div, then Floor: ONNX has no floor division of floats; Xylo's spike count)."""
        return self._op("Floor", self._op("Div", self, other))

    def astype(self, dtype: int) -> _Value:
        """A Cast to the ONNX element type ``dtype`` (``heaviside`` casts a comparison to the potential's type)."""
        return self._op("Cast", self, to=dtype)


def _neuron(b: _Builder, name: str, p: NeuronParams, x: str, state: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``neuron_step`` traced for one node: returns (output, new state names)."""
    def param(key: str, value) -> _Value:  # a named constant, or the row ``step`` of a per-step table
        def make() -> str:
            const = b.const(value, f"{name}.{key}")
            return const if p.steps is None or key not in TABLES else b.op("Gather", [const, STEP_INPUT], axis=0)
        return _Value(b, make)

    traced = dataclasses.replace(p.map_arrays(param), steps=None)
    out, new = neuron_step(traced, _Value(b, x), {k: _Value(b, v) for k, v in state.items()})
    return out.name, {k: v.name for k, v in new.items()}


def onnx_model(graph: nir.NIRGraph, interpretation: Interpretation | None = None) -> onnx.ModelProto:
    """The single-step ONNX model of a NIR graph (ours exactly; foreign ones under ``interpretation``)."""
    ex = NIRExecutor(graph, interpretation)
    c = ex.checked
    b = _Builder()
    value_info = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", *shape])  # noqa: E731
    inputs = [value_info("x", c.shapes[c.inputs[0]])]
    outputs: list[onnx.ValueInfoProto] = []
    prev = {a: f"state.{a}.out" for a, _ in sorted(c.back_edges)}
    inputs += [value_info(v, c.shapes[a]) for a, v in prev.items()]
    vals: dict[str, str] = {c.inputs[0]: "x"}
    if any(op.neuron is not None and op.neuron.steps is not None for op in ex.ops.values()):
        inputs.append(helper.make_tensor_value_info(STEP_INPUT, TensorProto.INT64, []))
    for name in c.order[1:]:
        preds = [prev[a] if back else vals[a] for a, back in c.predecessors(name)]
        x = preds[0]
        for other in preds[1:]:
            x = b.op("Add", [x, other])
        op = ex.ops[name]
        if op.delay is not None:
            raise UnsupportedNodeError(f"node {name!r}: Delay nodes have no ONNX export")
        if op.neuron is None:
            vals[name] = _synapse(b, name, c.nodes[name], x, c.shapes[c.predecessors(name)[0][0]], c.shapes[name])
            continue
        state = {k: f"state.{name}.{k}" for k in op.neuron.state_keys}
        inputs += [value_info(s, c.shapes[name]) for s in state.values()]
        vals[name], new = _neuron(b, name, op.neuron, x, state)
        for k, v in new.items():
            outputs.append(value_info(b.op("Identity", [v], f"new_state.{name}.{k}"), c.shapes[name]))
    out_shape = [int(np.prod(c.shapes[c.outputs[0]]))]
    outputs.insert(0, value_info(b.op("Reshape", [vals[c.outputs[0]], b.ints([0, -1], "output.shape")], "output"),
                                 out_shape))
    for name, layer in ex.spike_names.items():
        outputs.append(value_info(b.op("Identity", [vals[name]], f"spikes.{layer}"), c.shapes[name]))
    for a, v in prev.items():
        outputs.append(value_info(b.op("Identity", [vals[a]], f"new_{v}"), c.shapes[a]))
    g = helper.make_graph(b.nodes, "snnchip_step", inputs, outputs, b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnchip")
    for a, v in prev.items():  # a recurrent edge's value at t = 1: its source's output before the first step
        rest = ex.rest(a).numpy().reshape(-1)
        if np.any(rest != 0):
            helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                           f"{REST_PREFIX}{v}": json.dumps(rest.tolist())})
    model.ir_version = 8  # readable by every onnxruntime of the last years
    onnx.checker.check_model(model)
    return model


def check_onnx_name(path: str | os.PathLike) -> None:
    """Refuse a file name whose suffix onnx reads as a text format (``.json``, ``.textproto``, ...): the file is
    binary ONNX (what onnxruntime loads), and a text name would make onnx misread it."""
    suffix = os.path.splitext(str(path))[1].lower()
    fmt = onnx.serialization.registry.get_format_from_file_extension(suffix)
    if fmt not in (None, "protobuf"):
        raise OutputError(f"{path}: a {suffix} name means ONNX's {fmt} text format, but --target onnx writes a binary "
                          "ONNX model (what onnxruntime loads); name it .onnx")


def write_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Save ``model`` as binary ONNX to a temp file and rename it onto ``path`` (atomic)."""
    check_onnx_name(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp), format="protobuf")


@dataclass
class OnnxResult:
    """``output`` [T, B, n_out] and ``spikes`` {layer: [T, B, *shape]} from ``run_onnx``."""

    output: np.ndarray
    spikes: dict[str, np.ndarray]


def run_onnx(path: str | os.PathLike, x: np.ndarray) -> OnnxResult:
    """Drive the single-step model over x [T, B, *input_shape]: states start at zero (a recurrent edge's
    ``state.<src>.out`` at its source's rest value, recorded in the model's metadata), each step's ``new_state.*``
    feeds the next step's ``state.*``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    specs = {i.name: i.shape for i in sess.get_inputs()}
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != len(specs["x"]) + 1 or list(x.shape[2:]) != list(specs["x"][1:]):
        raise DataError(f"input has shape {x.shape}; the model takes [T, batch, *{tuple(specs['x'][1:])}]")
    batch = x.shape[1]
    state = {n: np.zeros([batch, *s[1:]], np.float32) for n, s in specs.items() if n not in ("x", STEP_INPUT)}
    for prop in onnx.load(str(path), format="protobuf", load_external_data=False).metadata_props:
        if prop.key.startswith(REST_PREFIX) and prop.key[len(REST_PREFIX):] in state:
            name = prop.key[len(REST_PREFIX):]
            state[name] = state[name] + np.asarray(json.loads(prop.value), np.float32).reshape(state[name].shape[1:])
    steps = _per_step_T(path) if STEP_INPUT in specs else None
    if steps is not None and x.shape[0] > steps:
        raise DataError(f"input has {x.shape[0]} time steps; the model has per-step parameters for T={steps} only")
    names = [o.name for o in sess.get_outputs()]
    outs, spikes = [], {n[len("spikes."):]: [] for n in names if n.startswith("spikes.")}
    for t in range(x.shape[0]):
        feed = {"x": x[t], **state, **({STEP_INPUT: np.array(t, np.int64)} if steps is not None else {})}
        res = dict(zip(names, sess.run(names, feed), strict=True))
        state = {n: res[f"new_{n}"] for n in state}
        outs.append(res["output"])
        for layer in spikes:
            spikes[layer].append(res[f"spikes.{layer}"])
    return OnnxResult(np.stack(outs), {k: np.stack(v) for k, v in spikes.items()})


def _per_step_T(path: str | os.PathLike) -> int:
    """The number of steps of the per-step tables of a model (the first axis of every table Gathered by ``step``)."""
    model = onnx.load(str(path), format="protobuf")
    inits = {i.name: i for i in model.graph.initializer}
    return min(inits[n.input[0]].dims[0] for n in model.graph.node
               if n.op_type == "Gather" and n.input[1] == STEP_INPUT)
