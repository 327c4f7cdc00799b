"""The fault suite: hostile and unlucky cases, each tried as a careful user or an attacker would, on a trained run.

Every case runs a command in-process on fresh copies of a trained digits MLP's run, deploy directory and input, and
must end in exactly one of two ways: it succeeds (exit 0 or 1) and says what it did, or it stops with one line,
``PROG: error: ...`` naming the problem and the fix, exit 2. Never a traceback, never a changed input (a checksum
of every input file before and after), never a file half-written, never code run from a file. ``CASES`` is the
suite; its count is quoted in README (Reliability).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from snnchip import cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A trained run (model.pt, metrics.json, curves.png), its deploy directory and an input within range."""
    from snnchip.train.trainer import TrainConfig, fit

    root = tmp_path_factory.mktemp("faults")
    fit(TrainConfig(out=str(root / "run"), hidden="16", epochs=2, T=3, quiet=True, device="cpu"))
    assert cli.export([str(root / "run" / "model.pt"), "--target", "loihi", "-o", str(root / "deploy")]) == 0
    np.save(root / "x.npy", np.random.default_rng(0).uniform(0, 1, (3, 4, 64)))
    return root


@pytest.fixture
def world(trained, tmp_path) -> dict[str, Path]:
    """Fresh copies of the trained run, deploy directory and input, and a scratch folder for outputs."""
    for name in ("run", "deploy", "x.npy"):
        (shutil.copytree if (trained / name).is_dir() else shutil.copy)(trained / name, tmp_path / name)
    (tmp_path / "out").mkdir()
    return {"root": tmp_path, "run": tmp_path / "run", "model": tmp_path / "run" / "model.pt",
            "deploy": tmp_path / "deploy", "x": tmp_path / "x.npy", "out": tmp_path / "out"}


