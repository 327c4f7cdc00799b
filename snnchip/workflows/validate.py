"""The validation ladder (``snn-validate``): the certificate that the chip computes what the trained model computes.

Preconditions (without them agreement means nothing: a network where nothing fires agrees with any chip):
  0a. the float model is clearly better than chance: test accuracy ≥ ``min_accuracy`` (default: chance plus a
      quarter of the way to 1, e.g. 0.325 for 10 classes);
  0b. every spiking layer is alive and not saturated, in float and on the chip: min_rate ≤ firing rate ≤ max_rate.
The ladder:
  1. float PyTorch model vs the NIR reference executor: max |Δ output| ≤ 1e-5 · max(1, max |output|);
  2. float model vs the bit-exact chip simulator on N samples: decision agreement ≥ ``min_agreement``, per-layer
     spike agreement and firing rates, the first layer whose spikes differ;
  3. bit-exact chip vs Lava ``Loihi2SimCfg(select_tag='fixed_pt')`` on M samples, stratified over the classes: the
     number of differing spikes and u/v states at every Lava step, which must be 0.
Identity: the report carries the sha256 of the model.pt, of every file of the deploy directory and of the evaluated
data. A deploy directory must match its seal (``export.seal``; gate ``deployment_sealed``, read at all only with
``allow_edited``). With a model.pt (validated itself, or given with ``--model`` for a deploy directory) the
deployment is derived again from it and compared bit for bit (``export.provenance``; gate
``deployment_from_model``): a deployment of another model fails it by name, whatever hash its manifest records.
Validating a model.pt writes the deployment it certifies (the one ``snn-export --target loihi`` writes for it) under a
temporary name, checks those files, and moves it to ``deploy_out`` only when every gate has passed: a failed or
interrupted validation leaves no certified directory.

The report is a JSON-able dict: every gate with its value, threshold and verdict; the terminal table and plots are
made from it (``snnchip.workflows.report``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnchip.atomic import StagedDir
from snnchip.errors import SnnchipError
from snnchip.hw_sim.compare import compare_exact, spike_agreement
from snnchip.identity import sha256_arrays, sha256_file
from snnchip.options import option
from snnchip.workflows.export import HEADROOM_CHOICES, WEIGHT_CHOICES, precision_args

NIR_TOLERANCE = 1e-5
NIR_FLIPS = 1e-5  # the fraction of spike values that may differ between the float model and its NIR executor
CERTIFIED_DIR = "certified-deploy"


@dataclass
class ValidateConfig:
    """The ladder's settings (``snn-validate`` options)."""

    dataset: str | None = option(None, help="dataset whose test set is evaluated (default: digits for a snnchip "
                                 "model; a foreign graph whose input matches a built-in dataset, with --T)")
    input: str | None = option(None, help="the data to certify on: a .npy array [T, batch, *features] (as snn-run "
                               "--input); the way to validate a foreign graph", path="input")
    labels: str | None = option(None, help="with --input: a .npy array of integer classes [batch] (the accuracy "
                                "gates run only with labels)", path="input")
    T: int | None = option(None, help="with --dataset for a foreign graph: time steps (a static sample is repeated "
                           "at every step)")
    data_dir: str | None = option(None, help="directory with the local dataset files", path="input")
    model: str | None = option(None, help="for a deploy directory: the model.pt it was exported from (the float "
                               "reference; the deployment derived again from it must equal the directory bit for "
                               "bit)", path="input")
    deploy_out: str | None = option(None, help="for a model.pt: where the certified deployment is written once every "
                                    f"gate has passed (default: {CERTIFIED_DIR}/ beside the model.pt)", path="output")
    allow_edited: bool = option(False, help="for a deploy directory: evaluate it even when its files or values no "
                                "longer match its seal (the gate 'deployment sealed' then fails)")
    samples: int | None = option(None, help="samples on the bit-exact chip (default: the whole test set)")
    lava_samples: int | None = option(None, help="samples run in Lava, stratified over the classes (0: skip the "
                                      "Lava gate; default: as many as --lava-budget allows)")
    lava_budget: float = option(30.0, help="seconds of Lava simulation when --lava-samples is not given")
    min_agreement: float = option(0.98, help="gate: class-decision agreement float vs chip")
    min_accuracy: float | None = option(None, help="gate: float test accuracy (default: chance + (1 - chance)/4)")
    min_rate: float = option(1e-3, help="gate: lowest firing rate of every spiking layer (float and chip)")
    max_rate: float = option(0.99, help="gate: highest firing rate of every spiking layer (float and chip)")
    batch_size: int = option(128, help="samples per batch on the float model and the chip simulator")
    weights: str = option("auto", choices=WEIGHT_CHOICES, help="for a model: its deployment's synapses, as "
                          "snn-export --weights (auto: 8bit for a snnchip model); a deploy directory records its own")
    headroom: str = option("auto", choices=HEADROOM_CHOICES, help="for a model: its deployment's membrane headroom, "
                           "as snn-export --headroom (auto: T for a snnchip model)")
    input_range: float | None = option(None, help="for a model on Loihi: the largest |x| its deployment takes, as "
                                       "snn-export --input-range (default 1; digits-rows' spike counts need 15)")
    target: str = option("loihi", choices=("loihi", "xylo"), help="for a model: the chip it is certified for (a "
                         "deploy directory names its own); xylo: --lava-samples is the samples run in xylosim")

    def check(self) -> None:
        bad = []
        if self.samples is not None and self.samples <= 0:
            bad.append(f"--samples must be positive, got {self.samples}")
        if self.lava_samples is not None and self.lava_samples < 0:
            bad.append(f"--lava-samples must be ≥ 0 (0 skips the Lava gate), got {self.lava_samples}")
        if not (math.isfinite(self.lava_budget) and self.lava_budget > 0):
            bad.append(f"--lava-budget must be a positive number of seconds, got {self.lava_budget}")
        for name in ("min_agreement", "min_rate", "max_rate") + (("min_accuracy",) if self.min_accuracy is not None
                                                                   else ()):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                bad.append(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.min_rate > self.max_rate:
            bad.append(f"--min-rate {self.min_rate} is above --max-rate {self.max_rate}")
        if self.input_range is not None and not 0 < self.input_range < math.inf:
            bad.append(f"--input-range must be a positive, finite number, got {self.input_range}")
        if self.batch_size <= 0:
            bad.append(f"--batch-size must be positive, got {self.batch_size}")
        if self.input is not None and self.dataset is not None:
            bad.append("--input and --dataset both name the data: give one")
        if self.labels is not None and self.input is None:
            bad.append("--labels go with --input (a dataset brings its own)")
        if self.T is not None and not 0 < self.T <= 10_000:
            bad.append(f"--T must be in 1..10000, got {self.T}")
        if bad:
            raise SnnchipError("; ".join(bad))


def stratified_order(y: np.ndarray) -> np.ndarray:
    """Test-set indices in round-robin class order: the first sample of every class, then the second, ...; a
    prefix of any length covers the classes as evenly as the test set allows."""
    per_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    rank = np.empty(len(y), np.int64)
    for idx in per_class:
        rank[idx] = np.arange(len(idx))
    return np.lexsort((y, rank))


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _stack(results: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([r[k] for r in results], axis=1) for k in results[0]}


class Reference:
    """The float side of the ladder and the deployment it is compared with: an in-memory ``SpikingNet``, a
    ``model.pt`` (the deployment ``snn-export --target loihi`` writes for it, written to ``deploy_out``) or a
    deploy directory (the float reference: ``model`` if given, else the NIR executor of its ``model.nir``)."""

    def __init__(self, source: Any, cfg: ValidateConfig, interpretation: dict[str, Any] | None = None) -> None:
        import nir

        from snnchip.export.loihi import load_deploy
        from snnchip.export.nir_export import model_graph
        from snnchip.export.nir_meta import graph_meta
        from snnchip.export.nir_read import read_graph
        from snnchip.filekind import FileKind, expect
        from snnchip.train import SpikingNet, load_model
        from snnchip.workflows.model_data import export_measured

        self.model, self.model_path, self.deploy_path, self.deployment = None, None, None, None
        self.graph_path: Path | None = None
        self.staged: StagedDir | None = None  # the certified directory being written (committed when all pass)
        self.precision = {**precision_args(cfg.weights, cfg.headroom), "input_range": cfg.input_range or 1.0}
        recorded = None
        if isinstance(source, nir.NIRGraph):
            self.name, self.graph, self.spec = "in-memory NIR graph", source, None
            if cfg.deploy_out is not None:
                self._stage(Path(cfg.deploy_out))
        elif isinstance(source, SpikingNet):
            self.name, self.model, self.spec = f"in-memory {source.spec.model}", source, source.spec
            self.graph = model_graph(source)
            if cfg.deploy_out is not None:
                self._stage(Path(cfg.deploy_out))
        else:
            path = Path(source)
            self.name = str(path)
            if not path.exists():
                raise SnnchipError(f"{path}: no such model.pt, .nir graph or deploy directory")
            kind = expect(path, "a model.pt (a zip archive), a .nir graph (HDF5) or a deploy directory",
                          (FileKind.DIRECTORY, FileKind.HDF5, FileKind.ZIP))
            if kind == FileKind.HDF5:
                if cfg.model is not None:
                    raise SnnchipError("--model names the model.pt of a deploy directory, not of a .nir graph")
                self.graph_path, self.graph = path, read_graph(path)
                self.spec = graph_meta(self.graph).spec
                self._stage(Path(cfg.deploy_out) if cfg.deploy_out else path.parent / CERTIFIED_DIR)
            elif kind == FileKind.DIRECTORY:
                if cfg.deploy_out is not None:
                    raise SnnchipError("--deploy-out applies to a model.pt; a deploy directory is validated as it is")
                self.deploy_path, self.deployment = path, load_deploy(path, allow_edited=cfg.allow_edited)
                self.graph = model_graph(path / "model.nir")
                self.spec = graph_meta(self.graph).spec
                recorded = self.deployment.manifest.get("interpretation")
                if recorded is not None and interpretation:
                    raise SnnchipError(f"{path} records the interpretation it was exported with; validate it as it "
                                       "is, or re-export the graph with the interpretation you mean")
                if cfg.model is not None:
                    self.model_path = Path(cfg.model)
                    self.model, _ = load_model(self.model_path)
            else:
                if cfg.model is not None:
                    raise SnnchipError("--model names the model.pt of a deploy directory; validate the model.pt "
                                       "itself, or the deploy directory with --model")
                self.model_path = path
                self.model, ckpt = load_model(path)
                self.spec = ckpt.spec
                self.graph = model_graph(path)
                self._stage(Path(cfg.deploy_out) if cfg.deploy_out else path.parent / CERTIFIED_DIR)
                with self.staged.discarded_on_failure():
                    export_measured(self.graph, self.staged.path, source=path, **self.precision)
                    self.deployment = load_deploy(self.staged.path)  # certify the files, not an in-memory copy
        self.interpretation = None
        if not graph_meta(self.graph).own:  # a foreign graph: read as the user or its manifest says
            from snnchip.export.nir_meta import recorded_interpretation
            from snnchip.export.writers import resolve
            from snnchip.spec import Interpretation

            base = Interpretation.from_record(recorded) if recorded is not None else \
                recorded_interpretation(self.graph)
            self.interpretation = resolve(self.graph, Interpretation.overriding(base, **(interpretation or {}))
                                          or Interpretation())
        elif interpretation:
            raise SnnchipError(f"{self.name} is a snnchip graph: its metadata fixes every neuron's semantics; the "
                               "interpretation options apply to foreign graphs")
        from snnchip.export.nir_exec import NIRExecutor

        self.executor = NIRExecutor(self.graph, self.interpretation)

    def _stage(self, dest: Path) -> None:
        """Write the certified directory under a temporary name beside ``dest`` (``commit`` moves it there)."""
        from snnchip.export.loihi import check_replaceable

        check_replaceable(dest)
        self.deploy_path, self.staged = dest, StagedDir(dest)

    def files(self) -> Path | None:
        """Where the deployment's files are now (the staged directory until it is committed)."""
        return self.staged.path if self.staged is not None else self.deploy_path

    def deploy(self, data: Any, xs: torch.Tensor) -> None:
        """The deployment of an in-memory model or a graph (graded-spike bounds measured on the training set
        ``data``, ``graded_spike_bounds``); a foreign graph's for the evaluated inputs ``xs``: their T and their
        range max |x|."""
        from snnchip.export.loihi import deployment_from_graph, export_loihi, load_deploy
        from snnchip.workflows.model_data import graded_spike_bounds

        if self.deployment is not None:
            return
        kw: dict[str, Any] = dict(self.precision)
        if self.interpretation is not None:
            kw.update(interpretation=self.interpretation, T=int(xs.shape[0]),
                      input_range=float(xs.abs().max()) or 1.0)
        else:
            kw["spike_bounds"] = graded_spike_bounds(self.graph, data.x_train) if data is not None else None
        if self.staged is None:
            self.deployment = deployment_from_graph(self.graph, **kw)
        else:
            with self.staged.discarded_on_failure():
                export_loihi(self.graph, self.staged.path, **kw)
                self.deployment = load_deploy(self.staged.path)

    def run(self, xs: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return float_run(self.model, self.executor, xs)

    def identity(self) -> dict[str, Any]:
        from snnchip.export.loihi import FILES

        out: dict[str, Any] = {"model": None, "deploy_dir": None}
        if self.graph_path is not None:
            out["graph"] = {"path": str(self.graph_path), "sha256": sha256_file(self.graph_path)}
        if self.model_path is not None:
            out["model"] = {"path": str(self.model_path), "sha256": sha256_file(self.model_path)}
        if self.deploy_path is not None:
            out["deploy_dir"] = {"path": str(self.deploy_path),
                                 "files": {f: sha256_file(self.files() / f) for f in FILES},
                                 "seal": self.deployment.seal.as_dict(),
                                 "written_by_validation": self.staged is not None, "written": False}
        out["manifest_source"] = (self.deployment.manifest.get("source") if self.deployment is not None else None)
        return out


class ValidationReport(dict):
    """The ladder's report: a JSON-able dict (gates, agreement, identity, ...) whose repr states the verdict."""

    def __repr__(self) -> str:
        gates = self.get("gates", {})
        failed = [k for k, g in gates.items() if not g["passed"]]
        return (f"<ValidationReport {'PASSED' if self.get('passed') else 'FAILED'}: {self.get('model')} on "
                f"{self.get('dataset')}, T={self.get('T')}, {self.get('samples')} samples, {len(gates)} gates"
                + (f"; failed: {', '.join(failed)}" if failed else "") + ">")

    __str__ = __repr__


def float_run(model: Any, executor: Any, xs: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The float side's outputs [T, B, C] and spikes {layer: bool}: the model if there is one, else the NIR
    executor."""
    if model is not None:
        from snnchip.train import simulate

        res = simulate(model, xs)
    else:
        res = executor.run(xs)
    return (np.asarray(res.output, dtype=np.float64), {k: np.asarray(v).astype(bool) for k, v in res.spikes.items()})


def nir_equals_float(ref: Any, xs: torch.Tensor) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report entry, gate) of rung 1: the float model's outputs against the NIR executor's, first 256 samples.

    Outputs within ``NIR_TOLERANCE`` (relative) pass. Beyond it the gate holds the fraction of spike values that
    differ between the two, at most ``NIR_FLIPS``: in a deep network float32 rounding flips the few spikes whose
    membrane sits at the threshold, and each flip moves the output by a weight (VGG-11 at CIFAR size: 63 of
    4.2·10⁸ spike values, outputs 0.036 apart, every decision the same), while a graph of another network differs
    in far more; a spiking layer missing on either side fails."""
    head = xs[:, : min(xs.shape[1], 256)]
    f_out, f_spikes = ref.run(head)
    executed = ref.executor.run(head)
    e_out = np.asarray(executed.output, dtype=np.float64)
    diff = float(np.max(np.abs(f_out - e_out)))
    tolerance = NIR_TOLERANCE * max(1.0, float(np.max(np.abs(f_out))))
    entry = {"max_abs_output_diff": diff, "tolerance": tolerance, "samples": int(head.shape[1])}
    if diff <= tolerance:
        return entry, gate(diff, tolerance, "<=", "max |float output − NIR executor output|")
    e_spikes = {k: np.asarray(v).astype(bool) for k, v in executed.spikes.items()}
    if set(e_spikes) != set(f_spikes) or any(e_spikes[k].shape != f_spikes[k].shape for k in f_spikes):
        return entry, gate(diff, tolerance, "<=", "max |float output − NIR executor output| (their spiking layers "
                           f"differ: {sorted(f_spikes)} vs {sorted(e_spikes)})")
    flips = sum(int((f_spikes[k] != e_spikes[k]).sum()) for k in f_spikes)
    total = sum(a.size for a in f_spikes.values())
    entry.update(spike_flips=flips, spike_values=total)
    return entry, gate(flips / max(total, 1), NIR_FLIPS, "<=", f"the fraction of spike values that differ between "
                       f"the float model and the NIR executor ({flips} of {total}; outputs {diff:.3g} apart, beyond "
                       f"{tolerance:.3g}: float32 rounding at the threshold flips a few)")


def gate(value: float, threshold: float, op: str, meaning: str, layer: str | None = None) -> dict[str, Any]:
    """A gate's record: ``value op threshold`` must hold (op one of "<=", ">=", "==")."""
    passed = {"<=": value <= threshold, ">=": value >= threshold, "==": value == threshold}[op]
    out = {"value": value, "threshold": threshold, "op": op, "passed": bool(passed), "meaning": meaning}
    if layer is not None:
        out["layer"] = layer
    return out


def _liveness(rates: dict[str, float], cfg: ValidateConfig, where: str) -> dict[str, Any]:
    """Every spiking layer's rate inside [min_rate, max_rate]: the gate holds the worst layer."""
    if not rates:
        return gate(1.0, 1.0, "==", f"no spiking layer {where}")
    low = min(rates, key=rates.get)
    high = max(rates, key=rates.get)
    if rates[low] < cfg.min_rate:
        return gate(rates[low], cfg.min_rate, ">=", f"layer {low!r} is silent {where} (firing rate below the "
                    "floor)", layer=low)
    if rates[high] > cfg.max_rate:
        return gate(rates[high], cfg.max_rate, "<=", f"layer {high!r} is saturated {where} (firing rate above the "
                    "ceiling)", layer=high)
    return gate(rates[low], cfg.min_rate, ">=", f"every spiking layer fires {where} (lowest: {low!r}; highest "
                f"{high!r} at {rates[high]:.4f} ≤ {cfg.max_rate})", layer=low)


def validate(model: Any, cfg: ValidateConfig | None = None, progress: bool = True,
             interpretation: dict[str, Any] | None = None, x: np.ndarray | None = None,
             labels: np.ndarray | None = None) -> ValidationReport:
    """Run the ladder on a ``SpikingNet``, a ``model.pt``, a NIR graph (in memory or a ``.nir`` file) or a deploy
    directory; return the report (a JSON-able dict, plus ``_plot_data``). The certified directory of a model or a
    graph is moved into place only when every gate passed.

    A foreign graph is certified on the user's data: ``x`` [T, batch, *features] (or ``cfg.input``) with optional
    integer ``labels`` [batch] (or ``cfg.labels``), or a built-in dataset (``cfg.dataset`` with ``cfg.T``); it is
    read with ``interpretation`` (``Interpretation`` fields, e.g. ``{"writer": "snntorch", "reset": "zero"}``)."""
    cfg = cfg or ValidateConfig()
    cfg.check()
    from snnchip.workflows.targets import target_of

    is_dir = isinstance(model, (str, Path)) and Path(model).is_dir()
    if (target_of(model).name if is_dir else cfg.target) == "xylo":
        from snnchip.workflows.xylo import XyloReference, xylo_ladder

        if interpretation or x is not None or labels is not None or cfg.input is not None:
            raise SnnchipError("the Xylo ladder certifies a snnchip model (or its Xylo deploy directory) on its "
                               "dataset; --input, --labels and --from are for graphs certified on Loihi 2")
        ref: Any = XyloReference(model, cfg)

        def ladder() -> dict[str, Any]:
            return xylo_ladder(ref, cfg, progress)
    else:
        ref = Reference(model, cfg, interpretation)

        def ladder() -> dict[str, Any]:
            return _ladder(ref, cfg, progress, x, labels)
    try:
        report = ValidationReport(ladder())
        if ref.staged is not None and report["passed"]:
            ref.staged.commit()
            report["identity"]["deploy_dir"]["written"] = True
    finally:
        if ref.staged is not None:
            ref.staged.discard()
    return report


def deployment_gates(ref: Any, identity: dict[str, Any], derive: Callable[[], list[str]]
                     ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(report entries, gates) on a deployment's integrity, for every target: ``deployment_sealed`` where a deploy
    directory was given (its files and manifest values against its seal), ``deployment_from_model`` where a model.pt
    is given (``derive()``: the values in which the deployment differs from the one derived again from it)."""
    entries: dict[str, Any] = {}
    gates: dict[str, dict[str, Any]] = {}
    seal = ref.deployment.seal
    if ref.staged is None and seal is not None and seal.sealed:
        gates["deployment_sealed"] = gate(float(seal.intact), 1.0, "==", "the deploy directory's files and manifest "
                                          "values match its seal" + ("" if seal.intact else f": {seal.describe()}"))
    if ref.model_path is not None and ref.deploy_path is not None:
        from snnchip.export.provenance import summary

        found = derive()
        recorded = (ref.deployment.manifest.get("source") or {}).get("sha256")
        entries["provenance"] = {"differences": found, "recorded_model_sha256": recorded,
                                 "recorded_is_this_model": recorded == identity["model"]["sha256"]}
        meaning = "values in which the deployment differs from the one derived again from this model.pt " \
            "(registers, weights, exponents, biases, the input's grid)"
        if found:
            meaning += f": {summary(found)}; it was exported from another model, edited, or by another snnchip " \
                "(re-export it)"
        gates["deployment_from_model"] = gate(float(len(found)), 0.0, "==", meaning)
    return entries, gates


def _data(ref: Reference, cfg: ValidateConfig, x: np.ndarray | None, labels: np.ndarray | None
          ) -> tuple[Any, torch.Tensor, np.ndarray | None, str]:
    """(training data or None, inputs [T, n, ...], labels or None, what the data is): the user's arrays or
    ``--input``/``--labels`` files, else the dataset's test set (a foreign graph's static samples repeated T
    times)."""
    from snnchip.arrayfile import check_time_axis, load_input, load_labels
    from snnchip.errors import DataError
    from snnchip.train.data import load_dataset
    from snnchip.train.inference import encoded_test_set

    T = ref.spec.T if ref.spec is not None else (ref.deployment.T if ref.deployment is not None else None)
    if x is not None or cfg.input is not None:
        where = cfg.input or "x"
        arr = load_input(cfg.input) if x is None else np.asarray(x)
        if arr.ndim < 3:
            raise DataError(f"{where}: expected shape [T, batch, *features], got {arr.shape}")
        check_time_axis(arr, T, where)
        if T is not None and arr.shape[0] != T:
            raise DataError(f"{where}: {arr.shape[0]} time steps; this model runs T = {T}")
        y = labels if labels is not None else (load_labels(cfg.labels, arr.shape[1]) if cfg.labels else None)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (arr.shape[1],) or not np.issubdtype(y.dtype, np.integer) or np.any(y < 0):
                raise DataError(f"labels must be non-negative integers of shape [batch] = [{arr.shape[1]}], got "
                                f"{y.dtype} {y.shape}")
        n = arr.shape[1] if cfg.samples is None else min(cfg.samples, arr.shape[1])
        xs = torch.as_tensor(np.ascontiguousarray(arr[:, :n]), dtype=torch.float32)
        return None, xs, None if y is None else y[:n].astype(np.int64), f"{where} (user data)"
    if ref.spec is not None:
        name = cfg.dataset or "digits"
        data = load_dataset(name, data_dir=cfg.data_dir, spec=ref.spec)
        xs, y = encoded_test_set(ref.spec, data, cfg.samples)
        return data, xs, y, name
    if cfg.dataset is None or cfg.T is None:
        raise SnnchipError(f"{ref.name}: a foreign graph brings no data: give --input X.npy [T, batch, ...] "
                           "(and --labels Y.npy), or --dataset NAME --T N where the graph's input matches the "
                           "dataset's samples")
    shape = tuple(int(d) for d in ref.executor.checked.shapes[ref.executor.checked.inputs[0]])
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, flat=len(shape) == 1, T=cfg.T)
    if tuple(data.input_shape) != shape:
        raise DataError(f"--dataset {cfg.dataset}: samples of shape {tuple(data.input_shape)}; the graph's input "
                        f"is {shape}")
    xt, y = data.test
    n = len(y) if cfg.samples is None else min(cfg.samples, len(y))
    xt = torch.as_tensor(xt[:n]).float()
    xs = xt.transpose(0, 1) if data.temporal else xt.unsqueeze(0).expand(cfg.T, *xt.shape)
    return None, xs.contiguous(), np.asarray(y[:n]).astype(np.int64), cfg.dataset


def decisions(out: np.ndarray, foreign: bool) -> np.ndarray:
    """The class each sample decides: argmax of the readout's Σ o at T (ours), of the output summed over time
    (a foreign graph: its output spikes counted, or its readout membrane summed; a multi-dimensional output, such
    as a conv layer's, flattened)."""
    out = out.reshape(out.shape[0], out.shape[1], -1)
    return (out.sum(0) if foreign else out[-1]).argmax(-1)


def decay_floor(ref: Reference, xs: torch.Tensor, batch_size: int, f_spk: dict[str, np.ndarray]
                ) -> dict[str, float] | None:
    """Per layer, the spike agreement of the foreign graph with the decays Loihi 2 holds against the graph itself
    (``export.chip_decays``, both run by the reference executor on ``xs``): what the chip loses before any quantizer
    choice, and no precision setting wins back; None when the chip holds every decay of the graph exactly."""
    from snnchip.export.chip_decays import held_decays
    from snnchip.export.nir_exec import NIRExecutor

    graph, moved = held_decays(ref.graph, ref.interpretation)
    if not moved:
        return None
    executor = NIRExecutor(graph, ref.interpretation)
    held = [executor.run(xs[:, sl]).spikes for sl in _batches(xs.shape[1], batch_size)]
    return spike_agreement(f_spk, _stack([{k: np.asarray(h[k]).astype(bool) for k in f_spk} for h in held]))


def _ladder(ref: Reference, cfg: ValidateConfig, progress: bool, x: np.ndarray | None = None,
            labels: np.ndarray | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from snnchip.deploy.network import hardware_processes
    from snnchip.export.provenance import differences, rederive
    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.hw_sim.metrics import LoihiChipMetrics, float_metrics
    from snnchip.hw_sim.resources import estimate, layer_resources

    data, xs, y, data_name = _data(ref, cfg, x, labels)
    ref.deploy(data, xs)
    T, n = xs.shape[0], xs.shape[1]
    foreign = ref.interpretation is not None
    identity = ref.identity()
    identity["data"] = {"dataset": data_name, "samples": int(n),
                        "sha256": sha256_arrays(xs.numpy(), y if y is not None else np.zeros(0, np.int64))}
    report: dict[str, Any] = {"model": ref.name, "dataset": data_name, "T": int(T), "samples": int(n),
                              "config": asdict(cfg), "identity": identity, "gates": {},
                              "hardware": hardware_processes(ref.deployment),
                              "reference": "float model" if ref.model is not None else "NIR reference executor"}
    if foreign:
        report["interpretation"] = {"described": ref.interpretation.describe(), **ref.interpretation.record()}
    gates = report["gates"]
    entries, integrity = deployment_gates(ref, identity, lambda: differences(
        ref.deployment, rederive(ref.deployment, ref.model_path)))
    report.update(entries)
    gates.update(integrity)

    # 1. float PyTorch model vs the NIR reference executor
    if ref.model is not None:
        report["nir"], gates["nir_equals_float"] = nir_equals_float(ref, xs)

    # 2. float vs the bit-exact chip on the whole (requested) test set
    chip = ChipSimulator(ref.deployment)
    f_outs, f_spks, c_outs, c_spks = [], [], [], []
    chip_metrics = LoihiChipMetrics(ref.deployment.qnet)
    for sl in tqdm(list(_batches(n, cfg.batch_size)), desc="float vs chip", disable=not progress):
        xb = xs[:, sl]
        fo, fs = ref.run(xb)
        cres = chip.run(xb.numpy())
        f_outs.append(fo)
        f_spks.append(fs)
        c_outs.append(np.asarray(cres.output, dtype=np.float64))
        c_spks.append({k: np.asarray(v).astype(bool) for k, v in cres.spikes.items()})
        chip_metrics.add(xb.numpy(), c_spks[-1], {k: cres.states[k]["v"] for k in cres.spikes})
    f_out, c_out = np.concatenate(f_outs, axis=1), np.concatenate(c_outs, axis=1)
    f_spk, c_spk = _stack(f_spks), _stack(c_spks)
    f_pred, c_pred = decisions(f_out, foreign), decisions(c_out, foreign)
    num_classes = int(np.prod(f_out.shape[2:]))
    chance = 1.0 / num_classes
    min_accuracy = cfg.min_accuracy if cfg.min_accuracy is not None else chance + (1.0 - chance) / 4
    agree = spike_agreement(f_spk, c_spk)
    f_rate = {k: float(np.mean(v)) for k, v in f_spk.items()}
    c_rate = {k: float(np.mean(v)) for k, v in c_spk.items()}
    report["chip"] = {
        "float_accuracy": None if y is None else float(np.mean(f_pred == y)),
        "chip_accuracy": None if y is None else float(np.mean(c_pred == y)),
        "chance": chance,
        "decision_agreement": float(np.mean(f_pred == c_pred)),
        "spike_agreement": agree,
        "float_firing_rate": f_rate,
        "chip_firing_rate": c_rate,
        "first_differing_layer": next((k for k in f_spk if agree[k] < 1.0), None),
        "decay_floor": decay_floor(ref, xs, cfg.batch_size, f_spk) if foreign else None,
    }
    if y is not None:
        gates["float_accuracy"] = gate(report["chip"]["float_accuracy"], min_accuracy, ">=",
                                       f"{report['reference']} accuracy, clearly above chance ({chance:.3f})")
    gates["layers_alive_float"] = _liveness(f_rate, cfg, "in the float model")
    gates["layers_alive_chip"] = _liveness(c_rate, cfg, "on the chip")
    gates["decision_agreement"] = gate(report["chip"]["decision_agreement"], cfg.min_agreement, ">=",
                                       "fraction of test samples where float and chip decide the same class")

    layers = layer_resources(ref.deployment)
    events = {"input": float(np.count_nonzero(xs.numpy())) / n, **{k: float(v.sum()) / n for k, v in c_spk.items()}}
    report["resources"] = estimate(layers, events, int(T))
    report["neurobench"] = {"float": float_metrics(ref.graph, xs.numpy(), ref.interpretation, cfg.batch_size),
                            "chip": chip_metrics.result()}

    # 3. bit-exact chip vs Lava Loihi2SimCfg(fixed_pt), on Lava's own clock, stratified samples
    if cfg.lava_samples != 0:
        report["lava"] = _lava(ref.deployment, chip, xs, f_pred if y is None else y, cfg, progress)
        gates["lava_equals_chip"] = gate(report["lava"]["total_differences"], 0, "==",
                                         "differing spikes and u/v states, bit-exact chip vs Lava fixed_pt, every "
                                         "Lava step")
    report["passed"] = all(g["passed"] for g in gates.values())
    report["_plot_data"] = {"float_spikes": {k: v[:, 0] for k, v in f_spk.items()},
                            "chip_spikes": {k: v[:, 0] for k, v in c_spk.items()}}
    return report


def _lava(dep: Any, chip: Any, xs: torch.Tensor, y: np.ndarray, cfg: ValidateConfig, progress: bool
          ) -> dict[str, Any]:
    """Run the stratified prefix of the test set in Lava (a fixed count, or until the time budget is spent) and
    compare it with the bit-exact simulator on Lava's clock."""
    from snnchip.deploy import build

    order = stratified_order(y)
    m = len(order) if cfg.lava_samples is None else min(cfg.lava_samples, len(order))
    deadline = None if cfg.lava_samples is not None else time.monotonic() + cfg.lava_budget
    if progress:
        what = f"{m} samples" if deadline is None else f"up to {cfg.lava_budget:g} s"
        print(f"running {what} in Lava Loihi2SimCfg(fixed_pt) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    lava_res = build(dep).run(xs[:, order[:m]].numpy(), cfg="fixed_pt", timing="lava", deadline=deadline,
                              progress=progress)
    done = lava_res.output.shape[1]
    diffs = compare_exact(chip.run(xs[:, order[:done]].numpy(), timing="lava"), lava_res)
    total = sum(sum(d.values()) for d in diffs.values())
    counts = np.bincount(y[order[:done]], minlength=int(y.max()) + 1)
    return {"samples": int(done), "indices": order[:done].tolist(), "per_class": counts.tolist(),
            "selection": "stratified over the classes (the labels; without labels the reference's decisions) "
                         "(round robin: the first test sample of every class, then the second, ...)"
                         + (f"; as many as {cfg.lava_budget:g} s of Lava allowed" if deadline else ""),
            "seconds": round(time.monotonic() - started, 2),
            "timing": "lava (T + depth steps, every stage on Lava's clock)",
            "differences": diffs, "total_differences": int(total),
            "first_differing_layer": next((k for k, d in diffs.items() if sum(d.values())), None),
            "latency": dict(lava_res.latency)}
