"""The validation report for people: the one-screen table and the plots (``snnchip.workflows.validate`` makes the
report)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np


def print_table(report: dict[str, Any], file=sys.stdout) -> None:
    """The one-screen summary."""
    chip = report["chip"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    g = report["gates"]
    lines = [f"equivalence ladder: {report['model']} on {report['dataset']} (T={report['T']}, "
             f"{report['samples']} samples)"]
    if "nir" in report:
        lines.append(f"  1. float vs NIR executor   max |Δ| = {report['nir']['max_abs_output_diff']:.2e}"
                     f" (≤ {report['nir']['tolerance']:.2g})  {ok(g['nir_equals_float'])}")
    else:
        lines.append("  1. float vs NIR executor   (deploy directory: the NIR executor is the float reference)")
    lines += [
        f"  2. float vs bit-exact chip accuracy {chip['float_accuracy']:.4f} -> {chip['chip_accuracy']:.4f},"
        f" decision agreement {chip['decision_agreement']:.4f}  {ok(g['decision_agreement'])}",
    ]
    lines.append(f"     {'layer':<14}{'spike agree':>12}{'rate float':>12}{'rate chip':>12}")
    for k, a in chip["spike_agreement"].items():
        rates = f"{chip['float_firing_rate'][k]:>12.4f}{chip['chip_firing_rate'][k]:>12.4f}"
        lines.append(f"     {k:<14}{a:>12.4f}{rates}")
    if chip["first_diverging_layer"]:
        lines.append(f"     first diverging layer: {chip['first_diverging_layer']}")
    if "lava" in report:
        lines.append(f"  3. chip vs Lava fixed_pt    {report['lava']['total_differences']} differing spikes/states on "
                     f"{report['lava']['samples']} samples  {ok(g['lava_equals_chip'])}")
        if report["lava"]["first_differing_layer"]:
            lines.append(f"     first layer where Lava differs: {report['lava']['first_differing_layer']}")
    res = report.get("resources", {})
    if res:
        lines.append(f"  resources: {res['neurons']} neurons, {res['synapses']} synapses, {res['cores']} Loihi 2 cores")
        lines.append(f"  per inference: {res['synops']:.0f} synaptic ops, {res['spikes']:.0f} spikes, energy "
                     f"{res['energy_uJ']:.3f} µJ ({res['label']})")
    lines.append(f"  result: {'PASSED' if report['passed'] else 'FAILED'}")
    print("\n".join(lines), file=file)


def write_plots(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Per-layer agreement, float vs chip accuracy, and a float-vs-chip spike raster per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chip = report["chip"]
    paths = []

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    names = list(chip["spike_agreement"])
    ax[0].bar(names, [chip["spike_agreement"][k] for k in names], color="tab:blue")
    ax[0].set_ylim(min(0.9, *chip["spike_agreement"].values()), 1.0)
    ax[0].set_title("spike agreement float vs chip, per layer")
    ax[1].bar(["float", "chip"], [chip["float_accuracy"], chip["chip_accuracy"]], color=["tab:gray", "tab:green"])
    ax[1].set_ylim(0, 1)
    ax[1].set_title(f"test accuracy (agreement {chip['decision_agreement']:.3f})")
    fig.tight_layout()
    paths.append(out / "agreement.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    data = report["_plot_data"]
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.2 * len(names)), squeeze=False)
    for i, k in enumerate(names):
        for j, (label, spk) in enumerate((("float", data["float_spikes"][k]), ("chip", data["chip_spikes"][k]))):
            s = np.asarray(spk).reshape(spk.shape[0], -1)
            t, idx = np.nonzero(s)
            axes[i][j].scatter(t, idx, s=2, marker="|", color="k")
            axes[i][j].set_title(f"{k}: {label} spikes (sample 0)", fontsize=9)
            axes[i][j].set_xlim(-0.5, s.shape[0] - 0.5)
    fig.tight_layout()
    paths.append(out / "raster.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


