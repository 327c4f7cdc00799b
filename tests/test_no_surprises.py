"""No silent surprises (issue 25): each case here did something unexpected without a word, or said something
misleading, before; each now refuses with one line naming what it is and the fix, or states what it holds."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from snnchip.cli import snn_bench, snn_export, snn_pipeline, snn_run, snn_train
from snnchip.errors import SnnchipError

PEERS = Path(__file__).parent / "data" / "peers"


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_snn_train_refuses_an_out_holding_a_model(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"a trained model")
    assert snn_train.main(["--out", str(tmp_path), "--epochs", "1"]) == 2
    err = one_line(capsys)
    assert "model.pt holds a trained model" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "model.pt").read_bytes() == b"a trained model"


def test_a_learning_rate_beyond_float32_is_refused_before_training(tmp_path, capsys):
    assert snn_train.main(["--out", str(tmp_path / "r"), "--lr", "3.4e39", "--epochs", "1"]) == 2
    assert "--lr must be a finite number > 0 and <= 1000" in one_line(capsys)
    assert not (tmp_path / "r").exists()


def test_help_shows_defaults_that_equal_false_or_true():
    """0 == False and 1.0 == True hid these defaults."""
    text = snn_train.parser().format_help()
    for flag, default in (("--seed SEED", "(default: 0)"), ("--theta THETA", "(default: 1.0)"),
                          ("--weight-decay WEIGHT_DECAY", "(default: 0.0)")):
        after = text.split("\n  " + flag, 1)[1].split("\n  --", 1)[0]
        assert default in " ".join(after.split()), flag


@pytest.mark.parametrize("bench", ["train", "peers", "hwsim", "memory"])
def test_every_bench_has_its_own_help(bench, capsys):
    with pytest.raises(SystemExit) as exit_:
        snn_bench.parser().parse_args([bench, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: snn-bench {bench}") and f"snn-bench {bench}: " in out


def test_time_axis_that_is_the_batch_axis_is_refused_with_the_swap(tmp_path, capsys):
    """A T = 4 model given batch-first [32, 4, ...] data ran it as T = 32 without a word."""
    from nir_nets import mlp_graph

    from snnchip.export.nir_export import write_nir

    write_nir(mlp_graph((6, 8, 3), T=4), tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", np.zeros((32, 4, 6), np.float32))
    assert snn_run.main([str(tmp_path / "g.nir"), "--input", str(tmp_path / "x.npy"), "--out",
                         str(tmp_path / "y.npz")]) == 2
    err = one_line(capsys)
    assert "T = 4 on axis 1, not axis 0" in err and "np.swapaxes(x, 0, 1)" in err and "(4, 32, 6)" in err
    assert not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize(("content", "name", "message"), [
    (b'{"nodes": {}}', "g.json", "g.json is a JSON document; expected a NIR graph"),
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "g.png", "g.png is an image; expected a NIR graph"),
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "g.nir", "g.nir is an image despite its .nir suffix"),
    (b"\x80\x04\x95", "g.nir", "g.nir is a Python pickle despite its .nir suffix"),
])
def test_export_names_what_a_file_is(content, name, message, tmp_path, capsys):
    """Each was called a 'corrupt or truncated NIR file … re-export it'."""
    (tmp_path / name).write_bytes(content)
    assert snn_export.main([str(tmp_path / name), "--target", "loihi", "--T", "4", "-o", str(tmp_path / "d")]) == 2
    assert message in one_line(capsys)


def test_export_of_a_run_directory_points_at_its_model(tmp_path, capsys):
    """It got 'no such NIR file'."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"PK\x03\x04")
    assert snn_export.main([str(tmp_path / "run"), "--target", "nir", "-o", str(tmp_path / "m.nir")]) == 2
    err = one_line(capsys)
    assert "run is a directory" in err and f"pass {tmp_path / 'run' / 'model.pt'}" in err


