"""The Lava names our process families use, resolved once through ``snnchip.lava_compat``.

It lives beside the family packages, not inside one, because Lava's compiler executes every ``.py``
file in a process's own directory when it looks for process models.
"""

from __future__ import annotations

import numpy as np

from snnchip import lava_compat

_process = lava_compat.lava_module("magma.core.process.process")
_variable = lava_compat.lava_module("magma.core.process.variable")
_proc_ports = lava_compat.lava_module("magma.core.process.ports.ports")
_decorator = lava_compat.lava_module("magma.core.decorator")
_model = lava_compat.lava_module("magma.core.model.py.model")
_py_ports = lava_compat.lava_module("magma.core.model.py.ports")
_type = lava_compat.lava_module("magma.core.model.py.type")
_resources = lava_compat.lava_module("magma.core.resources")
_protocol = lava_compat.lava_module("magma.core.sync.protocols.loihi_protocol")

# processes
AbstractProcess, Var = _process.AbstractProcess, _variable.Var
InPort, OutPort = _proc_ports.InPort, _proc_ports.OutPort
# process models
implements, requires, tag = _decorator.implements, _decorator.requires, _decorator.tag
PyInPort, PyOutPort, LavaPyType = _py_ports.PyInPort, _py_ports.PyOutPort, _type.LavaPyType
CPU, LoihiProtocol, PyLoihiProcessModel = _resources.CPU, _protocol.LoihiProtocol, _model.PyLoihiProcessModel


class GuardedNeuronModel(PyLoihiProcessModel):
    """``run_spk`` shared by our neuron families: (u, v, s) = ``compute(a_in)`` once per Lava step.

    On a failure it still sends (zero) spikes before raising, so that downstream processes do not block
    forever and Lava can report the error (the runner then surfaces it as ``DeployError``).
    """

    def compute(self, a_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        try:
            u, v, s = self.compute(a_in)
        except Exception:
            self.s_out.send(np.zeros(self.v.shape))
            raise
        self.u[:], self.v[:] = u, v
        self.s_out.send(s)
