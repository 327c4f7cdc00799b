"""A foreign graph with the decays Loihi 2 holds: where the chip's 12-bit registers leave the float graph.

Lava's LIF keeps a membrane decay λ as the register dv (factor (4096 − dv)/4096) and a current decay λ_syn as du
(``export.loihi2.voltage_decay``, ``current_decay``). A neuron whose λ = d(τ) (``snnchip.discretize``) is off that
grid runs on the chip with the nearest held value, up to 1/8192 away (snnTorch's β = 0.9 is held as 0.899902,
dv = 410). No scale or weight precision removes that difference, and in a deep network it compounds: a spike that
moves by one step changes every input it feeds.

``at_chip_decays`` rewrites each foreign LIF, LI, CubaLIF and CubaLI node so that the float reference runs the held
decays: τ (τ_mem, τ_syn) is set so that d(τ) is the held value under the node's interpretation, and r, v_leak
(w_in) are rescaled so that the step's input gain b = (1 − d)·r, its leak term c = (1 − d)·v_leak and the current's
b_syn are unchanged. Comparing the graph with this one measures the decay floor of a deployment; comparing this one
with the chip measures the rest of the quantization. Kept as they are: nodes that carry snnchip metadata, IF/I
nodes (no decay), decays the chip holds exactly (within ``HELD_TOLERANCE``), and a decay held as 1 (within 1/8192
of it), whose input gain (1 − d)·r no finite r keeps.
"""

from __future__ import annotations

import copy
from typing import Any

import nir
import numpy as np

from snnchip.discretize import decay
from snnchip.export.loihi2 import current_decay, held_current_decay, held_voltage_decay, voltage_decay
from snnchip.export.nir_meta import snnchip_semantics
from snnchip.spec import Interpretation

HELD_TOLERANCE = 1e-7  # a decay this close to the chip's counts as held exactly (a float32 τ of a held one lands here)


def chip_membrane_decay(lam: Any) -> np.ndarray:
    """The membrane decay Lava's LIF applies for λ: (4096 − dv)/4096 with dv = ``voltage_decay(λ)``."""
    return held_voltage_decay(voltage_decay(lam))


def chip_current_decay(lam_syn: Any) -> np.ndarray:
    """The current decay Lava's LIF applies for λ_syn: (4096 − (du + 1))/4096 with du = ``current_decay(λ_syn)``."""
    return held_current_decay(current_decay(lam_syn))


def _tau_for(held: np.ndarray, interpretation: Interpretation) -> np.ndarray:
    """τ with d(τ) = ``held``: dt/(1 − d) (``euler``) or −dt/ln d (``exact``)."""
    dt = interpretation.dt
    return -dt / np.log(held) if interpretation.discretization == "exact" else dt / (1 - held)


def _retimed(tau: Any, held_of: Any, interpretation: Interpretation) -> tuple[np.ndarray, np.ndarray] | None:
    """(τ', (1 − d)/(1 − d')) for a decay d = d(τ) held as d' = ``held_of(d)``, or None where d' is d (within
    ``HELD_TOLERANCE``) or 1 (no gain can be kept)."""
    d = decay(tau, interpretation)
    held = held_of(d)
    if np.all(np.abs(held - d) <= HELD_TOLERANCE) or np.any(held >= 1.0):
        return None
    return _tau_for(held, interpretation), (1 - d) / (1 - held)


def at_chip_decays(graph: nir.NIRGraph, interpretation: Interpretation) -> nir.NIRGraph:
    """A copy of ``graph`` whose foreign neuron nodes run the decays Loihi 2 holds (module docstring); the input
    gains, leak terms and everything else are unchanged."""
    return held_decays(graph, interpretation)[0]


def held_decays(graph: nir.NIRGraph, interpretation: Interpretation) -> tuple[nir.NIRGraph, list[str]]:
    """``at_chip_decays``'s graph and the neuron nodes it rewrote (nested ones as ``<graph>.<node>``): those whose
    decays the chip holds other than the graph's."""
    out = copy.deepcopy(graph)
    return out, _hold_decays(out, interpretation, "")


def _hold_decays(graph: nir.NIRGraph, interpretation: Interpretation, prefix: str) -> list[str]:
    """Rewrite ``graph``'s nodes in place; a nested graph's nodes are read as ``<graph>.<node>``; returns the names
    rewritten."""
    moved: list[str] = []
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            moved += _hold_decays(node, interpretation, f"{prefix}{name}.")
            continue
        if not isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF, nir.CubaLI)) or \
                snnchip_semantics(node, name) is not None:
            continue
        at = interpretation.at(f"{prefix}{name}")
        current = isinstance(node, (nir.CubaLIF, nir.CubaLI))
        membrane = _retimed(node.tau_mem if current else node.tau, chip_membrane_decay, at)
        if membrane is not None:
            tau, gain = membrane
            node.r, node.v_leak = np.asarray(node.r, np.float64) * gain, np.asarray(node.v_leak, np.float64) * gain
            if current:
                node.tau_mem = tau
            else:
                node.tau = tau
        syn = _retimed(node.tau_syn, chip_current_decay, at) if current else None
        if syn is not None:
            node.tau_syn, gain = syn
            if at.current_input != "unit":  # b_syn = (1 − d_syn)·w_in; "unit" adds w_in whole
                node.w_in = np.asarray(node.w_in, np.float64) * gain
        if membrane is not None or syn is not None:
            moved.append(f"{prefix}{name}")
    return moved
