"""Resource/energy estimate: counts and energy checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from nir_nets import conv_graph, mlp_graph

from snnchip.export.loihi import deployment_from_graph
from snnchip.hw_sim import resources


def test_counts_are_the_deployed_dense_matrices():
    dep = deployment_from_graph(mlp_graph((6, 5, 3), T=3, seed=1))
    layers = resources.layer_resources(dep)
    assert [la["layer"] for la in layers] == [q.name for q in dep.qnet.stages]
    for la, q in zip(layers, dep.qnet.stages, strict=True):
        (w,) = [p.weight for p in q.inputs]
        assert (la["neurons"], la["inputs"][0]["sources"]) == w.shape
        assert la["connections"] == la["weights"] == int(np.count_nonzero(w))
    assert layers[0]["neurons"] == 5 and layers[1]["neurons"] == 3
    assert [la["inputs"][0]["source"] for la in layers] == ["input", "fc1"]


def test_sparse_stages_count_their_stored_nonzeros():
    dep = deployment_from_graph(conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=3, seed=1))
    layers = resources.layer_resources(dep)
    assert [la["inputs"][0]["synapse"] for la in layers] == ["conv", "conv", "dense"]
    for la, q in zip(layers, dep.qnet.stages, strict=True):
        (w,), (p,) = [p.weight for p in q.inputs], la["inputs"]
        nonzero = w.to_csr().count_nonzero() if p["synapse"] == "conv" else int(np.count_nonzero(w))
        assert (la["neurons"], p["sources"], la["connections"]) == (*w.shape, nonzero)
    assert layers[0]["connections"] < 0.25 * layers[0]["neurons"] * layers[0]["inputs"][0]["sources"]


def _layer(name, neurons, inputs):
    connections = sum(c for _, _, c in inputs)
    return {"layer": name, "neurons": neurons, "connections": connections, "weights": connections,
            "inputs": [{"source": s, "sources": n, "connections": c, "synapse": "dense"} for s, n, c in inputs]}


def test_synops_and_energy_by_hand():
    conv = _layer("conv", 108, [("input", 72, 1944)])
    fc = _layer("fc", 10, [("conv", 108, 1080)])
    est = resources.estimate([conv, fc], {"input": 72.0, "conv": 30.0, "fc": 10.0}, T=4)
    # conv: mean fan-out = 1944/72 = 27 per input event; fc: 1080/108 = 10 per input spike; 40 spikes emitted
    assert est["synops"] == pytest.approx(72 * 27 + 30 * 10)
    assert est["neuron_updates"] == (108 + 10) * 4
    expected_pj = est["synops"] * 23.6 + 118 * 4 * 52.0 + 40 * (29.0 + 1.7)
    assert est["energy_uJ"] == pytest.approx(expected_pj * 1e-6)
    assert est["synaptic_memory_bytes"] == 1944 + 1080
    assert est["cores"] == 2 and est["chips"] == 1
    assert "estimate" in est["label"]


def test_recurrent_and_skip_projections_cost_their_sources_spikes():
    fc = _layer("fc", 10, [("input", 20, 100), ("fc", 10, 50)])  # a recurrent projection, fan-out 5
    out = _layer("out", 3, [("fc", 10, 30), ("input", 20, 60)])  # a skip from the input, fan-out 3
    est = resources.estimate([fc, out], {"input": 8.0, "fc": 4.0, "out": 0.0}, T=2)
    assert est["synops"] == pytest.approx(8 * 5 + 4 * 5 + 4 * 3 + 8 * 3)


def test_cores_follow_the_per_core_neuron_limit():
    big = _layer("x", 20000, [("input", 10, 200000)])
    est = resources.estimate([big], {"input": 0.0}, T=1)
    assert est["cores"] == 3  # ceil(20000 / 8192)


def test_a_kernel_layer_stores_its_kernel_once_and_counts_its_connections():
    """Synaptic memory holds a conv layer's kernel (C_out · C_in · k_h · k_w weights), not its connections; cores
    follow the partition of ``sizing.layer_cores``."""
    from snnchip.export.sizing import layer_cores

    dep = deployment_from_graph(conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=3, seed=1))
    layers = resources.layer_resources(dep)
    conv2 = layers[1]
    kernel = dep.qnet.stages[1].inputs[0].weight
    assert conv2["weights"] == kernel.kernel.size == 3 * 2 * 6 * 6 and conv2["connections"] > conv2["weights"]
    est = resources.estimate(layers, {"input": 10.0, "conv1": 5.0, "conv2": 5.0}, T=3)
    assert [la["cores"] for la in est["layers"]] == [layer_cores(la["neurons"], la["expanded"], la["kernels"])
                                                     for la in layers]
    assert est["synaptic_memory_bytes"] == sum(la["weights"] for la in layers)
