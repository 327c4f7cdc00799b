"""EM-PF through NIR (issue 4 "EM-PF folded", issue 7 export): model.pt with membrane BN (random parameters and
running statistics, eval mode) -> folded -> nir.LIF/IF marked kind "empf" with per-step [T, C] arrays -> the
reference executor and ONNX reproduce ``simulate`` (output and every layer's graded spikes); tampered metadata,
the quantizer and a too-long input are refused by name."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from snnchip.checkpoint import save_checkpoint
from snnchip.errors import DataError, NIRFormatError, UnsupportedNodeError
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import interpretation_report, model_graph, spec_to_nir, write_nir
from snnchip.export.nir_graph import check_graph
from snnchip.export.nir_meta import EMPF_ARRAYS
from snnchip.export.nir_read import read_graph
from snnchip.spec import NeuronSpec

train = pytest.importorskip("snnchip.train")

T = 4
ATOL = 1e-5


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random λ, θ, α, β, BN affine and running statistics (not the initial values), so folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    u = lambda shape, lo, hi: lo + (hi - lo) * torch.rand(shape, generator=g)  # noqa: E731
    with torch.no_grad():
        for neuron in model.empf.values():
            for name, lo, hi in (("lam", 0.3, 1.1), ("theta", 0.1, 0.6), ("alpha", -0.3, 0.3), ("beta", 0.6, 1.4)):
                p = getattr(neuron, name, None)
                if p is not None:
                    p.copy_(u(p.shape, lo, hi))
            for bn in getattr(neuron, "bn", []):
                c = bn.num_features
                bn.weight.copy_(u(c, 0.5, 1.5))
                bn.bias.copy_(u(c, -0.3, 0.3))
                bn.running_mean.copy_(u(c, -0.5, 0.5))
                bn.running_var.copy_(u(c, 0.3, 2.0))


def _checkpoint(tmp_path, name: str, variant: str, seed: int):
    torch.manual_seed(seed)
    hidden = (16, 12) if name == "mlp" else ()
    spec = train.configure_empf(train.model_spec(name, (1, 8, 8), 4, T, NeuronSpec(lam=0.5, theta=0.3),
                                                 hidden=hidden), variant)
    model = train.build_model(spec)
    _randomise(model, seed)
    model.eval()
    path = save_checkpoint(tmp_path / f"{name}-{variant}.pt", spec, model.state_dict())
    return path, model


def _input(seed: int) -> torch.Tensor:
    return torch.rand(T, 5, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2


def _assert_same(got, want) -> float:
    """Output and every layer's graded spikes to ATOL; returns the largest difference."""
    assert got.interpretation is None  # every neuron followed metadata["snnchip"]
    assert set(got.spikes) == set(want.spikes)
    diffs = [float((got.output - want.output).abs().max())]
    for layer, s in want.spikes.items():
        torch.testing.assert_close(got.spikes[layer], s, atol=ATOL, rtol=0, msg=layer)
        diffs.append(float((got.spikes[layer] - s).abs().max()))
    torch.testing.assert_close(got.output, want.output, atol=ATOL, rtol=0)
    return max(diffs)


@pytest.mark.parametrize(("name", "variant", "seed"), [("mlp", "bn", 0), ("convnet", "bn", 1),
                                                        ("mlp", "parallel", 2), ("convnet", "learnable", 3)])
def test_model_pt_to_nir_executor_reproduces_simulate(name, variant, seed, tmp_path):
    path, model = _checkpoint(tmp_path, name, variant, seed)
    write_nir(model_graph(path), tmp_path / "m.nir")
    graph = read_graph(tmp_path / "m.nir")
    x = _input(seed)
    want = train.simulate(model, x)
    spiking = [la for la in model.spec.layers if la.neuron is not None and la.neuron.kind == "empf"]
    graded = [la.name for la in spiking if bool(((want.spikes[la.name] > 0) & (want.spikes[la.name] != 1)).any())]
    assert graded, "the random net must fire graded (non 0/1) spikes"
    params = train.plain_parameters(model)
    for la in spiking:
        node = graph.nodes[f"{la.name}_neuron"]
        assert isinstance(node, (nir.LIF, nir.IF))
        meta = node.metadata["snnchip"]
        assert meta["kind"] == "empf" and bool(meta["graded"]) and int(meta["T"]) == T
        for key in EMPF_ARRAYS:  # the [T, C] arrays survive nir.write / nir.read exactly
            assert np.asarray(meta[key]).shape == (T, node.v_threshold.shape[0])
            np.testing.assert_array_equal(np.asarray(meta[key]), params[la.name][key])
        if variant == "parallel":
            assert not np.asarray(meta["lam"]).any()  # λ̂ = 0: no membrane memory
    binary = [n for n, node in graph.nodes.items() if node.metadata.get("snnchip", {}).get("binary")]
    assert binary == [la.name for la in model.spec.layers if la.options.get("binary")] and binary
    for n in binary:  # ±1 (the κ_k of the variants with a membrane BN is in the input scale)
        assert np.all(np.abs(graph.nodes[n].weight) == 1), n
    report = "\n".join(interpretation_report(graph))
    assert "graded" in report and "per-step" in report and "reset offset" in report
    got = NIRExecutor(graph).run(x)
    _assert_same(got, want)
    assert got.states[f"{spiking[0].name}_neuron"].shape[:2] == (T, 5)
    # the folded model (from_plain) is the same network
    folded = train.from_plain(model.spec, params)
    _assert_same(NIRExecutor(spec_to_nir(train.plain_spec(model.spec), params)).run(x), train.simulate(folded, x))


