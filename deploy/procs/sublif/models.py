"""SubLIF process models: fixed_pt (bit-exact chip arithmetic) and floating_pt. NumPy only."""

from __future__ import annotations

import numpy as np

from snnchip import lava_compat
from snnchip.deploy.fixed_point import neuron_step_fixed, neuron_step_float
from snnchip.deploy.procs.sublif.process import SubLIF

_decorator = lava_compat.lava_module("magma.core.decorator")
_model = lava_compat.lava_module("magma.core.model.py.model")
_ports = lava_compat.lava_module("magma.core.model.py.ports")
_type = lava_compat.lava_module("magma.core.model.py.type")
_resources = lava_compat.lava_module("magma.core.resources")
_protocol = lava_compat.lava_module("magma.core.sync.protocols.loihi_protocol")
implements, requires, tag = _decorator.implements, _decorator.requires, _decorator.tag
PyInPort, LavaPyType = _ports.PyInPort, _type.LavaPyType
PyOutPort = _ports.PyOutPort
CPU, LoihiProtocol, PyLoihiProcessModel = _resources.CPU, _protocol.LoihiProtocol, _model.PyLoihiProcessModel


class _SubLIFModel(PyLoihiProcessModel):
    """Shared run_spk: one ``step`` per Lava step; on a failure it still sends (zero) spikes before
    raising, so that downstream processes do not block forever and Lava can report the error."""

    step = None

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        try:
            u, v, s = type(self).step(self.v, a_in, self.dv.item(), self.vth.item(), self.proc_params["reset"],
                                      self.proc_params["spike"])
        except Exception:
            self.s_out.send(np.zeros(self.v.shape))
            raise
        self.u[:], self.v[:] = u, v
        self.s_out.send(s)


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
