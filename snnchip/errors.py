"""The errors users see. Every message names the file, the layer or the value at fault, and the fix.

The CLI turns any ``SnnchipError`` into one line on stderr and exit code 2 (no traceback soup);
library users catch the specific subclass.
"""

from __future__ import annotations


class SnnchipError(Exception):
    """Base class of every error snnchip raises on purpose."""


class SpecError(SnnchipError, ValueError):
    """A network specification (layers, neuron parameters, T, ...) is invalid."""


class CheckpointError(SnnchipError):
    """A ``model.pt`` is missing, corrupt, not ours, of an unknown version, or carries code."""


class DataError(SnnchipError):
    """A dataset file is missing or not in the expected format."""


class TrainingError(SnnchipError):
    """Training cannot go on (for example the loss became NaN)."""


class NIRFormatError(SnnchipError):
    """A NIR file or graph is unreadable, truncated, or internally inconsistent."""


class UnsupportedNodeError(SnnchipError):
    """A NIR node (or its semantics) cannot be executed or deployed by the stage that met it."""


class QuantizationError(SnnchipError):
    """Float parameters cannot be mapped to Loihi 2 fixed point without unacceptable loss."""


class DeployError(SnnchipError):
    """A deploy directory is missing, corrupt, or cannot be built into a Lava process graph."""


class LavaUnavailableError(SnnchipError):
    """lava-nc is not installed or cannot be imported on this Python."""


class OutputError(SnnchipError):
    """An output cannot be written: no space, its destination is of the wrong kind, or another run holds it."""


class BenchmarkError(SnnchipError, ValueError):
    """A benchmark option is out of range or names an unknown net, method or output path."""


class ResourceError(SnnchipError):
    """A deployment is too large for this machine (or the chip) to build; the message gives its size and the options."""
