"""The event datasets, read from files written here byte by byte from each published format's specification.

Every writer below packs the fields the format defines (struct, zipfile, gzip, h5py), never through snnchip's own
code; each test checks the events, counts, labels and frames it reads back against the values it put in.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from snnchip import cli
from snnchip.errors import DataError, SnnchipError
from snnchip.train import events
from snnchip.train.data import load_dataset
from snnchip.train.events import (
    bin_events,
    bin_spikes,
    read_aedat2_dvs128,
    read_aedat31,
    read_gesture_labels,
    read_nmnist,
    read_shd,
)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- writers of the published formats

def nmnist_bin(evs) -> bytes:
    """N-MNIST: per event 40 bits, big-endian: x (8), y (8), polarity (1), time in µs (23)."""
    return b"".join(bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF]) for x, y, p, t in evs)


AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
                 b"# Timestamps tick is 1 us\r\n# created Wed Mar 08 10:36:01 CST 2017\r\n")


def dvs128_address(x: int, y: int, on: bool) -> int:
    """jAER's DVS128 address: bits 14..8 y, bits 7..1 the x-flipped column 127 - x, bit 0 = 0 for an ON event."""
    return (y << 8) | ((127 - x) << 1) | (0 if on else 1)


def aedat2(pairs) -> bytes:
    return AEDAT2_HEADER + b"".join(struct.pack(">II", addr, t) for addr, t in pairs)


AEDAT31_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                  b"#Start-Time: 2017-01-10 13:41:25 (TZ+0100)\r\n#!END-HEADER\r\n")


def aedat31_packet(etype: int, body: bytes, n: int, size: int = 8, overflow: int = 0) -> bytes:
    """A libcaer packet: int16 eventType, eventSource; int32 eventSize, eventTSOffset, eventTSOverflow,
    eventCapacity, eventNumber, eventValid; then the events."""
    return struct.pack("<hhiiiiii", etype, 1, size, 4, overflow, n, n, n) + body


def polarity_event(x: int, y: int, p: int, t: int, valid: int = 1) -> bytes:
    """libcaer polarity event: uint32 (x << 17 | y << 2 | polarity << 1 | valid mark), int32 time."""
    return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, t)


def shd_h5(target, times, units, labels, override: dict | None = None) -> None:
    """The SHD layout: spikes/times (vlen float16, s), spikes/units (vlen uint16), labels (uint16), extra/."""
    with h5py.File(target, "w") as f:
        data = {"spikes/times": (np.array([np.asarray(t, np.float16) for t in times] + [None], object)[:-1],
                                 h5py.vlen_dtype(np.float16)),
                "spikes/units": (np.array([np.asarray(u, np.uint16) for u in units] + [None], object)[:-1],
                                 h5py.vlen_dtype(np.uint16)),
                "labels": (np.asarray(labels, np.uint16), np.uint16)}
        for key, (value, dtype) in data.items():
            if key in (override or {}):
                if override[key] is not None:
                    f.create_dataset(key, data=override[key])
                continue
            f.create_dataset(key, data=value, dtype=dtype)
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), np.uint16))
        f.create_dataset("extra/keys", data=np.array([b"null", b"eins"]))


# ---------------------------------------------------------------- N-MNIST

def test_nmnist_events_come_back_as_written():
    evs = [(0, 0, 0, 0), (33, 5, 1, 17), (12, 33, 1, 2**23 - 1), (7, 8, 0, 300_000)]
    ev = read_nmnist(nmnist_bin(evs), "a.bin")
    assert len(ev) == 4
    assert ev.x.tolist() == [0, 33, 12, 7] and ev.y.tolist() == [0, 5, 33, 8]
    assert ev.p.tolist() == [0, 1, 1, 0] and ev.t.tolist() == [0, 17, 2**23 - 1, 300_000]


def test_nmnist_overflow_marker_adds_2_to_the_13_us_and_is_not_an_event():
    raw = nmnist_bin([(1, 1, 1, 100), (0, 240, 0, 0), (2, 2, 0, 50), (0, 240, 0, 0), (3, 3, 1, 60)])
    ev = read_nmnist(raw, "a.bin")
    assert ev.t.tolist() == [100, 50 + 8192, 60 + 2 * 8192] and ev.x.tolist() == [1, 2, 3]


