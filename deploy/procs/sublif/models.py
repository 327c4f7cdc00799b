"""SubLIF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import neuron_step_fixed
from snnchip.deploy.procs.lava_api import (
    CPU,
    GuardedNeuronModel,
    LavaPyType,
    LoihiProtocol,
    PyInPort,
    PyOutPort,
    implements,
    requires,
    tag,
)
from snnchip.deploy.procs.sublif.process import SubLIF
from snnchip.neurons import lif_step


@implements(proc=SubLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySubLIFModelFixed(GuardedNeuronModel):
    """``neuron_step_fixed``: u = wrap24(a << 6); v = clip(decay(v, dv) + u); s = v ≥/> vth << 6; reset."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)

    def compute(self, a_in):
        return neuron_step_fixed(self.v, a_in, self.dv.item(), self.vth.item(), self.proc_params["reset"],
                                 self.proc_params["spike"])


@implements(proc=SubLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySubLIFModelFloat(GuardedNeuronModel):
    """``snnchip.neurons.lif_step`` with a = 1 − dv, θ = vth; u is the input current a."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)

    def compute(self, a_in):
        _, s, v = lif_step(self.v, a_in, a=1 - self.dv.item(), theta=self.vth.item(), reset=self.proc_params["reset"],
                           compare=self.proc_params["spike"])
        return a_in, v, s
