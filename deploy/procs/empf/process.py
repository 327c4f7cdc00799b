"""The EMPF process (ports and variables only; the equations are in ``models.py``)."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.procs.lava_api import AbstractProcess, InPort, OutPort, Var
from snnchip.export.loihi2 import V_MAX


class EMPF(AbstractProcess):
    """Graded EM-PF neuron (``snnchip.neurons.empf_step``, docs/nir-schema.md), one step per Lava step, with input
    a_in and step row t of the tables; it sends s.

    The tables (``lam``, ``scale``, ``theta``, ``offset``: [T, n]) are held by the process; a step counter
    ``t`` (set to 0 between samples) picks row ``t − delay − 1``, so the stage at Lava latency ``delay`` is
    active at Lava steps delay + 1 .. delay + T and idle (v kept, nothing sent) otherwise. ``u`` holds m.
    fixed_pt: lq = 4096·λ̂, aq, th = 64·c·θ̂, r = 64·c·r̂ integers, the message shift and the message cap
    (``snnchip.deploy.fixed_point.empf_step_fixed``); floating_pt: the float tables.
    """

    def __init__(self, *, shape: tuple[int, ...], lam: np.ndarray, scale: np.ndarray, theta: np.ndarray,
                 offset: np.ndarray, delay: int, shift: int = 0, cap: int = V_MAX, name: str | None = None) -> None:
        super().__init__(shape=shape, delay=delay, shift=shift, cap=cap, name=name)
        T = np.shape(lam)[0]
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.t = Var(shape=(1,), init=0)
        self.lam = Var(shape=(T, *shape), init=lam)
        self.scale = Var(shape=(T, *shape), init=scale)
        self.theta = Var(shape=(T, *shape), init=theta)
        self.offset = Var(shape=(T, *shape), init=offset)
