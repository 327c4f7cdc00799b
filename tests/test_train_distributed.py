"""Data-parallel training (train/distributed.py): 2 gloo processes on CPU equal one process with the same global batch.

The multi-process tests start ``torchrun`` (``python -m torch.distributed.run``) in its own session, bounded by a
timeout; on timeout the whole process group is killed, so no worker outlives a test.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snnchip.checkpoint import load_checkpoint
from snnchip.cli.options import config as config_from_args
from snnchip.cli.snn_train import parser as train_parser
from snnchip.errors import SpecError
from snnchip.train import trainer
from snnchip.train.data import Dataset
from snnchip.train.distributed import World
from snnchip.train.trainer import TrainConfig, fit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMEOUT_S = 120  # a hang fails the test instead of blocking the suite
ATOL = 1e-6  # weights after 3 iterations (float32 reduction order differs between 1 and 2 processes)
LEARNABLE = {"empf_variant": "learnable"}  # EM-PF with per-step λ[t], θ[t] (no BN: its statistics are per rank)
CASES = [  # (method, model, options): every rule but edbp; the feedback net has a parameter unused at t = 1
    ("bptt", "mlp", {}), ("ottt-o", "mlp", {}), ("ottt-a", "mlp", {}), ("sltt", "mlp", {}), ("sltt-k", "mlp", {}),
    ("saf-e", "mlp", {}), ("saf-f", "mlp", {}), ("ottt-o", "mlp-feedback", {}), ("empf", "mlp", LEARNABLE),
    ("empf-random-bp", "mlp", LEARNABLE),
]


def tiny_data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 10, generator=g) * 1.5, torch.randint(0, 3, (48,), generator=g)
    return Dataset(x[:32], y[:32], x[32:], y[32:], input_shape=(10,), num_classes=3)


def config(out, method: str, model: str = "mlp", **kw) -> TrainConfig:
    """Global batch 8 on 32 samples: 4 iterations an epoch; stop after 3 (the epoch-end path is not special)."""
    opts = {"hidden": "12", "T": 3, "k": 2, "batch_size": 8, "epochs": 1, "max_steps": 3, "lr": 0.05, "quiet": True}
    return TrainConfig(out=str(out), method=method, model=model, **{**opts, **kw})


def worker(argv: list[str]) -> None:
    """Body of each torchrun rank (started by ``_torchrun``): ``train OUT`` or ``fail OUT``."""
    mode, out = argv[0], Path(argv[1])
    if mode == "fail":
        real = trainer.run_iteration

        def failing(*a, **k):
            calls.append(1)
            if int(os.environ["RANK"]) == 1 and len(calls) == 2:
                raise RuntimeError("injected failure in rank 1")
            return real(*a, **k)

        calls: list[int] = []
        trainer.run_iteration = failing
        fit(config(out, "ottt-a", epochs=2, max_steps=None), tiny_data())
        return
    for method, model, opts in CASES:  # several fits in one process share its process group
        fit(config(out / f"{method}-{model}", method, model, **opts), tiny_data())


def _torchrun(tmp_path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    script = tmp_path / "rank.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(HERE)!r})\nimport test_train_distributed as t\n"
                      "from torch.distributed.elastic.multiprocessing.errors import record\n"
                      "record(t.worker)(sys.argv[1:])\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(script),
           *args]
    return _run(cmd)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"distributed run did not finish in {TIMEOUT_S} s:\n{out[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of this session may outlive the test
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_the_global_batch(tmp_path):
    res = _torchrun(tmp_path, "train", str(tmp_path / "ddp"))
    assert res.returncode == 0, res.stdout[-3000:]
    for method, model, opts in CASES:
        ddp = load_checkpoint(tmp_path / "ddp" / f"{method}-{model}" / "model.pt")  # rank 0's file, one process
        assert not any(k.startswith("module.") for k in ddp.state_dict)
        assert ddp.extra["global_step"] == 3
        fit(config(tmp_path / "one" / method / model, method, model, **opts), tiny_data())
        one = load_checkpoint(tmp_path / "one" / method / model / "model.pt").state_dict
        assert ddp.state_dict.keys() == one.keys()
        for k, v in one.items():
            torch.testing.assert_close(ddp.state_dict[k], v, atol=ATOL, rtol=0, msg=f"{method}/{model} {k}")


@pytest.mark.slow
def test_snn_train_nproc_2_then_resume_in_one_process(tmp_path):
    """The CLI path: ``snn-train --nproc 2`` (torchrun), rank 0 alone reports; its checkpoint resumes in one process
    and ends where an uninterrupted single-process run ends."""
    argv = ["--method", "sltt-k", "--k", "1", "--hidden", "12", "--T", "2", "--batch-size", "64", "--epochs", "1",
            "--quiet", "--lr", "0.01"]
    res = _run([sys.executable, "-m", "snnchip.cli.snn_train", *argv, "--nproc", "2", "--max-steps", "2",
                "--out", str(tmp_path / "a")])
    assert res.returncode == 0, res.stdout[-3000:]
    assert res.stdout.count("snn-train: mlp / sltt-k") == 1  # one summary: rank 0's
    cfg = config_from_args(TrainConfig, train_parser().parse_args([*argv, "--out", str(tmp_path / "a")]))
    fit(TrainConfig(**{**cfg.__dict__, "max_steps": 4, "resume": True}))
    fit(TrainConfig(**{**cfg.__dict__, "max_steps": 4, "out": str(tmp_path / "b")}))
    a, b = load_checkpoint(tmp_path / "a" / "model.pt"), load_checkpoint(tmp_path / "b" / "model.pt")
    assert a.extra["global_step"] == b.extra["global_step"] == 4
    for k, v in b.state_dict.items():
        torch.testing.assert_close(a.state_dict[k], v, atol=ATOL, rtol=0)


def one_process_torchrun(tmp_path, device: str) -> dict:
    """``torchrun --nproc-per-node=1`` of snn-train on ``device`` ends where the plain single-process run ends (it
    trains through the process group and DDP: gradients all-reduced over one rank); returns its metrics'
    ``distributed`` record (backend, world size)."""
    argv = ["--method", "ottt-a", "--hidden", "12", "--T", "2", "--batch-size", "64", "--epochs", "1", "--quiet",
            "--lr", "0.01", "--max-steps", "3", "--device", device]
    res = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m",
                "snnchip.cli.snn_train", *argv, "--out", str(tmp_path / "ddp")])
    assert res.returncode == 0, res.stdout[-3000:]
    fit(config_from_args(TrainConfig, train_parser().parse_args([*argv, "--out", str(tmp_path / "one")])))
    a, b = load_checkpoint(tmp_path / "ddp" / "model.pt"), load_checkpoint(tmp_path / "one" / "model.pt")
    assert a.extra["global_step"] == b.extra["global_step"] == 3
    for k, v in b.state_dict.items():
        torch.testing.assert_close(a.state_dict[k], v, atol=ATOL, rtol=0)
    return json.loads((tmp_path / "ddp" / "metrics.json").read_text())["distributed"]


@pytest.mark.slow
def test_torchrun_with_one_process_trains_through_gloo(tmp_path):
    assert one_process_torchrun(tmp_path, "cpu") == {"backend": "gloo", "world_size": 1}


@pytest.mark.slow
def test_a_failing_rank_ends_the_whole_run(tmp_path):
    res = _torchrun(tmp_path, "fail", str(tmp_path / "run"))  # rank 0 is waiting in an all-reduce when rank 1 raises
    assert res.returncode != 0
    assert "injected failure in rank 1" in res.stdout and "ChildFailedError" in res.stdout


def test_ranks_split_each_global_batch_of_the_single_process_order():
    one = World(0, 1, torch.device("cpu")).order(11, 7, epoch=3)
    assert torch.equal(one, torch.randperm(11, generator=torch.Generator().manual_seed(10)))  # the trainer's order
    parts = [World(r, 2, torch.device("cpu")).order(11, 7, epoch=3) for r in range(2)]
    for i in range(3):  # global batch 4 = 2 + 2; the last one padded with a repeat (11 is odd)
        got = torch.cat([p[2 * i:2 * i + 2] for p in parts]).sort().values
        want = one[4 * i:4 * i + 4]
        assert set(want.tolist()) <= set(got.tolist()) and len(got) == 4


def test_nproc_builds_a_torchrun_command_with_the_same_options(tmp_path):
    from snnchip.cli.snn_train import torchrun_command

    args = train_parser().parse_args(["--nproc", "3", "--method", "saf-e", "--lr", "0.1", "--amp", "--out", "r"])
    cmd = torchrun_command(args)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3", "-m"]
    rest = cmd[7:]
    assert "--nproc" not in rest and train_parser().parse_args(rest) == train_parser().parse_args(
        ["--method", "saf-e", "--lr", "0.1", "--amp", "--out", "r"])


def test_global_batch_must_split_evenly(tmp_path, monkeypatch):
    from snnchip.train import trainer as tr

    monkeypatch.setattr(tr, "process_group", lambda device: _FakeGroup(World(0, 3, device)))
    with pytest.raises(SpecError, match="multiple of the 3 processes"):
        fit(config(tmp_path, "ottt-a"), tiny_data())


class _FakeGroup:
    def __init__(self, world):
        self.world = world

    def __enter__(self):
        return self.world

    def __exit__(self, *exc):
        return False
