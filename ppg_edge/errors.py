"""One root exception for the project; every subclass also inherits a built-in.

Callers can catch ``PPGEdgeError`` for anything the toolchain raises on purpose,
or the built-in (``ValueError``, ``FileNotFoundError`` ...) they already handle.
"""
from __future__ import annotations


class PPGEdgeError(Exception):
    """Root of every error ppg-edge raises on purpose."""


class ConfigError(PPGEdgeError, ValueError):
    """A setting, option or configuration file is wrong."""


class DataError(PPGEdgeError, ValueError):
    """A data file exists but its content is wrong (format, NaN, length, rate)."""


class DataNotFoundError(PPGEdgeError, FileNotFoundError):
    """A data set, record or file is not where the data root says it should be."""


class DownloadError(PPGEdgeError, ConnectionError):
    """A data set could not be fetched from its public home."""


class SplitError(PPGEdgeError, ValueError):
    """A subject-wise split is inconsistent (a subject in two parts, unknown subject)."""


class ModelError(PPGEdgeError, ValueError):
    """A model file or its manifest is corrupt, tampered or does not fit the pipeline."""


class HardwareError(PPGEdgeError, OSError):
    """A sensor, bus or link misbehaves or is absent."""
