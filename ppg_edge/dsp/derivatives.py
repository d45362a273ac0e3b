"""PPG derivatives as causal backward differences (numpy only).

VPG (velocity, 1st derivative), APG (acceleration, 2nd) and JPG (jerk, 3rd) are
repeated backward differences scaled by the sampling rate, so their units are
signal units per second (per s^2, per s^3) and do not change with the rate::

    vpg[n] = (x[n] - x[n-1]) * fs

Each difference looks only at the present and past sample (causal, as the device
computes it in a stream) and delays by half a sample. The sample before the
first is taken equal to the first (``prepend``), so every derivative starts at 0
instead of a jump. Works along the last axis with any leading axes.
BP work with these derivatives: Hayirlioglu & Semiz 2025 and the PPG_to_BP notebook (docs/facts.md).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .rates import check_rate

CHANNELS = ("ppg", "vpg", "apg", "jpg")


def backward_diff(x, fs: float, prev=None) -> np.ndarray:
    """``(x[n] - x[n-1]) * fs`` along the last axis; ``prev`` is x[-1] (default: x[0])."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise DataError(f"derivative of an empty signal (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise DataError("derivative input has NaN or infinite values")
    fs = check_rate(fs, number=True)
    first = arr[..., :1] if prev is None else np.broadcast_to(np.asarray(prev, dtype=np.float64),
                                                              arr[..., :1].shape)
    return np.diff(arr, axis=-1, prepend=first) * fs


def vpg(x, fs: float) -> np.ndarray:
    """First derivative (velocity plethysmogram)."""
    return backward_diff(x, fs)


def apg(x, fs: float) -> np.ndarray:
    """Second derivative (acceleration plethysmogram)."""
    return backward_diff(backward_diff(x, fs), fs)


def jpg(x, fs: float) -> np.ndarray:
    """Third derivative (jerk plethysmogram)."""
    return backward_diff(apg(x, fs), fs)


def derivative_stack(x, fs: float) -> np.ndarray:
    """``(..., n, 4)``: channels PPG, VPG, APG, JPG (in ``CHANNELS`` order)."""
    d1 = backward_diff(x, fs)
    d2 = backward_diff(d1, fs)
    d3 = backward_diff(d2, fs)
    return np.stack([np.asarray(x, dtype=np.float64), d1, d2, d3], axis=-1)
