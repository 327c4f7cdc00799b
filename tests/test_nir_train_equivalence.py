"""Equivalence ladder rung 2: the PyTorch model (snnchip.train) and its NIR graph in the reference executor."""

import pytest
import torch

from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import model_graph, spec_to_nir, write_nir
from snnchip.spec import NeuronSpec

train = pytest.importorskip("snnchip.train")


NEURONS = [NeuronSpec(lam=0.5), NeuronSpec(lam=1 - 1 / 1.1, reset="zero", spike="gt"), NeuronSpec(lam=1.0, theta=0.5)]
CASES = [(name, n) for name in ("mlp-feedback", "convnet") for n in NEURONS] + [("vgg", NEURONS[2])]


@pytest.mark.parametrize(("name", "neuron"), CASES)
def test_model_and_nir_executor_agree(name, neuron, tmp_path):
    """vgg folds weight standardisation and scales (plain_parameters); all run in float32 like the model."""
    torch.manual_seed(0)
    spec = train.model_spec(name, (1, 8, 8), 4, 4, neuron, hidden=(12,))
    model = train.build_model(spec)
    x = torch.rand(4, 3, 1, 8, 8) * 8
    want = train.simulate(model, x)
    graph = spec_to_nir(train.plain_spec(spec), train.plain_parameters(model))
    write_nir(graph, tmp_path / "m.nir")
    got = NIRExecutor(model_graph(tmp_path / "m.nir")).run(x)
    torch.testing.assert_close(got.output, want.output, atol=1e-5, rtol=0)
    assert set(got.spikes) == set(want.spikes)
    for layer, s in want.spikes.items():
        assert torch.equal(got.spikes[layer], s), layer
    assert 0 < next(iter(want.spikes.values())).mean() < 1
