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
    fit(TrainConfig(out=str(root / "other"), hidden="16", epochs=2, T=3, seed=1, quiet=True, device="cpu"))
    assert cli.export([str(root / "run" / "model.pt"), "--target", "loihi", "-o", str(root / "deploy")]) == 0
    assert cli.export([str(root / "other" / "model.pt"), "--target", "loihi", "-o", str(root / "deploy_other")]) == 0
    np.save(root / "x.npy", np.random.default_rng(0).uniform(0, 1, (3, 4, 64)))
    return root


@pytest.fixture
def world(trained, tmp_path) -> dict[str, Path]:
    """Fresh copies of the trained run, deploy directory and input, and a scratch folder for outputs."""
    for name in ("run", "deploy", "deploy_other", "x.npy"):
        (shutil.copytree if (trained / name).is_dir() else shutil.copy)(trained / name, tmp_path / name)
    (tmp_path / "out").mkdir()
    return {"root": tmp_path, "run": tmp_path / "run", "model": tmp_path / "run" / "model.pt",
            "deploy": tmp_path / "deploy", "other": tmp_path / "deploy_other", "x": tmp_path / "x.npy",
            "out": tmp_path / "out"}


def _digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(p.name.encode() + _digest(p).encode() for p in sorted(path.rglob("*"))
                                       if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Case:
    """``setup(world)`` prepares the hostile files and returns the command's argv; the command must exit with
    ``code`` and, for exit 2, print one line holding ``says`` (otherwise ``says`` is in what it prints); ``absent``
    paths (relative to the scratch root) must not exist afterwards; ``patch`` sets up the misfortune (a full disk,
    an interrupt)."""

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


def _params_edit(key: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, Path]], list[str]]:
    """Rewrite one array of the deploy directory's params.npz, then run it on the chip."""
    def setup(w: dict[str, Path]) -> list[str]:
        with np.load(w["deploy"] / "params.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arrays[key] = change(arrays[key])
        with open(w["deploy"] / "params.npz", "wb") as fh:
            np.savez(fh, **arrays)
        return _chip_run(w)
    return setup


def _chip_run(w: dict[str, Path], x: str | None = None, *extra: str) -> list[str]:
    return [str(w["deploy"]), "--input", x or str(w["x"]), "--out", str(w["out"] / "y.npz"), "--backend", "chip",
            *extra]


def _edited_run(edit: Callable[[dict], None], *extra: str) -> Callable[[dict[str, Path]], list[str]]:
    def setup(w: dict[str, Path]) -> list[str]:
        _manifest_edit(edit)(w)
        return _chip_run(w, None, *extra)
    return setup


def _swap(name: str) -> Callable[[dict[str, Path]], list[str]]:
    def setup(w: dict[str, Path]) -> list[str]:
        shutil.copy(w["other"] / name, w["deploy"] / name)
        return _chip_run(w)
    return setup


def _scaled(factor: float, *extra: str) -> Callable[[dict[str, Path]], list[str]]:
    def setup(w: dict[str, Path]) -> list[str]:
        np.save(w["root"] / "xs.npy", np.load(w["x"]) * factor)
        return _chip_run(w, str(w["root"] / "xs.npy"), *extra)
    return setup


def _interrupted_lava_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    from snnchip.workflows import validate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "_lava", interrupted)


def _forged(w: dict[str, Path]) -> str:
    """The other model's deployment, its manifest claiming this model.pt's sha256 and its seal rewritten to match
    (what an attacker who knows the format can do)."""
    from snnchip.identity import sha256_file

    man = json.loads((w["other"] / "manifest.json").read_text())
    man["source"] = {"path": str(w["model"]), "sha256": sha256_file(w["model"])}
    try:
        from snnchip.export.seal import sealed_manifest_json
    except ImportError:  # a snnchip without seals
        (w["other"] / "manifest.json").write_text(json.dumps(man))
    else:
        (w["other"] / "manifest.json").write_text(sealed_manifest_json(w["other"], man))
    return str(w["other"])


def _stage0(m: dict) -> dict:
    return m["stages"][0]


