"""--profile xylo: Xylo's neuron in training (several spikes per step, a synaptic current, bit-shift decays), its NIR
form run by the executor, on Loihi 2 (the spike count as a graded message) and in ONNX, the size checks before
training, and the certificate of a trained net: float and Xylo agree (configs/xylo.toml's run)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import model_graph
from snnchip.neurons import cuba_lif_step, lif_step, spike_count
from snnchip.spec import NeuronSpec
from snnchip.train import SpikingNet, mlp, mlp_feedback, simulate
from snnchip.train.rules import gradients
from snnchip.train.xylo_neuron import XyloNeuron

XYLO = NeuronSpec(kind="xylo", lam=0.5, tau_s=2.0)


def test_spike_count_by_hand():
    # u = 0.5, 1, 3.5, 40 with θ = 1: 0, 1, 3 spikes and the cap 31; v = u − s·θ
    u = np.array([0.5, 1.0, 3.5, 40.0])
    assert spike_count(u, 1.0, 31).tolist() == [0, 1, 3, 31]
    _, s, v = lif_step(np.zeros(4), u, a=0.5, theta=1.0, max_spikes=31)
    assert s.tolist() == [0, 1, 3, 31] and v.tolist() == [0.5, 0.0, 0.5, 9.0]
    assert spike_count(torch.tensor([2.5]), 0.5, 31).tolist() == [5.0]


def test_training_neuron_is_the_neuron_equation_and_has_a_gradient():
    p = XyloNeuron.from_spec(XYLO)
    x = torch.randn(6, 5, 10, dtype=torch.float64) * 2 + 1
    w = torch.ones(1, requires_grad=True, dtype=torch.float64)
    state, i, v, total = None, torch.zeros(5, 10, dtype=torch.float64), torch.zeros(5, 10, dtype=torch.float64), 0
    for t in range(6):
        s, state = p.step(w * x[t], state, t)
        _, s_ref, i, v = cuba_lif_step(i, v, x[t].detach(), a_syn=0.5, b_syn=1.0, a=0.5, theta=1.0, max_spikes=31)
        torch.testing.assert_close(s.detach(), s_ref)
        torch.testing.assert_close(state[1].detach(), v)
        total = total + s.sum()
    assert s_ref.max() > 1  # several spikes per step happened
    total.backward()
    assert w.grad is not None and w.grad.abs() > 0


@pytest.fixture(scope="module")
def xylo_net() -> SpikingNet:
    torch.manual_seed(0)
    spec = mlp_feedback((8,), 8, 8, neuron=XYLO, hidden=(20,))
    return SpikingNet(dataclasses.replace(spec, layers=tuple(dataclasses.replace(la, bias=False)
                                                             for la in spec.layers)))


def test_model_equals_its_nir_graph_on_the_executor(xylo_net):
    graph = model_graph(xylo_net)
    meta = graph.nodes["fc1_neuron"].metadata["snnchip"]
    assert meta["kind"] == "xylo" and meta["max_spikes"] == 31
    x = torch.randint(0, 6, (8, 16, 8)).float()
    ours = simulate(xylo_net, x)
    ref = NIRExecutor(graph).run(x)
    assert np.asarray(ours.spikes["fc1"]).max() > 1
    np.testing.assert_allclose(np.asarray(ours.output), np.asarray(ref.output), rtol=1e-5, atol=1e-4)


@pytest.mark.lava
def test_loihi_runs_several_spikes_per_step_as_a_count_and_lava_equals_the_chip(xylo_net, tmp_path):
    """Xylo's neuron on Loihi 2: our CubaLIF sends s = min(⌊v/vth⌋, 31) as a graded count into 24-bit Dense
    messages (its own recurrence included); Lava equals the chip simulator on every spike and state, and the chip's
    decisions follow the float model's."""
    import sys
    from pathlib import Path

    from snnchip.deploy import build
    from snnchip.export.loihi import export_loihi, load_deploy
    from snnchip.hw_sim.chip import ChipSimulator

    sys.path.insert(0, str(Path(__file__).parent))
    from lava_harness import assert_same_run

    dep = load_deploy(export_loihi(model_graph(xylo_net), tmp_path / "d", input_range=6.0))
    fc1 = dep.qnet.stage("fc1")
    assert (fc1.max_spikes, fc1.reset, fc1.spike) == (31, "subtract", "ge") and dep.manifest["stages"][0][
        "process"] == "snnchip.CubaLIF"
    assert {p.source: p.num_message_bits for p in fc1.inputs}["fc1"] == 24  # counts, not binary spikes
    x = torch.randint(0, 6, (8, 16, 8)).double().numpy()
    assert_same_run(ChipSimulator(dep).run(x[:, :3], timing="lava"), build(dep).run(x[:, :3], timing="lava"))
    ref = simulate(xylo_net, torch.as_tensor(x, dtype=torch.float32))
    assert np.asarray(ref.spikes["fc1"]).max() > 1  # several spikes per step happen in the float model
    soft = ChipSimulator(dep).run(x)
    agree = float(np.mean(np.asarray(ref.output)[-1].argmax(-1) == soft.output[-1].argmax(-1)))
    assert agree >= 0.85, agree


