"""The Loihi deploy directory: writing, reading, errors, and the snn-export / snn-run commands."""

from __future__ import annotations

import json
import zipfile

import nir
import numpy as np
import pytest
import scipy.sparse as sp
from nir_nets import conv_graph, mlp_graph

from snnchip import cli
from snnchip.errors import DeployError
from snnchip.export.loihi import _pack_weight, _unpack_weight, deployment_from_graph, export_loihi, load_deploy
from snnchip.export.loihi2 import EMPF_TABLES
from snnchip.export.lowering import as_matrix, synapse_of
from snnchip.export.seal import sealed_manifest_json
from snnchip.hw_sim.chip import ChipSimulator


@pytest.fixture
def deploy_dir(tmp_path):
    return export_loihi(mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5), tmp_path / "dep")


def test_directory_holds_float_graph_integer_params_and_manifest(deploy_dir):
    assert sorted(p.name for p in deploy_dir.iterdir()) == ["manifest.json", "model.nir", "params.npz"]
    man = json.loads((deploy_dir / "manifest.json").read_text())
    assert man["format"] == {"name": "snnchip-loihi-deploy", "version": 8}
    assert set(man["seal"]["files"]) == {"model.nir", "params.npz"} and "stages[1]" in man["seal"]["values"]
    assert [[(p["source"], p["synapse"], p["delay"], p["lava_delay"]) for p in s["inputs"]] for s in man["stages"]] \
        == [[("input", "dense", 0, 0)], [("fc1", "dense", 0, 0)]]
    assert [s["process"] for s in man["stages"]] == ["snnchip.CubaLIF", "lava.LIF"] and man["output"] == "fc2"
    assert man["versions"]["lava-nc"] == "0.10.0" and man["T"] == 4
    assert man["latency"]["per_stage"] == {"fc1": 1, "fc2": 2} and man["input"]["frac_bits"] == 16
    assert man["resources"]["neurons"] == 11 and man["resources"]["per_stage"]["fc1"]["synapses"] <= 48
    assert {"clipped_fraction", "max_abs_weight_error", "mean_abs_weight_error"} <= \
        set(man["quantization"][0]["projections"][0])
    with np.load(deploy_dir / "params.npz") as z:  # the float stages are model.nir's (format 7)
        assert z["fc1/in0/weight"].dtype == np.int32 and not any("float" in k for k in z.files)
    assert set(nir.read(deploy_dir / "model.nir").nodes) >= {"fc1", "fc1_neuron", "fc2_neuron"}


def as_version_7(deploy_dir) -> None:
    """Rewrite a format-8 directory as format 7 wrote it, sealed: no ``message_cap`` in the stages."""
    man = json.loads((deploy_dir / "manifest.json").read_text())
    man.pop("seal")
    for s in man["stages"]:
        s.pop("message_cap")
    man["format"]["version"] = 7
    (deploy_dir / "manifest.json").write_text(sealed_manifest_json(deploy_dir, man))


def test_format_7_empf_directory_reads_with_the_24_bit_cap_and_runs_the_same(tmp_path):
    """Format 7 capped graded messages at 2^23 − 1 only; its EM-PF directories read so and run bit for bit as the
    format-8 directory of the same graph (whose tighter cap no message within the worst-case bound reaches)."""
    from test_deploy_empf import empf_mlp_graph

    from snnchip.hw_sim.chip import ChipSimulator

    graph = empf_mlp_graph((6, 9, 7, 3), T=4, seed=21)
    new = export_loihi(graph, tmp_path / "v8")
    old = export_loihi(graph, tmp_path / "v7")
    as_version_7(old)
    a, b = load_deploy(new), load_deploy(old)
    assert b.manifest["format"]["version"] == 7 and b.seal.sealed
    assert b.qnet.stage("fc1").message_cap == 2**23 - 1 > a.qnet.stage("fc1").message_cap
    x = np.random.default_rng(3).uniform(0, 1, (4, 5, 6))
    ra, rb = ChipSimulator(a).run(x), ChipSimulator(b).run(x)
    np.testing.assert_array_equal(ra.output_raw, rb.output_raw)
    assert all(np.array_equal(ra.spikes[k], rb.spikes[k]) for k in ra.spikes)


