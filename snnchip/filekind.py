"""What a file is, from its first bytes: every input is identified before it is parsed, so that a wrong file is
named for what it is ("a PNG image", "a directory", "a zip archive") instead of failing deep inside a parser."""

from __future__ import annotations

import os
from pathlib import Path

from snnchip.errors import DataError
from snnchip.spec import Named


class FileKind(Named):
    """What ``identify`` finds a path to be (members equal their names as strings)."""

    MISSING = "missing"
    DIRECTORY = "directory"
    EMPTY = "empty"
    HDF5 = "hdf5"
    ZIP = "zip"
    NPY = "npy"
    IMAGE = "image"
    PICKLE = "pickle"
    GZIP = "gzip"
    JSON = "json"
    TOML = "toml"
    TEXT = "text"
    UNKNOWN = "unknown"


_K = FileKind  # the tables below name kinds by it
MAGIC = (  # (leading bytes, kind)
    (b"\x89HDF\r\n\x1a\n", _K.HDF5), (b"PK\x03\x04", _K.ZIP), (b"PK\x05\x06", _K.ZIP), (b"\x93NUMPY", _K.NPY),
    (b"\x89PNG\r\n\x1a\n", _K.IMAGE), (b"\xff\xd8\xff", _K.IMAGE), (b"GIF8", _K.IMAGE), (b"BM", _K.IMAGE),
    (b"\x80\x02", _K.PICKLE), (b"\x80\x03", _K.PICKLE), (b"\x80\x04", _K.PICKLE), (b"\x80\x05", _K.PICKLE),
    (b"\x1f\x8b", _K.GZIP),
)
SUFFIXES = {_K.HDF5: (".nir", ".h5", ".hdf5"), _K.ZIP: (".npz", ".pt", ".zip"), _K.NPY: (".npy",),
            _K.IMAGE: (".png", ".jpg", ".jpeg", ".gif", ".bmp"), _K.PICKLE: (".pkl", ".pickle"), _K.GZIP: (".gz",),
            _K.JSON: (".json",), _K.TOML: (".toml",), _K.TEXT: (".txt", ".md", ".csv", ".toml")}
DESCRIPTION = {
    _K.MISSING: "does not exist", _K.DIRECTORY: "is a directory", _K.EMPTY: "is an empty file",
    _K.HDF5: "is an HDF5 file (a NIR graph is one)", _K.ZIP: "is a zip archive (an .npz or a model.pt)",
    _K.NPY: "is a .npy array", _K.IMAGE: "is an image", _K.PICKLE: "is a Python pickle", _K.GZIP: "is gzip-compressed",
    _K.JSON: "is a JSON document", _K.TOML: "is a text file", _K.TEXT: "is a text file",
    _K.UNKNOWN: "is binary data of no known kind",
}


def identify(path: str | os.PathLike) -> FileKind:
    """The kind of ``path``: missing, directory, empty, hdf5, zip, npy, image, pickle, gzip, json, toml, text or
    unknown (by content; the name's suffix is never trusted)."""
    p = Path(path)
    if not p.exists():
        return _K.MISSING
    if p.is_dir():
        return _K.DIRECTORY
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return _K.UNKNOWN
    if not head:
        return _K.EMPTY
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return _K.UNKNOWN
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and not stripped.startswith("[["):
        first = stripped.split("\n", 1)[0].strip()
        return _K.TOML if first.startswith("[") and first.endswith("]") and "=" not in first else "json"
    return _K.TOML if "=" in text or stripped.startswith("#") else "text"


def expect(path: str | os.PathLike, what: str, kinds: tuple[FileKind, ...]) -> FileKind:
    """``identify(path)`` when it is one of ``kinds``; else a ``DataError`` naming what the file is and ``what`` was
    expected."""
    kind = identify(path)
    if kind not in kinds:
        raise DataError(f"{describe(path, kind)}; expected {what}")
    return kind


def describe(path: str | os.PathLike, kind: FileKind) -> str:
    """"PATH is a KIND", with "despite its .SUFFIX suffix" where the name says otherwise."""
    suffix = Path(path).suffix.lower()
    hint = f" despite its {suffix} suffix" if suffix and suffix not in SUFFIXES.get(kind, (suffix,)) else ""
    return f"{path} {DESCRIPTION[kind]}{hint}"
