"""The lava-dl netx target: a Loihi network as the HDF5 file ``lava.lib.dl.netx.hdf5.Network`` loads.

netx reads only ``/layer/<i>/{type, shape, weight, bias, neuron/{type, iDecay, vDecay, vThMant,
refDelay, gradedSpike}}`` (weights with ``astype(int)``). Its CUBA neuron is Lava's ``LIF`` with
``du = iDecay − 1``, ``dv = vDecay``, ``vth = vThMant`` and ``bias_mant = bias`` (``bias_exp = 6``); its
dense synapse re-derives an exponent from the stored integers (``optimize_weight_bits``), so the file
holds the *effective* integer weights: every stage is quantized by ``snnchip.export.quantize`` with
the Dense exponent fixed at 0 (the first stage: the graded input's q). What that gives, per stage:

    dense layer   weight = m (int, m·2^0 = what Lava's Dense applies), shape = [n_out]
    spiking       CUBA iDecay = du + 1 (4096: no current state), vDecay = dv, vThMant = vth
    readout       CUBA iDecay = du + 1, vDecay = dv (0: v integrates), vThMant = 2^17 (never fires)

which is exactly the arithmetic of ``snnchip.hw_sim.chip`` on the same ``Deployment``. Every chain of
linear nodes (Affine, Conv2d, pooling, Flatten) is written as one composed ``dense`` layer over the
C-order flattened input, so the file has no conv/flatten layers and no transposes to get wrong (a stage the
Loihi target keeps sparse, CSR, is written densified: netx's dense layer is the only one that reads our integers).

Refused, naming the layer: reset other than zero or a compare other than ``>`` (netx's LIF), non-zero
biases (netx applies ``bias_mant`` from Lava step 1, k steps before layer k's first input, so the
network would not be the trained one; ``--target loihi`` aligns them), integer weight matrices netx
mis-reads (``check_weights``), EM-PF and SRM stages (graded spikes, per-step tables, reset of both traces:
netx has no such neuron), and everything ``lowering`` refuses (feedback, branches).

Driving it: ``Network(path, input_message_bits=24)``, graded input spikes xq = round(x·2^q) of the
flattened input with q = ``attrs["input_frac_bits"]``. Latency: layer k's spikes at software step t
leave at Lava step t + k, as in the Loihi target (a run lasts T + depth steps).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import nir
import numpy as np
import scipy.sparse as sp

from snnchip.atomic import write_bytes_atomic
from snnchip.errors import UnsupportedNodeError
from snnchip.export.loihi import Deployment, deployment_from_graph, read_model_graph
from snnchip.export.loihi2 import NEVER_FIRES
from snnchip.export.lowering import INPUT
from snnchip.spec import Interpretation, NeuronKind

FORMAT = {"name": "snnchip-netx", "version": 1}
INPUT_MESSAGE_BITS = 24
MAX_FRAC_BITS = 8


def _refuse(layer: str, why: str, fix: str) -> UnsupportedNodeError:
    return UnsupportedNodeError(f"layer {layer!r} cannot be written as a lava-dl netx file: {why}; {fix}")


def check_expressible(dep: Deployment) -> None:
    """Raise ``UnsupportedNodeError`` naming the first stage netx cannot run exactly."""
    previous = INPUT
    for st in dep.net.stages:
        if len(st.inputs) != 1 or st.inputs[0].source != previous or st.inputs[0].delay:
            raise _refuse(st.name, f"it has inputs {[(p.source, p.delay) for p in st.inputs]}; a netx file holds a "
                                   "chain of layers, each fed by the one before (no recurrence, skips, merges or "
                                   "delays)", "use `--target loihi`")
        previous = st.name
        if st.kind not in (NeuronKind.LIF, NeuronKind.CUBALIF, NeuronKind.READOUT):
            raise _refuse(st.name, f"its neuron kind {st.kind!r} (graded spikes, per-step tables or a current reset) "
                                   "has no netx neuron", "use `--target loihi`")
        if st.spiking and (st.reset, st.spike, st.reset_by) != ("zero", "gt", None):
            raise _refuse(st.name, f"its neuron has reset={st.reset!r}, compare={st.spike!r}; netx's CUBA neuron "
                                   "resets to zero and fires on v > θ",
                          "use `--target loihi` (our CubaLIF process runs it exactly), train with `--reset zero` and "
                          "the 'gt' spike condition, or read a foreign graph with `--reset zero --spike-compare gt`")
        if np.any(st.bias != 0):
            raise _refuse(st.name, "it has a non-zero bias, which netx applies from Lava step 1 (before the "
                                   "layer's first input arrives), so the file would not run the trained network",
                          "use `--target loihi` (biases aligned with the input) or train without bias")


def netx_deployment(graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None,
                    input_range: float = 1.0) -> Deployment:
    """Lower and quantize ``graph`` for netx: the Loihi quantizer with every Dense exponent fixed at 0.

    The graded input's q is the exponent the free quantizer picks for the first stage, within [0, 8],
    so the first stage keeps its full mantissa where the input resolution allows.
    """
    try:
        free = deployment_from_graph(graph, interpretation, T, input_range)
    except UnsupportedNodeError as exc:
        raise UnsupportedNodeError(f"netx target: {exc}. netx runs chains of dense layers into CUBA LIF neurons "
                                   "(reset to zero, v > θ) only; `--target nir` keeps this network's semantics"
                                   ) from None
    check_expressible(free)
    first = free.qnet.stages[0].inputs[0]
    q = min(MAX_FRAC_BITS, max(0, first.weight_exp + free.qnet.input_frac_bits))
    dep = deployment_from_graph(graph, interpretation, T, input_range, input_frac_bits=q, weight_exp=0)
    check_weights(dep)
    return dep


def _dense(w: np.ndarray | sp.spmatrix) -> np.ndarray:
    return w.toarray() if not isinstance(w, np.ndarray) else w  # CSR or a kernel, expanded


def check_weights(dep: Deployment) -> None:
    """Refuse integer weight matrices lava-dl 0.6.0's ``optimize_weight_bits`` mis-reads.

    It fails on an all-zero matrix (division by its largest weight), and it treats an all-≤ 0 matrix
    with zeros as mixed-sign (one weight bit more than 8), which Lava's Dense, seeing an inhibitory
    matrix, answers by truncating every weight to zero.
    """
    for q in dep.qnet.stages:
        w = _dense(q.inputs[0].weight)
        if not w.any():
            raise _refuse(q.name, "all its weights quantize to 0, which netx's loader cannot read",
                          "check the trained weights or use `--target loihi`")
        if w.max() == 0:
            raise _refuse(q.name, "its weights are all ≤ 0 with some equal to 0; lava-dl 0.6.0's netx reads such "
                                  "a matrix as 9-bit mixed-sign and Lava then truncates every weight to zero",
                          "use `--target loihi`")


def _string(group, key: str, value: str) -> None:
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])  # as slayer writes it


def write_netx(dep: Deployment, path: str | os.PathLike) -> Path:
    """Write ``dep`` (exponents 0, see ``netx_deployment``) as a netx HDF5 file, atomically."""
    import h5py

    check_expressible(dep)
    check_weights(dep)
    bad = [q.name for q in dep.qnet.stages if q.inputs[0].weight_exp != 0]
    if bad:
        raise ValueError(f"stages {bad} have a Dense exponent ≠ 0; quantize with netx_deployment()")
    out = Path(path)
    buf = io.BytesIO()  # serialized in memory, written by write_bytes_atomic (see nir_export.nir_bytes)
    with h5py.File(buf, "w") as f:
        f.attrs["snnchip"] = json.dumps({
            "format": FORMAT, "T": dep.T, "encoding": dep.qnet.encoding,
            "input_frac_bits": dep.qnet.input_frac_bits, "input_message_bits": INPUT_MESSAGE_BITS,
            "input_shape": list(dep.qnet.input_shape), "latency": {q.name: q.latency for q in dep.qnet.stages},
            "scales": {q.name: q.scale for q in dep.qnet.stages}})
        layers = f.create_group("layer")
        inp = layers.create_group("0")
        _string(inp, "type", "input")
        inp.create_dataset("shape", data=np.array(dep.qnet.input_shape))
        for k, q in enumerate(dep.qnet.stages, start=1):
            w = q.inputs[0].weight
            g = layers.create_group(str(k))
            _string(g, "type", "dense")
            g.create_dataset("shape", data=np.array([w.shape[0]]))
            g.create_dataset("inFeatures", data=w.shape[1])
            g.create_dataset("outFeatures", data=w.shape[0])
            g.create_dataset("weight", data=_dense(w).astype(np.int64))
            neuron = g.create_group("neuron")
            _string(neuron, "type", "CUBA")
            neuron.create_dataset("iDecay", data=q.du + 1)  # netx: du = iDecay − 1
            neuron.create_dataset("vDecay", data=q.dv)
            neuron.create_dataset("vThMant", data=q.vth if q.spiking else NEVER_FIRES)
            neuron.create_dataset("refDelay", data=1)
            neuron.create_dataset("gradedSpike", data=False)
    write_bytes_atomic(out, buf.getbuffer())
    return out


def export_netx(graph_or_path: nir.NIRGraph | str | os.PathLike, out: str | os.PathLike,
                interpretation: Interpretation | None = None, T: int | None = None) -> Deployment:
    """Write the netx file for a NIR graph, a ``.nir`` file or a ``model.pt``; return the deployment it encodes."""
    dep = netx_deployment(read_model_graph(graph_or_path), interpretation, T)
    write_netx(dep, out)
    return dep
