"""The input contract: every backend takes only inputs inside the deployment's recorded encoding and range (or clips
them, when asked, identically), and on every input it takes the bit-exact chip simulator equals Lava.

Outside the range the quantizer sized for, Lava's int32 Dense sums and the LIF's int32 shift wrap and the two part
ways (measured on a digits MLP: inputs ×100, output max |Δ| 8.3; ×1e6, 50 % of decisions kept); inside it no
accumulator can wrap, which the hypothesis test checks against Lava itself, worst-case inputs included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nir_nets import conv_graph, mlp_graph
from test_general_graphs import recurrent_graph, residual_graph

from snnchip.deploy import build
from snnchip.deploy.result import accept_input
from snnchip.errors import DeployError
from snnchip.export.loihi import deployment_from_graph
from snnchip.export.lowering import INPUT
from snnchip.hw_sim.chip import ChipSimulator
from snnchip.hw_sim.compare import compare_exact


@pytest.fixture(scope="module")
def dep():
    return deployment_from_graph(mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5), input_range=2.0)


def test_inputs_inside_the_range_pass_unchanged_and_the_boundary_is_inside(dep):
    x = np.random.default_rng(0).uniform(-2, 2, (4, 3, 6))
    x[0, 0, :2] = [2.0, -2.0]
    xs, clipped = accept_input(x, dep.qnet)
    assert clipped == 0 and np.array_equal(xs, x)


def test_an_input_outside_the_range_is_refused_with_the_numbers(dep):
    x = np.zeros((4, 3, 6))
    x[2, 1, 4], x[3, 0, 0] = -7.5, 2.0000001
    with pytest.raises(DeployError, match=r"input holds 2 value\(s\) outside the deployment's input range \|x\| ≤ 2 "
                                          r"\(the largest, \|x\| = 7.5, at \[t=2, sample 1, feature 4\]\).*re-export "
                                          r"with --input-range 7.5, or clip them to ±2"):
        accept_input(x, dep.qnet)
    for run in (lambda: ChipSimulator(dep).run(x), lambda: build(dep).run(x)):  # refused before Lava starts
        with pytest.raises(DeployError, match="outside the deployment's input range"):
            run()


def test_clipping_is_asked_for_counted_and_the_same_on_every_backend(dep):
    x = np.random.default_rng(1).uniform(-5, 5, (4, 2, 6))
    xs, clipped = accept_input(x, dep.qnet, clip=True)
    assert clipped == int((np.abs(x) > 2).sum()) > 0 and np.array_equal(xs, np.clip(x, -2, 2))
    res = ChipSimulator(dep).run(x, clip=True)
    assert res.meta["clipped_inputs"] == clipped
    np.testing.assert_array_equal(res.output_raw, ChipSimulator(dep).run(np.clip(x, -2, 2)).output_raw)


def test_a_rate_coded_deployment_takes_spikes_only():
    graph = mlp_graph((6, 8, 3), T=4, seed=1)
    graph.metadata["snnchip"]["encoding"] = "rate"
    qnet = deployment_from_graph(graph).qnet
    spikes = (np.random.default_rng(2).random((4, 3, 6)) < 0.5).astype(float)
    assert accept_input(spikes, qnet)[1] == 0
    spikes[1, 2, 3] = 0.37
    for clip in (False, True):
        with pytest.raises(DeployError, match=r"1 value\(s\) that are not spikes \(the first, 0.37, at \[t=1, sample "
                                              r"2, feature 3\]\); this deployment's encoding is rate"):
            accept_input(spikes, qnet, clip=clip)


def test_complex_input_is_refused(dep):
    with pytest.raises(DeployError, match="complex numbers"):
        accept_input(np.ones((4, 1, 6), complex), dep.qnet)


# Every deployment class: Lava's own LIF and our CubaLIF, dense and sparse (conv) projections, recurrence, delayed
# (DelayDense) shortcuts, wide weights, the one-step headroom, a wider input range.
CLASSES = {
    "mlp-cubalif": lambda: deployment_from_graph(mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5)),
    "mlp-lava-lif-range-3": lambda: deployment_from_graph(mlp_graph((6, 8, 3), T=4, seed=2, reset="zero", spike="gt",
                                                                    gain=2.5), input_range=3.0),
    "conv-sparse": lambda: deployment_from_graph(conv_graph(in_shape=(1, 6, 6), channels=2, classes=3, T=3, seed=4)),
    "recurrent": lambda: deployment_from_graph(recurrent_graph()),
    "residual-delayed": lambda: deployment_from_graph(residual_graph()),
    "wide-step-headroom": lambda: deployment_from_graph(mlp_graph((6, 8, 3), T=4, seed=3, gain=4.0),
                                                        wide_weights=True, headroom="step"),
}


def worst_case(dep, sign: int) -> np.ndarray:
    """x = ±range·sign(W) on the input row whose |W| sums largest, every step: the largest Dense sum an accepted
    input can give."""
    dense_of = lambda m: m.toarray() if not isinstance(m, np.ndarray) else m  # noqa: E731 (CSR or a kernel)
    sums = [(np.abs(dense_of(m)).sum(axis=1).max(), m) for q in dep.qnet.stages for p in q.inputs
            if p.source == INPUT for m, _ in p.parts]
    _, m = max(sums, key=lambda pair: pair[0])
    dense = dense_of(m)
    row = dense[np.argmax(np.abs(dense).sum(axis=1))]
    x = sign * dep.qnet.input_range * np.where(row >= 0, 1.0, -1.0)
    return np.broadcast_to(x.reshape(dep.qnet.input_shape), (dep.T, *dep.qnet.input_shape))


@pytest.mark.lava
@pytest.mark.parametrize("name", list(CLASSES))
def test_the_chip_equals_lava_on_every_accepted_input(name):
    """Inputs at hypothesis-drawn fractions of the range, both worst cases at the range itself, and one far outside
    it clipped (by each backend) to the same: every spike and u/v state equal at every Lava step."""
    dep = CLASSES[name]()

    @settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(scales=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2), seed=st.integers(0, 2**16))
    def check(scales, seed):
        _chip_equals_lava(dep, scales, seed)

    check()


def _chip_equals_lava(dep, scales: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = dep.qnet.input_range
    samples = [s * r * rng.uniform(-1, 1, (dep.T, *dep.qnet.input_shape)) for s in scales]
    samples += [worst_case(dep, 1), worst_case(dep, -1), 100 * r * rng.uniform(-1, 1, (dep.T, *dep.qnet.input_shape))]
    x = np.stack(samples, axis=1)
    chip = ChipSimulator(dep).run(x, timing="lava", clip=True)
    lava = build(dep).run(x, timing="lava", clip=True)
    assert chip.meta["clipped_inputs"] == lava.meta["clipped_inputs"] > 0
    assert {k: sum(d.values()) for k, d in compare_exact(chip, lava).items()} == {q.name: 0 for q in dep.qnet.stages}
    np.testing.assert_array_equal(chip.output_raw, lava.output_raw)
