"""Shared by the deploy tests: drive one Lava neuron process step by step from a RingBuffer; compare two runs."""

from __future__ import annotations

import numpy as np

from snnchip import lava_compat


def run_process(proc, data: np.ndarray, cfg: str, spiking: bool = True):
    """Feed ``data`` [n, steps] into ``proc.a_in`` in ``Loihi2SimCfg(select_tag=cfg)``.

    Returns u and v per step ([steps, n]) and what ``proc.s_out`` sent per step ([steps, n], the raw message
    values; None when ``spiking`` is False). The runtime is always stopped.
    """
    Source = lava_compat.lava_module("proc.io.source").RingBuffer
    Sink = lava_compat.lava_module("proc.io.sink").RingBuffer
    RunSteps = lava_compat.lava_module("magma.core.run_conditions").RunSteps
    run_cfg = lava_compat.lava_module("magma.core.run_configs").Loihi2SimCfg(select_tag=cfg)
    n, steps = data.shape
    src = Source(data=data)
    src.s_out.connect(proc.a_in)
    sink = None
    if spiking:
        sink = Sink(shape=(n,), buffer=steps)
        proc.s_out.connect(sink.a_in)
    us, vs = [], []
    try:
        for _ in range(steps):
            src.run(condition=RunSteps(num_steps=1), run_cfg=run_cfg)
            us.append(proc.u.get())
            vs.append(proc.v.get())
        sent = sink.data.get().T if spiking else None
    finally:
        src.stop()
    return np.array(us), np.array(vs), sent


def assert_same_run(a, b) -> None:
    """Two ``RunResult``s (chip simulator, Lava) hold the same spikes and u, v of every layer at every step."""
    assert a.spikes.keys() == b.spikes.keys() and a.states.keys() == b.states.keys()
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k], err_msg=f"spikes of {k}")
    for k in a.states:
        for var in ("u", "v"):
            np.testing.assert_array_equal(a.states[k][var], b.states[k][var], err_msg=f"{var} of {k}")
