"""The data headroom (--headroom data, --calibration-input): deep foreign graphs in the peer libraries' layouts
(snnchip.bench.deep_nets) keep the NIR reference's spikes better than with the one-step headroom, measured on inputs
other than the calibration set; the peaks it is sized from match the reference executor's states; bad calibration
inputs are refused in one line; saturation is counted, and Lava equals the chip on a data-headroom deployment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from snnchip.bench.deep_nets import (
    IMAGE,
    NORSE,
    SINABS,
    SNNTORCH,
    SNNTORCH_SUBTRACT,
    digit_events,
    norse_cnn,
    sinabs_cnn,
    snntorch_braille,
    snntorch_cnn,
    sparse_events,
    train_on_digits,
)
from snnchip.bench.headroom import headroom_agreement
from snnchip.cli import snn_export, snn_run
from snnchip.deploy.fixed_point import integrate_fixed, state_overflow
from snnchip.errors import DataError
from snnchip.export.loihi import deployment_from_graph, export_loihi, load_deploy
from snnchip.export.lowering import lower
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.provenance import differences, rederive
from snnchip.export.stage_peaks import check_calibration_input, stage_peaks
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.identity import sha256_arrays

NETS = {"sinabs": (sinabs_cnn, SINABS), "snntorch": (snntorch_cnn, SNNTORCH), "norse": (norse_cnn, NORSE)}


def _inputs(kind: str, seed: int, T: int = 20, batch: int = 64) -> np.ndarray:
    return sparse_events(seed, T, batch, IMAGE) if kind == "sparse" else digit_events(seed, T, batch)


def _agreement(graph, interp, x_test, **precision) -> tuple[dict[str, float], float]:
    """Per-layer spike agreement (hw_sim.compare) NIR reference vs chip, and the decision agreement."""
    r = headroom_agreement(graph, interp, x_test, **precision)
    return r["agreement"], r["decisions"]


# measured (64 test samples, calibration on 64 others; min over layers, decisions), one-step -> data:
#   sinabs   sparse 0.9841 -> 0.9960, 1.00 -> 1.00;   digits 0.9857 -> 0.9940, 0.98 -> 0.97
#   snntorch sparse 0.9628 -> 0.9827, 0.89 -> 0.95;   digits 0.9608 -> 0.9704, 0.86 -> 0.94
#   norse    sparse 0.9818 -> 0.9895, 0.92 -> 0.92;   digits 0.9855 -> 0.9934, 0.98 -> 0.98
FLOOR = {("sinabs", "sparse"): 0.995, ("sinabs", "digits"): 0.993, ("snntorch", "sparse"): 0.98,
         ("snntorch", "digits"): 0.968, ("norse", "sparse"): 0.988, ("norse", "digits"): 0.992}


@pytest.mark.parametrize("kind", ["sparse", "digits"])
@pytest.mark.parametrize("name", list(NETS))
def test_data_headroom_keeps_deep_layers_where_the_one_step_headroom_loses_them(name, kind):
    """4 spiking layers; every layer at least as faithful as with the one-step headroom, the deepest clearly more,
    and the measured floor held (the issue's 99.5 % is met by the Sinabs net on sparse events; README says where
    the rest is lost: 12-bit decays and 2 × 8-bit weights, which no scale refines)."""
    make, interp = NETS[name]
    graph, x_cal, x_test = make(), _inputs(kind, 1), _inputs(kind, 2)
    step, step_dec = _agreement(graph, interp, x_test, headroom="step")
    data, data_dec = _agreement(graph, interp, x_test, calibration_input=x_cal)
    assert len(data) >= 4
    assert all(data[k] >= step[k] - 2e-4 for k in data), (step, data)
    deepest = list(data)[-1]
    assert data[deepest] >= step[deepest] + 0.005, (step, data)
    assert min(data.values()) >= FLOOR[name, kind] > min(step.values()), (step, data)
    assert data_dec >= step_dec - 0.02


def test_sinabs_sparse_events_meet_the_issue_targets_only_with_the_data_headroom():
    graph, x_cal, x_test = sinabs_cnn(), _inputs("sparse", 1), _inputs("sparse", 2)
    step, _ = _agreement(graph, SINABS, x_test)  # a foreign graph's default without calibration inputs: one step
    data, decided = _agreement(graph, SINABS, x_test, calibration_input=x_cal)
    assert min(step.values()) < 0.995 <= min(data.values()) and decided >= 0.97


def test_recurrent_cubalif_at_T256_keeps_its_layers():
    """The Braille RNN's class (12 → 38 recurrent CubaLIF → 7 CubaLIF, snnTorch RSynaptic layout, T = 256): the
    data headroom scales the layers 4-6× finer, yet agreement stays where it was (98.8–99.0 % both ways, within
    ±0.1 %): the recurrence's residual is not the scale. Part of it is the 12-bit decays (β = 0.9 is 409.6/4096,
    α = 0.7 is 1228.8/4096): with decays exact in 12 bits the same net reaches 99.3 % (one step and data alike);
    the rest was not traced (candidates: the decay's truncation toward zero each step). The issue's 99.5 % is not
    reached here."""
    graph = snntorch_braille()
    x_cal, x_test = sparse_events(1, 256, 32, (12,)), sparse_events(2, 256, 32, (12,))
    step, _ = _agreement(graph, SNNTORCH_SUBTRACT, x_test, headroom="step")
    data, _ = _agreement(graph, SNNTORCH_SUBTRACT, x_test, calibration_input=x_cal)
    assert all(data[k] >= step[k] - 1e-3 for k in data) and min(data.values()) >= 0.985, (step, data)


def test_peaks_are_the_reference_executors_largest_current_and_membrane():
    """I and V of each IF layer equal the NIR reference executor's (an independent implementation): for the IF
    with subtractive reset the membrane before the reset is v + θ·s, and its input current is the step's change
    of it, v_before[t] − v[t − 1]."""
    graph, x = sinabs_cnn(), sparse_events(3, 20, 8, IMAGE)
    peaks = stage_peaks(lower(graph, SINABS, 20), check_calibration_input(x, lower(graph, SINABS, 20), 1.0))
    res = NIRExecutor(graph, SINABS).run(x)
    for layer, (current, membrane) in peaks.items():
        v, s = res.states[layer].double().numpy(), res.spikes[layer].double().numpy()
        before = v + s  # θ = 1
        drive = before - np.concatenate([np.zeros_like(v[:1]), v[:-1]])
        assert membrane == pytest.approx(before.max(), rel=1e-5)
        assert current == pytest.approx(np.abs(drive).max(), rel=1e-4)


def test_the_bound_is_max_of_margin_times_current_membrane_and_theta_within_one_step():
    graph = sinabs_cnn()
    x = sparse_events(1, 20, 16, IMAGE)
    dep = deployment_from_graph(graph, SINABS, T=20, calibration_input=x, margin=1.5)
    one = deployment_from_graph(graph, SINABS, T=20, headroom="step")
    for r, r1 in zip(dep.qnet.report, one.qnet.report, strict=True):
        bound = min(max(1.5 * r["observed_current"], r["observed_membrane"], 1.0),
                    r1["state_bound_int"] / (64 * r1["scale"]))
        assert 64 * r["scale"] * bound <= 2**23 - 1 + 1e-6  # the observed states fit 24 bits
        assert r["scale"] >= r1["scale"] and r["headroom"] == "data" and r["margin"] == 1.5
        assert 64 * r["scale"] * bound > (2**23 - 1) / 2  # the full register is used (within the candidates' grid)


def test_state_overflow_counts_hand_derived_cases():
    """No decay (du = −1, dv = 0). (0) u' = 2^23 − 64 + (1 << 6) = 2^23 does not wrap, v' = 2^23 clips at the top;
    (1) + (2 << 6) = 2^23 + 64 wraps to −2^23 + 64, inside v's range; (2) v = 2^23 − 10 plus 64 clips at the top;
    (3) v = −(2^23 − 10) minus 64 clips at the bottom."""
    cases = [(2**23 - 64, 0, 1, (0, 1, 0)), (2**23 - 64, 0, 2, (1, 0, 0)), (0, 2**23 - 10, 1, (0, 1, 0)),
             (0, -(2**23 - 10), -1, (0, 0, 1))]
    for u, v, a, counts in cases:
        assert state_overflow(*integrate_fixed(np.array([u]), np.array([v]), np.array([a]), du=-1, dv=0)) == counts
    assert state_overflow(*integrate_fixed(*(np.array([c[i] for c in cases]) for i in range(3)), du=-1, dv=0)) == (
        1, 2, 1)


def test_manifest_records_headroom_margin_and_calibration_data_and_rederives(tmp_path):
    graph, x = sinabs_cnn(), sparse_events(1, 20, 8, IMAGE)
    out = export_loihi(graph, tmp_path / "dep", SINABS, T=20, calibration_input=x, margin=1.25)
    dep = load_deploy(out)
    man = json.loads((out / "manifest.json").read_text())
    assert man["precision"]["headroom"] == "data" and man["precision"]["margin"] == 1.25
    assert man["calibration"] == {"shape": [20, 8, *IMAGE], "sha256": sha256_arrays(x.astype(np.float64))}
    assert differences(dep, rederive(dep, graph)) == []
    assert differences(dep, deployment_from_graph(graph, SINABS, T=20, headroom="step"))  # the check can fail


def test_data_headroom_without_calibration_inputs_or_with_another_headroom_is_refused():
    graph, x = sinabs_cnn(), sparse_events(1, 20, 2, IMAGE)
    with pytest.raises(DataError, match="needs calibration inputs"):
        deployment_from_graph(graph, SINABS, T=20, headroom="data")
    with pytest.raises(DataError, match="headroom asked for is 'T'"):
        deployment_from_graph(graph, SINABS, T=20, headroom="T", calibration_input=x)
    with pytest.raises(DataError, match="margin must be ≥ 1"):
        deployment_from_graph(graph, SINABS, T=20, calibration_input=x, margin=0.5)


SNNTORCH_FLAGS = ["--dt", "1e-4", "--discretization", "euler", "--reset", "subtract_next", "--spike-compare", "gt"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import nir

    d = tmp_path_factory.mktemp("cal")
    nir.write(str(d / "g.nir"), snntorch_braille(hidden=8))
    np.save(d / "cal.npy", sparse_events(1, 30, 8, (12,)))
    np.save(d / "short.npy", sparse_events(1, 10, 8, (12,)))
    np.save(d / "wide.npy", sparse_events(1, 30, 8, (13,)))
    nan = sparse_events(1, 30, 8, (12,))
    nan[4, 2, 1] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "big.npy", 3 * sparse_events(1, 30, 8, (12,)))
    (d / "text.npy").write_text("not an array")
    return d


@pytest.mark.parametrize("name, message", [
    ("short", "10 time steps; the deployment runs T = 30"), ("wide", r"shape \(30, 8, 13\); this graph takes"),
    ("nan", "NaN or infinite"), ("text", r"text.npy is a text file despite its .npy suffix"),
    ("missing", "missing.npy does not exist"),
    ("big", "beyond the deployment's input range 1")])
def test_bad_calibration_input_is_one_line_and_exit_2(files, capsys, name, message):
    out = files / f"dep_{name}"
    rc = snn_export.main([str(files / "g.nir"), "--target", "loihi", "--T", "30", *SNNTORCH_FLAGS,
                          "--calibration-input", str(files / f"{name}.npy"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--calibration-input" in err, err
    assert pytest.importorskip("re").search(message, err), err
    assert not out.exists()


def test_cli_exports_and_runs_report_saturation(files, capsys):
    out = files / "dep"
    assert snn_export.main([str(files / "g.nir"), "--target", "loihi", "--T", "30", *SNNTORCH_FLAGS,
                            "--calibration-input", str(files / "cal.npy"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "data headroom: the largest current × 1.5" in text and "on the calibration inputs, saturation" in text
    assert load_deploy(out).manifest["precision"]["headroom"] == "data"
    assert snn_run.main([str(out), "--input", str(files / "cal.npy"), "--out", str(files / "y.npz"),
                         "--backend", "chip"]) == 0
    assert "saturation" in capsys.readouterr().out


def test_lava_equals_the_chip_on_a_data_headroom_deployment_that_saturates():
    """Calibrated on sparse events (2 %), run on dense ones (60 %): states leave the data headroom (counted), and
    Lava's fixed_pt run equals the simulator on every spike, current and membrane, at every Lava step."""
    from lava_harness import assert_same_run

    from snnchip.deploy import build

    graph = snntorch_braille(hidden=8)
    dep = deployment_from_graph(graph, SNNTORCH_SUBTRACT, T=30, calibration_input=sparse_events(1, 30, 8, (12,),
                                                                                                  density=0.02))
    x = sparse_events(2, 30, 2, (12,), density=0.6)
    chip = ChipSimulator(dep).run(x, timing="lava")
    assert sum(sum(c.values()) for c in chip.meta["saturation"].values()) > 0
    assert_same_run(chip, build(dep).run(x, cfg="fixed_pt", timing="lava"))


def test_train_on_digits_trains_the_graph_the_reference_executor_runs():
    """The bench's trained graphs: same nodes and shapes, new weights, and the reference executor (not the trainer)
    classifies held-out digits as events well above chance (measured: 7 % before, 75 % after 6 epochs of 512)."""
    from sklearn.datasets import load_digits

    graph = sinabs_cnn()
    trained, last_epoch = train_on_digits(graph, SINABS, epochs=6, samples=512)
    assert {k: type(n) for k, n in trained.nodes.items()} == {k: type(n) for k, n in graph.nodes.items()}
    assert trained.edges == graph.edges
    weighted = [k for k, n in graph.nodes.items() if hasattr(n, "weight")]
    assert all(trained.nodes[k].weight.shape == graph.nodes[k].weight.shape for k in weighted)
    assert not any(np.array_equal(trained.nodes[k].weight, graph.nodes[k].weight) for k in weighted)
    x = digit_events(7, 20, 256)
    labels = load_digits().target[np.random.default_rng(7).choice(1797, 256, replace=False)]  # digit_events' draw

    def accuracy(g):
        return float(np.mean(NIRExecutor(g, SINABS).run(x).output.sum(0).argmax(-1).numpy() == labels))

    assert accuracy(graph) < 0.2 and accuracy(trained) >= 0.5 and last_epoch >= 0.5
