"""A deployment as a Lava process graph, run sample by sample in ``Loihi2SimCfg``.

Per stage k (1-based): ``Dense`` (``Sparse`` for a stage with CSR weights; latency 1) → neuron process (Lava
``LIF`` where exact, else our ``SubLIF``; the SRM our ``CubaLIF``; the readout our ``Integrator``) →
``io.sink.RingBuffer`` recording its spikes. The input is an ``io.source.RingBuffer`` of graded spikes into the
first Dense/Sparse. A stage with a bias
gets its own source RingBuffer wired straight into the neuron's input, active at Lava steps
k + 1 .. k + T only, so that the bias starts with the stage's first input (Lava's ``bias_mant``
would act from step 1). Software step t of stage k is Lava step t + k; a sample runs T + depth
steps. Between samples every state (u, v, Dense buffers) is set back to zero.

fixed_pt uses the integer parameters (bit-exact with ``snnchip.hw_sim.chip``); floating_pt uses
the float stages (weights W, bias b, dv = 1 − λ, vth = θ) on the same graph. Lava's ``Sparse`` has the
weight_exp / sign-mode / num_message_bits semantics of ``Dense`` (its bit-accurate model is Dense's with a
CSR product), so the two are interchangeable per stage; its weights must be a ``scipy.sparse.csr_matrix``
(Lava clips and truncates only ``spmatrix`` instances, not the newer ``csr_array``).
"""

from __future__ import annotations

import os

import numpy as np

from snnchip import lava_compat
from snnchip.deploy.result import RunResult, assemble, check_input, check_timing
from snnchip.deploy.supervise import supervised
from snnchip.errors import DeployError
from snnchip.export.loihi import Deployment, load_deploy, process_of
from snnchip.export.quantize import encode_input

CFGS = ("fixed_pt", "floating_pt")


class _Graph:
    """The processes of one run configuration, built for a given first sample."""

    def __init__(self, dep: Deployment, fixed: bool, first: np.ndarray) -> None:
        lava_compat.import_lava()
        Dense = lava_compat.lava_module("proc.dense.process").Dense
        Sparse = lava_compat.lava_module("proc.sparse.process").Sparse
        LIF = lava_compat.lava_module("proc.lif.process").LIF
        Source = lava_compat.lava_module("proc.io.source").RingBuffer
        Sink = lava_compat.lava_module("proc.io.sink").RingBuffer
        from snnchip.deploy.procs.cubalif.process import CubaLIF
        from snnchip.deploy.procs.empf.process import EMPF
        from snnchip.deploy.procs.integrator.process import Integrator
        from snnchip.deploy.procs.sublif.process import SubLIF

        T, steps = dep.T, dep.T + dep.depth
        self.source = Source(data=first)
        self.synapses, self.neurons, self.sinks = [], [], []
        prev = self.source.s_out
        for k, (st, q) in enumerate(zip(dep.net.stages, dep.qnet.stages, strict=True), start=1):
            n = q.weight.shape[0]
            kind = process_of(q)
            Conn = Sparse if q.synapse == "sparse" else Dense
            if fixed:
                conn = Conn(weights=q.weight.astype(np.int32), weight_exp=q.weight_exp,
                            num_message_bits=q.num_message_bits)
                bias, dv, vth = q.bias.astype(np.int64), q.dv, q.vth
            else:
                conn = Conn(weights=st.weight, num_message_bits=q.num_message_bits)
                bias, dv, vth = st.bias, 1.0 - st.lam, st.theta
            if kind == "lava.LIF":
                neuron = LIF(shape=(n,), du=4095 if fixed else 1.0, dv=dv, vth=vth, bias_mant=0 if fixed else 0.0,
                             bias_exp=0, name=q.name)
            elif kind == "snnchip.EMPF":
                if fixed:
                    tabs = {k: q.tables[k] for k in ("lam", "scale", "theta", "offset")}
                else:
                    tabs = dict(zip(("lam", "scale", "theta", "offset"), (st.tables[k] for k in
                                    ("lam", "input_scale", "theta", "reset_offset")), strict=True))
                neuron = EMPF(shape=(n,), delay=k, shift=q.shift if fixed else 0, name=q.name, **tabs)
            elif kind == "snnchip.CubaLIF":
                du = q.du if fixed else 1.0 - st.lam_syn
                neuron = CubaLIF(shape=(n,), du=du, dv=dv, vth=vth, spike=q.spike, name=q.name)
            elif kind == "snnchip.SubLIF":
                neuron = SubLIF(shape=(n,), dv=dv, vth=vth, reset=q.reset, spike=q.spike, name=q.name)
            else:
                neuron = Integrator(shape=(n,), name=q.name)
            prev.connect(conn.s_in)
            conn.a_out.connect(neuron.a_in)
            if np.any(bias != 0):
                schedule = np.zeros((n, steps), dtype=np.int64 if fixed else np.float64)
                schedule[:, k:k + T] = bias[:, None]
                Source(data=schedule).s_out.connect(neuron.a_in)
            if q.spiking:
                sink = Sink(shape=(n,), buffer=steps)
                neuron.s_out.connect(sink.a_in)
                self.sinks.append(sink)
                prev = neuron.s_out
            else:
                self.sinks.append(None)
            self.synapses.append(conn)
            self.neurons.append(neuron)

    def reset(self, data: np.ndarray) -> None:
        self.source.data.set(data)
        for conn, neuron in zip(self.synapses, self.neurons, strict=True):
            conn.a_buff.set(np.zeros(conn.a_buff.shape))
            neuron.u.set(np.zeros(neuron.u.shape))
            neuron.v.set(np.zeros(neuron.v.shape))
            if "t" in neuron.vars.member_names:  # EMPF: its step counter picks the tables' row
                neuron.t.set(np.zeros(1))


