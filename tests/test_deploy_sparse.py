"""Scaling: a two-conv net on 28×28 input lowers, quantizes and exports as kernels, never as matrices."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
from nir_nets import conv_graph

from snnchip.export.loihi import export_loihi, load_deploy
from snnchip.hw_sim.chip import ChipSimulator


def test_28x28_two_conv_net_exports_far_below_its_dense_size(tmp_path):
    graph = conv_graph(in_shape=(1, 28, 28), channels=(8, 16), classes=10, T=4, seed=0)
    tracemalloc.start()
    try:
        out = export_loihi(graph, tmp_path / "dep")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    dep = load_deploy(out)
    conv1, conv2, fc = (q.inputs[0] for q in dep.qnet.stages)
    assert [p.synapse for p in (conv1, conv2, fc)] == ["conv", "conv", "dense"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"][1]["inputs"][0]["synapse"] == "conv"
    # conv1: 8 channels × 28·28 positions, a 3x3 kernel; pool1 + conv2: one 6x6 kernel of stride 2 (16 × 8 × 36)
    assert conv1.weight.shape == (8 * 28 * 28, 28 * 28) and conv1.weight.kernel.shape == (8, 1, 3, 3)
    assert conv2.weight.shape == (16 * 14 * 14, 8 * 28 * 28) and conv2.weight.kernel.shape == (16, 8, 6, 6)
    csr = conv2.weight.to_csr()
    csr.eliminate_zeros()
    dense_bytes = sum(math.prod(q.weight.shape) * (4 + 8) for q in (conv1, conv2))  # int32 + float64 matrices
    stored = (out / "params.npz").stat().st_size
    assert dense_bytes > 280e6 and stored < 1e6  # 281 MiB dense, 17 MiB as CSR arrays, 0.55 MB (mostly fc3, dense)
    assert peak < 20e6  # nothing of the expanded size (conv2's CSR alone is ~3 MiB of values)
    assert csr.nnz == conv2.synapses == dep.manifest["resources"]["per_stage"]["conv2"]["synapses"]
    x = np.random.default_rng(0).uniform(0, 1, (4, 1, 1, 28, 28))
    res = ChipSimulator(dep).run(x)
    assert res.spikes["conv1"].any() and res.spikes["conv2"].any() and res.output.shape == (4, 1, 10)


def test_a_one_synapse_per_output_matrix_gives_the_csr_product():
    """A shortcut's CSR matrix (one synapse per output: the identity, or a selection of inputs) is summed as a
    gather; its integers are scipy's CSR product's, for binary and graded messages, shifted by the exponent."""
    import scipy.sparse as sp

    from snnchip.deploy.fixed_point import dense_fixed, effective_weights

    rng = np.random.default_rng(3)
    n = 40
    for cols in (np.arange(n), rng.permutation(n), rng.choice(2 * n, n, replace=False)):
        values = rng.choice([-1, 1], n) * rng.integers(1, 128, n) * 2
        w = effective_weights(sp.csr_matrix((values, (np.arange(n), cols)), shape=(n, int(cols.max()) + 1)))
        assert w.nnz == n  # no zero weight drawn: every output keeps its one synapse
        for s in (rng.random((3, 5, w.shape[1])) < 0.4, rng.integers(-2**12, 2**12, (3, 5, w.shape[1]))):
            ref = np.asarray(w @ s.reshape(-1, w.shape[1]).T.astype(np.int64)).T.reshape(3, 5, n)
            np.testing.assert_array_equal(dense_fixed(w, -2, s), ref >> 2)
            np.testing.assert_array_equal(dense_fixed(w, 0, s), ref)
