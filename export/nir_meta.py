"""snnchip's own NIR metadata (docs/nir-schema.md): ``metadata["snnchip"]`` of our nodes and graphs, and the
interpretation recorded in a foreign graph re-exported by snnchip.

``snnchip_semantics`` validates a node's metadata (schema version, required keys, value ranges) and returns it as
plain Python values; a reader that cannot honour what it says must refuse the node.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from snnchip.errors import NIRFormatError, SpecError, UnsupportedNodeError
from snnchip.spec import Interpretation, NetworkSpec, NeuronKind, check_T

SCHEMA_VERSION = 1
NEURON_TYPES = (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI)
SPIKING_TYPES = (nir.LIF, nir.IF, nir.CubaLIF, nir.Threshold)


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
        if meta["kind"] == NeuronKind.EMPF:
            return _empf_semantics(node, name, meta)
        numbers = ("lam", "theta", "dt") + {"srm": ("lam_syn", "input_scale"), "xylo": ("lam_syn", "max_spikes")
                                            }.get(meta["kind"], ())
        for key in numbers:
            if not isinstance(meta.get(key), (int, float)) or not math.isfinite(meta[key]):
                raise NIRFormatError(f"node {name!r}: snnchip metadata {key}={meta.get(key)!r} is not a finite number")
        if meta["kind"] == NeuronKind.SRM and (meta.get("reset_current") is not True or meta["reset"] != "zero"):
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


@dataclass(frozen=True)
class GraphMeta:
    """What a graph's own metadata (``metadata["snnchip"]``) says, read in one place: ``own`` (snnchip wrote the
    graph), ``T`` (its time steps; None where it records none, as a foreign graph), the input ``encoding`` and
    ``spec`` (the NetworkSpec of a snnchip model; None otherwise; parsed on first use, since most readers need only
    the rest)."""

    own: bool
    T: int | None
    encoding: str
    spec_json: str | None

    @functools.cached_property
    def spec(self) -> NetworkSpec | None:
        """The NetworkSpec of ``spec_json``; one that does not parse raises ``NIRFormatError``."""
        if self.spec_json is None:
            return None
        try:
            return NetworkSpec.from_dict(json.loads(self.spec_json))
        except (ValueError, TypeError) as exc:  # JSON, or a spec that SpecError (a ValueError) refuses
            raise NIRFormatError(f"graph metadata snnchip.spec_json is invalid: {exc}") from None


def graph_meta(graph: nir.NIRGraph) -> GraphMeta:
    """The graph's ``GraphMeta``; a T outside 1..T_MAX raises ``SpecError``."""
    meta = (getattr(graph, "metadata", None) or {}).get("snnchip")
    own = meta is not None
    meta = meta if isinstance(meta, dict) else {}
    T = check_T(_plain(meta["T"]), "the graph's metadata['snnchip']['T']") if "T" in meta else None
    spec_json = _plain(meta["spec_json"]) if "spec_json" in meta else None
    return GraphMeta(own, T, str(_plain(meta.get("encoding", "direct"))), spec_json)


def multi_spike_nodes(graph: nir.NIRGraph) -> dict[str, int]:
    """{node: spikes per step} of the neuron nodes that emit more than one spike per step (kind ``xylo``)."""
    out = {}
    for name, node in graph.nodes.items():
        meta = node.metadata.get("snnchip") if isinstance(getattr(node, "metadata", None), dict) else None
        if isinstance(meta, dict) and int(meta.get("max_spikes", 1)) > 1:
            out[name] = int(meta["max_spikes"])
    return out


def recorded_interpretation(graph: nir.NIRGraph) -> Interpretation | None:
    """The interpretation ``model_graph`` recorded in ``metadata["snnchip_interpretation"]`` of a foreign graph."""
    recorded = graph.metadata.get("snnchip_interpretation") if isinstance(graph.metadata, dict) else None
    if recorded is None:
        return None
    try:
        return Interpretation.from_record({k: _plain(v) for k, v in dict(recorded).items()})
    except (SpecError, ValueError) as exc:
        raise NIRFormatError(f"graph metadata snnchip_interpretation is invalid: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
