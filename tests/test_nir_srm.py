"""The SRM neuron of event-driven BP through NIR: model.pt -> nir.CubaLIF (+ metadata kind "srm") -> the reference
executor reproduces ``simulate`` (output and spikes); the Loihi lowering takes it as an srm stage."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import interpretation_report, model_graph, write_nir
from snnchip.export.nir_read import read_graph
from snnchip.spec import Interpretation
from snnchip.train import load_model, simulate
from snnchip.train.trainer import TrainConfig, fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("edbp")
    fit(TrainConfig(out=str(out), dataset="digits", model="mlp", hidden="24", method="edbp", T=6, epochs=1,
                    max_steps=3, optimizer="adamw", lr=5e-3, quiet=True))
    return out / "model.pt"


def test_model_pt_to_nir_executor_reproduces_simulate(trained, tmp_path):
    path = tmp_path / "srm.nir"
    write_nir(model_graph(trained), path)
    graph = read_graph(path)
    node = graph.nodes["fc1_neuron"]
    assert isinstance(node, nir.CubaLIF)
    meta = node.metadata["snnchip"]
    assert meta["kind"] == "srm" and meta["discretization"] == "exact" and bool(meta["reset_current"])
    lam_m, lam_s = math.exp(-1 / 5), math.exp(-1 / 3)
    assert float(meta["lam"]) == lam_m and float(meta["lam_syn"]) == lam_s
    assert float(meta["input_scale"]) == pytest.approx(5 / 2 * (lam_m - lam_s), rel=1e-15)
    # the exact (zero-order hold) mapping of the NIR fields gives the same decays and input scale
    np.testing.assert_allclose(np.exp(-1 / node.tau_syn), lam_s, rtol=1e-6)
    np.testing.assert_allclose((1 - np.exp(-1 / node.tau_syn)) * node.w_in, float(meta["input_scale"]), rtol=1e-6)
    np.testing.assert_allclose((1 - np.exp(-1 / node.tau_mem)) * node.r, 1.0, rtol=1e-6)
    assert any("reset" in line for line in interpretation_report(graph))

    model, ckpt = load_model(trained)
    from snnchip.train.data import load_dataset

    x = load_dataset("digits", None, flat=True, T=6).x_test[:64]
    ref = simulate(model, x)
    res = NIRExecutor(graph).run(x.unsqueeze(0).expand(6, *x.shape))
    assert res.interpretation is None  # every neuron followed metadata["snnchip"]
    assert set(res.spikes) == {"fc1", "out"}
    assert float(ref.spikes["fc1"].sum()) > 0 and float(ref.spikes["out"].sum()) > 0
    for name, s in ref.spikes.items():
        assert torch.equal(res.spikes[name], s), name
    torch.testing.assert_close(res.output, ref.output, rtol=0, atol=1e-5)
    # a plain NIR reader (no metadata) keeps the current after a spike: it is not the SRM
    del node.metadata["snnchip"]
    plain = NIRExecutor(graph, Interpretation(discretization="exact", reset="zero")).run(
        x.unsqueeze(0).expand(6, *x.shape))
    assert not torch.equal(plain.spikes["fc1_neuron"], ref.spikes["fc1"])


def test_lowering_takes_srm_as_a_chip_stage(trained):
    from snnchip.export.lowering import lower

    stages = lower(model_graph(trained)).stages  # deployed and tested in tests/test_deploy_srm.py
    assert [s.kind for s in stages[:2]] == ["srm", "srm"] and stages[0].lam_syn == math.exp(-1 / 3)


def test_onnx_reproduces_simulate_for_srm(trained, tmp_path):
    from snnchip.export.onnx_export import onnx_model, run_onnx, write_onnx

    model, _ = load_model(trained)
    x = torch.rand(32, 64)
    write_onnx(onnx_model(model_graph(trained)), tmp_path / "srm.onnx")
    res = run_onnx(tmp_path / "srm.onnx", x.unsqueeze(0).expand(6, *x.shape).numpy())
    np.testing.assert_allclose(np.asarray(res.output), simulate(model, x).output.numpy(), atol=1e-5)
