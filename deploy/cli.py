"""``snn-run DEPLOY_DIR --backend lava --lava-cfg fixed_pt|floating_pt``: the Lava network on an input file."""

from __future__ import annotations

import argparse

import numpy as np

from snnchip.deploy.network import build


def run_graph(args: argparse.Namespace) -> int:
    """Run ``args.graph`` (a deploy directory) in Lava on ``args.input``; write ``args.out`` (.npz)."""
    x = np.load(args.input)
    net = build(args.graph)
    res = net.run(x, cfg=args.lava_cfg, states=False)
    res.save(args.out)
    rates = ", ".join(f"{k} {v.mean():.3f}" for k, v in res.spikes.items())
    print(f"lava ({args.lava_cfg}): input {x.shape} -> output {res.output.shape}, latency {net.dep.depth} steps "
          f"removed; spike rates: {rates}; wrote {args.out}")
    return 0
