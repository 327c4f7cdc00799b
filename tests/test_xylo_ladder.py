"""The Xylo target through the commands: snn-export --target xylo, snn-validate on a Xylo deploy directory (the
ladder's gates, xylosim bit for bit, NeuroBench's metrics, the seal), the targets table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from snnchip.errors import DeployError
from snnchip.export import xylo as X
from snnchip.export.loihi import read_model_graph
from snnchip.export.nir_export import write_nir
from snnchip.workflows.model_data import xylo_bounds
from snnchip.workflows.targets import TARGETS, table, target_of
from snnchip.workflows.validate import ValidateConfig, validate

sys.path.insert(0, str(Path(__file__).parent))
from nir_nets import mlp_graph
from test_xylo_export import feedback_net

xylosim_driver = pytest.importorskip("snnchip.hw_sim.xylosim_driver")
needs_xylosim = pytest.mark.skipif(not xylosim_driver.available(), reason="xylosim is not installed (make setup)")


@pytest.fixture(scope="module")
def deploy_dir(tmp_path_factory) -> Path:
    return X.export_xylo(feedback_net(hidden=24, classes=8), tmp_path_factory.mktemp("x") / "deploy-xylo")


@needs_xylosim
def test_ladder_on_a_xylo_deploy_directory(deploy_dir, tmp_path, capsys):
    from snnchip.workflows.report import print_table, write_plots

    cfg = ValidateConfig(dataset="digits-rows", samples=48, lava_samples=8, batch_size=16)
    report = validate(str(deploy_dir), cfg, progress=False)
    assert report["target"] == "xylo" and report["samples"] == 48
    gates = report["gates"]
    assert gates["deployment_sealed"]["passed"]
    assert gates["xylosim_equals_chip"]["passed"] and report["xylosim"]["samples"] == 8
    assert set(report["xylosim"]["differences"]) == {"spikes", "isyn", "vmem", "spikes_out", "isyn_out", "vmem_out"}
    for side in ("float", "chip"):
        nb = report["neurobench"][side]
        assert {"footprint", "connection_sparsity", "activation_sparsity", "Effective_MACs", "Effective_ACs", "Dense",
                "membrane_updates"} <= set(nb)
        assert 0.0 <= nb["activation_sparsity"] <= 1.0
    # the float net: 8 inputs + 24 recurrent into 24 hidden, 24 into 8 outputs, per step, T = 8 steps
    assert report["neurobench"]["float"]["Dense"] == 8 * (24 * 8 + 24 * 24 + 8 * 24)
    print_table(report)
    assert "xylosim_equals_chip" in capsys.readouterr().out
    assert [p.name for p in write_plots(report, tmp_path / "plots")] == ["agreement.png", "raster.png"]
    json.dumps({k: v for k, v in report.items() if not k.startswith("_")})


@needs_xylosim
def test_snn_validate_command_on_a_xylo_deploy_directory(deploy_dir, capsys):
    """README's command runs the Xylo ladder (no interpretation option given is not an interpretation)."""
    from snnchip.cli.snn_validate import main

    rc = main([str(deploy_dir), "--dataset", "digits-rows", "--samples", "16", "--lava-samples", "2"])
    out = capsys.readouterr()
    assert rc in (0, 1), out.err
    assert "xylosim_equals_chip" in out.out and "PASS" in out.out.split("xylosim_equals_chip")[1].splitlines()[0]


@needs_xylosim
def test_an_edited_xylo_directory_fails_its_seal_gate(deploy_dir, tmp_path):
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(deploy_dir, edited)
    man = json.loads((edited / "manifest.json").read_text())
    man["input"]["handling"] = "edited by hand"
    (edited / "manifest.json").write_text(json.dumps(man))
    cfg = ValidateConfig(dataset="digits-rows", samples=16, lava_samples=0)
    with pytest.raises(DeployError, match="'input' differs from its sealed value"):
        validate(str(edited), cfg, progress=False)
    cfg.allow_edited = True
    report = validate(str(edited), cfg, progress=False)
    assert not report["gates"]["deployment_sealed"]["passed"] and not report["passed"]


