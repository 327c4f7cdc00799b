"""snnchip.neurons and snnchip.discretize against hand-computed traces of the papers' equations, and the training
kernels (snnchip.train) against snnchip.neurons on random inputs.

Every hand trace uses values exact in binary, so the comparisons are exact; each runs on NumPy arrays and on torch
tensors, the two array types the one definition serves besides ONNX (tests/test_onnx_export.py).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_train_edbp import TAU_M, TAU_S, eps, kernel_sum

from snnchip.discretize import (
    current_coefficients,
    decay,
    euler_lif_fields,
    if_coefficients,
    lif_coefficients,
    srm_cubalif_fields,
    srm_decays,
)
from snnchip.neurons import cuba_lif_step, empf_step, heaviside, li_step, lif_step
from snnchip.spec import Interpretation, NeuronSpec
from snnchip.train.edbp import SRM, srm_step
from snnchip.train.empf import EMPF
from snnchip.train.neuron import LIF, saf_step
from snnchip.train.neuron import lif_step as train_lif_step

ARRAYS = {"numpy": lambda v: np.asarray(v, np.float64), "torch": lambda v: torch.tensor(v, dtype=torch.float64)}


def listed(x) -> list[float]:
    return np.asarray(x, np.float64).tolist()


@pytest.fixture(params=list(ARRAYS))
def arr(request):
    return ARRAYS[request.param]


# LIF (SLTT Eq. 2 with NIR's gain, offset and v_reset): a = 0.5, b = 2, c = 0.125, θ = 0.75, v_reset = −0.5, and
# x = 0.3125, 0.4375, 0.0625, so that b·x + c = 0.75, 1, 0.25. ge: u1 = 0.75 fires; gt: it does not.
LIF_TRACES = {  # (reset, compare): (s, v) over the three steps, by hand
    ("subtract", "ge"): ([1, 1, 0], [0, 0.25, 0.375]),  # u = 0.75, 1, 0.125 + 0.25
    ("subtract", "gt"): ([0, 1, 0], [0.75, 0.625, 0.5625]),  # u = 0.75, 0.375 + 1, 0.3125 + 0.25
    ("zero", "ge"): ([1, 1, 0], [0, 0, 0.25]),
    ("zero", "gt"): ([0, 1, 0], [0.75, 0, 0.25]),
    ("v_reset", "ge"): ([1, 1, 0], [-0.5, -0.5, 0]),  # u = 0.75, −0.25 + 1, −0.25 + 0.25
    ("v_reset", "gt"): ([0, 1, 0], [0.75, -0.5, 0]),
}


@pytest.mark.parametrize(("reset", "compare"), list(LIF_TRACES))
def test_lif_step_hand_trace(arr, reset, compare):
    v, spikes, vs = arr([0.0]), [], []
    for x in (0.3125, 0.4375, 0.0625):
        _, s, v = lif_step(v, arr([x]), a=0.5, b=2.0, c=0.125, theta=0.75, reset=reset, compare=compare,
                           v_reset=-0.5)
        spikes.append(listed(s)[0])
        vs.append(listed(v)[0])
    assert (spikes, vs) == LIF_TRACES[(reset, compare)]


def test_li_step_hand_trace(arr):
    """LI: v = 0.5·v + 2·x + 0.25 over x = 1, 0: 2.25, 1.375; the readout (a = b = 1, c = 0) sums its input."""
    v1 = li_step(arr([0.0]), arr([1.0]), a=0.5, b=2.0, c=0.25)
    assert listed(v1) == [2.25] and listed(li_step(v1, arr([0.0]), a=0.5, b=2.0, c=0.25)) == [1.375]
    v = arr([0.0])
    for x in (0.5, -1.25, 2.0):
        v = li_step(v, arr([x]), a=1.0)
    assert listed(v) == [1.25]


# Current-based, a_syn = 0.5, b_syn = 2, a = 0.5, θ = 1 (ge), reset zero, x = 0.25, 0.25, 0, 0.5:
#   t1 i = 0.5, u = 0.5;  t2 i = 0.75, u = 0.25 + 0.75 = 1 fires, v = 0;
#   keeping i (a foreign CubaLIF): t3 i = 0.375, u = 0.375;  t4 i = 0.1875 + 1 = 1.1875, u = 0.1875 + 1.1875 fires
#   resetting i (the SRM):          t3 i = 0,    u = 0;      t4 i = 1, u = 1 fires
CUBA_TRACES = {False: ([0, 1, 0, 1], [0.5, 0.75, 0.375, 1.1875], [0.5, 0, 0.375, 0]),
               True: ([0, 1, 0, 1], [0.5, 0, 0, 0], [0.5, 0, 0, 0])}


@pytest.mark.parametrize("reset_current", [False, True])
def test_cuba_lif_step_hand_trace(arr, reset_current):
    i, v, trace = arr([0.0]), arr([0.0]), ([], [], [])
    for x in (0.25, 0.25, 0.0, 0.5):
        _, s, i, v = cuba_lif_step(i, v, arr([x]), a_syn=0.5, b_syn=2.0, a=0.5, theta=1.0, reset="zero",
                                   reset_current=reset_current)
        for seq, val in zip(trace, (s, i, v), strict=True):
            seq.append(listed(val)[0])
    assert trace == CUBA_TRACES[reset_current]


def test_srm_as_cuba_lif_step_equals_the_kernel_sum_s14():
    """The SRM of event-driven BP (S14–S16): cuba_lif_step with srm_decays and both traces reset is the kernel sum
    u[t] = Σ_{t_last < t_m ≤ t} I[t_m]·ε(t − t_m), written from the paper in test_train_edbp.kernel_sum."""
    rng = np.random.default_rng(0)
    current = (rng.random((30, 20)) < 0.3) @ (rng.normal(0.1, 0.6, (20, 16)))
    u_ref, s_ref = kernel_sum(current)
    p = srm_decays(TAU_M, TAU_S)
    i = v = np.zeros(16)
    for t in range(30):
        u, s, i, v = cuba_lif_step(i, v, current[t], a_syn=p.lam_syn, b_syn=p.input_scale, a=p.lam_mem, theta=1.0,
                                   reset="zero", reset_current=True)
        np.testing.assert_array_equal(s, s_ref[t])
        np.testing.assert_allclose(u, u_ref[t], atol=1e-12)
    assert s_ref.sum() > 50 and (s_ref.sum(0) >= 2).sum() > 5  # many neurons fire, several more than once


def test_empf_step_hand_trace(arr):
    """EM-PF Eq. 3 folded (Eq. 8), per step: λ̂ = 0.5, 0.5, 1; a = 1, 2, 1; θ̂ = 1, 0.5, 2; r = 0, 0.25, −0.5;
    x = 1.5, 0.5, 1:  m = 1.5 -> s = 0.5, v = 1;  m = 0.5 + 1 = 1.5 -> s = 1, v = 0.75;  m = 0.75 + 1 < 2 -> s = 0,
    v = 1.75 − 0.5 = 1.25. A second neuron sits exactly on θ̂ (m = θ̂ = 1): s = 0, v = m."""
    tables = {"lam": [0.5, 0.5, 1.0], "scale": [1.0, 2.0, 1.0], "theta": [1.0, 0.5, 2.0], "offset": [0.0, 0.25, -0.5]}
    v, trace = arr([0.0, 0.0]), ([], [], [])
    for t, x in enumerate((1.5, 0.5, 1.0)):
        m, s, v = empf_step(v, arr([x, 1.0 if t == 0 else 0.0]), **{k: tab[t] for k, tab in tables.items()})
        for seq, val in zip(trace, (m, s, v), strict=True):
            seq.append(listed(val)[0])
        if t == 0:
            assert listed(s)[1] == 0.0 and listed(v)[1] == 1.0
    assert trace == ([1.5, 1.5, 1.75], [0.5, 1.0, 0.0], [1.0, 0.75, 1.25])


def test_core_steps_and_lava_process_models_import_without_torch():
    """Lava forks its workers, so the floating_pt process models and the steps they run must not import torch."""
    models = ", ".join(f"snnchip.deploy.procs.{f}.models" for f in ("cubalif", "empf", "conv"))
    code = f"import sys, snnchip.neurons, {models}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_heaviside_keeps_the_potentials_dtype():
    assert heaviside(np.float32([1.0, 0.5]), 1.0).dtype == np.float32
    assert heaviside(torch.tensor([1.0, 0.5], dtype=torch.float64), 1.0, "gt").tolist() == [0.0, 0.0]
    assert heaviside(torch.tensor([1.0, 0.5], dtype=torch.float64), 1.0).dtype == torch.float64


# -------------------------------------------------------------------------------------------- discretize
def test_nir_coefficients_by_hand():
    """NIR LIF τ·dv/dt = (v_leak − v) + r·I at τ = 2, r = 2, v_leak = 0.5: Euler dt = 1 gives v += (−v + 0.5 + 2I)/2,
    i.e. a = 0.5, b = 1, c = 0.25; exact holds I over the step: a = e^{−1/2}, b = 2(1 − e^{−1/2})."""
    euler, exact = Interpretation(), Interpretation(discretization="exact")
    assert [float(v) for v in lif_coefficients(2.0, 2.0, 0.5, euler)] == [0.5, 1.0, 0.25]
    a, b, c = lif_coefficients(2.0, 2.0, 0.5, exact)
    assert (float(a), float(b), float(c)) == pytest.approx((math.exp(-0.5), 2 * (1 - math.exp(-0.5)),
                                                           0.5 * (1 - math.exp(-0.5))), rel=1e-15)
    assert float(decay(2.0, Interpretation(dt=0.5))) == 0.75
    assert float(decay(2.0, Interpretation(dt=0.5, discretization="exact"))) == pytest.approx(math.exp(-0.25))
    assert [float(v) for v in if_coefficients(3.0, Interpretation(dt=0.5))] == [1.0, 1.5, 0.0]  # v += dt·r·I
    assert [float(v) for v in current_coefficients(4.0, 2.0, euler)] == [0.75, 0.5]  # i += (−i + 2x)/4


def test_export_fields_read_back_to_the_discrete_neuron():
    """Our LIF λ = 0.75 is NIR τ = 4, r = 4 (Euler dt = 1 reads back a = 0.75, b = 1); with an input scale 0.5 r = 2.
    The SRM's exact CubaLIF reads back λ_syn, ε(0) and λ_mem with a unit drive."""
    assert euler_lif_fields(0.75) == (4.0, 4.0) and euler_lif_fields(0.75, 0.5) == (4.0, 2.0)
    assert [float(v) for v in lif_coefficients(4.0, 4.0, 0.0, Interpretation())] == [0.75, 1.0, 0.0]
    p = srm_decays(TAU_M, TAU_S)
    assert (p.lam_syn, p.lam_mem) == (math.exp(-1 / TAU_S), math.exp(-1 / TAU_M))
    assert p.input_scale == pytest.approx(eps(0), rel=1e-15)
    f, exact = srm_cubalif_fields(TAU_M, TAU_S), Interpretation(discretization="exact")
    assert (f["tau_syn"], f["tau_mem"]) == (TAU_S, TAU_M)
    a_syn, b_syn = current_coefficients(f["tau_syn"], f["w_in"], exact)
    a, b, _ = lif_coefficients(f["tau_mem"], f["r"], 0.0, exact)
    assert (float(a_syn), float(b_syn), float(a), float(b)) == pytest.approx(
        (p.lam_syn, p.input_scale, p.lam_mem, 1.0), rel=1e-14)


