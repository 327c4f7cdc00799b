"""NIR graph → Xylo: the mapping to a ``XyloConfig`` and the Xylo deploy directory.

What reaches Xylo (``export.lowering`` reads the graph, ours or foreign): input → one hidden population of LIF/IF or
CubaLIF neurons (Affine/Linear from the input, optionally recurrent through a one-step back edge) → one readout
(I/LI/CubaLI) fed by the hidden spikes only. Every other structure, and every number outside Xylo's registers
(``snnchip.xylo_limits``), is refused with one line naming it.

The mapping, for the float neuron of ``snnchip.neurons`` (i = λ_syn·i + A·x; u = λ·v + i; subtractive reset) and
Xylo's arithmetic (``hw_sim.xylo``):

    dash = round(−log2(1 − λ)) clamped to 0..15, so λ̂ = 1 − 2^−dash (the error |λ − λ̂| is reported)
    Xylo decays a delivered input in its step: I ← λ̂_syn·(I + W·x), so W = round(σ·A / λ̂_syn / 2^shift)
    θ̂ = round(σ·θ), bias (LIF) = round(σ·b) into the membrane

σ is the state scale of a population: for the hidden neurons θ̂ near 2^12 (2^10 for Xylo's own neuron, whose 31
spikes' worth must fit), for the readout as large as the int8 weights with shifts 0..7 allow; both no larger than
keeps the largest state inside 16 bits: measured on the training set for a model.pt of spike-count data
(``measured_bounds``), else the readout's worst case. A LIF has no synaptic
current but Xylo's neurons always have one: the shortest (dash 1, λ̂_syn = ½) is used, so each input reaches the
membrane half in its step and half over the following steps (an approximation, reported). A readout without a
current is read from the output neurons' current (``isyn_out``, decay from λ); one with a current from their
potential (``vmem_out``). Readout biases become one extra hidden neuron that fires once every step (bias = θ̂ = 1)
with the biases as its output weights. The output neurons hear the hidden spikes one step later, so a run lasts
T + 1 steps (the last with no input) and the decision is the argmax of the readout at that last step.

The deploy directory: ``model.nir`` (the float graph), ``params.npz`` (the ``XyloConfig``), ``manifest.json`` (the
target, T, the input contract, the readout, the mapping report, the limits table, sealed by ``export.seal``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir
import numpy as np
import scipy.sparse as sp

from snnchip.atomic import atomic_dir
from snnchip.discretize import dash_of, lam_of
from snnchip.errors import DeployError, UnsupportedNodeError
from snnchip.export.loihi import check_replaceable, read_model_graph
from snnchip.export.lowering import INPUT, LoweredNet, Stage, lower
from snnchip.export.nir_export import nir_bytes
from snnchip.export.nir_meta import multi_spike_nodes
from snnchip.export.seal import (
    FIRST_SEALED_VERSION,
    SealCheck,
    check_format,
    check_seal,
    open_deploy_dir,
    read_params,
    refuse_edited,
    sealed_manifest_json,
)
from snnchip.export.xylo_config import XyloConfig
from snnchip.identity import sha256_file
from snnchip.spec import Interpretation, NeuronKind
from snnchip.xylo_limits import LIMITS, STATE_MAX, WEIGHT_MAX, check_sizes, limits_table

FORMAT = {"name": "snnchip-xylo-deploy", "version": 1}
FILES = ("model.nir", "params.npz", "manifest.json")
TARGET = "xylo"
HIDDEN_THRESHOLD = 2 ** 12  # θ̂ the hidden scale aims at: 3 bits of headroom below the 16-bit state
MULTI_SPIKE_THRESHOLD = 2 ** 10  # θ̂ of a net trained with several spikes per step: 31 spikes' worth (31·θ̂) fits
MAX_SHIFT = LIMITS["weight_shift_max"].value
MAX_DASH = LIMITS["dash_max"].value
READOUT_HEADROOM = 0.9  # the readout's worst case is scaled to this fraction of the 16-bit range


@dataclass
class XyloMapping:
    """A mapped graph: the ``config``, T, the readout (``"isyn_out"`` or ``"vmem_out"``) with its scale (chip
    value ≈ scale · float value), and the mapping ``report`` (dashes and their λ errors, scales, shifts,
    approximations)."""

    config: XyloConfig
    T: int
    readout: str
    readout_scale: float
    hidden_scale: float
    report: dict[str, Any]

    @property
    def steps(self) -> int:
        """The Xylo run: T steps of input and one more for the readout's one-step delay."""
        return self.T + 1