def as_version_6(deploy_dir) -> None:
    """Rewrite a format-7/8 directory as format 6 wrote it, sealed: the float stages' arrays (``weight_float``,
    ``bias_float``, EM-PF ``table/*``) in params.npz beside the integers, no message cap."""
    net = load_deploy(deploy_dir).net
    with np.load(deploy_dir / "params.npz") as z:
        arrays = dict(z)
    for st in net.stages:
        arrays[f"{st.name}/bias_float"] = st.bias
        for i, p in enumerate(st.inputs):
            arrays.update(_pack_weight(f"{st.name}/in{i}/weight_float", p.weight))
        arrays.update({f"{st.name}/table/{fk}": st.tables[fk] for fk, _ in EMPF_TABLES} if st.tables else {})
    np.savez(deploy_dir / "params.npz", **arrays)
    man = json.loads((deploy_dir / "manifest.json").read_text())
    man.pop("seal")
    man["format"]["version"] = 6
    for s in man["stages"]:
        s.pop("message_cap", None)
    (deploy_dir / "manifest.json").write_text(sealed_manifest_json(deploy_dir, man))


def test_format_7_float_stages_are_model_nir_lowered_again(deploy_dir, tmp_path):
    """The float stages of a format-7 directory equal the exporter's in memory, bit for bit; a format-6 directory
    (float arrays in params.npz) reads to the same; a model.nir of another shape is refused naming the file."""
    mem = deployment_from_graph(mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5))
    for dep in (load_deploy(deploy_dir), None):
        if dep is None:
            as_version_6(deploy_dir)
            dep = load_deploy(deploy_dir)
            assert dep.manifest["format"]["version"] == 6 and dep.seal.sealed
        for a, b in zip(dep.net.stages, mem.net.stages, strict=True):
            assert (a.name, a.kind, a.lam, a.theta, a.out_shape) == (b.name, b.kind, b.lam, b.theta, b.out_shape)
            np.testing.assert_array_equal(a.bias, b.bias)
            np.testing.assert_array_equal(a.inputs[0].weight, b.inputs[0].weight)
    man = json.loads((deploy_dir / "manifest.json").read_text())  # format 6: the float values held to the limits
    man["stages"][0]["lam"] = 1.5
    (deploy_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DeployError, match=r"stage 1 \('fc1'\): lam = 1.5 is invalid: a decay factor in \[0, 1\]"):
        load_deploy(deploy_dir, allow_edited=True)
    other = export_loihi(mlp_graph((6, 5, 3), T=4, seed=1, gain=2.5), tmp_path / "other")
    (other / "model.nir").write_bytes(export_loihi(mlp_graph((6, 8, 3), T=4, seed=2), tmp_path / "o2")
                                      .joinpath("model.nir").read_bytes())
    with pytest.raises(DeployError, match=r"stage 1 \('fc1'\): out_shape = \[5\], but model.nir lowers to \[8\]"):
        load_deploy(other, allow_edited=True)
    (other / "model.nir").write_bytes(b"garbage")
    with pytest.raises(DeployError, match=r"model.nir: the float graph does not lower again \(.*expected a NIR graph"):
        load_deploy(other, allow_edited=True)


