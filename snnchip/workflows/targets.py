"""The chip targets as one table: what each target is, which module writes and reads its deploy directory, which
bit-exact simulator and which vendor simulator run it, its limits and what reaches it. ``snn-export --target``,
``snn-validate`` and the pipeline pick a target from here; a deploy directory names its target in its manifest
(``target``; a directory without one is Loihi's, the first target). Adding a target is one entry here and one
package per stage it touches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from snnchip.errors import DeployError


@dataclass(frozen=True)
class Target:
    name: str
    chip: str
    writer: str  # module:function that writes the deploy directory
    reader: str  # module:function that reads it back
    simulator: str  # our bit-exact simulator
    vendor_simulator: str  # the vendor's reference it is compared with
    limits: str  # the module holding the limits table
    reaches: str  # node kinds, sizes, precision
    readiness: str  # what stands between the certified directory and hardware


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("loihi", "Intel Loihi 2", "snnchip.export.loihi:export_loihi", "snnchip.export.loihi:load_deploy",
           "snnchip.hw_sim.chip:ChipSimulator", "Lava 0.10 Loihi2SimCfg(fixed_pt) (snnchip.deploy)",
           "snnchip.export.loihi_limits",
           "Affine/Linear, Conv1d/2d, pooling, Flatten, Delay, recurrence; LIF/IF, CubaLIF, SRM, EM-PF, I/LI/CubaLI "
           "readouts; any depth; 8-bit (or two 8-bit sets: wide) weight mantissas with exponents, 24-bit states",
           "Lava's Loihi2HwCfg needs Intel's lava-loihi (INRC members); Lava is frozen since 2026-05"),
    Target("xylo", "SynSense Xylo (Audio v2 class)", "snnchip.export.xylo:export_xylo",
           "snnchip.export.xylo:load_xylo", "snnchip.hw_sim.xylo:run", "xylosim 0.1.3 (xylosim.v2.XyloLayer)",
           "snnchip.xylo_limits",
           "Affine/Linear (dense) → one LIF/CubaLIF population (≤ 1000, recurrence one step later) → I/LI/CubaLI "
           "readout (≤ 8) fed by it; ≤ 16 input channels of spike counts; int8 weights with a 0-7 bit shift per "
           "matrix, decays as bit shifts (λ = 1 − 2^−dash), 16-bit saturating states",
           "the XyloConfig maps one-to-one onto samna's Xylo configuration (weights, shifts, dashes, thresholds, "
           "biases); writing it to a board needs SynSense's samna, not a dependency of snnchip"),
)}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise DeployError(f"unknown chip target {name!r}; targets: {', '.join(TARGETS)}")
    return TARGETS[name]


def target_of(deploy_dir: str | os.PathLike) -> Target:
    """The target a deploy directory names (``manifest.json``'s ``target``; none: loihi)."""
    try:
        man = json.loads((Path(deploy_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return TARGETS["loihi"]  # the reader of the default target says what is wrong with the directory
    name = man.get("target", "loihi") if isinstance(man, dict) else "loihi"
    return target(name if isinstance(name, str) else repr(name))


def table() -> list[dict[str, str]]:
    """The targets as rows (README's Targets table)."""
    return [{"target": t.name, "chip": t.chip, "reaches": t.reaches, "simulator": t.simulator,
             "vendor simulator": t.vendor_simulator} for t in TARGETS.values()]
