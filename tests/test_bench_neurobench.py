"""Our NeuroBench metrics (hw_sim.metrics) against neurobench 2.3.0 itself, on a snnTorch network equal to one of our
NIR graphs (Linear → Leaky with immediate subtractive reset → Linear): footprint, connection sparsity, activation
sparsity, synaptic operations (effective MACs, ACs, dense) and membrane updates. Needs the bench extra
(`make setup-bench`: neurobench, snntorch)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("snntorch", reason="snntorch is not installed (make setup-bench)")
pytest.importorskip("neurobench", reason="neurobench is not installed (make setup-bench)")

import snntorch as snn
import snntorch.utils
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ConnectionSparsity, Footprint
from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
from neurobench.models import SNNTorchModel

from snnchip.export.nir_exec import NIRExecutor
from snnchip.hw_sim.metrics import float_metrics

sys.path.insert(0, str(Path(__file__).parent))
from nir_nets import mlp_graph


class Net(torch.nn.Module):
    def __init__(self, graph):
        super().__init__()
        fc1, fc2 = graph.nodes["fc1"], graph.nodes["fc2"]
        self.fc1 = torch.nn.Linear(*fc1.weight.shape[::-1])
        self.fc2 = torch.nn.Linear(*fc2.weight.shape[::-1])
        with torch.no_grad():
            for lin, node in ((self.fc1, fc1), (self.fc2, fc2)):
                lin.weight.copy_(torch.as_tensor(node.weight))
                lin.bias.copy_(torch.as_tensor(node.bias))
        self.lif1 = snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="subtract", reset_delay=False,
                              init_hidden=True)

    def forward(self, x):
        return self.fc2(self.lif1(self.fc1(x))), None


def test_metrics_equal_neurobench_on_a_snntorch_twin():
    T, batch = 8, 24
    # a drive where u < 2θ: snnTorch's immediate subtraction then equals ours (above, it compares the potential less
    # the previous step's pending reset with θ), so both fire the same spikes (checked below)
    graph = mlp_graph((8, 16, 4), T=T, seed=9, lam=0.5, gain=0.4)
    graph.nodes["fc1"].weight[np.abs(graph.nodes["fc1"].weight) < 0.05] = 0.0  # some connection sparsity
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (batch, T, 8)).astype(np.float32)  # counts: the first layer's operations are MACs
    x[:, 1] = rng.integers(0, 2, (batch, 8))  # one step of binary input: ACs there
    net = Net(graph)
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())  # snnTorch's neuron constants (β, θ, ...)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(x),
                                                                      torch.zeros(batch, dtype=torch.long)),
                                       batch_size=batch)
    theirs = Benchmark(SNNTorchModel(net), data, [], [], [[Footprint, ConnectionSparsity],
                                                          [ActivationSparsity, SynapticOperations,
                                                           MembraneUpdates]]).run(quiet=True)
    ours = float_metrics(graph, x.transpose(1, 0, 2).astype(np.float64))
    twin = Net(graph)
    snn.utils.reset(twin)
    with torch.no_grad():
        s_twin = np.stack([twin.lif1(twin.fc1(torch.as_tensor(x[:, t]))).numpy() for t in range(T)])
    s_ours = NIRExecutor(graph, T=T).run(torch.as_tensor(x.transpose(1, 0, 2), dtype=torch.float64)).spikes["fc1"]
    np.testing.assert_array_equal(s_twin, s_ours.numpy())
    assert 0 < s_twin.mean() < 1
    assert ours["footprint"] == theirs["Footprint"] - buffers
    assert ours["connection_sparsity"] == pytest.approx(theirs["ConnectionSparsity"])
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"])
    ops = theirs["SynapticOperations"]
    assert ops["Effective_MACs"] > 0 and ops["Effective_ACs"] > 0
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert ours[key] == pytest.approx(ops[key]), key
    assert ours["membrane_updates"] == pytest.approx(theirs["MembraneUpdates"])
