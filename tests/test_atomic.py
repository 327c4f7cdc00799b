"""Atomic writes: a full disk, a destination of the wrong kind, a killed writer's leftovers, the umask."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nir_nets import mlp_graph

from snnchip.atomic import atomic_dir, atomic_path, write_text_atomic
from snnchip.checkpoint import load_checkpoint, save_checkpoint
from snnchip.errors import OutputError
from snnchip.export.loihi import export_loihi
from snnchip.spec import LayerSpec, NetworkSpec, NeuronSpec


def _spec() -> NetworkSpec:
    return NetworkSpec(input_shape=(4,), layers=(LayerSpec("fc", "linear", out_features=2,
                                                           neuron=NeuronSpec(kind="readout")),), T=2, num_classes=2)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_named_error_and_the_previous_file_is_kept(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "model.pt", _spec(), {"w": torch.ones(3)})
    before = path.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", _full_disk)
    with pytest.raises(OutputError, match=rf"^{path}: no space left on device while writing the file; the previous "
                                          "one is kept$"):
        save_checkpoint(path, _spec(), {"w": torch.zeros(3)})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'new.json'}: no space left on device.*nothing was written"):
        write_text_atomic(tmp_path / "new.json", "{}")


def test_a_full_disk_while_writing_a_deploy_directory_keeps_the_previous_one(tmp_path, monkeypatch):
    out = export_loihi(mlp_graph((4, 5, 2), T=3), tmp_path / "dep")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def hdf5_full(*args, **kwargs):  # what h5py raises: the errno only in the text
        raise OSError("Unable to synchronously write data (file write failed: errno = 28, error message = 'No "
                      "space left on device')")

    monkeypatch.setattr(np, "savez", hdf5_full)
    with pytest.raises(OutputError, match=rf"^{out}: no space left on device while writing the directory"):
        export_loihi(mlp_graph((4, 5, 2), T=5), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["dep"]


def test_a_destination_of_the_wrong_kind_is_named(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'adir'}: is a directory; name a file to write$"):
        write_text_atomic(tmp_path / "adir", "{}")
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'afile' / 'x' / 'y.json'}: cannot create its folder: "
                                          rf"{tmp_path / 'afile'} is a file$"):
        write_text_atomic(tmp_path / "afile" / "x" / "y.json", "{}")
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'afile'}: exists and is not a directory"):
        with atomic_dir(tmp_path / "afile"):
            pass
    assert (tmp_path / "afile").read_text() == "x"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    dest = tmp_path / "model.pt"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom snnchip.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(bytes(10**6))\n    print('writing', flush=True)\n"
        "    time.sleep(60)\n"), str(dest)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".model.pt.{writer.pid}.") and left[0].endswith(".tmp")
    live = tmp_path / f".model.pt.{os.getpid()}.abcdefgh.tmp"  # a writer still running: left alone
    live.write_bytes(b"in progress")
    other = tmp_path / f".model.pt.bak.{_dead_pid()}.abcdefgh.tmp"  # another destination's temp file
    other.write_bytes(b"")
    write_text_atomic(dest, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.pt", live.name, other.name])


def test_a_killed_directory_writer_is_cleaned_up_and_a_directory_it_moved_aside_restored(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".dep.{dead}.a1b2c3d4.tmp"
    stale.mkdir()
    (stale / "params.npz").write_bytes(b"half")
    aside = tmp_path / f".dep.{dead}.zz99yy88.old"  # killed between moving dep aside and renaming the new one
    (aside / "d").mkdir(parents=True)
    (aside / "d" / "manifest.json").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "dep"):
            raise RuntimeError("the new export fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dep"]
    assert (tmp_path / "dep" / "manifest.json").read_text() == "previous"


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                      (0o002, 0o664, 0o775)])
def test_outputs_get_the_users_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "metrics.json", "{}")
        with atomic_dir(tmp_path / "dep") as d:
            (d / "manifest.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "dep").stat().st_mode) == dir_mode


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", _spec(), {"w": torch.ones(3)})
    path.chmod(0o640)
    save_checkpoint(path, _spec(), {"w": torch.zeros(3)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and float(load_checkpoint(path).state_dict["w"].sum()) == 0
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
