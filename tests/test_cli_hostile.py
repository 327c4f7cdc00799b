"""Every command against hostile arguments and files: only our one-line errors, nothing run, nothing destroyed.

A hypothesis test drives each command from valid, cheap arguments with one argument replaced by a hostile value
(negative, zero, NaN, infinite, huge, empty, not a number) or a hostile file (missing, a directory, empty, random
bytes, a pickle that would run code, a truncated model, an array of the wrong shape, dtype or values, a corrupt
deploy directory). Accepted outcomes: exit 0 or 1 (the value was legal), or exit 2 with exactly one line on
stderr, ``PROG: error: ...``; any other exception fails the test, and the pickle's marker file must never appear.
Outputs are protected: an output that is, or would replace a directory holding, an input is refused before
anything is read or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnchip import cli

HOSTILE_VALUES = ["-1", "0", "-3", "nan", "inf", "-inf", "1e309", "", "abc", "99999999999999999999", "1e-300", "0.5"]


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _sha(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(_sha(p).encode() + p.name.encode() for p in sorted(path.rglob("*"))
                                       if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained model, its NIR graph and deploy directory, an input array, and the hostile files."""
    from snnchip.train.trainer import TrainConfig, fit

    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    fit(TrainConfig(out=str(run), hidden="8", epochs=1, max_steps=3, T=2, quiet=True, device="cpu"))
    assert cli.export([str(run / "model.pt"), "--target", "nir", "-o", str(root / "model.nir")]) == 0
    assert cli.export([str(run / "model.pt"), "--target", "loihi", "-o", str(root / "deploy")]) == 0
    np.save(root / "x.npy", np.random.default_rng(0).random((2, 3, 64), dtype=np.float32))
    h = root / "h"
    h.mkdir()
    marker = root / "RAN"
    (h / "empty").write_bytes(b"")
    (h / "random").write_bytes(np.random.default_rng(1).bytes(4096))
    (h / "dir").mkdir()
    (h / "evil.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    import torch

    torch.save({"spec": _RunsCode(marker)}, h / "evil.pt")
    data = (run / "model.pt").read_bytes()
    (h / "truncated.pt").write_bytes(data[: len(data) // 2])
    nir_bytes = (root / "model.nir").read_bytes()
    (h / "truncated.nir").write_bytes(nir_bytes[: len(nir_bytes) // 2])
    np.save(h / "wrong_shape.npy", np.zeros((2, 3, 5), np.float32))
    np.save(h / "nan.npy", np.full((2, 3, 64), np.nan, np.float32))
    np.save(h / "zero_batch.npy", np.zeros((2, 0, 64), np.float32))
    np.save(h / "no_steps.npy", np.zeros((0, 3, 64), np.float32))
    np.save(h / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (h / "bad.toml").write_text("[train\nmethod = ", encoding="utf-8")
    (h / "unknown.toml").write_text("[train]\nmethod = 'ottt-a'\nnot_an_option = 3\n", encoding="utf-8")
    bad_deploy = h / "bad_deploy"
    shutil.copytree(root / "deploy", bad_deploy)
    (bad_deploy / "manifest.json").write_text('{"format": 3, "stages": "no"}', encoding="utf-8")
    return {"root": root, "model": run / "model.pt", "nir": root / "model.nir", "deploy": root / "deploy",
            "x": root / "x.npy", "marker": marker, **{p.name: p for p in h.iterdir()}}


FILES = ["missing", "empty", "random", "dir", "evil.pkl", "evil.pt", "truncated.pt", "truncated.nir",
         "wrong_shape.npy", "nan.npy", "zero_batch.npy", "no_steps.npy", "objects.npy", "bad.toml", "unknown.toml",
         "bad_deploy"]


def _file(world: dict[str, Path], name: str) -> str:
    return str(world["root"] / "does-not-exist") if name == "missing" else str(world[name])


def _base(command: str, world: dict[str, Path], out: Path) -> list[str]:
    return {
        "train": ["--out", str(out / "run"), "--hidden", "8", "--epochs", "1", "--max-steps", "2", "--T", "2",
                  "--quiet", "--device", "cpu"],
        "export": [str(world["model"]), "--target", "nir", "-o", str(out / "m.nir")],
        "run": [str(world["nir"]), "--input", str(world["x"]), "--out", str(out / "y.npz")],
        "validate": [str(world["deploy"]), "--model", str(world["model"]), "--samples", "16", "--lava-samples", "0"],
        "pipeline": [],
    }[command]


# (option, kind): a scalar option takes hostile values, a file option hostile files; None = the positional
MUTATIONS = {
    "train": [("--T", "value"), ("--epochs", "value"), ("--batch-size", "value"), ("--lr", "value"),
              ("--mse-alpha", "value"), ("--max-steps", "value"), ("--lam", "value"), ("--theta", "value"),
              ("--weight-decay", "value"), ("--k", "value"), ("--hidden", "value"), ("--data-dir", "file"),
              ("--seed", "value")],
    "export": [(None, "file"), ("--T", "value"), ("--max-memory", "value"), ("--target", "value")],
    "run": [(None, "file"), ("--input", "file"), ("--backend", "value")],
    "validate": [(None, "file"), ("--model", "file"), ("--samples", "value"), ("--lava-samples", "value"),
                 ("--min-agreement", "value"), ("--min-rate", "value"), ("--max-rate", "value"),
                 ("--batch-size", "value"), ("--lava-budget", "value")],
    "pipeline": [(None, "file")],
}


def _mutate(args: list[str], option: str | None, value: str) -> list[str]:
    if option is None:
        return [value, *args[1:]]
    if option in args:
        i = args.index(option)
        return [*args[: i + 1], value, *args[i + 2:]]
    return [*args, option, value]


def _check_outcome(command: str, argv: list[str], world: dict[str, Path]) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = getattr(cli, command)(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert not world["marker"].exists(), f"{argv}: a hostile file ran code"
    assert rc in (0, 1, 2), (argv, rc)
    if rc == 2:
        assert len(lines) == 1 and lines[0].startswith(f"snn-{command}: error: "), (argv, lines)


def _run_mutated(command: str, world: dict[str, Path], option: str | None, value: str) -> None:
    out = Path(tempfile.mkdtemp(dir=world["root"]))
    argv = _mutate(_base(command, world, out), option, value)
    before = {k: _sha(world[k]) for k in ("model", "nir", "deploy", "x")}
    _check_outcome(command, argv, world)
    assert {k: _sha(world[k]) for k in before} == before, f"{argv} changed an input"


FILE_CASES = [(c, o) for c, muts in MUTATIONS.items() for o, kind in muts if kind == "file"]


@pytest.mark.parametrize("command,option", FILE_CASES, ids=[f"{c}-{o or 'positional'}" for c, o in FILE_CASES])
def test_every_hostile_file_gets_a_one_line_error(command, option, world):
    for name in FILES:
        _run_mutated(command, world, option, _file(world, name))


VALUES = st.one_of(st.sampled_from(HOSTILE_VALUES), st.integers(-2**70, 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6))


@pytest.mark.parametrize("command", [c for c, muts in MUTATIONS.items() if any(k == "value" for _, k in muts)])
def test_hostile_values_get_one_line_errors(command, world):
    @settings(max_examples=30, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(option=st.sampled_from([o for o, k in MUTATIONS[command] if k == "value"]), value=VALUES)
    def check(option, value):
        _run_mutated(command, world, option, value)

    check()


def test_the_fuzzer_can_fail(world, monkeypatch):
    """The outcome check rejects an escaping exception, a two-line error and code that ran (it is not vacuous)."""
    def raises(argv):
        raise ValueError("a traceback")

    def two_lines(argv):
        print("snn-run: error: one\nand another", file=sys.stderr)
        return 2

    monkeypatch.setattr(cli, "run", raises)
    with pytest.raises(ValueError):
        _check_outcome("run", [], world)
    monkeypatch.setattr(cli, "run", two_lines)
    with pytest.raises(AssertionError):
        _check_outcome("run", [], world)
    world["marker"].touch()
    try:
        with pytest.raises(AssertionError, match="ran code"):
            _check_outcome("export", ["--version-nonexistent"], world)
    finally:
        world["marker"].unlink()


@pytest.mark.parametrize("case", ["export-onto-model", "deploy-over-run-dir", "run-out-is-input",
                                  "validate-json-is-model", "deploy-out-over-run-dir"])
def test_an_output_never_destroys_an_input(case, world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world["model"].parent, run)
    model = run / "model.pt"
    x = tmp_path / "x.npy"
    shutil.copy(world["x"], x)
    before = _sha(run), _sha(x)
    command, argv = {
        "export-onto-model": ("export", [str(model), "--target", "nir", "-o", str(model)]),
        "deploy-over-run-dir": ("export", [str(model), "--target", "loihi", "-o", str(run)]),
        "run-out-is-input": ("run", [str(world["nir"]), "--input", str(x), "--out", str(x)]),
        "validate-json-is-model": ("validate", [str(model), "--json", str(model), "--lava-samples", "0"]),
        "deploy-out-over-run-dir": ("validate", [str(model), "--deploy-out", str(run), "--lava-samples", "0"]),
    }[case]
    assert getattr(cli, command)(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would destroy the input" in err[0], err
    assert (_sha(run), _sha(x)) == before


def test_a_deploy_directory_replaces_only_a_deploy_directory(world, tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work", encoding="utf-8")
    assert cli.export([str(world["model"]), "--target", "loihi", "-o", str(notes)]) == 2
    assert "is not a deploy directory" in capsys.readouterr().err
    assert (notes / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    dep = tmp_path / "dep"
    for _ in range(2):  # a fresh directory, then an earlier deploy directory: replaced
        assert cli.export([str(world["model"]), "--target", "loihi", "-o", str(dep)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.export([str(world["model"]), "--target", "loihi", "-o", str(empty)]) == 0
