"""``snn-validate``: the equivalence ladder of DESIGN.md, as a report with gates.

1. float PyTorch model vs the NIR reference executor: max |Δ output| ≤ 1e-5;
2. float model vs the bit-exact chip simulator on N samples: accuracy of each, class-decision
   agreement, per-layer spike agreement and firing rates, the first diverging layer;
3. bit-exact chip vs Lava ``Loihi2SimCfg(select_tag='fixed_pt')`` on M samples: the number of
   differing spikes and states, which must be 0 (after the per-layer latency is aligned).

The report is a JSON-able dict; a terminal table, plots, and the exit code (non-zero when a gate
fails) are made from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnchip.atomic import write_text_atomic
from snnchip.errors import SnnchipError

NIR_TOLERANCE = 1e-5


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _stack(results: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([r[k] for r in results], axis=1) for k in results[0]}


def spike_agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Fraction of (t, sample, neuron) entries where the two spike tensors are equal, per layer."""
    return {k: float(np.mean(np.asarray(a[k]).astype(bool) == np.asarray(b[k]).astype(bool))) for k in a}


def compare_exact(a: Any, b: Any) -> dict[str, dict[str, int]]:
    """Number of differing entries, per layer, of the spikes and u/v states of two chip-level runs."""
    out: dict[str, dict[str, int]] = {}
    for layer, states in a.states.items():
        entry = out.setdefault(layer, {})
        if layer in a.spikes:
            entry["spikes"] = int(np.sum(np.asarray(a.spikes[layer]) != np.asarray(b.spikes[layer])))
        for name, va in states.items():
            entry[name] = int(np.sum(np.asarray(va) != np.asarray(b.states[layer][name])))
    return out


