"""Quantization-aware calibration (``snnchip.train.qat`` with ``snnchip.workflows.chip_values.quantization_errors``, the
``snnchip.workflows.calibrate`` workflow, ``snn-export --calibrate``).

Independent checks: with the correction attached, every stage's current is the deployment's own dequantized
projections applied to the sources' spikes (MLP, convolution + pooling, recurrent, residual: the model's float
path and the lowering meet only here); gradients pass straight through (equal to those of a plain model whose
weights are the chip values); calibration closes a deliberately created float-vs-chip gap; the CLI writes the
deploy directory and the record; unsupported rules are refused by name.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from snnchip.errors import SpecError
from snnchip.export.loihi import load_deploy
from snnchip.export.qnet import dequantize_weight, frac_bits
from snnchip.export.weight_grid import mantissa_range
from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronSpec
from snnchip.train import build_model, from_plain, load_model, plain_parameters, plain_spec
from snnchip.train.inference import encoded_test_set
from snnchip.train.qat import ChipCorrection, fine_tune
from snnchip.train.views import SpikeView
from snnchip.workflows import calibrate as C
from snnchip.workflows.chip_values import chip_deployment, chip_weights, elementwise_layers

LIF = NeuronSpec(lam=0.5, theta=1.0)
READOUT = NeuronSpec(kind="readout")


def _mlp(seed: int = 0, feedback: bool = False) -> torch.nn.Module:
    spec = NetworkSpec(model="t", input_shape=(12,), num_classes=4, T=5, method="bptt", layers=(
        LayerSpec("fc1", "linear", out_features=9, neuron=LIF),
        LayerSpec("fc2", "linear", out_features=7, neuron=LIF),
        LayerSpec("out", "linear", out_features=4, neuron=READOUT)),
        feedback=(FeedbackSpec("fc1", "fc1"),) if feedback else ())
    torch.manual_seed(seed)
    return build_model(spec)


def _pooled_convnet(seed: int = 0) -> torch.nn.Module:
    spec = NetworkSpec(model="c", input_shape=(2, 6, 6), num_classes=3, T=4, method="bptt", layers=(
        LayerSpec("conv1", "conv2d", out_channels=3, kernel_size=3, padding=1, neuron=LIF),
        LayerSpec("pool", "avgpool", kernel_size=2),
        LayerSpec("conv2", "conv2d", out_channels=4, kernel_size=3, padding=1, neuron=LIF),
        LayerSpec("flat", "flatten"),
        LayerSpec("out", "linear", out_features=3, neuron=READOUT)))
    torch.manual_seed(seed)
    return build_model(spec)


def _residual(seed: int = 0) -> torch.nn.Module:
    spec = NetworkSpec(model="r", input_shape=(2, 5, 5), num_classes=3, T=4, method="bptt", layers=(
        LayerSpec("stem", "conv2d", out_channels=3, kernel_size=3, padding=1, neuron=LIF),
        LayerSpec("conv_a", "conv2d", out_channels=3, kernel_size=3, padding=1, neuron=LIF),
        LayerSpec("conv_b", "conv2d", out_channels=3, kernel_size=3, padding=1, neuron=LIF,
                  options={"shortcut": "stem"}),
        LayerSpec("flat", "flatten"),
        LayerSpec("out", "linear", out_features=3, neuron=READOUT)))
    torch.manual_seed(seed)
    return build_model(spec)


class RecordingView(SpikeView):
    """Records every stage's current and spikes per step."""

    def __init__(self) -> None:
        self.currents: list[dict[str, torch.Tensor]] = [{}]
        self.spikes: list[dict[str, torch.Tensor]] = [{}]

    def neuron(self, p, current, state, new, name):
        s, h = super().neuron(p, current, state, new, name)
        self.currents[-1][name], self.spikes[-1][name] = current.detach().clone(), s.detach().clone()
        return s, h

    def readout(self, current, state, new, name):
        self.currents[-1][name] = current.detach().clone()
        self.currents.append({})
        self.spikes.append({})
        return super().readout(current, state, new, name)


def _gain(model: torch.nn.Module, factor: float) -> None:
    with torch.no_grad():  # strong enough that every layer spikes
        for name, p in model.named_parameters():
            if name.endswith("weight") and not name.startswith("out"):
                p.mul_(factor)


