"""The network specification: one source of truth for layers and neuron semantics.

Every stage reads the neuron equations' parameters from here (docs/architecture.md, "Neuron semantics").
Discrete time t = 1..T, dt = 1; within a step, layer l+1 sees layer l's output of the same step.

The spec is a plain, JSON-serialisable description. Trainable tensors live in the checkpoint's
``state_dict``; training-only parametrisations (weight standardisation, scale factors, binary
weights, membrane BN) are named in ``LayerSpec.options`` so that ``snnchip.train`` can rebuild the
module, and are folded into plain weights before export.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict, get_type_hints

from snnchip.errors import SpecError
from snnchip.options import option


class Named(StrEnum):
    """The base of the project's kinds: members equal their strings and print as them, ``repr`` included, so files,
    hashes and messages read as if the plain strings were used."""

    __repr__ = str.__repr__


class NeuronKind(Named):
    """What a neuron computes, named as files write it (a layer's ``NeuronSpec.kind``, a NIR node's snnchip
    metadata, a lowered or quantized stage's ``kind``); members equal their strings, so fields keep the file's."""

    LIF = "lif"  # leaky integrate-and-fire (IF at λ = 1)
    CUBALIF = "cubalif"  # current-based LIF: a foreign CubaLIF's stage
    SRM = "srm"  # event-driven BP's spike response model (a current-based LIF that resets both traces)
    EMPF = "empf"  # EM-PF: graded spikes, per-step tables
    XYLO = "xylo"  # Xylo's neuron: bit-shift decays, several spikes per step
    READOUT = "readout"  # non-spiking integrator


NEURON_KINDS = (NeuronKind.LIF, NeuronKind.EMPF, NeuronKind.SRM, NeuronKind.XYLO, NeuronKind.READOUT)  # of a layer
XYLO_MAX_SPIKES = 31  # spikes a Xylo hidden neuron emits per step (xylosim MAX_NUM_SPIKES)
RESET_MODES = ("subtract", "zero")
SPIKE_CONDITIONS = ("ge", "gt")
SURROGATES = ("sigmoid", "triangle", "rectangle")
INTERPRETED_RESETS = ("v_reset", "zero", "subtract", "subtract_next", "zero_next")
LAYER_OPS = ("linear", "conv2d", "avgpool", "sumpool", "flatten")
ENCODINGS = ("direct", "rate")
T_MAX = 10_000  # time steps per sample: far above any published setting (tens to a few hundred), a sanity bound
SYNAPTIC_OPS = ("linear", "conv2d")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise SpecError(msg)


def check_T(T: object, what: str = "T") -> int:
    """``T`` (time steps) as an int in 1..``T_MAX``; anything else raises ``SpecError`` naming ``what``."""
    _check(isinstance(T, numbers.Integral) and not isinstance(T, bool) and 0 < T <= T_MAX,
           f"{what} (time steps) must be an integer in 1..{T_MAX}, got {T!r}")
    return int(T)


def _choice(value: str, options: tuple[str, ...], what: str) -> None:
    _check(value in options, f"unknown {what} {value!r}; valid: {', '.join(options)}")


class LayerOptions(TypedDict, total=False):
    """``LayerSpec.options``: the training-side parametrisations of a layer (``snnchip.train``), every key there is."""

    weight_std: bool  # standardise the weight (OTTT's VGG); folded into the plain weight
    scale: float  # multiply the neuron's output before the next layer (OTTT's VGG); folded
    weight_norm: bool  # weight normalisation (event-driven BP, S22); folded
    identity: bool  # a fixed identity weight (event-driven BP's spike-count readout)
    binary: bool  # the applied weight is sign(W) (EM-PF, Eq. 3–4)
    binary_scale: bool  # binary: times κ_k = mean|W_k| per output channel (the BConv of Liu et al. 2021)
    seca: str  # EM-PF channel attention: "i" or "ii" (Eq. 9–10)
    empf: str  # the EM-PF neuron variant of the layer
    block: str  # "first": the first conv of a residual block (EM-PF's mixed blocks)
    shortcut: str  # the earlier layer whose output is added to this layer's current
    shortcut_scale: bool  # an identity shortcut times a per-channel scale (plain models: κ_k moved out, 1/κ_k)


class NetworkOptions(TypedDict, total=False):
    """``NetworkSpec.options``: settings of a training rule that the model carries, every key there is."""

    k: int | None  # SLTT-K: the K steps with a gradient
    mse_alpha: float  # SLTT/OTTT loss: the weight of the MSE term
    tau_grad: float  # event-driven BP: the gradient's time constant
    targets: list  # event-driven BP: the spike-count targets [wrong class, right class]
    revive: bool  # event-driven BP: revive silent neurons below their target


def _check_options(options: object, typed: type, where: str) -> None:
    """``options`` holds only the keys of the TypedDict ``typed``, each with a value of its type (an int stands for a
    float; JSON has no tuples)."""
    _check(isinstance(options, dict), f"{where}: options must be a dict, got {type(options).__name__}")
    hints = get_type_hints(typed)
    unknown = sorted(set(options) - set(hints))
    _check(not unknown, f"{where}: unknown option(s) {unknown}; valid: {', '.join(hints)}")
    for key, value in options.items():
        kinds = {bool: (bool,), float: (int, float), str: (str,), list: (list, tuple), int | None: (int, type(None))}
        ok = isinstance(value, kinds[hints[key]]) and (hints[key] is bool or not isinstance(value, bool))
        _check(ok, f"{where}: option {key!r} = {value!r} is not a {getattr(hints[key], '__name__', hints[key])}")


@dataclass(frozen=True)
class NeuronSpec:
    """Neuron after a synaptic layer, with input current I[t] = W x[t] + b; the equations are ``snnchip.neurons``'.

    ``lif`` (OTTT, SLTT, SAF, BPTT): ``lif_step`` with a = λ, b = 1, c = 0, θ, ``reset`` and ``spike``.
    ``empf`` (EM-PF): ``empf_step``; ``lam``/``theta`` are the initial values of the learnable per-step λ[t], θ[t].
    ``srm`` (event-driven BP): ``cuba_lif_step`` with both traces reset at a spike and the decays of
        ``snnchip.discretize.srm_decays`` (τm, τs); ``lam`` is unused.
    ``xylo`` (``--profile xylo``, BPTT): Xylo's neuron, ``cuba_lif_step`` with a_syn = λ_syn = 1 − 1/τs, b_syn = 1,
        a = λ, subtractive reset kept in the current, and up to ``XYLO_MAX_SPIKES`` spikes per step.
    ``readout``: non-spiking, o[t] = I[t]; the class score is Σ_t o[t].

    ``surrogate`` is dH/du used by the surrogate-gradient rules: sigmoid with ``slope``
    (σ'(slope·(u − θ))·slope), triangle with γ = θ, or rectangle of width ``slope``⁻¹·… (see train/).
    """

    kind: str = "lif"
    lam: float = 0.5
    theta: float = 1.0
    reset: str = "subtract"
    spike: str = "ge"
    surrogate: str = "sigmoid"
    slope: float = 4.0
    tau_m: float = 5.0
    tau_s: float = 3.0

    def __post_init__(self) -> None:
        _choice(self.kind, NEURON_KINDS, "neuron kind")
        _choice(self.reset, RESET_MODES, "reset mode")
        _choice(self.spike, SPIKE_CONDITIONS, "spike condition")
        _choice(self.surrogate, SURROGATES, "surrogate")
        for name in ("lam", "theta", "slope", "tau_m", "tau_s"):
            _check(math.isfinite(getattr(self, name)), f"neuron {name} must be finite, got {getattr(self, name)}")
        _check(0.0 <= self.lam <= 1.0, f"neuron leak λ must be in [0, 1], got {self.lam}")
        _check(self.theta > 0, f"neuron threshold θ must be > 0, got {self.theta}")
        if self.kind == NeuronKind.XYLO:
            _check(self.tau_s >= 2 and self.reset == "subtract" and self.spike == "ge",
                   f"a Xylo neuron needs τs ≥ 2 (λ_syn ≥ 1/2), reset subtract and spike ge; got τs={self.tau_s}, "
                   f"reset {self.reset}, spike {self.spike}")
        if self.kind == NeuronKind.SRM:
            _check(self.tau_m > 1 and self.tau_s > 1 and self.tau_m != self.tau_s,
                   f"SRM needs τm, τs > 1 and τm ≠ τs, got τm={self.tau_m}, τs={self.tau_s}")

    @property
    def spiking(self) -> bool:
        return self.kind != NeuronKind.READOUT

    @property
    def lam_syn(self) -> float:
        """λ_syn of the ``xylo`` kind: 1 − 1/τs (Euler, dt = 1)."""
        return 1.0 - 1.0 / self.tau_s


@dataclass(frozen=True)
class LayerSpec:
    """One layer: a synaptic or shape op, optionally followed by a neuron.

    ``linear``: ``out_features``; ``conv2d``: ``out_channels``, ``kernel_size``, ``stride``, ``padding``;
    ``avgpool``/``sumpool``: ``kernel_size``, ``stride`` (default = kernel); ``flatten``: no parameter.
    ``options`` holds training-side parametrisations (``LayerOptions``: every key, with its type).
    """

    name: str
    op: str
    out_features: int | None = None
    out_channels: int | None = None
    kernel_size: int | None = None
    stride: int | None = None
    padding: int = 0
    bias: bool = True
    neuron: NeuronSpec | None = None
    options: LayerOptions = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice(self.op, LAYER_OPS, f"op of layer {self.name!r}")
        _check_options(self.options, LayerOptions, f"layer {self.name!r}")
        _check(bool(self.name) and "." not in self.name and "/" not in self.name,
               f"layer name {self.name!r} must be non-empty without '.' or '/'")
        if self.op == "linear":
            _check(self.out_features is not None and self.out_features > 0,
                   f"linear layer {self.name!r} needs out_features > 0")
        if self.op == "conv2d":
            _check(self.out_channels is not None and self.out_channels > 0,
                   f"conv2d layer {self.name!r} needs out_channels > 0")
        if self.op in ("conv2d", "avgpool", "sumpool"):
            _check(self.kernel_size is not None and self.kernel_size > 0,
                   f"layer {self.name!r} ({self.op}) needs kernel_size > 0")
            _check(self.padding >= 0, f"layer {self.name!r}: padding must be >= 0")
        if self.neuron is not None:
            _check(self.op in SYNAPTIC_OPS or self.neuron.kind != NeuronKind.READOUT,
                   f"layer {self.name!r}: a readout must follow a synaptic op")

    @property
    def synaptic(self) -> bool:
        return self.op in SYNAPTIC_OPS

    @property
    def effective_stride(self) -> int:
        return self.stride if self.stride is not None else (1 if self.op == "conv2d" else self.kernel_size)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input shape (channels first, no batch)."""
        if self.op == "flatten":
            return (math.prod(in_shape),)
        if self.op == "linear":
            _check(len(in_shape) == 1, f"linear layer {self.name!r} needs a flat input, got shape {in_shape}")
            return (self.out_features,)
        _check(len(in_shape) == 3, f"layer {self.name!r} ({self.op}) needs a (C, H, W) input, got {in_shape}")
        c, h, w = in_shape
        k, s, p = self.kernel_size, self.effective_stride, self.padding
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        _check(oh > 0 and ow > 0, f"layer {self.name!r}: kernel {k} does not fit input {in_shape}")
        return (self.out_channels if self.op == "conv2d" else c, oh, ow)


@dataclass(frozen=True)
class FeedbackSpec:
    """A recurrent edge with one step of delay: I_dst[t] += W_fb · s_src[t−1].

    W_fb is a dense map from the (flattened) output of layer ``src`` to the (flattened)
    pre-neuron current of layer ``dst``; ``src`` comes at or after ``dst`` (OTTT supplement VGG-F /
    R400, SAF feedback section). Its weight is ``feedback.<src>__<dst>.weight`` in the state dict.
    """

    src: str
    dst: str

    @property
    def key(self) -> str:
        return f"{self.src}__{self.dst}"


@dataclass(frozen=True)
class NetworkSpec:
    """A sequential network (plus optional feedback edges), its time steps and how it was trained."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    T: int
    num_classes: int
    feedback: tuple[FeedbackSpec, ...] = ()
    encoding: str = "direct"
    method: str = "bptt"
    model: str = "custom"
    options: NetworkOptions = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_options(self.options, NetworkOptions, "the network")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "feedback", tuple(self.feedback))
        object.__setattr__(self, "T", check_T(self.T))
        _check(len(self.input_shape) > 0 and all(d > 0 for d in self.input_shape),
               f"input_shape must be positive, got {self.input_shape}")
        _choice(self.encoding, ENCODINGS, "input encoding")
        _check(len(self.layers) > 0, "a network needs at least one layer")
        names = [layer.name for layer in self.layers]
        _check(len(set(names)) == len(names), f"layer names must be unique, got {names}")
        last = self.layers[-1]
        _check(last.neuron is not None and last.neuron.kind == NeuronKind.READOUT and last.synaptic,
               f"the last layer ({last.name!r}) must be a synaptic layer with a readout neuron")
        shapes = self.shapes()
        _check(shapes[-1] == (self.num_classes,),
               f"the readout produces shape {shapes[-1]} but num_classes is {self.num_classes}")
        index = {n: i for i, n in enumerate(names)}
        for fb in self.feedback:
            _check(fb.src in index and fb.dst in index, f"feedback edge {fb} names an unknown layer")
            _check(index[fb.src] >= index[fb.dst], f"feedback edge {fb} must go from a later layer back")
            _check(self.layers[index[fb.src]].neuron is not None and self.layers[index[fb.src]].neuron.spiking,
                   f"feedback source {fb.src!r} must be a spiking layer")
            _check(self.layers[index[fb.dst]].synaptic, f"feedback target {fb.dst!r} must be a synaptic layer")

    def shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer, in order."""
        out, shape = [], self.input_shape
        for layer in self.layers:
            shape = layer.output_shape(shape)
            out.append(shape)
        return out

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise SpecError(f"no layer named {name!r}; layers: {[la.name for la in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        """Rebuild a spec from ``to_dict`` output; unknown or missing fields raise ``SpecError``."""
        if not isinstance(data, dict):
            raise SpecError(f"a network spec must be a dict, got {type(data).__name__}")
        try:
            layers = tuple(
                LayerSpec(**{**la, "neuron": NeuronSpec(**la["neuron"]) if la.get("neuron") else None})
                for la in data["layers"]
            )
            feedback = tuple(FeedbackSpec(**fb) for fb in data.get("feedback", ()))
            rest = {k: v for k, v in data.items() if k not in ("layers", "feedback")}
            return cls(layers=layers, feedback=feedback, **rest)
        except SpecError:
            raise
        except (KeyError, TypeError) as exc:
            raise SpecError(f"malformed network spec: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


CURRENT_INPUTS = ("ode", "unit")
WRITERS = ("snntorch", "norse", "sinabs", "rockpool", "spyx")
NODE_FIELDS = ("dt", "discretization", "reset", "compare", "current_input")  # set globally or per node


@dataclass(frozen=True)
class Interpretation:
    """How to read a foreign NIR graph in discrete time (NIR itself has no dt).

    ``discretization``: ``euler`` (v += dt/τ·(v_leak − v + R·I)) or ``exact`` (v decays by e^{−dt/τ});
    ``reset``: ``v_reset`` (NIR's reset to v_reset), ``zero``, ``subtract`` (v −= θ), or one step later as snnTorch
    does: ``subtract_next`` (θ subtracted after the next step's leak) and ``zero_next`` (the next step zeroed,
    its input included) (``snnchip.neurons.lif_step``);
    ``compare``: ``gt`` (NIR's v > θ) or ``ge``;
    ``current_input``: ``ode`` (NIR's) or ``unit`` (``snnchip.discretize.current_coefficients``).
    ``writer``: the library that wrote the graph; ``snnchip.export.writers.resolve`` then sets every neuron node's
    four fields to what that library's own simulation does for the node's kind, and ``reset`` names the library's
    reset mechanism (``subtract`` or ``zero``; ``v_reset``: the library's default).
    ``nodes``: per-node settings {node: {field: value}} that win over the global fields and the writer's preset.
    Our own graphs carry their exact semantics in ``metadata['snnchip']`` and ignore it.
    """

    dt: float = option(1.0, help="time step for continuous-time NIR neurons", per_node=True)
    discretization: str = option("euler", help="forward Euler or exact exponential decay",
                                 choices=("euler", "exact"), per_node=True)
    reset: str = option("v_reset", help="reset after a spike: NIR's reset to v_reset, to zero, subtract θ, or "
                        "snnTorch's one step later: subtract_next (θ subtracted after the next leak), zero_next (the "
                        "next step zeroed); with --from, the library's own mechanism (subtract or zero)",
                        choices=INTERPRETED_RESETS, per_node=True)
    compare: str = option("gt", help="spike when v > θ (NIR) or v >= θ", choices=SPIKE_CONDITIONS,
                          flag="--spike-compare", per_node=True)
    current_input: str = option("ode", help="a current-based neuron's input: NIR's ODE (b_syn = (1 − d(τ_syn))·w_in) "
                                "or unit (b_syn = w_in: the current adds its input whole, as Norse's LIFCell does)",
                                choices=CURRENT_INPUTS, per_node=True)
    writer: str | None = option(None, help="the library that wrote the graph: every neuron node read as that "
                                "library simulates its kind (reset, comparison, dt, discretization; "
                                "docs/architecture.md, 'Interpretation presets')", choices=WRITERS, flag="--from")
    nodes: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"help": "per-node settings (command line: --reset NODE=VALUE, ...)", "cli": False})

    def __post_init__(self) -> None:
        _check(isinstance(self.dt, numbers.Real) and math.isfinite(self.dt) and self.dt > 0,
               f"dt must be > 0, got {self.dt}")
        _choice(self.discretization, ("euler", "exact"), "discretization")
        _choice(self.reset, INTERPRETED_RESETS, "reset interpretation")
        _choice(self.compare, SPIKE_CONDITIONS, "spike comparison")
        _choice(self.current_input, CURRENT_INPUTS, "current input")
        if self.writer is not None:
            _choice(self.writer, WRITERS, "writer (--from)")
        _check(isinstance(self.nodes, dict), f"nodes must be a dict {{node: {{field: value}}}}, got {self.nodes!r}")
        nodes = {}
        for name, fields in self.nodes.items():
            _check(isinstance(fields, dict), f"node {name!r}: settings must be a table of {NODE_FIELDS}, got "
                   f"{fields!r}")
            unknown = sorted(set(fields) - set(NODE_FIELDS))
            _check(not unknown, f"node {name!r}: unknown setting(s) {unknown}; valid: {', '.join(NODE_FIELDS)}")
            fields = dict(fields)
            if isinstance(fields.get("dt"), str):
                try:
                    fields["dt"] = float(fields["dt"])
                except ValueError:
                    raise SpecError(f"node {name!r}: dt = {fields['dt']!r} is not a number") from None
            try:
                dataclasses.replace(self, nodes={}, writer=None, **fields)
            except SpecError as exc:
                raise SpecError(f"node {name!r}: {exc}") from None
            nodes[str(name)] = fields
        object.__setattr__(self, "nodes", nodes)

    def at(self, node: str) -> Interpretation:
        """The interpretation of one node: the global fields with that node's settings applied."""
        fields = self.nodes.get(node)
        return dataclasses.replace(self, nodes={}, writer=None, **fields) if fields else \
            dataclasses.replace(self, nodes={}, writer=None)

    def describe(self) -> str:
        """One line per distinct setting: which nodes are read how."""
        head = self._fields()
        if self.writer:
            head = f"--from {self.writer} (reset mechanism {self.reset})"
        groups: dict[str, list[str]] = {}
        for name in self.nodes:
            i = self.at(name)
            groups.setdefault(i._fields(), []).append(name)
        return "; ".join([head] + [f"{', '.join(names)}: {how}" for how, names in groups.items()])

    def _fields(self) -> str:
        unit = ", current input unit" if self.current_input == "unit" else ""
        return f"dt={self.dt:g}, {self.discretization}, reset={self.reset}, compare={self.compare}{unit}"

    @classmethod
    def overriding(cls, recorded: Interpretation | None, **given: Any) -> Interpretation | None:
        """``recorded`` (or NIR's defaults) with the fields in ``given`` that are not None replaced; ``recorded``
        itself when nothing is given (a graph re-exported by snnchip keeps the interpretation it records).

        A value of ``dt``, ``discretization``, ``reset`` or ``compare`` may be a list of command-line strings,
        ``VALUE`` (global) or ``NODE=VALUE`` (that node only), as ``--reset lif1=zero_next`` gives them."""
        given = {k: v for k, v in given.items() if v is not None}
        if not given:
            return recorded
        base = recorded or cls()
        nodes = {k: dict(v) for k, v in base.nodes.items()}
        for key, value in given.pop("nodes", {}).items():
            nodes.setdefault(key, {}).update(value)
        for name in NODE_FIELDS:
            if not isinstance(given.get(name), (list, tuple)):
                continue
            plain = None
            for item in given.pop(name):
                node, sep, value = str(item).rpartition("=")
                if sep:
                    _check(bool(node), f"--{name} {item!r}: give NODE=VALUE")
                    nodes.setdefault(node, {})[name] = value
                else:
                    plain = value
            if plain is not None:
                given[name] = plain
        if isinstance(given.get("dt"), str):
            try:
                given["dt"] = float(given["dt"])
            except ValueError:
                raise SpecError(f"--dt {given['dt']!r} is not a number") from None
        return dataclasses.replace(base, **given, nodes=nodes)

    def record(self) -> dict[str, Any]:
        """As stored in a graph's or a manifest's metadata (``from_record`` reads it back)."""
        out = {k: getattr(self, k) for k in NODE_FIELDS}
        if self.writer:
            out["writer"] = self.writer
        if self.nodes:
            out["nodes"] = json.dumps(self.nodes, sort_keys=True)
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Interpretation:
        """The inverse of ``record`` (``nodes`` as JSON text or a dict); bad values raise ``SpecError``."""
        values = dict(record)
        if isinstance(values.get("nodes"), str):
            try:
                values["nodes"] = json.loads(values["nodes"])
            except ValueError as exc:
                raise SpecError(f"interpretation nodes is not JSON: {exc}") from None
        try:
            return cls(**values)
        except TypeError as exc:
            raise SpecError(f"interpretation record: {exc}") from None