def _refuse(what: str) -> UnsupportedNodeError:
    return UnsupportedNodeError(f"Xylo: {what}")


def dense_weight(w: Any) -> np.ndarray:
    """A projection's weights as a dense float64 matrix."""
    return np.asarray(w.toarray() if sp.issparse(w) else w, np.float64)


def _weights(m: np.ndarray, scale: float) -> tuple[np.ndarray, int, float]:
    """int8 weights and the shift for σ·m; the largest rounding error relative to the largest |m|."""
    peak = float(np.abs(m).max(initial=0.0)) * scale
    shift = 0 if peak <= WEIGHT_MAX else min(math.ceil(math.log2(peak / WEIGHT_MAX)), MAX_SHIFT)
    w = np.clip(np.round(m * scale / 2 ** shift), -WEIGHT_MAX - 1, WEIGHT_MAX).astype(np.int64)
    err = float(np.abs(w * 2 ** shift / scale - m).max(initial=0.0)) / max(float(np.abs(m).max(initial=0.0)), 1e-300)
    return w, shift, err


def _projections(st: Stage, allowed: dict[tuple[str, int], str]) -> dict[str, np.ndarray]:
    out = {}
    for p in st.inputs:
        key = (p.source, p.delay)
        if key not in allowed:
            src = "the input" if p.source == INPUT else f"layer {p.source!r}"
            raise _refuse(f"layer {st.name!r} takes {src} with a delay of {p.delay} step(s); Xylo's hidden neurons "
                          "take the input in the same step and themselves one step later, its outputs the hidden "
                          "spikes only")
        out[allowed[key]] = dense_weight(p.weight)
    return out


def _structure(net: LoweredNet) -> tuple[Stage, Stage]:
    spiking = [s for s in net.stages if s.kind != NeuronKind.READOUT]
    readouts = [s for s in net.stages if s.kind == NeuronKind.READOUT]
    if len(spiking) != 1 or len(readouts) != 1 or readouts[0].name != net.output:
        raise _refuse(f"the graph has {len(spiking)} spiking population(s) and {len(readouts)} readout(s) "
                      f"({', '.join(f'{s.name}: {s.kind}' for s in net.stages)}); Xylo holds one hidden population "
                      "(LIF/CubaLIF, recurrence allowed) and one readout fed by it")
    hid, out = spiking[0], readouts[0]
    if hid.kind not in (NeuronKind.LIF, NeuronKind.CUBALIF):
        raise _refuse(f"layer {hid.name!r} is a {hid.kind} neuron; Xylo's neurons are LIF/CubaLIF")
    if hid.reset != "subtract" or hid.reset_by is not None:
        raise _refuse(f"layer {hid.name!r} resets by {hid.reset if hid.reset_by is None else 'a delayed amount'}; "
                      "Xylo resets by subtracting the threshold")
    return hid, out


