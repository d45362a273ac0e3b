"""Where a result was measured: one description of the machine, written beside every figure.

Standard library and numpy only (the device's benchmark uses it too); package versions come
from their installed metadata, so nothing heavy (TensorFlow) is imported to name it.
"""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose installed versions are recorded when present.
PACKAGES = ("numpy", "ai-edge-litert", "tensorflow")


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(**extra: Any) -> dict:
    """Platform, CPU, core count, Python, ppg-edge and the installed versions of
    :data:`PACKAGES` (keys with ``_`` for ``-``: ``ai_edge_litert``), plus ``extra``."""
    from ppg_edge import __version__

    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_model": cpu_model(), "cpus": os.cpu_count(),
                            "python": platform.python_version(), "ppg_edge": __version__}
    for name in PACKAGES:
        try:
            info[name.replace("-", "_")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    info.update(extra)
    return info
