"""The single place that imports Lava (lava-nc 0.10.0) — and makes it importable on Python 3.11.

Why a patch is needed: lava-nc 0.10.0 declares Python <3.11. Its ``lava/magma/compiler/var_model.py``
declares dataclass fields whose default is an instance of another (non-frozen) dataclass, e.g.
``x: ByteEncoder = ByteEncoder()``. Python 3.11 rejects every unhashable default as mutable
(``ValueError: mutable default <class '...ByteEncoder'> for field x is not allowed``), where 3.10
only rejected list/dict/set. The patch below wraps ``dataclasses._get_field`` so that, **for classes
defined in ``lava.*`` modules only**, such a default becomes ``field(default_factory=...)`` that
returns a deep copy of the original default. Each instance then gets its own copy (3.10 shared one
instance between all objects; Lava never mutates these defaults in the simulator, so behaviour is
unchanged). Nothing outside ``lava.*`` is affected.

Lava also calls ``multiprocessing.set_start_method('fork')`` at import, which raises if a start method
was already chosen; the import below clears a previously chosen method first (Lava needs ``fork``).

Every other module reaches Lava through ``import_lava()`` (or ``lava_modules()``), lazily.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import multiprocessing
import sys
import warnings
from types import ModuleType
from typing import Any

from snnchip.errors import LavaUnavailableError

_PATCHED = False
_ORIGINAL_GET_FIELD = dataclasses._get_field  # type: ignore[attr-defined]


def _is_mutable_dataclass_default(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__hash__ is None


def _lava_safe_get_field(cls: type, a_name: str, a_type: Any, *args: Any) -> Any:
    """``dataclasses._get_field`` that turns lava's dataclass-instance defaults into default factories."""
    default = cls.__dict__.get(a_name, dataclasses.MISSING)
    if cls.__module__.startswith("lava.") and _is_mutable_dataclass_default(default):
        setattr(cls, a_name, dataclasses.field(default_factory=functools.partial(copy.deepcopy, default)))
    return _ORIGINAL_GET_FIELD(cls, a_name, a_type, *args)


def apply_dataclass_patch() -> None:
    """Install the Python 3.11 dataclass patch (idempotent). No-op on Python < 3.11."""
    global _PATCHED
    if _PATCHED or sys.version_info < (3, 11):
        _PATCHED = True
        return
    dataclasses._get_field = _lava_safe_get_field  # type: ignore[attr-defined]
    _PATCHED = True


def _prepare_start_method() -> None:
    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    current = multiprocessing.get_start_method(allow_none=True)
    if current is not None:
        if current != "fork":
            warnings.warn(f"Lava needs the 'fork' start method; replacing {current!r}", stacklevel=3)
        multiprocessing.set_start_method(None, force=True)


@functools.lru_cache(maxsize=1)
def import_lava() -> ModuleType:
    """Import lava (patched for Python 3.11) and its runtime pieces; return the ``lava`` package.

    Raises ``LavaUnavailableError`` naming the fix when lava-nc is missing or cannot be imported.
    """
    apply_dataclass_patch()
    _prepare_start_method()
    try:
        lava = importlib.import_module("lava")
        for name in (
            "lava.magma.compiler.var_model",
            "lava.magma.runtime.message_infrastructure.multiprocessing",
            "lava.magma.core.run_configs",
            "lava.magma.core.run_conditions",
        ):
            importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise LavaUnavailableError(
            f"lava-nc is not installed ({exc}); run `make setup` or "
            "`pip install --ignore-requires-python --no-deps lava-nc==0.10.0`"
        ) from None
    except Exception as exc:
        raise LavaUnavailableError(f"lava-nc could not be imported on Python {sys.version.split()[0]}: "
                                   f"{type(exc).__name__}: {exc}") from exc
    return lava


def lava_module(name: str) -> ModuleType:
    """Import ``lava.<name>`` (e.g. ``proc.lif.process``) after ``import_lava()``."""
    import_lava()
    try:
        return importlib.import_module(f"lava.{name}")
    except ModuleNotFoundError as exc:
        raise LavaUnavailableError(f"lava module lava.{name} not found: {exc}") from None


NETX_INSTALL = "pip install --no-deps --ignore-requires-python lava-dl==0.6.0"  # what `make setup` runs
_OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"


@functools.lru_cache(maxsize=1)
def import_netx() -> ModuleType:
    """Import lava-dl's ``lava.lib.dl.netx`` (and ``slayer``) on our stack; return ``netx``.

    lava-dl 0.6.0 declares Python < 3.11 and torch < 2.4, so it is installed with ``--no-deps`` and
    runs on lava-nc through ``import_lava()``. ``slayer/__init__`` imports ``object_detection``,
    the only part of lava-dl that needs torchvision (about 3 GB) and which netx never uses: an empty
    placeholder module stands in for it, unless the real one is importable (torchvision installed).
    Raises ``LavaUnavailableError`` with the install command when lava-dl is missing.
    """
    import_lava()
    try:
        if importlib.util.find_spec("torchvision") is None and _OBJECT_DETECTION not in sys.modules:
            placeholder = ModuleType(_OBJECT_DETECTION, "placeholder: netx needs no object detection (torchvision)")
            placeholder.__path__ = []
            sys.modules[_OBJECT_DETECTION] = placeholder
        return importlib.import_module("lava.lib.dl.netx")
    except ModuleNotFoundError as exc:
        raise LavaUnavailableError(f"lava-dl is not installed ({exc}); the netx target needs it: run `make setup` "
                                   f"or `{NETX_INSTALL}`") from None
    except Exception as exc:
        raise LavaUnavailableError(f"lava-dl's netx could not be imported: {type(exc).__name__}: {exc}") from exc


def lava_available() -> bool:
    try:
        import_lava()
    except LavaUnavailableError:
        return False
    return True


def versions() -> dict[str, str]:
    """Installed versions of the packages a deployment depends on."""
    out = {"python": sys.version.split()[0]}
    for dist in ("snnchip", "lava-nc", "nir", "torch", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