class LavaNetwork:
    """``build(deploy_dir).run(x, cfg)``: the deployment in Lava's Loihi 2 simulator."""

    def __init__(self, deployment: Deployment) -> None:
        self.dep = deployment

    def run(self, x: np.ndarray, cfg: str = "fixed_pt", timing: str = "software", states: bool = True) -> RunResult:
        """Run inputs ``x`` [T, B, *input_shape]; ``states=False`` skips the per-step u/v reads (faster)."""
        if cfg not in CFGS:
            raise DeployError(f"unknown Lava run configuration {cfg!r}; valid: {', '.join(CFGS)}")
        check_timing(timing)
        dep, qnet = self.dep, self.dep.qnet
        T, steps, fixed = dep.T, dep.T + dep.depth, cfg == "fixed_pt"
        xs = check_input(x, qnet.input_shape, T)
        feed = encode_input(xs, qnet.input_frac_bits) if fixed else xs
        B = xs.shape[1]

        def sample(b: int) -> np.ndarray:
            data = np.zeros((feed.shape[2], steps), dtype=feed.dtype)
            data[:, :T] = feed[:, b].T
            return data

        RunSteps = lava_compat.lava_module("magma.core.run_conditions").RunSteps
        run_cfg = lava_compat.lava_module("magma.core.run_configs").Loihi2SimCfg(select_tag=cfg)
        dtype = np.int64 if fixed else np.float64
        names = [q.name for q in qnet.stages]
        u = {k: np.zeros((steps, B, q.weight.shape[0]), dtype) for k, q in zip(names, qnet.stages, strict=True)}
        v = {k: np.zeros_like(a) for k, a in u.items()}
        s = {q.name: np.zeros((steps, B, q.weight.shape[0]), bool) for q in qnet.stages if q.spiking}
        read = [i for i, q in enumerate(qnet.stages) if states or (not q.spiking)]
        chunk = 1 if read else steps
        with supervised() as lava_run:
            graph = _Graph(dep, fixed, sample(0))
            lava_run.start(graph.source, run_cfg)
            for b in range(B):
                if b:
                    graph.reset(sample(b))
                for t in range(0, steps, chunk):
                    graph.source.run(condition=RunSteps(num_steps=chunk))
                    for i in read:
                        u[names[i]][t, b] = graph.neurons[i].u.get()
                        v[names[i]][t, b] = graph.neurons[i].v.get()
                for name, sink in zip(names, graph.sinks, strict=True):
                    if sink is not None:
                        s[name][:, b] = sink.data.get().T != 0
        return assemble(qnet.stages, u, v, s, T, timing, fixed, keep_states=states)


def build(deployment: Deployment | str | os.PathLike) -> LavaNetwork:
    """The Lava network of a deploy directory (or an in-memory ``Deployment``)."""
    return LavaNetwork(deployment if isinstance(deployment, Deployment) else load_deploy(deployment))
