"""The CubaLIF process (ports and variables only; the equations are in ``models.py``)."""

from __future__ import annotations

from snnchip.deploy.procs.lava_api import AbstractProcess, InPort, OutPort, Var


class CubaLIF(AbstractProcess):
    """Current-based LIF (the SRM of event-driven BP: ``snnchip.neurons.cuba_lif_step`` with a_syn = 1 − du,
    b_syn = 1, a = 1 − dv, θ = vth and both traces reset at a spike, where Lava's LIF keeps u), one step per Lava
    step, with input a; ``u`` holds the current i.

    fixed_pt: du, dv are 12-bit decays (factor 4096 − d, d ≤ 4096), vth a threshold mantissa compared
    after << 6, a is shifted << 6 (``snnchip.deploy.fixed_point.srm_step_fixed``); floating_pt:
    du = 1 − λ_syn, dv = 1 − λ_mem and vth = θ as floats.
    """

    def __init__(self, *, shape: tuple[int, ...], du: int | float, dv: int | float, vth: int | float,
                 spike: str = "ge", name: str | None = None) -> None:
        super().__init__(shape=shape, spike=spike, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.vth = Var(shape=(1,), init=vth)
