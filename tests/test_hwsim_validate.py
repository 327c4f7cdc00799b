"""snn-validate: the equivalence ladder passes on a trained digits MLP and names the layer of a corrupted Lava graph."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnchip.workflows.report import write_plots
from snnchip.workflows.validate import ValidateConfig, validate


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from snnchip.train.trainer import TrainConfig, fit

    out = tmp_path_factory.mktemp("run")
    fit(TrainConfig(out=str(out), hidden="48,24", method="ottt-a", T=4, epochs=12, quiet=True, device="cpu"))
    return out / "model.pt"


@pytest.mark.lava
def test_trained_model_passes_every_gate(trained: Path, tmp_path: Path):
    report = validate(trained, ValidateConfig(samples=200, lava_samples=2), progress=False)
    assert report["gates"] == {"nir_equals_float": True, "decision_agreement": True, "lava_equals_chip": True}
    assert report["passed"] and report["lava"]["total_differences"] == 0
    chip = report["chip"]
    assert set(chip["spike_agreement"]) == {"fc1", "fc2"}
    assert chip["float_accuracy"] > 0.8 and abs(chip["chip_accuracy"] - chip["float_accuracy"]) < 0.05
    assert report["resources"]["neurons"] == 48 + 24 + 10
    paths = write_plots(report, tmp_path / "plots")
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.lava
def test_corrupted_lava_graph_fails_and_names_the_layer(trained: Path, monkeypatch):
    import snnchip.deploy as deploy

    real_build = deploy.build

    def corrupted_build(dep):
        """Change one weight of the second stage in the Lava graph only (the simulator keeps the original)."""
        stages = list(dep.qnet.stages)
        w = stages[1].weight.copy()
        w[0, np.argmax(np.abs(w[0]))] += 64
        stages[1] = dataclasses.replace(stages[1], weight=w)
        return real_build(dataclasses.replace(dep, qnet=dataclasses.replace(dep.qnet, stages=tuple(stages))))

    monkeypatch.setattr(deploy, "build", corrupted_build)
    report = validate(trained, ValidateConfig(samples=60, lava_samples=4), progress=False)
    assert not report["passed"] and report["gates"]["lava_equals_chip"] is False
    assert report["lava"]["first_differing_layer"] == "fc2"
    assert report["lava"]["differences"]["fc1"] == {"spikes": 0, "u": 0, "v": 0}


@pytest.mark.lava
@pytest.mark.slow
def test_cli_exit_codes_json_and_table(trained: Path, tmp_path: Path):
    exe = Path(sys.executable).parent / "snn-validate"
    js = tmp_path / "r.json"
    res = subprocess.run([exe, str(trained), "--samples", "200", "--lava-samples", "1", "--json", str(js),
                          "--plots", str(tmp_path / "p")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "result: PASSED" in res.stdout and "chip vs Lava fixed_pt" in res.stdout
    data = json.loads(js.read_text())
    assert data["passed"] and "_plot_data" not in data
    strict = subprocess.run([exe, str(trained), "--samples", "60", "--lava-samples", "0",
                             "--min-agreement", "1.01"], capture_output=True, text=True)
    assert strict.returncode == 1 and "FAIL" in strict.stdout
    missing = subprocess.run([exe, str(tmp_path / "nope.pt")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such model.pt" in missing.stderr
