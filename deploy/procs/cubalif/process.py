"""The CubaLIF process (ports and variables only; the equations are in ``models.py``)."""

from __future__ import annotations

from snnchip.deploy.procs.lava_api import AbstractProcess, InPort, OutPort, Var


class CubaLIF(AbstractProcess):
    """Lava's LIF arithmetic (a current u, a membrane v) with the resets and comparisons Lava's LIF lacks: reset
    ``subtract`` (v −= vsub, vsub = θ unless told), ``zero`` or ``zero_next`` (snnTorch's: the step after a spike is
    zeroed), compare ``ge`` or ``gt``, ``reset_current`` (the SRM of event-driven BP resets u with v) and
``max_spikes`` M > 1 (Xylo's neuron: up to M spikes per step, sent as one graded count; reset subtract, ``ge``).
    ``snnchip.neurons.cuba_lif_step`` with a_syn = 1 − du, b_syn = 1, a = 1 − dv, θ = vth; one step per Lava step,
    input a; ``u`` holds the current i.

    fixed_pt: du is Lava's current register (factor 4096 − (du + 1); 4095: no current memory), dv the 12-bit
    voltage decay, vth a threshold mantissa compared after << 6, a shifted << 6
    (``snnchip.deploy.fixed_point.neuron_step_fixed``); floating_pt: du = 1 − λ_syn, dv = 1 − λ, vth = θ as floats.
    """

    def __init__(self, *, shape: tuple[int, ...], du: int | float, dv: int | float, vth: int | float,
                 vsub: int | float | None = None, reset: str = "subtract", spike: str = "ge",
                 reset_current: bool = False, max_spikes: int = 1, name: str | None = None) -> None:
        super().__init__(shape=shape, reset=reset, spike=spike, reset_current=reset_current, max_spikes=max_spikes,
                         name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.vth = Var(shape=(1,), init=vth)
        self.vsub = Var(shape=(1,), init=vth if vsub is None else vsub)  # what "subtract" removes
        self.sp = Var(shape=shape, init=0)  # the previous step's spikes ("zero_next" zeroes the next step)
