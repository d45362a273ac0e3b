"""Per-sample peak targets from peak indices.

Georgieva-Tsaneva (2025), "Training Procedure": each window is annotated by marking the
samples within +-25 ms of the reference P-peak as positive.
"""
from __future__ import annotations

import numpy as np

from ppg_edge.dsp.rates import check_rate
from ppg_edge.errors import DataError

DEFAULT_HALF_WIDTH_S = 0.025


def half_width_samples(fs: float, half_width_s: float = DEFAULT_HALF_WIDTH_S) -> int:
    """Samples on each side of a peak that count as positive (floor of half_width_s * fs)."""
    fs = check_rate(fs, error=DataError, number=True)
    if half_width_s < 0:
        raise DataError(f"half width must be >= 0 s, got {half_width_s}")
    return int(np.floor(half_width_s * fs + 1e-9))


def _as_indices(peaks, n_samples: int, *, clip: bool) -> np.ndarray:
    arr = np.asarray(peaks)
    if arr.ndim != 1:
        raise DataError(f"peak indices must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError("peak indices must be whole, finite numbers")
        arr = arr.astype(np.int64)
    arr = arr.astype(np.int64)
    if not clip and (arr.min() < 0 or arr.max() >= n_samples):
        raise DataError(
            f"peak indices must lie in [0, {n_samples}); got {arr.min()}..{arr.max()}"
        )
    return arr


def peak_labels(
    peaks,
    n_samples: int,
    fs: float,
    half_width_s: float = DEFAULT_HALF_WIDTH_S,
) -> np.ndarray:
    """float32 array of length ``n_samples``: 1 within +-half_width_s of each peak, else 0.

    Peaks must lie inside ``[0, n_samples)``; a bad index raises ``DataError`` rather
    than being dropped.
    """
    if n_samples <= 0:
        raise DataError(f"n_samples must be positive, got {n_samples}")
    idx = _as_indices(peaks, n_samples, clip=False)
    half = half_width_samples(fs, half_width_s)
    out = np.zeros(n_samples, dtype=np.float32)
    for p in idx:
        out[max(0, p - half) : min(n_samples, p + half + 1)] = 1.0
    return out


def window_labels(
    peaks,
    starts,
    window: int,
    fs: float,
    half_width_s: float = DEFAULT_HALF_WIDTH_S,
) -> np.ndarray:
    """Labels ``(n_windows, window)`` for windows starting at ``starts`` of one record.

    ``peaks`` are indices into the whole record. A peak just outside a window still
    marks the window samples within its +-half width, so a label never depends on where
    the window was cut.
    """
    starts_arr = np.asarray(starts, dtype=np.int64)
    if starts_arr.ndim != 1:
        raise DataError(f"window starts must be 1-D, got shape {starts_arr.shape}")
    if window <= 0:
        raise DataError(f"window must be positive, got {window}")
    idx = np.sort(_as_indices(peaks, 1, clip=True))
    if idx.size and idx.min() < 0:
        raise DataError(f"peak indices must be >= 0, got {idx.min()}")
    half = half_width_samples(fs, half_width_s)
    out = np.zeros((starts_arr.size, window), dtype=np.float32)
    for row, start in enumerate(starts_arr):
        lo = np.searchsorted(idx, start - half)
        hi = np.searchsorted(idx, start + window + half)
        for p in idx[lo:hi] - start:
            out[row, max(0, p - half) : min(window, p + half + 1)] = 1.0
    return out