def test_load_round_trips_the_in_memory_deployment(deploy_dir):
    dep = load_deploy(deploy_dir)
    mem = deployment_from_graph(mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5))
    for a, b in zip(dep.qnet.stages, mem.qnet.stages, strict=True):
        np.testing.assert_array_equal(a.inputs[0].weight, b.inputs[0].weight)
        assert [(p.source, p.weight_exp, p.num_message_bits) for p in a.inputs] == \
            [(p.source, p.weight_exp, p.num_message_bits) for p in b.inputs]
        assert (a.dv, a.vth, a.scale, a.latency) == (b.dv, b.vth, b.scale, b.latency)
    x = np.random.default_rng(0).uniform(0, 1, (4, 3, 6))
    np.testing.assert_array_equal(ChipSimulator(deploy_dir).run(x).output_raw, ChipSimulator(mem).run(x).output_raw)


def test_missing_or_corrupt_files_raise_deploy_error(deploy_dir, tmp_path):
    with pytest.raises(DeployError, match="not a deploy directory"):
        load_deploy(tmp_path / "nowhere")
    (deploy_dir / "params.npz").write_bytes(b"garbage")
    with pytest.raises(DeployError, match="params.npz"):
        load_deploy(deploy_dir)
    (deploy_dir / "manifest.json").write_text("{not json")
    with pytest.raises(DeployError, match="manifest.json.*corrupt"):
        load_deploy(deploy_dir)
    (deploy_dir / "model.nir").unlink()
    with pytest.raises(DeployError, match="missing model.nir"):
        load_deploy(deploy_dir)


def _set(path, value):
    """A manifest edit: ``path`` is a key sequence into the JSON (an int indexes a list)."""
    def edit(man):
        *head, last = path
        for key in head:
            man = man[key]
        man[last] = value
    return edit


@pytest.mark.parametrize("edit,field", [
    (_set(("stages", 0, "dv"), -5000), "stage 1 ('fc1'): dv = -5000 is invalid: an integer in 0..4095"),
    (_set(("stages", 0, "dv"), "5"), "stage 1 ('fc1'): dv = '5' is invalid"),
    (_set(("stages", 0, "vth"), -100), "stage 1 ('fc1'): vth = -100 is invalid: an integer in 1..131071"),
    (_set(("stages", 1, "inputs", 0, "weight_exp"), 100),
     "stage 2 ('fc2'), input 0: weight_exp = 100 is invalid: an integer in -31..31"),
    (_set(("stages", 1, "inputs", 0, "weight_exp"), 2.5), "weight_exp = 2.5 is invalid"),
    (_set(("stages", 1, "inputs", 0, "source"), "nowhere"),
     "stage 2 ('fc2'): inputs = [('nowhere', 0, 'dense')], but model.nir lowers to [('fc1', 0, 'dense')]"),
    (_set(("stages", 1, "inputs", 0, "lava_delay"), 3), "lava_delay = 3 is invalid: the schedule needs 0"),
    (_set(("stages", 1, "latency"), 5), "stage 'fc2': latency = 5 is invalid: its projections give 2"),
    (_set(("stages", 1, "vth"), 7), "stage 2 ('fc2'): vth = 7 is invalid: 131072: a readout"),
    (_set(("input", "frac_bits"), 80), "input.frac_bits = 80 is invalid: an integer in 0..23"),
    (_set(("stages", 0, "kind"), "hodgkin-huxley"), "stage 1 ('fc1'): kind = 'hodgkin-huxley' is invalid: one of"),
    (_set(("stages", 0, "du"), 5000), "stage 1 ('fc1'): du = 5000 is invalid: an integer in 0..4095"),
    (_set(("stages", 0, "inputs", 0, "num_message_bits"), 30), "num_message_bits = 30 is invalid: an integer in 0..24"),
    (_set(("stages", 0, "reset"), "explode"), "stage 1 ('fc1'): reset = 'explode' is invalid"),
    (_set(("stages", 0, "spike"), "eq"), "stage 1 ('fc1'): spike = 'eq' is invalid"),
    (_set(("stages", 0, "scale"), float("nan")), "stage 1 ('fc1'): scale = nan is invalid: a finite number > 0"),
    (_set(("stages", 0, "lam"), 1.5), "stage 1 ('fc1'): lam = 1.5, but model.nir lowers to 0.5"),
    (_set(("stages", 0, "process"), "lava.Foo"), "stage 1 ('fc1'): process = 'lava.Foo' is invalid"),
    (_set(("stages", 0, "process"), "lava.LIF"), "process = 'lava.LIF' is invalid: this stage runs on snnchip.CubaLIF"),
    (_set(("stages", 1, "out_shape"), [9]), "stage 2 ('fc2'): out_shape = [9], but model.nir lowers to [3]"),
    (_set(("stages", 1, "name"), "fc1"), "stages[1].name = 'fc1' is invalid: a unique, non-empty string"),
    (_set(("T",), 0), "T = 0 is invalid: an integer in 1..10000"),
    (_set(("T",), 10**9), "T = 1000000000 is invalid"),
    (_set(("encoding",), "morse"), "encoding = 'morse' is invalid"),
])
def test_a_manifest_value_outside_the_chip_limits_is_refused_by_field(deploy_dir, edit, field):
    """Even when an edited deployment is explicitly allowed, every value is held to the chip's limits (and a float
    stage's to what model.nir lowers to)."""
    man = json.loads((deploy_dir / "manifest.json").read_text())
    edit(man)
    (deploy_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DeployError, match="differs from its sealed value"):
        load_deploy(deploy_dir)
    with pytest.raises(DeployError) as err:
        load_deploy(deploy_dir, allow_edited=True)
    assert str(err.value).startswith(str(deploy_dir)) and field in str(err.value)  # the file, then the field


