"""``snn-export MODEL --target nir|loihi|onnx|netx|xylo -o OUT`` (and ``--calibrate`` for Loihi and Xylo)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from snnchip.cli.command import base_parser, run_command
from snnchip.cli.options import add_interpretation, add_options, config, interpretation_overrides
from snnchip.options import check_paths

EXAMPLES = """\
  snn-export runs/mlp/model.pt --target nir -o model.nir
  snn-export runs/mlp/model.pt --target loihi -o deploy/mlp
  snn-export runs/mlp/model.pt --target loihi --calibrate --calibrate-epochs 3 -o deploy/mlp
  snn-export runs/xylo/model.pt --target xylo --calibrate --dataset digits-rows -o deploy-xylo
  snn-export snntorch_graph.nir --target loihi --T 20 --reset zero -o deploy/foreign
  snn-export runs/mlp/model.pt --target onnx -o model.onnx
  snn-export graph.nir --target netx --T 25 -o net.net  (reset to zero, >, no bias; lava-dl netx loads it)
"""


def parser() -> argparse.ArgumentParser:
    from snnchip.workflows.calibrate import CalibrationConfig
    from snnchip.workflows.export import ExportConfig

    p = base_parser("snn-export", "Export a trained model.pt (or a .nir graph) to NIR, a Loihi 2 deploy directory, "
                    "ONNX, netx HDF5 or a Xylo deploy directory.", EXAMPLES)
    add_options(p, ExportConfig)
    add_interpretation(p, "interpretation of foreign NIR graphs (ours carry their semantics; a foreign graph "
                       "re-exported by snnchip keeps the one it records unless overridden)")
    cal = p.add_argument_group("calibration (--target loihi or xylo, model.pt)")
    cal.add_argument("--calibrate", action="store_true", help="fine-tune with the chip's quantized currents in the "
                     "forward pass (straight-through) before exporting; writes DIR/model.calibrated.pt and "
                     "DIR/calibration.json (float and bit-exact chip accuracy before/after)")
    add_options(cal, CalibrationConfig)
    return p


def handle(args: argparse.Namespace) -> int:
    from snnchip.workflows.export import ExportConfig, export

    cfg = config(ExportConfig, args)
    if args.calibrate:
        from snnchip.workflows.calibrate import CalibrationConfig, calibrate_and_export

        cal = config(CalibrationConfig, args)
        check_paths(cfg, cal)
        lines = calibrate_and_export(cfg, cal, log=print)
    else:
        check_paths(cfg)
        lines = export(cfg, interpretation_overrides(args))
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
