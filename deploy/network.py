"""A deployment as a Lava process graph, run sample by sample in ``Loihi2SimCfg``.

Per stage: a neuron process (Lava's ``LIF`` wherever it is exact: reset to zero and ``>``, with or without a current
kept through the spike, and every readout as a LIF that never fires; our ``CubaLIF`` for subtractive reset, ``>=``
or a current reset; our ``EMPF`` for graded neurons) → ``io.sink.RingBuffer`` recording its spikes, and per
projection a ``Dense`` (``Sparse`` for CSR weights) from its source (the input ``io.source.RingBuffer`` of graded
spikes, or a stage's spikes, recurrent ones included) into the neuron, a ``DelayDense``/``DelaySparse`` when the
projection needs extra delay to stay aligned (``snnchip.export.schedule``; on the CPU these two run on
our models of them, ``snnchip.deploy.procs.delay``, which build Lava's per-delay matrices once); with wide weights
two of them side by side, the mantissas' and their residual's (floating_pt: one, of the float weights). Every hop
takes one Lava step: software step t of a stage with latency k is Lava step t + k; a sample runs T + depth steps.
A stage with a bias gets its own source RingBuffer wired straight into the neuron's input, active at Lava steps k + 1 ..
k + T only, so that the bias starts with the stage's first input (Lava's ``bias_mant`` would act from step 1).
Between samples every state (u, v, synaptic buffers) is set back to zero.

fixed_pt uses the integer parameters (bit-exact with ``snnchip.hw_sim.chip``); floating_pt uses the float stages
(weights W, bias b, du = 1 − λ_syn, dv = 1 − λ, vth = θ) on the same graph. Lava's ``Sparse`` has the
weight_exp / sign-mode / num_message_bits semantics of ``Dense`` (its bit-accurate model is Dense's with a CSR
product), so the two are interchangeable per projection; its weights must be a ``scipy.sparse.csr_matrix`` (Lava
clips and truncates only ``spmatrix`` instances, not the newer ``csr_array``).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np
from scipy.sparse import SparseEfficiencyWarning, issparse

from snnchip import lava_compat
from snnchip.deploy.result import RunResult, accept_input, assemble, check_timing
from snnchip.deploy.supervise import supervised
from snnchip.errors import DeployError
from snnchip.export.loihi import Deployment, load_deploy
from snnchip.export.loihi2 import (
    BUILTIN,
    EMPF_TABLES,
    V_MAX,
    LavaProcess,
    SynapseLayout,
    neuron_process,
    synapse_process,
)
from snnchip.export.lowering import INPUT
from snnchip.export.qnet import encode_input
from snnchip.export.weight_grid import with_values
from snnchip.spec import NeuronKind

CFGS = ("fixed_pt", "floating_pt")


def hardware_processes(dep: Deployment) -> dict[str, Any]:
    """The Lava processes a deployment runs on, each marked Lava built-in (Intel's lava-loihi extension has Loihi 2
    models for them) or snnchip custom (Python models only: on hardware it needs custom neuron microcode)."""
    rows = [{"stage": "input", "process": LavaProcess.RING_BUFFER, "role": "graded input spikes"}]
    for q in dep.qnet.stages:
        rows += [{"stage": q.name, "process": synapse_process(p),
                  "role": f"synapses from {p.source}" + (" (wide weights' residual)" if part else "")}
                 for p in q.inputs for part in range(len(p.parts))]
        rows.append({"stage": q.name, "process": neuron_process(q), "role": "neurons" if q.spiking else "readout"})
        if np.any(np.asarray(q.bias) != 0):
            rows.append({"stage": q.name, "process": LavaProcess.RING_BUFFER, "role": "bias, injected from the stage's "
                         "first input step (a host-side source on hardware)"})
    for r in rows:
        r["builtin"] = r["process"] in BUILTIN
    custom = sorted({r["process"] for r in rows if not r["builtin"]})
    return {"processes": rows, "builtin_only": not custom, "custom": custom}


def _delays(weights: Any, delay: int) -> Any:
    """A projection's delay matrix: ``delay`` at every synapse, CSR on a CSR matrix's entries (an integer would make
    Lava's ``DelaySparse`` hold a dense [n_out, n_in] matrix of it)."""
    return with_values(weights, np.full(weights.nnz, delay, dtype=int)) if issparse(weights) else delay


class _Graph:
    """The processes of one run configuration, built for a given first sample."""

    def __init__(self, dep: Deployment, fixed: bool, first: np.ndarray) -> None:
        lava_compat.import_lava()
        dense = lava_compat.lava_module("proc.dense.process")
        sparse = lava_compat.lava_module("proc.sparse.process")
        LIF = lava_compat.lava_module("proc.lif.process").LIF
        Source = lava_compat.lava_module("proc.io.source").RingBuffer
        Sink = lava_compat.lava_module("proc.io.sink").RingBuffer
        from snnchip.deploy.procs.cubalif.process import CubaLIF
        from snnchip.deploy.procs.empf.process import EMPF

        T, steps = dep.T, dep.T + dep.depth
        self.source = Source(data=first)
        self.synapses, self.neurons, self.sinks = [], [], []
        for st, q in zip(dep.net.stages, dep.qnet.stages, strict=True):
            n = q.size
            kind = neuron_process(q)
            if fixed:
                bias, dv, du, vth = q.bias.astype(np.int64), q.dv, q.du, q.vth
            else:
                bias, dv, du, vth = st.bias, 1.0 - st.lam, 1.0 - st.lam_syn, st.theta if q.spiking else np.inf
            if kind == LavaProcess.LIF:
                neuron = LIF(shape=(n,), du=du, dv=dv, vth=vth, bias_mant=0 if fixed else 0.0, bias_exp=0,
                             name=q.name)
            elif kind == LavaProcess.OUR_EMPF:
                tabs = {qk: q.tables[qk] if fixed else st.tables[fk] for fk, qk in EMPF_TABLES}
                neuron = EMPF(shape=(n,), delay=q.latency, shift=q.shift if fixed else 0,
                              cap=q.message_cap if fixed else V_MAX, name=q.name, **tabs)
            else:
                vsub = (q.vsub if fixed else st.reset_by) if q.vsub is not None else vth
                neuron = CubaLIF(shape=(n,), du=du, dv=dv, vth=vth, vsub=vsub, reset=q.reset, spike=q.spike,
                                 reset_current=q.kind == NeuronKind.SRM, max_spikes=q.max_spikes, name=q.name)
            if np.any(bias != 0):
                schedule = np.zeros((n, steps), dtype=np.int64 if fixed else np.float64)
                schedule[:, q.latency:q.latency + T] = bias[:, None]
                Source(data=schedule).s_out.connect(neuron.a_in)
            if q.spiking:
                sink = Sink(shape=(n,), buffer=steps)
                neuron.s_out.connect(sink.a_in)
                self.sinks.append(sink)
            else:
                self.sinks.append(None)
            self.neurons.append(neuron)
        out_port = {q.name: neuron.s_out for q, neuron in zip(dep.qnet.stages, self.neurons, strict=True)}
        out_port[INPUT] = self.source.s_out
        for st, q, neuron in zip(dep.net.stages, dep.qnet.stages, self.neurons, strict=True):
            for p, real in zip(q.inputs, st.inputs, strict=True):
                if p.synapse == SynapseLayout.CONV:
                    self._conv(p, real, fixed, out_port[p.source], neuron.a_in)
                    continue
                module = sparse if p.synapse == SynapseLayout.SPARSE else dense
                process = synapse_process(p).removeprefix("lava.")  # Dense, Sparse, DelayDense or DelaySparse
                for weights, exp in p.parts if fixed else ((real.weight, None),):
                    w = weights.astype(np.int32) if fixed else weights
                    kw = dict(weights=w, num_message_bits=p.num_message_bits,
                              **({"weight_exp": exp} if fixed else {}),
                              **({"delays": _delays(w, p.lava_delay)} if p.lava_delay else {}))
                    conn = getattr(module, process)(**kw)
                    out_port[p.source].connect(conn.s_in)
                    conn.a_out.connect(neuron.a_in)
                    self.synapses.append(conn)

    def _conv(self, p: Any, real: Any, fixed: bool, source: Any, target: Any) -> None:
        """A weight-shared projection: Lava's own ``Conv`` where it is exact (``loihi2.synapse_process``), its ports
        adapted to Lava's (W, H, C) layout by transposes; our ``Conv`` otherwise and for floating_pt."""
        from snnchip.deploy.procs.conv.process import Conv

        if fixed and synapse_process(p) == LavaProcess.CONV:
            LavaConv = lava_compat.lava_module("proc.conv.process").Conv
            for m, _ in p.parts:
                k = m.kernel
                conn = LavaConv(weight=np.ascontiguousarray(k[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)).astype(np.int32),
                                input_shape=tuple(m.in_shape[::-1]), padding=tuple(m.pad_before[::-1]),
                                stride=tuple(m.stride[::-1]), dilation=tuple(m.dilation[::-1]), groups=m.groups,
                                num_message_bits=p.num_message_bits)
                source.reshape(m.in_shape).transpose([2, 1, 0]).connect(conn.s_in)
                conn.a_out.transpose([2, 1, 0]).reshape((m.shape[0],)).connect(target)
                self.synapses.append(conn)
            return
        for m, e in p.parts if fixed else ((real.weight, 0),):
            conn = Conv(kernel=m.kernel.astype(np.int32) if fixed else m.kernel, geometry=m.geometry(),
                        weight_exp=e, num_message_bits=p.num_message_bits, delay=p.lava_delay)
            source.connect(conn.s_in)
            conn.a_out.connect(target)
            self.synapses.append(conn)

    def reset(self, data: np.ndarray) -> None:
        self.source.data.set(data)
        for conn in self.synapses:
            buffer = conn.a_buff if "a_buff" in conn.vars.member_names else conn.a_buf  # Lava's Conv: a_buf
            buffer.set(np.zeros(buffer.shape))
        for neuron in self.neurons:
            neuron.u.set(np.zeros(neuron.u.shape))
            neuron.v.set(np.zeros(neuron.v.shape))
            if "t" in neuron.vars.member_names:  # EMPF: its step counter picks the tables' row
                neuron.t.set(np.zeros(1))
            if "sp" in neuron.vars.member_names:  # CubaLIF: the previous step's spikes (zero_next)
                neuron.sp.set(np.zeros(neuron.sp.shape))


class LavaNetwork:
    """``build(deploy_dir).run(x, cfg)``: the deployment in Lava's Loihi 2 simulator."""

    def __init__(self, deployment: Deployment) -> None:
        self.dep = deployment

    def run(self, x: np.ndarray, cfg: str = "fixed_pt", timing: str = "software", states: bool = True,
            deadline: float | None = None, clip: bool = False, progress: bool = False) -> RunResult:
        """Run inputs ``x`` [T, B, *input_shape]; ``states=False`` skips the per-step u/v reads (faster);
        ``progress``: a progress bar of Lava steps on stderr.
        ``deadline`` (a ``time.monotonic()`` value): start no sample after it (at least one runs); the result then
        holds the samples that ran, the first ones of ``x``. Inputs outside the deployment's range are refused, or
        with ``clip`` clipped (``accept_input``; ``meta["clipped_inputs"]``)."""
        with warnings.catch_warnings():  # Lava's DelaySparse edits CSR matrices in place every step (scipy warns)
            warnings.simplefilter("ignore", SparseEfficiencyWarning)
            return self._run(x, cfg, timing, states, deadline, clip, progress)

    def _run(self, x: np.ndarray, cfg: str, timing: str, states: bool, deadline: float | None, clip: bool,
             progress: bool = False) -> RunResult:
        from tqdm import tqdm

        from snnchip.deploy.procs.delay.models import exception_models

        if cfg not in CFGS:
            raise DeployError(f"unknown Lava run configuration {cfg!r}; valid: {', '.join(CFGS)}")
        check_timing(timing)
        dep, qnet = self.dep, self.dep.qnet
        T, steps, fixed = dep.T, dep.T + dep.depth, cfg == "fixed_pt"
        xs, clipped = accept_input(x, qnet, clip)
        feed = encode_input(xs, qnet.input_frac_bits) if fixed else xs
        B = xs.shape[1]

        def sample(b: int) -> np.ndarray:
            data = np.zeros((feed.shape[2], steps), dtype=feed.dtype)
            data[:, :T] = feed[:, b].T
            return data

        RunSteps = lava_compat.lava_module("magma.core.run_conditions").RunSteps
        run_cfg = lava_compat.lava_module("magma.core.run_configs").Loihi2SimCfg(
            select_tag=cfg, exception_proc_model_map=exception_models(cfg))
        dtype = np.int64 if fixed else np.float64
        names = [q.name for q in qnet.stages]
        u = {q.name: np.zeros((steps, B, q.size), dtype) for q in qnet.stages}
        v = {k: np.zeros_like(a) for k, a in u.items()}
        s = {q.name: np.zeros((steps, B, q.size), bool) for q in qnet.stages if q.spiking}
        read = [i for i, q in enumerate(qnet.stages) if states or q.name == qnet.output]
        chunk = 1 if read else steps
        done = B
        with supervised() as lava_run:
            graph = _Graph(dep, fixed, sample(0))
            lava_run.start(graph.source, run_cfg)
            with tqdm(total=B * steps, desc=f"Lava {cfg}", unit="step", disable=not progress, leave=False) as bar:
                for b in range(B):  # a bar of Lava steps: one ResNet-18 sample is 22 steps and minutes
                    if b and deadline is not None and time.monotonic() > deadline:
                        done = b
                        break
                    if b:
                        graph.reset(sample(b))
                    for t in range(0, steps, chunk):
                        lava_run.check()
                        graph.source.run(condition=RunSteps(num_steps=chunk))
                        for i in read:
                            u[names[i]][t, b] = graph.neurons[i].u.get()
                            v[names[i]][t, b] = graph.neurons[i].v.get()
                        bar.update(chunk)
                    for name, sink in zip(names, graph.sinks, strict=True):
                        if sink is not None:
                            s[name][:, b] = sink.data.get().T != 0
        u, v, s = ({k: a[:, :done] for k, a in arrays.items()} for arrays in (u, v, s))
        res = assemble(qnet, u, v, s, timing, fixed, keep_states=states)
        res.meta["clipped_inputs"] = clipped
        return res


def build(deployment: Deployment | str | os.PathLike) -> LavaNetwork:
    """The Lava network of a deploy directory (or an in-memory ``Deployment``)."""
    return LavaNetwork(deployment if isinstance(deployment, Deployment) else load_deploy(deployment))
