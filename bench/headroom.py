"""``snn-bench headroom``: per-layer spike agreement of the chip with the NIR reference, one-step vs data headroom.

Graphs: the deep foreign graphs of ``snnchip.bench.deep_nets`` (Sinabs, snnTorch and Norse layouts, 4 spiking
layers, T = 20, on sparse events and on digits as events; the Braille-class recurrent CubaLIF at T = 256 on sparse
events). The data headroom is calibrated on 64 inputs and every number is measured on 64 others. Per layer: the
fraction of equal spike entries (``hw_sim.compare.spike_agreement``, the project's measure) and the Jaccard index
of the spike sets; decisions: argmax of the output layer's spike counts. Wide weights both ways (a foreign
graph's default).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import nir
import numpy as np

from snnchip.atomic import write_text_atomic
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.qnet import SaturationWarning
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.hw_sim.compare import spike_agreement
from snnchip.spec import Interpretation

from . import deep_nets as dn
from . import options
from .options import BenchConfig

SAMPLES = 64


def headroom_agreement(graph: nir.NIRGraph, interp: Interpretation, x: np.ndarray, **precision: Any
                       ) -> dict[str, Any]:
    """The deployment of ``graph`` with ``precision`` (``deployment_from_graph``'s keywords) run on ``x`` beside the
    reference executor: per-layer agreement and Jaccard index, decision agreement, threshold registers, saturation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        dep = deployment_from_graph(graph, interp, T=x.shape[0], **precision)
    ref = NIRExecutor(graph, interp).run(x)
    chip = ChipSimulator(dep).run(x, states=False)
    f_spk = {k: np.asarray(ref.spikes[k]).astype(bool) for k in chip.spikes}
    out = dep.qnet.output
    jaccard = {k: float((f_spk[k] & chip.spikes[k]).sum() / max(1, (f_spk[k] | chip.spikes[k]).sum()))
               for k in f_spk}
    return {"agreement": spike_agreement(f_spk, chip.spikes), "jaccard": jaccard,
            "decisions": float(np.mean(f_spk[out].sum(0).argmax(-1) == chip.spikes[out].sum(0).argmax(-1))),
            "vth": {q.name: q.vth for q in dep.qnet.stages}, "saturation": chip.meta["saturation"],
            "firing_rate": {k: float(v.mean()) for k, v in f_spk.items()}}


def cases() -> list[tuple[str, str, nir.NIRGraph, Interpretation, Any]]:
    """(graph, inputs, NIR graph, interpretation, input maker(seed) -> x)."""
    image = [("sparse", lambda s: dn.sparse_events(s, 20, SAMPLES, dn.IMAGE)),
             ("digits", lambda s: dn.digit_events(s, 20, SAMPLES))]
    out = [(name, kind, make(), interp, x) for name, make, interp in (
        ("sinabs-cnn", dn.sinabs_cnn, dn.SINABS), ("snntorch-cnn", dn.snntorch_cnn, dn.SNNTORCH),
        ("norse-cnn", dn.norse_cnn, dn.NORSE)) for kind, x in image]
    out.append(("braille-rnn-T256", "sparse", dn.snntorch_braille(), dn.SNNTORCH_SUBTRACT,
                lambda s: dn.sparse_events(s, 256, SAMPLES // 2, (12,))))
    return out


def run(args: BenchConfig) -> int:
    """``snn-bench headroom``. Reads ``json``."""
    options.prepare(args)
    rows = []
    print(f"{'graph':<18}{'inputs':<8}{'headroom':<10}{'lowest layer':>13}{'jaccard':>9}{'decisions':>10}  per layer")
    for name, kind, graph, interp, make in cases():
        x_cal, x_test = make(1), make(2)
        for headroom, precision in (("step", {"headroom": "step"}), ("data", {"calibration_input": x_cal})):
            started = time.perf_counter()
            r = headroom_agreement(graph, interp, x_test, **precision)
            rows.append({"graph": name, "inputs": kind, "headroom": headroom, **r,
                         "seconds": time.perf_counter() - started})
            print(f"{name:<18}{kind:<8}{headroom:<10}{min(r['agreement'].values()):>13.4%}"
                  f"{min(r['jaccard'].values()):>9.3f}{r['decisions']:>10.1%}  "
                  + " ".join(f"{v:.4f}" for v in r["agreement"].values()))
    if args.json:
        write_text_atomic(args.json, json.dumps({"benchmark": "headroom", "samples": SAMPLES, "results": rows},
                                                indent=2))
        print(f"  wrote {args.json}")
    return 0
