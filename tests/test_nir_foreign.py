"""Foreign NIR graphs (shaped like snnTorch / Norse exports) read and run under an explicit Interpretation."""

import math

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import write_nir
from snnchip.export.nir_read import read_graph
from snnchip.spec import Interpretation


def two_neuron_graph() -> nir.NIRGraph:
    """Input(2) -> LIF(τ = 2, r = 2, v_leak = 0, θ = 1, v_reset = [0, −0.5]) -> Output: Euler a = 0.5, b = 1."""
    lif = nir.LIF(tau=np.array([2.0, 2.0]), r=np.array([2.0, 2.0]), v_leak=np.zeros(2),
                  v_threshold=np.ones(2), v_reset=np.array([0.0, -0.5]))
    return nir.NIRGraph(nodes={"in": nir.Input(np.array([2])), "lif": lif, "out": nir.Output(np.array([2]))},
                        edges=[("in", "lif"), ("lif", "out")], type_check=False)


# Hand-computed with inputs x = [0.625, 1.0] at every step (all values exact in binary):
#   neuron 0: u = 0.625, 0.9375, 1.09375 -> spikes only at t = 3 whatever the options.
#   neuron 1: u = 1 at t = 1 hits θ exactly: ge fires, gt does not.
TRACES = {  # (reset, compare): (spikes of neuron 1, v of neuron 1, v of neuron 0)
    ("subtract", "ge"): ([1, 1, 1], [0, 0, 0], [0.625, 0.9375, 0.09375]),
    ("zero", "ge"): ([1, 1, 1], [0, 0, 0], [0.625, 0.9375, 0]),
    ("v_reset", "ge"): ([1, 0, 1], [-0.5, 0.75, -0.5], [0.625, 0.9375, 0]),
    ("subtract", "gt"): ([0, 1, 1], [1, 0.5, 0.25], [0.625, 0.9375, 0.09375]),
    ("zero", "gt"): ([0, 1, 0], [1, 0, 1], [0.625, 0.9375, 0]),
    ("v_reset", "gt"): ([0, 1, 0], [1, -0.5, 0.75], [0.625, 0.9375, 0]),
}


@pytest.mark.parametrize(("reset", "compare"), list(TRACES))
def test_hand_computed_three_step_trace(reset, compare, tmp_path):
    write_nir(two_neuron_graph(), tmp_path / "g.nir")
    interp = Interpretation(reset=reset, compare=compare)
    x = np.tile(np.array([0.625, 1.0]), (3, 1, 1))
    result = NIRExecutor(read_graph(tmp_path / "g.nir"), interp, dtype=torch.float64).run(x)
    spikes1, v1, v0 = TRACES[(reset, compare)]
    assert result.spikes["lif"][:, 0, 1].tolist() == spikes1
    assert result.spikes["lif"][:, 0, 0].tolist() == [0, 0, 1]
    assert result.states["lif"][:, 0, 1].tolist() == v1
    assert result.states["lif"][:, 0, 0].tolist() == v0
    assert result.output[:, 0].tolist() == result.spikes["lif"][:, 0].tolist()
    assert result.interpretation == interp


def test_exact_discretization_and_dt():
    interp = Interpretation(dt=0.5, discretization="exact")
    result = NIRExecutor(two_neuron_graph(), interp, dtype=torch.float64).run(np.full((1, 1, 2), 0.625))
    a = math.exp(-0.5 / 2.0)
    assert result.states["lif"][0, 0, 0].item() == pytest.approx((1 - a) * 2.0 * 0.625, abs=1e-12)


def lif_chain(beta: float, theta: float, w1, b1, w2, b2, dt: float = 1.0) -> nir.NIRGraph:
    """snnTorch's Leaky export: τ = dt/(1 − β), r = τ/dt (snnTorch writes dt = 1e-4); Affine -> LIF -> Affine -> LIF."""
    def lif(n):
        tau = np.full(n, dt / (1 - beta))
        return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=np.full(n, theta), v_reset=np.zeros(n))
    nodes = {"input": nir.Input(np.array([w1.shape[1]])), "fc1": nir.Affine(w1, b1), "lif1": lif(w1.shape[0]),
             "fc2": nir.Affine(w2, b2), "lif2": lif(w2.shape[0]), "output": nir.Output(np.array([w2.shape[0]]))}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:], strict=False)), type_check=False)


