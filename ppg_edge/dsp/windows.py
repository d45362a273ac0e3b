"""Fixed-length framing of a record and the mapping back to absolute samples (numpy only).

The default window is 2 s with 50% overlap (250 samples, hop 125 at 125 Hz), as
in the peak detection paper (Georgieva-Tsaneva 2025, docs/facts.md). Window
``w`` covers samples ``[w * hop, w * hop + win)``. Samples after the last full
window are not covered (no padding). A record shorter than one window gives
**zero windows** (an array of shape ``(0, win, ...)``); pass ``strict=True`` to
get a ``DataError`` instead.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError

DEFAULT_WINDOW_S = 2.0
DEFAULT_OVERLAP = 0.5


def default_window(fs: float) -> tuple[int, int]:
    """``(win, hop)`` in samples for 2 s windows with 50% overlap at ``fs``."""
    win = int(round(DEFAULT_WINDOW_S * fs))
    return win, max(1, int(round(win * (1 - DEFAULT_OVERLAP))))


def _check(win: int, hop: int) -> None:
    if int(win) != win or win < 1 or int(hop) != hop or hop < 1:
        raise ConfigError(f"window and hop must be positive integers, got win={win!r}, hop={hop!r}")


def n_windows(n: int, win: int, hop: int) -> int:
    """Number of full windows in ``n`` samples (0 when ``n < win``)."""
    _check(win, hop)
    return 0 if n < win else (n - win) // hop + 1


def window_starts(n: int, win: int, hop: int) -> np.ndarray:
    """Absolute start index of every full window of an ``n``-sample record."""
    return np.arange(n_windows(n, win, hop), dtype=np.int64) * hop


def frame(x, win: int = 250, hop: int = 125, strict: bool = False) -> np.ndarray:
    """Windows along axis 0: ``(n,)`` -> ``(n_windows, win)``; ``(n, c)`` -> ``(n_windows, win, c)``.

    Returns a read-only strided view (no copy). See the module docstring for
    short input.
    """
    _check(win, hop)
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise DataError("cannot frame a scalar")
    n = arr.shape[0]
    if n < win:
        if strict:
            raise DataError(f"record of {n} samples is shorter than one window of {win}")
        return np.empty((0, win) + arr.shape[1:], dtype=arr.dtype)
    view = np.lib.stride_tricks.sliding_window_view(arr, win, axis=0)[::hop]
    # sliding_window_view puts the window axis last; move it to position 1
    return np.moveaxis(view, -1, 1) if arr.ndim > 1 else view


def to_absolute(window_index, offset, hop: int) -> np.ndarray:
    """Absolute sample index of ``offset`` within window ``window_index``."""
    return np.asarray(window_index, dtype=np.int64) * hop + np.asarray(offset, dtype=np.int64)


def windows_containing(sample: int, n: int, win: int, hop: int) -> list[tuple[int, int]]:
    """Every ``(window_index, offset)`` whose window covers absolute ``sample``."""
    nw = n_windows(n, win, hop)
    first = max(0, -(-(sample - win + 1) // hop))
    return [(w, sample - w * hop) for w in range(first, nw) if w * hop <= sample < w * hop + win]