def _rewrite_params(deploy_dir, **changes):
    with np.load(deploy_dir / "params.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with open(deploy_dir / "params.npz", "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize("key,change,field", [
    ("fc1/in0/weight", lambda w: w + 1, "stage 1 ('fc1'), input 0: weight = "),  # odd: off the mixed-sign grid
    ("fc1/in0/weight", lambda w: np.where(w == w.max(), 300, w), "weight = 300 is invalid: 8-bit mantissas"),
    ("fc1/in0/weight", lambda w: w.astype(np.float64),
     "stage 1 ('fc1'), input 0: weight = 'float64 array (8, 6)' is invalid"),
    ("fc2/in0/weight", lambda w: w[:, :4], "stage 2 ('fc2'), input 0: weight = 'ndarray (3, 4)' is invalid: a dense"),
    ("fc1/in0/weight_float", lambda w: np.where(w == w.max(), np.nan, w), "weight_float = 'an array with NaN"),
    ("fc1/bias", lambda b: b + 2**18, "stage 1 ('fc1'): bias = "),
    ("fc2/bias_float", lambda b: b[:2], "stage 2 ('fc2'): bias_float = 'float64 array (2,)' is invalid"),
])
def test_a_params_array_outside_the_chip_limits_is_refused_by_field(deploy_dir, key, change, field):
    if "float" in key:  # format 6's float arrays
        as_version_6(deploy_dir)
    with np.load(deploy_dir / "params.npz") as z:
        _rewrite_params(deploy_dir, **{key: change(z[key])})
    with pytest.raises(DeployError) as err:
        load_deploy(deploy_dir, allow_edited=True)
    assert str(err.value).startswith(str(deploy_dir / "params.npz")) and field in str(err.value)


def test_an_unreadable_params_archive_is_refused_naming_it(deploy_dir):
    good = (deploy_dir / "params.npz").read_bytes()
    info = zipfile.ZipFile(deploy_dir / "params.npz").getinfo("fc1/in0/weight.npy")
    flipped = bytearray(good)
    flipped[info.header_offset + 30 + len(info.filename) + info.compress_size // 2 + 20] ^= 0xFF
    with open(deploy_dir / "x.npy", "wb") as fh:
        np.save(fh, np.zeros(3))
    for junk in (b"garbage", good[:len(good) // 2], bytes(flipped), (deploy_dir / "x.npy").read_bytes(),
                 b"PK\x03\x04" + bytes(100)):
        (deploy_dir / "params.npz").write_bytes(junk)
        with pytest.raises(DeployError, match=f"^{deploy_dir / 'params.npz'}: corrupt or not a params archive"):
            load_deploy(deploy_dir, allow_edited=True)
    (deploy_dir / "params.npz").write_bytes(good)
    _rewrite_params(deploy_dir, **{"fc1/in0/weight": np.array([object()], dtype=object)})
    with pytest.raises(DeployError, match=r"params.npz: corrupt or not .*holds Python objects \(a pickle\)"):
        load_deploy(deploy_dir, allow_edited=True)


def test_snn_run_refuses_an_out_of_range_deploy_directory_in_one_line(deploy_dir, tmp_path, capsys):
    man = json.loads((deploy_dir / "manifest.json").read_text())
    man["stages"][0]["dv"] = -5000
    (deploy_dir / "manifest.json").write_text(json.dumps(man))
    np.save(tmp_path / "x.npy", np.ones((4, 1, 6)))
    base = [str(deploy_dir), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npz"), "--backend", "chip"]
    assert cli.run(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stage 1 ('fc1') differs from its sealed value" in err
    assert cli.run([*base, "--allow-edited"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dv = -5000 is invalid" in err and not (tmp_path / "y.npz").exists()


def test_conv_stages_are_stored_as_kernels_and_round_trip(tmp_path):
    """Format 6: a convolution (pooling composed) is its kernel in params.npz and its geometry in the manifest."""
    graph = conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=4, seed=1)
    out = export_loihi(graph, tmp_path / "conv")
    man = json.loads((out / "manifest.json").read_text())
    assert [s["inputs"][0]["synapse"] for s in man["stages"]] == ["conv", "conv", "dense"]
    assert man["stages"][1]["inputs"][0]["geometry"] == {
        "in_shape": [2, 12, 12], "out_shape": [3, 6, 6], "stride": [2, 2], "pad_before": [2, 2],
        "pad_after": [2, 2], "dilation": [1, 1], "groups": 1}  # 2x2 pool then 3x3 conv (pad 1): 6x6, stride 2
    with np.load(out / "params.npz") as z:
        assert "conv1/in0/weight" not in z.files and "fc3/in0/weight" in z.files
        # the composed 6x6 kernel repeats each 3x3 tap over the 2x2 pooling window: stored compact
        assert z["conv2/in0/weight/kernel"].shape == (3, 2, 3, 3)
        assert list(z["conv2/in0/weight/kernel_repeat"]) == [2, 2]
        assert z["conv2/in0/weight/kernel"].dtype == np.int16  # 8-bit mantissas
    dep, mem = load_deploy(out), deployment_from_graph(graph)
    for a, b in zip(dep.qnet.stages + dep.net.stages, mem.qnet.stages + mem.net.stages, strict=True):
        (pa,), (pb,) = a.inputs, b.inputs
        assert pa.synapse == pb.synapse
        if pa.synapse == "conv":
            assert pa.weight.geometry() == pb.weight.geometry()
            np.testing.assert_array_equal(pa.weight.kernel, pb.weight.kernel)
        else:
            np.testing.assert_array_equal(pa.weight, pb.weight)
    x = np.random.default_rng(0).uniform(0, 1, (4, 2, 1, 12, 12))
    np.testing.assert_array_equal(ChipSimulator(dep).run(x).output_raw, ChipSimulator(mem).run(x).output_raw)


def test_format_5_directory_with_csr_convolutions_still_reads_and_runs_the_same(tmp_path):
    """A format-5 directory (every convolution a CSR matrix, sealed) reads, and runs bit for bit as the format-6
    directory of the same graph: the kernels expand to those very matrices."""

    graph = conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=4, seed=1, pool="avg")
    new = export_loihi(graph, tmp_path / "v7")
    old = export_loihi(graph, tmp_path / "v5")
    as_version_6(old)
    man = json.loads((old / "manifest.json").read_text())
    with np.load(old / "params.npz") as z:
        arrays = dict(z)
    for s in man["stages"]:
        for i, p in enumerate(s["inputs"]):
            if p["synapse"] != "conv":
                continue
            geometry = p.pop("geometry")
            p.update(synapse="sparse", process="lava.Sparse")
            for part in ("weight", "weight_float"):
                key = f"{s['name']}/in{i}/{part}"
                m = sp.csr_matrix(_unpack_weight(arrays, key, "conv", geometry).to_csr())
                arrays.pop(f"{key}/kernel")
                arrays.pop(f"{key}/kernel_repeat", None)
                m.eliminate_zeros()
                arrays.update({f"{key}/data": m.data, f"{key}/indices": m.indices, f"{key}/indptr": m.indptr,
                               f"{key}/shape": np.asarray(m.shape, np.int64)})
    np.savez(old / "params.npz", **arrays)
    man.pop("seal")
    man["format"]["version"] = 5
    (old / "manifest.json").write_text(sealed_manifest_json(old, man))
    dep5 = load_deploy(old)
    assert dep5.seal.sealed and [q.inputs[0].synapse for q in dep5.qnet.stages] == ["sparse", "sparse", "dense"]
    x = np.random.default_rng(0).uniform(0, 1, (4, 3, 1, 12, 12))
    a, b = ChipSimulator(dep5).run(x), ChipSimulator(new).run(x)
    np.testing.assert_array_equal(a.output_raw, b.output_raw)
    for k in a.states:
        np.testing.assert_array_equal(a.states[k]["v"], b.states[k]["v"])


@pytest.mark.parametrize("make", [lambda: mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5),
                                  lambda: conv_graph(in_shape=(1, 12, 12), channels=(2, 3), classes=3, T=4, seed=1)])
def test_wide_weights_are_stored_beside_the_mantissas_and_round_trip(tmp_path, make):
    """snn-export --weights wide: each projection's residual mantissas (``<stage>/in<i>/weight_low``, the
    projection's layout) and ``low_exp``; the directory reads back to the in-memory deployment and runs the same."""
    graph = make()
    nir.write(tmp_path / "m.nir", graph)
    assert cli.export([str(tmp_path / "m.nir"), "--target", "loihi", "--weights", "wide", "-o", str(tmp_path / "d")]) \
        == 0
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert all(isinstance(p["low_exp"], int) for s in man["stages"] for p in s["inputs"])
    dep, mem = load_deploy(tmp_path / "d"), deployment_from_graph(graph, wide_weights=True)
    narrow = deployment_from_graph(graph)
    for a, b in zip(dep.qnet.stages, mem.qnet.stages, strict=True):
        (pa,), (pb,) = a.inputs, b.inputs
        assert pa.low_exp == pb.low_exp and synapse_of(pa.low) == pa.synapse
        assert abs(as_matrix(pa.low) - as_matrix(pb.low)).sum() == 0
    assert man["resources"]["synapses"] > narrow.manifest["resources"]["synapses"]
    x = np.random.default_rng(0).uniform(0, 1, (4, 2, *dep.qnet.input_shape))
    np.testing.assert_array_equal(ChipSimulator(dep).run(x).output_raw, ChipSimulator(mem).run(x).output_raw)


def test_a_wide_weights_residual_off_the_grid_is_refused_and_version_3_still_reads(tmp_path):
    graph = mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5)
    out = export_loihi(graph, tmp_path / "d", wide_weights=True)
    with np.load(out / "params.npz") as z:
        low = z["fc1/in0/weight_low"]
    _rewrite_params(out, **{"fc1/in0/weight_low": np.where(low == low.max(), 301, low)})
    with pytest.raises(DeployError, match=r"stage 1 \('fc1'\), input 0: weight_low = 301 is invalid: 8-bit"):
        load_deploy(out, allow_edited=True)
    narrow = export_loihi(graph, tmp_path / "n")  # version 3 wrote no low_exp: read as 8-bit weights
    as_version_6(narrow)
    man = json.loads((narrow / "manifest.json").read_text())
    for s in man["stages"]:
        for p in s["inputs"]:
            assert p.pop("low_exp") is None
    (narrow / "manifest.json").write_text(json.dumps({**man, "format": {**man["format"], "version": 3}}))
    x = np.random.default_rng(2).uniform(0, 1, (4, 3, 6))
    np.testing.assert_array_equal(ChipSimulator(narrow).run(x).output_raw,
                                  ChipSimulator(deployment_from_graph(graph)).run(x).output_raw)


@pytest.mark.parametrize("flag", [["--weights", "wide"], ["--weights", "8bit"], ["--headroom", "step"]])
def test_precision_options_apply_to_the_loihi_target_only(tmp_path, capsys, flag):
    nir.write(tmp_path / "m.nir", mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5))
    assert cli.export([str(tmp_path / "m.nir"), "--target", "netx", *flag, "-o", str(tmp_path / "n.net")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weights and --headroom apply to --target loihi, not netx" in err[0]
    assert not (tmp_path / "n.net").exists()


def test_snn_export_says_which_precision_and_why(tmp_path, capsys):
    nir.write(tmp_path / "m.nir", mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5))
    assert cli.export([str(tmp_path / "m.nir"), "--target", "loihi", "--headroom", "step", "-o", str(tmp_path / "d")]) \
        == 0
    out = capsys.readouterr().out
    assert "weights: 8-bit, headroom: one step (a snnchip model: resources and guarantees first; headroom as asked)" \
        in out
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert man["precision"]["headroom"] == "step" and {s["headroom"] for s in man["quantization"]} == {"step", "T"}


def _as_chain_version(deploy_dir, version: int) -> None:
    """Rewrite a (chain) version-3 directory in the layout of version 2 (one ``<stage>/weight`` per stage, its
    ``synapse``, ``in_shape``, ``weight_exp`` and ``num_message_bits`` on the stage) or 1 (no ``synapse``: dense)."""
    man = json.loads((deploy_dir / "manifest.json").read_text())
    with np.load(deploy_dir / "params.npz") as z:
        arrays = {k.replace("/in0/", "/"): z[k] for k in z.files}
    stages = []
    for i, s in enumerate(man["stages"]):
        (p,) = s.pop("inputs")
        s.update(in_shape=man["input"]["shape"] if i == 0 else man["stages"][i - 1]["out_shape"],
                 weight_exp=p["weight_exp"], num_message_bits=p["num_message_bits"])
        if version == 2:
            s["synapse"] = p["synapse"]
        if s["kind"] == "readout":
            s["vth"] = 0  # what versions 1 and 2 wrote for a readout
        stages.append({k: v for k, v in s.items() if k not in ("latency", "vsub", "reset_by")})
    np.savez(deploy_dir / "params.npz", **arrays)
    (deploy_dir / "manifest.json").write_text(json.dumps({**man, "stages": stages,
                                                          "format": {**man["format"], "version": version}}))


@pytest.mark.parametrize("version", [1, 2])
def test_chain_versions_are_read_and_unknown_versions_refused(deploy_dir, version):
    """Versions 1 and 2 (chains; version 1 every stage dense) are still read, unsealed; a newer version names the
    fix."""
    x = np.random.default_rng(3).uniform(0, 1, (4, 3, 6))
    ref = ChipSimulator(load_deploy(deploy_dir)).run(x)
    as_version_6(deploy_dir)
    _as_chain_version(deploy_dir, version)
    dep = load_deploy(deploy_dir)
    assert [[p.source for p in q.inputs] for q in dep.qnet.stages] == [["input"], ["fc1"]]
    assert [q.latency for q in dep.qnet.stages] == [1, 2] and not dep.seal.sealed
    np.testing.assert_array_equal(ChipSimulator(dep).run(x).output_raw, ref.output_raw)
    man = json.loads((deploy_dir / "manifest.json").read_text())
    (deploy_dir / "manifest.json").write_text(json.dumps({**man, "format": {**man["format"], "version": 9}}))
    with pytest.raises(DeployError, match=r"version 9 was written by a newer snnchip \(this one reads 1-8\); upgrade "
                                          r"snnchip, or re-export .*snn-export"):
        load_deploy(deploy_dir)


def test_export_replaces_an_existing_directory_atomically(deploy_dir):
    old = (deploy_dir / "manifest.json").read_text()
    export_loihi(mlp_graph((6, 8, 3), T=7, seed=1, gain=2.5), deploy_dir)
    assert json.loads((deploy_dir / "manifest.json").read_text())["T"] == 7 and old != ""
    assert [p.name for p in deploy_dir.parent.iterdir()] == ["dep"]


def test_snn_export_and_snn_run_chip(tmp_path, capsys):
    graph = tmp_path / "m.nir"
    nir.write(graph, mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5))
    assert cli.export([str(graph), "--target", "loihi", "-o", str(tmp_path / "dep")]) == 0
    out = capsys.readouterr().out
    assert "max|dW|" in out and "fc1" in out and "Lava latency 2 steps" in out
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(0, 1, (4, 2, 6)))
    args = [str(tmp_path / "dep"), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npz")]
    assert cli.run(args + ["--backend", "chip"]) == 0
    with np.load(tmp_path / "y.npz") as z:
        assert z["output"].shape == (4, 2, 3) and z["spikes/fc1"].shape == (4, 2, 8)
    assert cli.run([str(tmp_path / "nowhere"), "--input", str(tmp_path / "x.npy"), "--out", "y.npz",
                    "--backend", "chip"]) == 2


@pytest.mark.lava
def test_an_old_directory_runs_on_lava_as_on_the_chip(deploy_dir, tmp_path):
    """A version 2 readout (stored vth 0) runs on Lava's LIF as a readout that never fires."""
    as_version_6(deploy_dir)
    _as_chain_version(deploy_dir, 2)
    np.save(tmp_path / "x.npy", np.random.default_rng(3).uniform(0, 1, (4, 3, 6)))
    base = [str(deploy_dir), "--input", str(tmp_path / "x.npy")]
    assert cli.run(base + ["--out", str(tmp_path / "c.npz"), "--backend", "chip"]) == 0
    assert cli.run(base + ["--out", str(tmp_path / "l.npz"), "--backend", "lava"]) == 0
    with np.load(tmp_path / "c.npz") as c, np.load(tmp_path / "l.npz") as la:
        assert np.abs(c["output"]).max() > 0
        np.testing.assert_array_equal(c["output"], la["output"])


@pytest.mark.lava
def test_snn_run_lava_matches_chip(tmp_path):
    dep = export_loihi(mlp_graph((6, 8, 3), T=4, seed=1, gain=2.5), tmp_path / "dep")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(0, 1, (4, 2, 6)))
    base = [str(dep), "--input", str(tmp_path / "x.npy")]
    assert cli.run(base + ["--out", str(tmp_path / "c.npz"), "--backend", "chip"]) == 0
    assert cli.run(base + ["--out", str(tmp_path / "l.npz"), "--backend", "lava", "--lava-cfg", "fixed_pt"]) == 0
    with np.load(tmp_path / "c.npz") as c, np.load(tmp_path / "l.npz") as la:
        assert set(c.files) == set(la.files)
        for k in c.files:
            np.testing.assert_array_equal(c[k], la[k])
