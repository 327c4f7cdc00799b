"""The decays Loihi 2 holds (Lava's 12-bit dv and du): the registers are the nearest on the chip's grid, a foreign
graph rewritten with them (``at_chip_decays``) runs exactly those decays in the reference with every input gain
kept, and exports say which decays the chip holds off the graph's."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from snnchip.bench.deep_nets import NORSE, SNNTORCH_SUBTRACT, norse_cnn, snntorch_braille
from snnchip.cli import snn_export
from snnchip.export.chip_decays import at_chip_decays, chip_current_decay, chip_membrane_decay
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.loihi2 import DECAY_UNITY
from snnchip.export.nir_exec import compile_neuron
from snnchip.export.nir_read import read_graph
from snnchip.export.qnet import SaturationWarning
from snnchip.export.quantize_report import decay_lines
from snnchip.spec import Interpretation

PEERS = Path(__file__).parent / "data" / "peers"
GRID = 1 - np.arange(DECAY_UNITY) / DECAY_UNITY  # every factor (4096 − d)/4096, d = 0 … 4095


@pytest.mark.parametrize("lam", [0.9, 0.85, 0.8, 0.7, 0.5, 0.999, 0.3, 1 - 410 / 4096, 0.0])
def test_held_decays_are_the_nearest_factors_the_registers_hold(lam):
    held = float(chip_membrane_decay(lam))
    assert held in GRID[:-1] or held == GRID[-1]
    assert abs(held - lam) == np.abs(GRID - lam).min() or lam == 0.0  # λ = 0: dv ≤ 4095 keeps 1/4096
    syn = float(chip_current_decay(lam))  # du + 1 = 4096·(1 − λ_syn): the same grid, du one below
    assert syn == held or lam == 0.0


def _params(graph: nir.NIRGraph, interp: Interpretation) -> dict:
    return {k: compile_neuron(k, n, interp, torch.float64) for k, n in graph.nodes.items()
            if isinstance(n, (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI))}


def _peer(name: str) -> tuple[nir.NIRGraph, Interpretation]:
    z = np.load(PEERS / f"{name}.npz")
    return read_graph(PEERS / f"{name}.nir"), Interpretation(
        dt=float(z["interp_dt"]), discretization=str(z["interp_discretization"]), reset=str(z["interp_reset"]),
        compare=str(z["interp_compare"]))


CASES = {"snntorch_leaky_zero (Euler)": lambda: _peer("snntorch_leaky_zero"),
         "sinabs_conv_lif (exact)": lambda: _peer("sinabs_conv_lif"),
         "rockpool_lif_cuba (exact, CubaLIF)": lambda: _peer("rockpool_lif_cuba"),
         "norse CubaLIF, w_in added whole": lambda: (norse_cnn(), dataclasses.replace(NORSE, current_input="unit")),
         "norse CubaLIF": lambda: (norse_cnn(), NORSE),
         "braille RSynaptic": lambda: (snntorch_braille(), SNNTORCH_SUBTRACT)}


@pytest.mark.parametrize("case", list(CASES))
def test_the_rewritten_graph_runs_the_chips_decays_with_the_same_gains(case):
    graph, interp = CASES[case]()
    held = at_chip_decays(graph, interp)
    before, after = _params(graph, interp), _params(held, interp)
    moved = 0
    for k, p in before.items():
        q = after[k]
        np.testing.assert_allclose(q.a.numpy(), chip_membrane_decay(p.a.numpy()), rtol=0, atol=1e-12)
        np.testing.assert_allclose(q.b.numpy(), p.b.numpy(), rtol=1e-12)
        np.testing.assert_allclose(q.c.numpy(), p.c.numpy(), rtol=1e-12, atol=1e-15)
        if p.syn is not None:
            np.testing.assert_allclose(q.syn[0].numpy(), chip_current_decay(p.syn[0].numpy()), rtol=0, atol=1e-12)
            np.testing.assert_allclose(q.syn[1].numpy(), p.syn[1].numpy(), rtol=1e-12)
        moved += int(not np.array_equal(q.a.numpy(), p.a.numpy()))
    assert moved > 0  # every case here has decays off the grid
    for name in graph.nodes:  # the original is untouched
        assert graph.nodes[name] is not held.nodes[name]


def test_the_chip_deploys_the_graph_and_its_rewrite_with_the_same_registers():
    graph, interp = snntorch_braille(), SNNTORCH_SUBTRACT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        deps = [deployment_from_graph(g, interp, T=30) for g in (graph, at_chip_decays(graph, interp))]
    for a, b in zip(*(d.qnet.stages for d in deps), strict=True):
        assert (a.dv, a.du) == (b.dv, b.du)
    rows = {r["stage"]: r for r in deps[1].qnet.report}
    assert all(abs(r["lam"] - r["lam_q"]) < 1e-12 and abs(r["lam_syn"] - r["lam_syn_q"]) < 1e-12
               for r in rows.values())
    assert decay_lines(deps[1].qnet.report) == []  # the rewrite holds nothing off the graph's
    line, = decay_lines(deps[0].qnet.report)
    assert "lif1.lif: λ 0.9 → 0.899902" in line and "λ_syn 0.7 → 0.699951" in line and "lif2: λ 0.8 → 0.800049" in line


def test_a_graph_on_the_grid_is_kept_as_it_is():
    graph, interp = _peer("snntorch_leaky_zero")
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau = np.full_like(node.tau, interp.dt * DECAY_UNITY / 410)  # β = 1 − 410/4096
    held = at_chip_decays(graph, interp)
    for k, node in graph.nodes.items():
        if isinstance(node, nir.LIF):
            np.testing.assert_array_equal(held.nodes[k].tau, node.tau)
            np.testing.assert_array_equal(held.nodes[k].r, node.r)


def test_export_names_the_decays_the_chip_holds_off_the_graphs(tmp_path, capsys):
    path = PEERS / "snntorch_leaky_zero.nir"
    graph = read_graph(path)
    beta = [1 - 1e-4 / float(np.ravel(n.tau)[0]) for n in graph.nodes.values() if isinstance(n, nir.LIF)]
    assert snn_export.main([str(path), "--target", "loihi", "--from", "snntorch", "--reset", "zero", "--T", "10",
                            "-o", str(tmp_path / "dep")]) == 0
    text = capsys.readouterr().out
    assert "decays the chip holds off the graph's" in text
    assert f"λ {beta[0]:.6g} → {float(chip_membrane_decay(beta[0])):.6g}" in text
    on_grid = tmp_path / "grid.nir"
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau = np.full_like(node.tau, 1e-4 * DECAY_UNITY / 410)
            node.r = node.tau / 1e-4  # snnTorch's r = 1/(1 − β)
    nir.write(on_grid, graph)
    assert snn_export.main([str(on_grid), "--target", "loihi", "--from", "snntorch", "--reset", "zero", "--T", "10",
                            "-o", str(tmp_path / "dep2")]) == 0
    assert "decays the chip holds" not in capsys.readouterr().out


def test_the_certificate_of_a_foreign_graph_shows_its_decay_floor(tmp_path, capsys):
    """snn-validate on a foreign graph whose decays are off the grid (the Braille-class RSynaptic, T = 256) reports,
    per layer, the float graph at the chip's decays against the graph (the reference executor on both, the same
    inputs) and prints it beside the chip's agreement; a graph on the grid has none."""
    from snnchip.bench.deep_nets import sparse_events
    from snnchip.cli import snn_validate
    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.hw_sim.compare import spike_agreement
    from snnchip.workflows.validate import ValidateConfig, validate

    graph, interp = snntorch_braille(), SNNTORCH_SUBTRACT
    read = {"dt": interp.dt, "discretization": interp.discretization, "reset": interp.reset,
            "compare": interp.compare}
    x = sparse_events(0, 256, 16, (12,))
    cfg = ValidateConfig(lava_samples=0, min_agreement=0.0)
    floor = validate(graph, cfg, progress=False, interpretation=read, x=x)["chip"]["decay_floor"]
    ref, held = (NIRExecutor(g, interp).run(x).spikes for g in (graph, at_chip_decays(graph, interp)))
    expected = spike_agreement({k: np.asarray(ref[k]) for k in floor}, {k: np.asarray(held[k]) for k in floor})
    assert floor == pytest.approx(expected) and set(floor) == {"lif1.lif", "lif2"}
    assert min(floor.values()) < 0.999  # measured 0.988: the held decays move spikes in this chaotic layer
    nir.write(tmp_path / "braille.nir", graph)
    np.save(tmp_path / "x.npy", x)
    snn_validate.main([str(tmp_path / "braille.nir"), "--dt", str(interp.dt), "--discretization", "euler",
                       "--reset", "subtract_next", "--spike-compare", "gt", "--input", str(tmp_path / "x.npy"),
                       "--lava-samples", "0", "--deploy-out", str(tmp_path / "d")])
    assert "decay floor" in capsys.readouterr().out
    peer, peer_interp = _peer("snntorch_leaky_zero")
    for node in peer.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau, node.r = np.full_like(node.tau, 1e-4 * DECAY_UNITY / 410), np.full_like(node.r, DECAY_UNITY / 410)
    report = validate(peer, cfg, progress=False, interpretation={"writer": "snntorch", "reset": "zero"}, x=x[:30])
    assert report["chip"]["decay_floor"] is None