@pytest.mark.parametrize("build, gain, wide", [(_mlp, 4.0, False), (lambda: _mlp(1, feedback=True), 4.0, False),
                                                (_pooled_convnet, 8.0, False), (_residual, 6.0, False),
                                                (_mlp, 4.0, True), (_pooled_convnet, 8.0, True)],
                         ids=["mlp", "feedback", "conv-pool-conv", "residual", "mlp-wide", "conv-pool-conv-wide"])
def test_corrected_current_is_the_chips_projections_applied_to_the_spikes(build, gain, wide):
    model = build()
    _gain(model, gain)
    dep = chip_deployment(model.spec, plain_parameters(model), wide_weights=wide)
    assert any(p.low is not None for q in dep.qnet.stages for p in q.inputs) == wide
    ChipCorrection(model, functools.partial(C.chip_errors, wide_weights=wide)).attach()
    x = torch.rand(model.spec.T, 6, *model.spec.input_shape)
    view, state = RecordingView(), {}
    with torch.no_grad():
        for t in range(model.spec.T):
            _, state, _ = model.step(x[t], state, view)
    delays = set()
    for t in range(model.spec.T):
        for q in dep.qnet.stages:
            expected = np.tile(q.bias.astype(np.float64) / q.scale, (6, 1))
            for p in q.inputs:
                delays.add(p.delay)
                if t - p.delay < 0:
                    continue
                src = x[t] if p.source == "input" else view.spikes[t - p.delay][p.source]
                w = dequantize_weight(p, frac_bits(dep.qnet, p.source), q.scale)
                w = w.toarray() if not isinstance(w, np.ndarray) else w  # CSR or a kernel, expanded
                expected = expected + src.flatten(1).double().numpy() @ w.T
            got = view.currents[t][q.name].flatten(1).double().numpy()
            assert np.allclose(got, expected, rtol=1e-5, atol=1e-5), (q.name, t, np.abs(got - expected).max())
    spiking = [n for n in view.spikes[0] if any(step[n].sum() > 0 for step in view.spikes[:-1])]
    assert spiking == [q.name for q in dep.qnet.stages[:-1]]  # the check saw spikes in every layer
    assert (1 in delays) == bool(model.spec.feedback)


def test_gradients_pass_straight_through():
    model, ref = _mlp(3), _mlp(3)
    _gain(model, 4.0)
    _gain(ref, 4.0)
    values = chip_weights(model.spec, plain_parameters(model),
                          chip_deployment(model.spec, plain_parameters(model)))
    assert sorted(values) == ["fc1", "fc2", "out"]
    with torch.no_grad():  # ref: a plain model whose float weights ARE the chip's
        for name, entry in values.items():
            for field, v in entry.items():
                getattr(getattr(ref, name), field).copy_(torch.from_numpy(v).float())
    correction = ChipCorrection(model, C.chip_errors).attach()
    x = 2 * torch.rand(16, 12)
    y = torch.randint(0, 4, (16,))
    from snnchip.train import gradients

    g_model, g_ref = gradients(model, x, y, "bptt"), gradients(ref, x, y, "bptt")
    for name in ("fc1", "fc2", "out"):
        for field in ("weight", "bias"):
            g = g_model[f"{name}.{field}"]
            assert g.abs().sum() > 0
            assert torch.allclose(g, g_ref[f"{name}.{field}"], rtol=1e-4, atol=1e-6)  # dL/dW = dL/dQ(W)
    refreshes = correction.refreshes
    with torch.no_grad():
        model.fc1.weight.add_(0.01)
    gradients(model, x, y, "bptt")
    assert correction.refreshes == refreshes + 1  # a changed parameter re-quantizes; an unchanged one does not
    gradients(model, x, y, "bptt")
    assert correction.refreshes == refreshes + 1


@pytest.mark.parametrize("wide", [False, True])
def test_snapped_weights_are_the_deployments_dequantized_weights(wide):
    """chip_weights re-quantizes a layer's weights on the deployment's grids (both parts with wide weights): for
    the deployment's own weights that is its dequantized matrix, Σ_parts m·2^(e+q)/c."""
    model = _mlp(2)
    _gain(model, 4.0)
    params = plain_parameters(model)
    dep = chip_deployment(model.spec, params, wide_weights=wide)
    values = chip_weights(model.spec, params, dep)
    for q in dep.qnet.stages:
        (p,) = q.inputs
        np.testing.assert_array_equal(values[q.name]["weight"],
                                      dequantize_weight(p, frac_bits(dep.qnet, p.source), q.scale))
        e = p.weight_exp + frac_bits(dep.qnet, p.source)
        _, _, step = mantissa_range(p.weight)
        half_step = 0.5 if wide and 0 <= e <= 7 else step * 2.0**e / 2  # activation units (docs §2)
        assert np.abs(values[q.name]["weight"] - params[q.name]["weight"]).max() <= half_step / q.scale * (1 + 1e-6)


