"""The data-driven initialisation (rate_init) and the silent/saturated-layer warnings of training (activity)."""

import dataclasses
import json
import warnings

import pytest
import torch

from snnchip.bench.accuracy import accuracy_table, markdown
from snnchip.cli import snn_train
from snnchip.errors import SpecError
from snnchip.spec import NeuronSpec
from snnchip.train.activity import LayerActivityWarning, RateFlag, rate_flags
from snnchip.train.config import TrainConfig, build_spec
from snnchip.train.data import load_dataset
from snnchip.train.inference import simulate
from snnchip.train.model import build_model
from snnchip.train.rate_init import TOLERANCE, calibrate_rates
from snnchip.train.rules import METHODS
from snnchip.train.trainer import fit, initialise
from snnchip.train.zoo import model_spec


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _rates(model, x) -> dict[str, float]:
    return {name: float(s.mean()) for name, s in simulate(model, x).spikes.items()}


def _initialised(cfg: TrainConfig, ds):
    torch.manual_seed(cfg.seed)
    model = build_model(build_spec(cfg, ds))
    initialise(model, cfg, ds)
    return model


@pytest.mark.parametrize("method", METHODS)
def test_default_convnet_fires_in_every_layer_at_initialisation(digits, method):
    model = _initialised(TrainConfig(out="unused", model="convnet", method=method), digits)
    rates = _rates(model, digits.x_test[:128])  # test samples: not the calibration batch
    assert rate_flags(model.spec, rates) == [], rates


@pytest.mark.parametrize("method", ["ottt-a", "sltt"])
def test_default_vgg_fires_in_every_layer_at_initialisation(digits, method):
    """OTTT's VGG-11 (8 spiking layers; 8×8 digits, so the last stage is 1×1): PyTorch's initialisation with scaled
    weight standardisation leaves the deep layers silent; the calibrated one fires in every layer (T = 3 for speed:
    weight standardisation is recomputed at every step)."""
    model = _initialised(TrainConfig(out="unused", model="vgg", method=method, T=3, batch_size=16), digits)
    rates = _rates(model, digits.x_test[:16])
    assert len(rates) >= 8 and rate_flags(model.spec, rates) == [], rates


def test_calibration_is_per_layer_threshold_balancing(digits):
    """Each calibrated layer fires at the target on the calibration batch, measured by ``simulate`` (the whole net,
    not the calibrator's neuron loop), and its spikes are those of the uncalibrated net with θ_l / c_l (the LIF is
    positively homogeneous in (I, θ)) — so calibration changes weights, never the neuron semantics."""
    spec = model_spec("convnet", (1, 8, 8), 10, T=6, neuron=NeuronSpec(lam=0.5))
    torch.manual_seed(0)
    model = build_model(spec).double()
    plain = build_model(spec).double()
    plain.load_state_dict(model.state_dict())
    x = digits.x_train[:64].double()
    report = calibrate_rates(model, x, 0.2)
    assert set(report) == {"conv1", "conv2"} and all(c.scale > 1 for c in report.values())
    rates = _rates(model, x)
    for name in report:
        assert abs(rates[name] - 0.2) <= TOLERANCE * 0.2 and rates[name] == pytest.approx(report[name].rate_after)
    balanced = dataclasses.replace(spec, layers=tuple(
        dataclasses.replace(la, neuron=dataclasses.replace(la.neuron, theta=la.neuron.theta / report[la.name].scale))
        if la.name in report else la for la in spec.layers))
    reference = build_model(balanced).double()
    reference.load_state_dict(plain.state_dict())
    ours, theirs = simulate(model, x).spikes, simulate(reference, x).spikes
    for name in report:
        assert torch.equal(ours[name], theirs[name])


def test_calibration_refuses_a_rate_outside_zero_one(digits):
    model = build_model(model_spec("mlp", (64,), 10, T=2))
    with pytest.raises(SpecError, match=r"must be in \(0, 1\), got 1.5"):
        calibrate_rates(model, digits.x_train[:8].flatten(1), 1.5)


