"""Core contracts: the network spec and the checkpoint format (issue: foundation)."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from snnchip.atomic import atomic_dir, atomic_path
from snnchip.checkpoint import FORMAT_NAME, load_checkpoint, save_checkpoint
from snnchip.errors import CheckpointError, SpecError
from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronSpec


def mlp_spec(T: int = 4) -> NetworkSpec:
    lif = NeuronSpec(kind="lif", lam=0.5, theta=1.0)
    return NetworkSpec(
        input_shape=(64,),
        layers=(
            LayerSpec("fc1", "linear", out_features=32, neuron=lif),
            LayerSpec("fc2", "linear", out_features=10, neuron=NeuronSpec(kind="readout")),
        ),
        feedback=(FeedbackSpec("fc1", "fc1"),),
        T=T,
        num_classes=10,
        method="ottt-a",
        model="mlp",
        options={"mse_alpha": 0.05},
    )


def conv_spec() -> NetworkSpec:
    lif = NeuronSpec(reset="zero", spike="gt", surrogate="triangle")
    return NetworkSpec(
        input_shape=(1, 8, 8),
        layers=(
            LayerSpec("conv1", "conv2d", out_channels=4, kernel_size=3, padding=1, neuron=lif,
                      options={"weight_std": True}),
            LayerSpec("pool1", "avgpool", kernel_size=2),
            LayerSpec("flat", "flatten"),
            LayerSpec("fc", "linear", out_features=10, neuron=NeuronSpec(kind="readout")),
        ),
        T=3,
        num_classes=10,
    )


def test_spec_shapes_and_json_round_trip():
    spec = conv_spec()
    assert spec.shapes() == [(4, 8, 8), (4, 4, 4), (64,), (10,)]
    text = spec.to_json()
    again = NetworkSpec.from_dict(json.loads(text))
    assert again == spec
    assert NetworkSpec.from_dict(mlp_spec().to_dict()) == mlp_spec()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(T=0), "T"),
        (lambda d: d.update(T=-3), "T"),
        (lambda d: d["layers"][0]["neuron"].update(reset="hard"), "reset mode"),
        (lambda d: d["layers"][0]["neuron"].update(kind="izhikevich"), "neuron kind"),
        (lambda d: d["layers"][0]["neuron"].update(theta=float("nan")), "finite"),
        (lambda d: d["layers"][0].update(op="lstm"), "op of layer"),
        (lambda d: d.update(num_classes=7), "num_classes"),
        (lambda d: d["feedback"][0].update(src="nope"), "unknown layer"),
        (lambda d: d["layers"][0].update(bogus=1), "malformed"),
        (lambda d: d.pop("layers"), "malformed"),
        (lambda d: d["layers"][0].update(options={"scael": 2.0}),
         r"layer 'fc1': unknown option\(s\) \['scael'\]; valid: weight_std, scale,"),
        (lambda d: d["layers"][0].update(options={"scale": "2"}), "layer 'fc1': option 'scale' = '2' is not a float"),
        (lambda d: d["layers"][0].update(options={"binary": 1}), "option 'binary' = 1 is not a bool"),
        (lambda d: d["layers"][0].update(options=[]), "layer 'fc1': options must be a dict"),
        (lambda d: d.update(options={"tau_grad": 5.0, "retarget": True}), r"the network: unknown option\(s\)"),
    ],
)
def test_invalid_spec_names_the_problem(mutate, message):
    data = mlp_spec().to_dict()
    mutate(data)
    with pytest.raises(SpecError, match=message):
        NetworkSpec.from_dict(data)


def test_checkpoint_round_trip(tmp_path: Path):
    spec = mlp_spec()
    state = {"fc1.weight": torch.randn(32, 64), "fc1.bias": torch.randn(32), "step": torch.tensor(7)}
    path = save_checkpoint(tmp_path / "model.pt", spec, state, metrics={"acc": 0.97}, extra={"epoch": 3})
    ck = load_checkpoint(path)
    assert ck.spec == spec
    assert ck.metrics == {"acc": 0.97} and ck.extra == {"epoch": 3}
    assert set(ck.state_dict) == set(state)
    for k, v in state.items():
        assert torch.equal(ck.state_dict[k], v)


class _Payload:
    """A pickle payload that would create a marker file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the hostile file is a plain protocol-4 pickle
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": {"name": FORMAT_NAME, "version": 1}, "x": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    # a plain (non-zip) pickle with the same payload
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not marker.exists()


def test_truncated_missing_and_foreign_files(tmp_path: Path):
    good = save_checkpoint(tmp_path / "m.pt", mlp_spec(), {"w": torch.ones(3)})
    data = good.read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an snnchip checkpoint"):
        load_checkpoint(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)


def test_a_flipped_byte_inside_the_archive_is_refused_naming_the_member(tmp_path: Path):
    """torch.load never checks the zip CRC-32s: two flipped bytes inside a tensor would load as changed weights."""
    path = save_checkpoint(tmp_path / "model.pt", mlp_spec(), {"fc1.weight": torch.randn(32, 64)})
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)  # the weight's storage
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # the member's bytes (stored, not compressed)
    for i in (start + 100, start + 101):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path}: corrupt checkpoint: member '{info.filename}' fails its CRC"):
        load_checkpoint(path)


def test_wrong_version_and_missing_keys(tmp_path: Path):
    p = tmp_path / "v2.pt"
    torch.save({"format": {"name": FORMAT_NAME, "version": 99}, "spec": {}, "state_dict": {}, "metrics": {}}, p)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(p)
    torch.save({"format": {"name": FORMAT_NAME, "version": 1}, "spec": mlp_spec().to_dict()}, p)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(p)
    torch.save({"format": {"name": FORMAT_NAME, "version": 1}, "spec": {"layers": []},
                "state_dict": {}, "metrics": {}}, p)
    with pytest.raises(CheckpointError, match="invalid network spec"):
        load_checkpoint(p)


def test_interrupted_save_keeps_previous_file(tmp_path: Path, monkeypatch):
    path = save_checkpoint(tmp_path / "model.pt", mlp_spec(), {"w": torch.ones(3)}, metrics={"v": 1})
    before = path.read_bytes()

    write = Path.write_bytes

    def boom(self, data):
        write(self, bytes(data)[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, mlp_spec(), {"w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_dir_replaces_only_on_success(tmp_path: Path):
    d = tmp_path / "deploy"
    with atomic_dir(d) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(d) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("export failed")
    assert (d / "a.txt").read_text() == "one"
    with atomic_dir(d) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in d.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]
    with pytest.raises(ValueError), atomic_path(tmp_path / "f.json") as t:
        t.write_text("x")
        raise ValueError
    assert not (tmp_path / "f.json").exists()


@pytest.mark.parametrize("cmd", ["snn-train", "snn-export", "snn-run", "snn-validate", "snn-bench", "snn-pipeline"])
def test_cli_help_and_version(cmd):
    exe = Path(sys.executable).parent / cmd
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "examples:" in out
    ver = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert "snnchip" in ver


def test_no_module_unpickles_without_a_restriction():
    """Every read of a pickle goes through torch.load(weights_only=True) or an allow-list Unpickler."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in root.glob("*/**/*.py"):
        if ".venv" in path.parts or path.parts[-2] == "tests":
            continue
        text = path.read_text(encoding="utf-8")
        for bad in ("weights_only=False", "pickle.load(", "pickle.loads(", "allow_pickle=True"):
            if bad in text:
                offenders.append(f"{path.relative_to(root)}: {bad}")
    assert not offenders, offenders
