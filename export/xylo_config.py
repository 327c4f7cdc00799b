"""A Xylo configuration: the integers written to the chip's registers and memories, as arrays.

One hidden population (``n_hidden`` ≤ 1000 neurons, two synaptic currents each) fed by ``n_in`` ≤ 16 input channels
and by itself (recurrent, one step later), and ``n_out`` ≤ 8 output neurons fed by the hidden spikes (one step
later). Limits: ``snnchip.xylo_limits``; the arithmetic: ``hw_sim.xylo``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from snnchip.xylo_limits import check_config

ARRAYS = ("w_in", "w_rec", "w_out", "dash_mem", "dash_syn", "dash_mem_out", "dash_syn_out", "threshold",
          "threshold_out", "bias", "bias_out")
SHIFTS = ("shift_in", "shift_rec", "shift_out")


@dataclass(frozen=True)
class XyloConfig:
    """Weights ``w_in`` [n_in, n_hidden, 2] (last axis: synapse 0 or 1), ``w_rec`` [n_hidden, n_hidden, 2] (pre,
    post, synapse), ``w_out`` [n_hidden, n_out]; the per-matrix left shifts; per neuron the decays as dashes
    (``dash_syn`` [n_hidden, 2]), thresholds and biases (biases are applied when any is non-zero)."""

    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray
    shift_in: int
    shift_rec: int
    shift_out: int
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray

    def __post_init__(self) -> None:
        for name in ARRAYS:
            object.__setattr__(self, name, np.asarray(getattr(self, name)))
        shapes = {"w_rec": (self.n_hidden, self.n_hidden, 2), "w_out": (self.n_hidden, self.n_out),
                  "dash_mem": (self.n_hidden,), "dash_syn": (self.n_hidden, 2), "threshold": (self.n_hidden,),
                  "bias": (self.n_hidden,), "dash_mem_out": (self.n_out,), "dash_syn_out": (self.n_out,),
                  "threshold_out": (self.n_out,), "bias_out": (self.n_out,)}
        if self.w_in.ndim != 3 or self.w_in.shape[2] != 2:
            raise ValueError(f"w_in must be [n_in, n_hidden, 2], got {self.w_in.shape}")
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {getattr(self, name).shape}")

    @property
    def n_in(self) -> int:
        return int(self.w_in.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.w_in.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.w_out.shape[1])

    @property
    def has_bias(self) -> bool:
        return bool(np.any(self.bias) or np.any(self.bias_out))

    def check(self, where: str = "Xylo configuration") -> XyloConfig:
        check_config(where, self)
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an integer array (params.npz)."""
        out = {name: getattr(self, name).astype(np.int64) for name in ARRAYS}
        out.update({name: np.asarray(getattr(self, name), np.int64) for name in SHIFTS})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> XyloConfig:
        """The configuration ``arrays`` wrote; ``KeyError``/``ValueError`` on a missing or malformed field."""
        fields = {name: np.asarray(arrays[name]) for name in ARRAYS}
        fields.update({name: int(np.asarray(arrays[name])) for name in SHIFTS})
        return cls(**fields)

    def replace(self, **changes: object) -> XyloConfig:
        return dataclasses.replace(self, **changes)
