"""The peers of ``snn-bench peers`` (SpikingJelly, snnTorch; ``make setup-bench``) at tiny size: every peer iteration
trains on every benchmark net, and the harness measures a peer in its fresh process. Our own methods are covered
without the peer libraries by tests/test_bench.py."""

import importlib.util

import pytest
import torch

from snnchip.bench import adapters, peers

for lib in ("spikingjelly", "snntorch"):
    if importlib.util.find_spec(lib) is None:
        pytest.skip(f"{lib} is not installed (make setup-bench); the peers benchmark needs it", allow_module_level=True)

TINY = {"conv": {"input": [3, 8, 8], "widths": [4, 4, 8], "batch": 2},
        "vgg": {"input": [3, 8, 8], "widths": [4, "M", 8], "batch": 2}}


@pytest.mark.parametrize("net", list(TINY))
@pytest.mark.parametrize("method", adapters.PEERS)
def test_peer_iterations_run_and_update_weights(net, method):
    model, iteration, n_bp = adapters.make_iteration(net, TINY[net], 2, method)
    before = [p.detach().clone() for p in model.parameters()]
    iteration()
    assert n_bp == 2 and not all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_peers_harness_measures_a_peer():
    result = peers.run_suite({"conv": TINY["conv"]}, [2], ["sj-ottt"], repeats=1, warmup=1, threads=1, timeout=120,
                             log=lambda line: None, compile=False)
    (row,) = result["rows"]
    assert "error" not in row, row
    assert row["n_bp"] == 2 and row["time_per_iter_s"] > 0 and row["peak_memory_bytes"] > 0
    assert result["versions"]["spikingjelly"] and result["versions"]["snntorch"]
