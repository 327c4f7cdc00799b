"""`snn-export --target nir` and `snn-run --backend reference` end to end, as a user runs them."""

import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_export import spec_to_nir, write_nir
from snnchip.spec import LayerSpec, NetworkSpec, NeuronSpec

BIN = Path(sys.executable).parent

SPEC = NetworkSpec(input_shape=(3,), T=4, num_classes=2, layers=(
    LayerSpec("hidden", "linear", out_features=4, neuron=NeuronSpec(lam=0.5, theta=0.5)),
    LayerSpec("out", "linear", out_features=2, neuron=NeuronSpec(kind="readout"))))
PARAMS = {"hidden": {"weight": np.linspace(-0.5, 1.0, 12).reshape(4, 3).astype(np.float32),
                     "bias": np.full(4, 0.2, np.float32)},
          "out": {"weight": np.linspace(-1, 1, 8).reshape(2, 4).astype(np.float32), "bias": np.zeros(2, np.float32)}}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120)


@pytest.fixture
def graph_and_input(tmp_path):
    write_nir(spec_to_nir(SPEC, PARAMS), tmp_path / "g.nir")
    x = np.random.default_rng(0).uniform(0, 1, (4, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path, x


def test_snn_run_reference(graph_and_input):
    d, x = graph_and_input
    proc = cli("snn-run", str(d / "g.nir"), "--input", str(d / "x.npy"), "--out", str(d / "y.npz"))
    assert proc.returncode == 0, proc.stderr
    y = np.load(d / "y.npz")
    assert sorted(y.files) == ["output", "spikes/hidden"]
    want = NIRExecutor(spec_to_nir(SPEC, PARAMS)).run(x)
    np.testing.assert_allclose(y["output"], want.output.numpy(), atol=1e-6)
    np.testing.assert_array_equal(y["spikes/hidden"], want.spikes["hidden"].numpy())
    assert 0 < y["spikes/hidden"].mean() < 1
    assert "metadata['snnchip'] v1" in proc.stdout and "spikes/hidden" in proc.stdout


@pytest.mark.parametrize(("bad", "message"), [(np.zeros((4, 5, 2)), "shape"), (np.full((4, 5, 3), np.nan), "NaN"),
                                              (np.zeros(3), "shape")])
def test_snn_run_rejects_bad_input(graph_and_input, bad, message):
    d, _ = graph_and_input
    np.save(d / "bad.npy", bad)
    proc = cli("snn-run", str(d / "g.nir"), "--input", str(d / "bad.npy"), "--out", str(d / "y.npz"))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (d / "y.npz").exists()


def test_snn_run_foreign_graph_reports_interpretation(tmp_path):
    lif = nir.LIF(tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2))
    g = nir.NIRGraph(nodes={"i": nir.Input(np.array([2])), "lif": lif, "o": nir.Output(np.array([2]))},
                     edges=[("i", "lif"), ("lif", "o")], type_check=False)
    write_nir(g, tmp_path / "f.nir")
    np.save(tmp_path / "x.npy", np.ones((3, 1, 2)))
    proc = cli("snn-run", str(tmp_path / "f.nir"), "--input", str(tmp_path / "x.npy"), "--out",
               str(tmp_path / "y.npz"), "--reset", "subtract", "--spike-compare", "ge")
    assert proc.returncode == 0, proc.stderr
    assert "reset=subtract" in proc.stdout and "compare=ge" in proc.stdout
    assert np.load(tmp_path / "y.npz")["spikes/lif"][:, 0, 0].tolist() == [1, 1, 1]  # u = 1 >= θ every step


def test_snn_export_nir_from_checkpoint(tmp_path):
    train = pytest.importorskip("snnchip.train")
    from snnchip.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = train.build_model(SPEC)
    save_checkpoint(tmp_path / "model.pt", SPEC, model.state_dict())
    proc = cli("snn-export", str(tmp_path / "model.pt"), "--target", "nir", "-o", str(tmp_path / "m.nir"))
    assert proc.returncode == 0, proc.stderr
    assert "subtractive reset" in proc.stdout and "u >= θ" in proc.stdout
    graph = nir.read(tmp_path / "m.nir")
    assert graph.nodes["hidden_neuron"].metadata["snnchip"]["layer"] == "hidden"
    x = torch.rand(4, 2, 3)
    torch.testing.assert_close(NIRExecutor(graph).run(x).output, train.simulate(model, x).output, atol=1e-5, rtol=0)


def test_snn_export_corrupt_nir_is_one_line_error(tmp_path):
    (tmp_path / "broken.nir").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    proc = cli("snn-export", str(tmp_path / "broken.nir"), "--target", "nir", "-o", str(tmp_path / "o.nir"))
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.nir").exists()