def test_snn_export_target_xylo(tmp_path, capsys):
    from snnchip.cli.snn_export import main

    write_nir(feedback_net(hidden=12, classes=8), tmp_path / "net.nir")
    assert main([str(tmp_path / "net.nir"), "--target", "xylo", "-o", str(tmp_path / "dx")]) == 0
    out = capsys.readouterr().out
    assert "hidden 'h1' (lif, 12 neurons + 1 bias neuron)" in out and "approximation:" in out
    assert target_of(tmp_path / "dx").name == "xylo"
    write_nir(mlp_graph((8, 12, 10), T=4), tmp_path / "ten.nir")
    assert main([str(tmp_path / "ten.nir"), "--target", "xylo", "-o", str(tmp_path / "d10")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10 output neurons do not fit Xylo (at most 8" in err[0]
    assert not (tmp_path / "d10").exists()


def test_targets_table(tmp_path):
    assert set(TARGETS) == {"loihi", "xylo"}
    assert {row["target"] for row in table()} == {"loihi", "xylo"}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": {"name": "snnchip-loihi-deploy", "version": 5}}))
    assert target_of(tmp_path).name == "loihi"
    (tmp_path / "manifest.json").write_text(json.dumps({"target": "spinnaker"}))
    with pytest.raises(DeployError, match="unknown chip target 'spinnaker'; targets: loihi, xylo"):
        target_of(tmp_path)


def test_chip_metrics_by_hand():
    from snnchip.export.xylo_config import XyloConfig
    from snnchip.hw_sim import xylo as sim
    from snnchip.hw_sim.metrics import chip_metrics

    # one input (weight 100) to one hidden neuron (θ = 150), which feeds one output; input counts 2 then 0
    cfg = XyloConfig(w_in=np.array([[[100, 0]]]), w_rec=np.zeros((1, 1, 2), int), w_out=np.array([[5]]),
                     shift_in=0, shift_rec=0, shift_out=0, dash_mem=[4], dash_syn=[[1, 1]], dash_mem_out=[4],
                     dash_syn_out=[1], threshold=[150], threshold_out=[1000], bias=[0], bias_out=[0])
    x = np.array([[[2], [0], [0]]])
    rec = sim.run(cfg, x)
    m = chip_metrics(cfg, x, rec)
    # step 0: I = 200 − 100 = 100 -> V = 100; step 1: I = 50, V = 100 − 6 + 50 = 144; step 2: I = 25, V = 160: spike
    assert rec.spikes[0, :, 0].tolist() == [0, 0, 1]
    assert m["activation_sparsity"] == pytest.approx(2 / 3)
    # the input of 2 spikes is no {0, ±1} input: one MAC at step 0; the hidden spike reaches nothing within 3 steps
    assert (m["Effective_MACs"], m["Effective_ACs"]) == (1.0, 0.0)
    assert m["Dense"] == 3 * (1 + 1 + 1)  # input, recurrent and output matrices (1×1 each) at every step
    assert m["membrane_updates"] == 1 + 2  # all at the first step, then every change


def test_neurobench_metrics_in_the_loihi_certificate_too(tmp_path):
    from snnchip.export.loihi import export_loihi

    graph = feedback_net(hidden=24, classes=8)
    out = export_loihi(graph, tmp_path / "deploy", input_range=15.0)
    report = validate(str(out), ValidateConfig(dataset="digits-rows", samples=32, lava_samples=0), progress=False)
    nb = report["neurobench"]
    # the same connection layers (input, recurrent, readout) on the float model and on the chip
    assert nb["float"]["Dense"] == nb["chip"]["Dense"] == 8 * (24 * 8 + 24 * 24 + 8 * 24)
    assert nb["chip"]["footprint"] == 24 * 8 + 24 * 24 + 8 * 24  # one byte per 8-bit mantissa (all dense here)
    assert nb["chip"]["membrane_updates"] <= 24 * 8


def _xylo_model(out: Path, seed: int) -> Path:
    from snnchip.train import fit
    from snnchip.train.config import TrainConfig

    fit(TrainConfig(dataset="digits-rows", model="mlp-feedback", hidden="16", method="bptt", profile="xylo", T=8,
                    batch_size=64, max_steps=4, seed=seed, out=str(out), quiet=True))
    return out / "model.pt"


def test_a_xylo_directory_is_checked_against_its_model(tmp_path):
    """snn-validate DEPLOY --model model.pt on Xylo: the mapping derived again from the model equals the directory
    (gate deployment_from_model); the same directory checked against another model fails it, naming the array."""
    mine, other = _xylo_model(tmp_path / "a", 0), _xylo_model(tmp_path / "b", 1)
    dep = X.export_xylo(mine, tmp_path / "deploy-xylo", bounds=xylo_bounds(mine, read_model_graph(mine)))
    cfg = ValidateConfig(dataset="digits-rows", samples=32, lava_samples=0, model=str(mine), min_agreement=0.0,
                         min_accuracy=0.0)
    report = validate(str(dep), cfg, progress=False)
    assert report["gates"]["deployment_from_model"]["passed"] and report["provenance"]["differences"] == []
    assert report["provenance"]["recorded_is_this_model"]
    cfg.model = str(other)
    report = validate(str(dep), cfg, progress=False)
    gate = report["gates"]["deployment_from_model"]
    assert not gate["passed"] and not report["passed"] and "params['w_in']" in gate["meaning"]