def _digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(p.name.encode() + _digest(p).encode() for p in sorted(path.rglob("*"))
                                       if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Case:
    """``setup(world)`` prepares the hostile files and returns the command's argv; the command must exit with
    ``code`` and, for exit 2, print one line holding ``says``; ``absent`` paths (relative to the scratch root)
    must not exist afterwards."""

    command: str
    setup: Callable[[dict[str, Path]], list[str]]
    code: int
    says: str
    absent: tuple[str, ...] = ()
    patch: Callable[[pytest.MonkeyPatch], None] | None = field(default=None)


def _npy(world: dict[str, Path], name: str, data: bytes) -> str:
    (world["root"] / name).write_bytes(data)
    return str(world["root"] / name)


def _huge_header(world: dict[str, Path]) -> str:
    """A .npy whose header declares a 238 GiB float64 array, followed by 1000 bytes of data."""
    raw = world["x"].read_bytes()
    head = raw[:128].replace(b"'shape': (3, 4, 64), }      ", b"'shape': (40000,800,1000), }")
    assert len(head) == 128
    return _npy(world, "big.npy", head + raw[128:1128])


def _complex(world: dict[str, Path]) -> str:
    np.save(world["root"] / "c.npy", np.ones((3, 4, 64), complex))
    return str(world["root"] / "c.npy")


def _manifest_edit(edit: Callable[[dict], None]) -> Callable[[dict[str, Path]], Path]:
    def apply(world: dict[str, Path]) -> Path:
        path = world["deploy"] / "manifest.json"
        man = json.loads(path.read_text())
        edit(man)
        path.write_text(json.dumps(man))
        return world["deploy"]
    return apply


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    def pwrite(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", pwrite)


def _pipeline_config(world: dict[str, Path], extra: str = "") -> str:
    path = world["root"] / "p.toml"
    path.write_text(f'[train]\ndataset = "digits"\nhidden = "8"\nepochs = 1\nT = 2\nquiet = true\n{extra}\n'
                    '[validate]\nlava_samples = 0\nsamples = 16\n', encoding="utf-8")
    return str(path)


def _version(v: object) -> Callable[[dict[str, Path]], list[str]]:
    def setup(w: dict[str, Path]) -> list[str]:
        dep = _manifest_edit(lambda m: m["format"].update(version=v))(w)
        return [str(dep), "--input", str(w["x"]), "--out", str(w["out"] / "y.npz"), "--backend", "chip"]
    return setup


CASES = {
    # misleading or raw errors of today's commands
    "onnx-named-json": Case("export", lambda w: [str(w["model"]), "--target", "onnx", "-o", str(w["out"] / "o.json")],
                            2, "name it .onnx", ("out/o.json",)),
    "onnx-named-textproto": Case("export", lambda w: [str(w["model"]), "--target", "onnx", "-o",
                                                      str(w["out"] / "o.textproto")], 2, "name it .onnx",
                                 ("out/o.textproto",)),
    "validate-plots-onto-a-file": Case("validate", lambda w: [str(w["model"]), "--lava-samples", "0", "--samples", "8",
                                                              "--plots", str(w["x"])], 2,
                                       "exists and is not a directory"),
    "validate-json-onto-a-directory": Case("validate", lambda w: [str(w["model"]), "--lava-samples", "0", "--samples",
                                                                  "8", "--json", str(w["out"])], 2,
                                           "is a directory; name a file"),
    "train-full-disk-at-the-lock": Case("train", lambda w: ["--out", str(w["out"] / "r"), "--hidden", "8", "--epochs",
                                                            "1", "--quiet", "--device", "cpu"], 2,
                                        "no space left on device", patch=_full_disk),
    "npy-header-declares-238-GiB": Case("run", lambda w: [str(w["deploy"]), "--input", _huge_header(w), "--out",
                                                          str(w["out"] / "y.npz"), "--backend", "chip"], 2,
                                        "truncated: its header declares a float64 array of shape (40000, 800, 1000)",
                                        ("out/y.npz",)),
    "npy-header-malformed": Case("run", lambda w: [str(w["deploy"]), "--input",
                                                   _npy(w, "m.npy", w["x"].read_bytes()[:60]), "--out",
                                                   str(w["out"] / "y.npz"), "--backend", "chip"], 2,
                                 "its header is malformed", ("out/y.npz",)),
    "complex-input": Case("run", lambda w: [str(w["deploy"]), "--input", _complex(w), "--out", str(w["out"] / "y.npz"),
                                            "--backend", "chip"], 2, "holds complex numbers", ("out/y.npz",)),
    "pipeline-train-out-ignored": Case("pipeline", lambda w: [_pipeline_config(w, 'out = "elsewhere"'), "--out",
                                                              str(w["out"] / "p")], 2,
                                       "[train] out = 'elsewhere': the pipeline trains into its run directory",
                                       ("out/p",)),
    "pipeline-over-a-trained-run": Case("pipeline", lambda w: [_pipeline_config(w), "--out", str(w["run"])], 2,
                                        "holds a trained run (model.pt)"),
    "deploy-format-older": Case("run", _version(0), 2, "format version 0 is older than this snnchip reads"),
    "deploy-format-newer": Case("run", _version(99), 2, "format version 99 was written by a newer snnchip"),
    # outputs that would destroy inputs
    "run-out-into-its-deploy-dir": Case("run", lambda w: [str(w["deploy"]), "--input", str(w["x"]), "--out",
                                                          str(w["deploy"] / "params.npz"), "--backend", "chip"], 2,
                                        "lies inside the input deploy directory"),
    "export-onnx-over-metrics": Case("export", lambda w: [str(w["model"]), "--target", "onnx", "-o",
                                                          str(w["run"] / "metrics.json")], 2,
                                     "would replace the metrics.json of the run directory"),
    "validate-json-over-curves": Case("validate", lambda w: [str(w["model"]), "--lava-samples", "0", "--json",
                                                             str(w["run"] / "curves.png")], 2,
                                      "would replace the curves.png of the run directory"),
    "export-nir-over-a-deploy-file": Case("export", lambda w: [str(w["model"]), "--target", "nir", "-o",
                                                               str(w["deploy"] / "model.nir")], 2,
                                          "is a file of the deploy directory"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, world: dict[str, Path], capsys, monkeypatch):
    case = CASES[name]
    argv = case.setup(world)
    inputs = {p: _digest(p) for p in (world["run"], world["deploy"], world["x"]) if p.exists()}
    if case.patch is not None:
        case.patch(monkeypatch)
    rc = getattr(cli, case.command)(argv)
    monkeypatch.undo()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == case.code, (rc, err)
    if rc == 2:
        assert len(err) == 1 and err[0].startswith(f"snn-{case.command}: error: "), err
        assert case.says in err[0], err[0]
    assert {p: _digest(p) for p in inputs} == inputs, "an input changed"
    assert [a for a in case.absent if (world["root"] / a).exists()] == []
    assert not [p for p in world["root"].rglob(".*.tmp")], "a temp file was left"
