"""CubaLIF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import srm_step_fixed
from snnchip.deploy.procs.cubalif.process import CubaLIF
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
from snnchip.neurons import cuba_lif_step


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCubaLIFModelFixed(GuardedNeuronModel):
    """``srm_step_fixed``: u = wrap24(decay(u, du) + a << 6); v = clip(decay(v, dv) + u); s; u, v = 0 on s."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)

    def compute(self, a_in):
        return srm_step_fixed(self.u, self.v, a_in, self.du.item(), self.dv.item(), self.vth.item(),
                              self.proc_params["spike"])


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaLIFModelFloat(GuardedNeuronModel):
    """``snnchip.neurons.cuba_lif_step`` with a_syn = 1 − du, b_syn = 1, a = 1 − dv, θ = vth, reset ``zero`` of both
    traces; u is the current i."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)

    def compute(self, a_in):
        _, s, i, v = cuba_lif_step(self.u, self.v, a_in, a_syn=1 - self.du.item(), b_syn=1.0, a=1 - self.dv.item(),
                                   theta=self.vth.item(), reset="zero", compare=self.proc_params["spike"],
                                   reset_current=True)
        return i, v, s
