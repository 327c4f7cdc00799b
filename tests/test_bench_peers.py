"""bench/peers.py (``snn-bench peers``) at tiny size: the harness runs ours and the peers in fresh processes and
writes well-formed JSON and Markdown. No timed assertions."""

import importlib.util
import json
from pathlib import Path

import pytest

from snnchip.cli import bench

ROOT = Path(__file__).resolve().parents[1]

for lib in ("spikingjelly", "snntorch"):
    if importlib.util.find_spec(lib) is None:
        pytest.skip(f"{lib} is not installed (make setup-bench); the peers benchmark needs it", allow_module_level=True)


def _peers():
    spec = importlib.util.spec_from_file_location("bench_peers_under_test", ROOT / "bench" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = {"conv": {"input": [3, 8, 8], "widths": [4, 4, 8], "batch": 2}}


def test_peers_harness_tiny_json_and_markdown(tmp_path):
    peers = _peers()
    out = tmp_path / "peers.json"
    result = peers.run_suite(TINY, [2], ["ottt-a"], repeats=1, warmup=1, threads=1, timeout=120,
                             json_path=str(out), log=lambda line: None)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["rows"]
    assert "error" not in row, row
    assert row["method"] == "ottt-a" and row["n_bp"] == 2 and row["time_per_iter_s"] > 0
    assert row["peak_memory_bytes"] > 0 and row["ideal_s"] > 0 and row["fraction_of_limit"] > 0
    tp = result["throughput"]["conv"]
    assert tp["layers_flops_per_s"] > 0 and tp["step_forward_flops"] > 0
    assert "| ottt-a |" in peers.markdown(result)


@pytest.mark.parametrize("method", ["sj-bptt", "sj-ottt", "sj-sltt", "snntorch-bptt"])
def test_peer_iterations_run_and_update_weights(method):
    import torch

    model, iteration, n_bp = _peers().make_iteration(TINY["conv"], 2, method)
    before = [p.detach().clone() for p in model.parameters()]
    iteration()
    assert n_bp == 2 and not all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_snn_bench_peers_cli_rejects_bad_arguments(capsys):
    assert bench(["peers", "--model", "vgg", "--T", "2"]) == 2
    assert "--model takes conv, mlp" in capsys.readouterr().err