def _nmnist_tree(root: Path, as_zip: bool) -> dict[str, list]:
    """Train: digits 0 and 3 (two samples, one sample); Test: digit 7. Returns what was written."""
    samples = {"Train": [("0", "00002.bin", [(1, 2, 1, 0), (3, 4, 0, 50), (3, 4, 0, 100)]),
                         ("0", "00005.bin", [(33, 33, 0, 10)]),
                         ("3", "00001.bin", [(10, 11, 1, 0), (20, 21, 1, 99), (30, 31, 0, 100)])],
               "Test": [("7", "00003.bin", [(5, 6, 1, 0), (5, 6, 0, 1000)])]}
    for split, files in samples.items():
        if as_zip:
            with zipfile.ZipFile(root / f"{split}.zip", "w", zipfile.ZIP_DEFLATED) as z:
                for digit, name, evs in files:
                    z.writestr(f"{split}/{digit}/{name}", nmnist_bin(evs))
                z.writestr(f"__MACOSX/{split}/0/._00002.bin", b"\x00\x05\x16\x07 AppleDouble")
        else:
            for digit, name, evs in files:
                (root / split / digit).mkdir(parents=True, exist_ok=True)
                (root / split / digit / name).write_bytes(nmnist_bin(evs))
    return samples


@pytest.mark.parametrize("as_zip", [False, True], ids=["folders", "published-zips"])
def test_nmnist_dataset_from_folders_or_the_published_zips(tmp_path, as_zip):
    _nmnist_tree(tmp_path, as_zip)
    ds = load_dataset("nmnist", tmp_path, T=2)
    assert ds.temporal and ds.num_classes == 10 and ds.input_shape == (2, 34, 34)
    assert ds.x_train.shape == (3, 2, 2, 34, 34) and ds.y_train.tolist() == [0, 0, 3] and ds.y_test.tolist() == [7]
    first = ds.x_train[0].numpy()  # t = 0, 50, 100 over T = 2: windows [0, 50) and [50, 100]
    assert first[0, 1, 2, 1] == 1 and first[1, 0, 4, 3] == 1 and first.sum() == 2  # two events share a pixel
    third = ds.x_train[2].numpy()
    assert third[0, 1, 11, 10] == 1 and third[1, 1, 21, 20] == 1 and third[1, 0, 31, 30] == 1 and third.sum() == 3
    assert ds.x_test[0, 0, 1, 6, 5] == 1 and ds.x_test[0, 1, 0, 6, 5] == 1


def test_nmnist_zips_and_folders_read_the_same(tmp_path):
    for sub, as_zip in (("z", True), ("f", False)):
        (tmp_path / sub).mkdir()
        _nmnist_tree(tmp_path / sub, as_zip)
    a, b = load_dataset("nmnist", tmp_path / "z", T=3), load_dataset("nmnist", tmp_path / "f", T=3)
    assert np.array_equal(a.x_train.numpy(), b.x_train.numpy()) and np.array_equal(a.x_test.numpy(), b.x_test.numpy())


def test_nmnist_downsample_pools_pixels(tmp_path):
    _nmnist_tree(tmp_path, False)
    ds = load_dataset("nmnist", tmp_path, T=2, downsample=2)
    assert ds.input_shape == (2, 17, 17)
    third = ds.x_train[2].numpy()  # (10, 11) → (5, 5), (20, 21) → (10, 10), (30, 31) → (15, 15)
    assert third[0, 1, 5, 5] == 1 and third[1, 1, 10, 10] == 1 and third[1, 0, 15, 15] == 1 and third.sum() == 3
    with pytest.raises(SnnchipError, match=r"--downsample 3: K must divide the 34×34 sensor of nmnist \(e.g. 2, 17"):
        load_dataset("nmnist", tmp_path, T=2, downsample=3)
    with pytest.raises(SnnchipError, match="pooling pixels applies to nmnist, dvsgesture, cifar10dvs, not 'shd'"):
        load_dataset("shd", tmp_path, T=2, downsample=2)