def test_rate_flags_names_silent_and_saturated_layers():
    lif = model_spec("mlp", (64,), 10, T=2, hidden=(8, 8, 8))
    flags = rate_flags(lif, {"fc1": 0.0, "fc2": 0.5, "fc3": 0.995})
    assert flags == [RateFlag("fc1", 0.0, "silent", 1e-3), RateFlag("fc3", 0.995, "saturated", 0.99)]
    assert flags[0].message() == "layer fc1 is silent: firing rate 0 < 0.001"
    assert flags[1].message() == "layer fc3 is saturated: firing rate 0.995 > 0.99"
    assert rate_flags(lif, {"fc1": 1e-3, "fc2": 0.99, "fc3": 0.2}) == []  # the thresholds themselves are healthy
    empf = dataclasses.replace(lif, layers=tuple(
        dataclasses.replace(la, neuron=NeuronSpec(kind="empf")) if la.name.startswith("fc") else la
        for la in lif.layers))
    assert rate_flags(empf, {"fc1": 2.5}) == []  # real-valued EM-PF spikes: no ceiling


def test_training_warns_about_a_silent_layer_every_epoch(tmp_path, capsys):
    """θ = 10⁶ without calibration: no LIF layer can fire. Each epoch warns, naming the layer, its rate and the
    floor; metrics.json records the flags; snn-train prints each as one line."""
    opts = {"model": "convnet", "method": "sltt", "T": 2, "epochs": 2, "batch_size": 1024, "theta": 1e6,
            "init_rate": 0.0}
    with pytest.warns(LayerActivityWarning) as caught:
        fit(TrainConfig(out=str(tmp_path / "fit"), quiet=True, **opts))
    messages = [str(w.message) for w in caught]
    assert "epoch 1: layer conv1 is silent: firing rate 0 < 0.001" in messages
    assert "epoch 2: layer conv2 is silent: firing rate 0 < 0.001" in messages
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert [f["layer"] for f in metrics["epochs"][1]["rate_flags"]] == ["conv1", "conv2"]
    assert metrics["epochs"][0]["rate_flags"][0] == {"layer": "conv1", "rate": 0.0, "state": "silent",
                                                     "threshold": 1e-3}

    argv = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()] + ["--quiet", "--out", str(tmp_path / "cli")]
    assert snn_train.main(argv) == 0
    assert "snn-train: warning: epoch 2: layer conv1 is silent: firing rate 0 < 0.001\n" in capsys.readouterr().err


def test_a_healthy_network_trains_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerActivityWarning)
        metrics = fit(TrainConfig(out=str(tmp_path), model="convnet", method="sltt", epochs=2, max_steps=4,
                                  quiet=True))
    assert all(e["rate_flags"] == [] for e in metrics["epochs"])
    assert set(metrics["init_calibration"]) == {"conv1", "conv2"}


def test_method_defaults():
    assert TrainConfig(out="x", method="sltt-k").k == 2 and TrainConfig(out="x", method="sltt-k", T=1).k == 1
    assert TrainConfig(out="x", method="sltt").k is None
    assert TrainConfig(out="x", method="edbp").batch_size == 16 and TrainConfig(out="x").batch_size == 64


def test_accuracy_table_runs_each_rule_at_snn_train_defaults():
    rows = accuracy_table(["sltt-k", "edbp"], "convnet", epochs=1)
    assert [(r["method"], r["k"], r["batch_size"], r["lr"], r["T"]) for r in rows] == [
        ("sltt-k", 2, 64, 1e-2, 6), ("edbp", None, 16, 5e-3, 6)]
    assert all(0 <= r["final_test_acc"] <= 1 and r["peak_saved_tensor_bytes"] > 0 for r in rows)
    assert markdown(rows).splitlines()[2].startswith("| sltt-k (K=2) | ")
