"""The bit-exact chip simulator without Lava: exactness on representable networks, timing, errors."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lava_harness import assert_same_run
from nir_nets import conv_graph, mlp_graph

from snnchip.deploy.fixed_point import dense_fixed, effective_weights
from snnchip.errors import DeployError
from snnchip.export.loihi import deployment_from_graph
from snnchip.hw_sim.chip import ChipSimulator


def _float_reference(net, x):
    """The float equations, step by step over the lowered graph: I_n[t] = Σ_p W_p·x_src[t − d_p] + b_n;
    u = λ·v + I; spikes by the stage's compare; reset; the readout's running sum."""
    T, B = x.shape[:2]
    out = {"input": x.reshape(T, B, -1)}
    out.update({st.name: np.zeros((T, B, st.size)) for st in net.stages})
    v = {st.name: np.zeros((B, st.size)) for st in net.stages}
    for t in range(T):
        for st in net.stages:
            current = st.bias + sum(out[p.source][t - p.delay] @ np.asarray(
                p.weight.toarray() if sp.issparse(p.weight) else p.weight).T for p in st.inputs if t >= p.delay)
            u = st.lam * v[st.name] + current
            if st.spiking:
                fired = u >= st.theta if st.spike == "ge" else u > st.theta
                v[st.name] = u - st.theta * fired if st.reset == "subtract" else u * (1 - fired)
                out[st.name][t] = fired
            else:
                v[st.name] = out[st.name][t] = u
    return out[net.output], {st.name: out[st.name].astype(bool) for st in net.stages if st.spiking}


def _binary_grid_graph(lam, reset, T=5, seed=0):
    """Weights, biases on a 1/8 grid, θ = 1: exactly representable in Loihi fixed point."""
    g = mlp_graph((6, 10, 4), T=T, seed=seed, lam=lam, reset=reset)
    rng = np.random.default_rng(seed)
    for name, n_out, n_in in (("fc1", 10, 6), ("fc2", 4, 10)):
        g.nodes[name] = nir.Affine(weight=rng.integers(-8, 9, (n_out, n_in)) / 8,
                                   bias=rng.integers(-2, 3, n_out) / 8)
    return g


@pytest.mark.parametrize("lam,reset", [(1.0, "subtract"), (0.5, "subtract"), (0.5, "zero")])
def test_exactly_representable_network_equals_float_semantics(lam, reset):
    dep = deployment_from_graph(_binary_grid_graph(lam, reset))
    assert all(p["max_abs_weight_error"] == 0 and r["max_abs_bias_error"] == 0
               for r in dep.qnet.report for p in r["projections"])
    x = np.random.default_rng(1).integers(0, 257, (5, 8, 6)) / 256  # on the 8-bit input grid
    res = ChipSimulator(dep).run(x)
    out, spikes = _float_reference(dep.net, x)
    for k, s in spikes.items():
        np.testing.assert_array_equal(res.spikes[k], s, err_msg=k)
    np.testing.assert_array_equal(res.output, out)
    assert res.spikes["fc1"].any() and not res.spikes["fc1"].all()


def test_lava_timing_is_software_timing_shifted_by_latency():
    dep = deployment_from_graph(mlp_graph((6, 8, 5, 3), T=4, seed=2, gain=2.5))
    x = np.random.default_rng(3).uniform(0, 1, (4, 2, 6))
    sw, lv = ChipSimulator(dep).run(x), ChipSimulator(dep).run(x, timing="lava")
    assert lv.output.shape == (4 + 3, 2, 3) and sw.latency == {"fc1": 1, "fc2": 2, "fc3": 3}
    for name, k in sw.latency.items():
        np.testing.assert_array_equal(lv.states[name]["v"][k:k + 4], sw.states[name]["v"])
        assert not lv.states[name]["v"][:k].any()
    np.testing.assert_array_equal(lv.output_raw[3:], sw.output_raw)


def test_dense_reproduces_lavas_weight_truncation():
    w = np.array([[203, -3, 0], [255, 7, -256]])
    np.testing.assert_array_equal(effective_weights(w), [[202, -4, 0], [254, 6, -256]])
    np.testing.assert_array_equal(effective_weights(np.array([[203, 7]])), [[203, 7]])
    np.testing.assert_array_equal(effective_weights(np.array([[-203, -7]])), [[-203, -7]])
    s = np.array([[1, 0, 1]])
    np.testing.assert_array_equal(dense_fixed(effective_weights(w), -1, s), [[101, -1]])


@pytest.mark.parametrize("sign", [1, -1, 0])
def test_sparse_weights_give_the_dense_integers(sign):
    """CSR (Lava Sparse) and dense (Lava Dense): same clip/truncation by sign mode, same exact sum and floor shift."""
    rng = np.random.default_rng(4)
    w = rng.integers(-256, 256, (7, 11)) * (rng.uniform(size=(7, 11)) < 0.3)
    w = np.abs(w) if sign == 1 else -np.abs(w) if sign == -1 else w
    csr = effective_weights(sp.csr_matrix(w))
    assert sp.issparse(csr) and csr.nnz == np.count_nonzero(effective_weights(w))
    np.testing.assert_array_equal(csr.toarray(), effective_weights(w))
    for s in (rng.integers(0, 2, (3, 5, 11)).astype(bool), rng.integers(-2**20, 2**20, (4, 11))):
        for e in (-7, 0, 3):
            np.testing.assert_array_equal(dense_fixed(csr, e, s), dense_fixed(effective_weights(w), e, s))


def test_a_torch_tensor_with_a_graph_is_taken_as_its_values():
    dep = deployment_from_graph(_binary_grid_graph(0.5, "subtract"))
    x = np.random.default_rng(2).integers(0, 257, (5, 3, 6)) / 256
    ref = ChipSimulator(dep).run(x)
    got = ChipSimulator(dep).run(torch.tensor(x, dtype=torch.float32, requires_grad=True))
    for k in ref.spikes:
        np.testing.assert_array_equal(got.spikes[k], ref.spikes[k])
    np.testing.assert_array_equal(got.output, ref.output)


def test_bad_input_shape_names_the_expected_one():
    dep = deployment_from_graph(mlp_graph((6, 8, 3), T=4))
    with pytest.raises(DeployError, match=r"expected \[T=4, batch ≥ 1, \*\(6,\)\]"):
        ChipSimulator(dep).run(np.zeros((4, 2, 5)))


BAD_INPUTS = {
    "nan": (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x),
            r"1 NaN or infinite value\(s\), the first at index \(0, 1, 1\)"),
    "inf": (lambda x: x + np.inf, r"48 NaN or infinite value\(s\), the first at index \(0, 0, 0\)"),
    "zero batch": (lambda x: x[:, :0], r"input has shape \(4, 0, 6\); expected \[T=4, batch ≥ 1"),
    "empty": (lambda x: np.zeros(0), r"input has shape \(0,\); expected"),
    "strings": (lambda x: np.array([["a"]]), "input is not an array of real numbers"),
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS))
def test_inputs_the_chip_cannot_take_are_refused_by_name(bad):
    """NaN would be encoded as an arbitrary integer (the chip and Lava then disagree), a zero batch as nothing."""
    dep = deployment_from_graph(mlp_graph((6, 8, 3), T=4))
    make, message = BAD_INPUTS[bad]
    with pytest.raises(DeployError, match=message):
        ChipSimulator(dep).run(make(np.full((4, 2, 6), 0.5)))


def test_chip_equals_nir_reference_executor_on_an_exported_spec():
    """Rung 3 vs rung 2 of the equivalence ladder on parameters that fixed point represents exactly."""
    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.export.nir_export import spec_to_nir
    from snnchip.spec import LayerSpec, NetworkSpec, NeuronSpec

    spec = NetworkSpec(input_shape=(1, 6, 6), T=4, num_classes=3, layers=(
        LayerSpec("conv1", "conv2d", out_channels=2, kernel_size=3, padding=1, neuron=NeuronSpec(lam=0.5)),
        LayerSpec("pool1", "avgpool", kernel_size=2),
        LayerSpec("flat", "flatten"),
        LayerSpec("fc2", "linear", out_features=3, neuron=NeuronSpec(kind="readout"))))
    rng = np.random.default_rng(11)
    params = {"conv1": {"weight": rng.integers(-8, 9, (2, 1, 3, 3)) / 8, "bias": rng.integers(-2, 3, 2) / 8},
              "fc2": {"weight": rng.integers(-8, 9, (3, 18)) / 8, "bias": rng.integers(-2, 3, 3) / 8}}
    graph = spec_to_nir(spec, params)
    x = rng.integers(0, 257, (4, 3, 1, 6, 6)) / 256
    ref = NIRExecutor(graph, dtype=torch.float64).run(x)
    chip = ChipSimulator(deployment_from_graph(graph)).run(x)
    np.testing.assert_array_equal(chip.spikes["conv1"], ref.spikes["conv1"].numpy().astype(bool))
    np.testing.assert_array_equal(chip.output, ref.output.numpy())
    assert chip.spikes["conv1"].any()


@pytest.mark.parametrize("timing", ["software", "lava"])
def test_samples_run_in_chunks_give_the_same_bits(timing):
    for graph in (mlp_graph((6, 8, 3), T=4, seed=2, gain=2.5), conv_graph((1, 8, 8), (2, 3), 3, T=3, seed=2)):
        dep = deployment_from_graph(graph)
        x = np.random.default_rng(3).uniform(0, 1, (dep.T, 10, *dep.qnet.input_shape))
        whole, parts = ChipSimulator(dep).run(x, timing), ChipSimulator(dep).run(x, timing, chunk=3)
        assert_same_run(whole, parts)
        np.testing.assert_array_equal(whole.output_raw, parts.output_raw)
        lean = ChipSimulator(dep).run(x, timing, states=False, chunk=4)
        assert lean.states == {} and lean.spikes.keys() == whole.spikes.keys()
        np.testing.assert_array_equal(lean.output_raw, whole.output_raw)
        for k, s in whole.spikes.items():
            np.testing.assert_array_equal(lean.spikes[k], s)


def test_without_states_memory_is_bounded_by_the_chunk_not_the_batch():
    """4096 samples of a 32-256-10 net over T + depth = 10 steps: u and v of every stage would be 2·10·4096·266
    int64 = 174 MB; without them the run keeps the outputs (spikes 8·4096·256 bool = 8 MB, output 2·2.6 MB) and
    one chunk's buffers."""
    import tracemalloc

    dep = deployment_from_graph(mlp_graph((32, 256, 10), T=8, seed=1))
    x = np.random.default_rng(0).uniform(0, 1, (8, 4096, 32))
    tracemalloc.start()
    try:
        ChipSimulator(dep).run(x, states=False, chunk=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"
