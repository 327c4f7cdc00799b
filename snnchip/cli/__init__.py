"""The command-line face: ``snn-train``, ``snn-export``, ``snn-run``, ``snn-validate``, ``snn-bench``,
``snn-pipeline``.

The top layer: each command (one module here) builds its options from the config dataclass of the library
function it calls (``snnchip.cli.options``), calls the stages and workflows, and prints a one-screen summary.
No stage imports this package. Errors: one line and exit 2 (``snnchip.cli.command``).
"""

from __future__ import annotations

from collections.abc import Sequence


def train(argv: Sequence[str] | None = None) -> int:
    from snnchip.cli.snn_train import main

    return main(argv)


def export(argv: Sequence[str] | None = None) -> int:
    from snnchip.cli.snn_export import main

    return main(argv)


def run(argv: Sequence[str] | None = None) -> int:
    from snnchip.cli.snn_run import main

    return main(argv)


def validate(argv: Sequence[str] | None = None) -> int:
    from snnchip.cli.snn_validate import main

    return main(argv)


def bench(argv: Sequence[str] | None = None) -> int:
    from snnchip.cli.snn_bench import main

    return main(argv)


def pipeline(argv: Sequence[str] | None = None) -> int:
    from snnchip.cli.snn_pipeline import main

    return main(argv)
