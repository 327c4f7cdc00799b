"""Dataset loaders on tiny files written here in each real format."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from snnchip.errors import DataError
from snnchip.train.data import load_dataset


def _idx(path, arr, gz):
    raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def test_digits_split_and_shapes():
    ds = load_dataset("digits")
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert load_dataset("digits", flat=True).input_shape == (64,)
    assert np.array_equal(ds.y_test.numpy(), load_dataset("digits").y_test.numpy())


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    rng = np.random.default_rng(0)
    for part, n in (("train", 5), ("t10k", 3)):
        _idx(tmp_path / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        _idx(tmp_path / f"{part}-labels-idx1-ubyte", rng.integers(0, 10, n), gz)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.y_test.shape == (3,) and ds.x_train.max() <= 1


def test_mnist_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*IDX"):
        load_dataset("mnist", tmp_path)


CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.mark.parametrize("protocol", [2, 5])  # 2: the layout of the published (Python 2 cPickle) files
def test_cifar10_batches(tmp_path, protocol):
    rng = np.random.default_rng(0)
    for name in CIFAR_BATCHES:
        d = {b"batch_label": b"training batch 1 of 5", b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
             b"labels": [1, 7], b"filenames": [b"a.png", b"b.png"]}
        (tmp_path / name).write_bytes(pickle.dumps(d, protocol=protocol))
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", tmp_path)


def test_dvs_npz_binning(tmp_path):
    for part in ("train", "test"):
        (tmp_path / part).mkdir()
        for i in range(2):
            np.savez(tmp_path / part / f"{i}.npz", x=np.array([0, 3, 3]), y=np.array([1, 2, 2]), p=np.array([0, 1, 1]),
                     t=np.array([0, 50, 100]), label=np.array(i), sensor_size=np.array([4, 3]))
    ds = load_dataset("dvs", tmp_path, T=2)
    assert ds.temporal and ds.x_train.shape == (2, 2, 2, 3, 4) and ds.num_classes == 2
    frames = ds.x_train[0].numpy()  # t = 0, 50, 100 in two windows; the last two events share a pixel
    assert frames[0, 0, 1, 0] == 1 and frames[1, 1, 2, 3] == 1 and frames.sum() == 2


def test_unknown_dataset_and_missing_dir():
    with pytest.raises(DataError, match="valid: digits"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("mnist")


def test_load_dataset_follows_a_spec():
    from snnchip.spec import NeuronSpec
    from snnchip.train import model_spec

    ds = load_dataset("digits", spec=model_spec("mlp", (64,), 10, 3, NeuronSpec()))
    assert ds.input_shape == (64,) and ds.test[0].shape[1:] == (64,)
    with pytest.raises(DataError, match="expects"):
        load_dataset("digits", spec=model_spec("mlp", (32,), 10, 3, NeuronSpec()))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "inside"])
def test_cifar10_batch_carrying_code_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    payload = _Payload(marker)
    d = payload if where == "top" else {b"data": payload, b"labels": [1]}
    for name in CIFAR_BATCHES:
        (tmp_path / name).write_bytes(pickle.dumps(d, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR-10 python batch.*refused global (posix|os).system"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


def test_cifar10_batch_with_wrong_contents_is_named(tmp_path):
    for name in CIFAR_BATCHES:
        d = {b"data": np.zeros((2, 3072), np.float64), b"labels": [1, 7]}
        (tmp_path / name).write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match="uint8"):
        load_dataset("cifar10", tmp_path)


def _mnist(root, gz=False):
    rng = np.random.default_rng(0)
    for part, n in (("train", 5), ("t10k", 3)):
        _idx(root / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        _idx(root / f"{part}-labels-idx1-ubyte", rng.integers(0, 10, n), gz)


@pytest.mark.parametrize("name,damage,message", [
    ("train-images-idx3-ubyte.gz", lambda raw: raw[: len(raw) // 2], "train-images-idx3-ubyte.gz: unreadable"),
    ("train-images-idx3-ubyte.gz", lambda raw: b"\x1f\x8b" + bytes(40), "train-images-idx3-ubyte.gz: unreadable"),
    ("t10k-labels-idx1-ubyte.gz", lambda raw: gzip.compress(gzip.decompress(raw)[:6]),
     r"t10k-labels-idx1-ubyte.gz: truncated IDX header \(6 bytes for 1 dimensions\)"),
    ("t10k-labels-idx1-ubyte.gz", lambda raw: gzip.compress(gzip.decompress(raw)[:8]),
     r"t10k-labels-idx1-ubyte.gz: truncated or empty IDX file \(0 bytes of data for shape \(3,\)\)"),
    ("train-labels-idx1-ubyte.gz", lambda raw: gzip.compress(gzip.decompress(raw)[:-1] + b"\xff"),
     r"train-labels-idx1-ubyte\[.gz\]: label 255 outside the 10 classes 0..9"),
])
def test_a_damaged_idx_file_is_named(tmp_path, name, damage, message):
    _mnist(tmp_path, gz=True)
    (tmp_path / name).write_bytes(damage((tmp_path / name).read_bytes()))
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", tmp_path)


def _events(path, **arrays):
    good = {"x": np.array([0, 5, 9]), "y": np.array([1, 2, 7]), "p": np.array([0, 1, 1]),
            "t": np.array([0.0, 1.0, 2.0]), "label": np.array(1), "sensor_size": np.array([10, 8])}
    np.savez(path, **{**good, **arrays})


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.array([0, 5, object()], dtype=object)}, r"not an event .npz \(ValueError: Object arrays cannot be"),
    ({"x": np.array([0, 5, 10])}, "x values must be in 0..9, found 0..10"),
    ({"y": np.array([-1, 2, 7])}, r"y values must be in 0..7, found -1..7"),
    ({"p": np.array([0, 2, 1])}, "p values must be in 0..1"),
    ({"t": np.array([0.0, np.nan, 2.0])}, "t holds NaN"),
    ({"t": np.array([0.0, 1.0])}, r"x, y, p, t must be 1-D arrays of one length, got shapes \{'x': \(3,\)"),
    ({"p": np.array([0.0, 1.0, 1.0])}, "p must hold integers, got float64"),
    ({"label": np.array(-3)}, "label must be one integer in 0..9999, got -3"),
    ({"sensor_size": np.array([10**6, 8])}, r"sensor_size must be two integers \(W, H\) in 1..4096"),
])
def test_a_bad_event_file_is_named(tmp_path, arrays, message):
    for part in ("train", "test"):
        (tmp_path / part).mkdir()
        _events(tmp_path / part / "a.npz")
    _events(tmp_path / "train" / "a.npz", **arrays)
    with pytest.raises(DataError, match=f"{tmp_path / 'train' / 'a.npz'}: {message}"):
        load_dataset("dvs", tmp_path, T=2)
    np.save(tmp_path / "x.npy", np.zeros(3))
    for junk in (b"PK\x03\x04 not a zip at all", (tmp_path / "x.npy").read_bytes()):
        (tmp_path / "train" / "a.npz").write_bytes(junk)
        with pytest.raises(DataError, match=f"{tmp_path / 'train' / 'a.npz'}: not an event .npz"):
            load_dataset("dvs", tmp_path, T=2)
