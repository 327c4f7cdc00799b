"""Resource/energy estimate: counts and energy checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from snnchip.export.loihi import deployment_from_graph
from snnchip.hw_sim import resources
from snnchip.hw_sim.nets import conv_graph, mlp_graph


def test_counts_are_the_deployed_dense_matrices():
    dep = deployment_from_graph(mlp_graph((6, 5, 3), T=3, seed=1))
    layers = resources.layer_resources(dep)
    assert [la["layer"] for la in layers] == [q.name for q in dep.qnet.stages]
    for la, q in zip(layers, dep.qnet.stages, strict=True):
        assert (la["neurons"], la["fan_in"]) == q.weight.shape
        assert la["connections"] == la["weights"] == int(np.count_nonzero(q.weight))
    assert layers[0]["neurons"] == 5 and layers[1]["neurons"] == 3


def test_sparse_stages_count_their_stored_nonzeros():
    dep = deployment_from_graph(conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=3, seed=1))
    layers = resources.layer_resources(dep)
    assert [la["synapse"] for la in layers] == ["sparse", "sparse", "dense"]
    for la, q in zip(layers, dep.qnet.stages, strict=True):
        nonzero = q.weight.count_nonzero() if la["synapse"] == "sparse" else int(np.count_nonzero(q.weight))
        assert (la["neurons"], la["fan_in"], la["connections"]) == (*q.weight.shape, nonzero)
    assert layers[0]["connections"] < 0.25 * layers[0]["neurons"] * layers[0]["fan_in"]


def test_synops_and_energy_by_hand():
    conv = {"layer": "conv", "neurons": 108, "fan_in": 72, "connections": 1944, "weights": 1944}
    fc = {"layer": "fc", "neurons": 10, "fan_in": 108, "connections": 1080, "weights": 1080}
    est = resources.estimate([conv, fc], spikes_in=[72.0, 30.0], spikes_out=40.0, T=4)
    # conv: mean fan-out = 1944/72 = 27 per input event; fc: 1080/108 = 10 per input spike
    assert est["synops"] == pytest.approx(72 * 27 + 30 * 10)
    assert est["neuron_updates"] == (108 + 10) * 4
    expected_pj = est["synops"] * 23.6 + 118 * 4 * 52.0 + 40 * (29.0 + 1.7)
    assert est["energy_uJ"] == pytest.approx(expected_pj * 1e-6)
    assert est["synaptic_memory_bytes"] == 1944 + 1080
    assert est["cores"] == 2 and est["chips"] == 1
    assert "estimate" in est["label"]


def test_cores_follow_the_per_core_neuron_limit():
    big = {"layer": "x", "neurons": 20000, "fan_in": 10, "connections": 200000, "weights": 200000}
    est = resources.estimate([big], spikes_in=[0.0], spikes_out=0.0, T=1)
    assert est["cores"] == 3  # ceil(20000 / 8192)
    with pytest.raises(ValueError, match="one input-spike count per layer"):
        resources.estimate([big], spikes_in=[], spikes_out=0.0, T=1)