@pytest.mark.parametrize("dt", [1.0, 1e-4])
def test_snntorch_leaky_chain_matches_hand_loop(dt, tmp_path):
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 1, (6, 4)), rng.normal(0.5, 0.2, 6)
    w2, b2 = rng.normal(0, 1, (3, 6)), rng.normal(0.5, 0.2, 3)
    write_nir(lif_chain(0.8, 1.0, w1, b1, w2, b2, dt), tmp_path / "snntorch.nir")
    x = rng.uniform(0, 1, (8, 5, 4))
    result = NIRExecutor(read_graph(tmp_path / "snntorch.nir"), Interpretation(dt=dt, reset="subtract"),
                         dtype=torch.float64).run(x)
    v1, v2, outs = np.zeros((5, 6)), np.zeros((5, 3)), []
    for t in range(8):  # Euler dt = 1: v = 0.8 v + I; spike on v > 1; v -= 1
        v1 = 0.8 * v1 + x[t] @ w1.T + b1
        s1 = (v1 > 1).astype(float)
        v1 -= s1
        v2 = 0.8 * v2 + s1 @ w2.T + b2
        s2 = (v2 > 1).astype(float)
        v2 -= s2
        outs.append(s2)
    np.testing.assert_allclose(result.output.numpy(), np.stack(outs), atol=1e-9)
    assert 0 < result.spikes["lif1"].mean() < 1


def recurrent_cubalif(w_in_fc, w_rec, alpha: float, beta: float, theta: float, edge_style: str) -> nir.NIRGraph:
    """snnTorch's RSynaptic export: a nested NIRGraph {input, lif: CubaLIF, w_rec, output} with a cycle."""
    n = w_rec.shape[0]
    tau_syn, tau_mem = np.full(n, 1 / (1 - alpha)), np.full(n, 1 / (1 - beta))
    cuba = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem.copy(), v_leak=np.zeros(n),
                       v_threshold=np.full(n, theta), v_reset=np.zeros(n), w_in=tau_syn.copy())
    sub = nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "lif": cuba, "w_rec": nir.Linear(w_rec),
                              "output": nir.Output(np.array([n]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
                       type_check=False)
    into, out_of = ("rsyn", "rsyn") if edge_style == "plain" else ("rsyn.input", "rsyn.output")
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([w_in_fc.shape[1]])), "fc": nir.Linear(w_in_fc),
                               "rsyn": sub, "output": nir.Output(np.array([n]))},
                        edges=[("input", "fc"), ("fc", into), (out_of, "output")], type_check=False)


@pytest.mark.parametrize("edge_style", ["plain", "dotted"])
def test_recurrent_cubalif_subgraph(edge_style, tmp_path):
    rng = np.random.default_rng(1)
    w_fc, w_rec = rng.normal(0.4, 0.5, (4, 3)), rng.normal(0, 0.5, (4, 4))
    write_nir(recurrent_cubalif(w_fc, w_rec, 0.5, 0.75, 1.0, edge_style), tmp_path / "rsyn.nir")
    x = rng.uniform(0, 1, (10, 2, 3))
    result = NIRExecutor(read_graph(tmp_path / "rsyn.nir"), dtype=torch.float64).run(x)
    i, v, s, outs = np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((2, 4)), []
    for t in range(10):  # snnTorch RSynaptic: i = α i + (W x + W_rec s[t−1]); v = β v + i; reset to 0 on v > θ
        i = 0.5 * i + x[t] @ w_fc.T + s @ w_rec.T
        v = 0.75 * v + i
        s = (v > 1.0).astype(float)
        v = np.where(s > 0, 0.0, v)
        outs.append(s)
    np.testing.assert_allclose(result.output.numpy(), np.stack(outs), atol=1e-9)
    assert 0 < result.output.mean() < 1
    assert "rsyn.lif" in result.spikes and "rsyn.lif/i" in result.states