def test_pipeline_given_a_directory_lists_its_configs(capsys):
    """``snn-pipeline configs/`` got 'no such config file'."""
    configs = Path(__file__).parents[1] / "configs"
    assert snn_pipeline.main([str(configs)]) == 2
    err = one_line(capsys)
    assert "is a directory; expected a TOML pipeline config file: one of" in err and "demo.toml" in err


def test_pipeline_with_missing_data_leaves_no_run_directory(tmp_path, capsys):
    """It left an empty run directory holding only its .snnchip.lock."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nout = "{tmp_path / "run"}"\n[train]\ndataset = "mnist"\ndata_dir = '
                   f'"{tmp_path / "nothing"}"\nmodel = "mlp"\nepochs = 1\n')
    assert snn_pipeline.main([str(cfg)]) == 2
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # a directory the user made is left as it was
    assert snn_pipeline.main([str(cfg)]) == 2
    assert (tmp_path / "run").is_dir()


def test_public_functions_show_their_real_signatures():
    import snnchip
    import snnchip.train

    for fit in (snnchip.fit, snnchip.train.fit):
        assert list(inspect.signature(fit).parameters) == ["cfg", "dataset"]
        assert "metrics" in inspect.getdoc(fit)


def test_results_have_short_reprs():
    """Printing a run result dumped every array (about 7 000 lines)."""
    from snnchip.export.loihi import deployment_from_graph
    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.export.nir_read import read_graph
    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.spec import Interpretation
    from snnchip.train import build_model, model_spec, simulate

    z = np.load(PEERS / "snntorch_conv_zero.npz")
    graph, interp = read_graph(PEERS / "snntorch_conv_zero.nir"), Interpretation(writer="snntorch", reset="zero")
    ref = NIRExecutor(graph, interp).run(z["x"])
    chip = ChipSimulator(deployment_from_graph(graph, interp, T=20)).run(z["x"])
    model = build_model(model_spec("mlp", (6,), 3, T=4))
    sim = simulate(model, torch.zeros(4, 2, 6))
    for result, kind in ((ref, "ExecResult"), (chip, "RunResult"), (sim, "SimResult")):
        text = repr(result)
        assert text.startswith(f"<{kind} output [") and len(text) < 500 and "\n" not in text, text
    assert "1 [20, 2, 4, 5, 5] rate" in repr(chip) and "timing software" in repr(chip)
    assert "--from snntorch" in repr(ref)


def test_deliberate_errors_are_snnchip_errors_naming_the_fix():
    """They were plain ValueErrors (export/quantize.py, deploy/result.py, hw_sim/chip.py)."""
    from snnchip.deploy.result import check_timing
    from snnchip.export.loihi import deployment_from_graph
    from snnchip.export.nir_read import read_graph
    from snnchip.export.quantize_stages import quantize_stage
    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.spec import Interpretation

    graph = read_graph(PEERS / "norse_iaf.nir")
    dep = deployment_from_graph(graph, Interpretation(writer="norse"), T=4)
    with pytest.raises(SnnchipError, match="valid: software, lava"):
        check_timing("wall")
    with pytest.raises(SnnchipError, match="pass chunk ≥ 1"):
        ChipSimulator(dep).run(np.zeros((4, 1, 12), np.float32), chunk=0)
    with pytest.raises(SnnchipError, match="pass input_frac_bits"):
        deployment_from_graph(graph, Interpretation(writer="norse"), T=4, weight_exp=0, input_frac_bits=None)
    with pytest.raises(SnnchipError, match=r"headroom 'x'; valid: .*--headroom"):
        quantize_stage(dep.net.stages[0], 4, {s: 1.0 for p in dep.net.stages[0].inputs for s in [p.source]},
                       headroom="x")


def test_pipeline_config_error_messages_are_unchanged_for_missing_files(tmp_path, capsys):
    assert snn_pipeline.main([str(tmp_path / "none.toml")]) == 2
    assert "no such config file" in one_line(capsys)
    shutil.copy(PEERS / "norse_iaf.nir", tmp_path / "c.toml")
    assert snn_pipeline.main([str(tmp_path / "c.toml")]) == 2
    assert "is an HDF5 file (a NIR graph is one) despite its .toml suffix" in one_line(capsys)
