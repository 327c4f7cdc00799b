"""The Xylo target's face: ``snn-export --target xylo``'s report and the validation ladder for Xylo.

The ladder (``snn-validate MODEL.pt --target xylo`` or ``snn-validate XYLO_DEPLOY_DIR``), with the gates of Loihi's
where they apply: the deploy directory's seal; float model = NIR executor; float accuracy; both sides' spiking layer
alive; float vs our Xylo simulator (``hw_sim.xylo``) on the whole test set, gated on decision agreement; and our
simulator = SynSense's xylosim on every spike and state of a stratified prefix (``xylosim_equals_chip``: 0
differences). The inputs are spike counts (e.g. ``digits-rows``). A model.pt's certified directory is written under
a temporary name and moved into place only when every gate passed. NeuroBench's metrics (``hw_sim.metrics``) are
reported for the float model and the chip.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnchip.atomic import StagedDir
from snnchip.errors import SnnchipError
from snnchip.identity import sha256_arrays, sha256_file
from snnchip.spec import Interpretation

CERTIFIED_DIR = "certified-xylo"
DEFAULT_XYLOSIM_SAMPLES = 50


def export_lines(model: str, out: str, given: dict[str, Any], T: int | None) -> list[str]:
    """Write the Xylo deploy directory of ``model`` (model.pt or .nir) to ``out``; the report lines."""
    from snnchip.export.loihi import read_model_graph
    from snnchip.export.nir_meta import graph_meta, recorded_interpretation
    from snnchip.export.xylo import export_xylo, load_xylo
    from snnchip.workflows.model_data import xylo_bounds

    graph = read_model_graph(model)
    interp = None if graph_meta(graph).own else \
        Interpretation.overriding(recorded_interpretation(graph), **given)
    path = export_xylo(graph, out, interp, T, source=model, bounds=xylo_bounds(model, graph))
    return describe(load_xylo(path))


def describe(dep: Any) -> list[str]:
    """The mapping report of a Xylo deployment, one line per population."""
    rep, res, m = dep.manifest["mapping"], dep.manifest["resources"], dep.mapping
    h, r = rep["hidden"], rep["readout"]
    bias = " + 1 bias neuron" if h["bias_neuron"] else ""
    lines = [f"hidden {h['layer']!r} ({h['kind']}, {h['neurons']} neurons{bias}): λ {h['lam']:.4g} → dash "
             f"{h['dash_mem']} (λ̂ {h['lam_hat']:.4g}), λ_syn {h['lam_syn']:.4g} → dash "
             f"{h['dash_syn']} (λ̂ {h['lam_syn_hat']:.4g}), θ {h['theta']:.4g} → {h['theta_hat']}, weight shifts "
             f"in {h['shift_in']} rec {h['shift_rec']}, largest weight rounding {h['weight_rel_error']:.2%} of the "
             "largest weight",
             f"readout {r['layer']!r}: read from {r['state']}, dash_syn {r['dash_syn_out']}, dash_mem "
             f"{r['dash_mem_out']}, scale {r['scale']:.4g}, weight shift {r['shift_out']}, rounding "
             f"{r['weight_rel_error']:.2%}",
             *(f"approximation: {a}" for a in rep["approximations"]),
             f"wrote {dep.path}: Xylo, {res['inputs']} inputs, {res['hidden']} hidden, {res['outputs']} outputs, "
             f"{res['synapses']} synapses; T = {m.T} (runs {m.steps} steps: the readout hears the hidden neurons one "
             "step later); inputs are spike counts; sealed (sha256 of model.nir, params.npz and every manifest value)"]
    return lines


class XyloReference:
    """The float side (a ``model.pt``, else the NIR executor of the deploy directory's model.nir) and the Xylo
    deployment it is compared with."""

    def __init__(self, source: Any, cfg: Any) -> None:
        from snnchip.export.nir_exec import NIRExecutor
        from snnchip.export.nir_export import model_graph
        from snnchip.export.nir_meta import graph_meta
        from snnchip.export.xylo import export_xylo, load_xylo
        from snnchip.train import load_model
        from snnchip.workflows.model_data import xylo_bounds

        path = Path(source)
        self.name, self.model, self.model_path, self.staged = str(path), None, None, None
        if not path.exists():
            raise SnnchipError(f"{path}: no such model.pt or deploy directory")
        if path.is_dir():
            if cfg.deploy_out is not None:
                raise SnnchipError("--deploy-out applies to a model.pt; a deploy directory is validated as it is")
            self.deploy_path, self.deployment = path, load_xylo(path, allow_edited=cfg.allow_edited)
            self.graph = model_graph(path / "model.nir")
            if cfg.model is not None:
                self.model_path = Path(cfg.model)
                self.model, _ = load_model(self.model_path)
        else:
            self.model_path = path
            self.model, _ = load_model(path)
            self.graph = model_graph(path)
            from snnchip.export.loihi import check_replaceable

            self.deploy_path = Path(cfg.deploy_out) if cfg.deploy_out else path.parent / CERTIFIED_DIR
            check_replaceable(self.deploy_path)
            self.staged = StagedDir(self.deploy_path)
            with self.staged.discarded_on_failure():
                export_xylo(self.graph, self.staged.path, source=path, bounds=xylo_bounds(path, self.graph))
                self.deployment = load_xylo(self.staged.path)
        self.spec = graph_meta(self.graph).spec
        if self.spec is None:
            raise SnnchipError(f"{self.name}: a foreign graph carries no dataset spec; validate a model.pt or a "
                               "deploy directory exported from one")
        self.executor = NIRExecutor(self.graph)

    def files(self) -> Path:
        return self.staged.path if self.staged is not None else self.deploy_path

    def run(self, xs: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from snnchip.workflows.validate import float_run

        return float_run(self.model, self.executor, xs)

    def identity(self) -> dict[str, Any]:
        from snnchip.export.xylo import FILES

        out: dict[str, Any] = {"model": None}
        if self.model_path is not None:
            out["model"] = {"path": str(self.model_path), "sha256": sha256_file(self.model_path)}
        out["deploy_dir"] = {"path": str(self.deploy_path), "target": "xylo",
                             "files": {f: sha256_file(self.files() / f) for f in FILES},
                             "seal": self.deployment.seal.as_dict(),
                             "written_by_validation": self.staged is not None, "written": False}
        out["manifest_source"] = self.deployment.manifest.get("source")
        return out


def xylo_ladder(ref: XyloReference, cfg: Any, progress: bool) -> dict[str, Any]:
    """The Xylo ladder's gates and report (module docstring); ``workflows.validate.validate`` runs it for the Xylo
    target and commits the certified directory when every gate passed."""
    from tqdm import tqdm

    from snnchip.export.loihi import read_model_graph
    from snnchip.export.provenance import xylo_differences
    from snnchip.export.xylo import chip_input, readout_of
    from snnchip.hw_sim import xylo as sim
    from snnchip.hw_sim.compare import spike_agreement
    from snnchip.hw_sim.metrics import chip_metrics, float_metrics
    from snnchip.train.data import load_dataset
    from snnchip.train.inference import encoded_test_set
    from snnchip.workflows.model_data import xylo_bounds
    from snnchip.workflows.validate import _liveness, deployment_gates, gate, nir_equals_float

    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, spec=ref.spec)
    xs, y = encoded_test_set(ref.spec, data, cfg.samples)
    T, n = xs.shape[0], xs.shape[1]
    mapping = ref.deployment.mapping
    chance = 1.0 / data.num_classes
    min_accuracy = cfg.min_accuracy if cfg.min_accuracy is not None else chance + (1.0 - chance) / 4
    identity = ref.identity()
    identity["data"] = {"dataset": cfg.dataset, "samples": int(n), "sha256": sha256_arrays(xs.numpy(), y)}
    report: dict[str, Any] = {"target": "xylo", "model": ref.name, "dataset": cfg.dataset, "T": int(T),
                              "samples": int(n), "config": asdict(cfg), "identity": identity, "gates": {},
                              "mapping": ref.deployment.manifest["mapping"]}
    gates = report["gates"]
    entries, integrity = deployment_gates(ref, identity, lambda: xylo_differences(
        ref.deployment, ref.model_path, xylo_bounds(ref.model_path, read_model_graph(ref.model_path))))
    report.update(entries)
    gates.update(integrity)
    if ref.model is not None:
        report["nir"], gates["nir_equals_float"] = nir_equals_float(ref, xs)

    hidden = ref.deployment.manifest["mapping"]["hidden"]
    layer, n_h = hidden["layer"], hidden["neurons"]
    f_outs, f_spks, c_reads, c_spks, records = [], [], [], [], []
    for i in tqdm(range(0, n, cfg.batch_size), desc="float vs Xylo", disable=not progress):
        xb = xs[:, i:i + cfg.batch_size]
        fo, fs = ref.run(xb)
        rec = sim.run(mapping.config, chip_input(xb.numpy(), mapping))
        f_outs.append(fo[-1])
        f_spks.append(fs)
        c_reads.append(readout_of(rec, mapping))
        c_spks.append(rec.spikes[:, :T, :n_h].transpose(1, 0, 2))
        records.append(rec)
    f_last, c_read = np.concatenate(f_outs), np.concatenate(c_reads)
    f_spk = {k: np.concatenate([s[k] for s in f_spks], axis=1) for k in f_spks[0]}
    counts = np.concatenate(c_spks, axis=1)
    c_spk = {layer: counts > 0}
    f_pred, c_pred = f_last.argmax(-1), c_read.argmax(-1)
    agree = spike_agreement({layer: f_spk[layer]}, c_spk) if layer in f_spk else {}
    f_rate = {k: float(np.mean(v)) for k, v in f_spk.items()}
    c_rate = {layer: float(np.mean(counts > 0))}
    report["chip"] = {
        "float_accuracy": float(np.mean(f_pred == y)), "chip_accuracy": float(np.mean(c_pred == y)),
        "chance": chance, "decision_agreement": float(np.mean(f_pred == c_pred)), "spike_agreement": agree,
        "float_firing_rate": f_rate, "chip_firing_rate": c_rate,
        "several_spikes_per_step": float(np.mean(counts > 1)),
        "first_differing_layer": next((k for k in agree if agree[k] < 1.0), None),
    }
    gates["float_accuracy"] = gate(report["chip"]["float_accuracy"], min_accuracy, ">=",
                                   f"float test accuracy, clearly above chance ({chance:.3f})")
    gates["layers_alive_float"] = _liveness(f_rate, cfg, "in the float model")
    gates["layers_alive_chip"] = _liveness(c_rate, cfg, "on Xylo")
    gates["decision_agreement"] = gate(report["chip"]["decision_agreement"], cfg.min_agreement, ">=",
                                       "fraction of test samples where float and Xylo decide the same class")
    report["neurobench"] = {"float": float_metrics(ref.graph, xs.numpy()),
                            "chip": chip_metrics(mapping.config, np.concatenate(
                                [chip_input(xs[:, i:i + cfg.batch_size].numpy(), mapping) for i in
                                 range(0, n, cfg.batch_size)]), _stack_records(records))}
    if cfg.lava_samples != 0:
        report["xylosim"] = _xylosim(mapping, xs, y, records, cfg, progress)
        gates["xylosim_equals_chip"] = gate(report["xylosim"]["total_differences"], 0, "==",
                                            "differing spikes and states (isyn, isyn2, vmem; hidden and output), our "
                                            "Xylo simulator vs SynSense's xylosim, every step")
    report["passed"] = all(g["passed"] for g in gates.values())
    report["_plot_data"] = {"float_spikes": {layer: f_spk[layer][:, 0]} if layer in f_spk else {},
                            "chip_spikes": {layer: c_spk[layer][:, 0]}}
    return report


def _stack_records(records: list[Any]) -> Any:
    from snnchip.hw_sim.xylo import XyloRecord

    return XyloRecord(*(np.concatenate([getattr(r, f) for r in records]) for f in XyloRecord.FIELDS))


def _xylosim(mapping: Any, xs: torch.Tensor, y: np.ndarray, records: list[Any], cfg: Any, progress: bool
             ) -> dict[str, Any]:
    from snnchip.export.xylo import chip_input
    from snnchip.hw_sim import xylosim_driver
    from snnchip.hw_sim.xylo import XyloRecord
    from snnchip.workflows.validate import stratified_order

    order = stratified_order(y)
    m = min(DEFAULT_XYLOSIM_SAMPLES if cfg.lava_samples is None else cfg.lava_samples, len(order))
    if progress:
        print(f"running {m} samples in xylosim ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    picked = order[:m]
    theirs = xylosim_driver.run(mapping.config, chip_input(xs[:, picked].numpy(), mapping))
    ours = _stack_records(records)
    diffs = {f: int(np.count_nonzero(getattr(ours, f)[picked] != getattr(theirs, f))) for f in XyloRecord.FIELDS}
    return {"samples": int(m), "indices": picked.tolist(), "seconds": round(time.monotonic() - started, 2),
            "selection": "stratified over the classes (round robin)", "differences": diffs,
            "total_differences": int(sum(diffs.values())), "steps": mapping.steps}


def print_table(report: dict[str, Any], file: Any = None) -> None:
    """The one-screen summary of a Xylo ladder."""
    from snnchip.workflows.report import gate_lines

    chip = report["chip"]
    lines = [f"validation ladder (Xylo): {report['model']} on {report['dataset']} (T={report['T']}, "
             f"{report['samples']} test samples; float accuracy {chip['float_accuracy']:.4f}, Xylo "
             f"{chip['chip_accuracy']:.4f}, chance {chip['chance']:.3f})",
             f"  {'gate':<42} {'value':>10}    {'threshold':<10} verdict", *gate_lines(report)]
    for k, a in chip["spike_agreement"].items():
        lines.append(f"     {k:<14} spike agreement {a:.4f}, rate float {chip['float_firing_rate'][k]:.4f}, Xylo "
                     f"{chip['chip_firing_rate'][k]:.4f}; several spikes per step on Xylo: "
                     f"{chip['several_spikes_per_step']:.4f} of neuron-steps")
    if "xylosim" in report:
        xs = report["xylosim"]
        lines.append(f"  xylosim: {xs['samples']} samples ({xs['seconds']:.1f} s), {xs['selection']}; differences "
                     f"{xs['differences']}")
    for side, nb in report["neurobench"].items():
        lines.append(f"  NeuroBench ({side}): " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                           for k, v in nb.items()))
    ident = report["identity"]
    if ident.get("model"):
        lines.append(f"  model.pt: {ident['model']['path']} (sha256 {ident['model']['sha256'][:16]})")
    d = ident["deploy_dir"]
    state = ("written by this validation" if d["written"] else "not written: a gate failed") \
        if d["written_by_validation"] else "as given"
    lines.append(f"  deploy dir: {d['path']} ({state}; "
                 + ", ".join(f"{f} {h[:12]}" for f, h in d["files"].items()) + ")")
    lines.append(f"  verdict: {'PASSED' if report['passed'] else 'FAILED'}")
    print("\n".join(lines), file=file or sys.stdout)