def test_parallel_matches_simulate_parallel(tmp_path):
    path, model = _checkpoint(tmp_path, "convnet", "parallel", 4)
    x = _input(4)
    _assert_same(NIRExecutor(model_graph(path)).run(x), train.simulate_parallel(model, x))


def test_node_choice_first_step_values(tmp_path):
    """Step 1's λ̂, a, θ̂ in the NIR fields (Euler dt = 1): LIF when λ̂[1] < 1, IF when λ̂[1] ≥ 1 anywhere."""
    path, model = _checkpoint(tmp_path, "mlp", "learnable", 5)
    spec, params = train.plain_spec(model.spec), train.plain_parameters(model)
    params["fc1"]["lam"][0] = 0.75
    params["fc1"]["input_scale"][0] = 2.0
    params["fc2"]["lam"][0, 3] = 1.25
    graph = spec_to_nir(spec, params)
    lif, iff = graph.nodes["fc1_neuron"], graph.nodes["fc2_neuron"]
    assert isinstance(lif, nir.LIF) and isinstance(iff, nir.IF)
    np.testing.assert_allclose(1 - 1 / lif.tau, 0.75, rtol=1e-6)
    np.testing.assert_allclose(lif.r / lif.tau, 2.0, rtol=1e-6)
    np.testing.assert_array_equal(lif.v_threshold, params["fc1"]["theta"][0])
    np.testing.assert_array_equal(iff.r, params["fc2"]["input_scale"][0])
    assert any("IF" in line for line in interpretation_report(graph))
    x = _input(5)
    _assert_same(NIRExecutor(graph).run(x), train.simulate(train.from_plain(model.spec, params), x))


def _tamper(graph: nir.NIRGraph, change) -> nir.NIRGraph:
    meta = graph.nodes["fc1_neuron"].metadata["snnchip"]
    change(meta)
    return graph


@pytest.mark.parametrize(("change", "error"), [
    (lambda m: m.update(extra=1), UnsupportedNodeError),  # unknown key
    (lambda m: m.pop("reset_offset"), UnsupportedNodeError),  # missing key
    (lambda m: m.update(theta=np.zeros((T, 3), np.float32)), NIRFormatError),  # wrong C
    (lambda m: m.update(lam=np.zeros((T + 1, 16), np.float32)), NIRFormatError),  # wrong T
    (lambda m: m.update(lam=np.zeros(16, np.float32)), NIRFormatError),  # one value per channel, not per step
    (lambda m: m.update(input_scale=np.full((T, 16), np.nan, np.float32)), NIRFormatError),
    (lambda m: m.update(graded=False), UnsupportedNodeError),
    (lambda m: m.update(reset="zero"), UnsupportedNodeError),
    (lambda m: m.update(T=0), NIRFormatError),
])
def test_reader_refuses_tampered_empf_metadata(change, error, tmp_path):
    path, _ = _checkpoint(tmp_path, "mlp", "bn", 6)
    write_nir(_tamper(model_graph(path), change), tmp_path / "bad.nir")
    with pytest.raises(error, match="fc1_neuron"):
        read_graph(tmp_path / "bad.nir")
    with pytest.raises(error, match="fc1_neuron"):
        NIRExecutor(nir.read(tmp_path / "bad.nir", type_check=False))


def test_marked_node_on_another_neuron_type_is_refused(tmp_path):
    path, _ = _checkpoint(tmp_path, "mlp", "bn", 7)
    graph = model_graph(path)
    old = graph.nodes["fc1_neuron"]
    ones = np.ones(16, np.float32)
    graph.nodes["fc1_neuron"] = nir.CubaLIF(tau_syn=ones, tau_mem=ones * 2, r=ones, v_leak=0 * ones,
                                            v_threshold=ones, v_reset=0 * ones, w_in=ones, metadata=old.metadata)
    with pytest.raises(UnsupportedNodeError, match="fc1_neuron"):
        NIRExecutor(graph)


