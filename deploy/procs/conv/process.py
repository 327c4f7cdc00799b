"""The Conv process (ports and variables only; the arithmetic is in ``models.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from snnchip.deploy.procs.lava_api import AbstractProcess, InPort, OutPort, Var


class Conv(AbstractProcess):
    """A convolution (``snnchip.export.kernel.Kernel``: kernel [C_out, C_in/groups, *k] and ``geometry``) between
    flat ports, with Lava Dense's arithmetic: a = (Σ_taps m·s) << e (>> −e for e < 0, floor), 8-bit mantissas
    truncated by sign mode as Dense does, binary or graded (``num_message_bits`` > 0) messages, and Dense's one
    step of latency plus ``delay`` extra steps (the whole projection delayed alike, a DelayDense of one delay).

    It exists where Lava's own ``Conv`` is not exact (``snnchip.export.loihi2.conv_on_lava``: a weight exponent,
    asymmetric padding, graded messages, an extra delay, a 1-D kernel, more than 127 groups) and for floating_pt
    (float kernel, no shift). ``a_buff`` [delay + 1, n_out] holds the sums still in flight.
    """

    def __init__(self, *, kernel: np.ndarray, geometry: dict[str, Any], weight_exp: int = 0,
                 num_message_bits: int = 0, delay: int = 0, name: str | None = None) -> None:
        super().__init__(geometry=geometry, weight_exp=weight_exp, num_message_bits=num_message_bits, delay=delay,
                         name=name)
        n_in, n_out = int(np.prod(geometry["in_shape"])), int(np.prod(geometry["out_shape"]))
        self.s_in = InPort(shape=(n_in,))
        self.a_out = OutPort(shape=(n_out,))
        self.weight = Var(shape=kernel.shape, init=kernel)
        self.a_buff = Var(shape=(delay + 1, n_out), init=0)