def test_a_spec_sets_the_downsampling(tmp_path):
    from snnchip.spec import NeuronSpec
    from snnchip.train import model_spec

    _nmnist_tree(tmp_path, False)
    ds = load_dataset("nmnist", tmp_path, spec=model_spec("mlp", (2, 17, 17), 10, 3, NeuronSpec()))
    assert ds.input_shape == (2, 17, 17) and ds.x_test.shape == (1, 3, 2, 17, 17)
    with pytest.raises(DataError, match=r"has samples of shape \(2, 34, 34\), but the model expects \(2, 16, 16\)"):
        load_dataset("nmnist", tmp_path, spec=model_spec("mlp", (2, 16, 16), 10, 3, NeuronSpec()))


# ---------------------------------------------------------------- CIFAR10-DVS (AEDAT 2.0, DVS128)

def test_aedat2_dvs128_decodes_as_jaer():
    pairs = [(dvs128_address(0, 0, True), 10), (dvs128_address(127, 5, False), 20),
             (dvs128_address(64, 127, True) | 0x8000, 25),  # an external sync event: not a pixel
             (dvs128_address(3, 4, False), 2**32 - 5), (dvs128_address(9, 9, True), 3)]  # the 32-bit clock wraps
    ev = read_aedat2_dvs128(aedat2(pairs), "a.aedat")
    assert len(ev) == 4
    assert ev.x.tolist() == [0, 127, 3, 9] and ev.y.tolist() == [0, 5, 4, 9] and ev.p.tolist() == [1, 0, 0, 1]
    assert ev.t.tolist() == [10, 20, 2**32 - 5, 2**32 + 3]


def _cifar10dvs_tree(root: Path, as_zip: bool) -> None:
    for label, cls in enumerate(events.CIFAR10_CLASSES):
        files = {f"cifar10_{cls}_{i}.aedat": aedat2([(dvs128_address(label, i % 128, True), 0),
                                                     (dvs128_address(label + 1, 2, False), 100)])
                 for i in (3, 150, 999)}
        if as_zip:
            with zipfile.ZipFile(root / f"{cls}.zip", "w") as z:
                for name, raw in files.items():
                    z.writestr(name, raw)
        else:
            (root / cls).mkdir()
            for name, raw in files.items():
                (root / cls / name).write_bytes(raw)


@pytest.mark.parametrize("as_zip", [False, True], ids=["folders", "published-zips"])
def test_cifar10dvs_dataset_and_its_split(tmp_path, as_zip):
    _cifar10dvs_tree(tmp_path, as_zip)
    ds = load_dataset("cifar10dvs", tmp_path, T=2)
    assert ds.input_shape == (2, 128, 128) and ds.num_classes == 10
    assert ds.x_train.shape[0] == 20 and ds.x_test.shape[0] == 10  # i = 150, 999 train; i = 3 test
    assert ds.y_train.tolist() == [c for c in range(10) for _ in range(2)] and ds.y_test.tolist() == list(range(10))
    horse = ds.x_test[7].numpy()  # label 7: ON at (7, 3) at t = 0, OFF at (8, 2) at t = 100
    assert horse[0, 1, 3, 7] == 1 and horse[1, 0, 2, 8] == 1 and horse.sum() == 2
    ds4 = load_dataset("cifar10dvs", tmp_path, T=2, downsample=4)
    assert ds4.input_shape == (2, 32, 32) and ds4.x_test[7, 0, 1, 0, 1] == 1


def test_cifar10dvs_needs_every_class(tmp_path):
    _cifar10dvs_tree(tmp_path, False)
    shutil.rmtree(tmp_path / "truck")
    with pytest.raises(DataError, match=r"no truck/ folder or truck.zip"):
        load_dataset("cifar10dvs", tmp_path, T=2)


# ---------------------------------------------------------------- DVS128 Gesture (AEDAT 3.1)

def test_aedat31_polarity_packets_overflow_validity_and_other_types():
    body1 = polarity_event(0, 0, 1, 5) + polarity_event(127, 3, 0, 7) + polarity_event(9, 9, 1, 8, valid=0)
    special = struct.pack("<Ii", 1, 6)  # a special event packet (type 0): skipped
    body2 = polarity_event(4, 127, 1, 2)
    raw = (AEDAT31_HEADER + aedat31_packet(1, body1, 3) + aedat31_packet(0, special, 1)
           + aedat31_packet(1, body2, 1, overflow=1))
    ev = read_aedat31(raw, "u.aedat")
    assert len(ev) == 3
    assert ev.x.tolist() == [0, 127, 4] and ev.y.tolist() == [0, 3, 127] and ev.p.tolist() == [1, 0, 1]
    assert ev.t.tolist() == [5, 7, 2**31 + 2]


