"""A deployment's size before it is built: exact synapse counts for conv/pool chains (against the built deployment),
a memory estimate that covers the real export, and a network too large for the machine refused in seconds."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from nir_nets import conv_graph, mlp_graph

import snnchip
from snnchip.errors import ResourceError
from snnchip.export.kernel import Kernel
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.sizing import deployment_size, layer_cores


def _stored_nonzeros(dep):
    return [sum(p.weight.connections() if isinstance(p.weight, Kernel) else p.weight.nnz if sp.issparse(p.weight)
                else int(np.count_nonzero(p.weight)) for p in q.inputs)
            for q in dep.net.stages]


@pytest.mark.parametrize("graph", [
    conv_graph(in_shape=(1, 28, 28), channels=(8, 16), classes=10, T=4, seed=0),
    conv_graph(in_shape=(2, 12, 12), channels=(3, 4), classes=5, T=4, seed=1, pool="sum"),
    mlp_graph((20, 16, 8, 4), T=3),
], ids=["conv-28x28", "conv-sum", "mlp"])
@pytest.mark.parametrize("wide", [False, True])
def test_sizes_match_the_built_deployment_and_the_estimate_covers_its_memory(graph, wide):
    size = deployment_size(graph, synapse_sets=2 if wide else 1)
    tracemalloc.start()
    try:
        dep = deployment_from_graph(graph, wide_weights=wide)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    built = _stored_nonzeros(dep)  # float weights: random values are never exactly 0, so nnz is the pattern's
    assert [s["name"] for s in size.stages] == [q.name for q in dep.qnet.stages]
    if wide:  # an upper bound: residuals that round to zero are no synapses
        synapses = [r["synapses"] for r in dep.qnet.report]
        assert all(n <= 2 * b for n, b in zip(synapses, built, strict=True))
        assert [s["synapses"] for s in size.stages] == [2 * b for b in built]
    else:
        assert [s["synapses"] for s in size.stages] == built
    assert size.neurons == sum(q.size for q in dep.qnet.stages)
    assert peak <= size.peak_bytes, (peak, size.peak_bytes)


def test_vgg_at_cifar_size_keeps_its_kernels_and_fits_in_seconds():
    """OTTT's VGG-11 at 32×32: about 10^9 synapses, but weight-shared kernels store ~2·10^7 weights (pooling
    composed into the next conv), so the export needs well under 4 GiB; its layers partition onto Loihi 2 cores
    within each core's neurons and (estimated) synaptic memory; sized in seconds, nothing expanded."""
    graph = snnchip.export_to_nir(snnchip.build_model(snnchip.model_spec("vgg", (3, 32, 32), 10, T=2)))
    started = time.perf_counter()
    size = deployment_size(graph)
    assert time.perf_counter() - started < 10
    assert size.synapses > 5e8 and sum(s["weights"] for s in size.stages) < 3e7
    assert size.peak_bytes < 2**30 and size.stored_bytes < 0.3 * 2**30
    assert all(s["cores"] >= s["neurons"] / 8192 for s in size.stages) and 100 < size.cores < 400
    with pytest.raises(ResourceError, match=r"synapses \(largest: conv\d.*Loihi 2 cores on \d+ chip.*above the "
                                            r"budget of 0.10 GiB.*T does not change this"):
        deployment_from_graph(graph, max_memory=0.1 * 2**30)




def test_layer_partition_counts_neurons_synapses_and_a_kernel_once_per_core():
    """Hand-derived: 8193 neurons need 2 cores (8192 per core); 512 output channels of 512·3·3-byte kernels: a core's
    131,072 bytes hold 28 channels' kernels, so 19 cores; a single channel's kernels beyond a core are refused."""
    assert layer_cores(8193, 0, []) == 2
    assert layer_cores(100, 0, [(512, 512 * 9)]) == 19
    assert layer_cores(100, 2 * 937_500 + 1, []) == 3  # 120 M synapses / 128 cores per core
    with pytest.raises(ResourceError, match="one output channel's kernels need 200,000 bytes, more than the 131,072"):
        layer_cores(10, 0, [(4, 200_000)])
