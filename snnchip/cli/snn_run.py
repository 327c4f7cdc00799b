"""``snn-run GRAPH_OR_DEPLOY_DIR --input x.npy --out y.npz --backend reference|chip|lava``."""

from __future__ import annotations

import argparse
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from snnchip.cli.command import base_parser, run_command
from snnchip.cli.options import add_options, config, overrides
from snnchip.errors import DataError, NIRFormatError
from snnchip.options import check_paths, option
from snnchip.spec import Interpretation

EXAMPLES = """\
  snn-run model.nir --input x.npy --out y.npz
  snn-run deploy/mlp --input x.npy --out y.npz --backend chip
  snn-run deploy/mlp --input x.npy --out y.npz --backend lava --lava-cfg fixed_pt
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


def parser() -> argparse.ArgumentParser:
    p = base_parser("snn-run", "Run a NIR graph or a deploy directory on inputs [T, batch, *features]; write "
                    "outputs and spikes.", EXAMPLES)
    add_options(p, RunConfig)
    add_options(p.add_argument_group("interpretation of foreign NIR graphs (reference backend)"), Interpretation,
                as_overrides=True)
    return p


def load_input(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` array [T, batch, *features] of finite numbers, or a ``DataError`` saying what is wrong."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read a .npy array ({exc or type(exc).__name__})") from None
    if not isinstance(x, np.ndarray):  # an .npz (zip) archive: np.load opens it lazily
        x.close()
        raise DataError(f"{path}: an .npz archive, not a .npy array")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise DataError(f"{path}: expected a numeric array, got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise DataError(f"{path}: expected shape [T ≥ 1, batch ≥ 1, *features], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: input contains NaN or infinite values")
    return x


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
    from snnchip.export.nir_meta import recorded_interpretation

    if os.path.isdir(cfg.graph):
        raise NIRFormatError(f"{cfg.graph} is a directory; the reference backend runs a .nir (or model.pt) file; "
                             "use --backend chip or lava for a deploy directory")
    graph = model_graph(cfg.graph)
    result = NIRExecutor(graph, Interpretation.overriding(recorded_interpretation(graph), **given)).run(x)
    arrays = {"output": result.output.numpy(), **{f"spikes/{k}": v.numpy() for k, v in result.spikes.items()}}
    with atomic_path(cfg.out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    if result.interpretation is None:
        semantics = "semantics: metadata['snnchip'] v1 for every neuron (exact; interpretation options ignored)"
    else:
        i = result.interpretation
        semantics = f"semantics: foreign nodes read with dt={i.dt}, {i.discretization}, reset={i.reset}, " \
                    f"compare={i.compare}"
    shown = min(x.shape[1], 8)
    return [*_rates({k: v.numpy() for k, v in result.spikes.items()}),
            f"argmax of output[T-1] (first {shown}): {result.output[-1][:shown].argmax(-1).tolist()}", semantics]


def _chip(cfg: RunConfig, x: np.ndarray, given: dict) -> list[str]:
    from snnchip.hw_sim.chip import ChipSimulator

    res = ChipSimulator(cfg.graph).run(x, states=False)
    res.save(cfg.out)
    return ["backend: bit-exact fixed-point chip simulator", *_rates(res.spikes)]


def _lava(cfg: RunConfig, x: np.ndarray, given: dict) -> list[str]:
    from snnchip.deploy import build

    net = build(cfg.graph)
    res = net.run(x, cfg=cfg.lava_cfg, states=False)
    res.save(cfg.out)
    return [f"backend: Lava Loihi2SimCfg({cfg.lava_cfg}), latency {net.dep.depth} steps removed", *_rates(res.spikes)]


def handle(args: argparse.Namespace) -> int:
    cfg = config(RunConfig, args)
    check_paths(cfg)
    x = load_input(cfg.input)
    lines = {"reference": _reference, "chip": _chip, "lava": _lava}[cfg.backend](
        cfg, x, overrides(Interpretation, args))
    print(f"ran {cfg.graph} on {cfg.input}: T={x.shape[0]}, batch={x.shape[1]}, features={tuple(x.shape[2:])}; "
          f"wrote {cfg.out}")
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(parser(), handle, argv)
