"""The CUDA paths (``pytest -m cuda``; skipped without a GPU; ``python -m snnchip.bench.gpu`` runs them on one), each
against the reference its CPU test uses: the gradient identities and OTTT's hand-derived gradient
(tests/test_train_equations.py), compiled kernels = eager ones, mixed precision within a stated tolerance of float32,
every rule training digits, no host synchronisation inside the time loop, CUDA-graph replays = eager iterations and
``snn-train --cuda-graph`` = eager training within a stated tolerance,
``torchrun`` over NCCL = one process (tests/test_train_distributed.py), the chip simulator and the NIR executor on
CUDA tensors (the peer libraries' own spikes, tests/test_peer_graphs.py).

``SNNCHIP_CUDA_TESTS_DEVICE=cpu`` runs the tests that do not need CUDA itself on the CPU instead: a dry run of their
logic on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from nir_nets import conv_graph, mlp_graph
from test_peer_graphs import EXACT, _case
from test_train_distributed import one_process_torchrun
from test_train_equations import _assert_same_grads, data, ottt_reference, two_layer

from snnchip.bench.train import BENCH_METHODS
from snnchip.bench.train import _model as bench_model
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.nir_exec import NIRExecutor
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.spec import NeuronSpec
from snnchip.train import build_model, gradients, model_spec, simulate
from snnchip.train.config import SLTT_LAMBDA
from snnchip.train.data import load_dataset
from snnchip.train.neuron import compile_kernels
from snnchip.train.rules import iterate, run_iteration

DEVICE = torch.device(os.environ.get("SNNCHIP_CUDA_TESTS_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device")]
needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="a CUDA-only feature")
AMP_TOLERANCE = 0.03  # mixed precision may change at most 3 % of the digits test decisions (13 of 450)


@pytest.fixture(autouse=True)
def float32_convolutions():
    """cuDNN may run float32 convolutions in TF32 (10-bit mantissa) and pick algorithms that sum in a varying order;
    these tests compare float32 arithmetic, run to run."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic = old


def on_device(model, x, y):
    return model.to(DEVICE), x.to(DEVICE), y.to(DEVICE)


def digits(flat: bool, n: int = 128):
    ds = load_dataset("digits", flat=flat)
    return ds, ds.x_train[:n].to(DEVICE), ds.y_train[:n].to(DEVICE)


def conv_model(neuron: NeuronSpec, T: int = 4):
    ds, x, y = digits(flat=False)
    torch.manual_seed(0)
    return build_model(model_spec("convnet", ds.input_shape, ds.num_classes, T, neuron)).to(DEVICE), x, y


# ------------------------------------------------------------------------------- the equations, on CUDA
@pytest.mark.parametrize("lam", [0.5, 0.8])
def test_saf_e_equals_ottt_o_theorem1(kernels, lam):
    _assert_same_grads(*on_device(two_layer(lam=lam, T=6), *data()), "saf-e", "ottt-o", mse_alpha=0.05)


def test_saf_e_equals_ottt_o_on_a_conv_net(kernels):
    model, x, y = conv_model(NeuronSpec())
    with torch.no_grad():
        model.conv1.weight.mul_(4.0)
        model.conv2.weight.mul_(4.0)
    assert simulate(model, x).spikes["conv2"].sum() > 0
    _assert_same_grads(model, x, y, "saf-e", "ottt-o", mse_alpha=0.05)


def test_sltt_k_with_k_equal_to_t_is_sltt(kernels):
    model, x, y = on_device(two_layer(lam=SLTT_LAMBDA, surrogate="triangle", T=5), *data())
    g, g_k = gradients(model, x, y, "sltt"), gradients(model, x, y, "sltt-k", k=5, rng=random.Random(0))
    for name in g:
        torch.testing.assert_close(g_k[name], g[name], atol=0, rtol=0)


