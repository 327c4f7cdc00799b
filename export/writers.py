"""Writer conventions: how each peer library's own simulation reads the NIR nodes it writes (``--from WRITER``).

NIR states ODEs without a time step, and a writer's discrete-time simulation fixes what NIR leaves open: the step
``dt`` its exporter assumed, forward Euler or exact decay, when and how a spike resets the membrane, and ``>`` or
``≥``. These differ by library and, in snnTorch, by node kind. ``resolve`` fills every neuron node of a graph with the
preset of its kind (docs/architecture.md, "Interpretation presets"; derived and checked against each library's own
outputs in tests/data/peers):

* snnTorch 1.0 (``export_to_nir`` writes τ = dt/(1 − β), r = 1/(1 − β) with dt = 1e-4): Euler at dt = 1e-4, ``>``.
  Reset mechanism ``subtract`` (its default): θ subtracted after the next step's leak (``subtract_next``) for every
  kind. ``zero``: a ``Leaky`` (a LIF outside any recurrence) zeroes the membrane (``zero``); an ``RLeaky`` (a LIF on
  a recurrence), ``Synaptic`` and ``RSynaptic`` (CubaLIF) zero the whole next step (``zero_next``).
* Norse 1.1 (``to_nir`` writes τ = dt·τ_true, norse/norse#411): LIF, LI, CubaLIF at dt = dt_norse² = 1e-6, Euler;
  IF (``IAFCell``) at dt = 1; reset to v_reset, ``>``; a ``LIFCell``'s current adds its input whole
  (``current_input`` ``unit``).
* Sinabs 3.1: IF at dt = 1; LIF exact at dt = 1 (α = e^{−1/τ}); ``≥``; ``subtract`` (``MembraneSubtract``, its
  default) or ``zero`` (``MembraneReset``).
* Rockpool 3.1 (dt = 1e-3): exact decay, subtract, ``≥`` (the input weights it exports are not its own; no preset
  makes them so).
* Spyx 1.0: Euler at dt = 1, subtract, ``>`` (Spyx fires on the state before the step's input; no preset matches).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import nir
import numpy as np

from snnchip.errors import SpecError
from snnchip.spec import NODE_FIELDS, Interpretation

from .nir_graph import CheckedGraph, check_graph
from .nir_meta import NEURON_TYPES, snnchip_semantics

MECHANISMS = {"snntorch": ("subtract", "zero"), "norse": ("v_reset",), "sinabs": ("subtract", "zero"),
              "rockpool": ("subtract",), "spyx": ("subtract",)}  # the first is the library's default
FLAGS = {"compare": "spike-compare", "current_input": "current-input"}
LIBRARY = {"snntorch": "snnTorch", "norse": "Norse", "sinabs": "Sinabs", "rockpool": "Rockpool", "spyx": "Spyx"}


class MixedConventionsWarning(UserWarning):
    """A graph whose nodes a writer simulates differently is read with one interpretation for all of them."""


_WARNED: dict = {}


def node_kind(checked: CheckedGraph, name: str) -> str:
    """The node's NIR type, with ``+rec`` for a LIF/CubaLIF that lies on a recurrence (snnTorch ``RLeaky``)."""
    node = checked.nodes[name]
    kind = type(node).__name__
    return f"{kind}+rec" if _on_cycle(checked, name) else kind


def _on_cycle(checked: CheckedGraph, name: str) -> bool:
    seen, todo = set(), [b for a, b in checked.edges if a == name]
    while todo:
        n = todo.pop()
        if n == name:
            return True
        if n not in seen:
            seen.add(n)
            todo.extend(b for a, b in checked.edges if a == n)
    return False


def preset(writer: str, mechanism: str, kind: str) -> dict[str, Any]:
    """The fields (``NODE_FIELDS``) a ``writer`` with reset ``mechanism`` simulates a node of ``kind``
    (``node_kind``) with."""
    return {"current_input": "ode", **_preset(writer, mechanism, kind)}


def _preset(writer: str, mechanism: str, kind: str) -> dict[str, Any]:
    base = kind.removesuffix("+rec")
    if writer == "snntorch":
        reset = "subtract_next" if mechanism == "subtract" else ("zero" if kind == "LIF" else "zero_next")
        return {"dt": 1e-4, "discretization": "euler", "reset": reset, "compare": "gt"}
    if writer == "norse":
        return {"dt": 1.0 if base in ("IF", "I") else 1e-6, "discretization": "euler", "reset": "v_reset",
                "compare": "gt", "current_input": "unit"}
    if writer == "sinabs":
        return {"dt": 1.0, "discretization": "exact", "reset": mechanism, "compare": "ge"}
    if writer == "rockpool":
        return {"dt": 1e-3, "discretization": "exact", "reset": "subtract", "compare": "ge"}
    return {"dt": 1.0, "discretization": "euler", "reset": "subtract", "compare": "gt"}  # spyx


