"""Xylo's hardware limits (Xylo Audio v2 class, SynSense's ``syns61201``), each with where it comes from, and the
one check every Xylo configuration passes before it is written or run.

Sources: the C++ of SynSense's bit-exact simulator xylosim 0.1.3 (``src/v2/cpp/XyloLayer.h``, ``XyloIAFNeuron.h``,
``XyloIAFNeuron.cpp``, ``XyloLayer.cpp``) and the device code of rockpool 3.1.0 (``rockpool/devices/xylo/syns61201``:
``xylo_mapper.py``'s design rules, ``xa2_devkit_utils.py``'s register map and memory reads, ``xylo_samna.py``'s
``config_from_specification``, ``xylo_sim.py``'s construction of the xylosim layer). Neither package is imported
here; the numbers were read from their source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnchip.errors import DeployError


@dataclass(frozen=True)
class Limit:
    name: str
    value: int
    what: str
    source: str


LIMITS: dict[str, Limit] = {lim.name: lim for lim in (
    Limit("inputs", 16, "input channels", "rockpool xylo_mapper.le_16_input_channels; xa2_devkit_utils Nin=16"),
    Limit("hidden", 1000, "hidden neurons (one population, any recurrence)", "rockpool xa2_devkit_utils Nhidden=1000"),
    Limit("outputs", 8, "output (readout) neurons, fed by the hidden neurons only",
          "rockpool xylo_mapper.le_8_output_channels; xa2_devkit_utils Nout=8; xylo_sim weights_out (Nhidden, Nout)"),
    Limit("weight_bits", 8, "signed weight bits (int8)",
          "xylosim XyloLayer.h BITS_WEIGHT 8, XyloSynapse int8_t weight"),
    Limit("weight_shift_max", 7, "per-matrix left shift of the weights (input, recurrent, output), 3-bit fields",
          "rockpool xa2_devkit_utils CTRL1 bits 4-6, 8-10, 12-14"),
    Limit("state_bits", 16, "signed bits of every current and potential, saturating arithmetic",
          "xylosim XyloIAFNeuron.h BITS_STATE 16, safe_add"),
    Limit("dash_max", 15, "bit-shift decay dash (4 bits): x ← x − max(x >> dash, sign(x))",
          "xylosim XyloIAFNeuron.h ('should be 4 bits'), XyloIAFNeuron.cpp decay"),
    Limit("synapses_hidden", 2, "synaptic currents per hidden neuron (isyn, isyn2)",
          "rockpool xylo_samna weights_in (Nin, Nhidden, 2); xylosim rec_i_syn2"),
    Limit("synapses_out", 1, "synaptic currents per output neuron", "rockpool xylo_sim dash_syn_out [i_syn_decay]"),
    Limit("spikes_in", 15, "input spikes per channel and step (more are clipped)", "xylosim MAX_NUM_INP_SPIKES 15"),
    Limit("spikes_hidden", 31, "spikes a hidden neuron emits per step", "xylosim MAX_NUM_SPIKES 31"),
    Limit("spikes_out", 1, "spikes an output neuron emits per step", "xylosim MAX_NUM_OUT_SPIKES 1"),
    Limit("threshold_min", 1, "smallest threshold the mapping writes (θ ≤ 0 would fire every step)",
          "ours; xylosim int16_t v_th"),
)}
STATE_MIN, STATE_MAX = -(2 ** 15), 2 ** 15 - 1
WEIGHT_MIN, WEIGHT_MAX = -(2 ** 7), 2 ** 7 - 1


def limits_table() -> list[dict[str, object]]:
    """The table as rows (README, ``snn-export --target xylo --limits``)."""
    return [{"limit": lim.name, "value": lim.value, "what": lim.what, "source": lim.source} for lim in LIMITS.values()]


def _range(where: str, name: str, a: np.ndarray, lo: int, hi: int) -> None:
    a = np.asarray(a)
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < lo or a.max() > hi):
        bad = a.min() if a.size and a.min() < lo else a.max()
        raise DeployError(f"{where}: {name} = {bad} is outside Xylo's range [{lo}, {hi}]")


def check_sizes(where: str, n_in: int, n_hidden: int, n_out: int) -> None:
    """One line naming the first population that does not fit."""
    for name, what, n in (("inputs", "input channels", n_in), ("hidden", "hidden neurons", n_hidden),
                          ("outputs", "output neurons", n_out)):
        lim = LIMITS[name]
        if n > lim.value:
            raise DeployError(f"{where}: {n} {what} do not fit Xylo (at most {lim.value}; {lim.source})")
        if n < 1:
            raise DeployError(f"{where}: {n} {what}: Xylo needs at least one")


def check_config(where: str, cfg: object) -> None:
    """Every array of a ``XyloConfig`` inside the registers it is written to (``DeployError``, one line)."""
    check_sizes(where, cfg.n_in, cfg.n_hidden, cfg.n_out)
    shift = LIMITS["weight_shift_max"].value
    dash = LIMITS["dash_max"].value
    for name in ("w_in", "w_rec", "w_out"):
        _range(where, name, getattr(cfg, name), WEIGHT_MIN, WEIGHT_MAX)
    for name in ("shift_in", "shift_rec", "shift_out"):
        _range(where, name, np.asarray(getattr(cfg, name)), 0, shift)
    for name in ("dash_mem", "dash_syn", "dash_mem_out", "dash_syn_out"):
        _range(where, name, getattr(cfg, name), 0, dash)
    for name in ("threshold", "threshold_out"):
        _range(where, name, getattr(cfg, name), LIMITS["threshold_min"].value, STATE_MAX)
    for name in ("bias", "bias_out"):
        _range(where, name, getattr(cfg, name), STATE_MIN, STATE_MAX)
