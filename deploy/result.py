"""What every chip backend (hw_sim's bit-exact simulator, the Lava network) returns from a run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from snnchip.atomic import atomic_path
from snnchip.errors import DeployError


def check_input(x: np.ndarray, input_shape: tuple[int, ...], T: int) -> np.ndarray:
    """Validate ``x`` [T, B, *input_shape]; return it as float64 [T, B, n_in]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or tuple(x.shape[2:]) != tuple(input_shape) or x.shape[0] != T:
        raise DeployError(f"input has shape {x.shape}; expected [T={T}, batch, *{tuple(input_shape)}]")
    return x.reshape(x.shape[0], x.shape[1], -1)


@dataclass
class RunResult:
    """Outputs of a run, time-major.

    ``output`` [T, B, C]: the readout integrator's state Σ_{τ≤t} o[τ] in real units (for a graph
    without a readout: the last layer's spikes); ``output_raw``: the same as chip integers (None in
    floating point); ``spikes[layer]`` [T, B, *shape] bool; ``states[layer]`` {"u", "v"} [T, B, *shape]
    (u: the step's input current, v: the membrane after reset). ``timing`` is "software" (latency
    removed, t = 1..T) or "lava" (Lava's own steps, T + depth of them); ``latency[layer]`` = k means
    software step t of that layer is Lava step t + k.
    """

    output: np.ndarray
    output_raw: np.ndarray | None
    spikes: dict[str, np.ndarray]
    states: dict[str, dict[str, np.ndarray]]
    latency: dict[str, int]
    timing: str = "software"
    meta: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``output`` and ``spikes/<layer>`` (plus ``output_raw`` when present) to an .npz, atomically."""
        arrays = {"output": self.output, **{f"spikes/{k}": v for k, v in self.spikes.items()}}
        if self.output_raw is not None:
            arrays["output_raw"] = self.output_raw
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
