"""One-line reprs of run results: what they hold and its shapes, never the arrays themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHOWN_LAYERS = 4


def _shape(a: Any) -> str:
    return "[" + ", ".join(str(int(d)) for d in getattr(a, "shape", ())) + "]"


def result_repr(kind: str, output: Any, spikes: Mapping[str, Any], **extra: Any) -> str:
    """``<kind output [T, B, C]; spikes: layer [T, B, ...] rate r, ...; key value ...>`` (at most ``SHOWN_LAYERS``
    layers named)."""
    parts = []
    for name, s in list(spikes.items())[:SHOWN_LAYERS]:
        try:
            rate = f" rate {float(s.float().mean() if hasattr(s, 'float') else s.mean()):.4f}"
        except (TypeError, ValueError, RuntimeError):
            rate = ""
        parts.append(f"{name} {_shape(s)}{rate}")
    more = len(spikes) - SHOWN_LAYERS
    if more > 0:
        parts.append(f"... ({more} more)")
    tail = "".join(f"; {k} {v}" for k, v in extra.items() if v not in (None, "", {}))
    return f"<{kind} output {_shape(output)}; spikes: {', '.join(parts) or 'none'}{tail}>"
