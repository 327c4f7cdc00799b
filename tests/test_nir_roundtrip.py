"""spec + params -> NIR -> file -> read -> executor equals a hand-written loop of the LIF equations
(docs/architecture.md)."""

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import interpretation_report, spec_to_nir, write_nir
from snnchip.export.nir_read import read_graph
from snnchip.spec import FeedbackSpec, LayerSpec, NetworkSpec, NeuronSpec

OPTIONS = [(reset, spike, lam) for reset in ("subtract", "zero") for spike in ("ge", "gt")
           for lam in (0.5, 1.0, 1 - 1 / 1.1)]


def mlp_feedback(neuron: NeuronSpec) -> NetworkSpec:
    return NetworkSpec(input_shape=(6,), T=5, num_classes=3, model="mlp-fb", layers=(
        LayerSpec("h1", "linear", out_features=7, neuron=neuron),
        LayerSpec("h2", "linear", out_features=5, bias=False, neuron=neuron),
        LayerSpec("out", "linear", out_features=3, neuron=NeuronSpec(kind="readout"))),
        feedback=(FeedbackSpec("h2", "h1"), FeedbackSpec("h1", "h1")))


def convnet(neuron: NeuronSpec) -> NetworkSpec:
    return NetworkSpec(input_shape=(2, 6, 6), T=4, num_classes=4, model="conv", layers=(
        LayerSpec("c1", "conv2d", out_channels=3, kernel_size=3, padding=1, neuron=neuron),
        LayerSpec("p1", "avgpool", kernel_size=2),
        LayerSpec("c2", "conv2d", out_channels=4, kernel_size=2, stride=1, bias=False, neuron=neuron),
        LayerSpec("p2", "sumpool", kernel_size=2),
        LayerSpec("flat", "flatten"),
        LayerSpec("out", "linear", out_features=4, neuron=NeuronSpec(kind="readout"))))


