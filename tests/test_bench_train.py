"""snn-bench train: table, JSON and plot on a tiny run."""

import json

import torch

from snnchip.bench.measure import saved_storage_peak
from snnchip.cli import bench


def test_bench_train_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "b.json", tmp_path / "mem.png"
    assert bench(["train", "--methods", "bptt,ottt-a,sltt-k,saf-e", "--T", "2,6", "--batch-size", "8",
                  "--repeats", "1", "--json", str(out), "--plot", str(plot)]) == 0
    result = json.loads(out.read_text())
    mem = {(r["method"], r["T"]): r["peak_memory_bytes"] for r in result["rows"]}
    assert mem["ottt-a", 2] == mem["ottt-a", 6] and mem["bptt", 6] > mem["bptt", 2]
    assert all(r["time_per_iter_s"] > 0 for r in result["rows"])
    assert set(result["cosine_sltt_bptt"]) == {"2", "6"} and plot.stat().st_size > 0
    assert "cos(SLTT, BPTT)" in capsys.readouterr().out


def test_saved_storage_peak_counts_a_shared_storage_once():
    w = torch.nn.Parameter(torch.ones(4, 4))
    x = torch.ones(8, 4, requires_grad=True)

    def fn():
        (x @ w).sum().backward()  # saves x (8·4 floats) and w (a parameter: excluded)

    assert saved_storage_peak(torch.nn.Module(), fn) == 8 * 4 * 4 + 4 * 4 * 4  # no parameters registered
    module = torch.nn.Module()
    module.w = w
    assert saved_storage_peak(module, fn) == 8 * 4 * 4
