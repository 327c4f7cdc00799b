"""Small NIR graphs in our schema (docs/nir-schema.md) for the tests, with random weights.

``mlp_graph`` builds input → (Affine → LIF)* → Affine → I (readout) → output; ``conv_graph`` builds
input → (Conv2d → LIF → SumPool2d/AvgPool2d)+ → Flatten → Affine → I → output.
"""

from __future__ import annotations

import nir
import numpy as np


def neuron_node(layer: str, shape: tuple[int, ...], lam: float = 0.5, theta: float = 1.0, reset: str = "subtract",
                spike: str = "ge") -> nir.NIRNode:
    """A LIF/IF neuron node with ``metadata['snnchip']`` (Euler mapping for dt = 1)."""
    meta = {"snnchip": {"version": 1, "layer": layer, "kind": "lif", "lam": lam, "theta": theta, "reset": reset,
                        "spike": spike, "discretization": "euler", "dt": 1.0}}
    ones = np.ones(shape)
    if lam == 1.0:
        return nir.IF(r=ones, v_threshold=theta * ones, v_reset=0 * ones, metadata=meta)
    tau = 1.0 / (1.0 - lam)
    return nir.LIF(tau=tau * ones, r=tau * ones, v_leak=0 * ones, v_threshold=theta * ones, v_reset=0 * ones,
                   metadata=meta)


def readout_node(layer: str, n: int) -> nir.NIRNode:
    meta = {"snnchip": {"version": 1, "layer": layer, "kind": "readout", "lam": 1.0, "theta": 1.0,
                        "reset": "subtract", "spike": "ge", "discretization": "euler", "dt": 1.0}}
    return nir.I(r=np.ones(n), metadata=meta)


def _graph(nodes: dict, order: list[str], T: int) -> nir.NIRGraph:
    edges = list(zip(order[:-1], order[1:], strict=False))
    meta = {"snnchip": {"version": 1, "T": T, "encoding": "direct", "method": "bptt", "model": "custom"}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def mlp_graph(sizes: tuple[int, ...], T: int, seed: int = 0, lam: float = 0.5, theta: float = 1.0,
              reset: str = "subtract", spike: str = "ge", gain: float = 1.5, bias: bool = True) -> nir.NIRGraph:
    """An MLP ``sizes[0] → ... → sizes[-1]`` with LIF hidden layers and a readout."""
    rng = np.random.default_rng(seed)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    order = ["input"]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False), start=1):
        name = f"fc{i}"
        w = rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))
        b = rng.normal(0, 0.1, n_out) if bias else np.zeros(n_out)
        nodes[name] = nir.Affine(weight=w, bias=b)
        last = i == len(sizes) - 1
        nodes[f"{name}_neuron"] = readout_node(name, n_out) if last else neuron_node(name, (n_out,), lam, theta,
                                                                                    reset, spike)
        order += [name, f"{name}_neuron"]
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    return _graph(nodes, order + ["output"], T)


def conv_graph(in_shape: tuple[int, int, int] = (1, 8, 8), channels: int | tuple[int, ...] = 4, classes: int = 3,
               T: int = 4, seed: int = 0, pool: str = "sum", lam: float = 0.5, reset: str = "subtract",
               spike: str = "ge", pool_padding: int = 0) -> nir.NIRGraph:
    """(Conv2d(3×3, padding 1) → LIF → 2×2 pool) per entry of ``channels`` → Flatten → Affine → readout.

    With several conv layers, each pool and the next conv compose into one kernel stage; with ``pool_padding`` 1
    the pool is 3×3 of stride 2 and padding 1 (the same output size), which composes into no kernel (a CSR stage).
    """
    rng = np.random.default_rng(seed)
    c, h, w = in_shape
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    order = ["input"]
    pool_cls = nir.SumPool2d if pool == "sum" else nir.AvgPool2d
    widths = (channels,) if isinstance(channels, int) else tuple(channels)
    for i, ch in enumerate(widths, start=1):
        nodes[f"conv{i}"] = nir.Conv2d(input_shape=(h, w), weight=rng.normal(0, 0.6, (ch, c, 3, 3)), stride=1,
                                       padding=1, dilation=1, groups=1, bias=rng.normal(0, 0.1, ch))
        nodes[f"conv{i}_neuron"] = neuron_node(f"conv{i}", (ch, h, w), lam, 1.0, reset, spike)
        nodes[f"pool{i}"] = pool_cls(kernel_size=np.array([2 + pool_padding] * 2), stride=np.array([2, 2]),
                                     padding=np.array([pool_padding] * 2))
        order += [f"conv{i}", f"conv{i}_neuron", f"pool{i}"]
        c, h, w = ch, h // 2, w // 2
    fc = f"fc{len(widths) + 1}"
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0, end_dim=-1)
    n_flat = c * h * w
    nodes[fc] = nir.Affine(weight=rng.normal(0, 1.0 / np.sqrt(n_flat), (classes, n_flat)),
                           bias=rng.normal(0, 0.1, classes))
    nodes[f"{fc}_neuron"] = readout_node(fc, classes)
    nodes["output"] = nir.Output(output_type={"output": np.array([classes])})
    return _graph(nodes, order + ["flat", fc, f"{fc}_neuron", "output"], T)
