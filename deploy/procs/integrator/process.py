"""The Integrator process (the readout; ports and variables only, equations in ``models.py``)."""

from __future__ import annotations

from snnchip.deploy.procs.lava_api import AbstractProcess, InPort, Var


class Integrator(AbstractProcess):
    """Non-spiking readout: u = a; v = v + u (its state is Σ_{τ≤t} o[τ]).

    fixed_pt: u = wrap24(a << 6), v saturates at ±(2^23 − 1); floating_pt: plain float sums.
    """

    def __init__(self, *, shape: tuple[int, ...], name: str | None = None) -> None:
        super().__init__(shape=shape, name=name)
        self.a_in = InPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
