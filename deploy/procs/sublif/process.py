"""The SubLIF process (ports and variables only; the equations are in ``models.py``)."""

from __future__ import annotations

from snnchip.deploy.procs.lava_api import AbstractProcess, InPort, OutPort, Var


class SubLIF(AbstractProcess):
    """LIF neuron (``snnchip.neurons.lif_step`` with a = 1 − dv, θ = vth, ``reset``, ``spike``), one step per Lava
    step, with input a; ``u`` holds a.

    fixed_pt: dv is a 12-bit decay (λ = 1 − dv/4096), vth a threshold mantissa compared after << 6,
    a is shifted << 6 into 24-bit u and v (``snnchip.deploy.fixed_point.neuron_step_fixed``);
    floating_pt: dv = 1 − λ and vth = θ as floats.
    """

    def __init__(self, *, shape: tuple[int, ...], dv: int | float, vth: int | float, reset: str = "subtract",
                 spike: str = "ge", name: str | None = None) -> None:
        super().__init__(shape=shape, reset=reset, spike=spike, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.dv = Var(shape=(1,), init=dv)
        self.vth = Var(shape=(1,), init=vth)
