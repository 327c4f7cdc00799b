"""Conv process models: fixed_pt (Lava Dense's arithmetic on a kernel) and floating_pt. NumPy only (a Lava process
model must not call torch)."""

from __future__ import annotations

import numpy as np

from snnchip.deploy.fixed_point import effective_weights
from snnchip.deploy.procs.conv.process import Conv
from snnchip.deploy.procs.lava_api import (
    CPU,
    LavaPyType,
    LoihiProtocol,
    PyInPort,
    PyLoihiProcessModel,
    PyOutPort,
    implements,
    requires,
    tag,
)
from snnchip.export.kernel import Kernel, conv_numpy


class _ConvModel(PyLoihiProcessModel):
    """Send the oldest sum in flight, then add this step's: a_buff[−1] = ``accumulate(s_in)``."""

    def accumulate(self, s: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run_spk(self) -> None:
        self.a_out.send(self.a_buff[0])
        s = self.s_in.recv()
        try:
            a = self.accumulate(s)
        finally:
            self.a_buff[:-1] = self.a_buff[1:]
        self.a_buff[-1] = a


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvModelFixed(_ConvModel):
    """``snnchip.deploy.fixed_point.dense_fixed`` on the kernel: (Σ m·s) << e, by ``conv_numpy`` (exact int64)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buff: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def accumulate(self, s):
        p = self.proc_params
        if not hasattr(self, "_kernel"):
            self._kernel = effective_weights(Kernel.from_geometry(self.weight.astype(np.int64), p["geometry"]))
        a = conv_numpy(self._kernel, np.asarray(s, np.int64) if p["num_message_bits"] else np.asarray(s) != 0)
        e = p["weight_exp"]
        return a << e if e > 0 else a >> -e


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConvModelFloat(_ConvModel):
    """The float kernel applied to the messages (no exponent)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_buff: np.ndarray = LavaPyType(np.ndarray, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def accumulate(self, s):
        if not hasattr(self, "_kernel"):
            self._kernel = Kernel.from_geometry(self.weight, self.proc_params["geometry"])
        return conv_numpy(self._kernel, np.asarray(s, np.float64))