def test_elementwise_layers_are_those_with_their_own_stage():
    assert elementwise_layers(_mlp().spec) == ["fc1", "fc2", "out"]
    assert elementwise_layers(_mlp(feedback=True).spec) == ["fc2", "out"]  # fc1's stage holds the feedback too
    assert elementwise_layers(_pooled_convnet().spec) == ["conv1", "out"]  # conv2's stage composes the pooling
    assert elementwise_layers(_residual().spec) == ["stem", "conv_a", "out"]


@pytest.mark.parametrize("build, method", [(_pooled_convnet, "ottt-a"), (_residual, "sltt"),
                                           (lambda: _mlp(feedback=True), "saf-e")])
def test_fine_tuning_composed_stages_under_every_view(build, method):
    from snnchip.train.data import Dataset

    model = build()
    _gain(model, 4.0)
    object.__setattr__(model.spec, "method", method)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, *model.spec.input_shape, generator=g)
    y = torch.randint(0, model.spec.num_classes, (40,), generator=g)
    data = Dataset(x, y, x[:8], y[:8], model.spec.input_shape, model.spec.num_classes)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    correction = fine_tune(model, data, C.chip_errors, epochs=2, lr=1e-2, batch_size=10)
    assert correction.refreshes == 2 * 4  # quantized afresh for every batch (each follows an optimizer step)
    assert model.correction is None and not model.training
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert set(changed) >= {f"{layer}.weight" for layer in elementwise_layers(model.spec)}


def test_event_driven_bp_is_refused_by_name():
    model = _mlp()
    object.__setattr__(model.spec, "method", "edbp")
    with pytest.raises(SpecError, match="event-driven BP"):
        fine_tune(model, None, C.chip_errors, epochs=1, lr=1e-3)
    assert model.correction is None


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
    assert rec["quantizer_refreshes"] >= 3 * 20  # re-quantized after every optimizer step
    assert rec["snapped"] == ["fc1", "out"]