def test_onnx_sends_the_spike_count_as_the_executor_does(xylo_net, tmp_path):
    """The ONNX export traces s = min(⌊u/θ⌋, 31)·H(u − θ) (Div then Floor) and equals the NIR executor."""
    pytest.importorskip("onnxruntime")
    from snnchip.export.onnx_export import onnx_model, run_onnx, write_onnx

    graph = model_graph(xylo_net)
    write_onnx(onnx_model(graph), tmp_path / "m.onnx")
    x = torch.randint(0, 6, (8, 16, 8)).float().numpy()
    got, want = run_onnx(tmp_path / "m.onnx", x), NIRExecutor(graph).run(x)
    assert want.spikes["fc1"].max() > 1
    np.testing.assert_array_equal(got.spikes["fc1"], want.spikes["fc1"].numpy())
    np.testing.assert_allclose(got.output, want.output.numpy(), atol=1e-4, rtol=0)


def test_a_count_of_spikes_per_step_by_hand():
    """fire_fixed with max_spikes: vth = 2 -> threshold 128 (<< 6); v = 127, 128, 255, 256, 2^23 − 1 (capped at
    31) -> counts 0, 1, 1, 2, 31, v − 128·count; a negative v sends nothing."""
    from snnchip.deploy.fixed_point import fire_fixed

    v = np.array([127, 128, 255, 256, 2**23 - 1, -500], dtype=np.int64)
    u, v2, s = fire_fixed(np.zeros(6, np.int64), v.copy(), 2, "subtract", "ge", max_spikes=31)
    assert s.tolist() == [0, 1, 1, 2, 31, 0]
    assert v2.tolist() == [127, 0, 127, 0, 2**23 - 1 - 31 * 128, -500]


@pytest.mark.parametrize("argv,match", [
    (["--method", "saf-f"], "saf-f does not train Xylo neurons"),
    (["--dataset", "digits"], "64 input channels do not fit Xylo"),
    (["--model", "mlp", "--hidden", "16,16"], "Xylo holds one hidden layer and a readout"),
])
def test_profile_refusals_before_training(argv, match, tmp_path, capsys):
    from snnchip.cli.snn_train import main

    base = {"--dataset": "digits-rows", "--model": "mlp-feedback", "--hidden": "16", "--method": "bptt"}
    for k, v in zip(argv[::2], argv[1::2], strict=True):
        base[k] = v
    args = [a for kv in base.items() for a in kv] + ["--profile", "xylo", "--T", "8", "--epochs", "1", "--out",
                                                     str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]
    assert not (tmp_path / "run" / "model.pt").exists()


def test_profile_sets_xylo_neuron():
    from snnchip.train.config import TrainConfig, neuron_for

    n = neuron_for(TrainConfig(dataset="digits-rows", method="bptt", profile="xylo", lam=0.7, tau_s=3.0, out="x"))
    assert n.kind == "xylo" and n.lam == 0.75 and n.lam_syn == 0.75  # onto the bit-shift grid: dash 2