def test_too_many_steps_refused(tmp_path):
    path, _ = _checkpoint(tmp_path, "mlp", "bn", 8)
    ex = NIRExecutor(model_graph(path))
    with pytest.raises(DataError, match="per-step"):
        ex.run(torch.rand(T + 1, 2, 1, 8, 8))
    assert ex.run(torch.rand(T - 1, 2, 1, 8, 8)).output.shape == (T - 1, 2, 4)  # a prefix of the steps is fine


def test_lowering_takes_empf_with_its_tables(tmp_path):
    from snnchip.export.lowering import lower

    path, _ = _checkpoint(tmp_path, "mlp", "bn", 9)  # deployed and tested in tests/test_deploy_empf.py
    st = lower(model_graph(path)).stages[0]
    assert st.kind == "empf" and st.graded and st.tables["theta"].shape[1] == st.size


@pytest.mark.parametrize(("name", "variant", "seed"), [("mlp", "bn", 10), ("convnet", "bn", 11)])
def test_onnx_reproduces_executor_and_simulate(name, variant, seed, tmp_path):
    from snnchip.export.onnx_export import STEP_INPUT, onnx_model, run_onnx, write_onnx

    path, model = _checkpoint(tmp_path, name, variant, seed)
    graph = model_graph(path)
    model_onnx = onnx_model(graph)
    assert STEP_INPUT in [i.name for i in model_onnx.graph.input]
    write_onnx(model_onnx, tmp_path / "m.onnx")
    x = _input(seed)
    res = run_onnx(tmp_path / "m.onnx", x.numpy())
    ref = NIRExecutor(graph).run(x)
    want = train.simulate(model, x)
    np.testing.assert_allclose(res.output, ref.output.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(res.output, want.output.numpy(), atol=ATOL, rtol=0)
    for layer, s in want.spikes.items():
        np.testing.assert_allclose(res.spikes[layer], s.numpy(), atol=ATOL, rtol=0, err_msg=layer)
    with pytest.raises(DataError, match="per-step"):
        run_onnx(tmp_path / "m.onnx", _input(0).repeat(2, 1, 1, 1, 1).numpy())


def test_check_graph_accepts_written_graph(tmp_path):
    path, _ = _checkpoint(tmp_path, "convnet", "bn", 12)
    checked = check_graph(model_graph(path))
    assert checked.shapes["conv1_neuron"] == (16, 8, 8)


def test_empf_step_hand_computed_trace():
    """2 channels, 3 steps, by hand: m = λ̂[t]·v + a[t]·x; s = ReLU(m − θ̂[t]); v = m − s + r[t]."""
    from snnchip.export.nir_exec import compile_neuron
    from snnchip.neurons import neuron_step
    from snnchip.spec import Interpretation

    tables = {"lam": [[0.5, 0.5], [0.5, 2.0], [0.0, 1.0]], "theta": [[1.0, 0.5], [0.5, 0.5], [1.0, 0.0]],
              "input_scale": [[2.0, 1.0], [1.0, 1.0], [1.0, 0.5]], "reset_offset": [[0.0, 0.25], [0.5, 0.0],
                                                                                    [0.0, 0.0]]}
    meta = {"version": 1, "layer": "h", "kind": "empf", "T": 3, "graded": True, "reset": "subtract", "spike": "ge",
            "discretization": "euler", "dt": 1.0, **{k: np.asarray(v, np.float32) for k, v in tables.items()}}
    ones = np.ones(2, np.float32)
    node = nir.IF(r=ones, v_threshold=ones, v_reset=0 * ones, metadata={"snnchip": meta})
    p = compile_neuron("h", node, Interpretation(), torch.float64)
    x = torch.tensor([[1.0, 1.0], [0.5, 0.0], [1.0, 2.0]], dtype=torch.float64)
    # ch0: m=2, s=1, v=1 | m=.5+.5=1, s=.5, v=.5+.5=1 | m=0+1=1, s=0, v=1
    # ch1: m=1, s=.5, v=.5+.25=.75 | m=1.5, s=1, v=.5 | m=.5+1=1.5, s=1.5, v=0
    want_s = [[1.0, 0.5], [0.5, 1.0], [0.0, 1.5]]
    want_v = [[1.0, 0.75], [1.0, 0.5], [1.0, 0.0]]
    state = {"v": torch.zeros(1, 2, dtype=torch.float64)}
    for t in range(3):
        s, state = neuron_step(p, x[t][None], state, t)
        assert s[0].tolist() == want_s[t] and state["v"][0].tolist() == want_v[t], t