def test_cli_writes_deploy_dir_calibrated_checkpoint_and_record(trained: Path, tmp_path: Path, capsys):
    from snnchip.cli import export

    out = tmp_path / "dep"
    assert export([str(trained), "--target", "loihi", "--calibrate", "--calibrate-epochs", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "before calibration" in printed and "after calibration" in printed
    rec = json.loads((out / C.RECORD_NAME).read_text())
    assert rec["epochs"] == 1 and rec["method"] == "ottt-a" and rec["snapped"] == ["fc1", "out"]
    for key in ("before", "after", "after_unsnapped"):
        assert set(rec[key]) >= {"float_accuracy", "chip_accuracy", "gap_points", "decision_agreement"}
    dep = load_deploy(out)
    calibrated, ckpt = load_model(out / C.CALIBRATED_NAME)
    assert ckpt.metrics["calibration"]["after"] == rec["after"]
    again = chip_deployment(ckpt.spec, plain_parameters(calibrated))  # the checkpoint is the exported model
    for q, r in zip(dep.qnet.stages, again.qnet.stages, strict=True):
        assert np.array_equal(q.inputs[0].weight, r.inputs[0].weight) and np.array_equal(q.bias, r.bias)
        assert q.scale == r.scale
    # snapped weights are fixed points of the quantizer: exporting them again changes nothing
    values = chip_weights(ckpt.spec, plain_parameters(calibrated), again)
    for name in rec["snapped"]:
        assert np.array_equal(values[name]["weight"].astype(np.float32),
                              plain_parameters(calibrated)[name]["weight"])
    from snnchip.train.data import load_dataset

    data = load_dataset("digits", spec=ckpt.spec)
    xs, y = encoded_test_set(ckpt.spec, data)
    assert C.accuracies(calibrated, dep, xs, y) == rec["after"]  # recorded = the written deploy directory's


def test_cli_refuses_calibration_for_other_targets(trained: Path, tmp_path: Path, capsys):
    from snnchip.cli import export

    assert export([str(trained), "--target", "nir", "--calibrate", "-o", str(tmp_path / "m.nir")]) == 2
    assert "--target loihi or xylo" in capsys.readouterr().err


def test_a_weight_shared_projections_error_is_applied_as_its_convolution():
    """Calibration applies the chip's error of a conv stage as a convolution with the error kernel (a CIFAR ResNet-18's
    errors as matrices are 4.5·10⁸ entries: 11 GiB and no epoch finished in 6 minutes; as kernels an epoch takes a
    minute): the same values as the matrix it spans, pooling composed, and the gradient reaches the source."""
    from snnchip.export.kernel import Kernel
    from snnchip.workflows.calibrate import _torch

    rng = np.random.default_rng(3)
    compact = rng.normal(0, 1e-3, (4, 3, 3, 3))
    k = Kernel(np.repeat(np.repeat(compact, 2, axis=2), 2, axis=3), (3, 10, 10), (4, 5, 5), (2, 2), (2, 2), (2, 2),
               (1, 1))
    op = _torch(k)
    assert callable(op) and not isinstance(op, torch.Tensor)
    x = (torch.rand(5, k.shape[1]) < 0.3).float().requires_grad_()
    y = op(x)
    np.testing.assert_allclose(y.detach().numpy(), (k.to_csr() @ x.detach().numpy().T).T, rtol=1e-5, atol=1e-9)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(np.asarray(k.to_csr().sum(axis=0)), x.shape),
                               rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def xylo_trained(tmp_path_factory) -> Path:
    """A Xylo-profile net (one recurrent hidden layer of Xylo neurons, spike-count inputs) trained with SLTT."""
    from snnchip.train.trainer import TrainConfig, fit

    out = tmp_path_factory.mktemp("xylo")
    fit(TrainConfig(out=str(out), dataset="digits-rows", model="mlp-feedback", hidden="24", method="sltt",
                    profile="xylo", T=8, epochs=3, quiet=True, device="cpu"))
    return out / "model.pt"


def test_xylo_correction_is_xylos_weights_applied_to_the_spikes(xylo_trained: Path):
    """With Xylo's correction attached, the hidden and readout currents are the int8 weights Xylo holds, decoded by
    hand from its config (W·2^shift·λ̂_syn/σ; a readout bias would be the bias neuron's output weights), applied to the
    input and the hidden spikes (the recurrent ones a step late); every error is within half a grid step."""
    from snnchip.discretize import lam_of
    from snnchip.train.data import load_dataset
    from snnchip.workflows.xylo_values import xylo_chip, xylo_errors

    model, ckpt = load_model(xylo_trained)
    plain = from_plain(ckpt.spec, plain_parameters(model)).eval()
    data = load_dataset("digits-rows", spec=plain.spec)
    chip = xylo_chip(plain.spec, plain_parameters(plain), data)
    cfg, rep = chip.mapping.config, chip.mapping.report
    hid, out = rep["hidden"], rep["readout"]
    n_h, unit_h = hid["neurons"], hid["lam_syn_hat"] / hid["scale"]
    unit_o = lam_of(out["dash_syn_out"]) / out["scale"]
    w_in = cfg.w_in[:, :n_h, 0].T * 2.0 ** cfg.shift_in * unit_h
    w_rec = cfg.w_rec[:n_h, :n_h, 0].T * 2.0 ** cfg.shift_rec * unit_h
    w_out = cfg.w_out[:n_h].T * 2.0 ** cfg.shift_out * unit_o
    b_out = cfg.w_out[n_h] * 2.0 ** cfg.shift_out * unit_o if hid["bias_neuron"] else 0.0  # profile xylo: none
    errors = xylo_errors(chip)
    steps = {("fc1", "input", 0): 2.0 ** cfg.shift_in * unit_h, ("fc1", "fc1", 1): 2.0 ** cfg.shift_rec * unit_h,
             ("out", "fc1", 0): 2.0 ** cfg.shift_out * unit_o}  # (stage, source, delay): one step of its grid
    found = [(name, source, delay) for name, (projections, _) in errors.items() for source, delay, _ in projections]
    assert sorted(found) == sorted(steps)
    for name, (projections, _) in errors.items():
        for source, delay, delta in projections:
            assert np.abs(delta).max() <= steps[name, source, delay] / 2 * (1 + 1e-9), (name, source)
    ChipCorrection(plain, lambda m: C.chip_errors(m, quantizer=C.xylo_quantizer(data))).attach()
    x = data.x_test[:6].transpose(0, 1).float()
    view, state = RecordingView(), {}
    with torch.no_grad():
        for t in range(plain.spec.T):
            _, state, _ = plain.step(x[t], state, view)
    for t in range(plain.spec.T):
        spikes_before = view.spikes[t - 1]["fc1"].double().numpy() if t else 0.0
        expected = x[t].double().numpy() @ w_in.T + (spikes_before @ w_rec.T if t else 0.0)
        assert np.allclose(view.currents[t]["fc1"].double().numpy(), expected, atol=1e-5), t
        expected_out = view.spikes[t]["fc1"].double().numpy() @ w_out.T + b_out
        assert np.allclose(view.currents[t]["out"].double().numpy(), expected_out, atol=1e-5), t
    assert sum(view.spikes[t]["fc1"].sum() for t in range(plain.spec.T)) > 0


def test_cli_calibrates_for_xylo_and_the_directory_is_its_calibrated_models(xylo_trained: Path, tmp_path: Path,
                                                                           capsys):
    """snn-export --target xylo --calibrate: the Xylo deploy directory, the calibrated checkpoint (recording its
    calibration data as its training set) and the record; snn-validate DIR --model the checkpoint derives the same
    mapping bit for bit."""
    from snnchip.cli import export
    from snnchip.workflows.validate import ValidateConfig, validate

    out = tmp_path / "deploy-xylo"
    assert export([str(xylo_trained), "--target", "xylo", "--calibrate", "--dataset", "digits-rows",
                   "--calibrate-epochs", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "before calibration" in printed and "after calibration" in printed and "Xylo" in printed
    rec = json.loads((out / C.RECORD_NAME).read_text())
    assert rec["target"] == "xylo" and rec["snapped"] == [] and rec["quantizer_refreshes"] >= 2
    _, ckpt = load_model(out / C.CALIBRATED_NAME)
    assert ckpt.metrics["config"]["dataset"] == "digits-rows"
    report = validate(str(out), ValidateConfig(dataset="digits-rows", samples=64, lava_samples=0,
                                               model=str(out / C.CALIBRATED_NAME), min_agreement=0.0,
                                               min_accuracy=0.0), progress=False)
    assert report["gates"]["deployment_from_model"]["passed"], report["gates"]["deployment_from_model"]
    assert report["chip"]["decision_agreement"] == pytest.approx(rec["after"]["decision_agreement"], abs=0.1)


def test_xylo_errors_decode_the_readout_bias_from_the_bias_neuron():
    """A readout bias reaches Xylo as the output weights of a hidden neuron that fires every step; its error is those
    weights decoded (W·2^shift·λ̂/σ) minus the bias, within half a grid step, and the readout's weights likewise."""
    from snnchip.discretize import lam_of
    from snnchip.train import mlp
    from snnchip.train.data import load_dataset
    from snnchip.workflows.xylo_values import xylo_chip, xylo_errors

    spec = mlp((8,), 8, 8, neuron=NeuronSpec(kind="xylo", lam=0.5, tau_s=2.0), hidden=(12,))
    spec = dataclasses.replace(spec, layers=tuple(dataclasses.replace(la, bias=la.name == "out") for la in spec.layers))
    torch.manual_seed(1)
    model = build_model(spec)
    with torch.no_grad():
        model.out.bias.copy_(torch.linspace(-0.7, 0.9, 8))
    chip = xylo_chip(spec, plain_parameters(model), load_dataset("digits-rows", spec=spec))
    cfg, rep = chip.mapping.config, chip.mapping.report
    assert rep["hidden"]["bias_neuron"] and cfg.w_out.shape[0] == 13
    step = 2.0 ** cfg.shift_out * lam_of(rep["readout"]["dash_syn_out"]) / rep["readout"]["scale"]
    (projections, d_bias) = xylo_errors(chip)["out"]
    bias = plain_parameters(model)["out"]["bias"].astype(np.float64)
    np.testing.assert_allclose(d_bias, cfg.w_out[12] * step - bias, atol=1e-12)
    assert 0 < np.abs(d_bias).max() <= step / 2 * (1 + 1e-9)
    (_, _, d_w), = projections
    assert np.abs(d_w).max() <= step / 2 * (1 + 1e-9)
