"""The quantization report (one row per stage, one per projection) in words and as a table."""

from __future__ import annotations

from snnchip.export.chip_decays import HELD_TOLERANCE
from snnchip.export.loihi2 import NO_CURRENT


def warnings_of(r: dict) -> str:
    """A stage's report row in words: the membrane may saturate (its T-step bound exceeds 2^23 − 1; with the
    one-step headroom that is by choice), and/or the
    weights are coarse (one step of the weight grid, g·2^e/c with g the mantissa step of the sign mode, moves the
    membrane by at least θ = vth/c, so the rounding of a single synapse can decide a spike: vth ≤ g·2^e; the
    weights' relative error can still be small)."""
    room = {"step": "one-step headroom", "data": "data headroom"}.get(r.get("headroom"), "MAY saturate")
    out = [room] if r["may_saturate"] else []
    if r.get("coarse"):
        out.append(f"coarse: weight step {r['weight_step_theta']:.3g}θ (vth {r['vth']})")
    return ", ".join(out) or "none"


def _exponents(p: dict) -> str:
    """A projection's grid exponent, and its residual's after a comma with wide weights."""
    return str(p["grid_exp"]) + ("" if p.get("low_exp") is None else f",{p['low_exp']}")


def format_report(report: list[dict]) -> str:
    """The quantization report as a fixed-width table: a row per stage, a row per projection beneath it."""
    head = f"{'stage':<14}{'kind':<9}{'neurons':>8}{'synapses':>10}{'scale':>10}{'vth':>8}{'dv':>6}{'du':>6}" \
           f"{'latency':>8}  warnings"
    sub = f"{'  <- source':<23}{'synapse':>8}{'synapses':>10}{'exp':>7}{'delay':>6}{'+lava':>6}{'clipped':>9}" \
          f"{'max|dW|':>10}{'mean|dW|':>10}"
    lines = [head, sub, "-" * max(len(head), len(sub))]
    for r in report:
        lines.append(f"{r['stage']:<14}{r['kind']:<9}{r['neurons']:>8}{r['synapses']:>10}{r['scale']:>10.4g}"
                     f"{r['vth']:>8}{r['dv']:>6}{r.get('du', 0):>6}{r.get('latency', 0):>8}  {warnings_of(r)}")
        for p in r["projections"]:
            lines.append(f"{'  <- ' + p['source']:<23}{p['synapse']:>8}{p['synapses']:>10}{_exponents(p):>7}"
                         f"{p['delay']:>6}{p.get('lava_delay', 0):>6}{p['clipped_fraction']:>9.2%}"
                         f"{p['max_abs_weight_error']:>10.3g}{p['mean_abs_weight_error']:>10.3g}")
    return "\n".join(lines + decay_lines(report))


def decay_lines(report: list[dict]) -> list[str]:
    """The decays the chip holds other than the graph's (Lava's 12-bit dv and du: ``export.chip_decays``), stages
    with the same pair listed together; none when every decay is exact."""
    held: dict[str, list[str]] = {}
    for r in report:
        pairs = [("λ", r.get("lam"), r.get("lam_q"))]
        if r.get("du", NO_CURRENT) < NO_CURRENT:  # a stage with a current state
            pairs.append(("λ_syn", r.get("lam_syn"), r.get("lam_syn_q")))
        for name, exact, chip in pairs:
            if exact is not None and chip is not None and abs(exact - chip) > HELD_TOLERANCE:
                held.setdefault(f"{name} {exact:.6g} → {chip:.6g}", []).append(r["stage"])
    if not held:
        return []
    listed = "; ".join(f"{', '.join(stages)}: {pair}" for pair, stages in held.items())
    return [f"decays the chip holds off the graph's (12-bit registers; no precision setting changes them, the "
            f"difference compounds over deep layers, and λ = 1 − k/4096 is held exactly): {listed}"]
