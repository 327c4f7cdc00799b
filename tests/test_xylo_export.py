"""NIR → Xylo (export.xylo): foreign CubaLIF graphs with recurrence and our recurrent LIF nets map to a XyloConfig
whose run (ours = xylosim) follows the float executor; what Xylo cannot hold is refused in one line; the deploy
directory is sealed and read back."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from snnchip.errors import DeployError, OutputError, SnnchipError, UnsupportedNodeError
from snnchip.export import xylo as X
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import spec_to_nir
from snnchip.hw_sim import xylo as sim
from snnchip.spec import FeedbackSpec, Interpretation, LayerSpec, NetworkSpec, NeuronSpec

sys.path.insert(0, str(Path(__file__).parent))
from nir_nets import conv_graph, mlp_graph

xylosim_driver = pytest.importorskip("snnchip.hw_sim.xylosim_driver")
needs_xylosim = pytest.mark.skipif(not xylosim_driver.available(), reason="xylosim is not installed (make setup)")
XYLO_READ = Interpretation(reset="subtract", compare="ge")  # how a graph trained for Xylo's neuron is read


def cuba_graph(n_in=8, n_h=24, n_out=4, seed=0, tau_syn=2.0, tau_mem=4.0, rec=True, readout="cubali",
               bias=False) -> nir.NIRGraph:
    """A foreign graph (no snnchip metadata): input → Affine → CubaLIF (+ recurrent Linear) → Linear → readout."""
    rng = np.random.default_rng(seed)
    ones = np.ones(n_h)
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc": nir.Affine(weight=rng.normal(0.05, 0.15, (n_h, n_in)), bias=rng.normal(0, 0.1, n_h) * bias),
             "lif": nir.CubaLIF(tau_syn=tau_syn * ones, tau_mem=tau_mem * ones, r=tau_mem * ones,
                                v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones, w_in=tau_syn * ones),
             "out": nir.Linear(weight=rng.normal(0, 0.5, (n_out, n_h))),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    o = np.ones(n_out)
    nodes["li"] = nir.CubaLI(tau_syn=2 * o, tau_mem=8 * o, r=8 * o, v_leak=0 * o, w_in=2 * o) if readout == "cubali" \
        else nir.LI(tau=8 * o, r=8 * o, v_leak=0 * o)
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "li"), ("li", "output")]
    if rec:
        nodes["rec"] = nir.Linear(weight=rng.normal(0, 0.1, (n_h, n_h)))
        edges += [("lif", "rec"), ("rec", "lif")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def feedback_net(hidden=30, seed=0, classes=4) -> nir.NIRGraph:
    spec = NetworkSpec(input_shape=(8,), T=8, num_classes=classes, model="mlp-fb", layers=(
        LayerSpec("h1", "linear", out_features=hidden, neuron=NeuronSpec()),
        LayerSpec("out", "linear", out_features=classes, neuron=NeuronSpec(kind="readout"))),
        feedback=(FeedbackSpec("h1", "h1"),))
    rng = np.random.default_rng(seed)
    params = {"h1": {"weight": rng.normal(0.2, 0.5, (hidden, 8)), "bias": rng.normal(0, 0.1, hidden)},
              "out": {"weight": rng.normal(0, 0.5, (classes, hidden)), "bias": rng.normal(0, 0.3, classes)},
              "feedback.h1__h1": {"weight": rng.normal(0, 0.2, (hidden, hidden))}}
    return spec_to_nir(spec, params)


def counts(T=8, batch=64, n=8, top=3, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top, (T, batch, n)).astype(float)


def float_readout(graph, x, interp=None) -> np.ndarray:
    return NIRExecutor(graph, interp, T=x.shape[0]).run(torch.tensor(x, dtype=torch.float64)).output.numpy()[-1]


def test_dashes_from_time_constants():
    # Euler, dt = 1: λ_syn = 1 − 1/2, λ = 1 − 1/4 -> dashes 1 and 2, exactly
    m = X.map_graph(cuba_graph(), XYLO_READ, T=8)
    h = m.report["hidden"]
    assert (h["dash_syn"], h["dash_mem"], h["lam_syn_hat"], h["lam_hat"]) == (1, 2, 0.5, 0.75)
    assert m.report["readout"]["dash_syn_out"] == 1 and m.report["readout"]["dash_mem_out"] == 3
    assert m.readout == "vmem_out" and not any("LIF without" in a for a in m.report["approximations"])
    assert X.dash_of(1 - 1 / 3) == 2 and X.dash_of(1.0) == 15 and X.dash_of(0.0) == 0
    assert X.lam_of(4) == 1 - 1 / 16


@pytest.mark.parametrize("readout", ["cubali", "li"])
def test_below_threshold_the_chip_tracks_the_float_graph(readout):
    # no spikes (θ = 10): the dequantized hidden potentials and the readout follow the float executor step by step,
    # one step later for the readout; what differs is the rounding of the weights and the decays' minimum step of 1
    g = cuba_graph(readout=readout, rec=False)
    g.nodes["lif"] = nir.CubaLIF(**{**{k: getattr(g.nodes["lif"], k) for k in ("tau_syn", "tau_mem", "r", "v_leak",
                                                                              "v_reset", "w_in")},
                                    "v_threshold": 10 * np.ones(24)})
    m = X.map_graph(g, XYLO_READ, T=8)
    x = counts(top=2)
    res = NIRExecutor(g, XYLO_READ, T=8).run(torch.tensor(x, dtype=torch.float64))
    rec = sim.run(m.config, X.chip_input(x, m))
    v_float = res.states["lif"].numpy().transpose(1, 0, 2)
    assert rec.spikes.sum() == 0 and np.abs(v_float).max() > 0.5
    np.testing.assert_allclose(rec.vmem[:, :8] / m.hidden_scale, v_float, atol=0.005 * 10)  # 0.5 % of θ: int8 weights
    assert m.readout == ("vmem_out" if readout == "cubali" else "isyn_out")


@pytest.mark.parametrize("seed", [1, 2])
def test_spiking_cubalif_follows_the_float_graph(seed):
    # with spikes, a state that rounds across θ, or u ≥ 2θ (several spikes on Xylo, one in the float neuron),
    # makes single spikes differ; on these nets ≥ 98 % of the spikes and ≥ 90 % of the decisions agree
    g = cuba_graph(seed=seed, rec=False)
    m = X.map_graph(g, XYLO_READ, T=8)
    x = counts(top=2)
    res = NIRExecutor(g, XYLO_READ, T=8).run(torch.tensor(x, dtype=torch.float64))
    rec = sim.run(m.config, X.chip_input(x, m))
    s_float = res.spikes["lif"].numpy().transpose(1, 0, 2)
    assert s_float.mean() > 0.05
    assert (np.minimum(rec.spikes[:, :8], 1) == s_float).mean() >= 0.98
    chip = X.readout_of(rec, m)
    assert (chip.argmax(1) == res.output.numpy()[-1].argmax(1)).mean() >= 0.9


@needs_xylosim
@pytest.mark.parametrize("graph,interp", [(cuba_graph(), XYLO_READ), (cuba_graph(readout="li", seed=3), XYLO_READ),
                                          (feedback_net(), None)], ids=["cubalif-cubali", "cubalif-li", "ours-lif"])
def test_mapped_graphs_run_the_same_on_xylosim(graph, interp):
    m = X.map_graph(graph, interp, T=8)
    x = X.chip_input(counts(batch=12, top=5), m)
    ours, theirs = sim.run(m.config, x), xylosim_driver.run(m.config, x)
    for field in sim.XyloRecord.FIELDS:
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)


def test_our_recurrent_lif_net_maps_with_its_approximations_named():
    g = feedback_net()
    m = X.map_graph(g)
    assert m.report["hidden"]["bias_neuron"] and m.config.n_hidden == 31  # the readout biases' always-on neuron
    assert any("LIF without a synaptic current" in a for a in m.report["approximations"])
    x = counts(batch=200)
    f = float_readout(g, x)
    chip = X.readout_of(sim.run(m.config, X.chip_input(x, m)), m)
    assert (chip.argmax(1) == f.argmax(1)).mean() >= 0.85  # u ≥ 2θ: several spikes per step on Xylo, one in float


@pytest.mark.parametrize("graph,interp,match", [
    (mlp_graph((8, 10, 10, 3), T=4), None, "2 spiking population"),
    (conv_graph(T=2), None, "64 input channels"),
    (mlp_graph((17, 10, 3), T=4), None, "17 input channels do not fit Xylo"),
    (mlp_graph((8, 1001, 3), T=4), None, "1001 hidden neurons"),
    (mlp_graph((8, 10, 9), T=4), None, "9 output neurons"),
    (cuba_graph(), None, "resets by zero"),
    (cuba_graph(bias=True), XYLO_READ, "current-based with a bias"),
])
def test_what_xylo_cannot_hold_is_refused_in_one_line(graph, interp, match):
    with pytest.raises(SnnchipError, match=match) as exc:
        X.map_graph(graph, interp, T=4)
    assert "\n" not in str(exc.value)
    assert isinstance(exc.value, (DeployError, UnsupportedNodeError))


def test_input_must_be_spike_counts():
    m = X.map_graph(cuba_graph(), XYLO_READ, T=8)
    with pytest.raises(DeployError, match="spike counts"):
        X.chip_input(counts() + 0.5, m)
    with pytest.raises(DeployError, match="spike counts"):
        X.chip_input(-counts(top=3) - 1, m)
    with pytest.raises(DeployError, match="T=8"):
        X.chip_input(counts(T=5), m)


def test_deploy_directory_round_trip_seal_and_refusals(tmp_path):
    out = X.export_xylo(cuba_graph(), tmp_path / "xylo", XYLO_READ, T=8)
    man = json.loads((out / "manifest.json").read_text())
    assert man["target"] == "xylo" and man["format"]["name"] == "snnchip-xylo-deploy" and "seal" in man
    assert {r["limit"] for r in man["limits"]} >= {"inputs", "hidden", "outputs", "weight_bits"}
    assert X.is_xylo_deploy(out)
    dep = X.load_xylo(out)
    assert dep.seal.intact
    m = X.map_graph(cuba_graph(), XYLO_READ, T=8)
    for k, v in m.config.arrays().items():
        np.testing.assert_array_equal(getattr(dep.mapping.config, k), v)
    # an edited weight is refused by the seal, read with allow_edited, and still checked against the registers
    arrays = dict(np.load(out / "params.npz"))
    arrays["w_in"] = arrays["w_in"].copy()
    arrays["w_in"][0, 0, 0] = 300
    np.savez(out / "params.npz", **arrays)
    with pytest.raises(DeployError, match="params.npz: its sha256 differs.*--target xylo"):
        X.load_xylo(out)
    with pytest.raises(DeployError, match="w_in = 300 is outside Xylo's range"):
        X.load_xylo(out, allow_edited=True)
    (out / "params.npz").write_bytes(b"not a zip")
    with pytest.raises(DeployError, match="corrupt"):
        X.load_xylo(out, allow_edited=True)
    with pytest.raises(DeployError, match="not a deploy directory"):
        X.load_xylo(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a deploy directory"):
        X.export_xylo(cuba_graph(), tmp_path / "junk", XYLO_READ, T=8)
    assert (tmp_path / "junk" / "keep.txt").read_text() == "mine"


def test_limits_table_names_its_sources():
    from snnchip.xylo_limits import limits_table

    rows = limits_table()
    assert all(r["source"] for r in rows)
    assert {r["limit"]: r["value"] for r in rows}["hidden"] == 1000
    assert math.isclose(X.lam_of(X.dash_of(0.9)), 0.875)


@pytest.mark.parametrize("damage,match", [
    (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json: corrupt"),
    (lambda d: (d / "manifest.json").unlink(), "missing manifest.json"),
    (lambda d: _drop_array(d, "w_rec"), "no 'w_rec'"),
    (lambda d: _set_manifest(d, "format", {"name": "snnchip-xylo-deploy", "version": 9}), "newer snnchip"),
    (lambda d: _set_manifest(d, "readout", {"state": "spikes_out", "scale": 1.0}), "readout state 'spikes_out'"),
])
def test_hostile_xylo_directories_are_refused_in_one_line(tmp_path, damage, match):
    out = X.export_xylo(cuba_graph(), tmp_path / "d", XYLO_READ, T=8)
    damage(out)
    with pytest.raises(DeployError, match=match) as exc:
        X.load_xylo(out, allow_edited=True)
    assert "\n" not in str(exc.value)


def _drop_array(d: Path, key: str) -> None:
    arrays = dict(np.load(d / "params.npz"))
    del arrays[key]
    np.savez(d / "params.npz", **arrays)


def _set_manifest(d: Path, key: str, value: object) -> None:
    man = json.loads((d / "manifest.json").read_text())
    man[key] = value
    (d / "manifest.json").write_text(json.dumps(man))
