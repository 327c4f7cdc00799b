"""Bring your own graph: README's commands for snnTorch, Norse and Sinabs run as written on graphs those libraries
wrote themselves (tests/data/peers), with the library's own decisions as labels, to a certified deploy directory;
the certificate of any graph (a .nir file, a deploy directory, an in-memory graph) on the user's data."""

from __future__ import annotations

import re
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_writers import WRITTEN

from snnchip.cli import snn_run, snn_validate

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "tests" / "data" / "peers"
CASES = {"snntorch": "snntorch_mixed_zero", "norse": "norse_lif_cuba", "sinabs": "sinabs_conv_lif"}
MAINS = {"snn-validate": snn_validate.main, "snn-run": snn_run.main}


def readme_commands(writer: str) -> list[str]:
    """The shell lines of README's "Bring your own graph" subsection for ``writer``."""
    section = ROOT.joinpath("README.md").read_text().split("## Bring your own graph")[1].split("\n## ")[0]
    parts = dict((h.lower(), body) for h, body in re.findall(r"#### (\w+)[^\n]*\n(.*?)(?=\n#### |\Z)", section, re.S))
    return [line for block in re.findall(r"```bash\n(.*?)```", parts[writer], re.S) for line in block.splitlines()
            if line.strip()]


def user_files(directory: Path, writer: str) -> np.ndarray:
    """``<writer>.nir``, ``x.npy`` and ``y.npy`` (the writer's own decisions: its output summed over time)."""
    z = np.load(PEERS / f"{CASES[writer]}.npz")
    shutil.copy(PEERS / f"{CASES[writer]}.nir", directory / f"{writer}.nir")
    np.save(directory / "x.npy", z["x"])
    y = z["output"].sum(0).argmax(-1)
    np.save(directory / "y.npy", y)
    return y


def run(line: str) -> int:
    argv = shlex.split(line)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MAINS[argv[0]](argv[1:])


