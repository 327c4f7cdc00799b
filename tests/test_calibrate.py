"""Quantization-aware calibration (``snnchip.train.qat`` with ``snnchip.export.loihi.chip_weights``, the
``snnchip.workflows.calibrate`` workflow, ``snn-export --calibrate``).

Independent checks: the straight-through quantizer reproduces the export quantizer's dequantized weights
exactly (MLP with graded input and readout; conv stage through NIR lowering), gradients pass straight through,
calibration closes a deliberately created float-vs-chip gap, and the CLI writes the deploy directory and record.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from snnchip.errors import SpecError
from snnchip.export.loihi import calibratable_layers, chip_weights, deployment_from_graph, load_deploy
from snnchip.export.lowering import lower
from snnchip.export.nir_export import spec_to_nir
from snnchip.export.quantize import SaturationWarning, dequantize_weight, frac_bits
from snnchip.spec import LayerSpec, NetworkSpec, NeuronSpec
from snnchip.train import build_model, from_plain, load_model, plain_parameters, plain_spec
from snnchip.train.inference import encoded_test_set
from snnchip.train.qat import ChipQuantizer
from snnchip.workflows import calibrate as C

LIF = NeuronSpec(lam=0.5, theta=1.0)
READOUT = NeuronSpec(kind="readout")


def _mlp(seed: int, positive_out: bool = False, bias: bool = True):
    spec = NetworkSpec(model="t", input_shape=(12,), num_classes=4, T=5, method="bptt", layers=(
        LayerSpec("fc1", "linear", out_features=9, bias=bias, neuron=LIF),
        LayerSpec("fc2", "linear", out_features=7, bias=bias, neuron=LIF),
        LayerSpec("out", "linear", out_features=4, bias=bias, neuron=READOUT)))
    torch.manual_seed(seed)
    model = build_model(spec)
    if positive_out:
        with torch.no_grad():
            model.out.weight.abs_()  # the all-positive sign mode: grid [0, 255], step 1
    return model


def _quantizer(model) -> ChipQuantizer:
    return ChipQuantizer(model, lambda params: chip_weights(model.spec, params)[1])


def _deployment(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        return deployment_from_graph(spec_to_nir(model.spec, plain_parameters(model)))


@pytest.mark.parametrize("seed", range(6))
def test_forward_weights_equal_the_deployments_dequantized_weights(seed):
    model = _mlp(seed, positive_out=seed % 2 == 1, bias=seed != 2)
    quant = _quantizer(model)
    targets = quant.targets()
    exact = chip_weights(model.spec, quant.raw_parameters())[1]
    dep = _deployment(model)  # independent: the export path on plain_parameters
    assert [q.name for q in dep.qnet.stages] == ["fc1", "fc2", "out"]
    for q in dep.qnet.stages:
        (p,) = q.inputs
        w_hat = dequantize_weight(p, frac_bits(dep.qnet, p.source), q.scale)
        assert np.array_equal(exact[q.name]["weight"], w_hat)  # bit for bit, float64
        assert torch.equal(targets[q.name]["weight"], torch.from_numpy(w_hat).float())
        if seed != 2:
            assert np.array_equal(exact[q.name]["bias"], q.bias.astype(np.float64) / q.scale)
    # attached: the model's forward weight is that tensor; detached: the float weight is back untouched
    raw = model.fc1.weight.detach().clone()
    quant.attach()
    assert torch.equal(model.fc1.weight, targets["fc1"]["weight"])
    quant.detach()
    assert torch.equal(model.fc1.weight, raw)
    assert set(model.state_dict()) == set(build_model(model.spec).state_dict())


def test_conv_stage_quantizes_elementwise_like_the_deployment():
    spec = NetworkSpec(model="c", input_shape=(2, 6, 6), num_classes=3, T=4, method="bptt", layers=(
        LayerSpec("conv1", "conv2d", out_channels=3, kernel_size=3, padding=1, neuron=LIF),
        LayerSpec("flat", "flatten"),
        LayerSpec("out", "linear", out_features=3, neuron=READOUT)))
    torch.manual_seed(1)
    model = build_model(spec)
    exact = chip_weights(spec, plain_parameters(model))[1]
    dep = _deployment(model)
    params = {k: {f: np.asarray(v, np.float32) for f, v in exact[k].items()} for k in exact}
    lowered = lower(spec_to_nir(spec, params))  # the stage matrices of the quantized kernels
    for st, q in zip(lowered.stages, dep.qnet.stages, strict=True):
        (p,), (pf,) = q.inputs, st.inputs
        w_hat = dequantize_weight(p, frac_bits(dep.qnet, p.source), q.scale).astype(np.float32).astype(np.float64)
        assert pf.synapse == p.synapse, q.name
        dense = [w.toarray() if sp.issparse(w) else w for w in (pf.weight, w_hat)]
        assert np.array_equal(*dense), q.name


def test_pooling_before_a_stage_is_refused_by_name():
    spec = NetworkSpec(model="p", input_shape=(1, 4, 4), num_classes=2, T=3, method="bptt", layers=(
        LayerSpec("conv1", "conv2d", out_channels=2, kernel_size=3, padding=1, neuron=LIF),
        LayerSpec("pool", "avgpool", kernel_size=2),
        LayerSpec("flat", "flatten"),
        LayerSpec("out", "linear", out_features=2, neuron=READOUT)))
    with pytest.raises(SpecError, match="'out'.*pool"):
        calibratable_layers(spec)


def test_gradients_pass_straight_through():
    model, ref = _mlp(3), _mlp(3)
    with torch.no_grad():  # strong enough that every layer spikes (non-zero surrogate gradients everywhere)
        for m in (model, ref):
            for name in ("fc1", "fc2"):
                getattr(m, name).weight.mul_(4)
    quant = _quantizer(model)
    targets = quant.targets()
    with torch.no_grad():  # ref: a plain model whose float weights ARE the quantized ones
        for name, entry in targets.items():
            getattr(ref, name).weight.copy_(entry["weight"])
            getattr(ref, name).bias.copy_(entry["bias"])
    quant.attach()
    x = 2 * torch.rand(16, 12)
    y = torch.randint(0, 4, (16,))
    from snnchip.train import gradients

    g_model, g_ref = gradients(model, x, y, "bptt"), gradients(ref, x, y, "bptt")
    for name in ("fc1", "fc2", "out"):
        for field in ("weight", "bias"):
            g = g_model[f"{name}.parametrizations.{field}.original"]
            assert g.abs().sum() > 0
            assert torch.allclose(g, g_ref[f"{name}.{field}"], rtol=1e-5, atol=1e-7)  # dL/dW = dL/dQ(W)
    quant.detach()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from snnchip.train.trainer import TrainConfig, fit

    out = tmp_path_factory.mktemp("cal")
    fit(TrainConfig(out=str(out), hidden="64", method="ottt-a", T=4, epochs=8, quiet=True, device="cpu"))
    return out / "model.pt"


def _coarse(trained: Path, tmp_path: Path) -> Path:
    """The trained MLP with one fc1 weight 130× max|W| on a pixel that is 0 in every digits image: the float
    network computes exactly the same, but the shared exponent now rounds every other fc1 weight to a mantissa
    in {−2, 0, 2}."""
    from snnchip.checkpoint import save_checkpoint
    from snnchip.train.data import load_dataset

    model, ckpt = load_model(trained)
    spec = plain_spec(ckpt.spec)
    plain = from_plain(ckpt.spec, plain_parameters(model))
    data = load_dataset("digits", spec=spec)
    dead = torch.nonzero((data.x_train.abs().sum(0) == 0) & (data.x_test.abs().sum(0) == 0)).flatten()
    with torch.no_grad():
        plain.fc1.weight[0, dead[0]] = 130 * plain.fc1.weight.abs().max()
    return save_checkpoint(tmp_path / "coarse.pt", spec, plain.state_dict(), metrics={})


def test_calibration_closes_a_quantization_gap(trained: Path, tmp_path: Path):
    coarse = _coarse(trained, tmp_path)
    rec = C.calibrate(coarse, tmp_path / "deploy", C.CalibrationConfig(epochs=3), log=lambda s: None)
    before, after = rec["before"], rec["after"]
    print(f"coarse MLP: before float {before['float_accuracy']:.4f} chip {before['chip_accuracy']:.4f}; "
          f"after float {after['float_accuracy']:.4f} chip {after['chip_accuracy']:.4f}")
    assert before["gap_points"] >= 3.0  # the construction really hurts on the chip
    assert abs(after["gap_points"]) <= before["gap_points"] - 2.0
    assert after["chip_accuracy"] >= before["chip_accuracy"] + 0.02
    assert after["decision_agreement"] > before["decision_agreement"]
    assert rec["quantizer_refreshes"] >= 3 * 20  # c and e recomputed after every optimizer step


def test_cli_writes_deploy_dir_calibrated_checkpoint_and_record(trained: Path, tmp_path: Path, capsys):
    from snnchip.cli import export

    out = tmp_path / "dep"
    assert export([str(trained), "--target", "loihi", "--calibrate", "--calibrate-epochs", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "before calibration" in printed and "after calibration" in printed
    rec = json.loads((out / C.RECORD_NAME).read_text())
    assert rec["epochs"] == 1 and rec["method"] == "ottt-a" and rec["snapped"]
    assert max(rec["snap_residual"].values()) <= 1e-6  # the exported float weights are the chip's, re-quantized
    for key in ("before", "after", "after_unsnapped"):
        assert set(rec[key]) >= {"float_accuracy", "chip_accuracy", "gap_points", "decision_agreement"}
    dep = load_deploy(out)
    calibrated, ckpt = load_model(out / C.CALIBRATED_NAME)
    assert ckpt.metrics["calibration"]["after"] == rec["after"]
    again = _deployment(calibrated)  # the checkpoint is exactly the model that was exported
    for q, r in zip(dep.qnet.stages, again.qnet.stages, strict=True):
        assert np.array_equal(q.inputs[0].weight, r.inputs[0].weight) and np.array_equal(q.bias, r.bias)
        assert q.scale == r.scale
    # the accuracies recorded after calibration are those of the written deploy directory
    from snnchip.train.data import load_dataset

    data = load_dataset("digits", spec=ckpt.spec)
    xs, y = encoded_test_set(ckpt.spec, data)
    assert C.accuracies(calibrated, dep, xs, y) == rec["after"]


def test_cli_refuses_calibration_for_other_targets(trained: Path, tmp_path: Path, capsys):
    from snnchip.cli import export

    assert export([str(trained), "--target", "nir", "--calibrate", "-o", str(tmp_path / "m.nir")]) == 2
    assert "--target loihi" in capsys.readouterr().err
