"""Command-line options generated from config dataclasses (``snnchip.options.option`` fields).

``add_options(parser, Config)`` adds one option per field: ``--field-name`` (or the field's ``flag``), the
field's type, choices and help, and the default in the help text; a bool field is a switch (``--amp`` for a
False default, the field's ``--no-...`` flag for a True default). ``as_overrides=True`` adds every option
with default None, for options that override recorded values (the interpretation of a foreign graph).
``config(Config, args)`` builds the dataclass back from the parsed namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from snnchip.options import field_type


def _help(f: dataclasses.Field, shown_default: Any) -> str:
    text = f.metadata.get("help", "").replace("%", "%%")
    # bools are switches; and 0 == False, 1.0 == True: compare by type, not by value
    if shown_default is not None and shown_default is not dataclasses.MISSING and shown_default != "" \
            and not isinstance(shown_default, bool):
        text += f" (default: {shown_default})"
    return text


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                exclude: tuple[str, ...] = (), as_overrides: bool = False) -> None:
    """Add an option (or a positional argument) for every field of ``cls`` not in ``exclude``."""
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.init or f.metadata.get("cli") is False:
            continue
        base, _ = field_type(cls, f.name)
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if meta.get("positional"):
            parser.add_argument(f.name, help=_help(f, None), metavar=meta.get("metavar"), choices=meta.get("choices"))
            continue
        flags = meta.get("flag") or ("--" + f.name.replace("_", "-"),)
        kw: dict[str, Any] = {"dest": f.name, "help": _help(f, default)}
        if base is bool and not as_overrides:
            kw["action"] = "store_false" if default is True else "store_true"
        elif as_overrides and meta.get("per_node"):
            choices = f" ({'|'.join(map(str, meta['choices']))})" if meta.get("choices") else ""
            kw.update(action="append", default=None, metavar=f"[NODE=]VALUE{choices}",
                      help=kw["help"] + "; NODE=VALUE sets one node (repeatable)")
        else:
            kw.update(type=base, choices=meta.get("choices"), metavar=meta.get("metavar"))
            if as_overrides:
                kw["default"] = None
            elif default is dataclasses.MISSING:
                kw["required"] = True
            else:
                kw["default"] = default
        parser.add_argument(*flags, **kw)


def config(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """``cls`` from the parsed ``args`` (fields ``args`` lacks keep their defaults); ``fixed`` overrides."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(args, f.name)}
    return cls(**{**values, **fixed})


def overrides(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (those added with ``as_overrides`` and not None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def add_interpretation(parser: argparse.ArgumentParser, title: str) -> None:
    """The ``Interpretation`` options of a foreign graph (each may be given per node) and ``--interpretation``."""
    from snnchip.spec import Interpretation

    group = parser.add_argument_group(title)
    add_options(group, Interpretation, as_overrides=True)
    group.add_argument("--interpretation", metavar="TOML", dest="interpretation_file",
                       help="a TOML file of these settings: from = \"snntorch\", reset = \"zero\", ... and per node "
                       "[nodes.NAME] reset = \"zero_next\" (options given on the command line win)")


def interpretation_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The interpretation settings given: ``--interpretation``'s file first, the command-line options over it."""
    import tomllib

    from snnchip.errors import SpecError
    from snnchip.filekind import FileKind, expect
    from snnchip.options import from_mapping
    from snnchip.spec import Interpretation

    given = overrides(Interpretation, args)
    path = getattr(args, "interpretation_file", None)
    if not path:
        return given
    expect(path, "a TOML interpretation table", (FileKind.TOML, FileKind.TEXT))
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the interpretation TOML ({exc})") from None
    read = from_mapping(Interpretation, table, str(path))
    from_file = {f.name: getattr(read, f.name) for f in dataclasses.fields(Interpretation)
                 if getattr(read, f.name) != f.default and f.name != "nodes"}
    nodes = {**read.nodes}
    for name, settings in (given.pop("nodes", None) or {}).items():
        nodes.setdefault(name, {}).update(settings)
    return {**from_file, **given, **({"nodes": nodes} if nodes else {})}
