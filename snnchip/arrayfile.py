"""Reading ``.npy`` and ``.npz`` files without trusting them: never unpickled, sizes checked before allocation.

NumPy allocates the array a ``.npy`` header declares before it reads the data, so a truncated file whose header
claims 238 GiB fails with a ``MemoryError`` instead of saying it is truncated. ``load_npy`` and ``load_npz`` read
every header first and compare what it declares (shape × itemsize) with the bytes the file (or the zip member)
holds; an object dtype (a pickle) is refused by name. Every problem is a ``ValueError`` whose message says what
is wrong; callers prefix the file and turn it into their own error.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import IO

import numpy as np

from snnchip.errors import DataError

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_header(fh: IO[bytes], size: int) -> None:
    """Read the header of the ``.npy`` stream ``fh`` of ``size`` bytes; refuse pickles and truncated data."""
    version = np.lib.format.read_magic(fh)
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
    try:
        shape, _, dtype = reader(fh)
    except Exception as exc:  # an untrusted header: any failure to parse it means it is malformed
        raise ValueError(f"its header is malformed ({type(exc).__name__})") from None
    if dtype.hasobject:
        raise ValueError("the array holds Python objects (a pickle), which are never loaded")
    declared = math.prod(shape) * dtype.itemsize
    held = size - fh.tell()
    if held < declared:
        raise ValueError(f"truncated: its header declares a {dtype} array of shape {tuple(shape)} ({declared} bytes) "
                         f"but the file holds {max(held, 0)} bytes of data")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.npy`` file, its header checked first (see the module doc)."""
    with open(path, "rb") as fh:
        if fh.read(4) == b"PK\x03\x04":
            raise ValueError("a zip archive (an .npz or a model.pt), not a .npy array")
        fh.seek(0)
        _check_header(fh, os.fstat(fh.fileno()).st_size)
        fh.seek(0)
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except MemoryError:
            raise ValueError("the array it declares does not fit in memory") from None


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` archive by name (without the ``.npy`` suffix), each member's header checked first."""
    with zipfile.ZipFile(path) as zf:
        out = {}
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            try:
                with zf.open(info) as fh:
                    _check_header(fh, info.file_size)
                with zf.open(info) as fh:
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
            except MemoryError:
                raise ValueError(f"member {name!r}: the array it declares does not fit in memory") from None
            except ValueError as exc:
                raise ValueError(f"member {name!r}: {exc}") from None
        return out


def load_input(path: str | os.PathLike) -> np.ndarray:
    """A network input: a ``.npy`` array [T, batch, *features] of finite real numbers (identified by content
    first), or a ``DataError`` saying what is wrong."""
    from snnchip.filekind import FileKind, expect

    expect(path, "a .npy array [T, batch, *features] (np.save)", (FileKind.NPY,))
    try:
        x = load_npy(path)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read a .npy array ({exc or type(exc).__name__})") from None
    if np.iscomplexobj(x):
        raise DataError(f"{path}: holds complex numbers ({x.dtype}); the network takes real inputs: pass the real "
                        "part (x.real) or the magnitude (abs(x))")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise DataError(f"{path}: expected a numeric array, got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise DataError(f"{path}: expected shape [T ≥ 1, batch ≥ 1, *features], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: input contains NaN or infinite values")
    return x


def check_time_axis(x: np.ndarray, T: int | None, where: str) -> None:
    """Refuse an input whose first axis is not the model's ``T`` while its second is: batch-first data read as
    time-major would run ``batch`` steps on ``T`` samples."""
    if T is not None and x.shape[0] != T and x.shape[1] == T:
        raise DataError(f"{where}: shape {tuple(x.shape)} has the model's T = {T} on axis 1, not axis 0; inputs are "
                        f"time-major [T, batch, *features]: pass np.swapaxes(x, 0, 1) (shape "
                        f"{(x.shape[1], x.shape[0], *x.shape[2:])})")


def load_labels(path: str | os.PathLike, n: int) -> np.ndarray:
    """Integer class labels [n] from a ``.npy`` file (identified by content first), or a ``DataError``."""
    from snnchip.filekind import FileKind, expect

    expect(path, "a .npy array of integer class labels [batch]", (FileKind.NPY,))
    try:
        y = load_npy(path)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read a .npy array ({exc or type(exc).__name__})") from None
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: labels must have shape [batch] = [{n}] (one per input sample), got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y))
                                                   and np.all(y == np.round(y)))) or np.any(y < 0):
        raise DataError(f"{path}: labels must be non-negative integer classes, got dtype {y.dtype} with values "
                        f"{np.unique(y)[:5].tolist()}...")
    return y.astype(np.int64)
