"""snnchip.export: model ↔ NIR, the NIR reference executor, Loihi fixed-point lowering and quantization, ONNX, netx.

The folder ``export/`` at the repository's top is the package ``snnchip.export`` (pyproject's ``package-dir``).

Modules: ``nir_export`` (spec → NIR, ``export_to_nir``), ``nir_read`` / ``nir_graph`` / ``nir_meta`` (reading and
checking NIR), ``nir_exec`` (the reference executor), ``lowering`` → ``quantize`` → ``loihi`` (the deploy
directory), ``onnx_export``, ``netx``.
"""

from .loihi import Deployment, deployment_from_graph, export_loihi, load_deploy
from .nir_exec import ExecResult, NIRExecutor
from .nir_export import export_to_nir, model_graph, spec_to_nir, write_nir
from .nir_graph import CheckedGraph, check_graph
from .nir_read import read_graph

__all__ = ["CheckedGraph", "Deployment", "ExecResult", "NIRExecutor", "check_graph", "deployment_from_graph",
           "export_loihi", "export_to_nir", "load_deploy", "model_graph", "read_graph", "spec_to_nir", "write_nir"]
