"""The comparison harness: how two runs of the same network are compared.

``spike_agreement`` (float vs chip: the fraction of equal spike entries per layer) and ``compare_exact`` (two
chip-level runs, e.g. the bit-exact simulator and Lava: the number of differing spike and u/v entries per layer,
which must be 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def spike_agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Fraction of (t, sample, neuron) entries where the two spike tensors are equal, per layer."""
    return {k: float(np.mean(np.asarray(a[k]).astype(bool) == np.asarray(b[k]).astype(bool))) for k in a}


def compare_exact(a: Any, b: Any) -> dict[str, dict[str, int]]:
    """Number of differing entries, per layer, of the spikes and u/v states of two ``RunResult``s."""
    out: dict[str, dict[str, int]] = {}
    for layer, states in a.states.items():
        entry = out.setdefault(layer, {})
        if layer in a.spikes:
            entry["spikes"] = int(np.sum(np.asarray(a.spikes[layer]) != np.asarray(b.spikes[layer])))
        for name, va in states.items():
            entry[name] = int(np.sum(np.asarray(va) != np.asarray(b.states[layer][name])))
    return out