def test_gesture_labels_csv():
    rows = read_gesture_labels("class,startTime_usec,endTime_usec\n1,80048239,85092709\n11,180675853,187389051\n",
                               "l.csv")
    assert rows.tolist() == [[0, 80048239, 85092709], [10, 180675853, 187389051]]


def _gesture_tree(root: Path) -> None:
    d = root / "DvsGesture"
    d.mkdir()
    (d / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_led.aedat\n\n")
    (d / "trials_to_test.txt").write_text("user24_lab.aedat\n")
    recordings = {
        "user01_fluorescent": ([(1, 1, 1, 100), (2, 2, 0, 150), (3, 3, 1, 199), (4, 4, 1, 200), (5, 5, 0, 400)],
                               "class,startTime_usec,endTime_usec\n1,100,200\n5,200,500\n"),
        "user02_led": ([(6, 6, 1, 10), (7, 7, 1, 20)], "class,startTime_usec,endTime_usec\n11,0,30\n"),
        "user24_lab": ([(8, 9, 0, 0), (10, 11, 1, 50)], "class,startTime_usec,endTime_usec\n3,0,100\n"),
    }
    for stem, (evs, csv) in recordings.items():
        body = b"".join(polarity_event(*e) for e in evs)
        (d / f"{stem}.aedat").write_bytes(AEDAT31_HEADER + aedat31_packet(1, body, len(evs)))
        (d / f"{stem}_labels.csv").write_text(csv)


def test_dvsgesture_samples_are_the_labelled_windows(tmp_path):
    _gesture_tree(tmp_path)
    ds = load_dataset("dvsgesture", tmp_path, T=2)
    assert ds.num_classes == 11 and ds.input_shape == (2, 128, 128)
    assert ds.y_train.tolist() == [0, 4, 10] and ds.y_test.tolist() == [2]
    first = ds.x_train[0].numpy()  # events at t = 100, 150, 199 (t = 200 belongs to the next gesture)
    assert first[0, 1, 1, 1] == 1 and first[1, 0, 2, 2] == 1 and first[1, 1, 3, 3] == 1 and first.sum() == 3
    second = ds.x_train[1].numpy()
    assert second[0, 1, 4, 4] == 1 and second[1, 0, 5, 5] == 1 and second.sum() == 2
    assert load_dataset("dvsgesture", tmp_path / "DvsGesture", T=2).x_test.sum() == 2  # the folder itself


# ---------------------------------------------------------------- SHD (HDF5)

SHD_TIMES = [[0.0, 0.5, 0.7, 1.39, 1.5], [0.1, 0.1]]
SHD_UNITS = [[0, 699, 3, 10, 11], [5, 5]]


def test_shd_file_reads_back_and_bins():
    buf = io.BytesIO()
    shd_h5(buf, SHD_TIMES, SHD_UNITS, [19, 0])
    times, units, labels = read_shd(buf, "shd_train.h5")
    assert labels.tolist() == [19, 0] and [u.tolist() for u in units] == SHD_UNITS
    assert np.allclose(times[0], np.float16(SHD_TIMES[0]))
    frames = bin_spikes(times[0], units[0], 7)  # bins of 0.2 s: 0 → 0, 0.5 → 2, 0.7 → 3, 1.39 → 6, 1.5 dropped
    assert frames.shape == (7, 700) and frames.sum() == 4
    assert frames[0, 0] == frames[2, 699] == frames[3, 3] == frames[6, 10] == 1


@pytest.mark.parametrize("packing", ["h5", "h5.gz", "h5.zip"])
def test_shd_dataset_as_published(tmp_path, packing):
    for split, labels in (("train", [19, 0]), ("test", [4, 4])):
        buf = io.BytesIO()
        shd_h5(buf, SHD_TIMES, SHD_UNITS, labels)
        name = f"shd_{split}.h5"
        if packing == "h5":
            (tmp_path / name).write_bytes(buf.getvalue())
        elif packing == "h5.gz":
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(buf.getvalue()))
        else:
            with zipfile.ZipFile(tmp_path / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(name, buf.getvalue())
    ds = load_dataset("shd", tmp_path, T=7)
    assert ds.num_classes == 20 and ds.input_shape == (700,) and ds.x_train.shape == (2, 7, 700)
    assert ds.y_train.tolist() == [19, 0] and ds.y_test.tolist() == [4, 4]
    assert ds.x_train[1, 0, 5] == 1 and ds.x_train[1].sum() == 1 and ds.x_train[0].sum() == 4


def test_bin_events_windows_by_hand():
    frames = bin_events(np.array([0, 3, 3]), np.array([1, 2, 2]), np.array([0, 1, 1]), np.array([0, 50, 100]), 2,
                        (4, 3))
    assert frames.shape == (2, 2, 3, 4) and frames[0, 0, 1, 0] == 1 and frames[1, 1, 2, 3] == 1 and frames.sum() == 2


# ---------------------------------------------------------------- hostile files: one line each

def _hostile_nmnist(root: Path, raw: bytes | None) -> None:
    _nmnist_tree(root, False)
    target = root / "Train" / "3" / "00001.bin"
    target.unlink()
    if raw is None:  # a folder where the sample was: not a sample file, so digit 3 has none left
        target.mkdir()
        (root / "Train" / "3" / "00009.bin").write_bytes(b"\x00")
    else:
        target.write_bytes(raw)


@pytest.mark.parametrize("raw,message", [
    (b"", "empty"),
    (nmnist_bin([(1, 1, 1, 1)])[:-2], r"truncated N-MNIST .bin file \(3 bytes"),
    (nmnist_bin([(34, 1, 1, 1)]), r"an event at x = 34 lies outside the 34×34 sensor"),
    (bytes(range(250, 255)), r"an event at x = 250 lies outside"),
])
def test_a_bad_nmnist_file_is_named(tmp_path, raw, message):
    _hostile_nmnist(tmp_path, raw)
    with pytest.raises(DataError, match=f"{tmp_path / 'Train' / '3' / '00001.bin'}: {message}"):
        load_dataset("nmnist", tmp_path, T=2)


def test_a_bad_nmnist_layout_is_named(tmp_path):
    with pytest.raises(DataError, match=r"no Train/ folder or Train.zip \(expected Train/ and Test/"):
        load_dataset("nmnist", tmp_path, T=2)
    (tmp_path / "Train.zip").write_bytes(b"PK\x03\x04 but not a zip")
    with pytest.raises(DataError, match=r"Train.zip: not a zip archive"):
        load_dataset("nmnist", tmp_path, T=2)
    (tmp_path / "Train.zip").unlink()
    (tmp_path / "Train" / "x").mkdir(parents=True)
    (tmp_path / "Train" / "x" / "1.bin").write_bytes(nmnist_bin([(1, 1, 1, 1)]))
    with pytest.raises(DataError, match="sits in the folder of its digit 0..9, not 'x'"):
        load_dataset("nmnist", tmp_path, T=2)
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("nmnist", tmp_path / "Train" / "x" / "1.bin", T=2)


def test_a_zip_member_declaring_more_than_the_limit_is_refused_unread(tmp_path, monkeypatch):
    _nmnist_tree(tmp_path, True)
    monkeypatch.setattr(events, "MAX_FILE_BYTES", 4)
    with pytest.raises(DataError, match=r"Train.zip!Train/0/00002.bin: declares 15 bytes, more than the 4"):
        load_dataset("nmnist", tmp_path, T=2)


def test_a_corrupt_zip_member_is_named(tmp_path):
    _nmnist_tree(tmp_path, True)
    raw = bytearray((tmp_path / "Test.zip").read_bytes())
    at = raw.index(b"Test/7/00003.bin") + len("Test/7/00003.bin")
    raw[at:at + 4] = b"\xff\xff\xff\xff"  # the deflated data
    (tmp_path / "Test.zip").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"Test.zip!Test/7/00003.bin: unreadable"):
        load_dataset("nmnist", tmp_path, T=2)