@pytest.mark.parametrize("scalar", [(), (1,)])
def test_conv_sumpool_flatten_with_scalar_params(scalar, tmp_path):
    """Norse-style conv net: Conv2d(input_shape), IF/LI with scalar parameters, SumPool2d, unbatched Flatten.

    0-d parameters cannot pass nir.write (h5py refuses compression of scalars), so they run in memory, with
    snnTorch's undeclared shapes (Conv2d input_shape=None, Flatten input_type=None) that nir.write cannot store.
    """
    sc = lambda v: np.full(scalar, v)  # noqa: E731
    rng = np.random.default_rng(2)
    w, b = rng.normal(0.2, 0.4, (3, 1, 3, 3)), rng.normal(0.1, 0.1, 3)
    w_fc = rng.normal(0, 0.3, (2, 3 * 3 * 3))
    nodes = {
        "input": nir.Input(np.array([1, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6) if scalar else None, weight=w, stride=1, padding=1, dilation=1,
                           groups=1, bias=b),
        "if": nir.IF(r=sc(1.0), v_threshold=sc(0.8), v_reset=sc(0.0)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3]) if scalar else None}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(w_fc),
        "li": nir.LI(tau=sc(4.0), r=sc(4.0), v_leak=sc(0.0)),
        "output": nir.Output(np.array([2])),
    }
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:], strict=False)), type_check=False)
    if scalar:
        write_nir(graph, tmp_path / "c.nir")
        graph = read_graph(tmp_path / "c.nir")
    x = torch.as_tensor(rng.uniform(0, 1, (5, 2, 1, 6, 6)))
    result = NIRExecutor(graph, dtype=torch.float64).run(x)
    v, li, outs = torch.zeros(2, 3, 6, 6, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64), []
    for t in range(5):  # IF: v += I, spike v > 0.8, reset to 0; LI Euler τ = 4, r = 4: li = 0.75 li + I
        v = v + F.conv2d(x[t], torch.as_tensor(w), torch.as_tensor(b), padding=1)
        s = (v > 0.8).double()
        v = v * (1 - s)
        h = F.avg_pool2d(s, 2, 2, divisor_override=1).reshape(2, -1) @ torch.as_tensor(w_fc).T
        li = 0.75 * li + h
        outs.append(li)
    np.testing.assert_allclose(result.output.numpy(), torch.stack(outs).numpy(), atol=1e-9)
    assert 0 < result.spikes["if"].mean() < 1


def test_delay_node_shifts_by_steps():
    nodes = {"input": nir.Input(np.array([2])), "d": nir.Delay(np.array([1.0, 2.0])),
             "output": nir.Output(np.array([2]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "d"), ("d", "output")], type_check=False)
    x = np.arange(8, dtype=float).reshape(4, 1, 2) + 1
    out = NIRExecutor(g).run(x).output[:, 0].tolist()
    assert out == [[0, 0], [1, 0], [3, 2], [5, 4]]


def test_recorded_interpretation_travels_with_the_graph(tmp_path):
    from snnchip.export.nir_export import model_graph

    write_nir(two_neuron_graph(), tmp_path / "g.nir")
    graph = model_graph(tmp_path / "g.nir", Interpretation(reset="subtract", compare="ge"))
    write_nir(graph, tmp_path / "g2.nir")
    result = NIRExecutor(read_graph(tmp_path / "g2.nir")).run(np.tile(np.array([0.625, 1.0]), (3, 1, 1)))
    assert result.interpretation == Interpretation(reset="subtract", compare="ge")
    assert result.spikes["lif"][:, 0, 1].tolist() == TRACES[("subtract", "ge")][0]


@pytest.mark.parametrize(("change", "message"), [({"kind": "empf"}, "empf"), ({"version": 2}, "version"),
                                                 ({"reset": "soft"}, "reset"), ({"dt": 0.5}, "dt")])
def test_executor_refuses_semantics_it_cannot_honour(change, message):
    from snnchip.errors import UnsupportedNodeError

    g = two_neuron_graph()
    g.nodes["lif"].metadata = {"snnchip": {"version": 1, "layer": "h", "kind": "lif", "lam": 0.5, "theta": 1.0,
                                           "reset": "subtract", "spike": "ge", "discretization": "euler", "dt": 1.0,
                                           **change}}
    with pytest.raises(UnsupportedNodeError, match=message):
        NIRExecutor(g)
