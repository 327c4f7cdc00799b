"""Resource/energy estimate: counts checked by hand on small NIR graphs."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snnchip.hw_sim import resources


def test_dense_and_conv_counts_by_hand():
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
            "conv": nir.Conv2d(input_shape=(6, 6), weight=np.ones((3, 2, 3, 3)), stride=1, padding=1,
                               dilation=1, groups=1, bias=np.zeros(3)),
            "flat": nir.Flatten(input_type={"input": np.array([3, 6, 6])}, start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=np.ones((10, 108)), bias=np.zeros(10)),
            "output": nir.Output(output_type={"output": np.array([10])}),
        },
        edges=[("input", "conv"), ("conv", "flat"), ("flat", "fc"), ("fc", "output")],
    )
    layers = {la["layer"]: la for la in resources.layer_resources(g)}
    assert layers["conv"]["neurons"] == 3 * 6 * 6
    assert layers["conv"]["connections"] == 3 * 6 * 6 * 2 * 3 * 3
    assert layers["conv"]["weights"] == 54 and layers["conv"]["fan_in"] == 72
    assert layers["fc"] == {"layer": "fc", "neurons": 10, "fan_in": 108, "connections": 1080, "weights": 1080}

    est = resources.estimate([layers["conv"], layers["fc"]], spikes_in=[72.0, 30.0], spikes_out=40.0, T=4)
    # conv: mean fan-out = 1944/72 = 27 per input event; fc: 10 per input spike
    assert est["synops"] == pytest.approx(72 * 27 + 30 * 10)
    assert est["neuron_updates"] == (108 + 10) * 4
    expected_pj = est["synops"] * 23.6 + 118 * 4 * 52.0 + 40 * (29.0 + 1.7)
    assert est["energy_uJ"] == pytest.approx(expected_pj * 1e-6)
    assert est["cores"] == 2 and est["chips"] == 1
    assert "estimate" in est["label"]


def test_cores_follow_the_per_core_neuron_limit():
    big = {"layer": "x", "neurons": 20000, "fan_in": 10, "connections": 200000, "weights": 200000}
    est = resources.estimate([big], spikes_in=[0.0], spikes_out=0.0, T=1)
    assert est["cores"] == 3  # ceil(20000 / 8192)
    with pytest.raises(ValueError, match="one input-spike count per layer"):
        resources.estimate([big], spikes_in=[], spikes_out=0.0, T=1)
