"""Options declared once, on the config dataclass a library function takes.

A config dataclass's fields carry their command-line help in ``dataclasses.field`` metadata (``option``); the
command-line face generates each command's options from them (``snnchip.cli.options``) and ``snn-pipeline``
reads its TOML tables into the same dataclasses (``from_mapping``), so a config key, a flag and a keyword
argument always mean the same thing.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snnchip.errors import SpecError

_MISSING = dataclasses.MISSING


PATH_ROLES = ("input", "output")


def option(default: Any = _MISSING, *, help: str, choices: tuple[Any, ...] | None = None,
           flag: tuple[str, ...] | str | None = None, positional: bool = False, metavar: str | None = None,
           path: str | None = None, default_factory: Any = _MISSING, per_node: bool = False) -> Any:
    """A dataclass field with its command-line help; ``flag`` overrides the ``--field-name`` spelling.
    ``per_node``: an override option that also takes ``NODE=VALUE`` and may be repeated.

    ``path``: "input" for a file or directory that is read, "output" for one that is written whole (a file,
    or a directory replaced as a unit); ``check_paths`` refuses an output that would overwrite an input.
    """
    if path not in (None, *PATH_ROLES):
        raise ValueError(f"path role {path!r}; valid: {PATH_ROLES}")
    meta = {"help": help, "choices": choices, "flag": (flag,) if isinstance(flag, str) else flag,
            "positional": positional, "metavar": metavar, "path": path, "per_node": per_node}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_type(cls: type, name: str) -> tuple[type, bool]:
    """The base type of field ``name`` of ``cls`` and whether it may be None (``int | None`` → (int, True))."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def coerce(cls: type, name: str, value: Any, where: str) -> Any:
    """``value`` as the type of field ``name`` (from a TOML table or a string), or a ``SpecError`` naming it."""
    base, optional = field_type(cls, name)
    if value is None and optional:
        return None
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    try:
        if base is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            out = value
        elif base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError("expected an integer")
            out = int(value)
        elif base is float:
            if isinstance(value, bool):
                raise TypeError("expected a number")
            out = float(value)
        elif base is str:
            out = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        else:
            out = value
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where}: {name} = {value!r} is not valid ({exc})") from None
    choices = f.metadata.get("choices")
    if choices and out not in choices:
        raise SpecError(f"{where}: {name} = {out!r}; valid: {', '.join(map(str, choices))}")
    if isinstance(out, float) and not math.isfinite(out):
        raise SpecError(f"{where}: {name} = {out!r} must be a finite number")
    return out


def from_mapping(cls: type, mapping: Mapping[str, Any], where: str, **fixed: Any) -> Any:
    """``cls(**mapping)`` with keys spelled ``batch_size`` or ``batch-size``, values coerced and checked;
    an unknown key raises ``SpecError`` listing the valid ones. ``fixed`` values override the mapping."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    aliases = {flag.lstrip("-").replace("-", "_"): f.name for f in dataclasses.fields(cls)
               for flag in (f.metadata.get("flag") or ())}  # a key may be spelled as its flag: from = "snntorch"
    values = {}
    for key, value in mapping.items():
        name = key.replace("-", "_")
        name = aliases.get(name, name)
        if name not in names:
            raise SpecError(f"{where}: unknown key {key!r}; valid: {', '.join(sorted(names - set(fixed)))}")
        values[name] = coerce(cls, name, value, where)
    try:
        return cls(**{**values, **fixed})
    except TypeError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _paths(configs: tuple[Any, ...], role: str) -> list[tuple[str, Path]]:
    out = []
    for cfg in configs:
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if f.metadata.get("path") == role and value not in (None, ""):
                flag = (f.metadata.get("flag") or ("--" + f.name.replace("_", "-"),))[-1]
                out.append((f.name.upper() if f.metadata.get("positional") else flag, Path(value).resolve()))
    return out


RUN_FILES = ("model.pt", "metrics.json", "curves.png", ".snnchip.lock")  # what snn-train keeps in its run directory
DEPLOY_FILES = ("model.nir", "params.npz", "manifest.json")  # a deploy directory's files (export.loihi.FILES)
DEPLOY_MANIFEST = DEPLOY_FILES[-1]  # what marks a deploy directory


def _is_deploy_dir(path: Path) -> bool:
    return (path / DEPLOY_MANIFEST).is_file()


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES[1:])


def check_paths(*configs: Any) -> None:
    """Refuse (``SpecError``) outputs of ``configs`` that would destroy or edit an input, before anything is read or
    written: an output that is an input, or a directory an input lies in (it is replaced as a whole); a path inside
    an input deploy directory; one of the files of any deploy directory (``DEPLOY_FILES``, sealed by its manifest);
    a training product (``RUN_FILES``) of the run directory an input file lies in."""
    inputs = _paths(configs, "input")
    for out_flag, out in _paths(configs, "output"):
        for in_flag, inp in inputs:
            if inp == out or out in inp.parents:
                what = "is" if inp == out else "contains"
                raise SpecError(f"{out_flag} {out} {what} the input {in_flag} {inp}; writing it would destroy the "
                                f"input: choose another output path")
            if inp in out.parents and _is_deploy_dir(inp):
                raise SpecError(f"{out_flag} {out} lies inside the input deploy directory {in_flag} {inp}; writing "
                                "there would destroy the input or edit the deployment: choose a path outside it")
            if out.parent == inp.parent and out.name in RUN_FILES and _is_run_dir(inp.parent):
                raise SpecError(f"{out_flag} {out} would replace the {out.name} of the run directory the input "
                                f"{in_flag} {inp} belongs to (written by snn-train); writing it would destroy the "
                                "input's run: choose another output path")
        if out.name in DEPLOY_FILES and _is_deploy_dir(out.parent):
            raise SpecError(f"{out_flag} {out} is a file of the deploy directory {out.parent}, which its manifest "
                            "seals; writing it would destroy that deployment: choose another output path")
