"""The Lava shim: Python 3.11 patch, and a Dense + LIF network in Loihi2SimCfg(fixed_pt) checked by hand."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from snnchip import lava_compat


def test_patch_turns_lava_dataclass_defaults_into_factories_only_for_lava():
    code = (
        "import dataclasses, snnchip.lava_compat as c\n"
        "@dataclasses.dataclass\nclass B:\n    n: int = 0\n"
        "try:\n"
        "    @dataclasses.dataclass\n    class Outside:\n        b: B = B()\n"
        "    print('outside-accepted')\n"
        "except ValueError:\n    print('outside-refused')\n"
        "c.apply_dataclass_patch()\n"
        "try:\n"
        "    @dataclasses.dataclass\n    class Outside2:\n        b: B = B()\n"
        "    print('outside2-accepted')\n"
        "except ValueError:\n    print('outside2-refused')\n"
        "from lava.magma.compiler.var_model import CoreEncoder\n"
        "a, b = CoreEncoder(), CoreEncoder()\n"
        "a.x.base = 5\n"
        "print('lava-ok', b.x.base, a.x is not b.x)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # Python 3.11 refuses unhashable defaults outside lava before and after the patch; lava's import works,
    # and each instance gets its own copy of the default.
    assert out == ["outside-refused", "outside2-refused", "lava-ok", "0", "True"]


def test_unpatched_lava_import_fails_on_311():
    if sys.version_info < (3, 11):
        pytest.skip("the dataclass check only exists on Python >= 3.11")
    res = subprocess.run([sys.executable, "-c", "import lava.magma.compiler.var_model"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "mutable default" in res.stderr


def test_versions_report_lava():
    v = lava_compat.versions()
    assert v["lava-nc"] == "0.10.0" and v["nir"].startswith("1.")
    assert dataclasses.is_dataclass(lava_compat.lava_module("magma.compiler.var_model").CoreEncoder)


def _hand_lif(u, v, a_in, du, dv, bias_mant, bias_exp, vth):
    """Lava/Loihi fixed-point LIF step (docs/loihi-fixed-point.md, Lava's LIF), written independently of Lava."""
    p = u.astype(np.int64) * (4096 - (du + 1))
    u = (np.sign(p) * (np.abs(p) >> 12)) + (a_in.astype(np.int64) << 6)
    q = v.astype(np.int64) * (4096 - dv)
    v = np.sign(q) * (np.abs(q) >> 12) + u + (bias_mant.astype(np.int64) << bias_exp)
    v = np.clip(v, -(2**23 - 1), 2**23 - 1)
    s = v > (vth << 6)
    v = np.where(s, 0, v)
    return u, v, s


@pytest.mark.lava
def test_dense_lif_fixed_pt_matches_hand_computation():
    lava_compat.import_lava()
    LIF = lava_compat.lava_module("proc.lif.process").LIF
    Dense = lava_compat.lava_module("proc.dense.process").Dense
    cfgs = lava_compat.lava_module("magma.core.run_configs")
    RunSteps = lava_compat.lava_module("magma.core.run_conditions").RunSteps

    rng = np.random.default_rng(0)
    n0, n1, n2 = 4, 3, 2
    b0 = np.array([90, 140, 60, 200])
    w1 = 2 * rng.integers(0, 40, size=(n1, n0))  # even, non-negative: exact in 8-bit mantissa
    w2 = 2 * rng.integers(0, 60, size=(n2, n1))
    prm = dict(du=300, dv=500, vth=2)
    vth2 = 150
    lif0 = LIF(shape=(n0,), du=4095, dv=0, vth=3, bias_mant=b0, bias_exp=0)
    d1 = Dense(weights=w1)
    lif1 = LIF(shape=(n1,), bias_mant=0, bias_exp=0, **prm)
    d2 = Dense(weights=w2)
    lif2 = LIF(shape=(n2,), bias_mant=0, bias_exp=0, du=300, dv=500, vth=vth2)
    lif0.s_out.connect(d1.s_in)
    d1.a_out.connect(lif1.a_in)
    lif1.s_out.connect(d2.s_in)
    d2.a_out.connect(lif2.a_in)

    steps = 16
    seen = {k: [] for k in ("v0", "v1", "u1", "v2", "u2")}
    cfg = cfgs.Loihi2SimCfg(select_tag="fixed_pt")
    try:
        for _ in range(steps):
            lif0.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            seen["v0"].append(lif0.v.get().astype(np.int64))
            seen["v1"].append(lif1.v.get().astype(np.int64))
            seen["u1"].append(lif1.u.get().astype(np.int64))
            seen["v2"].append(lif2.v.get().astype(np.int64))
            seen["u2"].append(lif2.u.get().astype(np.int64))
    finally:
        lif0.stop()

    z = lambda n: np.zeros(n, dtype=np.int64)  # noqa: E731
    u0, v0, u1, v1, u2, v2 = z(n0), z(n0), z(n1), z(n1), z(n2), z(n2)
    s0_prev, s1_prev = np.zeros(n0, bool), np.zeros(n1, bool)
    spikes = 0
    for t in range(steps):
        a1 = w1 @ s0_prev  # one step of latency per Dense
        a2 = w2 @ s1_prev
        u0, v0, s0 = _hand_lif(u0, v0, z(n0), 4095, 0, b0, 0, 3)
        u1, v1, s1 = _hand_lif(u1, v1, a1, prm["du"], prm["dv"], z(n1), 0, prm["vth"])
        u2, v2, _ = _hand_lif(u2, v2, a2, prm["du"], prm["dv"], z(n2), 0, vth2)
        s0_prev, s1_prev = s0, s1
        spikes += int(s1.sum())
        np.testing.assert_array_equal(seen["v0"][t], v0, err_msg=f"layer 0 v at step {t}")
        np.testing.assert_array_equal(seen["u1"][t], u1, err_msg=f"layer 1 u at step {t}")
        np.testing.assert_array_equal(seen["v1"][t], v1, err_msg=f"layer 1 v at step {t}")
        np.testing.assert_array_equal(seen["u2"][t], u2, err_msg=f"layer 2 u at step {t}")
        np.testing.assert_array_equal(seen["v2"][t], v2, err_msg=f"layer 2 v at step {t}")
    assert spikes > 0, "the test network must exercise spikes in the hidden layer"
    assert np.abs(np.concatenate(seen["v2"])).max() > 0
