"""Chip resource and energy estimate for a deployed network (an estimate, and labelled as one).

Resources per layer are those of the deployment: neurons, synaptic connections (non-zero deployed weights)
and synaptic memory at the 8-bit mantissa. Activity comes from spike counts measured on the
bit-exact simulator: synaptic operations SynOps = Σ_l (spikes into l) · (mean fan-out into l), neuron
updates = neurons · T.

Sources (cited, not measured here):
- Loihi 2 limits: Intel Labs, "Taking Neuromorphic Computing to the Next Level with Loihi 2",
  technology brief, 2021: 128 neuromorphic cores per chip, up to 8,192 neurons per core (1 M per chip),
  up to 120 M synapses per chip (we budget 120 M / 128 cores per core).
- Energy per operation: M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip
  Learning", IEEE Micro 38(1), 2018, Table 1 (Loihi 1, measured at 0.75 V): synaptic spike operation
  23.6 pJ, neuron update 52 pJ (inactive) / 81 pJ (active), within-tile spike energy 1.7 pJ. Per-op
  energies of Loihi 2 are not published in this form; the Loihi 1 figures give an order of magnitude.
"""

from __future__ import annotations

import math
from typing import Any

from snnchip.export.loihi2 import CORES_PER_CHIP, WEIGHT_BITS, SynapseLayout
from snnchip.export.sizing import layer_cores

E_SYNOP_PJ = 23.6
E_NEURON_UPDATE_PJ = 52.0
E_NEURON_SPIKE_EXTRA_PJ = 81.0 - 52.0
E_SPIKE_PJ = 1.7


def layer_resources(deployment: Any) -> list[dict[str, Any]]:
    """Neurons, fan-in, synaptic connections (non-zero deployed weights) of each stage of a ``Deployment``.

    Counts what is deployed: every projection into a stage is one Lava Dense, Sparse or Conv (two with wide
    weights), so a connection is a non-zero integer weight where it lands; a Sparse (CSR) projection is counted
    from its stored entries (nnz), never densified. ``weights`` are what synaptic memory stores: a kernel's
    entries once per output channel (``kernels``: output channels and one channel's kernel size), the expanded
    projections' connections; cores come from ``export.sizing.layer_cores``.
    """
    layers = []
    for q in deployment.qnet.stages:
        inputs = [{"source": p.source, "synapse": p.synapse, "sources": int(p.weight.shape[1]),
                   "connections": p.synapses} for p in q.inputs]
        nonzero = sum(p["connections"] for p in inputs)
        kernels = [(m.out_shape[0], m.kernel[0].size) for p in q.inputs if p.synapse == SynapseLayout.CONV
                   for m, _ in p.parts]
        expanded = sum(i["connections"] for i in inputs if i["synapse"] != SynapseLayout.CONV)
        layers.append({"layer": q.name, "neurons": q.size, "inputs": inputs, "connections": nonzero,
                       "weights": expanded + sum(c * b for c, b in kernels), "expanded": expanded,
                       "kernels": kernels})
    return layers


def estimate(layers: list[dict[str, Any]], spikes: dict[str, float], T: int) -> dict[str, Any]:
    """Cores, memory, SynOps and energy per inference.

    ``spikes[source]``: spikes (or graded events) a source ("input" or a stage) emits per inference, summed over T;
    each projection then costs spikes[source] · (its connections / its source neurons) synaptic operations.
    """
    per_layer, synops = [], 0.0
    for layer in layers:
        ops = sum(float(spikes[p["source"]]) * p["connections"] / max(p["sources"], 1) for p in layer["inputs"])
        synops += ops
        cores = layer_cores(layer["neurons"], layer.get("expanded", layer["connections"]), layer.get("kernels", []))
        per_layer.append({**layer, "cores": cores, "synops": ops,
                          "synaptic_memory_bytes": layer["weights"] * WEIGHT_BITS // 8})
    spikes_out = sum(v for k, v in spikes.items() if k != "input")
    neurons = sum(la["neurons"] for la in layers)
    updates = neurons * T
    energy_pj = synops * E_SYNOP_PJ + updates * E_NEURON_UPDATE_PJ + spikes_out * (E_NEURON_SPIKE_EXTRA_PJ + E_SPIKE_PJ)
    return {
        "label": "estimate: Loihi 2 limits (Intel 2021 brief), Loihi 1 per-op energies (Davies et al. 2018)",
        "layers": per_layer,
        "neurons": neurons,
        "synapses": sum(la["connections"] for la in layers),
        "synaptic_memory_bytes": sum(la["synaptic_memory_bytes"] for la in per_layer),
        "cores": sum(la["cores"] for la in per_layer),
        "chips": math.ceil(sum(la["cores"] for la in per_layer) / CORES_PER_CHIP),
        "synops": synops,
        "neuron_updates": updates,
        "spikes": spikes_out,
        "energy_uJ": energy_pj * 1e-6,
    }
