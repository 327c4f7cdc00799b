"""The API a notebook user meets: ``snnchip.__all__``, ``model(x)``, a repr with shapes, NIR/Loihi export and
validation of an in-memory model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

import snnchip


def test_all_entry_points_resolve_and_import_snnchip_is_light():
    for name in snnchip.__all__:
        assert getattr(snnchip, name) is not None, name
    assert {"build_model", "fit", "simulate", "export_to_nir", "read_nir", "export_loihi", "ChipSimulator",
            "validate"} <= set(snnchip.__all__)
    code = "import sys, snnchip; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_model_call_is_the_per_step_readout_whose_sum_is_simulates_integrator():
    spec = snnchip.model_spec("convnet", (1, 8, 8), 10, T=4)
    model = snnchip.build_model(spec)
    x = torch.rand(4, 3, 1, 8, 8)
    out, spikes = model(x, return_spikes=True)
    ref = snnchip.simulate(model, x)
    assert out.shape == (4, 3, 10) and set(spikes) == {"conv1", "conv2"}
    torch.testing.assert_close(out.cumsum(0), ref.output)
    assert torch.equal(spikes["conv2"], ref.spikes["conv2"])
    static = model(x[0])  # [batch, *input] is presented for spec.T steps (direct encoding)
    torch.testing.assert_close(static, model(x[0].expand(4, *x.shape[1:])))
    loss = out.sum(0).logsumexp(-1).mean()
    loss.backward()  # differentiable through time
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


def test_repr_shows_layer_shapes_and_neurons():
    text = repr(snnchip.build_model(snnchip.model_spec("mlp", (64,), 10, T=4, hidden=(32,))))
    assert "linear 64→32" in text and "linear 32→10" in text and "fc1: lif(λ=0.5" in text


def test_export_and_validate_an_in_memory_model(tmp_path):
    model = snnchip.build_model(snnchip.model_spec("mlp", (64,), 10, T=4, hidden=(32,)))
    graph = snnchip.export_to_nir(model, tmp_path / "m.nir")
    again = snnchip.read_nir(tmp_path / "m.nir")
    assert set(graph.nodes) == set(again.nodes)
    np.testing.assert_array_equal(again.nodes["fc1"].weight, model.fc1.weight.detach().numpy())
    snnchip.export_loihi(model, tmp_path / "deploy")
    x = torch.rand(4, 5, 64)
    chip = snnchip.ChipSimulator(tmp_path / "deploy").run(x.numpy())
    assert chip.output.shape == (4, 5, 10)
    report = snnchip.validate(model, snnchip.ValidateConfig(samples=30, lava_samples=0), progress=False)
    assert report["model"] == "in-memory mlp" and report["gates"]["nir_equals_float"]["passed"]