def map_lowered(net: LoweredNet, max_spikes: int = 1, bounds: dict[str, float] | None = None) -> XyloMapping:
    """The Xylo mapping of a lowered net (module docstring); ``max_spikes``: the spikes per step of its hidden neurons
    (Xylo's 31: a net trained with ``--profile xylo``); ``bounds``: the largest |state| of the hidden neurons and of
    the readout measured on data (``state_bounds``), which cap the scales so the 16-bit states do not saturate
    (without: the readout's worst case, the hidden scale from θ alone). ``UnsupportedNodeError`` for what Xylo
    cannot hold."""
    hid, out = _structure(net)
    n_in, n_h, n_o = math.prod(net.input_shape), hid.size, out.size
    check_sizes("Xylo", n_in, n_h, n_o)  # a one-line DeployError; the bias neuron is checked below
    approximations = []
    h = _projections(hid, {(INPUT, 0): "in", (hid.name, 1): "rec"})
    a_in, a_rec = h["in"], h.get("rec", np.zeros((n_h, n_h)))
    a_out = _projections(out, {(hid.name, 0): "out"})["out"]
    if hid.current:
        d_syn = max(dash_of(hid.lam_syn), 1)
        if np.any(hid.bias != 0):
            raise _refuse(f"layer {hid.name!r} is current-based with a bias; Xylo adds biases to the membrane "
                          "potential, not to the current")
    else:
        d_syn = 1
        approximations.append(f"layer {hid.name!r} is a LIF without a synaptic current; Xylo's shortest current "
                              "(dash 1, λ_syn = 0.5) carries half of each input into the following steps")
    if hid.spike != "ge":
        approximations.append(f"layer {hid.name!r} fires on u > θ; Xylo fires on u ≥ θ̂ (integers)")
    if max_spikes != LIMITS["spikes_hidden"].value:
        approximations.append(f"Xylo emits up to {LIMITS['spikes_hidden'].value} spikes per step where u ≥ 2θ (the "
                              f"float neuron {max_spikes})")
    d_mem = dash_of(hid.lam)
    ls = lam_of(d_syn)
    e_in, e_rec = a_in.T / ls, a_rec.T / ls  # [pre, post]
    peak = max(float(np.abs(e_in).max(initial=0.0)), float(np.abs(e_rec).max(initial=0.0)))
    sigma = (HIDDEN_THRESHOLD if max_spikes == 1 else MULTI_SPIKE_THRESHOLD) / hid.theta
    if bounds and bounds.get("hidden", 0) > 0:
        sigma = min(sigma, READOUT_HEADROOM * STATE_MAX / bounds["hidden"])
    if peak * sigma > WEIGHT_MAX * 2 ** MAX_SHIFT:
        sigma = WEIGHT_MAX * 2 ** MAX_SHIFT / peak
    w_in, s_in, err_in = _weights(e_in, sigma)
    w_rec, s_rec, err_rec = _weights(e_rec, sigma)
    theta = max(round(sigma * hid.theta), 1)
    bias = np.round(sigma * hid.bias).astype(np.int64)
    if np.abs(bias).max(initial=0) > STATE_MAX:
        raise _refuse(f"layer {hid.name!r}: a bias of {np.abs(hid.bias).max():.4g} is {np.abs(bias).max()} at the "
                      f"threshold's scale, outside the 16-bit state")
    # the readout
    has_bias_neuron = bool(np.any(out.bias != 0))
    if out.current:
        readout, d_syn_out, d_mem_out = "vmem_out", max(dash_of(out.lam_syn), 1), dash_of(out.lam)
        lam_in = lam_of(d_syn_out)
    else:
        readout, d_syn_out, d_mem_out = "isyn_out", max(dash_of(out.lam), 1), MAX_DASH
        lam_in = lam_of(d_syn_out)
        if out.lam < 0.5:
            approximations.append(f"readout {out.name!r}: λ = {out.lam:g} is below Xylo's shortest current decay "
                                  "(0.5)")
    e_out = (np.concatenate([a_out.T, out.bias[None, :]]) if has_bias_neuron else a_out.T) / lam_in
    steps = net.T or 1
    # the readout's worst case, one spike per hidden neuron and step: the current sums at most min(T, 1/(1 − λ̂))
    # steps of inputs; a potential (vmem_out) sums T steps of that current
    per_step = float(np.abs(e_out).sum(axis=0).max(initial=0.0))
    worst = per_step * min(steps, 1.0 / (1.0 - lam_in)) * (steps if readout == "vmem_out" else 1)
    if bounds and bounds.get("readout", 0) > 0:
        worst = bounds["readout"]
    sigma_out = WEIGHT_MAX * 2 ** MAX_SHIFT / max(float(np.abs(e_out).max(initial=0.0)), 1e-300)
    if worst > 0:
        sigma_out = min(sigma_out, READOUT_HEADROOM * STATE_MAX / worst)
    w_out, s_out, err_out = _weights(e_out, sigma_out)
    n_hw = n_h + has_bias_neuron
    check_sizes("Xylo", n_in, n_hw, n_o)
    if has_bias_neuron:  # fires once every step: V = 0 − 0 + bias 1 ≥ θ̂ = 1, then V = 0
        w_in = np.concatenate([w_in, np.zeros((n_in, 1), np.int64)], axis=1)
        w_rec = np.pad(w_rec, ((0, 1), (0, 1)))
    zeros = np.zeros_like
    cfg = XyloConfig(
        w_in=np.stack([w_in, zeros(w_in)], axis=-1), w_rec=np.stack([w_rec, zeros(w_rec)], axis=-1), w_out=w_out,
        shift_in=s_in, shift_rec=s_rec, shift_out=s_out,
        dash_mem=np.full(n_hw, d_mem), dash_syn=np.stack([np.full(n_hw, d_syn), np.full(n_hw, 1)], axis=-1),
        dash_mem_out=np.full(n_o, d_mem_out), dash_syn_out=np.full(n_o, d_syn_out),
        threshold=np.concatenate([np.full(n_h, theta), [1] * has_bias_neuron]).astype(np.int64),
        threshold_out=np.full(n_o, STATE_MAX), bias=np.concatenate([bias, [1] * has_bias_neuron]).astype(np.int64),
        bias_out=np.zeros(n_o, np.int64)).check("Xylo")
    report = {
        "hidden": {"layer": hid.name, "kind": hid.kind, "neurons": n_h, "bias_neuron": has_bias_neuron,
                   "lam": hid.lam, "dash_mem": d_mem, "lam_hat": lam_of(d_mem), "lam_syn": hid.lam_syn,
                   "dash_syn": d_syn, "lam_syn_hat": ls, "scale": sigma, "theta": hid.theta, "theta_hat": theta,
                   "shift_in": s_in, "shift_rec": s_rec, "weight_rel_error": max(err_in, err_rec)},
        "readout": {"layer": out.name, "state": readout, "lam": out.lam, "lam_syn": out.lam_syn,
                    "dash_mem_out": d_mem_out, "dash_syn_out": d_syn_out, "scale": sigma_out, "shift_out": s_out,
                    "weight_rel_error": err_out},
        "approximations": approximations,
        "measured_bounds": bounds,
    }
    return XyloMapping(cfg, steps, readout, sigma_out, sigma, report)


