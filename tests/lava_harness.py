"""Drive one Lava neuron process step by step from a RingBuffer (shared by the deploy process tests)."""

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
