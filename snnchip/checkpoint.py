"""The ``model.pt`` checkpoint format (docs/architecture.md, "Stage contracts").

A dict saved with ``torch.save``::

    {"format": {"name": "snnchip.checkpoint", "version": 1},
     "spec": NetworkSpec.to_dict(),          # plain JSON-able data
     "state_dict": {name: Tensor},
     "metrics": {...},                       # JSON-able
     "extra": {...}}                         # optimizer/scheduler/RNG state for exact resume

It is loaded only with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled, so
a pickle carrying code is refused before its payload can run. ``torch.save`` writes a zip archive whose
members carry CRC-32 checksums, which torch itself never checks: every member is verified before loading,
so a flipped byte is refused by name instead of loading changed weights. Writes are atomic.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snnchip.atomic import write_bytes_atomic
from snnchip.errors import CheckpointError, SpecError
from snnchip.spec import NetworkSpec

FORMAT_NAME = "snnchip.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "spec", "state_dict", "metrics")


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    spec: NetworkSpec
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def save_checkpoint(
    path: str | os.PathLike,
    spec: NetworkSpec,
    state_dict: dict[str, torch.Tensor],
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; an interrupted save leaves the previous file intact."""
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"state_dict entries must be tensors; not tensors: {bad[:5]}")
    payload = {
        "format": {"name": FORMAT_NAME, "version": FORMAT_VERSION},
        "spec": spec.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
    }
    buf = io.BytesIO()  # serialized first: torch's own writer reports a full disk as "unexpected pos"
    torch.save(payload, buf)
    dest = Path(path)
    write_bytes_atomic(dest, buf.getbuffer())
    return dest


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; anything that is not ours raises ``CheckpointError``."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file (expected a model.pt written by snn-train)")
    if not p.is_file():
        raise CheckpointError(f"{p}: not a file")
    _verify_crc(p)
    try:
        with warnings.catch_warnings():  # a raw pickle makes torch warn about its protocol before we refuse it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: refused to load: the file holds Python objects other than tensors and plain data "
            f"(a pickle that is not an snnchip checkpoint, possibly carrying code). Nothing in it was run. "
            f"[{first[:200]}]"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{p}: corrupt or truncated checkpoint ({type(exc).__name__}: {str(exc)[:200]}); "
            f"re-save it or use the last good copy"
        ) from None
    return _validate(data, p)


def _verify_crc(p: Path) -> None:
    """Check the CRC-32 of every member of a zip checkpoint (a file that is not a zip goes on to ``torch.load``)."""
    if not zipfile.is_zipfile(p):
        return
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CheckpointError(f"{p}: corrupt checkpoint archive ({type(exc).__name__}: {str(exc)[:200]}); re-save it "
                              "or use the last good copy") from None
    if bad is not None:
        raise CheckpointError(f"{p}: corrupt checkpoint: member {bad!r} fails its CRC-32 check (the file changed "
                              "after it was written); re-save it or use the last good copy")


def _validate(data: Any, p: Path) -> Checkpoint:
    if not isinstance(data, dict) or "format" not in data:
        raise CheckpointError(f"{p}: not an snnchip checkpoint (no 'format' entry)")
    fmt = data["format"]
    if not isinstance(fmt, dict) or fmt.get("name") != FORMAT_NAME:
        raise CheckpointError(f"{p}: not an snnchip checkpoint (format {fmt!r})")
    if fmt.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {fmt.get('version')!r} is not supported by this snnchip "
            f"(supports version {FORMAT_VERSION}); upgrade snnchip or re-export the model"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{p}: checkpoint is missing {missing}")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: 'state_dict' must map names to tensors")
    try:
        spec = NetworkSpec.from_dict(data["spec"])
    except SpecError as exc:
        raise CheckpointError(f"{p}: invalid network spec: {exc}") from None
    return Checkpoint(spec=spec, state_dict=state, metrics=data["metrics"], extra=data.get("extra", {}), path=p)
