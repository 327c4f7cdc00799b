"""Bit-exact, batched NumPy simulator of a deployment's Lava fixed-point process graph.

It evaluates exactly the arithmetic of the processes ``snnchip.deploy`` instantiates (Lava's
Dense or Sparse (a CSR stage: scipy sparse product), Lava's LIF, our SubLIF, CubaLIF (SRM), EMPF and Integrator:
``snnchip.deploy.fixed_point``), for a whole batch at once. Stage k (1-based) at software step t sees
    a = dense(w, e, x_{k-1}[t]) + bias·[t ≤ T],   x_0 = graded input round(x·2^q), x_k = spikes of stage k
(x_k = the graded messages of an EM-PF stage, whose tables' row t applies at step t ≤ T), which is what
Lava computes at Lava step t + k (one step of latency per Dense; biases are injected
in step with the stage's first input). The simulator runs T + depth software steps (zero input
after T) so that ``timing="lava"`` can return every stage on Lava's own clock, step for step.
"""

from __future__ import annotations

import os

import numpy as np

from snnchip.deploy.fixed_point import (
    dense_fixed,
    effective_weights,
    empf_step_fixed,
    neuron_step_fixed,
    srm_step_fixed,
)
from snnchip.deploy.result import RunResult, assemble, check_input, check_timing, join_batches
from snnchip.export.loihi import Deployment, load_deploy
from snnchip.export.quantize import encode_input

CHUNK = 1024  # samples simulated at a time


def to_lava_timing(a: np.ndarray, k: int, steps: int) -> np.ndarray:
    """Software-time array [steps, B, ...] -> Lava's clock [steps, B, ...] for latency k (zeros before)."""
    out = np.zeros((steps, *a.shape[1:]), dtype=a.dtype)
    out[k:] = a[: steps - k]
    return out


class ChipSimulator:
    """Run a deployment's fixed-point arithmetic: ``ChipSimulator(deploy_dir_or_deployment).run(x)``."""

    def __init__(self, deployment: Deployment | str | os.PathLike) -> None:
        self.dep = deployment if isinstance(deployment, Deployment) else load_deploy(deployment)
        self.weights = [effective_weights(q.weight) for q in self.dep.qnet.stages]

    def run(self, x: np.ndarray, timing: str = "software", states: bool = True, chunk: int = CHUNK) -> RunResult:
        """Simulate inputs ``x`` [T, B, *input_shape] (float); ``timing`` "software" or "lava".

        Samples run ``chunk`` at a time (they are independent), so the per-step buffers stay bounded; u and v of
        every stage are kept only with ``states`` (for B samples they are 2·(T + depth)·B·Σn int64 values).
        """
        check_timing(timing)
        xs = check_input(x, self.dep.qnet.input_shape, self.dep.T)
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        return join_batches([self._run(xs[:, b:b + chunk], timing, states) for b in range(0, xs.shape[1], chunk)])

    def _run(self, xs: np.ndarray, timing: str, states: bool) -> RunResult:
        """One chunk of checked inputs ``xs`` [T, b, n_in]."""
        dep, qnet = self.dep, self.dep.qnet
        T, depth = dep.T, dep.depth
        steps = T + depth
        B = xs.shape[1]
        feed = np.zeros((steps, B, xs.shape[2]), dtype=np.int64)
        feed[:T] = encode_input(xs, qnet.input_frac_bits)
        u, v, s = {}, {}, {}
        for k, (q, w) in enumerate(zip(qnet.stages, self.weights, strict=True), start=1):
            n = w.shape[0]
            ut = vt = np.zeros((B, n), dtype=np.int64)
            us, vs, ss = (np.zeros((steps, B, n), dtype=dt) for dt in (np.int64, np.int64, bool))
            msgs = np.zeros((steps, B, n), dtype=np.int64) if q.graded else None
            for t in range(steps):
                a = dense_fixed(w, q.weight_exp, feed[t])
                if t < T:
                    a = a + q.bias
                if q.graded:  # row t of the tables; idle (v kept, nothing sent) after the stage's T steps
                    tb, row = q.tables, min(t, T - 1)
                    us[t], vs[t], msgs[t] = empf_step_fixed(vt, a, tb["lam"][row], tb["scale"][row],
                                                            tb["theta"][row], tb["offset"][row], q.shift, t < T)
                    ss[t] = msgs[t] != 0
                elif q.kind == "srm":
                    us[t], vs[t], ss[t] = srm_step_fixed(ut, vt, a, q.du, q.dv, q.vth, q.spike)
                else:
                    us[t], vs[t], ss[t] = neuron_step_fixed(vt, a, q.dv, q.vth, q.reset, q.spike, q.spiking)
                ut, vt = us[t], vs[t]
            feed = msgs if q.graded else ss
            s[q.name] = to_lava_timing(ss, k, steps)
            if states or k == depth:  # the readout's v is the output
                u[q.name], v[q.name] = to_lava_timing(us, k, steps), to_lava_timing(vs, k, steps)
        return assemble(qnet.stages, u, v, s, T, timing, fixed=True, keep_states=states)