def random_params(spec: NetworkSpec, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    params, shape = {}, spec.input_shape
    for layer in spec.layers:
        out = layer.output_shape(shape)
        if layer.op == "linear":
            params[layer.name] = {"weight": rng.normal(1.5 / shape[0], 1.5 / np.sqrt(shape[0]), (out[0], shape[0]))}
        elif layer.op == "conv2d":
            fan_in = shape[0] * layer.kernel_size ** 2
            size = (out[0], shape[0], layer.kernel_size, layer.kernel_size)
            params[layer.name] = {"weight": rng.normal(2 / fan_in, 1.5 / np.sqrt(fan_in), size)}
        if layer.synaptic and layer.bias:
            params[layer.name]["bias"] = rng.normal(0.3, 0.3, out[:1])
        shape = out
    sizes = dict(zip((la.name for la in spec.layers), spec.shapes(), strict=True))
    for fb in spec.feedback:
        params[f"feedback.{fb.key}"] = {"weight": rng.normal(0, 0.8, (sizes[fb.dst][0], sizes[fb.src][0]))}
    return {k: {f: v.astype(np.float32) for f, v in d.items()} for k, d in params.items()}


def reference(spec: NetworkSpec, params: dict, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """The LIF equations, written out: I = W x + b (+ W_fb s_src[t-1]); u = λ v + I; s = H(u − θ); reset; o summed."""
    T, B = x.shape[:2]
    v = {la.name: 0.0 for la in spec.layers}
    last = {la.name: None for la in spec.layers}
    spikes = {la.name: [] for la in spec.layers if la.neuron is not None and la.neuron.spiking}
    acc, outputs = 0.0, []
    for t in range(T):
        h = torch.as_tensor(x[t], dtype=torch.float64)
        cur_spikes = {}
        for layer in spec.layers:
            p = {k: torch.as_tensor(a, dtype=torch.float64) for k, a in params.get(layer.name, {}).items()}
            if layer.op == "linear":
                h = h @ p["weight"].T + (p["bias"] if "bias" in p else 0)
            elif layer.op == "conv2d":
                h = F.conv2d(h, p["weight"], p.get("bias"), stride=layer.effective_stride, padding=layer.padding)
            elif layer.op == "avgpool":
                h = F.avg_pool2d(h, layer.kernel_size, layer.effective_stride, layer.padding)
            elif layer.op == "sumpool":
                h = F.avg_pool2d(h, layer.kernel_size, layer.effective_stride, layer.padding) * layer.kernel_size ** 2
            else:
                h = h.reshape(B, -1)
            for fb in spec.feedback:
                if fb.dst == layer.name and last[fb.src] is not None:
                    w_fb = torch.as_tensor(params[f"feedback.{fb.key}"]["weight"], dtype=torch.float64)
                    h = h + last[fb.src] @ w_fb.T
            n = layer.neuron
            if n is None:
                continue
            if n.kind == "readout":
                acc = acc + h
                outputs.append(acc.numpy().copy())
                continue
            u = n.lam * v[layer.name] + h
            s = (u >= n.theta if n.spike == "ge" else u > n.theta).double()
            v[layer.name] = u - n.theta * s if n.reset == "subtract" else u * (1 - s)
            spikes[layer.name].append(s.numpy().copy())
            cur_spikes[layer.name] = s
            h = s
        last.update(cur_spikes)
    return np.stack(outputs), {k: np.stack(s) for k, s in spikes.items()}


def roundtrip(spec: NetworkSpec, params: dict, tmp_path) -> nir.NIRGraph:
    path = tmp_path / "model.nir"
    write_nir(spec_to_nir(spec, params), path)
    return read_graph(path)


@pytest.mark.parametrize("build", [mlp_feedback, convnet])
@pytest.mark.parametrize(("reset", "spike", "lam"), OPTIONS)
def test_executor_equals_hand_written_lif_loop(build, reset, spike, lam, tmp_path):
    spec = build(NeuronSpec(lam=lam, theta=0.9, reset=reset, spike=spike))
    params = random_params(spec, seed=OPTIONS.index((reset, spike, lam)))
    x = np.random.default_rng(1).uniform(0, 1.5, (spec.T, 3, *spec.input_shape))
    result = NIRExecutor(roundtrip(spec, params, tmp_path), dtype=torch.float64).run(x)
    want_out, want_spikes = reference(spec, params, x)
    np.testing.assert_allclose(result.output.numpy(), want_out, atol=1e-5, rtol=0)
    assert set(result.spikes) == set(want_spikes)
    for layer, s in want_spikes.items():
        np.testing.assert_array_equal(result.spikes[layer].numpy(), s, err_msg=layer)
    rates = [s.mean() for s in want_spikes.values()]
    assert all(0 < r < 1 for r in rates), f"test network must spike sometimes, rates {rates}"
    assert result.interpretation is None  # every neuron followed metadata["snnchip"]


def test_ge_and_gt_differ_at_threshold(tmp_path):
    """Exact input θ: ge fires every step, gt never on the first (guards a swapped comparison)."""
    def run(spike):
        spec = NetworkSpec(input_shape=(1,), T=3, num_classes=1, layers=(
            LayerSpec("h", "linear", out_features=1, bias=False, neuron=NeuronSpec(lam=0.5, spike=spike)),
            LayerSpec("out", "linear", out_features=1, bias=False, neuron=NeuronSpec(kind="readout"))))
        params = {"h": {"weight": np.ones((1, 1), np.float32)}, "out": {"weight": np.ones((1, 1), np.float32)}}
        return NIRExecutor(roundtrip(spec, params, tmp_path)).run(np.ones((3, 1, 1))).spikes["h"][:, 0, 0].tolist()

    assert run("ge") == [1, 1, 1]
    assert run("gt") == [0, 1, 1]  # u = 1, 1.5, 1.25 with subtract reset


def test_graph_follows_schema():
    neuron = NeuronSpec(lam=0.75, theta=1.25, reset="zero", spike="gt")
    spec = mlp_feedback(neuron)
    g = spec_to_nir(spec, random_params(spec, 0))
    assert isinstance(g.nodes["input"], nir.Input) and isinstance(g.nodes["output"], nir.Output)
    assert isinstance(g.nodes["h1"], nir.Affine) and isinstance(g.nodes["h2"], nir.Linear)
    lif = g.nodes["h1_neuron"]
    assert isinstance(lif, nir.LIF)
    np.testing.assert_allclose(lif.tau, 4.0)
    np.testing.assert_allclose(lif.r, 4.0)
    np.testing.assert_allclose(lif.v_threshold, 1.25)
    assert not lif.v_leak.any() and not lif.v_reset.any()
    assert isinstance(g.nodes["out_neuron"], nir.I) and isinstance(g.nodes["feedback_h2__h1"], nir.Linear)
    assert g.nodes["feedback_h2__h1"].weight.shape == (7, 5)
    assert ("h2_neuron", "feedback_h2__h1") in g.edges and ("feedback_h2__h1", "h1_neuron") in g.edges
    assert ("out_neuron", "output") in g.edges
    meta = lif.metadata["snnchip"]
    assert meta == {"version": 1, "layer": "h1", "kind": "lif", "lam": 0.75, "theta": 1.25, "reset": "zero",
                    "spike": "gt", "discretization": "euler", "dt": 1.0}
    gm = g.metadata["snnchip"]
    assert gm["version"] == 1 and gm["T"] == 5 and NetworkSpec.from_dict(json.loads(gm["spec_json"])) == spec
    assert isinstance(spec_to_nir(mlp_feedback(NeuronSpec(lam=1.0)), random_params(spec, 0)).nodes["h1_neuron"], nir.IF)


def test_interpretation_report_names_what_plain_nir_gets_wrong():
    spec = mlp_feedback(NeuronSpec(lam=0.5, reset="subtract", spike="ge"))
    text = "\n".join(interpretation_report(spec_to_nir(spec, random_params(spec, 0))))
    assert "subtractive reset" in text and "u >= θ" in text and "exact" in text and "previous step" in text


@pytest.mark.parametrize("option", [{"seca": "i"}])
def test_export_refuses_layers_it_cannot_express(option):
    """SECA's attention (a pooled, gated product) has no NIR node; residual shortcuts do (tests/test_general_graphs)."""
    from snnchip.errors import UnsupportedNodeError

    spec = NetworkSpec(
        input_shape=(4,), T=2, num_classes=3,
        layers=(LayerSpec("fc1", "linear", out_features=4, neuron=NeuronSpec()),
                LayerSpec("fc2", "linear", out_features=4, neuron=NeuronSpec(), options=option),
                LayerSpec("out", "linear", out_features=3, neuron=NeuronSpec(kind="readout"))))
    params = {n: {"weight": np.ones((o, 4), np.float32), "bias": np.zeros(o, np.float32)}
              for n, o in (("fc1", 4), ("fc2", 4), ("out", 3))}
    with pytest.raises(UnsupportedNodeError, match="fc2"):
        spec_to_nir(spec, params)
