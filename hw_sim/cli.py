"""``snn-run DEPLOY_DIR --backend chip``: the bit-exact simulator on an input file."""

from __future__ import annotations

import argparse

import numpy as np

from snnchip.hw_sim.chip import ChipSimulator


def run_graph(args: argparse.Namespace) -> int:
    """Simulate ``args.graph`` (a deploy directory) on ``args.input``; write ``args.out`` (.npz)."""
    x = np.load(args.input)
    res = ChipSimulator(args.graph).run(x, states=False)
    res.save(args.out)
    rates = ", ".join(f"{k} {v.mean():.3f}" for k, v in res.spikes.items())
    print(f"chip (bit-exact fixed point): input {x.shape} -> output {res.output.shape}; spike rates: {rates}; "
          f"wrote {args.out}")
    return 0


def validate(args: argparse.Namespace) -> int:
    """``snn-validate``: the equivalence ladder (see ``snnchip.hw_sim.validate``)."""
    from snnchip.hw_sim.validate import cli_validate

    return cli_validate(args)
