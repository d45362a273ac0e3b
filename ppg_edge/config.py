"""Settings shared by every command: where the data lives, where caches go.

The data root is resolved in this order: an explicit argument (the CLI's
``--data-root``), the ``PPG_EDGE_DATA`` environment variable, then
``../shared/data`` next to the repository checkout (the layout CI uses), then the
download cache ``~/.cache/ppg-edge/data`` that ``ppg-edge data fetch`` fills.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DataNotFoundError

ENV_DATA_ROOT = "PPG_EDGE_DATA"
ENV_CACHE = "PPG_EDGE_CACHE"

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Folder for downloads and derived artefacts (``PPG_EDGE_CACHE`` or ``~/.cache/ppg-edge``)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ppg-edge"


def candidate_data_roots(explicit: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Every place a data root may be, each with the setting that named it, in priority order."""
    out: list[tuple[str, Path]] = []
    if explicit is not None:
        out.append(("--data-root", Path(explicit).expanduser()))
    env = os.environ.get(ENV_DATA_ROOT)
    if env:
        out.append((ENV_DATA_ROOT, Path(env).expanduser()))
    out.append(("repository layout", REPO_ROOT.parent / "shared" / "data"))
    out.append(("download cache", cache_dir() / "data"))
    return out


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root to read from; raises ``DataNotFoundError`` naming every place tried.

    An explicit argument or the environment variable is final: if it names a
    missing folder that is an error, not a reason to fall back silently.
    """
    tried = []
    for origin, path in candidate_data_roots(explicit):
        if path.is_dir():
            return path
        tried.append(f"{origin}: {path}")
        if origin in ("--data-root", ENV_DATA_ROOT):
            raise DataNotFoundError(f"data root {path} (from {origin}) does not exist")
    raise DataNotFoundError(
        "no data root found; set PPG_EDGE_DATA or pass --data-root, or run "
        "`ppg-edge data fetch NAME`. Tried: " + "; ".join(tried)
    )
