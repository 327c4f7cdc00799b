"""What a file is, from its first bytes: every input is identified before it is parsed, so that a wrong file is
named for what it is ("a PNG image", "a directory", "a zip archive") instead of failing deep inside a parser."""

from __future__ import annotations

import os
from pathlib import Path

from snnchip.errors import DataError

MAGIC = (  # (leading bytes, kind)
    (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x93NUMPY", "npy"),
    (b"\x89PNG\r\n\x1a\n", "image"), (b"\xff\xd8\xff", "image"), (b"GIF8", "image"), (b"BM", "image"),
    (b"\x80\x02", "pickle"), (b"\x80\x03", "pickle"), (b"\x80\x04", "pickle"), (b"\x80\x05", "pickle"),
    (b"\x1f\x8b", "gzip"),
)
SUFFIXES = {"hdf5": (".nir", ".h5", ".hdf5"), "zip": (".npz", ".pt", ".zip"), "npy": (".npy",),
            "image": (".png", ".jpg", ".jpeg", ".gif", ".bmp"), "pickle": (".pkl", ".pickle"), "gzip": (".gz",),
            "json": (".json",), "toml": (".toml",), "text": (".txt", ".md", ".csv", ".toml")}
DESCRIPTION = {
    "missing": "does not exist", "directory": "is a directory", "empty": "is an empty file",
    "hdf5": "is an HDF5 file (a NIR graph is one)", "zip": "is a zip archive (an .npz or a model.pt)",
    "npy": "is a .npy array", "image": "is an image", "pickle": "is a Python pickle", "gzip": "is gzip-compressed",
    "json": "is a JSON document", "toml": "is a text file", "text": "is a text file", "unknown": "is binary "
    "data of no known kind",
}


def identify(path: str | os.PathLike) -> str:
    """The kind of ``path``: missing, directory, empty, hdf5, zip, npy, image, pickle, gzip, json, toml, text or
    unknown (by content; the name's suffix is never trusted)."""
    p = Path(path)
    if not p.exists():
        return "missing"
    if p.is_dir():
        return "directory"
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "unknown"
    if not head:
        return "empty"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")) and not stripped.startswith("[["):
        first = stripped.split("\n", 1)[0].strip()
        return "toml" if first.startswith("[") and first.endswith("]") and "=" not in first else "json"
    return "toml" if "=" in text or stripped.startswith("#") else "text"


def expect(path: str | os.PathLike, what: str, kinds: tuple[str, ...]) -> str:
    """``identify(path)`` when it is one of ``kinds``; else a ``DataError`` naming what the file is and ``what`` was
    expected."""
    kind = identify(path)
    if kind not in kinds:
        raise DataError(f"{describe(path, kind)}; expected {what}")
    return kind


def describe(path: str | os.PathLike, kind: str) -> str:
    """"PATH is a KIND", with "despite its .SUFFIX suffix" where the name says otherwise."""
    suffix = Path(path).suffix.lower()
    hint = f" despite its {suffix} suffix" if suffix and suffix not in SUFFIXES.get(kind, (suffix,)) else ""
    return f"{path} {DESCRIPTION[kind]}{hint}"
