"""Bit-exact, batched NumPy simulator of a deployment's Lava fixed-point process graph.

It evaluates exactly the arithmetic of the processes ``snnchip.deploy`` instantiates (Lava's Dense/Sparse and their
Delay variants, Lava's LIF, our CubaLIF and EMPF: ``snnchip.deploy.fixed_point``), for a whole batch at once, in
software time. Stage n at step t sees

    a = Σ_p dense(w_p, e_p, x_{source(p)}[t − d_p]) + bias·[t < T]

(x_input = the graded input round(x·2^q), x_n = the spikes of stage n, the graded messages of an EM-PF stage or the
spike counts of a stage that sends several per step,
zero before step 0), which is what Lava computes at Lava step t + latency(n): each Dense hop takes one step and a
projection's extra synaptic delay re-aligns paths of different depth. The simulator runs T + depth steps (zero
input after T) so that ``timing="lava"`` can return every stage on Lava's own clock, step for step.
"""

from __future__ import annotations

import os

import numpy as np

from snnchip.deploy.fixed_point import (
    dense_fixed,
    effective_weights,
    empf_step_fixed,
    fire_fixed,
    integrate_fixed,
    state_overflow,
)
from snnchip.deploy.result import RunResult, accept_input, assemble, check_timing, join_batches
from snnchip.errors import SpecError
from snnchip.export.loihi import Deployment, load_deploy
from snnchip.export.loihi2 import EMPF_INT_TABLES
from snnchip.export.lowering import INPUT
from snnchip.export.qnet import QStage, encode_input
from snnchip.spec import NeuronKind

CHUNK = 1024  # samples simulated at a time
OVERFLOWS = ("u_wrapped", "v_clipped_top", "v_clipped_bottom")  # meta["saturation"]'s counts (``state_overflow``)
GRADED_OVERFLOWS = ("v_clipped_top", "v_clipped_bottom", "message_capped")  # an EM-PF stage's: its membrane m
# clipped (only where the data headroom sized it below the worst case) and graded messages cut at its message cap
OVERFLOW_WORDS = {"u_wrapped": "current wrapped", "v_clipped_top": "membrane clipped at the top",
                  "v_clipped_bottom": "at the bottom", "message_capped": "graded messages capped"}


def overflows(q: QStage) -> tuple[str, ...]:
    """The saturation counts of a stage: its membrane's and messages' for an EM-PF stage, its state's otherwise."""
    return GRADED_OVERFLOWS if q.graded else OVERFLOWS


def to_lava_timing(a: np.ndarray, k: int, steps: int) -> np.ndarray:
    """Software-time array [steps, B, ...] -> Lava's clock [steps, B, ...] for latency k (zeros before)."""
    out = np.zeros((steps, *a.shape[1:]), dtype=a.dtype)
    out[k:] = a[: steps - k]
    return out


def saturation_lines(counts: dict[str, dict[str, int]], updates: dict[str, int]) -> list[str]:
    """``meta["saturation"]`` in words: per stage, the wrapped currents and clipped membranes (an EM-PF stage: the
    capped messages) among its ``updates`` (steps × samples × neurons), or that none left its range."""
    hit = {k: c for k, c in counts.items() if any(c.values())}
    if not hit:
        return ["saturation: none (no current wrapped, no membrane clipped, no graded message capped in any stage)"]
    return ["saturation (updates that left the 24-bit state or the message cap; Lava does the same):"] + [
        f"  {k:<20} " + ", ".join(f"{OVERFLOW_WORDS[key]} {n} ({n / updates[k]:.3%})" for key, n in c.items())
        + f" of {updates[k]}" for k, c in hit.items()]


