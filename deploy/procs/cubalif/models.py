"""CubaLIF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import srm_step_fixed, srm_step_float
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


class _CubaLIFModel(GuardedNeuronModel):
    """One ``step`` (fixed or float) per Lava step."""

    step = None

    def compute(self, a_in):
        return type(self).step(self.u, self.v, a_in, self.du.item(), self.dv.item(), self.vth.item(),
                               self.proc_params["spike"])


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCubaLIFModelFixed(_CubaLIFModel):
    """``srm_step_fixed``: u = wrap24(decay(u, du) + a << 6); v = clip(decay(v, dv) + u); s; u, v = 0 on s."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    du: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    step = staticmethod(srm_step_fixed)


@implements(proc=CubaLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCubaLIFModelFloat(_CubaLIFModel):
    """``srm_step_float``: u = (1 − du)·u + a; v = (1 − dv)·v + u; s = v ≥/> vth; u, v = 0 on s."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    du: np.ndarray = LavaPyType(np.ndarray, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    step = staticmethod(srm_step_float)
