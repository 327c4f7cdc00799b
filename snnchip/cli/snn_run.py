"""``snn-run GRAPH_OR_DEPLOY_DIR --input x.npy --out y.npz --backend reference|chip|lava``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from snnchip.arrayfile import check_time_axis, load_input
from snnchip.atomic import check_destination
from snnchip.cli.command import base_parser, run_command
from snnchip.cli.options import add_interpretation, add_options, config, interpretation_overrides
from snnchip.errors import NIRFormatError, SpecError
from snnchip.options import check_paths, option
from snnchip.spec import Interpretation

EXAMPLES = """\
  snn-run model.nir --input x.npy --out y.npz
  snn-run deploy/mlp --input x.npy --out y.npz --backend chip
  snn-run deploy/mlp --input x.npy --out y.npz --backend lava --lava-cfg fixed_pt
  snn-run deploy/mlp --input x.npy --out y.npz --backend chip --clip-inputs
"""
BACKENDS = ("reference", "chip", "lava")


@dataclass
class RunConfig:
    graph: str = option(help="a .nir file (reference) or a deploy directory from snn-export --target loihi "
                        "(chip, lava)", positional=True, path="input")
    input: str = option(help=".npy array of shape [T, batch, *features]", path="input")
    out: str = option(help=".npz with 'output' [T, batch, n_out] and 'spikes/<layer>'", path="output")
    backend: str = option("reference", help="NIR reference executor (float), bit-exact chip simulator, or Lava",
                          choices=BACKENDS)
    lava_cfg: str = option("fixed_pt", help="Lava run configuration", choices=("fixed_pt", "floating_pt"))
    clip_inputs: bool = option(False, help="chip, lava: clip inputs outside the deployment's recorded range to it "
                               "(the same on both backends; the count is reported) instead of refusing them")
    allow_edited: bool = option(False, help="chip, lava: run a deploy directory whose files or values no longer "
                                "match its manifest's seal (refused without it; the run then says what was edited)")
    quiet: bool = option(False, help="no progress bar (there is none either when stderr is not a terminal)")


def parser() -> argparse.ArgumentParser:
    p = base_parser("snn-run", "Run a NIR graph or a deploy directory on inputs [T, batch, *features]; write "
                    "outputs and spikes.", EXAMPLES)
    add_options(p, RunConfig)
    add_interpretation(p, "interpretation of foreign NIR graphs (reference backend)")
    return p


def _rates(spikes: dict[str, np.ndarray]) -> list[str]:
    lines = []
    for layer, s in spikes.items():
        s = np.asarray(s)
        graded = bool(((s != 0) & (s != 1)).any())  # EM-PF: float spikes, so report the mean value, not a rate
        lines.append(f"  spikes/{layer:<20} {tuple(s.shape)}  {'mean (graded)' if graded else 'rate'} "
                     f"{float(s.mean()):.4f}")
    return lines


def _reference(cfg: RunConfig, x: np.ndarray, given: dict) -> list[str]:
    from snnchip.atomic import atomic_path
    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.export.nir_export import model_graph
    from snnchip.export.nir_meta import graph_meta, recorded_interpretation

    if os.path.isdir(cfg.graph):
        raise NIRFormatError(f"{cfg.graph} is a directory; the reference backend runs a .nir (or model.pt) file; "
                             "use --backend chip or lava for a deploy directory")
    graph = model_graph(cfg.graph)
    check_time_axis(x, graph_meta(graph).T, cfg.input)
    result = NIRExecutor(graph, Interpretation.overriding(recorded_interpretation(graph), **given)).run(x)
    arrays = {"output": result.output.numpy(), **{f"spikes/{k}": v.numpy() for k, v in result.spikes.items()}}
    with atomic_path(cfg.out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    if result.interpretation is None:
        semantics = "semantics: metadata['snnchip'] v1 for every neuron (exact; interpretation options ignored)"
    else:
        semantics = f"semantics: foreign nodes read with {result.interpretation.describe()}"
    shown = min(x.shape[1], 8)
    return [*_rates({k: v.numpy() for k, v in result.spikes.items()}),
            f"argmax of output[T-1] (first {shown}): {result.output[-1][:shown].argmax(-1).tolist()}", semantics]


def _progress(cfg: RunConfig) -> bool:
    return not cfg.quiet and sys.stderr.isatty()


def _deployment(cfg: RunConfig) -> Any:
    from snnchip.export.loihi import load_deploy

    return load_deploy(cfg.graph, allow_edited=cfg.allow_edited)


def _contract(dep: Any, res: Any) -> list[str]:
    """What the run's report says of the deployment's seal and of the inputs it clipped."""
    lines = [f"deployment: {dep.seal.describe()}" + (" (run as asked by --allow-edited)" if dep.seal.edited else "")]
    if res.meta.get("clipped_inputs"):
        lines.append(f"inputs: {res.meta['clipped_inputs']} value(s) outside |x| ≤ {dep.qnet.input_range:g} clipped "
                     "to it (--clip-inputs)")
    return lines


def _chip(cfg: RunConfig, x: np.ndarray, given: dict) -> list[str]:
    from snnchip.hw_sim.chip import ChipSimulator, saturation_lines

    dep = _deployment(cfg)
    check_time_axis(x, dep.T, cfg.input)
    res = ChipSimulator(dep).run(x, states=False, clip=cfg.clip_inputs, progress=_progress(cfg))
    res.save(cfg.out)
    updates = {q.name: (dep.T + dep.depth) * x.shape[1] * q.size for q in dep.qnet.stages}
    return ["backend: bit-exact fixed-point chip simulator", *_contract(dep, res), *_rates(res.spikes),
            *saturation_lines(res.meta["saturation"], updates)]


def _lava(cfg: RunConfig, x: np.ndarray, given: dict) -> list[str]:
    from snnchip.deploy import build

    dep = _deployment(cfg)
    check_time_axis(x, dep.T, cfg.input)
    res = build(dep).run(x, cfg=cfg.lava_cfg, states=False, clip=cfg.clip_inputs, progress=_progress(cfg))
    res.save(cfg.out)
    return [f"backend: Lava Loihi2SimCfg({cfg.lava_cfg}), latency {dep.depth} steps removed", *_contract(dep, res),
            *_rates(res.spikes)]


def handle(args: argparse.Namespace) -> int:
    cfg = config(RunConfig, args)
    check_paths(cfg)
    check_destination(cfg.out)
    if cfg.backend == "reference" and (cfg.clip_inputs or cfg.allow_edited):
        raise SpecError("--clip-inputs and --allow-edited apply to a deploy directory (--backend chip or lava)")
    x = load_input(cfg.input)
    lines = {"reference": _reference, "chip": _chip, "lava": _lava}[cfg.backend](
        cfg, x, interpretation_overrides(args))
    print(f"ran {cfg.graph} on {cfg.input}: T={x.shape[0]}, batch={x.shape[1]}, features={tuple(x.shape[2:])}; "
          f"wrote {cfg.out}")
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
