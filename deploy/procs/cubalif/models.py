"""CubaLIF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import neuron_step_fixed
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
    """``neuron_step_fixed``: u = wrap24(decay(u, du + 1) + a << 6); v = clip(decay(v, dv) + u); s; reset."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)  # 0/1, or a count (max_spikes)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    vsub: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    sp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def compute(self, a_in):
        p = self.proc_params
        u, v, s = neuron_step_fixed(self.u, self.v, a_in, self.du.item(), self.dv.item(), self.vth.item(), p["reset"],
                                    p["spike"], reset_current=p["reset_current"], vsub=self.vsub.item(),
                                    s_prev=self.sp != 0, max_spikes=p["max_spikes"])
        self.sp[:] = s
        return u, v, s


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaLIFModelFloat(GuardedNeuronModel):
    """``snnchip.neurons.cuba_lif_step`` with a_syn = 1 − du, b_syn = 1, a = 1 − dv, θ = vth; u is the current i."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    vsub: np.ndarray = LavaPyType(np.ndarray, float)
    sp: np.ndarray = LavaPyType(np.ndarray, float)

    def compute(self, a_in):
        p = self.proc_params
        _, s, i, v = cuba_lif_step(self.u, self.v, a_in, a_syn=1 - self.du.item(), b_syn=1.0, a=1 - self.dv.item(),
                                   theta=self.vth.item(), reset=p["reset"], compare=p["spike"],
                                   reset_current=p["reset_current"], s_prev=self.sp, reset_by=self.vsub.item(),
                                   max_spikes=p["max_spikes"])
        self.sp[:] = s
        return i, v, s
