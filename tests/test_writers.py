"""Writer conventions by name (``--from WRITER``): every neuron node read as the library that wrote the graph simulates
its kind, checked against that library's own spikes in tests/data/peers (written by snnTorch, Norse and Sinabs
themselves, never by snnchip); per-node settings on the command line and in TOML; a warning by node where one
global interpretation cannot read a graph; the ``--dt`` that puts an out-of-range leak in range."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from snnchip.errors import SpecError, UnsupportedNodeError
from snnchip.export.nir_exec import NIRExecutor
from snnchip.export.nir_read import read_graph
from snnchip.export.writers import MixedConventionsWarning, resolve
from snnchip.spec import Interpretation

PEERS = Path(__file__).parent / "data" / "peers"
# every file of the three target writers, with the reset mechanism it was built with (the writer's own setting)
WRITTEN = {"snntorch_leaky_zero": "zero", "snntorch_leaky_subtract": "subtract", "snntorch_rleaky_subtract":
           "subtract", "snntorch_rsynaptic_subtract": "subtract", "snntorch_rsynaptic_zero": "zero",
           "snntorch_conv_zero": "zero", "snntorch_mixed_zero": "zero", "snntorch_mixed_subtract": "subtract",
           "norse_lifbox_li": None, "norse_lif_cuba": None, "norse_conv_lifbox": None, "norse_iaf": None,
           "sinabs_conv_iaf": None, "sinabs_conv_lif": "zero"}


def _agreement(name: str, interpretation: Interpretation) -> dict[str, float]:
    z = np.load(PEERS / f"{name}.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedConventionsWarning)
        res = NIRExecutor(read_graph(PEERS / f"{name}.nir"), interpretation).run(z["x"])
    return {k[7:]: float(np.mean(np.asarray(res.spikes[k[7:]]) == z[k])) for k in z.files if k.startswith("spikes/")}


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_from_writer_reproduces_the_writers_own_spikes(name):
    """--from WRITER (and the library's own reset mechanism where it has several) and nothing else: 100 % of the
    spikes of every layer, including the mixed Leaky/RLeaky graph and Norse's LIFCell that no global
    interpretation reproduces."""
    writer, mechanism = name.split("_")[0], WRITTEN[name]
    agree = _agreement(name, Interpretation(writer=writer, **({"reset": mechanism} if mechanism else {})))
    assert agree and min(agree.values()) == 1.0, agree


@pytest.mark.parametrize("name", ["snntorch_mixed_zero", "norse_lif_cuba"])
def test_no_global_interpretation_reproduces_them(name):
    """What --from adds: every single global reading of these files loses spikes (82-93 % on the worst layer)."""
    z = np.load(PEERS / f"{name}.npz")
    dt = float(z["interp_dt"])
    worst = [min(_agreement(name, Interpretation(dt=dt, reset=reset, compare="gt")).values())
             for reset in ("zero", "zero_next", "subtract_next", "v_reset")]
    assert max(worst) < 0.99, worst


def test_mixed_graph_warns_by_node_and_names_the_fix():
    graph = read_graph(PEERS / "snntorch_mixed_zero.nir")
    with pytest.warns(MixedConventionsWarning) as record:
        resolve(graph, Interpretation(dt=1e-4, reset="zero"))
    text = str(record[0].message)
    assert "'lif1.lif' (LIF+rec) with reset=zero_next" in text and "'lif0' (LIF)" in text
    assert "--from snntorch --reset zero" in text
    for quiet in (Interpretation(writer="snntorch", reset="zero"),
                  Interpretation(dt=1e-4, reset="zero", nodes={"lif1.lif": {"reset": "zero_next"}})):
        with warnings.catch_warnings():
            warnings.simplefilter("error", MixedConventionsWarning)
            resolve(graph, quiet)
    with warnings.catch_warnings():  # a graph every writer reads alike: no warning
        warnings.simplefilter("error", MixedConventionsWarning)
        resolve(read_graph(PEERS / "snntorch_leaky_zero.nir"), Interpretation(dt=1e-4, reset="zero"))


def test_per_node_settings_win_over_the_preset_and_the_global_fields():
    agree = _agreement("snntorch_mixed_zero", Interpretation(dt=1e-4, reset="zero",
                                                             nodes={"lif1.lif": {"reset": "zero_next"}}))
    assert min(agree.values()) == 1.0
    # a per-node setting beats the writer's preset: the RLeaky read as a Leaky loses spikes there only
    agree = _agreement("snntorch_mixed_zero", Interpretation(writer="snntorch", reset="zero",
                                                             nodes={"lif1.lif": {"reset": "zero"}}))
    assert agree["lif0"] == 1.0 and agree["lif1.lif"] < 0.9


def test_resolve_is_idempotent_and_recorded_round_trips():
    graph = read_graph(PEERS / "snntorch_mixed_zero.nir")
    once = resolve(graph, Interpretation(writer="snntorch", reset="zero"))
    assert once.nodes["lif1.lif"]["reset"] == "zero_next" and once.nodes["lif0"]["reset"] == "zero"
    assert resolve(graph, once) == once
    assert Interpretation.from_record(once.record()) == once
    assert "lif1.lif: dt=0.0001, euler, reset=zero_next" in once.describe()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"writer": "torch"}, "unknown writer"),
    ({"nodes": {"lif0": {"reset": "sideways"}}}, "node 'lif0': unknown reset"),
    ({"nodes": {"lif0": {"tau": 2}}}, "node 'lif0': unknown setting"),
    ({"nodes": {"lif0": {"dt": "fast"}}}, "node 'lif0': dt = 'fast' is not a number"),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(SpecError, match=message):
        Interpretation(**kwargs)


def test_a_writers_unknown_reset_mechanism_is_refused():
    with pytest.raises(SpecError, match="Norse's reset mechanisms are v_reset"):
        resolve(read_graph(PEERS / "norse_iaf.nir"), Interpretation(writer="norse", reset="zero"))


def test_out_of_range_leak_names_the_dt_and_the_writer():
    """NIR's default dt = 1 on snnTorch's τ = 1e-4/(1 − β) gives λ = 1 − 1/τ ≈ −999: the message says which dt
    is in range and that --from snntorch reads it."""
    from snnchip.export.loihi import deployment_from_graph

    with pytest.raises(UnsupportedNodeError, match=r"leak λ = -\d+.*snnTorch writes β.*--from snntorch \(or --dt "
                                                   r"1e-4\).*--dt ≤ τ = 0\.001"):
        deployment_from_graph(read_graph(PEERS / "snntorch_leaky_zero.nir"), Interpretation(reset="zero"), T=25)


def test_cli_per_node_and_toml(tmp_path):
    from snnchip.cli.snn_run import main

    z = np.load(PEERS / "snntorch_mixed_zero.npz")
    np.save(tmp_path / "x.npy", z["x"])
    graph = str(PEERS / "snntorch_mixed_zero.nir")
    runs = {"flags": ["--dt", "1e-4", "--reset", "zero", "--reset", "lif1.lif=zero_next"],
            "from": ["--from", "snntorch", "--reset", "zero"]}
    (tmp_path / "i.toml").write_text('from = "snntorch"\nreset = "zero"\n')
    runs["toml"] = ["--interpretation", str(tmp_path / "i.toml")]
    (tmp_path / "n.toml").write_text('dt = 1e-4\nreset = "zero"\n[nodes."lif1.lif"]\nreset = "zero_next"\n')
    runs["toml-nodes"] = ["--interpretation", str(tmp_path / "n.toml")]
    for label, flags in runs.items():
        out = tmp_path / f"{label}.npz"
        assert main([graph, "--input", str(tmp_path / "x.npy"), "--out", str(out), *flags]) == 0, label
        y = np.load(out)
        for key in (k for k in z.files if k.startswith("spikes/")):
            np.testing.assert_array_equal(y[key], z[key], err_msg=f"{label} {key}")
    (tmp_path / "bad.toml").write_text('from = "snntorch"\n[nodes.lif0]\nreset = "sideways"\n')
    assert main([graph, "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "b.npz"), "--interpretation",
                 str(tmp_path / "bad.toml")]) == 2


def test_cli_prints_the_warning_once_as_one_line_and_the_leak_hint(tmp_path, capsys):
    """The newcomer's command from the issue: `snn-export snntorch.nir --target loihi --T 20 --reset zero`."""
    from snnchip.cli.snn_export import main
    from snnchip.export import writers

    writers._WARNED.clear()
    assert main([str(PEERS / "snntorch_mixed_zero.nir"), "--target", "loihi", "--T", "20", "--reset", "zero", "-o",
                 str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("snn-export: warning: snnTorch (reset zero) simulates")
    assert err[1].startswith("snn-export: error: node 'lif0'") and "--from snntorch (or --dt 1e-4)" in err[1]
    assert main([str(PEERS / "snntorch_mixed_zero.nir"), "--target", "loihi", "--T", "20", "--from", "snntorch",
                 "--reset", "zero", "-o", str(tmp_path / "d")]) == 0
    assert "interpretation: --from snntorch (reset mechanism zero)" in capsys.readouterr().out
