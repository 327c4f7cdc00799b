"""SubLIF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import neuron_step_fixed, neuron_step_float
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


class _SubLIFModel(GuardedNeuronModel):
    """One ``step`` (fixed or float) per Lava step."""

    step = None

    def compute(self, a_in):
        return type(self).step(self.v, a_in, self.dv.item(), self.vth.item(), self.proc_params["reset"],
                               self.proc_params["spike"])


@implements(proc=SubLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySubLIFModelFixed(_SubLIFModel):
    """``neuron_step_fixed``: u = wrap24(a << 6); v = clip(decay(v, dv) + u); s = v ≥/> vth << 6; reset."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    step = staticmethod(neuron_step_fixed)


@implements(proc=SubLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySubLIFModelFloat(_SubLIFModel):
    """``neuron_step_float``: u = a; v = (1 − dv)·v + u; s = v ≥/> vth; reset."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    step = staticmethod(neuron_step_float)
