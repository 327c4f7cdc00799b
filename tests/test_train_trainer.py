"""Trainer and snn-train: outputs, exact resume, NaN handling, bad input."""

import json
import math
import re
import signal
import subprocess
import sys

import pytest
import torch

from snnchip.checkpoint import load_checkpoint
from snnchip.cli import train as snn_train
from snnchip.errors import SpecError, TrainingError
from snnchip.lock import exclusive
from snnchip.train import trainer
from snnchip.train.config import DEFAULT_LR
from snnchip.train.trainer import TrainConfig, fit

SMALL = {"hidden": "16", "T": 2, "batch_size": 256, "quiet": True}


def test_fit_writes_outputs_and_resumes_exactly(tmp_path):
    full = fit(TrainConfig(out=str(tmp_path / "a"), method="ottt-o", epochs=3, **SMALL))
    assert len(full["epochs"]) == 3 and full["final_test_acc"] > 0.3
    for name in ("model.pt", "metrics.json", "curves.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(m["epochs"][0]) >= {"train_loss", "test_acc", "time_s", "peak_memory_bytes", "firing_rate"}
    ckpt = load_checkpoint(tmp_path / "a" / "model.pt")
    assert ckpt.spec.method == "ottt-o" and ckpt.spec.options["mse_alpha"] == 0.05

    steps = full["epochs"][0]["steps"]
    fit(TrainConfig(out=str(tmp_path / "b"), method="ottt-o", epochs=3, max_steps=steps, **SMALL))
    assert load_checkpoint(tmp_path / "b" / "model.pt").extra["epoch"] == 1
    fit(TrainConfig(out=str(tmp_path / "b"), method="ottt-o", epochs=3, resume=True, **SMALL))
    resumed = load_checkpoint(tmp_path / "b" / "model.pt")
    for k, v in ckpt.state_dict.items():
        torch.testing.assert_close(resumed.state_dict[k], v, atol=0, rtol=0)


def test_resume_mid_epoch_is_exact_with_random_steps_and_rate_coding(tmp_path):
    opts = {**SMALL, "method": "sltt-k", "k": 1, "encoding": "rate", "epochs": 2}
    full = fit(TrainConfig(out=str(tmp_path / "a"), **opts))
    for stop in (2, 8):  # inside epoch 1, then inside epoch 2
        fit(TrainConfig(out=str(tmp_path / "b"), max_steps=stop, resume=stop > 2, **opts))
    fit(TrainConfig(out=str(tmp_path / "b"), resume=True, **opts))
    a, b = load_checkpoint(tmp_path / "a" / "model.pt"), load_checkpoint(tmp_path / "b" / "model.pt")
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, atol=0, rtol=0)
    assert [h["epoch"] for h in b.metrics["epochs"]] == [1, 2]
    assert b.metrics["final_test_acc"] == full["final_test_acc"]


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(out=str(tmp_path), method="sltt", epochs=2, **SMALL)
    fit(TrainConfig(**{**cfg.__dict__, "max_steps": 1}))
    monkeypatch.setattr(trainer, "run_iteration", lambda *a, **k: (float("nan"), None))
    with pytest.raises(TrainingError, match="last good checkpoint"):
        fit(TrainConfig(**{**cfg.__dict__, "resume": True}))
    assert load_checkpoint(tmp_path / "model.pt").extra["global_step"] == 1


