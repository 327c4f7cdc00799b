"""The command-line face: ``snn-train``, ``snn-export``, ``snn-run``, ``snn-validate``, ``snn-bench``,
``snn-pipeline``.

The top layer: each command (one module here) builds its options from the config dataclass of the library
function it calls (``snnchip.cli.options``), calls the stages and workflows, and prints a one-screen summary.
No stage imports this package. Errors: one line and exit 2 (``snnchip.cli.command``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence


def _command(module: str) -> Callable[[Sequence[str] | None], int]:
    """The entry point of ``snnchip.cli.<module>``, imported when it is called (so ``import snnchip.cli`` stays
    light)."""
    def main(argv: Sequence[str] | None = None) -> int:
        return importlib.import_module(f"snnchip.cli.{module}").main(argv)

    main.__name__ = main.__qualname__ = module.removeprefix("snn_")
    return main


train = _command("snn_train")
export = _command("snn_export")
run = _command("snn_run")
validate = _command("snn_validate")
bench = _command("snn_bench")
pipeline = _command("snn_pipeline")
