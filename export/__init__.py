"""snnchip.export: model ↔ NIR, the NIR reference executor, Loihi fixed-point lowering and quantization, ONNX, netx.

The folder ``export/`` at the repository's top is the package ``snnchip.export`` (pyproject's ``package-dir``).

Modules: ``nir_export`` (spec → NIR, ``export_to_nir``), ``nir_read`` / ``nir_graph`` / ``nir_meta`` (reading and
checking NIR), ``nir_exec`` (the reference executor), ``lowering`` → ``quantize`` → ``loihi`` (the deploy
directory), ``onnx_export``, ``netx``.

The names below are imported on first use: the Lava process models import ``kernel`` and ``loihi2`` from this
package in Lava's workers, which must not import torch (``lowering`` does).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"Deployment": "loihi", "deployment_from_graph": "loihi", "export_loihi": "loihi", "load_deploy": "loihi",
          "ExecResult": "nir_exec", "NIRExecutor": "nir_exec", "export_to_nir": "nir_export",
          "model_graph": "nir_export", "spec_to_nir": "nir_export", "write_nir": "nir_export",
          "CheckedGraph": "nir_graph", "check_graph": "nir_graph", "read_graph": "nir_read"}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'snnchip.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    globals()[name] = value
    return value