class ChipSimulator:
    """Run a deployment's fixed-point arithmetic: ``ChipSimulator(deploy_dir_or_deployment).run(x)``."""

    def __init__(self, deployment: Deployment | str | os.PathLike) -> None:
        self.dep = deployment if isinstance(deployment, Deployment) else load_deploy(deployment)
        self.weights = {q.name: [[(effective_weights(m), e) for m, e in p.parts] for p in q.inputs]
                        for q in self.dep.qnet.stages}

    def run(self, x: np.ndarray, timing: str = "software", states: bool = True, chunk: int = CHUNK,
            clip: bool = False, progress: bool = False) -> RunResult:
        """Simulate inputs ``x`` [T, B, *input_shape] (float); ``timing`` "software" or "lava"; ``progress``: a bar
        per chunk on stderr. Inputs outside the
        deployment's range are refused, or with ``clip`` clipped (``accept_input``; ``meta["clipped_inputs"]``).

        Samples run ``chunk`` at a time (they are independent), so the per-step buffers stay bounded; u and v of
        every stage are kept only with ``states`` (for B samples they are 2·T·B·Σn int64 values, 2·(T + depth)·B·Σn in
        Lava timing).
        ``meta["saturation"]`` counts, per LIF-family stage, the (step, sample, neuron) updates of the steps the timing
        shows (software: T per stage; lava: T + depth) whose current wrapped
        or whose membrane clipped at the top or the bottom (``state_overflow``; Lava does the same): 0 under the
        T-step headroom; under a one-step or data headroom, where inputs went beyond what it was sized for (a
        membrane driven far below zero clips at the bottom, which changes a spike only if it climbs back).
        """
        check_timing(timing)
        xs, clipped = accept_input(x, self.dep.qnet, clip)
        if chunk < 1:
            raise SpecError(f"chunk (samples simulated at once) must be at least 1, got {chunk}; pass chunk ≥ 1")
        from tqdm import tqdm

        starts = tqdm(range(0, xs.shape[1], chunk), desc="chip", unit="chunk", disable=not progress, leave=False)
        parts = [self._run(xs[:, b:b + chunk], timing, states) for b in starts]
        res = join_batches(parts)
        res.meta["clipped_inputs"] = clipped
        res.meta["saturation"] = {q.name: {k: sum(p.meta["saturation"][q.name][k] for p in parts)
                                           for k in overflows(q)} for q in self.dep.qnet.stages}
        return res

    def _run(self, xs: np.ndarray, timing: str, states: bool) -> RunResult:
        """One chunk of checked inputs ``xs`` [T, b, n_in]."""
        qnet = self.dep.qnet
        T = self.dep.T
        steps = T + qnet.depth
        B = xs.shape[1]
        msgs = {INPUT: np.zeros((steps, B, xs.shape[2]), dtype=np.int64)}
        msgs[INPUT][:T] = encode_input(xs, qnet.input_frac_bits)
        # software timing shows each stage's steps 0 .. T − 1 only, and no step depends on a later one: a deep net
        # would otherwise run every stage T + depth − latency steps (ResNet-18 at T = 4: up to 21 for 4 shown)
        shown = T if timing == "software" else steps
        kept = [q for q in qnet.stages if states or q.name == qnet.output]  # the readout's v is the output
        u = {q.name: np.zeros((shown, B, q.size), dtype=np.int64) for q in kept}
        v = {k: np.zeros_like(a) for k, a in u.items()}
        last = {q.name: (np.zeros((B, q.size), np.int64),) * 2 for q in qnet.stages}  # u, v of the step before
        s = {q.name: np.zeros((shown, B, q.size), dtype=bool) for q in qnet.stages}
        # a spiking stage's messages are its spikes (the same array); an EM-PF stage's are graded, a stage sending
        # several spikes per step sends their count: those are kept only as long as a projection reads them, in a
        # ring of 1 + the longest delay of the projections from it (step t in row t mod that)
        ring = {INPUT: steps}
        for q in qnet.stages:
            for p in q.inputs:
                ring[p.source] = max(ring.get(p.source, 1), p.delay + 1)
        for q in qnet.stages:
            graded = q.graded or q.max_spikes > 1
            ring[q.name] = ring.get(q.name, 1) if graded else shown
            msgs[q.name] = np.zeros((ring[q.name], B, q.size), dtype=np.int64) if graded else s[q.name]
        over = {q.name: dict.fromkeys(overflows(q), 0) for q in qnet.stages}
        for t in range(shown):
            for q in qnet.stages:
                if t >= steps - q.latency:  # past the run on Lava's clock (t + latency ≥ steps): never read
                    continue
                n, a = q.name, None
                for p, parts in zip(q.inputs, self.weights[n], strict=True):
                    if t >= p.delay:
                        for w, e in parts:
                            part = dense_fixed(w, e, msgs[p.source][(t - p.delay) % ring[p.source]])  # a new array
                            a = part if a is None else np.add(a, part, out=a)
                a = np.zeros((B, q.size), np.int64) if a is None else a
                if t < T:
                    a += q.bias
                u0, v0 = last[n]
                if q.graded:  # row t of the tables; idle (v kept, nothing sent) after the stage's T steps
                    row = min(t, T - 1)
                    u1, v1, sent, counts = empf_step_fixed(v0, a, *(q.tables[k][row] for k in EMPF_INT_TABLES),
                                                           q.shift, t < T, q.message_cap)
                    msgs[n][t % ring[n]] = sent
                    s[n][t] = sent != 0
                    for key, count in zip(GRADED_OVERFLOWS, counts, strict=True):
                        over[n][key] += count
                else:
                    pre, u1, membrane, v1 = integrate_fixed(u0, v0, a, q.du, q.dv)
                    for key, count in zip(OVERFLOWS, state_overflow(pre, u1, membrane, v1), strict=True):
                        over[n][key] += count
                    srm = q.kind == NeuronKind.SRM
                    u1, v1, fired = fire_fixed(u1, v1, q.vth, q.reset, q.spike, q.spiking, srm, q.vsub,
                                               s[n][t - 1] if t else None, q.max_spikes)
                    s[n][t] = fired
                    if q.max_spikes > 1:
                        msgs[n][t % ring[n]] = fired
                last[n] = u1, v1
                if n in u:
                    u[n][t], v[n][t] = u1, v1

        if timing == "software":  # each stage's steps 0 .. T − 1 already
            res = assemble(qnet, u, v, s, timing, fixed=True, keep_states=states, clock="software")
        else:
            res = assemble(qnet, *({q.name: to_lava_timing(a[q.name], q.latency, steps) for q in stages}
                                   for a, stages in ((u, kept), (v, kept), (s, qnet.stages))),
                           timing, fixed=True, keep_states=states)
        res.meta["saturation"] = over
        return res