# ------------------------------------------------------------------------------- training kernels vs core
def random_currents(seed: int, T: int = 12, shape=(6, 9)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, *shape, generator=g, dtype=torch.float64) * 0.8 + 0.4


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("spike", ["ge", "gt"])
def test_train_lif_kernel_forward_is_lif_step(kernels, reset, spike):
    p = LIF.from_spec(NeuronSpec(lam=0.7, theta=0.8, reset=reset, spike=spike))
    x = random_currents(0)
    v_train, v_core = None, torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        s_train, v_train = train_lif_step(x[t], v_train, p)
        _, s_core, v_core = lif_step(v_core, x[t], a=0.7, theta=0.8, reset=reset, compare=spike)
        assert torch.equal(s_train, s_core), t
        torch.testing.assert_close(v_train, v_core, rtol=1e-12, atol=1e-12)
    assert 0.1 < s_core.mean() < 0.9


def test_train_saf_kernel_forward_is_lif_step_spikes(kernels):
    """SAF (arXiv:2310.02772, Theorem on Eq. 4–5): fed Û[t] = λ·Û[t−1] + I[t] it fires the spikes of lif_step with
    subtractive reset, and â[t] = Σ_τ λ^{t−τ}·s[τ]."""
    p = LIF.from_spec(NeuronSpec(lam=0.7, theta=0.8))
    x = random_currents(1)
    acc, a_hat, v, a_ref = torch.zeros_like(x[0]), None, torch.zeros_like(x[0]), torch.zeros_like(x[0])
    fired = 0.0
    for t in range(x.shape[0]):
        acc = 0.7 * acc + x[t]
        s_saf, a_hat = saf_step(acc, a_hat, p, 0.7)
        _, s, v = lif_step(v, x[t], a=0.7, theta=0.8)
        a_ref = 0.7 * a_ref + s
        assert torch.equal(s_saf, s), t
        torch.testing.assert_close(a_hat, a_ref, rtol=1e-12, atol=1e-12)
        fired += float(s.mean())
    assert 0.1 < fired / x.shape[0] < 0.9