@pytest.mark.slow
def test_a_net_trained_for_xylo_is_certified_on_xylo(tmp_path):
    """configs/xylo.toml's training and ladder: float accuracy = Xylo's within 1 point, decisions ≥ 99 %, xylosim
    equal on every spike and state."""
    xylosim_driver = pytest.importorskip("snnchip.hw_sim.xylosim_driver")
    if not xylosim_driver.available():
        pytest.skip("xylosim is not installed (make setup)")
    from snnchip.train import fit
    from snnchip.train.trainer import TrainConfig
    from snnchip.workflows.validate import ValidateConfig, validate

    cfg = TrainConfig(dataset="digits-rows", model="mlp-feedback", hidden="64", method="bptt", profile="xylo",
                      weight_decay=0.01, T=8, epochs=20, batch_size=64, seed=0, out=str(tmp_path), quiet=True)
    fit(cfg)
    report = validate(str(tmp_path / "model.pt"), ValidateConfig(dataset="digits-rows", target="xylo",
                                                                 lava_samples=20, min_agreement=0.99),
                      progress=False)
    chip = report["chip"]
    assert report["passed"], {k: g["value"] for k, g in report["gates"].items()}
    assert abs(chip["float_accuracy"] - chip["chip_accuracy"]) <= 0.01
    assert report["xylosim"]["total_differences"] == 0
    assert (tmp_path / "certified-xylo" / "manifest.json").is_file()


@pytest.mark.parametrize("method", ["sltt", "ottt-a"])
def test_online_rules_train_xylo_neurons_with_the_papers_gradient(method):
    """By hand, for Xylo's neuron (i = λ_syn·i + I, u = λ·v + i, up to 31 spikes): e_o[t] = ∂(CE(o[t], y)/T)/∂o[t],
    e_u[t] = (e_o[t] W_out) ⊙ σ'(u[t] − θ), ∇W_out = Σ_t e_o[t]ᵀ p_h[t], ∇W_in = Σ_t e_u[t]ᵀ p_x[t]. SLTT
    (arXiv:2302.14311, Eqs. 12–13): p = the step's own spikes (the input reaches u[t] through the current with factor
    1, nothing older is differentiated). OTTT_A (arXiv:2210.04195, Eq. 8): p = the presynaptic trace of the neuron's
    kernel, ĉ = λ_syn·ĉ + s, â = λ·â + ĉ. BPTT differs; SLTT-K with K = T is SLTT."""
    torch.manual_seed(3)
    spec = mlp((8,), 4, 5, neuron=XYLO, hidden=(6,))
    model = SpikingNet(dataclasses.replace(spec, layers=tuple(dataclasses.replace(la, bias=False)
                                                              for la in spec.layers))).double()
    x, y = (torch.rand(5, 7, 8, dtype=torch.float64) < 0.6).double() * 2.0, torch.randint(0, 4, (7,))  # [T, B, n]
    w_in, w_out = (p.detach() for p in model.parameters())
    assert w_in.shape == (6, 8) and w_out.shape == (4, 6)
    zeros = lambda n: torch.zeros(7, n, dtype=torch.float64)  # noqa: E731
    i, v, c_x, a_x, c_h, a_h = zeros(6), zeros(6), zeros(8), zeros(8), zeros(6), zeros(6)
    g_in, g_out, k = torch.zeros_like(w_in), torch.zeros_like(w_out), 4.0  # k: the sigmoid surrogate's slope
    for t in range(5):
        i = 0.5 * i + x[t] @ w_in.T
        u = 0.5 * v + i
        s = spike_count(u, 1.0, 31)
        v = u - s
        o = s @ w_out.T
        c_x, c_h = 0.5 * c_x + x[t], 0.5 * c_h + s
        a_x, a_h = 0.5 * a_x + c_x, 0.5 * a_h + c_h
        pre_x, pre_h = (x[t], s) if method == "sltt" else (a_x, a_h)
        e_o = (torch.softmax(o, -1) - torch.nn.functional.one_hot(y, 4)) / (5 * 7)
        g_out += e_o.T @ pre_h
        sg = torch.sigmoid(k * (u - 1.0))
        g_in += ((e_o @ w_out) * k * sg * (1 - sg)).T @ pre_x
    names = [n for n, _ in model.named_parameters()]
    got = gradients(model, x, y, method)
    torch.testing.assert_close(got[names[0]], g_in)
    torch.testing.assert_close(got[names[1]], g_out)
    assert s.max() > 1 and g_in.abs().sum() > 0  # several spikes per step, and a gradient that reaches W_in
    assert not torch.allclose(gradients(model, x, y, "bptt")[names[0]], g_in)
    if method == "sltt":
        torch.testing.assert_close(gradients(model, x, y, "sltt-k", k=5)[names[0]], g_in)
