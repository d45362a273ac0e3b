"""Per-window normalisation, batched over leading axes (numpy only).

Both functions work along the last axis (one window = one row) and accept any
number of leading axes, e.g. ``(n_windows, win)``. A flat window (spread below
``eps``) becomes all zeros rather than NaN or a blown-up noise floor.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def _finite(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise DataError(f"{what}: needs at least one sample along the last axis, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what}: input has NaN or infinite values")
    return arr


def zscore(x, eps: float = 1e-8) -> np.ndarray:
    """``(x - mean) / std`` per window (last axis); windows with ``std < eps`` -> zeros."""
    arr = _finite(x, "zscore")
    # the sums and divisions of ndarray.mean / ndarray.std, without their Python-level wrappers
    # (the device normalises one window per call) and without subtracting the mean twice
    n = arr.shape[-1]
    d = arr - arr.sum(axis=-1, keepdims=True) / n
    sd = np.sqrt((d * d).sum(axis=-1, keepdims=True) / n)
    flat = sd < eps
    return np.where(flat, 0.0, d / np.where(flat, 1.0, sd))


def minmax(x, eps: float = 1e-8) -> np.ndarray:
    """``(x - min) / (max - min)`` per window, in [0, 1]; windows with range ``< eps`` -> zeros."""
    arr = _finite(x, "minmax")
    lo = arr.min(axis=-1, keepdims=True)
    span = arr.max(axis=-1, keepdims=True) - lo
    flat = span < eps
    return np.where(flat, 0.0, (arr - lo) / np.where(flat, 1.0, span))


NORMALISERS = {"zscore": zscore, "minmax": minmax}


def normalise(x, method: str, eps: float = 1e-8) -> np.ndarray:
    """Dispatch by name: ``"zscore"``, ``"minmax"`` or ``"none"`` (float64 copy)."""
    if method == "none":
        return _finite(x, "normalise").copy()
    try:
        fn = NORMALISERS[method]
    except KeyError:
        from ..errors import ConfigError

        raise ConfigError(f"unknown normalisation {method!r}; valid: "
                          f"{sorted(NORMALISERS) + ['none']}") from None
    return fn(x, eps)
