"""Datasets, read from local files only (no downloads), as float tensors scaled to [0, 1].

- ``digits``: scikit-learn's embedded 8×8 digits, a fixed stratified 75/25 split (random_state 0),
  pixel/16; shape (1, 8, 8), or (64,) with ``flat=True``.
- ``digits-rows``: the digits 0-7 presented row by row, T = 8 steps × 8 channels of spike counts 0..15
  (``temporal``; Xylo's offline temporal task: 8 classes for its 8 output neurons).
- ``mnist`` / ``fashion-mnist``: the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``) in ``data_dir``; (1, 28, 28).
- ``cifar10``: the python-pickle batches ``data_batch_1..5`` and ``test_batch`` in ``data_dir`` (or its
  ``cifar-10-batches-py``); (3, 32, 32).
- event datasets (``events.py``: the readers of the published formats and the binning): ``nmnist``,
  ``dvsgesture``, ``cifar10dvs`` (frames x [N, T, 2, H, W], optionally pooled ``downsample`` × ``downsample``),
  ``shd`` (x [N, T, 700]) and our own ``dvs`` (``.npz`` files); time-major per sample (``temporal``).
The input encoding (direct / rate) is applied per step by ``encoding.time_major``.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snnchip.errors import DataError
from snnchip.spec import NetworkSpec

from .events import CLASSES, check_downsample, downsample_for, load_events
from .events import FORMATS as EVENT_FORMATS

DATASETS = ("digits", "digits-rows", "mnist", "fashion-mnist", "cifar10", "nmnist", "shd", "dvsgesture", "cifar10dvs",
            "dvs")


@dataclass
class Dataset:
    """Train and test tensors; ``x_*`` is [N, *input_shape], or [N, T, *input_shape] when ``temporal``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    num_classes: int
    temporal: bool = False

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, flat: bool = False, T: int = 6,
                 spec: NetworkSpec | None = None, downsample: int = 1) -> Dataset:
    """Load ``name`` (see module doc); ``flat`` flattens static images to vectors (MLPs); ``downsample`` K pools
    an event camera's pixels K×K.

    With ``spec``, ``flat``, ``T`` and ``downsample`` follow the spec and the samples must have its ``input_shape``.
    """
    if spec is not None:
        ds = load_dataset(name, data_dir, flat=len(spec.input_shape) == 1, T=spec.T,
                          downsample=downsample_for(name, spec.input_shape))
        if ds.input_shape != spec.input_shape:
            raise DataError(f"dataset {name!r} has samples of shape {ds.input_shape}, but the model expects "
                            f"{spec.input_shape}")
        return ds
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    check_downsample(name, downsample)
    if name == "digits":
        ds = _digits()
    elif name == "digits-rows":
        ds = _digit_rows()
    else:
        if data_dir is None:
            raise DataError(f"dataset {name!r} needs --data-dir with its local files ({_FORMATS[name]})")
        root = Path(data_dir).expanduser()
        if name in EVENT_FORMATS:
            (xtr, ytr), (xte, yte) = load_events(name, root, T, downsample)
            num_classes = CLASSES.get(name) or int(max(ytr.max(), yte.max())) + 1
            ds = _dataset(xtr, ytr, xte, yte, num_classes, temporal=True)
        else:
            ds = _cifar10(root) if name == "cifar10" else _idx_pair(root)
    if flat and not ds.temporal:
        ds.x_train, ds.x_test = ds.x_train.flatten(1), ds.x_test.flatten(1)
        ds.input_shape = (int(np.prod(ds.input_shape)),)
    return ds


_FORMATS = {
    "mnist": "IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
             "t10k-labels-idx1-ubyte, raw or .gz",
    "fashion-mnist": "IDX files as for mnist",
    "cifar10": "python-pickle batches data_batch_1..5 and test_batch",
    **EVENT_FORMATS,
}


def _dataset(xtr, ytr, xte, yte, num_classes: int, temporal: bool = False) -> Dataset:
    xtr, xte = torch.as_tensor(xtr, dtype=torch.float32), torch.as_tensor(xte, dtype=torch.float32)
    shape = tuple(xtr.shape[2:] if temporal else xtr.shape[1:])
    return Dataset(xtr, torch.as_tensor(ytr, dtype=torch.long), xte, torch.as_tensor(yte, dtype=torch.long),
                   shape, num_classes, temporal)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, stratify=d.target, random_state=0)
    return _dataset(xtr, ytr, xte, yte, 10)


