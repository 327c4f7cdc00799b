"""snn-pipeline: one config, train → export → validate under one run directory; the [export] table's precision."""

from __future__ import annotations

import json

import pytest

from snnchip.errors import SnnchipError
from snnchip.workflows.pipeline import run_pipeline

CONFIG = """
[train]
dataset = "digits"
model = "mlp"
hidden = "32"
method = "ottt-a"
T = 4
epochs = 3
quiet = true
{export}
[validate]
samples = 90
lava_samples = 0
min_agreement = 0.9
"""


def test_the_export_tables_precision_reaches_the_deploy_dir_and_the_certificate(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(export='[export]\ntargets = ["loihi"]\nweights = "wide"\nheadroom = "step"\n'))
    report = run_pipeline(cfg, tmp_path / "run", log=lambda line: None)
    assert report["passed"]
    man = json.loads((tmp_path / "run" / "deploy" / "manifest.json").read_text())
    assert man["precision"] == {"synapse_sets": 2, "headroom": "step", "why": "weights and headroom as asked"}
    # one deploy directory, certified where it stands: the model derives it again bit for bit
    assert not (tmp_path / "run" / "certified-deploy").exists()
    assert report["identity"]["deploy_dir"]["path"] == str(tmp_path / "run" / "deploy")
    assert set(report["gates"]) >= {"deployment_sealed", "deployment_from_model"}
    assert all(g["passed"] for g in report["gates"].values())
    assert not (tmp_path / "run" / "model.nir").exists()  # only the listed targets


def test_a_run_that_exports_no_loihi_directory_certifies_the_model_pt(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(export='[export]\ntargets = ["nir"]\n'))
    report = run_pipeline(cfg, tmp_path / "run", log=lambda line: None)
    assert report["passed"] and (tmp_path / "run" / "certified-deploy" / "manifest.json").is_file()
    assert not (tmp_path / "run" / "deploy").exists()


@pytest.mark.parametrize("export", ['[export]\nweights = "16bit"\n', '[export]\nheadroom = "none"\n',
                                    '[export]\nwide_weights = true\n'])
def test_a_bad_export_table_is_refused_before_training(tmp_path, export):
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(export=export))
    with pytest.raises(SnnchipError, match=r"\[export\]: the keys are targets.*weights \(one of auto, 8bit, wide\) "
                                           r"and headroom \(one of auto, T, step, data\)"):
        run_pipeline(cfg, tmp_path / "run", log=lambda line: None)
    assert not (tmp_path / "run").exists()
