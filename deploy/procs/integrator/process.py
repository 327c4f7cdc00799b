"""The Integrator process (the readout; ports and variables only, equations in ``models.py``)."""

from __future__ import annotations

from snnchip import lava_compat

_process = lava_compat.lava_module("magma.core.process.process")
_variable = lava_compat.lava_module("magma.core.process.variable")
_ports = lava_compat.lava_module("magma.core.process.ports.ports")


class Integrator(_process.AbstractProcess):
    """Non-spiking readout: u = a; v = v + u (its state is Σ_{τ≤t} o[τ]).

    fixed_pt: u = wrap24(a << 6), v saturates at ±(2^23 − 1); floating_pt: plain float sums.
    """

    def __init__(self, *, shape: tuple[int, ...], name: str | None = None) -> None:
        super().__init__(shape=shape, name=name)
        self.a_in = _ports.InPort(shape=shape)
        self.u = _variable.Var(shape=shape, init=0)
        self.v = _variable.Var(shape=shape, init=0)