def test_ottt_gradient_is_the_hand_derived_sum(kernels):
    model, x, y = two_layer(lam=0.5, T=5), *data()
    ref, margin = ottt_reference(model, x, y, 0.5, 5)
    assert margin > 1e-4  # no spike decision within float32 rounding of the threshold: CPU and GPU fire alike
    for method in ("ottt-o", "ottt-a"):
        g = gradients(*on_device(model, x, y), method)
        for name, r in ref.items():
            torch.testing.assert_close(g[name].cpu(), r, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["bptt", "ottt-a", "sltt", "saf-e"])
def test_compiled_kernels_equal_eager_ones(method):
    """λ = 0.5: λ·v is exact, so u, and with it every spike, is the same whichever kernel rounds the sum."""
    model, x, y = conv_model(NeuronSpec(surrogate="triangle" if method == "sltt" else "sigmoid"))
    try:
        runs = []
        for compiled in (False, True):
            compile_kernels(compiled)
            runs.append((simulate(model, x).spikes, gradients(model, x, y, method, mse_alpha=0.05)))
    finally:
        compile_kernels(False)
    (s_eager, g_eager), (s_comp, g_comp) = runs
    for name in s_eager:
        assert torch.equal(s_comp[name], s_eager[name]), name
    for name in g_eager:
        torch.testing.assert_close(g_comp[name], g_eager[name], atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------- training
def _train(model, x, y, rule: str, iterations: int, lr: float, k: int = 1, amp: torch.dtype | None = None
           ) -> list[float]:
    """``iterations`` training iterations of ``rule`` on one batch (Adam, ``snn-train``'s update; under autocast with a
    gradient scaler for float16, as ``snn-train --amp``); the loss of each."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=amp == torch.float16)

    def step():
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    losses = []
    for i in range(iterations):
        with torch.autocast(DEVICE.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss, _ = run_iteration(model, x, y, rule, k=k, rng=random.Random(i), mse_alpha=0.05, step=step,
                                    backward=lambda lo: scaler.scale(lo).backward())
        losses.append(loss)
    return losses


@pytest.mark.parametrize("method", BENCH_METHODS)
def test_every_rule_trains_digits(method):
    ds, x, y = digits(flat=True)
    model, rule = bench_model("mlp", method, ds, 4, DEVICE)
    losses = _train(model, x, y, rule, 20, lr=3e-3)
    assert all(np.isfinite(losses)), losses
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses


@pytest.mark.parametrize("method", ["bptt", "ottt-a", "ottt-o", "sltt", "sltt-k", "saf-e", "saf-f", "empf", "edbp"])
def test_the_time_loop_never_waits_for_the_device(method):
    """``rules.iterate`` on a conv net with every host synchronisation an error (``torch.cuda.set_sync_debug_mode``):
    no ``.item()``, ``float(tensor)`` or data-dependent branch anywhere in the steps, backward or optimizer step."""
    ds, x, y = digits(flat=False)
    model, rule = bench_model("convnet", method, ds, 4, DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.step()
        opt.zero_grad(set_to_none=True)

    iterate(model, x, y, rule, k=2, rng=random.Random(0), mse_alpha=0.05, step=step)  # allocations, cuDNN plans
    if ON_CUDA:
        torch.cuda.set_sync_debug_mode("error")
    try:
        loss, score = iterate(model, x, y, rule, k=2, rng=random.Random(1), mse_alpha=0.05, step=step)
    finally:
        if ON_CUDA:
            torch.cuda.set_sync_debug_mode("default")
    assert loss.device.type == DEVICE.type and torch.isfinite(loss)


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_mixed_precision_keeps_the_decisions_on_digits(amp):
    """A conv net trained in float32 (ottt-a, 60 iterations on 512 digits: > 80 % test accuracy), evaluated on the 450
    test digits under autocast: at most
    ``AMP_TOLERANCE`` of the decisions change; and training ottt-a, sltt and bptt under autocast lowers the loss."""
    if not ON_CUDA and amp == torch.float16:
        pytest.skip("float16 autocast is a CUDA feature")
    ds, x, y = digits(flat=False, n=512)
    model, rule = bench_model("convnet", "ottt-a", ds, 4, DEVICE)
    _train(model, x, y, rule, 60, lr=5e-3)
    test_x = ds.x_test.to(DEVICE)
    ref = simulate(model, test_x).output[-1].argmax(-1)
    with torch.autocast(DEVICE.type, dtype=amp):
        low = simulate(model, test_x).output[-1].argmax(-1)
    accuracy = float((ref.cpu() == ds.y_test).float().mean())
    changed = float((low != ref).float().mean())
    assert accuracy > 0.8 and changed <= AMP_TOLERANCE, (accuracy, changed)
    for method in ("ottt-a", "sltt", "bptt"):
        model, rule = bench_model("convnet", method, ds, 4, DEVICE)
        losses = _train(model, x, y, rule, 15, lr=3e-3, amp=amp)
        assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3]), (method, losses)


@needs_cuda
def test_snn_train_amp_runs_on_cuda(tmp_path):
    from snnchip.train.trainer import TrainConfig, fit

    metrics = fit(TrainConfig(out=str(tmp_path), model="convnet", method="ottt-a", T=4, epochs=1, max_steps=10,
                              batch_size=64, amp=True, device="cuda", quiet=True))
    record = metrics["epochs"][-1]
    assert np.isfinite(record["train_loss"]) and record["peak_memory_kind"] == "cuda_allocated"


@needs_cuda
def test_torchrun_with_one_process_trains_through_nccl(tmp_path):
    assert one_process_torchrun(tmp_path, "cuda") == {"backend": "nccl", "world_size": 1}


# ------------------------------------------------------------------------------- CUDA graphs
@needs_cuda
@pytest.mark.parametrize("method", ["bptt", "ottt-a", "ottt-o", "sltt", "saf-e", "saf-f"])
def test_cuda_graph_replays_train_like_eager_iterations(kernels, method):
    """3 warm-up iterations + 3 replays of the captured iteration = 6 eager iterations, weights and last loss."""
    from snnchip.train.cuda_graph import GraphedIteration

    neuron = NeuronSpec(lam=SLTT_LAMBDA, surrogate="triangle") if method == "sltt" else NeuronSpec()
    runs = []
    for graphed in (False, True):
        model, x, y = conv_model(neuron)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)

        def step(opt=opt):
            opt.step()
            opt.zero_grad(set_to_none=True)

        if graphed:
            it = GraphedIteration(model, x, y, method, step=step, mse_alpha=0.05, warmup=3)
            loss = [it(x, y)[0] for _ in range(3)][-1]
        else:
            loss = [iterate(model, x, y, method, mse_alpha=0.05, step=step)[0] for _ in range(6)][-1]
        runs.append((float(loss), {k: v.detach().clone() for k, v in model.state_dict().items()}))
    (loss_e, w_e), (loss_g, w_g) = runs
    assert loss_g == pytest.approx(loss_e, rel=1e-5)
    for k in w_e:
        torch.testing.assert_close(w_g[k], w_e[k], atol=1e-6, rtol=1e-5)


GRAPH_LOSS_REL, GRAPH_ACC_ABS = 0.02, 0.02  # snn-train --cuda-graph vs eager: per-epoch train loss, test accuracy


@needs_cuda
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_snn_train_cuda_graph_trains_digits_like_eager(tmp_path, optimizer):
    """``--cuda-graph`` trains as eager training does: OTTT_A, MLP, T = 4, 2 epochs on 1344 digits (21 full batches of
    64, so both see the same batches); its optimizer runs capturable (Adam) or fused (SGD) with a tensor learning rate,
    which rounds differently: per-epoch train loss within 2 % and test accuracy within 2 points."""
    import dataclasses

    from snnchip.train.trainer import TrainConfig, fit

    ds = load_dataset("digits", flat=True)
    ds = dataclasses.replace(ds, x_train=ds.x_train[:1344], y_train=ds.y_train[:1344])
    runs = {graph: fit(TrainConfig(out=str(tmp_path / str(graph)), method="ottt-a", T=4, epochs=2, batch_size=64,
                                   optimizer=optimizer, device="cuda", cuda_graph=graph, quiet=True), ds)["epochs"]
            for graph in (False, True)}
    for eager, graph in zip(runs[False], runs[True], strict=True):
        assert graph["train_samples"] == eager["train_samples"] == 1344
        assert graph["train_loss"] == pytest.approx(eager["train_loss"], rel=GRAPH_LOSS_REL)
        assert abs(graph["test_acc"] - eager["test_acc"]) <= GRAPH_ACC_ABS
    assert runs[True][-1]["test_acc"] > 0.8


@needs_cuda
def test_snn_train_cuda_graph_leaves_out_the_partial_batch_and_resumes(tmp_path, capsys):
    """All 1347 digits at batch 64: 21 full batches (1344 samples) trained per epoch, the last 3 left out; a run
    stopped by --max-steps resumes (the learning-rate tensor back on the card) to the end of its epochs."""
    from snnchip.cli import train as snn_train

    args = ["--out", str(tmp_path), "--method", "sltt", "--T", "4", "--epochs", "2", "--batch-size", "64",
            "--device", "cuda", "--cuda-graph", "--quiet"]
    assert snn_train([*args, "--max-steps", "5"]) == 0
    assert snn_train([*args, "--resume"]) == 0
    epochs = json.loads((tmp_path / "metrics.json").read_text())["epochs"]
    assert [e["train_samples"] for e in epochs if e["complete"]][-1] == 1344 and epochs[-1]["steps"] == 42
    assert "test accuracy" in capsys.readouterr().out


# ------------------------------------------------------------------------------- chip simulator, NIR executor
def test_chip_simulator_takes_device_tensors():
    dep = deployment_from_graph(mlp_graph((6, 10, 4), T=5))
    x = torch.rand(5, 8, 6, generator=torch.Generator().manual_seed(0))
    ref = ChipSimulator(dep).run(x.numpy())
    got = ChipSimulator(dep).run(x.to(DEVICE).requires_grad_())
    for k in ref.spikes:
        np.testing.assert_array_equal(got.spikes[k], ref.spikes[k])
    np.testing.assert_array_equal(got.output, ref.output)
    assert ref.spikes["fc1"].any()


@pytest.mark.parametrize("name", EXACT)
def test_nir_executor_reproduces_the_peer_librarys_spikes(name):
    graph, interp, z = _case(name)
    res = NIRExecutor(graph, interp, device=DEVICE).run(z["x"])
    assert res.output.device.type == DEVICE.type
    keys = [k for k in z.files if k.startswith("spikes/")]
    for key in keys:
        np.testing.assert_array_equal(res.spikes[key[len("spikes/"):]].cpu().numpy(), z[key], err_msg=key)


def test_nir_executor_equals_its_cpu_run_on_a_conv_graph():
    graph = conv_graph((2, 8, 8), channels=(4, 6), T=6, seed=3)
    x = np.random.default_rng(0).uniform(size=(6, 5, 2, 8, 8))
    cpu = NIRExecutor(graph, dtype=torch.float64).run(x)
    dev = NIRExecutor(graph, dtype=torch.float64, device=DEVICE).run(torch.as_tensor(x, device=DEVICE))
    for k, s in cpu.spikes.items():
        assert torch.equal(dev.spikes[k].cpu(), s), k
    assert any(s.any() for s in cpu.spikes.values())
    torch.testing.assert_close(dev.output.cpu(), cpu.output, atol=1e-12, rtol=1e-12)
