"""snn-validate: the ladder passes a trained digits MLP, fails dead, chance-level and half-dead networks by gate,
names the layer of a corrupted Lava graph, certifies files by hash and picks Lava samples stratified over classes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snnchip.identity import sha256_file
from snnchip.workflows.report import print_table, write_plots
from snnchip.workflows.validate import ValidateConfig, validate


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from snnchip.train.trainer import TrainConfig, fit

    out = tmp_path_factory.mktemp("run")
    fit(TrainConfig(out=str(out), hidden="48,24", method="ottt-a", T=4, epochs=12, quiet=True, device="cpu"))
    return out / "model.pt"


@pytest.mark.lava
def test_trained_model_passes_every_gate(trained: Path, tmp_path: Path):
    report = validate(trained, ValidateConfig(samples=200, lava_samples=2, deploy_out=str(tmp_path / "cert")),
                      progress=False)
    assert {k: g["passed"] for k, g in report["gates"].items()} == {
        "deployment_from_model": True, "nir_equals_float": True, "float_accuracy": True, "layers_alive_float": True,
        "layers_alive_chip": True, "decision_agreement": True, "lava_equals_chip": True}
    for g in report["gates"].values():
        assert {"value", "threshold", "op", "meaning"} <= set(g)
    assert report["passed"] and report["lava"]["total_differences"] == 0
    # identity: the certified directory is on disk, named by hash, and records the model.pt it came from
    ident = report["identity"]
    assert ident["deploy_dir"]["path"] == str(tmp_path / "cert")
    assert ident["deploy_dir"]["files"]["params.npz"] == sha256_file(tmp_path / "cert" / "params.npz")
    assert ident["model"]["sha256"] == sha256_file(trained) == report["identity"]["manifest_source"]["sha256"]
    assert len(ident["data"]["sha256"]) == 64
    chip = report["chip"]
    assert set(chip["spike_agreement"]) == {"fc1", "fc2"}
    assert chip["float_accuracy"] > 0.8 and abs(chip["chip_accuracy"] - chip["float_accuracy"]) < 0.05
    assert report["resources"]["neurons"] == 48 + 24 + 10
    paths = write_plots(report, tmp_path / "plots")
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.lava
def test_wide_weights_are_certified_like_8_bit_ones(trained: Path, tmp_path: Path):
    """snn-validate --weights wide: the certified directory holds both synapse sets, Lava runs both, every gate
    passes, and the chip follows the float model at least as closely as with 8-bit weights."""
    narrow = validate(trained, ValidateConfig(samples=200, lava_samples=0, deploy_out=str(tmp_path / "n")),
                      progress=False)
    wide = validate(trained, ValidateConfig(samples=200, lava_samples=2, weights="wide",
                                            deploy_out=str(tmp_path / "w")), progress=False)
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert all(isinstance(p["low_exp"], int) for s in man["stages"] for p in s["inputs"])
    assert wide["passed"] and wide["gates"]["lava_equals_chip"]["passed"] and wide["lava"]["total_differences"] == 0
    assert wide["resources"]["synapses"] > narrow["resources"]["synapses"]
    assert min(wide["chip"]["spike_agreement"].values()) >= min(narrow["chip"]["spike_agreement"].values())


@pytest.mark.lava
def test_corrupted_lava_graph_fails_and_names_the_layer(trained: Path, monkeypatch):
    import snnchip.deploy as deploy

    real_build = deploy.build

    def corrupted_build(dep):
        """Change one weight of the second stage in the Lava graph only (the simulator keeps the original)."""
        stages = list(dep.qnet.stages)
        (p,) = stages[1].inputs
        w = p.weight.copy()
        w[0, np.argmax(np.abs(w[0]))] += 64
        stages[1] = dataclasses.replace(stages[1], inputs=(dataclasses.replace(p, weight=w),))
        return real_build(dataclasses.replace(dep, qnet=dataclasses.replace(dep.qnet, stages=tuple(stages))))

    monkeypatch.setattr(deploy, "build", corrupted_build)
    report = validate(trained, ValidateConfig(samples=60, lava_samples=4), progress=False)
    assert not report["passed"] and report["gates"]["lava_equals_chip"]["passed"] is False
    assert report["lava"]["first_differing_layer"] == "fc2"
    assert report["lava"]["differences"]["fc1"] == {"spikes": 0, "u": 0, "v": 0}


@pytest.mark.lava
@pytest.mark.slow
def test_cli_exit_codes_json_and_table(trained: Path, tmp_path: Path):
    exe = Path(sys.executable).parent / "snn-validate"
    js = tmp_path / "r.json"
    res = subprocess.run([exe, str(trained), "--samples", "200", "--lava-samples", "1", "--json", str(js),
                          "--plots", str(tmp_path / "p")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "result: PASSED" in res.stdout and "chip vs Lava fixed_pt" in res.stdout
    data = json.loads(js.read_text())
    assert data["passed"] and "_plot_data" not in data
    strict = subprocess.run([exe, str(trained), "--samples", "60", "--lava-samples", "0",
                             "--min-accuracy", "1.0"], capture_output=True, text=True)
    assert strict.returncode == 1 and "FAIL" in strict.stdout and "float_accuracy" in strict.stdout
    nonsense = subprocess.run([exe, str(trained), "--min-agreement", "1.01"], capture_output=True, text=True)
    assert nonsense.returncode == 2 and "--min-agreement must be in [0, 1]" in nonsense.stderr
    missing = subprocess.run([exe, str(tmp_path / "nope.pt")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such model.pt" in missing.stderr


def _digits_mlp(theta: float = 1.0, silence_fc2: bool = False, zero_out: bool = False):
    """An untrained digits MLP 64-32-16-10 whose weights are scaled so that layers fire (or not) on purpose."""
    import torch

    import snnchip

    torch.manual_seed(0)
    model = snnchip.build_model(snnchip.model_spec("mlp", (64,), 10, T=4, hidden=(32, 16),
                                                  neuron=snnchip.NeuronSpec(theta=theta)))
    with torch.no_grad():
        model.fc1.weight.mul_(4.0)
        model.fc2.weight.mul_(4.0)
        if silence_fc2:  # fc1 fires, fc2 never does
            model.fc2.weight.zero_()
            model.fc2.bias.fill_(-1.0)
        if zero_out:
            model.out.weight.zero_()
            model.out.bias.zero_()
    return model


@pytest.mark.parametrize("case,gate_name", [
    ("dead", "layers_alive_float"),        # nothing fires anywhere: agreement would be trivially 1
    ("chance", "float_accuracy"),          # layers fire but the readout is constant: chance-level decisions
    ("one_silent_layer", "layers_alive_float"),
])
def test_networks_that_prove_nothing_fail_by_gate(case, gate_name, capsys):
    model = {"dead": lambda: _digits_mlp(theta=1e4), "chance": lambda: _digits_mlp(zero_out=True),
             "one_silent_layer": lambda: _digits_mlp(silence_fc2=True)}[case]()
    report = validate(model, ValidateConfig(samples=120, lava_samples=0), progress=False)
    assert not report["passed"]
    assert report["gates"][gate_name]["passed"] is False, report["gates"]
    if case != "chance":
        assert report["gates"][gate_name]["layer"] == ("fc1" if case == "dead" else "fc2")
    print_table(report)
    out = capsys.readouterr().out
    assert "FAIL" in out and "result: FAILED" in out and gate_name in out.splitlines()[-1]


def test_cli_exits_non_zero_on_a_dead_network(tmp_path, capsys):
    from snnchip.checkpoint import save_checkpoint
    from snnchip.cli import validate as snn_validate

    model = _digits_mlp(theta=1e4)
    ckpt = save_checkpoint(tmp_path / "dead.pt", model.spec, model.state_dict(), metrics={})
    assert snn_validate([str(ckpt), "--samples", "100", "--lava-samples", "0", "--json", str(tmp_path / "r.json")]) == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["gates"]["layers_alive_float"]["passed"] is False and data["gates"]["layers_alive_float"]["threshold"]
    assert "layers_alive_float" in capsys.readouterr().out


@pytest.mark.lava
def test_deploy_dir_is_checked_against_its_model(trained: Path, tmp_path: Path):
    """--model derives the deployment again and compares it bit for bit: the same weights in another file pass (the
    recorded hash is only noted), a model with one weight changed fails naming the stage and field."""
    from snnchip.checkpoint import load_checkpoint, save_checkpoint
    from snnchip.cli import export

    assert export([str(trained), "--target", "loihi", "-o", str(tmp_path / "dep")]) == 0
    cfg = {"samples": 60, "min_agreement": 0.9}
    ok = validate(tmp_path / "dep", ValidateConfig(model=str(trained), lava_samples=1, **cfg), progress=False)
    assert ok["gates"]["deployment_from_model"]["passed"] and ok["gates"]["deployment_sealed"]["passed"]
    assert ok["passed"] and ok["provenance"]["recorded_is_this_model"]
    ck = load_checkpoint(trained)
    save_checkpoint(tmp_path / "same.pt", ck.spec, ck.state_dict, metrics={"note": "a different file"})
    same = validate(tmp_path / "dep", ValidateConfig(model=str(tmp_path / "same.pt"), lava_samples=0, **cfg),
                    progress=False)
    assert same["gates"]["deployment_from_model"]["passed"] and not same["provenance"]["recorded_is_this_model"]
    edited = {k: v.clone() for k, v in ck.state_dict.items()}
    edited["fc2.weight"][0, 0] += 0.25
    save_checkpoint(tmp_path / "other.pt", ck.spec, edited, metrics={})
    bad = validate(tmp_path / "dep", ValidateConfig(model=str(tmp_path / "other.pt"), lava_samples=0, **cfg),
                   progress=False)
    g = bad["gates"]["deployment_from_model"]
    assert not g["passed"] and not bad["passed"] and g["value"] >= 1
    assert "stage 'fc2' (chip), inputs[0], weight: 1 of" in g["meaning"], g["meaning"]


def test_lava_samples_are_stratified_over_the_classes():
    from snnchip.workflows.validate import stratified_order

    y = np.array([3, 3, 3, 1, 1, 0, 3, 0, 2])
    order = stratified_order(y)
    assert sorted(order.tolist()) == list(range(len(y)))
    assert sorted(y[order[:4]].tolist()) == [0, 1, 2, 3]  # the first four cover every class once
    assert y[order[4:7]].tolist() == [0, 1, 3]  # then the second of every class that has one


@pytest.mark.lava
def test_lava_budget_sets_the_number_of_samples(trained: Path, tmp_path: Path):
    report = validate(trained, ValidateConfig(samples=100, lava_budget=1e-6, deploy_out=str(tmp_path / "c")),
                      progress=False)
    assert report["lava"]["samples"] == 1 and "as many as" in report["lava"]["selection"]


def test_rung_1_tolerates_spikes_flipped_at_the_threshold_and_nothing_more():
    """Outputs within the tolerance pass; beyond it, a few flipped spike values (float32 rounding at a threshold)
    pass and many, or a spiking layer missing on one side, fail."""
    from types import SimpleNamespace

    import torch

    from snnchip.workflows.validate import NIR_FLIPS, nir_equals_float

    rng = np.random.default_rng(0)
    spikes = {"fc1": rng.random((4, 8, 50_000)) < 0.3}
    out = rng.normal(0, 1, (4, 8, 3))

    def ref(e_out, e_spikes):
        run = lambda xs: (out, spikes)  # noqa: E731
        return SimpleNamespace(run=run, executor=SimpleNamespace(
            run=lambda xs: SimpleNamespace(output=e_out, spikes=e_spikes)))

    xs = torch.zeros(4, 8, 2)
    _, g = nir_equals_float(ref(out + 1e-7, spikes), xs)
    assert g["passed"] and g["value"] == pytest.approx(1e-7)
    one = {"fc1": spikes["fc1"].copy()}
    one["fc1"][0, 0, 0] ^= True  # one flip in 1.6e6 values: the outputs move by a weight
    entry, g = nir_equals_float(ref(out + 0.03, one), xs)
    assert g["passed"] and entry["spike_flips"] == 1 and g["value"] == 1 / spikes["fc1"].size <= NIR_FLIPS
    many = {"fc1": spikes["fc1"] ^ (rng.random(spikes["fc1"].shape) < 1e-3)}
    _, g = nir_equals_float(ref(out + 0.03, many), xs)
    assert not g["passed"] and "fraction of spike values that differ" in g["meaning"]
    _, g = nir_equals_float(ref(out + 0.03, {"fc2": spikes["fc1"]}), xs)
    assert not g["passed"] and "their spiking layers differ" in g["meaning"]


def test_neurobench_metrics_batch_by_batch_equal_the_whole_set():
    """snn-validate adds the metrics batch by batch (no whole-set arrays): sums over samples, so any split gives the
    whole set's values; a per-batch average of averages would not (the batches here are 3 and 7 samples)."""
    from nir_nets import conv_graph

    from snnchip.export.loihi import deployment_from_graph
    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.hw_sim.metrics import LoihiChipMetrics, float_metrics

    g = conv_graph(T=4, seed=5)
    x = np.random.default_rng(6).uniform(0, 1, (4, 10, 1, 8, 8)) * (np.arange(10) < 4)[None, :, None, None, None]
    whole = float_metrics(g, x, batch_size=10)
    assert float_metrics(g, x, batch_size=3) == pytest.approx(whole, rel=1e-12)
    dep = deployment_from_graph(g)
    sim = ChipSimulator(dep)
    one, split = LoihiChipMetrics(dep.qnet), LoihiChipMetrics(dep.qnet)
    res = sim.run(x)
    one.add(x, res.spikes, {k: res.states[k]["v"] for k in res.spikes})
    for sl in (slice(0, 3), slice(3, 10)):
        part = sim.run(x[:, sl])
        split.add(x[:, sl], part.spikes, {k: part.states[k]["v"] for k in part.spikes})
    assert split.result() == pytest.approx(one.result(), rel=1e-12)
    assert 0 < one.result()["activation_sparsity"] < 1 and one.result()["Effective_ACs"] > 0
