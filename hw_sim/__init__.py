"""snnchip.hw_sim: the bit-exact fixed-point chip simulator, the comparison harness, resource and energy estimates.

The folder ``hw_sim/`` at the repository's top is the package ``snnchip.hw_sim`` (pyproject's ``package-dir``).
"""

from .chip import ChipSimulator
from .compare import compare_exact, spike_agreement
from .resources import estimate, layer_resources

__all__ = ["ChipSimulator", "compare_exact", "estimate", "layer_resources", "spike_agreement"]