@pytest.mark.parametrize("raw,message", [
    (b"", r"not an AEDAT 2.0 file \(it starts b''"),
    (b"#!AER-DAT3.1\r\n", "not an AEDAT 2.0 file"),
    (AEDAT2_HEADER + bytes(12), r"truncated AEDAT 2.0 data \(12 bytes"),
    (b"#!AER-DAT2.0 and no end of line", "truncated AEDAT header"),
    (aedat2([(0x00410000, 1)]), r"address 0x00410000 is not a DVS128 pixel address"),
    (np.random.default_rng(0).bytes(4096), "not an AEDAT 2.0 file"),
])
def test_a_bad_aedat2_file_is_named(tmp_path, raw, message):
    _cifar10dvs_tree(tmp_path, False)
    (tmp_path / "cat" / "cifar10_cat_150.aedat").write_bytes(raw)
    with pytest.raises(DataError, match=f"cifar10_cat_150.aedat: {message}"):
        load_dataset("cifar10dvs", tmp_path, T=2)


def test_a_misnamed_cifar10dvs_file_is_named(tmp_path):
    _cifar10dvs_tree(tmp_path, False)
    (tmp_path / "cat" / "cat_7.aedat").write_bytes(aedat2([]))
    with pytest.raises(DataError, match="cat_7.aedat: a CIFAR10-DVS sample of class 'cat' is named"):
        load_dataset("cifar10dvs", tmp_path, T=2)


