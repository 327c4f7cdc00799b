"""``snn-bench hwsim``: time per sample-step of the bit-exact simulator vs Lava fixed_pt, and their agreement.

Networks: the 784-400-10 MLP and a small conv net of the zoo (``snnchip.train.zoo``) with their random initial weights
scaled so that the layers fire, and random inputs. The
simulator runs batch 1 and ``--batch-size`` (untimed warm-up calls, then the fastest of ``--repeats``); Lava runs
sample by sample (its cost grows with the number of processes, not neurons), without per-step state reads; its
time per sample-step is the difference between the fastest of ``--repeats`` runs of 2 and of 4 samples, which
removes compilation and start-up.
"""

from __future__ import annotations

import json
from typing import Any

import nir
import numpy as np

from snnchip.atomic import write_text_atomic
from snnchip.deploy.network import build
from snnchip.export.loihi import deployment_from_graph
from snnchip.hw_sim.chip import ChipSimulator

from . import measure, options, report
from .options import BenchConfig

LAVA_SAMPLES = 2


def networks(T: int, gain: float = 3.0) -> dict[str, nir.NIRGraph]:
    """The benchmark's NIR graphs at ``T`` steps: zoo models (seed 0), synaptic weights × ``gain`` so they fire."""
    import torch

    from snnchip.export.nir_export import export_to_nir
    from snnchip.train import build_model, model_spec

    graphs = {}
    for name, spec in (("mlp-784-400-10", model_spec("mlp", (784,), 10, T, hidden=(400,))),
                       ("convnet-8x8", model_spec("convnet", (1, 8, 8), 10, T))):
        torch.manual_seed(0)
        model = build_model(spec)
        with torch.no_grad():
            for layer in spec.layers:
                if layer.synaptic:
                    getattr(model, layer.name).weight.mul_(gain)
        graphs[name] = export_to_nir(model)
    return graphs


def bench_network(name: str, graph: nir.NIRGraph, batch: int, repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Seconds per sample-step (software steps) for the simulator and for Lava, and whether they agree."""
    dep = deployment_from_graph(graph)
    T, shape = dep.T, dep.qnet.input_shape
    x = np.random.default_rng(0).uniform(0, 1, (T, batch, *shape))
    sim = ChipSimulator(dep)
    sim1 = measure.time_calls(lambda: sim.run(x[:, :1]), repeats, warmup=warmup)["min_time_s"] / T
    simb = measure.time_calls(lambda: sim.run(x), repeats, warmup=warmup)["min_time_s"] / (T * batch)
    runs = {}

    def lava(n: int) -> None:
        runs[n] = build(dep).run(x[:, :n], states=False)

    # the fastest of `repeats` runs of 2 and of 4 samples; their difference removes compile and start-up
    timed = {n: measure.time_calls(lambda n=n: lava(n), repeats, warmup=0)["min_time_s"]
             for n in (LAVA_SAMPLES, 2 * LAVA_SAMPLES)}
    xl, lava_out = x[:, :2 * LAVA_SAMPLES], runs[2 * LAVA_SAMPLES]
    lava_s = (timed[2 * LAVA_SAMPLES] - timed[LAVA_SAMPLES]) / (T * LAVA_SAMPLES)
    ref = sim.run(xl)
    exact = bool(np.array_equal(ref.output_raw, lava_out.output_raw)
                 and all(np.array_equal(ref.spikes[k], lava_out.spikes[k]) for k in ref.spikes))
    return {"network": name, "T": T, "stages": dep.depth, "neurons": dep.manifest["resources"]["neurons"],
            "synapses": dep.manifest["resources"]["synapses"], "sim_s_per_sample_step_b1": sim1,
            f"sim_s_per_sample_step_b{batch}": simb, "lava_s_per_sample_step": lava_s,
            "speedup_b1": lava_s / sim1, f"speedup_b{batch}": lava_s / simb, "bit_exact": exact,
            "lava_samples": xl.shape[1], "lava_startup_s": 2 * timed[LAVA_SAMPLES] - timed[2 * LAVA_SAMPLES]}


def run(args: BenchConfig) -> int:
    """``snn-bench hwsim``. Reads ``T`` (the first entry), ``batch_size``, ``repeats``, ``warmup``, ``threads``,
    ``json``, ``plot``. Exit 1 when the simulator and Lava disagree."""
    options.prepare(args)
    T = options.time_steps(args.T)[0]
    b = args.batch_size
    rows = [bench_network(name, g, b, args.repeats, args.warmup) for name, g in networks(T).items()]
    result = {"benchmark": "hwsim", "batch_size": b, "results": rows}
    print(f"{'network':<16}{'T':>4}{'sim b1 ms':>11}{f'sim b{b} ms':>12}{'lava ms':>10}{'x b1':>7}{f'x b{b}':>8}"
          "  bit-exact")
    for r in rows:
        print(f"{r['network']:<16}{r['T']:>4}{1e3 * r['sim_s_per_sample_step_b1']:>11.3f}"
              f"{1e3 * r[f'sim_s_per_sample_step_b{b}']:>12.4f}{1e3 * r['lava_s_per_sample_step']:>10.2f}"
              f"{r['speedup_b1']:>7.1f}{r[f'speedup_b{b}']:>8.1f}  {r['bit_exact']}")
    print("times per sample-step (software steps); Lava runs T + depth steps per sample, sample by sample, "
          "start-up excluded")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    if args.plot:
        report.plot_hwsim(result, args.plot)
    if args.json or args.plot:
        print("  wrote " + ", ".join(p for p in (args.json, args.plot) if p))
    return 0 if all(r["bit_exact"] for r in rows) else 1