def map_graph(graph: nir.NIRGraph, interpretation: Interpretation | None = None, T: int | None = None,
              bounds: dict[str, float] | None = None) -> XyloMapping:
    """Lower ``graph`` (``export.lowering``) and map it to Xylo (``map_lowered``)."""
    multi = set(multi_spike_nodes(graph).values())
    if len(multi) > 1:
        raise _refuse(f"the neuron nodes emit {sorted(multi)} spikes per step; Xylo's hidden neurons all emit up to 31")
    return map_lowered(lower(graph, interpretation, T), multi.pop() if multi else 1, bounds)


def state_bounds(graph: nir.NIRGraph, xs: np.ndarray, interpretation: Interpretation | None = None
                 ) -> dict[str, float]:
    """The largest |state| of ``graph``'s float run on spike counts ``xs`` [T, N, *input_shape]: ``hidden``, over the
    spiking neurons' current before its decay (i/λ_syn, i/½ without a current) and their potential before the reset
    (v + θ·s); ``readout``, over the output. In float units (the scales multiply them)."""
    import torch

    from snnchip.export.nir_exec import NIRExecutor

    ex = NIRExecutor(graph, interpretation, T=xs.shape[0], dtype=torch.float64)
    meta = {n: (getattr(node, "metadata", None) or {}).get("snnchip") or {} for n, node in graph.nodes.items()}
    lam_syn = {n: float(m.get("lam_syn", 0.5) or 0.5) for n, m in meta.items()}
    hidden = readout = 0.0
    for b in range(0, xs.shape[1], 256):
        res = ex.run(torch.as_tensor(xs[:, b:b + 256], dtype=torch.float64))
        readout = max(readout, float(res.output.abs().max()))
        for key, value in res.states.items():
            node = key.split("/")[0]
            if key.endswith("/i"):
                hidden = max(hidden, float(value.abs().max()) / lam_syn.get(node, 0.5))
            elif isinstance(graph.nodes.get(node), (nir.LIF, nir.IF, nir.CubaLIF)):
                theta = float(np.max(graph.nodes[node].v_threshold))
                spikes = res.spikes.get(meta[node].get("layer", node), res.spikes.get(node, 0.0))
                hidden = max(hidden, float((value.abs() + theta * spikes).max()))
    return {"hidden": hidden, "readout": readout}


def chip_input(x: np.ndarray, mapping: XyloMapping) -> np.ndarray:
    """The Xylo run's input [B, T + 1, n_in] from spike counts ``x`` [T, B, *input_shape] (the float executor's
    layout): integers 0..255 (xylosim's uint8; the chip clips each to 15 per step), one empty step appended."""
    x = np.asarray(x)
    counts = np.round(x).astype(np.int64)
    bad = x.size and (counts.min() < 0 or counts.max() > 255)
    if x.ndim < 3 or x.shape[0] != mapping.T or not np.array_equal(counts, x) or bad:
        raise DeployError(f"Xylo takes spike counts: integers 0-255 per channel and step, [T={mapping.T}, batch, "
                          f"channels]; got shape {x.shape} with values in [{x.min() if x.size else 0}, "
                          f"{x.max() if x.size else 0}]")
    flat = counts.reshape(mapping.T, counts.shape[1], -1).transpose(1, 0, 2)
    return np.concatenate([flat, np.zeros_like(flat[:, :1])], axis=1)


def readout_of(record: Any, mapping: XyloMapping) -> np.ndarray:
    """The readout [B, n_out] at the last step of a Xylo run, in integers (÷ ``readout_scale`` ≈ the float)."""
    return getattr(record, mapping.readout)[:, -1]