def _open(path: Path, fmt: str) -> tuple[bytes, Path]:
    """The bytes of ``path`` or ``path.gz`` (decompressed) and which of the two it was."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            try:
                raw = candidate.read_bytes()
                return (gzip.decompress(raw) if candidate.suffix == ".gz" else raw), candidate
            except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                raise DataError(f"{candidate}: unreadable ({type(exc).__name__}: {exc}; expected {fmt})") from None
    raise DataError(f"{path}[.gz]: no such file (expected {fmt})")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or .gz): magic 0x0000 08 ndim (uint8 data), big-endian int32 dims, then the data."""
    raw, path = _open(path, "an IDX file of unsigned bytes")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()}, expected 000008nn)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    dims = np.frombuffer(raw, ">i4", count=ndim, offset=4)
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if dims.min(initial=1) < 1 or data.size != int(np.prod(dims.astype(np.int64))):
        raise DataError(f"{path}: truncated or empty IDX file ({data.size} bytes of data for shape {tuple(dims)})")
    return data.reshape(dims)


def _digit_rows() -> Dataset:
    """The 8×8 digits 0-7 (Xylo has 8 output neurons) presented row by row: T = 8 steps of 8 channels, each pixel
    (0-16) as a spike count round(p·15/16) in 0..15 (a Xylo input channel takes at most 15 spikes per step); a
    stratified 75/25 split (random_state 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits(n_class=8)
    x = np.round(d.images * 15.0 / 16.0).astype(np.float32)  # [N, 8 rows = steps, 8 columns = channels]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, stratify=d.target, random_state=0)
    return _dataset(xtr, ytr, xte, yte, 8, temporal=True)


def _idx_pair(root: Path) -> Dataset:
    split = {}
    for part in ("train", "t10k"):
        images = read_idx(root / f"{part}-images-idx3-ubyte")
        labels = read_idx(root / f"{part}-labels-idx1-ubyte")
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataError(f"{root}: {part} images {images.shape} and labels {labels.shape} do not match")
        if labels.max() > 9:
            raise DataError(f"{root / f'{part}-labels-idx1-ubyte'}[.gz]: label {int(labels.max())} outside the 10 "
                            "classes 0..9")
        split[part] = (images[:, None].astype(np.float32) / 255.0, labels.astype(np.int64))
    return _dataset(*split["train"], *split["t10k"], 10)


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 python batch holds: dicts, lists, bytes, ints and uint8 NumPy arrays.

    A pickle names the callables it wants called (``find_class``); any callable other than NumPy's array and
    dtype reconstructors (and ``_codecs.encode``, which protocol 2 writers use for bytes) is refused before it
    is looked up, so a hostile file never runs code.
    """

    ALLOWED = {
        ("_codecs", "encode"): codecs.encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        **{(mod, "_reconstruct"): np.core.multiarray._reconstruct
           for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
        **{(mod, "_frombuffer"): np.core.numeric._frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR-10 batch holds only plain data "
                                         "and uint8 arrays (nothing in the file was run)") from None


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: images [N, 3, 32, 32] uint8 and labels [N], through ``_CifarUnpickler``."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a CIFAR-10 python-pickle batch, {_FORMATS['cifar10']})")
    try:
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
        data, labels = d[b"data"], np.asarray(d[b"labels"])
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"b'data' must be a uint8 array [N, 3072], got {getattr(data, 'dtype', type(data))} "
                             f"{getattr(data, 'shape', '')}")
        if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu" or labels.min(initial=0) < 0 \
                or labels.max(initial=0) > 9:
            raise ValueError(f"b'labels' must be {data.shape[0]} integers in 0..9")
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError, AttributeError, IndexError,
            MemoryError, OSError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar10(root: Path) -> Dataset:
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"

    train = [read_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = read_cifar_batch(root / "test_batch")
    xtr, ytr = np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
    return _dataset(xtr / np.float32(255), ytr, xte / np.float32(255), yte, 10)
