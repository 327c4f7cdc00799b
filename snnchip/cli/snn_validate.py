"""``snn-validate MODEL.pt|GRAPH.nir|DEPLOY_DIR``: the validation ladder, its table, JSON report and plots."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from snnchip.cli.command import base_parser, run_command
from snnchip.cli.options import add_interpretation, add_options, config, interpretation_overrides
from snnchip.options import check_paths, option

EXAMPLES = """\
  snn-validate runs/mlp/model.pt --dataset digits --json report.json --plots plots/
  snn-validate deploy/mlp --model runs/mlp/model.pt --dataset digits --lava-budget 60 --json r.json
  snn-validate deploy/mlp --dataset digits --samples 200 --lava-samples 5 --json r.json
  snn-validate snntorch.nir --from snntorch --reset zero --input x.npy --labels y.npy --deploy-out certified/
  snn-validate certified/ --input x.npy --labels y.npy
"""


@dataclass
class ValidateOutputs:
    source: str = option(help="a model.pt, a NIR graph (.nir, any writer) or a deploy directory", positional=True,
                         path="input")
    json: str | None = option(None, help="write the report as JSON here", path="output")
    plots: str | None = option(None, help="directory for the plots")
    quiet: bool = option(False, help="no progress bars (there are none either when stderr is not a terminal)")


def parser() -> argparse.ArgumentParser:
    from snnchip.workflows.validate import ValidateConfig

    p = base_parser("snn-validate", "Run the validation ladder: float model = NIR reference; float (a foreign "
                    "graph: its NIR reference) vs bit-exact chip; chip = Lava. Exit 0 when every gate passes, 1 when "
                    "one fails.", EXAMPLES)
    add_options(p, ValidateOutputs)
    add_options(p, ValidateConfig)
    add_interpretation(p, "interpretation of a foreign NIR graph (a deploy directory records its own)")
    return p


def handle(args: argparse.Namespace) -> int:
    from snnchip.atomic import check_destination, write_text_atomic
    from snnchip.workflows.report import print_table, write_plots
    from snnchip.workflows.validate import ValidateConfig, validate

    out, cfg = config(ValidateOutputs, args), config(ValidateConfig, args)
    check_paths(out, cfg)
    for path, directory in ((out.json, False), (out.plots, True)):
        if path:
            check_destination(path, directory)
    report = validate(out.source, cfg, progress=not out.quiet and sys.stderr.isatty(),
                      interpretation=interpretation_overrides(args))
    print_table(report)
    if out.plots:
        for p in write_plots(report, out.plots):
            print(f"plot: {p}")
    if out.json:
        write_text_atomic(out.json, json.dumps({k: v for k, v in report.items() if not k.startswith("_")}, indent=2))
        print(f"report: {out.json}")
    return 0 if report["passed"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
