"""EMPF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import empf_step_fixed
from snnchip.deploy.procs.empf.process import EMPF
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
from snnchip.neurons import empf_step


class _EMPFModel(GuardedNeuronModel):
    """Advance the step counter, pick the tables' row (row t − latency − 1), one ``step`` per Lava step."""

    def step(self, a_in: np.ndarray, row: int, active: bool):
        raise NotImplementedError

    def compute(self, a_in):
        self.t[0] += 1
        row = int(self.t[0]) - self.proc_params["delay"] - 1
        active = 0 <= row < self.lam.shape[0]
        return self.step(a_in, min(max(row, 0), self.lam.shape[0] - 1), active)


@implements(proc=EMPF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyEMPFModelFixed(_EMPFModel):
    """``empf_step_fixed``: m = clip(mul12(v, lq) + mul12(a << 6, aq)); s = ReLU(m − th); v = clip(m − s + r);
    msg = min(s >> shift, cap)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    t: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    lam: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    scale: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    theta: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    offset: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def step(self, a_in, row, active):
        m, v, msg, _ = empf_step_fixed(self.v, a_in, self.lam[row], self.scale[row], self.theta[row],
                                       self.offset[row], self.proc_params["shift"], active, self.proc_params["cap"])
        return m, v, msg


@implements(proc=EMPF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyEMPFModelFloat(_EMPFModel):
    """``snnchip.neurons.empf_step`` with row t of the tables; u is the potential m. An inactive step leaves v and
    sends nothing."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    t: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    lam: np.ndarray = LavaPyType(np.ndarray, float)
    scale: np.ndarray = LavaPyType(np.ndarray, float)
    theta: np.ndarray = LavaPyType(np.ndarray, float)
    offset: np.ndarray = LavaPyType(np.ndarray, float)

    def step(self, a_in, row, active):
        if not active:
            z = np.zeros(np.broadcast_shapes(self.v.shape, np.shape(a_in)))
            return z, self.v + z, z
        m, s, v = empf_step(self.v, a_in, lam=self.lam[row], scale=self.scale[row], theta=self.theta[row],
                            offset=self.offset[row])
        return m, v, s