class _Reference:
    """The float side of the ladder: the PyTorch model (``model.pt``) or the NIR executor (deploy dir)."""

    def __init__(self, path: Path):
        from snnchip.export.loihi import deployment_from_graph, load_deploy, measured_spike_bounds
        from snnchip.export.nir_exec import NIRExecutor
        from snnchip.export.nir_export import model_graph
        from snnchip.spec import NetworkSpec

        self.model = None
        if path.is_dir():
            self.deployment = load_deploy(path)
            self.graph = model_graph(path / "model.nir")
            meta = (self.graph.metadata or {}).get("snnchip", {})
            self.spec = NetworkSpec.from_dict(json.loads(meta["spec_json"])) if "spec_json" in meta else None
        else:
            from snnchip.train import load_model

            self.model, ckpt = load_model(path)
            self.spec = ckpt.spec
            self.graph = model_graph(path)  # the deployment `snn-export --target loihi` writes for this model.pt
            self.deployment = deployment_from_graph(self.graph, spike_bounds=measured_spike_bounds(path, self.graph))
        self.executor = NIRExecutor(self.graph)

    def run(self, xs: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.model is not None:
            from snnchip.train import simulate

            with torch.no_grad():
                res = simulate(self.model, xs)
        else:
            res = self.executor.run(xs)
        return (np.asarray(res.output, dtype=np.float64),
                {k: np.asarray(v).astype(bool) for k, v in res.spikes.items()})


def _inputs(path: Path, ref: _Reference, dataset: str, data_dir: str | None, samples: int | None):
    """Test inputs time-major [T, N, *input_shape] (encoded once, shared by every backend) and labels."""
    from snnchip.train.data import load_dataset
    from snnchip.train.rules import time_major

    if ref.spec is None:
        raise SnnchipError(f"{path}: a foreign graph carries no dataset spec; validate a model.pt or a deploy "
                           "directory exported from one")
    data = load_dataset(dataset, data_dir=data_dir, spec=ref.spec)
    x, y = data.test
    n = len(y) if samples is None else min(samples, len(y))
    if n <= 0:
        raise SnnchipError(f"--samples must be positive, got {samples}")
    x, y = x[:n], np.asarray(y[:n])
    with torch.random.fork_rng():  # rate codes drawn reproducibly, without touching the caller's RNG
        torch.manual_seed(0)
        xs = x.transpose(0, 1) if data.temporal else time_major(x, ref.spec)
    return xs.float().contiguous(), y


def validate(model_path: str | Path, dataset: str = "digits", data_dir: str | None = None,
             samples: int | None = None, lava_samples: int = 20, min_agreement: float = 0.98,
             batch_size: int = 128, progress: bool = True) -> dict[str, Any]:
    """Run the ladder on a ``model.pt`` or a deploy directory and return the report (JSON-able + plot data)."""
    from tqdm import tqdm

    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.hw_sim.resources import estimate, layer_resources

    path = Path(model_path)
    if not path.exists():
        raise SnnchipError(f"{path}: no such model.pt or deploy directory")
    ref = _Reference(path)
    xs, y = _inputs(path, ref, dataset, data_dir, samples)
    T, n = xs.shape[0], xs.shape[1]
    report: dict[str, Any] = {"model": str(path), "dataset": dataset, "T": int(T), "samples": int(n),
                              "gates": {}}

    # 1. float PyTorch model vs the NIR reference executor
    if ref.model is not None:
        head = xs[:, : min(n, 256)]
        f_out, _ = ref.run(head)
        e_out = np.asarray(ref.executor.run(head).output, dtype=np.float64)
        diff = float(np.max(np.abs(f_out - e_out)))
        report["nir"] = {"max_abs_output_diff": diff, "tolerance": NIR_TOLERANCE, "samples": int(head.shape[1])}
        report["gates"]["nir_equals_float"] = diff <= NIR_TOLERANCE

    # 2. float vs the bit-exact chip on the whole (requested) test set
    chip = ChipSimulator(ref.deployment)
    f_outs, f_spks, c_outs, c_spks = [], [], [], []
    for sl in tqdm(list(_batches(n, batch_size)), desc="float vs chip", disable=not progress, leave=False):
        xb = xs[:, sl]
        fo, fs = ref.run(xb)
        cres = chip.run(xb.numpy())
        f_outs.append(fo)
        f_spks.append(fs)
        c_outs.append(np.asarray(cres.output, dtype=np.float64))
        c_spks.append({k: np.asarray(v).astype(bool) for k, v in cres.spikes.items()})
    f_out, c_out = np.concatenate(f_outs, axis=1), np.concatenate(c_outs, axis=1)
    f_spk, c_spk = _stack(f_spks), _stack(c_spks)
    f_pred, c_pred = f_out[-1].argmax(-1), c_out[-1].argmax(-1)
    agree = spike_agreement(f_spk, c_spk)
    report["chip"] = {
        "float_accuracy": float(np.mean(f_pred == y)),
        "chip_accuracy": float(np.mean(c_pred == y)),
        "decision_agreement": float(np.mean(f_pred == c_pred)),
        "spike_agreement": agree,
        "float_firing_rate": {k: float(np.mean(v)) for k, v in f_spk.items()},
        "chip_firing_rate": {k: float(np.mean(v)) for k, v in c_spk.items()},
        "first_diverging_layer": next((k for k in f_spk if agree[k] < 1.0), None),
    }
    report["gates"]["decision_agreement"] = report["chip"]["decision_agreement"] >= min_agreement

    layers = layer_resources(ref.deployment)
    per_sample = [float(np.count_nonzero(xs.numpy())) / n] + [float(v.sum()) / n for v in c_spk.values()]
    report["resources"] = estimate(layers, per_sample[: len(layers)], sum(per_sample[1:]), int(T))

    # 3. bit-exact chip vs Lava Loihi2SimCfg(fixed_pt), on Lava's own clock
    m = min(lava_samples, n)
    if m > 0:
        from snnchip.deploy import build

        xl = xs[:, :m].numpy()
        if progress:
            print(f"running {m} samples in Lava Loihi2SimCfg(fixed_pt) ...", file=sys.stderr, flush=True)
        lava_res = build(ref.deployment).run(xl, cfg="fixed_pt", timing="lava")
        diffs = compare_exact(chip.run(xl, timing="lava"), lava_res)
        total = sum(sum(d.values()) for d in diffs.values())
        report["lava"] = {"samples": m, "timing": "lava (T + depth steps, every stage on Lava's clock)",
                          "differences": diffs, "total_differences": total,
                          "first_differing_layer": next((k for k, d in diffs.items() if sum(d.values())), None),
                          "latency": dict(lava_res.latency)}
        report["gates"]["lava_equals_chip"] = total == 0
    report["passed"] = all(report["gates"].values())
    report["_plot_data"] = {"float_spikes": {k: v[:, 0] for k, v in f_spk.items()},
                            "chip_spikes": {k: v[:, 0] for k, v in c_spk.items()}}
    return report


def print_table(report: dict[str, Any], file=sys.stdout) -> None:
    """The one-screen summary."""
    chip = report["chip"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    g = report["gates"]
    lines = [f"equivalence ladder: {report['model']} on {report['dataset']} (T={report['T']}, "
             f"{report['samples']} samples)"]
    if "nir" in report:
        lines.append(f"  1. float vs NIR executor   max |Δ| = {report['nir']['max_abs_output_diff']:.2e}"
                     f" (≤ {NIR_TOLERANCE:g})  {ok(g['nir_equals_float'])}")
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


def cli_validate(args: argparse.Namespace) -> int:
    """``snn-validate``: run the ladder, print the table, write JSON and plots, exit non-zero on failure."""
    report = validate(args.model, dataset=args.dataset, data_dir=args.data_dir, samples=args.samples,
                      lava_samples=args.lava_samples, min_agreement=args.min_agreement)
    print_table(report)
    if args.plots:
        for p in write_plots(report, args.plots):
            print(f"plot: {p}")
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    if args.json:
        write_text_atomic(args.json, json.dumps(public, indent=2))
        print(f"report: {args.json}")
    return 0 if report["passed"] else 1
