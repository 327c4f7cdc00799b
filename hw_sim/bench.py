"""``snn-bench hwsim``: time per sample-step of the bit-exact simulator vs Lava fixed_pt, and their agreement.

Networks: the 784-400-10 MLP and a small conv net (``snnchip.hw_sim.nets``), random weights and
inputs. The simulator runs batch 1 and ``--batch-size``; Lava runs sample by sample (its cost grows
with the number of processes, not neurons), without per-step state reads; its time per sample-step
is the difference between runs of 2 and 4 samples, which removes compilation and start-up.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from snnchip.atomic import write_text_atomic
from snnchip.deploy.network import build
from snnchip.export.loihi import deployment_from_graph
from snnchip.hw_sim.chip import ChipSimulator
from nir_nets import conv_graph, mlp_graph

LAVA_SAMPLES = 2


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_network(name: str, graph, batch: int, repeats: int) -> dict:
    """Seconds per sample-step (software steps) for the simulator and for Lava, and whether they agree."""
    dep = deployment_from_graph(graph)
    T, shape = dep.T, dep.qnet.input_shape
    x = np.random.default_rng(0).uniform(0, 1, (T, batch, *shape))
    sim = ChipSimulator(dep)
    sim1 = _best(lambda: sim.run(x[:, :1]), repeats) / T
    simb = _best(lambda: sim.run(x), repeats) / (T * batch)
    timed = {}
    for n in (LAVA_SAMPLES, 2 * LAVA_SAMPLES):  # the difference removes compile and start-up
        t0 = time.perf_counter()
        lava = build(dep).run(x[:, :n], states=False)
        timed[n] = time.perf_counter() - t0
    xl = x[:, :2 * LAVA_SAMPLES]
    lava_s = (timed[2 * LAVA_SAMPLES] - timed[LAVA_SAMPLES]) / (T * LAVA_SAMPLES)
    ref = sim.run(xl)
    exact = bool(np.array_equal(ref.output_raw, lava.output_raw)
                 and all(np.array_equal(ref.spikes[k], lava.spikes[k]) for k in ref.spikes))
    return {"network": name, "T": T, "stages": dep.depth, "neurons": dep.manifest["resources"]["neurons"],
            "synapses": dep.manifest["resources"]["synapses"], "sim_s_per_sample_step_b1": sim1,
            f"sim_s_per_sample_step_b{batch}": simb, "lava_s_per_sample_step": lava_s,
            "speedup_b1": lava_s / sim1, f"speedup_b{batch}": lava_s / simb, "bit_exact": exact,
            "lava_samples": xl.shape[1], "lava_startup_s": 2 * timed[LAVA_SAMPLES] - timed[2 * LAVA_SAMPLES]}


def run(args: argparse.Namespace) -> int:
    """``snn-bench hwsim [--T 4] [--batch-size 32] [--repeats 5] [--json out.json]``."""
    T = int(str(args.T).split(",")[0])
    nets = {"mlp-784-400-10": mlp_graph((784, 400, 10), T=T, gain=3.0),
            "conv-8x8-c8": conv_graph(in_shape=(1, 8, 8), channels=8, classes=10, T=T)}
    rows = [bench_network(name, g, args.batch_size, args.repeats) for name, g in nets.items()]
    b = args.batch_size
    print(f"{'network':<16}{'T':>4}{'sim b1 ms':>11}{f'sim b{b} ms':>12}{'lava ms':>10}{'x b1':>7}{f'x b{b}':>8}"
          "  bit-exact")
    for r in rows:
        print(f"{r['network']:<16}{r['T']:>4}{1e3 * r['sim_s_per_sample_step_b1']:>11.3f}"
              f"{1e3 * r[f'sim_s_per_sample_step_b{b}']:>12.4f}{1e3 * r['lava_s_per_sample_step']:>10.2f}"
              f"{r['speedup_b1']:>7.1f}{r[f'speedup_b{b}']:>8.1f}  {r['bit_exact']}")
    print("times per sample-step (software steps); Lava runs T + depth steps per sample, sample by sample, "
          "start-up excluded")
    if args.json:
        write_text_atomic(args.json, json.dumps({"benchmark": "hwsim", "results": rows}, indent=2))
    return 0 if all(r["bit_exact"] for r in rows) else 1
