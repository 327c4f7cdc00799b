"""The validation report for people: the one-screen table and the plots (``snnchip.workflows.validate`` makes the
report; every gate there carries its value, threshold and verdict, and they are printed as such)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from snnchip.atomic import atomic_path, check_destination

GATE_LABELS = {
    "deployment_sealed": "deploy dir matches its seal",
    "deployment_from_model": "deployment = this model.pt's, bit for bit",
    "float_accuracy": "0a. float accuracy above chance",
    "layers_alive_float": "0b. spiking layers alive, float",
    "layers_alive_chip": "0b. spiking layers alive, chip",
    "nir_equals_float": "1. float vs NIR executor",
    "decision_agreement": "2. float vs chip, decision agreement",
    "lava_equals_chip": "3. chip vs Lava fixed_pt, differences",
}


def _number(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) and not float(x).is_integer() else f"{x:g}"


def gate_lines(report: dict[str, Any]) -> list[str]:
    """One line per gate: label, value, the comparison with its threshold, PASS/FAIL, and what failed."""
    lines = []
    order = [*GATE_LABELS, *(k for k in report["gates"] if k not in GATE_LABELS)]
    for name in (k for k in order if k in report["gates"]):
        g = report["gates"][name]
        label = GATE_LABELS.get(name, name)
        verdict = "PASS" if g["passed"] else "FAIL"
        line = f"  {label:<42} {_number(g['value']):>10} {g['op']} {_number(g['threshold']):<10} {verdict}"
        if not g["passed"]:
            line += f"  ({g['meaning']})"
        lines.append(line)
    return lines


def print_table(report: dict[str, Any], file: Any = None) -> None:
    """The one-screen summary: gates, per-layer agreement and rates, Lava coverage, identity, hardware."""
    if report.get("target") == "xylo":
        from snnchip.workflows.xylo import print_table as print_xylo

        return print_xylo(report, file)
    chip = report["chip"]
    accuracy = "no labels: accuracy not measured" if chip["float_accuracy"] is None else \
        f"{report.get('reference', 'float')} accuracy {chip['float_accuracy']:.4f}, chip {chip['chip_accuracy']:.4f}"
    lines = [f"validation ladder: {report['model']} on {report['dataset']} (T={report['T']}, {report['samples']} "
             f"samples; {accuracy}, chance {chip['chance']:.3f})"]
    if "interpretation" in report:
        lines.append(f"  interpretation: {report['interpretation']['described']}")
    lines += [f"  {'gate':<42} {'value':>10}    {'threshold':<10} verdict", *gate_lines(report)]
    if "interpretation" in report:
        lines.append("  (a foreign graph: its NIR reference executor, read with this interpretation, is the reference)")
    elif "nir" not in report:
        lines.append("  (a deploy directory without --model: the NIR executor of its model.nir is the float reference)")
    floor = chip.get("decay_floor")
    lines.append(f"     {'layer':<14}{'spike agree':>12}{'rate float':>12}{'rate chip':>12}"
                 + (f"{'decay floor':>13}" if floor else ""))
    for k, a in chip["spike_agreement"].items():
        lines.append(f"     {k:<14}{a:>12.4f}{chip['float_firing_rate'][k]:>12.4f}{chip['chip_firing_rate'][k]:>12.4f}"
                     + (f"{floor[k]:>13.4f}" if floor else ""))
    if floor:
        lines.append("     decay floor: the graph with the decays the chip holds (12-bit registers) against the graph; "
                     "no precision setting wins it back (informative)")
    if chip["first_differing_layer"]:
        lines.append(f"     first layer whose spikes differ between float and chip (quantization; informative, gated "
                     f"only through decision agreement): {chip['first_differing_layer']}")
    if "lava" in report:
        lava = report["lava"]
        lines.append(f"  Lava: {lava['samples']} samples ({lava['seconds']:.1f} s), {lava['selection']}; per class "
                     f"{lava['per_class']}")
        if lava["first_differing_layer"]:
            lines.append("     first layer where Lava differs from the bit-exact chip: "
                         f"{lava['first_differing_layer']}")
    hw = report["hardware"]
    lines.append("  hardware: " + ("Lava built-in processes only (Loihi 2 models exist in Intel's lava-loihi)"
                                   if hw["builtin_only"] else
                                   f"custom processes {', '.join(hw['custom'])} run in Lava's simulator only (Loihi 2 "
                                   "needs custom neuron microcode for them)"))
    res = report.get("resources", {})
    if res:
        lines.append(f"  resources: {res['neurons']} neurons, {res['synapses']} synapses, {res['cores']} Loihi 2 cores;"
                     f" per inference {res['synops']:.0f} synaptic ops, {res['spikes']:.0f} spikes, energy "
                     f"{res['energy_uJ']:.3f} µJ ({res['label']})")
    for side, nb in report.get("neurobench", {}).items():
        lines.append(f"  NeuroBench ({side}): " + ", ".join(f"{k} {v:.4g}" for k, v in nb.items()))
    ident = report["identity"]
    if ident.get("graph"):
        lines.append(f"  graph: {ident['graph']['path']} (sha256 {ident['graph']['sha256'][:16]})")
    if ident.get("model"):
        lines.append(f"  model.pt: {ident['model']['path']} (sha256 {ident['model']['sha256'][:16]})")
    deploy = ident.get("deploy_dir")
    if deploy:
        files = ", ".join(f"{f} {h[:12]}" for f, h in deploy["files"].items())
        if not deploy["written_by_validation"]:
            seal = deploy["seal"]
            state = "seal intact" if seal["intact"] else "EDITED since export" if seal["sealed"] else "unsealed format"
            lines.append(f"  deploy dir: {deploy['path']} (sha256 {files}; {state})")
        elif deploy.get("written"):
            lines.append(f"  certified deploy dir: {deploy['path']} (sha256 {files})")
        else:
            lines.append(f"  certified deploy dir: not written to {deploy['path']} (a gate failed: nothing is "
                         "certified)")
    lines.append(f"  data: {ident['data']['dataset']}, {ident['data']['samples']} samples, sha256 "
                 f"{ident['data']['sha256'][:16]}")
    failed = [k for k, g in report["gates"].items() if not g["passed"]]
    lines.append(f"  result: {'PASSED' if report['passed'] else 'FAILED'}"
                 + (f" ({', '.join(failed)})" if failed else ""))
    print("\n".join(lines), file=file or sys.stdout)


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically, and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def write_plots(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``agreement.png``: per-layer spike agreement and the decision agreement on a zoomed axis with the gate line,
    accuracy with chance and the accuracy gate; ``raster.png``: float and chip spikes of one sample per layer,
    labelled, with the entries where they differ marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    check_destination(out, directory=True)
    chip, gates = report["chip"], report["gates"]
    paths = []

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    names = list(chip["spike_agreement"])
    values = [chip["spike_agreement"][k] for k in names] + [chip["decision_agreement"]]
    labels = [f"{k}\n(spikes)" for k in names] + ["decisions"]
    gate_line = gates["decision_agreement"]["threshold"]
    low = min([*values, gate_line])
    ax[0].bar_label(ax[0].bar(labels, values, color=["tab:blue"] * len(names) + ["tab:green"]), fmt="%.4f")
    ax[0].axhline(gate_line, color="tab:red", ls="--", label=f"decision gate {gate_line:g}")
    ax[0].set_ylim(max(0.0, low - 0.25 * (1 - low) - 1e-3), 1.0 + 0.02 * (1 - low) + 1e-4)
    ax[0].set_ylabel("fraction equal, float vs chip")
    ax[0].set_title("agreement (axis zoomed)")
    ax[0].legend(loc="lower left")
    acc = [chip["float_accuracy"] or 0.0, chip["chip_accuracy"] or 0.0]
    ax[1].bar_label(ax[1].bar(["float", "chip"], acc, color=["tab:gray", "tab:green"]), fmt="%.4f")
    ax[1].axhline(chip["chance"], color="k", ls=":", label=f"chance {chip['chance']:.3f}")
    if "float_accuracy" in gates:
        ax[1].axhline(gates["float_accuracy"]["threshold"], color="tab:red", ls="--",
                      label=f"accuracy gate {gates['float_accuracy']['threshold']:.3f}")
    ax[1].set_ylim(0, 1)
    ax[1].set_ylabel("test accuracy")
    ax[1].set_title(f"accuracy ({report['samples']} test samples)")
    ax[1].legend(loc="lower right")
    fig.tight_layout()
    paths.append(out / "agreement.png")
    _save(fig, paths[-1])

    data = report["_plot_data"]
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 2.6 * max(1, len(names))), squeeze=False)
    for i, k in enumerate(names):
        f = np.asarray(data["float_spikes"][k]).reshape(data["float_spikes"][k].shape[0], -1).astype(bool)
        c = np.asarray(data["chip_spikes"][k]).reshape(f.shape).astype(bool)
        differ = np.nonzero(f != c)
        for j, (label, s) in enumerate((("float", f), ("chip", c))):
            a = axes[i][j]
            t, idx = np.nonzero(s)
            a.scatter(t, idx, s=4, marker="|", color="k", label="spike")
            a.scatter(differ[0], differ[1], s=16, marker="x", color="tab:red", label=f"differs ({len(differ[0])})")
            a.set_title(f"{k}: {label} (sample 0)", fontsize=9)
            a.set_xlim(-0.5, s.shape[0] - 0.5)
            a.set_xlabel("time step")
            a.set_ylabel("neuron index")
            a.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    paths.append(out / "raster.png")
    _save(fig, paths[-1])
    return paths
