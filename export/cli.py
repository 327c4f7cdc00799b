"""``snn-export`` and ``snn-run --backend reference``: dispatch each target to the module that owns it."""

from __future__ import annotations

import argparse
import importlib

TARGETS = {
    "nir": ("snnchip.export.nir_export", "cli_export"),
    "onnx": ("snnchip.export.onnx_export", "cli_export"),
    "loihi": ("snnchip.export.loihi", "cli_export"),
    "netx": ("snnchip.export.netx", "cli_export"),
}


def run(args: argparse.Namespace) -> int:
    """``snn-export MODEL --target T -o OUT``."""
    module, func = TARGETS[args.target]
    return getattr(importlib.import_module(module), func)(args)


def run_graph(args: argparse.Namespace) -> int:
    """``snn-run GRAPH --backend reference``: the NIR reference executor."""
    from snnchip.export.nir_exec import cli_run

    return cli_run(args)
