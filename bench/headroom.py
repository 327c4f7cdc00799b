"""``snn-bench headroom``: per-layer spike agreement of the chip with the NIR reference, one-step vs data headroom,
and how much of what is lost the chip's 12-bit decays decide.

Graphs: the deep foreign graphs of ``snnchip.bench.deep_nets`` (Sinabs, snnTorch and Norse layouts, 4 spiking
layers, T = 20), each with its random weights and trained on digits as events (``train_on_digits``), on sparse
events and on digits as events; the Braille-class recurrent CubaLIF at T = 256 on sparse events. The data headroom
is calibrated on 64 inputs and every number is measured on ``SAMPLES`` others. Per layer: the fraction of equal
spike entries (``hw_sim.compare.spike_agreement``, the project's measure); decisions: argmax of the output layer's
spike counts. Each is measured against the graph and against the graph with the decays the chip holds
(``export.chip_decays.at_chip_decays``); the decay floor compares those two graphs, in float: what a Loihi 2 LIF
loses before any quantizer choice. Wide weights both ways (a foreign graph's default).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import nir
import numpy as np

from snnchip.atomic import write_text_atomic
from snnchip.export.chip_decays import at_chip_decays
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.qnet import SaturationWarning
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.hw_sim.compare import spike_agreement
from snnchip.spec import Interpretation

from . import deep_nets as dn
from . import options
from .options import BenchConfig

SAMPLES = 256  # test inputs per case (the recurrent one: half)
CALIBRATION = 64


def headroom_agreement(graph: nir.NIRGraph, interp: Interpretation, x: np.ndarray, held: bool = False,
                       **precision: Any) -> dict[str, Any]:
    """The deployment of ``graph`` with ``precision`` (``deployment_from_graph``'s keywords) run on ``x`` beside the
    reference executor: per-layer agreement and Jaccard index, decision agreement, threshold registers, saturation;
    ``held``: also against the graph with the chip's decays (``held_agreement``, ``held_decisions``) and the decay
    floor (``floor``, ``floor_decisions``: that graph against the graph)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        dep = deployment_from_graph(graph, interp, T=x.shape[0], **precision)
    chip = ChipSimulator(dep).run(x, states=False)
    out = dep.qnet.output
    ref = _spikes(graph, interp, x, chip.spikes)
    jaccard = {k: float((ref[k] & chip.spikes[k]).sum() / max(1, (ref[k] | chip.spikes[k]).sum())) for k in ref}
    result = {"agreement": spike_agreement(ref, chip.spikes), "jaccard": jaccard,
              "decisions": _decisions(ref[out], chip.spikes[out]), "vth": {q.name: q.vth for q in dep.qnet.stages},
              "saturation": chip.meta["saturation"], "firing_rate": {k: float(v.mean()) for k, v in ref.items()}}
    if held:
        at_chip = _spikes(at_chip_decays(graph, interp), interp, x, chip.spikes)
        result.update(held_agreement=spike_agreement(at_chip, chip.spikes),
                      held_decisions=_decisions(at_chip[out], chip.spikes[out]),
                      floor=spike_agreement(ref, at_chip), floor_decisions=_decisions(ref[out], at_chip[out]))
    return result


def _spikes(graph: nir.NIRGraph, interp: Interpretation, x: np.ndarray, layers: dict) -> dict[str, np.ndarray]:
    ref = NIRExecutor(graph, interp).run(x)
    return {k: np.asarray(ref.spikes[k]).astype(bool) for k in layers}


def _decisions(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.sum(0).argmax(-1) == b.sum(0).argmax(-1)))


def cases() -> list[tuple[str, str, nir.NIRGraph, Interpretation, Any]]:
    """(graph, inputs, NIR graph, interpretation, input maker(seed, batch) -> x); the trained graphs are trained
    here (about 30 s each)."""
    image = [("sparse", lambda s, b: dn.sparse_events(s, 20, b, dn.IMAGE)),
             ("digits", lambda s, b: dn.digit_events(s, 20, b))]
    out = []
    for name, make, interp in (("sinabs-cnn", dn.sinabs_cnn, dn.SINABS), ("snntorch-cnn", dn.snntorch_cnn, dn.SNNTORCH),
                               ("norse-cnn", dn.norse_cnn, dn.NORSE)):
        trained, accuracy = dn.train_on_digits(make(), interp)
        print(f"  {name}: trained on digits as events, {accuracy:.1%} on its last epoch", flush=True)
        out += [(label, kind, graph, interp, x) for label, graph in ((name, make()), (f"{name}-trained", trained))
                for kind, x in image]
    out.append(("braille-rnn-T256", "sparse", dn.snntorch_braille(), dn.SNNTORCH_SUBTRACT,
                lambda s, b: dn.sparse_events(s, 256, b // 2, (12,))))
    return out


def run(args: BenchConfig) -> int:
    """``snn-bench headroom``. Reads ``json``."""
    options.prepare(args)
    rows = []
    table = []
    for name, kind, graph, interp, make in cases():
        x_cal, x_test = make(1, CALIBRATION), make(2, SAMPLES)
        for headroom, precision in (("step", {"headroom": "step"}), ("data", {"calibration_input": x_cal})):
            started = time.perf_counter()
            r = headroom_agreement(graph, interp, x_test, held=True, **precision)
            rows.append({"graph": name, "inputs": kind, "headroom": headroom, "samples": x_test.shape[1], **r,
                         "seconds": time.perf_counter() - started})
            table.append(f"{name:<22}{kind:<8}{headroom:<6}{min(r['agreement'].values()):>9.2%}{r['decisions']:>7.1%}"
                         f"{min(r['held_agreement'].values()):>9.2%}{r['held_decisions']:>7.1%}"
                         f"{min(r['floor'].values()):>9.2%}{r['floor_decisions']:>7.1%}  "
                         + " ".join(f"{v:.4f}" for v in r["agreement"].values()))
    print(f"{'':<36}{'vs the graph':>16}{'vs held decays':>16}{'decay floor':>16}")
    print(f"{'graph':<22}{'inputs':<8}{'room':<6}" + f"{'lowest':>9}{'dec.':>7}" * 3 + "  per layer (vs the graph)")
    print("\n".join(table))
    if args.json:
        write_text_atomic(args.json, json.dumps({"benchmark": "headroom", "samples": SAMPLES,
                                                 "calibration": CALIBRATION, "results": rows}, indent=2))
        print(f"  wrote {args.json}")
    return 0