def test_train_srm_step_is_cuba_lif_step():
    p = SRM.from_spec(NeuronSpec(kind="srm", theta=1.0, tau_m=TAU_M, tau_s=TAU_S))
    d = srm_decays(TAU_M, TAU_S)
    x = random_currents(2)
    state, i, v = None, torch.zeros_like(x[0]), torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        s_train, state = srm_step(x[t], state, p)
        _, s, i, v = cuba_lif_step(i, v, x[t], a_syn=d.lam_syn, b_syn=d.input_scale, a=d.lam_mem, theta=1.0,
                                   reset="zero", reset_current=True)
        assert torch.equal(s_train, s), t
        torch.testing.assert_close(state, (i, v), rtol=1e-12, atol=1e-12)
    assert s.sum() > 0


@pytest.mark.parametrize("variant", ["folded", "learnable"])
def test_train_empf_step_is_empf_step(variant):
    T, C = 6, 4
    layer = EMPF(NeuronSpec(kind="empf", lam=0.6, theta=0.7), variant, T, (C,))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in layer.parameters():  # random per-step (and, folded, per-channel) tables
            param.copy_(torch.rand(param.shape, generator=g, dtype=param.dtype) * 1.5)
    x = random_currents(4, T, (5, C)).float()
    f = layer.folded()
    v_train, v_core = None, torch.zeros_like(x[0])
    with torch.no_grad():
        for t in range(T):
            s_train, v_train = layer.step(x[t], v_train, t)
            _, s, v_core = empf_step(v_core, x[t], lam=f["lam"][t], scale=f["input_scale"][t], theta=f["theta"][t],
                                     offset=f["reset_offset"][t])
            assert torch.equal(s_train, s) and torch.equal(v_train, v_core), t
    assert (s > 0).any() and (s == 0).any()
