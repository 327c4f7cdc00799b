"""Integrator process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import neuron_step_fixed
from snnchip.deploy.procs.integrator.process import Integrator
from snnchip.deploy.procs.lava_api import (
    CPU,
    LavaPyType,
    LoihiProtocol,
    PyInPort,
    PyLoihiProcessModel,
    implements,
    requires,
    tag,
)
from snnchip.neurons import li_step


@implements(proc=Integrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntegratorModelFixed(PyLoihiProcessModel):
    """``neuron_step_fixed`` with dv = 0 and no spike: u = wrap24(a << 6); v = clip(v + u)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        self.u[:], self.v[:], _ = neuron_step_fixed(self.v, self.a_in.recv(), 0, 0, "zero", "gt", spiking=False)


@implements(proc=Integrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyIntegratorModelFloat(PyLoihiProcessModel):
    """``snnchip.neurons.li_step`` with a = b = 1, c = 0; u is the input current a."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        self.u[:], self.v[:] = a_in, li_step(self.v, a_in, a=1.0)