AT = len(AEDAT31_HEADER)


@pytest.mark.parametrize("raw,message", [
    (AEDAT31_HEADER + aedat31_packet(1, b"", 10**9), f"truncated: the packet at byte {AT} declares 1000000000 events"),
    (AEDAT31_HEADER + bytes(20), f"truncated AEDAT 3.1 packet header at byte {AT}"),
    (AEDAT31_HEADER + aedat31_packet(1, polarity_event(1, 1, 1, 1), 1, overflow=-1),
     "packet at byte .* time overflow -1: not an AEDAT 3.1 packet header"),
    (AEDAT31_HEADER + aedat31_packet(-32767, bytes(8), 1), r"packet at byte .* is compressed \(event type 1\)"),
    (AEDAT31_HEADER + aedat31_packet(1, bytes(12), 1, size=12), "polarity packet at byte .* has 12-byte events"),
    (AEDAT31_HEADER + aedat31_packet(1, polarity_event(128, 0, 1, 1), 1), ".*x = 128 lies outside the 128×128"),
    (AEDAT31_HEADER + aedat31_packet(1, polarity_event(1, 1, 1, -5), 1), r".*has a negative time \(-5\)"),
    (AEDAT2_HEADER, "not an AEDAT 3.1 file"),
    (b"", "not an AEDAT 3.1 file"),
])
def test_a_bad_aedat31_file_is_named(tmp_path, raw, message):
    _gesture_tree(tmp_path)
    (tmp_path / "DvsGesture" / "user02_led.aedat").write_bytes(raw)
    with pytest.raises(DataError, match=f"user02_led.aedat: {message}"):
        load_dataset("dvsgesture", tmp_path, T=2)


@pytest.mark.parametrize("name,text,message", [
    ("user02_led_labels.csv", "class,startTime_usec,endTime_usec\n12,0,30\n", "class 12 must be 1..11"),
    ("user02_led_labels.csv", "class,startTime_usec,endTime_usec\n1,0\n", "line 2 is not 'class,startTime_usec"),
    ("user02_led_labels.csv", "", "no gesture rows"),
    ("trials_to_test.txt", "../../etc/passwd\n", "each line names a recording"),
    ("trials_to_test.txt", "user99_led.aedat\n", r"user99_led_labels.csv: unreadable \(FileNotFoundError"),
])
def test_a_bad_gesture_index_or_label_file_is_named(tmp_path, name, text, message):
    _gesture_tree(tmp_path)
    (tmp_path / "DvsGesture" / name).write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset("dvsgesture", tmp_path, T=2)


def test_gesture_needs_the_extracted_folder(tmp_path):
    (tmp_path / "DvsGesture.tar.gz").write_bytes(gzip.compress(b"a tar"))
    with pytest.raises(DataError, match="no trials_to_train.txt here or in DvsGesture/.*extract the published"):
        load_dataset("dvsgesture", tmp_path, T=2)


def _shd_files(root: Path, override: dict | None = None) -> None:
    shd_h5(root / "shd_train.h5", SHD_TIMES, SHD_UNITS, [1, 2], override)
    shd_h5(root / "shd_test.h5", SHD_TIMES, SHD_UNITS, [3, 4])


