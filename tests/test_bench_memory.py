"""``snn-bench memory`` (bench/memory.py): the breakdown of one iteration's memory, checked against bytes counted by
hand from the nets' shapes and against SpikingJelly's iterations on the same net."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch

from snnchip.bench import adapters, memory, nets
from snnchip.cli.snn_bench import main

BATCH = 2
CONV = dict(nets.NETS["conv"], batch=BATCH)


def _breakdown(method: str, T: int = 3) -> dict:
    return memory.breakdown(partial(adapters.make_iteration, "conv", CONV, T, method), "cpu", warmup=1)


def _neuron_bytes() -> int:
    """float32 bytes of one value per spiking neuron of the conv net at BATCH, from its layer shapes."""
    spec = nets.spec("conv", CONV, 1)
    return sum(4 * BATCH * math.prod(shape) for layer, shape in zip(spec.layers, spec.shapes(), strict=True)
               if layer.neuron is not None and layer.neuron.spiking)


def _parameter_bytes() -> int:
    """float32 bytes of the conv net's weights and biases, from its layer shapes (3×3 convolutions, one linear)."""
    spec = nets.spec("conv", CONV, 1)
    total, shape = 0, spec.input_shape
    for layer, out in zip(spec.layers, spec.shapes(), strict=True):
        if layer.op == "conv2d":
            total += shape[0] * out[0] * 9 + out[0]
        elif layer.op == "linear":
            total += shape[0] * out[0] + out[0]
        shape = out
    return 4 * total


@pytest.fixture(scope="module")
def ours() -> dict[str, dict]:
    return {m: _breakdown(m) for m in ("ottt-a", "sltt")}


def test_the_categories_sum_to_the_peak_and_the_gradients_are_the_parameters(ours):
    for r in ours.values():
        assert sum(r["categories"].values()) == r["peak_bytes"] == sum(r["sites"].values())
        assert r["categories"]["gradients"] == r["gradient_bytes"] == _parameter_bytes()
        assert sum(r["saved_sites"].values()) == r["saved_peak_bytes"] > 0
        assert r["held_between_iterations_bytes"] == 0  # our loop frees its state and gradients


def test_ottt_memory_does_not_grow_with_T_and_bptt_does():
    peaks = {(m, T): _breakdown(m, T)["peak_bytes"] for m in ("ottt-a", "bptt") for T in (2, 6)}
    assert peaks["ottt-a", 6] == pytest.approx(peaks["ottt-a", 2], rel=0.02)
    assert peaks["bptt", 6] > 1.5 * peaks["bptt", 2]


def test_spikingjelly_holds_its_neuron_states_and_gradients_between_iterations():
    """SpikingJelly's OTTT keeps v and the trace of every LIF neuron and the gradients until the next iteration resets
    them (so a peak measured from the start of an iteration misses them); its SLTT keeps v."""
    pytest.importorskip("spikingjelly", reason="make setup-bench installs SpikingJelly")
    held = {m: _breakdown(m)["held_between_iterations_bytes"] for m in ("sj-ottt", "sj-sltt")}
    assert held == {"sj-ottt": _parameter_bytes() + 2 * _neuron_bytes(),
                    "sj-sltt": _parameter_bytes() + _neuron_bytes()}


def test_our_online_rules_need_no_more_memory_than_spikingjellys(ours):
    """The previous step's state freed layer by layer, no spikes collected, the membrane saved instead of u: at most
    SpikingJelly's peak on the same net (before, OTTT_A held both steps' membranes and traces: 1.3× SpikingJelly's)."""
    pytest.importorskip("spikingjelly", reason="make setup-bench installs SpikingJelly")
    for method, peer in (("ottt-a", "sj-ottt"), ("sltt", "sj-sltt")):
        assert ours[method]["peak_bytes"] <= _breakdown(peer)["peak_bytes"]


def test_snn_bench_memory_writes_the_rows(tmp_path, capsys):
    out = tmp_path / "memory.json"
    assert main(["memory", "--model", "conv", "--methods", "ottt-a", "--T", "2", "--batch-size", "1", "--warmup",
                 "1", "--no-compile", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["net"], r["method"], r["T"]) for r in rows] == [("conv", "ottt-a", 2)]
    assert "ottt-a" in capsys.readouterr().out


def test_the_breakdown_is_the_same_run_to_run(ours):
    """Every save and release of a storage counts (a pointer reused by a later tensor is saved again)."""
    again = _breakdown("ottt-a")
    assert again["categories"] == ours["ottt-a"]["categories"] and again["sites"] == ours["ottt-a"]["sites"]


def test_a_storage_saved_by_graphs_in_turn_counts_as_saved_each_time():
    """Hand-made iteration: x is saved for weight's gradient by three graphs in turn, each released by its backward;
    next to the second, a 40 MB temporary makes the peak. At the peak, x (4 MB) is what is saved."""
    n = 2**20
    weight = torch.nn.Parameter(torch.ones(n))

    def iteration() -> None:
        x = torch.ones(n)
        for size in (2 * n, 10 * n, 2 * n):  # the second of three passes makes the peak
            y = x * weight  # saves x (weight's gradient is grad·x), not weight (x needs no gradient)
            temporary = torch.ones(size)
            del temporary
            y.sum().backward()
            del y

    r = memory.breakdown(lambda: (torch.nn.Linear(1, 1), iteration, 1), "cpu", warmup=1)
    # at the peak: x, y, the temporary and weight.grad (kept from the warm-up), 4 bytes each
    assert r["categories"]["saved_for_backward"] == 4 * n and r["peak_bytes"] == (1 + 1 + 10 + 1) * 4 * n
