"""ppg-edge: train, quantize, deploy and hardware-test PPG models on a Raspberry Pi."""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("ppg-edge")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
