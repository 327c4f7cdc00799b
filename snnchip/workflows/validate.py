"""The validation ladder (``snn-validate``): the certificate that the chip computes what the trained model computes.

1. float PyTorch model vs the NIR reference executor: max |Δ output| ≤ 1e-5 · max(1, max |output|) (relative
   once outputs exceed 1, so float32 rounding of large outputs cannot fail it);
2. float model vs the bit-exact chip simulator on N samples: accuracy of each, class-decision
   agreement, per-layer spike agreement and firing rates, the first diverging layer;
3. bit-exact chip vs Lava ``Loihi2SimCfg(select_tag='fixed_pt')`` on M samples: the number of
   differing spikes and states, which must be 0 (after the per-layer latency is aligned).

The report is a JSON-able dict; the terminal table, plots (``snnchip.workflows.report``) and the exit code
(non-zero when a gate fails) are made from it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snnchip.errors import SnnchipError
from snnchip.hw_sim.compare import compare_exact, spike_agreement
from snnchip.options import option

NIR_TOLERANCE = 1e-5


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _stack(results: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([r[k] for r in results], axis=1) for k in results[0]}


@dataclass
class ValidateConfig:
    """The ladder's settings (``snn-validate`` options)."""

    dataset: str = option("digits", help="dataset whose test set is evaluated")
    data_dir: str | None = option(None, help="directory with the local dataset files")
    samples: int | None = option(None, help="samples on the bit-exact chip (default: the whole test set)")
    lava_samples: int = option(20, help="samples run in Lava (0: skip the Lava gate)")
    min_agreement: float = option(0.98, help="class-decision agreement gate, float vs chip")
    batch_size: int = option(128, help="samples per batch on the float model and the chip simulator")


class Reference:
    """The float side of the ladder and the deployment it is compared with, from an in-memory ``SpikingNet``, a
    ``model.pt`` (the deployment ``snn-export --target loihi`` writes for it) or a deploy directory (the NIR
    executor of its ``model.nir`` is the float reference)."""

    def __init__(self, source: Any) -> None:
        from snnchip.export.loihi import deployment_from_graph, load_deploy, measured_spike_bounds
        from snnchip.export.nir_exec import NIRExecutor
        from snnchip.export.nir_export import model_graph, spec_to_nir
        from snnchip.spec import NetworkSpec
        from snnchip.train import SpikingNet, load_model, plain_parameters, plain_spec

        self.model = None
        if isinstance(source, SpikingNet):
            self.name, self.model, self.spec = f"in-memory {source.spec.model}", source, source.spec
            self.graph = spec_to_nir(plain_spec(source.spec), plain_parameters(source))
            self.deployment = None  # exported by ``validate`` once the training set is known
        else:
            path = Path(source)
            self.name = str(path)
            if not path.exists():
                raise SnnchipError(f"{path}: no such model.pt or deploy directory")
            if path.is_dir():
                self.deployment = load_deploy(path)
                self.graph = model_graph(path / "model.nir")
                meta = (self.graph.metadata or {}).get("snnchip", {})
                self.spec = NetworkSpec.from_dict(json.loads(meta["spec_json"])) if "spec_json" in meta else None
            else:
                self.model, ckpt = load_model(path)
                self.spec = ckpt.spec
                self.graph = model_graph(path)
                self.deployment = deployment_from_graph(self.graph,
                                                        spike_bounds=measured_spike_bounds(path, self.graph))
        if self.spec is None:
            raise SnnchipError(f"{self.name}: a foreign graph carries no dataset spec; validate a model.pt or a "
                               "deploy directory exported from one")
        self.executor = NIRExecutor(self.graph)

    def run(self, xs: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.model is not None:
            from snnchip.train import simulate

            res = simulate(self.model, xs)
        else:
            res = self.executor.run(xs)
        return (np.asarray(res.output, dtype=np.float64),
                {k: np.asarray(v).astype(bool) for k, v in res.spikes.items()})


def validate(model: Any, cfg: ValidateConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the ladder on a ``SpikingNet``, a ``model.pt`` or a deploy directory; return the report (JSON-able,
    plus ``_plot_data``)."""
    from tqdm import tqdm

    from snnchip.hw_sim.chip import ChipSimulator
    from snnchip.hw_sim.resources import estimate, layer_resources
    from snnchip.train.data import load_dataset
    from snnchip.train.inference import encoded_test_set

    cfg = cfg or ValidateConfig()
    if cfg.samples is not None and cfg.samples <= 0:
        raise SnnchipError(f"--samples must be positive, got {cfg.samples}")
    if cfg.lava_samples < 0:
        raise SnnchipError(f"--lava-samples must be ≥ 0 (0 skips the Lava gate), got {cfg.lava_samples}")
    if not 0.0 <= cfg.min_agreement <= 1.0:
        raise SnnchipError(f"--min-agreement must be in [0, 1], got {cfg.min_agreement}")
    if cfg.batch_size <= 0:
        raise SnnchipError(f"--batch-size must be positive, got {cfg.batch_size}")
    ref = Reference(model)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, spec=ref.spec)
    if ref.deployment is None:  # an in-memory model: graded-spike bounds measured on its training set
        from snnchip.export.loihi import deployment_from_graph, graded_spike_peaks

        ref.deployment = deployment_from_graph(ref.graph, spike_bounds=graded_spike_peaks(ref.graph, data.x_train))
    xs, y = encoded_test_set(ref.spec, data, cfg.samples)
    T, n = xs.shape[0], xs.shape[1]
    report: dict[str, Any] = {"model": ref.name, "dataset": cfg.dataset, "T": int(T), "samples": int(n),
                              "gates": {}}

    # 1. float PyTorch model vs the NIR reference executor
    if ref.model is not None:
        head = xs[:, : min(n, 256)]
        f_out, _ = ref.run(head)
        e_out = np.asarray(ref.executor.run(head).output, dtype=np.float64)
        diff = float(np.max(np.abs(f_out - e_out)))
        tolerance = NIR_TOLERANCE * max(1.0, float(np.max(np.abs(f_out))))
        report["nir"] = {"max_abs_output_diff": diff, "tolerance": tolerance, "samples": int(head.shape[1])}
        report["gates"]["nir_equals_float"] = diff <= tolerance

    # 2. float vs the bit-exact chip on the whole (requested) test set
    chip = ChipSimulator(ref.deployment)
    f_outs, f_spks, c_outs, c_spks = [], [], [], []
    for sl in tqdm(list(_batches(n, cfg.batch_size)), desc="float vs chip", disable=not progress, leave=False):
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
    report["gates"]["decision_agreement"] = report["chip"]["decision_agreement"] >= cfg.min_agreement

    layers = layer_resources(ref.deployment)
    per_sample = [float(np.count_nonzero(xs.numpy())) / n] + [float(v.sum()) / n for v in c_spk.values()]
    report["resources"] = estimate(layers, per_sample[: len(layers)], sum(per_sample[1:]), int(T))

    # 3. bit-exact chip vs Lava Loihi2SimCfg(fixed_pt), on Lava's own clock
    m = min(cfg.lava_samples, n)
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