@pytest.mark.parametrize("override,message", [
    ({"labels": None}, "no dataset labels"),
    ({"spikes/units": None}, "no dataset spikes/units"),
    ({"labels": np.array([1, 20], np.uint16)}, "labels 1..20 outside the 20 classes"),
    ({"labels": np.array([1.0, 2.0])}, "labels must be integers, got float64"),
    ({"labels": np.array([1, 2, 3], np.uint16)}, r"labels \(3,\), spikes/times \(2,\)"),
    ({"spikes/times": np.zeros(2)}, "spikes/times must hold variable-length floats, got float64"),
])
def test_a_bad_shd_file_is_named(tmp_path, override, message):
    _shd_files(tmp_path, override)
    with pytest.raises(DataError, match=f"shd_train.h5: {message}"):
        load_dataset("shd", tmp_path, T=4)


@pytest.mark.parametrize("times,units,message", [
    ([[0.1, 0.2], [0.1]], [[1], [2]], "sample 0 has 2 spike times but 1 units"),
    ([[0.1], [float("nan")]], [[1], [2]], "sample 1 has negative, NaN or infinite spike times"),
    ([[0.1], [0.2]], [[700], [2]], "sample 0 has unit 700, beyond the 700 channels"),
])
def test_bad_shd_samples_are_named(tmp_path, times, units, message):
    shd_h5(tmp_path / "shd_train.h5", times, units, [1, 2])
    shd_h5(tmp_path / "shd_test.h5", SHD_TIMES, SHD_UNITS, [3, 4])
    with pytest.raises(DataError, match=message):
        load_dataset("shd", tmp_path, T=4)


def test_a_directory_where_the_shd_file_should_be_is_named(tmp_path):
    _shd_files(tmp_path)
    (tmp_path / "shd_test.h5").unlink()
    (tmp_path / "shd_test.h5").mkdir()
    with pytest.raises(DataError, match=r"shd_test.h5: not a readable SHD HDF5 file \(IsADirectoryError"):
        load_dataset("shd", tmp_path, T=4)