def _foreign_neurons(checked: CheckedGraph) -> list[str]:
    return [n for n in checked.order if isinstance(checked.nodes[n], (*NEURON_TYPES, nir.Threshold))
            and snnchip_semantics(checked.nodes[n], n) is None]


def resolve(graph: nir.NIRGraph | CheckedGraph, interpretation: Interpretation | None) -> Interpretation | None:
    """``interpretation`` with every foreign neuron node of ``graph`` set: per-node settings first, then the
    writer's preset for the node's kind (``preset``), then the global fields. Without a writer or per-node settings
    a graph whose nodes some writer simulates differently gets a ``MixedConventionsWarning`` naming the nodes.
    Idempotent; None stays None."""
    if interpretation is None:
        return None
    checked = graph if isinstance(graph, CheckedGraph) else check_graph(graph)
    names = _foreign_neurons(checked)
    if interpretation.writer is None:
        if not interpretation.nodes:
            _warn_mixed(checked, names, interpretation.reset)
        return interpretation
    writer = interpretation.writer
    mechanism = MECHANISMS[writer][0] if interpretation.reset == "v_reset" else interpretation.reset
    if mechanism not in MECHANISMS[writer]:
        raise SpecError(f"--from {writer} --reset {mechanism}: {LIBRARY[writer]}'s reset mechanisms are "
                        f"{', '.join(MECHANISMS[writer])} (per node: --reset NODE=MODE)")
    nodes = {k: dict(v) for k, v in interpretation.nodes.items()}
    for name in names:
        nodes[name] = {**preset(writer, mechanism, node_kind(checked, name)), **nodes.get(name, {})}
    return dataclasses.replace(interpretation, reset=mechanism, nodes=nodes)


def _warn_mixed(checked: CheckedGraph, names: list[str], reset: str) -> None:
    """Warn where a writer whose presets include the global ``reset`` simulates the graph's nodes differently."""
    kinds = {n: node_kind(checked, n) for n in names}
    for writer, mechanisms in MECHANISMS.items():
        for mechanism in mechanisms:
            settings = {n: preset(writer, mechanism, k) for n, k in kinds.items()}
            if reset not in {s["reset"] for s in settings.values()}:
                continue
            differ = [f for f in NODE_FIELDS if len({s[f] for s in settings.values()}) > 1]
            groups: dict[str, list[str]] = {}
            for n, s in settings.items():
                groups.setdefault(", ".join(f"{f}={s[f]}" for f in differ), []).append(f"{n!r} ({kinds[n]})")
            if len(groups) < 2:
                continue
            how = "; ".join(f"{', '.join(ns)} with {key}" for key, ns in groups.items())
            flag = f"--from {writer}" + ("" if len(mechanisms) == 1 else f" --reset {mechanism}")
            text = (f"{LIBRARY[writer]}{'' if len(mechanisms) == 1 else ' (reset ' + mechanism + ')'} simulates "
                    f"{how}: one interpretation reads them all alike; if {LIBRARY[writer]} wrote this graph, give "
                    f"{flag} (or per node: --{FLAGS.get(differ[0], differ[0])} NODE=VALUE)")
            # one registry for every caller (executor, lowering, sizing): the same graph is warned about once
            warnings.warn_explicit(text, MixedConventionsWarning, __file__, 0, __name__, _WARNED)


def leak_hint(node: nir.NIRNode, interpretation: Interpretation) -> str:
    """What puts an out-of-range Euler leak λ = 1 − dt/τ back in [0, 1]: the writer whose export this τ looks like
    and its dt, and the bound dt ≤ τ."""
    tau = np.asarray(getattr(node, "tau_mem", getattr(node, "tau", 1.0)), np.float64)
    if interpretation.discretization != "euler" or tau.size == 0 or np.any(tau <= 0):
        return ""
    bound = f"any --dt ≤ τ = {float(tau.min()):.6g} puts λ in [0, 1]"
    r = np.asarray(node.r, np.float64)
    if np.allclose(r * 1e-4, tau, rtol=1e-5):
        return f"; this τ = 1e-4·r is how snnTorch writes β = 1 − 1e-4/τ: --from snntorch (or --dt 1e-4) reads it " \
               f"as snnTorch runs it; {bound}"
    if float(tau.max()) < 1e-3 and np.all(r == 1):
        return f"; a τ this small with r = 1 is how Norse writes dt·τ: --from norse (or --dt 1e-6) reads it as " \
               f"Norse runs it; {bound}"
    return f"; {bound} (the step the writer simulated with)"
