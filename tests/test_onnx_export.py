"""ONNX target: the single-step model driven by run_onnx equals the NIR executor and the PyTorch model."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_nir_foreign import TRACES, recurrent_cubalif, two_neuron_graph
from test_nir_roundtrip import convnet, mlp_feedback, random_params

from snnchip.errors import DataError
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import spec_to_nir, write_nir
from snnchip.export.onnx_export import onnx_model, run_onnx, write_onnx
from snnchip.spec import Interpretation, NeuronSpec

pytest.importorskip("onnxruntime")


def assert_same(graph, x, tmp_path, interpretation=None):
    write_onnx(onnx_model(graph, interpretation), tmp_path / "m.onnx")
    got = run_onnx(tmp_path / "m.onnx", x)
    want = NIRExecutor(graph, interpretation).run(x)
    np.testing.assert_allclose(got.output, want.output.numpy(), atol=1e-5, rtol=0)
    assert set(got.spikes) == set(want.spikes)
    for layer, s in want.spikes.items():
        np.testing.assert_array_equal(got.spikes[layer], s.numpy(), err_msg=layer)
    assert 0 < np.mean([s.mean() for s in got.spikes.values()]) < 1
    return got


@pytest.mark.parametrize("build", [mlp_feedback, convnet])
@pytest.mark.parametrize(("reset", "spike"), [("subtract", "ge"), ("zero", "gt")])
def test_onnx_equals_executor(build, reset, spike, tmp_path):
    spec = build(NeuronSpec(lam=0.75, theta=0.9, reset=reset, spike=spike))
    x = np.random.default_rng(3).uniform(0, 1.5, (spec.T, 4, *spec.input_shape)).astype(np.float32)
    assert_same(spec_to_nir(spec, random_params(spec, 5)), x, tmp_path)


@pytest.mark.parametrize("reset", ["v_reset", "subtract"])
def test_onnx_foreign_recurrent_cubalif(reset, tmp_path):
    rng = np.random.default_rng(1)
    graph = recurrent_cubalif(rng.normal(0.4, 0.5, (4, 3)), rng.normal(0, 0.5, (4, 4)), 0.5, 0.75, 1.0, "plain")
    x = rng.uniform(0, 1, (10, 2, 3)).astype(np.float32)
    assert_same(graph, x, tmp_path, Interpretation(reset=reset, discretization="exact"))


@pytest.mark.parametrize(("reset", "compare"), list(TRACES))
def test_onnx_hand_computed_trace(reset, compare, tmp_path):
    """Inputs that hit θ exactly: guards the comparison and each reset in the ONNX ops."""
    x = np.tile(np.array([0.625, 1.0], np.float32), (3, 1, 1))
    got = assert_same(two_neuron_graph(), x, tmp_path, Interpretation(reset=reset, compare=compare))
    assert got.spikes["lif"][:, 0, 1].tolist() == TRACES[(reset, compare)][0]


@pytest.mark.parametrize("name", ["mlp-feedback", "convnet"])
def test_onnx_equals_pytorch_model(name, tmp_path):
    train = pytest.importorskip("snnchip.train")
    torch.manual_seed(0)
    spec = train.model_spec(name, (1, 8, 8), 4, 4, NeuronSpec(lam=1.0, theta=0.5), hidden=(12,))
    model = train.build_model(spec)
    x = torch.rand(4, 3, 1, 8, 8) * 8
    got = assert_same(spec_to_nir(train.plain_spec(spec), train.plain_parameters(model)), x.numpy(), tmp_path)
    np.testing.assert_allclose(got.output, train.simulate(model, x).output.numpy(), atol=1e-5, rtol=0)


def test_run_onnx_rejects_wrong_shape(tmp_path):
    spec = mlp_feedback(NeuronSpec())
    write_onnx(onnx_model(spec_to_nir(spec, random_params(spec, 0))), tmp_path / "m.onnx")
    with pytest.raises(DataError, match="shape"):
        run_onnx(tmp_path / "m.onnx", np.zeros((3, 2, 5)))


def test_snn_export_onnx_cli(tmp_path):
    spec = convnet(NeuronSpec())
    graph = spec_to_nir(spec, random_params(spec, 0))
    write_nir(graph, tmp_path / "m.nir")
    proc = subprocess.run([str(Path(sys.executable).parent / "snn-export"), str(tmp_path / "m.nir"), "--target",
                           "onnx", "-o", str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "state.c1_neuron.v" in proc.stdout and "spikes.c1" in proc.stdout
    x = np.random.default_rng(0).uniform(0, 1.5, (4, 2, *spec.input_shape)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", x).output, NIRExecutor(graph).run(x).output.numpy(),
                               atol=1e-5, rtol=0)
