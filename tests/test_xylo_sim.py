"""Our Xylo simulator (hw_sim.xylo): hand-derived steps of xylosim's arithmetic, then every spike and state equal to
SynSense's xylosim 0.1.3 (the vendor's bit-exact simulator, built by `make setup`) on hypothesis-drawn
configurations across the whole register ranges, saturation included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnchip.errors import DeployError
from snnchip.export.xylo_config import XyloConfig
from snnchip.hw_sim import xylo

xylosim_driver = pytest.importorskip("snnchip.hw_sim.xylosim_driver")
needs_xylosim = pytest.mark.skipif(
    not xylosim_driver.available(), reason="xylosim is not installed (make setup builds it: xylosim==0.1.3)")


def config(n_in=1, n_hidden=1, n_out=1, **kw) -> XyloConfig:
    base = dict(w_in=np.zeros((n_in, n_hidden, 2), int), w_rec=np.zeros((n_hidden, n_hidden, 2), int),
                w_out=np.zeros((n_hidden, n_out), int), shift_in=0, shift_rec=0, shift_out=0,
                dash_mem=np.full(n_hidden, 4), dash_syn=np.full((n_hidden, 2), 1), dash_mem_out=np.full(n_out, 4),
                dash_syn_out=np.full(n_out, 1), threshold=np.full(n_hidden, 30000), threshold_out=np.full(n_out, 30000),
                bias=np.zeros(n_hidden, int), bias_out=np.zeros(n_out, int))
    base.update(kw)
    return XyloConfig(**base)


def test_decay_by_hand():
    # 100 >> 4 = 6; 5 >> 4 = 0 -> the minimum decay 1; -5 >> 4 = -1 (arithmetic shift floors)
    assert xylo.decay(np.array([100, 5, -5, 0, -32768]), np.array([4, 4, 4, 4, 0])).tolist() == [6, 1, -1, 0, -32768]


def test_one_neuron_by_hand():
    # w = 100 << 2 = 400 into synapse 0 at t=0; dash_syn 1: I = 400 - 200 = 200; V = 0 + 200 = 200 < θ = 250.
    # t=1: I = 200 - 100 = 100; V = 200 - (200 >> 4 = 12) + 100 = 288 >= 250: one spike, V = 38.
    cfg = config(w_in=np.array([[[100, 0]]]), shift_in=2, threshold=np.array([250]))
    rec = xylo.run(cfg, np.array([[[1], [0]]]))
    assert rec.isyn[0, :, 0, 0].tolist() == [200, 100]
    assert rec.vmem[0, :, 0].tolist() == [200, 38]
    assert rec.spikes[0, :, 0].tolist() == [0, 1]


def test_several_spikes_per_step_and_the_output_one_step_later():
    # 3 input spikes of 127 << 7 = 16256 saturate I at 32767, dash_syn 1: I = 32767 - 16383 = 16384 into V:
    # θ = 1000 gives min(16, 31) = 16 spikes, V = 384; the output hears them one step later.
    cfg = config(w_in=np.array([[[127, 0]]]), shift_in=7, threshold=np.array([1000]), w_out=np.array([[1]]),
                 dash_syn_out=np.array([15]))
    rec = xylo.run(cfg, np.array([[[3], [0]]]))
    assert rec.isyn[0, 0, 0, 0] == 32767 - (32767 >> 1)
    assert rec.spikes[0, 0, 0] == 16 and rec.vmem[0, 0, 0] == 16384 - 16000
    assert rec.isyn_out[0, :, 0].tolist() == [0, 16 - 1]  # 16 spikes x 1, then decay dash 15: the minimum 1


def test_saturation_depends_on_the_order_of_sources():
    # input 0 adds 3 x (127 << 7) = 48768, saturating at 32767; input 1 then adds -16384: 16383, not 32384
    cfg = config(n_in=2, w_in=np.array([[[127, 0]], [[-128, 0]]]), shift_in=7, dash_syn=np.array([[15, 15]]))
    rec = xylo.run(cfg, np.array([[[3, 1]]]))
    assert rec.isyn[0, 0, 0, 0] == 16383 - 1  # then the minimum decay


def test_refuses_out_of_range_registers():
    with pytest.raises(DeployError, match="w_in = 200"):
        xylo.run(config(w_in=np.array([[[200, 0]]])), np.zeros((1, 1, 1), int))
    with pytest.raises(DeployError, match="dash_mem = 16"):
        xylo.run(config(dash_mem=np.array([16])), np.zeros((1, 1, 1), int))
    with pytest.raises(DeployError, match="threshold = 0"):
        xylo.run(config(threshold=np.array([0])), np.zeros((1, 1, 1), int))
    with pytest.raises(DeployError, match="17 input channels"):
        xylo.run(config(n_in=17), np.zeros((1, 1, 17), int))


@st.composite
def configs(draw) -> tuple[XyloConfig, np.ndarray]:
    n_in, nh, no = draw(st.integers(1, 16)), draw(st.integers(1, 24)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.1, 0.5, 1.0]))

    def weights(shape):
        return rng.integers(-128, 128, shape) * (rng.random(shape) < density)

    big = draw(st.booleans())  # thresholds near the state range, or small ones (many spikes per step)
    th_hi = 32767 if big else 600
    cfg = XyloConfig(w_in=weights((n_in, nh, 2)), w_rec=weights((nh, nh, 2)), w_out=weights((nh, no)),
                     shift_in=draw(st.integers(0, 7)), shift_rec=draw(st.integers(0, 7)),
                     shift_out=draw(st.integers(0, 7)), dash_mem=rng.integers(0, 16, nh),
                     dash_syn=rng.integers(0, 16, (nh, 2)), dash_mem_out=rng.integers(0, 16, no),
                     dash_syn_out=rng.integers(0, 16, no), threshold=rng.integers(1, th_hi + 1, nh),
                     threshold_out=rng.integers(1, th_hi + 1, no),
                     bias=rng.integers(-300, 301, nh) * draw(st.booleans()),
                     bias_out=rng.integers(-300, 301, no) * draw(st.booleans()))
    x = rng.integers(0, draw(st.sampled_from([2, 4, 40])), (draw(st.integers(1, 3)), draw(st.integers(1, 12)), n_in))
    return cfg, x


@needs_xylosim
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_equals_xylosim_on_every_spike_and_state(drawn):
    cfg, x = drawn
    ours, theirs = xylo.run(cfg, x), xylosim_driver.run(cfg, x)
    for field in xylo.XyloRecord.FIELDS:
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field), err_msg=field)


def test_xylosim_missing_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_xylosim(name, *a, **k):
        if name.startswith("xylosim"):
            raise ImportError("No module named 'xylosim'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_xylosim)
    assert not xylosim_driver.available()
    with pytest.raises(DeployError, match="pip install 'xylosim==0.1.3'"):
        xylosim_driver.run(config(), np.zeros((1, 1, 1), int))
