"""snnchip.deploy: NIR graph (plus quantized parameters) -> Lava process graph (lava-nc and our own processes).

The folder ``deploy/`` at the repository's top is the package ``snnchip.deploy`` (pyproject's ``package-dir``).

``build(deploy_dir).run(x, cfg="fixed_pt"|"floating_pt")``; Lava is imported lazily, on build/run.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snnchip.deploy.network import LavaNetwork
    from snnchip.export.loihi import Deployment


__all__ = ["build"]


def build(deployment: Deployment | str | os.PathLike) -> LavaNetwork:
    """The Lava network of a deploy directory or an in-memory ``Deployment`` (see ``deploy.network``)."""
    from snnchip.deploy.network import build as _build

    return _build(deployment)
