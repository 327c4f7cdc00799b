"""Spec-built models: folding exactness, checkpoint round trip, online memory independent of T, errors."""

import dataclasses
import random

import pytest
import torch

from snnchip.bench.train import saved_tensor_peak
from snnchip.checkpoint import save_checkpoint
from snnchip.errors import SpecError
from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronSpec
from snnchip.train import build_model, gradients, load_model, model_spec, plain_parameters, plain_spec, simulate, vgg
from snnchip.train.encoding import time_major
from snnchip.train.rules import run_iteration


def _plain_copy(model):
    """An unfolded model: the plain spec with the folded weights loaded as they are."""
    plain = build_model(plain_spec(model.spec))
    state = {f"{layer}.{k}": torch.from_numpy(v) for layer, entry in plain_parameters(model).items()
             for k, v in entry.items()}
    plain.load_state_dict(state, strict=True)
    return plain


def _scaled_feedback_spec():
    n = NeuronSpec()
    layers = (LayerSpec("fc1", "linear", out_features=12, neuron=n, options={"weight_std": True, "scale": 2.74}),
              LayerSpec("fc2", "linear", out_features=9, neuron=n, options={"scale": 0.7}),
              LayerSpec("out", "linear", out_features=3, neuron=NeuronSpec(kind="readout")))
    return NetworkSpec(input_shape=(6,), layers=layers, T=5, num_classes=3, feedback=(FeedbackSpec("fc2", "fc1"),))


@pytest.mark.parametrize("make", [
    lambda: vgg((2, 8, 8), 3, 4, NeuronSpec(), config=(4, "M", 6, 6, "M", 8)),
    _scaled_feedback_spec,
])
def test_plain_parameters_fold_exactly(make):
    torch.manual_seed(0)
    model = build_model(make())
    x = torch.rand(5, *model.spec.input_shape) * 2
    folded, plain = simulate(model, x), simulate(_plain_copy(model), x)
    torch.testing.assert_close(plain.output, folded.output, atol=1e-5, rtol=1e-5)
    for name, s in folded.spikes.items():
        assert torch.equal(plain.spikes[name], s)
    assert sum(s.sum() for s in folded.spikes.values()) > 0


def test_plain_parameter_keys_and_shapes():
    model = build_model(model_spec("mlp-feedback", (1, 8, 8), 10, 3, NeuronSpec(), hidden=(16, 8)))
    p = plain_parameters(model)
    assert set(p) == {"fc1", "fc2", "out", "feedback.fc2__fc1"}
    assert p["fc1"]["weight"].shape == (16, 64) and p["fc1"]["bias"].shape == (16,)
    assert set(p["feedback.fc2__fc1"]) == {"weight"} and p["feedback.fc2__fc1"]["weight"].shape == (16, 8)


def test_load_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_spec("convnet", (1, 8, 8), 10, 3, NeuronSpec()))
    save_checkpoint(tmp_path / "model.pt", model.spec, model.state_dict())
    loaded, ckpt = load_model(tmp_path / "model.pt")
    x = torch.rand(2, 1, 8, 8)
    assert ckpt.spec == model.spec
    torch.testing.assert_close(simulate(loaded, x).output, simulate(model, x).output, atol=0, rtol=0)


def _peak_saved_bytes(model, x, y, method, T):
    """Peak bytes of tensors autograd holds for backward over one iteration (the bench's saved-tensor counter)."""
    return saved_tensor_peak(model, x, y, method, T, k=1, rng=random.Random(0))


@pytest.mark.parametrize("method", ["ottt-o", "ottt-a", "sltt", "sltt-k", "saf-e", "saf-f"])
def test_online_memory_does_not_grow_with_T(method):
    torch.manual_seed(0)
    model = build_model(model_spec("mlp", (8,), 3, 2, NeuronSpec(), hidden=(16,)))
    x, y = torch.rand(4, 8), torch.tensor([0, 1, 2, 0])
    assert _peak_saved_bytes(model, x, y, method, 2) == _peak_saved_bytes(model, x, y, method, 12) > 0


def test_bptt_memory_grows_with_T():
    torch.manual_seed(0)
    model = build_model(model_spec("mlp", (8,), 3, 2, NeuronSpec(), hidden=(16,)))
    x, y = torch.rand(4, 8), torch.tensor([0, 1, 2, 0])
    assert _peak_saved_bytes(model, x, y, "bptt", 12) > 4 * _peak_saved_bytes(model, x, y, "bptt", 2)


def test_time_major_input_is_used_as_given():
    torch.manual_seed(0)
    model = build_model(model_spec("mlp", (8,), 3, 4, NeuronSpec(), hidden=(16,)))
    x = torch.rand(4, 2, 8)
    res = simulate(model, x)
    assert res.output.shape == (4, 2, 3) and res.spikes["fc1"].shape == (4, 2, 16)
    assert gradients(model, x, torch.tensor([0, 1]), "ottt-a")["fc1.weight"].shape == (16, 8)


def test_rate_encoding_draws_binary_inputs():
    spec = dataclasses.replace(model_spec("mlp", (8,), 3, 6, NeuronSpec(), hidden=(16,)), encoding="rate")
    xs = time_major(torch.full((2, 8), 0.5), spec)
    assert xs.shape == (6, 2, 8) and set(xs.unique().tolist()) <= {0.0, 1.0}


def test_errors_name_the_valid_choices():
    model = build_model(model_spec("mlp", (8,), 3, 2, NeuronSpec(), hidden=(4,)))
    x, y = torch.rand(2, 8), torch.tensor([0, 1])
    with pytest.raises(SpecError, match="valid: bptt"):
        gradients(model, x, y, "nope")
    with pytest.raises(SpecError, match="K"):
        gradients(model, x, y, "sltt-k", k=3)
    with pytest.raises(SpecError, match="valid: mlp"):
        model_spec("resnet", (8,), 3, 2, NeuronSpec())
    zero = build_model(model_spec("mlp", (8,), 3, 2, NeuronSpec(reset="zero"), hidden=(4,)))
    with pytest.raises(SpecError, match="subtractive"):
        gradients(zero, x, y, "saf-e")
    with pytest.raises(SpecError, match="does not match"):
        simulate(model, torch.rand(2, 9))


def test_vgg_is_ottt_config_a_with_ws_and_scale():
    spec = vgg((3, 32, 32), 10, 6, NeuronSpec())
    convs = [la for la in spec.layers if la.op == "conv2d"]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(c.options == {"weight_std": True, "scale": 2.74} for c in convs)
    assert [la.op for la in spec.layers if la.op == "avgpool"] == ["avgpool"] * 4  # 3 pools + global pool
    assert spec.shapes()[-3] == (512, 1, 1)


@pytest.mark.parametrize("method,calls", [("bptt", 1), ("ottt-o", 4), ("ottt-a", 1), ("sltt", 1), ("sltt-k", 1),
                                          ("saf-e", 4), ("saf-f", 1)])
def test_optimizer_steps_per_iteration(method, calls):
    model = build_model(model_spec("mlp", (8,), 3, 4, NeuronSpec(), hidden=(4,)))
    counter = []
    run_iteration(model, torch.rand(2, 8), torch.tensor([0, 1]), method, k=2, step=lambda: counter.append(1))
    assert len(counter) == calls