CASES = {
    # a deployment swapped or edited since export (the seal), or of another model (derived again)
    "swapped-params": Case("run", _swap("params.npz"), 2, "params.npz: its sha256 differs from the one manifest.json "
                           "seals", ("out/y.npz",)),
    "swapped-graph": Case("run", _swap("model.nir"), 2, "model.nir: its sha256 differs", ("out/y.npz",)),
    "weight-plus-8-units": Case("run", _params_edit("fc1/in0/weight", lambda w: np.where(w == 0, 8, w)), 2,
                                "params.npz: its sha256 differs", ("out/y.npz",)),
    "bias-plus-1000": Case("run", _params_edit("fc1/bias", lambda b: b + 1000), 2, "params.npz: its sha256 differs",
                           ("out/y.npz",)),
    "threshold-edited": Case("run", _edited_run(lambda m: _stage0(m).update(vth=_stage0(m)["vth"] + 1)), 2,
                             "manifest.json: stage 1 ('fc1') differs from its sealed value", ("out/y.npz",)),
    "weight-exponent-edited": Case("run", _edited_run(lambda m: _stage0(m)["inputs"][0].update(
        weight_exp=_stage0(m)["inputs"][0]["weight_exp"] + 1)), 2, "stage 1 ('fc1') differs from its sealed value",
        ("out/y.npz",)),
    "recorded-model-hash-edited": Case("run", _edited_run(lambda m: m["source"].update(sha256="0" * 64)), 2,
                                       "manifest.json: 'source' differs from its sealed value", ("out/y.npz",)),
    "seal-removed": Case("run", _edited_run(lambda m: m.pop("seal")), 2, "its seal is missing or malformed",
                         ("out/y.npz",)),
    "edited-and-allowed": Case("run", _edited_run(lambda m: _stage0(m).update(vth=_stage0(m)["vth"] + 1),
                                                  "--allow-edited"), 0,
                               "deployment: EDITED since export: manifest.json: stage 1 ('fc1') differs from its "
                               "sealed value (run as asked by --allow-edited)"),
    "deployment-of-another-model-claiming-this-one": Case("validate", lambda w: [
        _forged(w), "--model", str(w["model"]), "--samples", "16", "--lava-samples", "0"], 1,
        "FAIL  (values in which the deployment differs from the one derived again from this model.pt"),
    # inputs outside the deployment's range
    "input-times-100": Case("run", _scaled(100), 2, "outside the deployment's input range |x| ≤ 1", ("out/y.npz",)),
    "input-times-1e6": Case("run", _scaled(1e6), 2, "outside the deployment's input range |x| ≤ 1", ("out/y.npz",)),
    "input-negative-times-2": Case("run", _scaled(-2), 2, "re-export with --input-range 2", ("out/y.npz",)),
    "input-clipped-as-asked": Case("run", _scaled(100, "--clip-inputs"), 0, "clipped to it (--clip-inputs)"),
    # the certified directory appears only once every gate has passed
    "certificate-of-a-failed-ladder": Case("validate", lambda w: [str(w["model"]), "--samples", "16", "--lava-samples",
                                                                  "0", "--min-accuracy", "0.999", "--deploy-out",
                                                                  str(w["out"] / "cert")], 1,
                                           "certified deploy dir: not written", ("out/cert",)),
    "certificate-of-an-interrupted-ladder": Case("validate", lambda w: [str(w["model"]), "--samples", "16",
                                                                        "--lava-samples", "1", "--deploy-out",
                                                                        str(w["out"] / "cert")], 130, "",
                                                 ("out/cert",), patch=_interrupted_lava_gate),
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
    inputs = {p: _digest(p) for p in (world["run"], world["deploy"], world["other"], world["x"]) if p.exists()}
    if case.patch is not None:
        case.patch(monkeypatch)
    rc = getattr(cli, case.command)(argv)
    monkeypatch.undo()
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip() and "it/s]" not in line]
    assert rc == case.code, (rc, err)
    if rc == 2:
        assert len(err) == 1 and err[0].startswith(f"snn-{case.command}: error: "), err
        assert case.says in err[0], err[0]
    elif rc > 128:
        assert err[-1:] == [f"snn-{case.command}: interrupted"], err
    else:
        assert case.says in captured.out, captured.out
        assert not [line for line in err if "Traceback" in line], err
    assert {p: _digest(p) for p in inputs} == inputs, "an input changed"
    assert [a for a in case.absent if (world["root"] / a).exists()] == []
    assert not [p for p in world["root"].rglob(".*.tmp")], "a temp file was left"