@pytest.mark.parametrize("argv,msg", [
    (["--method", "nope"], "invalid choice: 'nope' (choose from 'bptt'"),
    (["--model", "resnet"], "invalid choice: 'resnet' (choose from 'mlp'"),
    (["--dataset", "imagenet"], "invalid choice: 'imagenet' (choose from 'digits'"),
    (["--T", "six"], "argument --T: invalid int value: 'six'"),
    (["--T", "0"], "--T (time steps) must be an integer in 1..10000, got 0"),
    (["--method", "sltt-k", "--k", "7", "--T", "3"], "--k must be an integer in 1..3, got 7"),
])
def test_snn_train_bad_input_exits_2_with_the_valid_choices(tmp_path, capsys, argv, msg):
    assert snn_train([*argv, "--out", str(tmp_path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1  # one line


@pytest.mark.parametrize("option,value,message", [
    ("max_steps", 0, "--max-steps must be an integer in 1.."),
    ("mse_alpha", 5.0, "--mse-alpha must be a finite number >= 0 and <= 1, got 5.0"),
    ("mse_alpha", -0.1, "--mse-alpha must be a finite number >= 0 and <= 1, got -0.1"),
    ("lr", float("nan"), "--lr must be a finite number > 0 and <= 1000, got nan"),
    ("lr", 0.0, "--lr must be a finite number > 0 and <= 1000, got 0.0"),
    ("lr", 3.4e37, "--lr must be a finite number > 0 and <= 1000, got 3.4e+37"),
    ("lr", float("inf"), "--lr must be a finite number > 0 and <= 1000, got inf"),
    ("weight_decay", -1e-4, "--weight-decay must be a finite number >= 0, got -0.0001"),
    ("weight_decay", float("nan"), "--weight-decay must be a finite number >= 0, got nan"),
    ("epochs", 0, "--epochs must be an integer in 1..100000, got 0"),
    ("batch_size", -5, "--batch-size must be an integer in 1..1048576, got -5"),
    ("T", 10**9, "--T (time steps) must be an integer in 1..10000, got 1000000000"),
    ("k", 0, "--k must be an integer in 1..2, got 0"),
    ("theta", 0.0, "--theta must be a finite number > 0, got 0.0"),
    ("lam", 1.5, "--lam must be a finite number >= 0 and <= 1, got 1.5"),
    ("seed", -1, "--seed must be an integer in 0.."),
])
def test_an_option_out_of_range_is_refused_by_name_before_anything_is_written(tmp_path, option, value, message):
    with pytest.raises(SpecError) as err:
        fit(TrainConfig(out=str(tmp_path / "run"), method="ottt-o", **{**SMALL, "epochs": 1, option: value}))
    assert str(err.value).startswith(message) and not (tmp_path / "run").exists()


def test_snn_train_cli_runs(tmp_path, capsys):
    rc = snn_train(["--model", "convnet", "--method", "saf-f", "--T", "2", "--epochs", "1", "--max-steps", "2",
                    "--batch-size", "32", "--quiet", "--out", str(tmp_path)])
    assert rc == 0 and "test accuracy" in capsys.readouterr().out


def test_fit_on_dvs_events(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        (tmp_path / "dvs" / part).mkdir(parents=True)
        for i in range(4):
            n = 50
            np.savez(tmp_path / "dvs" / part / f"{i}.npz", x=rng.integers(0, 8, n), y=rng.integers(0, 8, n),
                     p=rng.integers(0, 2, n), t=np.sort(rng.random(n)), label=np.array(i % 2),
                     sensor_size=np.array([8, 8]))
    m = fit(TrainConfig(out=str(tmp_path / "run"), dataset="dvs", data_dir=str(tmp_path / "dvs"), model="convnet",
                        method="saf-e", T=3, epochs=1, batch_size=2, quiet=True))
    assert load_checkpoint(tmp_path / "run" / "model.pt").spec.input_shape == (2, 8, 8)
    assert m["epochs"][0]["steps"] == 2


def test_snn_train_compile_trains_the_same_weights_as_eager(tmp_path, capsys):
    import shutil

    from snnchip.train.neuron import compile_kernels

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler; none on PATH")
    argv = ["--model", "convnet", "--method", "sltt", "--T", "2", "--epochs", "1", "--max-steps", "3",
            "--batch-size", "32", "--quiet", "--optimizer", "sgd"]
    try:
        assert snn_train([*argv, "--out", str(tmp_path / "eager")]) == 0
        assert snn_train([*argv, "--compile", "--out", str(tmp_path / "compiled")]) == 0
    finally:
        compile_kernels(False)
    eager = load_checkpoint(tmp_path / "eager" / "model.pt").state_dict
    compiled = load_checkpoint(tmp_path / "compiled" / "model.pt").state_dict
    for k, v in eager.items():
        torch.testing.assert_close(compiled[k], v, atol=1e-5, rtol=1e-5)


def test_snn_train_compile_without_a_compiler_names_the_fix(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert snn_train(["--compile", "--max-steps", "1", "--quiet", "--out", str(tmp_path)]) == 2
    assert "C++ compiler" in capsys.readouterr().err


def test_a_second_run_on_the_same_out_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, capsys):
    """Two snn-train on one --out both exited 0 and one lost its results; the lock makes the second one stop."""
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom snnchip.lock import exclusive\n"
        "with exclusive(sys.argv[1], 'snn-train'):\n    print('running', flush=True)\n    time.sleep(60)\n"),
        str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "running\n"
        argv = ["--hidden", "16", "--T", "2", "--epochs", "1", "--max-steps", "1", "--quiet", "--out", str(out)]
        assert snn_train(argv) == 2
        assert capsys.readouterr().err == (f"snn-train: error: {out}: snn-train (pid {holder.pid}) is writing to this "
                                           "directory; wait for it to end or choose another output directory\n")
        assert not (out / "model.pt").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock
        holder.wait()
    assert snn_train(argv) == 0 and (out / "model.pt").exists()
    with exclusive(out, "snn-train"):  # released when the run ended
        pass


@pytest.mark.parametrize("change,named", [
    ({"lr": 0.02}, "--lr 0.02 (the run used 0.01)"),
    ({"optimizer": "sgd"}, "--lr 0.1 (the run used 0.01); --optimizer 'sgd' (the run used 'adam')"),
    ({"batch_size": 128}, "--batch-size 128 (the run used 256)"),
    ({"seed": 1}, "--seed 1 (the run used 0)"),
    ({"hidden": "32"}, "--hidden (32,) (the run used (16,))"),
    ({"mse_alpha": 0.5}, "--mse-alpha 0.5 (the run used 0.05)"),
    ({"method": "sltt", "lam": 0.5}, "--method 'sltt' (the run used 'ottt-o'); --surrogate 'triangle' (the run used "
                                     "'sigmoid')"),  # the method's default surrogate, named too
])
def test_resume_refuses_changed_options_by_name(tmp_path, change, named):
    """--lr was silently ignored on --resume; every option that changes the run is refused, named."""
    opts = {**SMALL, "method": "ottt-o", "epochs": 2}
    fit(TrainConfig(out=str(tmp_path), max_steps=1, **opts))
    with pytest.raises(TrainingError, match=rf"cannot resume with options that differ from the run's: "
                                            rf"{re.escape(named)}; resume with"):
        fit(TrainConfig(out=str(tmp_path), resume=True, **{**opts, **change}))
    assert load_checkpoint(tmp_path / "model.pt").extra["global_step"] == 1
    fit(TrainConfig(out=str(tmp_path), resume=True, **{**opts, "max_steps": 2, "quiet": False}))  # free to change


def test_raising_epochs_on_resume_continues_on_the_cosine_of_the_new_length(tmp_path):
    """lr(e) = lr0·(1 + cos(π·e/E))/2 (SGDR, arXiv:1608.03983, Eq. 5 with one period): after --epochs 2 → 4 the
    third epoch trains at lr0/2 as in a 4-epoch run (it trained at 0: the old period had ended)."""
    opts, lr0 = {**SMALL, "method": "ottt-o"}, DEFAULT_LR["adam"]
    fit(TrainConfig(out=str(tmp_path / "a"), epochs=2, **opts))
    extended = fit(TrainConfig(out=str(tmp_path / "a"), epochs=4, resume=True, **opts))
    cosine = [lr0, lr0 * (1 + math.cos(math.pi / 2)) / 2, lr0 * (1 + math.cos(math.pi * 2 / 4)) / 2,
              lr0 * (1 + math.cos(math.pi * 3 / 4)) / 2]
    assert [h["lr"] for h in extended["epochs"]] == pytest.approx(cosine, rel=1e-12)
    straight = fit(TrainConfig(out=str(tmp_path / "b"), epochs=4, **opts))
    assert [h["lr"] for h in straight["epochs"]][2:] == pytest.approx(cosine[2:], rel=1e-12)


@pytest.mark.parametrize("options,message", [
    ({"method": "sltt-k", "k": 1}, "--cuda-graph: sltt-k draws its backward steps per batch"),
    ({"method": "empf", "random_bp": True}, "--cuda-graph: empf-random-bp draws its backward steps per batch"),
    ({"amp": True}, "--cuda-graph does not combine with --amp"),
    ({"device": "cpu"}, "--cuda-graph needs a CUDA device; this run is on cpu"),
])
def test_cuda_graph_is_refused_where_it_cannot_capture(tmp_path, options, message):
    with pytest.raises(SpecError) as err:
        fit(TrainConfig(out=str(tmp_path / "run"), cuda_graph=True, **{**SMALL, "epochs": 1, **options}))
    assert str(err.value).startswith(message) and not (tmp_path / "run").exists()


def test_cuda_graph_is_refused_under_torchrun_and_with_nproc(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SpecError, match="^--cuda-graph trains in one process, without torchrun"):
        fit(TrainConfig(out=str(tmp_path / "run"), cuda_graph=True, **{**SMALL, "epochs": 1}))
    monkeypatch.delenv("WORLD_SIZE")
    assert snn_train(["--out", str(tmp_path / "run"), "--cuda-graph", "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert "--cuda-graph trains in one process" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()
