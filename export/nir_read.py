"""Reading ``.nir`` files safely: every failure of a corrupt, truncated, hostile or foreign file is a named error.

``read_graph`` checks the HDF5 tree (node types and required fields) before ``nir.read`` builds objects, reads
every dataset in a forked child first (on some corrupt heaps HDF5 loops forever in C code), then checks the graph
(``nir_graph.check_graph``). Raises ``NIRFormatError`` / ``UnsupportedNodeError`` naming the file and node, never a
raw traceback.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any

import nir

from snnchip.errors import NIRFormatError, UnsupportedNodeError
from snnchip.filekind import FileKind, describe, identify

from .nir_graph import KNOWN_TYPES, check_graph

# How each node type stores its defining fields in the HDF5 file (besides "type" and "metadata").
_STORED_AS = {"Input": ("shape",), "Output": ("shape",), "NIRGraph": ("nodes", "edges"), "Flatten": ()}
PARSE_TIMEOUT_S = 2.0


def _required_fields(type_name: str) -> tuple[str, ...]:
    if type_name in _STORED_AS:
        return _STORED_AS[type_name]
    return tuple(f.name for f in dataclasses.fields(KNOWN_TYPES[type_name])
                 if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _prescan(group: Any, where: str, path: Path) -> None:
    """Check node types and required fields in the HDF5 tree before ``nir.read`` builds objects."""
    if "type" not in group:
        raise NIRFormatError(f"{path}: node {where!r} has no 'type' field; the file is not a NIR graph "
                             "or is truncated")
    raw = group["type"][()]
    type_name = raw.decode("utf8", "replace") if isinstance(raw, bytes) else str(raw)
    if type_name not in KNOWN_TYPES:
        raise UnsupportedNodeError(f"{path}: node {where!r} has type {type_name!r}, which snnchip cannot read; "
                                   f"supported: {', '.join(sorted(KNOWN_TYPES))}")
    missing = [f for f in _required_fields(type_name) if f not in group]
    if missing:
        raise NIRFormatError(f"{path}: node {where!r} ({type_name}) lacks field(s) {missing}; "
                             "re-export the graph with a complete NIR writer")
    if type_name == "NIRGraph":
        for name in group["nodes"]:
            _prescan(group["nodes"][name], f"{where}.{name}" if where else name, path)


def _parse_in_child(path: Path) -> None:
    """Read every dataset in a forked child first: on some corrupt heaps HDF5 loops forever in C code.

    A child that hangs past ``PARSE_TIMEOUT_S`` (+1 s per 10 MB) is killed and the file reported corrupt;
    ordinary read errors are left to the in-process read, which names them.
    """
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # child: touch every dataset, report only success or failure
        code = 1
        try:
            import h5py

            def touch(_name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    obj[()]

            with h5py.File(path, "r") as f:
                f.visititems(touch)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + PARSE_TIMEOUT_S + path.stat().st_size / 1e7
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise NIRFormatError(f"{path}: the HDF5 library hangs reading this file; it is corrupt, re-export it")
        time.sleep(0.002)


def read_graph(path: str | os.PathLike) -> nir.NIRGraph:
    """Read a ``.nir`` file with ``nir.read`` and check it; every failure is a named snnchip error."""
    import h5py

    path = Path(path)
    kind = identify(path)
    if kind == FileKind.MISSING:
        raise NIRFormatError(f"{path}: no such NIR file")
    if kind != FileKind.HDF5:
        inside = next((f for f in ("model.nir", "model.pt") if (path / f).is_file()), None) \
            if kind == FileKind.DIRECTORY else None
        raise NIRFormatError(f"{describe(path, kind)}; expected a NIR graph (an HDF5 .nir file)"
                             + (f": pass {path / inside}" if inside else ""))
    _parse_in_child(path)
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NIRFormatError(f"{path}: HDF5 file without a NIR 'node' group; not a NIR graph")
            _prescan(f["node"], "", path)
        graph = nir.read(path, type_check=False)
    except (NIRFormatError, UnsupportedNodeError):
        raise
    except Exception as exc:  # h5py, nir's asserts, numpy: any of them means a corrupt file
        raise NIRFormatError(f"{path}: corrupt or truncated NIR file ({type(exc).__name__}: {exc}); "
                             "re-export it") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFormatError(f"{path}: the top-level node is a {type(graph).__name__}, not a NIRGraph")
    check_graph(graph, where=str(path))
    return graph