def test_shd_declaring_a_huge_dataset_is_refused_before_reading(tmp_path):
    with h5py.File(tmp_path / "shd_train.h5", "w") as f:  # declared, never written: the file stays small
        f.create_dataset("spikes/times", shape=(10**9,), dtype=h5py.vlen_dtype(np.float16))
        f.create_dataset("spikes/units", shape=(10**9,), dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", shape=(10**9,), dtype=np.uint16)
    assert (tmp_path / "shd_train.h5").stat().st_size < 10**5
    with pytest.raises(DataError, match="must be one length of at most 10000000 samples"):
        load_dataset("shd", tmp_path, T=4)


@pytest.mark.parametrize("content,message", [
    (b"", "not a readable SHD HDF5 file"),
    (np.random.default_rng(2).bytes(4096), "not a readable SHD HDF5 file"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "not a readable SHD HDF5 file"),
])
def test_a_shd_file_that_is_not_hdf5_is_named(tmp_path, content, message):
    _shd_files(tmp_path)
    (tmp_path / "shd_train.h5").write_bytes(content)
    with pytest.raises(DataError, match=f"shd_train.h5: {message}"):
        load_dataset("shd", tmp_path, T=4)
    (tmp_path / "shd_train.h5").unlink()
    (tmp_path / "shd_train.h5.gz").write_bytes(content[:50])
    with pytest.raises(DataError, match="shd_train.h5.gz: (unreadable|not a readable SHD)"):
        load_dataset("shd", tmp_path, T=4)


def test_frames_too_large_for_the_machine_are_refused_in_one_line(tmp_path, monkeypatch):
    _shd_files(tmp_path)
    monkeypatch.setattr(events.os, "sysconf", lambda name: 1024 if name == "SC_PAGE_SIZE" else 1)
    with pytest.raises(DataError, match=r"2 samples binned to \(4, 700\) need 0.0 GiB, more than this machine's"):
        load_dataset("shd", tmp_path, T=4)


def _a_file(root: Path) -> Path:
    (root / "f").write_bytes(b"x")
    return root / "f"


HOSTILE_DIRS = {"missing": lambda root: root / "nope", "a file": _a_file, "empty dir": lambda root: root}


@pytest.mark.parametrize("dataset", ["nmnist", "shd", "dvsgesture", "cifar10dvs"])
@pytest.mark.parametrize("where", list(HOSTILE_DIRS))
def test_snn_train_refuses_a_hostile_data_dir_in_one_line(tmp_path, capsys, dataset, where):
    data = HOSTILE_DIRS[where](tmp_path)
    rc = cli.train(["--dataset", dataset, "--data-dir", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                    "--quiet", "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("snn-train: error: "), err
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("dataset,build", [("nmnist", _hostile_nmnist), ("dvsgesture", None)])
def test_snn_train_refuses_a_hostile_file_in_one_line(tmp_path, capsys, dataset, build):
    junk = [b"", np.random.default_rng(3).bytes(999), None]
    for i, raw in enumerate(junk):
        root = tmp_path / str(i)
        root.mkdir()
        if build is not None:
            build(root, raw)
        else:
            _gesture_tree(root)
            target = root / "DvsGesture" / "user24_lab.aedat"
            target.unlink()
            target.mkdir() if raw is None else target.write_bytes(raw)
        rc = cli.train(["--dataset", dataset, "--data-dir", str(root), "--out", str(root / "run"), "--quiet"])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert rc == 2 and len(err) == 1 and err[0].startswith("snn-train: error: "), err


# ---------------------------------------------------------------- the example configs, run as a user would

def _config(name: str, tmp_path: Path, data: Path, train: dict, validate: dict) -> Path:
    """configs/NAME.toml as shipped, with data_dir pointed at ``data`` and the [train]/[validate] values given."""
    import tomllib

    cfg = tomllib.loads((ROOT / "configs" / f"{name}.toml").read_text(encoding="utf-8"))
    assert cfg["train"]["dataset"] == name and Path(cfg["train"]["data_dir"]).parts[0] == "data"
    cfg["train"].update(data_dir=data.as_posix(), **train)
    cfg["validate"].update(validate)
    out = tmp_path / f"{name}.toml"
    out.write_text("".join(f"[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items())
                           for table, body in cfg.items()), encoding="utf-8")
    return out


def _many_nmnist(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        with zipfile.ZipFile(root / f"{split}.zip", "w") as z:
            for i in range(n):
                digit = i % 10
                evs = [(int(x), int(y), int(p), int(t)) for x, y, p, t in
                       zip(rng.integers(0, 34, 40), rng.integers(0, 34, 40), rng.integers(0, 2, 40),
                           np.sort(rng.integers(0, 300_000, 40)), strict=True)]
                z.writestr(f"{split}/{digit}/{i:05d}.bin", nmnist_bin(evs))


def _many_shd(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        times = [np.sort(rng.random(60) * 1.3) for _ in range(n)]
        units = [rng.integers(0, 700, 60) for _ in range(n)]
        shd_h5(root / f"shd_{split}.h5", times, units, [i % 20 for i in range(n)])


@pytest.mark.slow
@pytest.mark.parametrize("name,make", [("nmnist", _many_nmnist), ("shd", _many_shd)])
def test_the_example_config_runs_end_to_end_on_data_in_the_published_format(tmp_path, name, make):
    from snnchip.workflows.pipeline import run_pipeline

    data = tmp_path / "data"
    data.mkdir()
    make(data, 30)
    cfg = _config(name, tmp_path, data, {"epochs": 1, "T": 3, "hidden": "16"},
                  {"samples": 30, "lava_samples": 0, "min_accuracy": 0.0, "min_rate": 0.0, "min_agreement": 0.5})
    report = run_pipeline(cfg, tmp_path / "run", log=lambda line: None)
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "report.json").is_file()
    assert report["samples"] == 30 and report["T"] == 3
    assert report["gates"]["decision_agreement"]["value"] >= 0.5


@pytest.mark.parametrize("name", ["nmnist", "shd"])
def test_the_example_config_without_its_data_refuses_in_one_line(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # the config's data_dir (data/...) is relative: here it does not exist
    rc = cli.pipeline([str(ROOT / "configs" / f"{name}.toml"), "--out", str(tmp_path / "run")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("snn-pipeline: error: data/"), err


@pytest.mark.parametrize("value", ["-1", "0", "3", "nan", "abc", "", "1.5", "99999999999999999999"])
def test_a_hostile_downsample_gets_one_line(tmp_path, capsys, value):
    _nmnist_tree(tmp_path, False)
    rc = cli.train(["--dataset", "nmnist", "--data-dir", str(tmp_path), "--downsample", value, "--out",
                    str(tmp_path / "run"), "--quiet", "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("snn-train: error: ") and "downsample" in err[0], err