def _manifest(mapping: XyloMapping, graph: nir.NIRGraph) -> dict[str, Any]:
    cfg = mapping.config
    return {
        "format": FORMAT,
        "target": TARGET,
        "T": mapping.T,
        "steps": mapping.steps,
        "input": {"channels": cfg.n_in, "handling": "spike counts per channel and step (integers; the chip takes "
                  "at most 15 per step); one empty step appended for the readout's one-step delay"},
        "readout": {"state": mapping.readout, "scale": mapping.readout_scale, "step": "last",
                    "decision": "argmax of the readout at the last step"},
        "resources": {"inputs": cfg.n_in, "hidden": cfg.n_hidden, "outputs": cfg.n_out,
                      "synapses": int(np.count_nonzero(cfg.w_in) + np.count_nonzero(cfg.w_rec)
                                      + np.count_nonzero(cfg.w_out))},
        "mapping": mapping.report,
        "limits": limits_table(),
        "graph_nodes": sorted(type(n).__name__ for n in graph.nodes.values()),
    }


def export_xylo(graph_or_path: Any, out_dir: str | os.PathLike, interpretation: Interpretation | None = None,
                T: int | None = None, source: str | os.PathLike | None = None,
                bounds: dict[str, float] | None = None) -> Path:
    """Write the Xylo deploy directory of a NIR graph, a ``SpikingNet``, a ``.nir`` file or a ``model.pt`` (module
    docstring), atomically and sealed; return its path. ``bounds``: the states measured on data that size the
    scales (``state_bounds``; a model.pt's: ``snnchip.workflows.model_data.xylo_bounds``), else the worst case."""
    check_replaceable(out_dir)
    graph = read_model_graph(graph_or_path)
    origin = source or graph_or_path
    mapping = map_graph(graph, interpretation, T, bounds)
    manifest = _manifest(mapping, graph)
    if isinstance(origin, (str, os.PathLike)) and Path(origin).is_file():
        manifest["source"] = {"path": str(origin), "sha256": sha256_file(origin)}
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        (tmp / "model.nir").write_bytes(nir_bytes(graph))
        np.savez(tmp / "params.npz", **mapping.config.arrays())
        (tmp / "manifest.json").write_text(sealed_manifest_json(tmp, manifest), encoding="utf-8")
    return out


@dataclass
class XyloDeployment:
    """A Xylo deploy directory read back: its ``mapping`` (config, T, readout), ``manifest``, path and seal."""

    mapping: XyloMapping
    manifest: dict[str, Any]
    path: Path
    seal: SealCheck


def is_xylo_deploy(deploy_dir: str | os.PathLike) -> bool:
    """Whether ``deploy_dir``'s manifest names the Xylo target (what ``snn-run``/``snn-validate`` dispatch on)."""
    try:
        man = json.loads((Path(deploy_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(man, dict) and man.get("target") == TARGET


def load_xylo(deploy_dir: str | os.PathLike, allow_edited: bool = False) -> XyloDeployment:
    """Read a Xylo deploy directory; a missing or corrupt file, an edit since export (unless ``allow_edited``) or a
    register outside Xylo's limits raises ``DeployError`` naming the file and the field."""
    path, man = open_deploy_dir(deploy_dir, FILES, TARGET)
    where = path / "manifest.json"
    version = check_format(man, where, FORMAT["name"], (FORMAT["version"],))
    sealed = check_seal(path, man, FIRST_SEALED_VERSION + version - 1)  # sealed from its first version
    if not allow_edited:
        refuse_edited(path, sealed, TARGET)
    arrays = read_params(path / "params.npz", TARGET)
    try:
        cfg = XyloConfig.from_arrays(arrays)
        readout = man["readout"]
        mapping = XyloMapping(cfg, int(man["T"]), str(readout["state"]), float(readout["scale"]),
                              float(man["mapping"]["hidden"]["scale"]), man["mapping"])
    except KeyError as exc:
        raise DeployError(f"{path}: no {exc} in manifest.json or params.npz; re-export the directory") from None
    except (TypeError, ValueError) as exc:
        raise DeployError(f"{path}: invalid manifest or params ({type(exc).__name__}: {exc})") from None
    if mapping.readout not in ("isyn_out", "vmem_out") or mapping.T < 1:
        raise DeployError(f"{where}: readout state {mapping.readout!r} / T = {mapping.T} is invalid")
    cfg.check(str(path / "params.npz"))
    return XyloDeployment(mapping, man, path, sealed)
