"""The default precision of a deployment per graph: wide or 8-bit weights, and the membrane's headroom."""

from __future__ import annotations

from typing import Any

import nir

from snnchip.export.nir_meta import graph_meta


def precision_of(graph: nir.NIRGraph, wide_weights: bool | None = None, headroom: str | None = None,
                 weight_exp: int | None = None, calibrated: bool = False) -> dict[str, Any]:
    """The synapse sets (2: wide weights) and membrane headroom of ``graph``'s deployment (``quantize``), and why.

    What is not given (None) follows the graph: a foreign graph's weights never saw the chip's grid and nothing
    calibrates them, so it gets precision (wide weights, the one-step headroom: the scale does not shrink with T;
    with calibration inputs the data headroom, scaled for the states they reach); a snnchip model gets resources
    and guarantees (8-bit weights, which ``--calibrate`` serves, and the T-step headroom, which never saturates);
    fixed exponents (netx) hold one weight matrix per layer."""
    foreign = not graph_meta(graph).own and weight_exp is None
    why = "fixed exponents (netx)" if weight_exp is not None else \
        "a foreign graph: precision first" if foreign else "a snnchip model: resources and guarantees first"
    if calibrated and headroom is None:
        why += "; the data headroom for the calibration inputs given"
    wide = foreign if wide_weights is None else wide_weights
    room = ("data" if calibrated else "step" if foreign else "T") if headroom is None else headroom
    asked = [name for name, given in (("weights", wide_weights), ("headroom", headroom)) if given is not None]
    return {"synapse_sets": 2 if wide else 1, "headroom": room,
            "why": f"{' and '.join(asked)} as asked" if len(asked) == 2 else
            f"{why}{'; ' + asked[0] + ' as asked' if asked else ''}"}