@pytest.mark.lava
@pytest.mark.parametrize("writer", sorted(CASES))
def test_readme_commands_certify_each_writers_graph(writer, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    user_files(tmp_path, writer)
    commands = readme_commands(writer)
    assert commands and commands[0].startswith(f"snn-validate {writer}.nir --from {writer}")
    for line in commands:
        assert run(line) == 0, (line, capsys.readouterr())
    out = capsys.readouterr().out
    assert "result: PASSED" in out and f"interpretation: --from {writer}" in out.splitlines()[1]
    # the reference reproduces the writer's own decisions on every sample: accuracy 1 against them
    assert "NIR reference executor accuracy 1.0000" in out
    assert re.search(r"chip vs Lava fixed_pt, differences\s+0 == 0\s+PASS", out)
    deploy = next(tmp_path.glob("*-deploy"))
    assert sorted(p.name for p in deploy.iterdir()) == ["manifest.json", "model.nir", "params.npz"]
    if writer == "snntorch":
        assert np.load(tmp_path / "chip.npz")["output"].shape[:2] == (20, 2)


def test_a_wrong_reading_fails_the_accuracy_gate_and_certifies_nothing(tmp_path, monkeypatch, capsys):
    """Norse's current-based graph labelled with Norse's own reading (--from norse) on 200 fresh inputs: read with
    NIR's current equation instead (--dt 1e-6 alone), its reference decides as Norse only 7.5 % of the time; the
    accuracy gate fails (and the hidden layer falls silent), exit 1, nothing is certified."""
    monkeypatch.chdir(tmp_path)
    user_files(tmp_path, "norse")
    from snnchip.export.nir_exec import NIRExecutor
    from snnchip.export.nir_read import read_graph
    from snnchip.spec import Interpretation

    xs = (np.random.default_rng(1).uniform(size=(25, 200, 12)) < 0.3).astype(np.float32)
    np.save("x.npy", xs)
    truth = NIRExecutor(read_graph("norse.nir"), Interpretation(writer="norse")).run(xs)
    np.save("y.npy", truth.output.numpy().sum(0).argmax(-1))
    base = "snn-validate norse.nir --input x.npy --labels y.npy --lava-samples 0"
    assert run(base + " --dt 1e-6 --deploy-out bad") == 1
    assert "result: FAILED (float_accuracy, " in capsys.readouterr().out and not Path("bad").exists()
    assert run(base + " --from norse --deploy-out good") == 0
    assert Path("good/manifest.json").is_file()


def test_python_api_on_an_in_memory_graph_and_short_reprs():
    import snnchip
    from snnchip.export.nir_read import read_graph

    z = np.load(PEERS / "norse_lif_cuba.npz")
    y = z["output"].sum(0).argmax(-1)
    report = snnchip.validate(read_graph(PEERS / "norse_lif_cuba.nir"),
                              snnchip.ValidateConfig(lava_samples=0), progress=False,
                              interpretation={"writer": "norse"}, x=z["x"], labels=y)
    assert report["passed"] and report["chip"]["float_accuracy"] == 1.0
    assert report["interpretation"]["writer"] == "norse"
    text = repr(report)
    assert text.startswith("<ValidationReport PASSED: in-memory NIR graph") and len(text) < 200
    failed = snnchip.validate(read_graph(PEERS / "norse_lif_cuba.nir"), snnchip.ValidateConfig(
        lava_samples=0, min_accuracy=1.0), progress=False, x=z["x"], labels=(y + 1) % 4,
        interpretation={"writer": "norse"})
    assert repr(failed).startswith("<ValidationReport FAILED") and "failed: float_accuracy" in repr(failed)


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: shutil.copy(PEERS / "norse_iaf.nir", d / "m.nir") and None, "a foreign graph brings no data"),
    (lambda d: (d / "m.nir").write_text('{"nodes": {}}'), "m.nir is a JSON document despite its .nir suffix; "
                                                           "expected a model.pt"),
    (lambda d: (d / "m.nir").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "m.nir is an image"),
    (lambda d: (d / "m.nir").mkdir(), "m.nir: missing model.nir, params.npz, manifest.json"),
])
def test_sources_are_identified_by_content(make, message, tmp_path, capsys):
    """An HDF5 .nir is read as a graph (it was read as a checkpoint: 'refused to load: the file holds Python
    objects'); anything else is named for what it is."""
    make(tmp_path)
    assert snn_validate.main([str(tmp_path / "m.nir"), "--lava-samples", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("labels", "message"), [(np.zeros(5, np.int64), r"shape \[batch\] = \[3\]"),
                                                 (np.array([0.5, 1, 2]), "non-negative integer classes"),
                                                 (np.array([-1, 0, 1]), "non-negative integer classes")])
def test_bad_labels_get_one_line(labels, message, tmp_path, capsys):
    z = np.load(PEERS / "norse_iaf.npz")
    np.save(tmp_path / "x.npy", z["x"])
    np.save(tmp_path / "y.npy", labels)
    assert snn_validate.main([str(PEERS / "norse_iaf.nir"), "--from", "norse", "--input", str(tmp_path / "x.npy"),
                              "--labels", str(tmp_path / "y.npy"), "--lava-samples", "0",
                              "--deploy-out", str(tmp_path / "d")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "d").exists()


def test_dataset_whose_samples_match_the_graphs_input(tmp_path, capsys):
    """--dataset digits --T 4 on a foreign 64-16-10 graph: the 8x8 digits (flattened) presented for 4 steps, with
    their labels; a graph whose input does not match is refused naming both shapes."""
    import nir

    from snnchip.export.nir_export import write_nir

    rng = np.random.default_rng(0)

    def graph(n_in):
        return nir.NIRGraph.from_list(
            nir.Input(np.array([n_in])), nir.Affine(rng.normal(0, 0.3, (16, n_in)), np.full(16, 0.1)),
            nir.LIF(tau=np.full(16, 2.0), r=np.full(16, 2.0), v_leak=np.zeros(16), v_threshold=np.ones(16),
                    v_reset=np.zeros(16)),
            nir.Affine(rng.normal(0, 1.0, (10, 16)), np.zeros(10)),
            nir.LIF(tau=np.full(10, 2.0), r=np.full(10, 2.0), v_leak=np.zeros(10), v_threshold=np.ones(10),
                    v_reset=np.zeros(10)),
            nir.Output(np.array([10])))

    write_nir(graph(64), tmp_path / "g.nir")
    code = snn_validate.main([str(tmp_path / "g.nir"), "--dataset", "digits", "--T", "4", "--samples", "60",
                              "--lava-samples", "0", "--reset", "zero", "--deploy-out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code in (0, 1) and "on digits (T=4, 60 samples; NIR reference executor accuracy" in out
    assert "0a. float accuracy above chance" in out
    write_nir(graph(12), tmp_path / "h.nir")
    assert snn_validate.main([str(tmp_path / "h.nir"), "--dataset", "digits", "--T", "4"]) == 2
    assert "samples of shape (64,); the graph's input is (12,)" in capsys.readouterr().err


@pytest.mark.lava
@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_every_writer_file_is_certified_with_from_alone(name):
    """All 14 snnTorch, Norse and Sinabs files, with --from WRITER (and the library's reset mechanism) alone and the
    library's own decisions as labels: reference accuracy 1, every gate passes, Lava = chip (measured: chip spike
    agreement 99.73-100 % in the worst layer, 0 Lava differences)."""
    import snnchip
    from snnchip.export.nir_read import read_graph

    z = np.load(PEERS / f"{name}.npz")
    out = z["output"]
    y = out.reshape(*out.shape[:2], -1).sum(0).argmax(-1)
    mechanism = WRITTEN[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = snnchip.validate(read_graph(PEERS / f"{name}.nir"), snnchip.ValidateConfig(lava_samples=1),
                                  progress=False, x=z["x"], labels=y,
                                  interpretation={"writer": name.split("_")[0],
                                                  **({"reset": mechanism} if mechanism else {})})
    assert report["passed"], report
    assert report["chip"]["float_accuracy"] == 1.0 and report["lava"]["total_differences"] == 0
