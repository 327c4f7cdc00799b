"""Bit-exact, batched NumPy simulator of a deployment's Lava fixed-point process graph.

It evaluates exactly the arithmetic of the processes ``snnchip.deploy`` instantiates (Lava's
Dense, Lava's LIF, our SubLIF and Integrator: ``snnchip.deploy.fixed_point``), for a whole batch at
once. Stage k (1-based) at software step t sees
    a = dense(w, e, x_{k-1}[t]) + bias·[t ≤ T],   x_0 = graded input round(x·2^q), x_k = spikes of stage k
which is what Lava computes at Lava step t + k (one step of latency per Dense; biases are injected
in step with the stage's first input). The simulator runs T + depth software steps (zero input
after T) so that ``timing="lava"`` can return every stage on Lava's own clock, step for step.
"""

from __future__ import annotations

import os

import numpy as np
from snnchip.deploy.fixed_point import dense_fixed, effective_weights, neuron_step_fixed
from snnchip.deploy.result import RunResult, check_input
from snnchip.export.loihi import Deployment, load_deploy
from snnchip.export.quantize import encode_input


def to_lava_timing(a: np.ndarray, k: int, steps: int) -> np.ndarray:
    """Software-time array [≥ steps − k, B, ...] -> Lava timing [steps, B, ...] for latency k (zeros before)."""
    out = np.zeros((steps, *a.shape[1:]), dtype=a.dtype)
    out[k:] = a[: steps - k]
    return out


class ChipSimulator:
    """Run a deployment's fixed-point arithmetic: ``ChipSimulator(deploy_dir_or_deployment).run(x)``."""

    def __init__(self, deployment: Deployment | str | os.PathLike) -> None:
        self.dep = deployment if isinstance(deployment, Deployment) else load_deploy(deployment)
        self.weights = [effective_weights(q.weight) for q in self.dep.qnet.stages]

    def run(self, x: np.ndarray, timing: str = "software") -> RunResult:
        """Simulate inputs ``x`` [T, B, *input_shape] (float); ``timing`` "software" or "lava"."""
        dep, qnet = self.dep, self.dep.qnet
        T, depth = dep.T, dep.depth
        steps = T + depth
        xs = check_input(x, qnet.input_shape, T)
        B = xs.shape[1]
        feed = np.zeros((steps, B, xs.shape[2]), dtype=np.int64)
        feed[:T] = encode_input(xs, qnet.input_frac_bits)
        spikes, states = {}, {}
        for q, w in zip(qnet.stages, self.weights, strict=True):
            n = w.shape[0]
            v = np.zeros((B, n), dtype=np.int64)
            us, vs, ss = (np.zeros((steps, B, n), dtype=dt) for dt in (np.int64, np.int64, bool))
            for t in range(steps):
                a = dense_fixed(w, q.weight_exp, feed[t])
                if t < T:
                    a = a + q.bias
                us[t], vs[t], ss[t] = neuron_step_fixed(v, a, q.dv, q.vth, q.reset, q.spike, q.spiking)
                v = vs[t]
            feed = ss
            spikes[q.name], states[q.name] = ss, {"u": us, "v": vs}
        latency = {q.name: k for k, q in enumerate(qnet.stages, start=1)}
        last = qnet.stages[-1]
        if timing == "software":
            cut = {name: a[:T] for name, a in spikes.items()}
            st = {name: {key: a[:T] for key, a in d.items()} for name, d in states.items()}
        elif timing == "lava":
            cut = {name: to_lava_timing(a, latency[name], steps) for name, a in spikes.items()}
            st = {name: {key: to_lava_timing(a, latency[name], steps) for key, a in d.items()}
                  for name, d in states.items()}
        else:
            raise ValueError(f"timing must be 'software' or 'lava', got {timing!r}")
        raw = st[last.name]["v"] if not last.spiking else cut[last.name].astype(np.int64)
        output = raw / (64.0 * last.scale) if not last.spiking else raw.astype(np.float64)
        shape = {q.name: q.out_shape for q in qnet.stages}
        return RunResult(
            output=output, output_raw=raw,
            spikes={q.name: cut[q.name].reshape(-1, B, *q.out_shape) for q in qnet.stages if q.spiking},
            states={k: {key: a.reshape(a.shape[0], B, *shape[k]) for key, a in d.items()} for k, d in st.items()},
            latency=latency, timing=timing)
