"""Pulse segmentation: systolic peaks, the troughs (onsets) between them, fixed-length pulses.

numpy only. The peak finder is a simple rule-based detector meant for clean or
band-passed signals (segmenting training pulses, sanity checks), not the
project's learned detector. Its rules follow the DWT baseline of the peak paper
(Ivanova et al., /work/shared/papers/003): peaks at least 0.3 s apart (200 bpm
at most) and at least half as high as the typical peak.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError


def _signal(x, fs) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"pulse segmentation takes a 1-D signal, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError("pulse segmentation input has NaN or infinite values")
    if not (np.isfinite(fs) and fs > 0):
        raise ConfigError(f"sampling rate must be positive, got {fs!r}")
    return arr


def dominant_period_s(x, fs: float, lo_s: float = 0.27, hi_s: float = 2.0) -> float | None:
    """Pulse period (s) from the autocorrelation: the shortest lag in ``[lo_s, hi_s]``
    whose autocorrelation peak reaches 80% of the highest one there; ``None`` if none."""
    arr = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = arr.size
    lo, hi = max(1, int(lo_s * fs)), min(n - 1, int(np.ceil(hi_s * fs)))
    if hi <= lo + 1:
        return None
    spec = np.fft.rfft(arr, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[: hi + 2]
    seg = ac[lo:hi + 1]
    k = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if k.size == 0 or ac[0] <= 0:
        return None
    best = seg[k].max()
    if best <= 0:
        return None
    return (lo + k[np.argmax(seg[k] >= 0.8 * best)]) / fs


def find_systolic_peaks(x, fs: float, min_distance_s: float | None = None, rel_height: float = 0.5) -> np.ndarray:
    """Indices of systolic peaks of a 1-D PPG (sorted).

    Candidates are local maxima (``x[i] > x[i-1]`` and ``x[i] >= x[i+1]``) whose
    height above the signal median is at least ``rel_height`` times the median
    height of the candidates above the median; then, tallest first, any
    candidate closer than ``min_distance_s`` to a kept one is dropped.
    ``min_distance_s=None``: 0.6 of the autocorrelation pulse period (keeps a
    diastolic wave out at slow rates), never below 0.3 s.
    """
    arr = _signal(x, fs)
    if min_distance_s is None:
        period = dominant_period_s(arr, fs) if arr.size >= 3 else None
        min_distance_s = max(0.3, 0.6 * period) if period else 0.3
    if arr.size < 3:
        return np.zeros(0, dtype=np.int64)
    i = np.flatnonzero((arr[1:-1] > arr[:-2]) & (arr[1:-1] >= arr[2:])) + 1
    base = np.median(arr)
    h = arr[i] - base
    pos = h > 0
    if not np.any(pos):
        return np.zeros(0, dtype=np.int64)
    i, h = i[pos], h[pos]
    keep = h >= rel_height * np.median(h)
    i, h = i[keep], h[keep]
    dist = max(1, int(round(min_distance_s * fs)))
    taken = np.zeros(arr.size, dtype=bool)
    out = []
    for k in np.argsort(-h, kind="stable"):
        p = i[k]
        if not taken[max(0, p - dist + 1):p + dist].any():
            out.append(p)
            taken[p] = True
    return np.sort(np.array(out, dtype=np.int64))


def troughs_between(x, peaks) -> np.ndarray:
    """Index of the minimum of ``x`` strictly between each pair of consecutive peaks (pulse onsets)."""
    arr = np.asarray(x, dtype=np.float64)
    p = np.asarray(peaks, dtype=np.int64)
    return np.array([a + 1 + int(np.argmin(arr[a + 1:b])) for a, b in zip(p[:-1], p[1:]) if b - a > 1],
                    dtype=np.int64)


def segment_pulses(x, fs: float, peaks=None, min_distance_s: float | None = None,
                   rel_height: float = 0.5) -> np.ndarray:
    """Pulses as ``(start, end)`` sample pairs, shape ``(n_pulses, 2)``, ``end`` exclusive.

    Each pulse runs from one onset (the trough before a systolic peak) to the
    next onset, so it holds exactly one systolic peak. ``peaks`` may be given
    (e.g. reference annotations); otherwise :func:`find_systolic_peaks` finds
    them. Fewer than three peaks -> no pulses (shape ``(0, 2)``).
    """
    arr = _signal(x, fs)
    if peaks is None:
        peaks = find_systolic_peaks(arr, fs, min_distance_s, rel_height)
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.size and (peaks.min() < 0 or peaks.max() >= arr.size or np.any(np.diff(peaks) <= 0)):
        raise DataError("peaks must be strictly increasing indices inside the signal")
    on = troughs_between(arr, peaks)
    if on.size < 2:
        return np.zeros((0, 2), dtype=np.int64)
    return np.stack([on[:-1], on[1:]], axis=1)


def pulse_to_length(x, start: int, end: int, n: int = 100) -> np.ndarray:
    """Resample ``x[start:end]`` to ``n`` samples by linear interpolation (ends kept)."""
    arr = np.asarray(x, dtype=np.float64)
    if not (0 <= start < end <= arr.size) or end - start < 2:
        raise DataError(f"pulse [{start}, {end}) is not a range of >= 2 samples inside 0..{arr.size}")
    if n < 2:
        raise ConfigError(f"pulse length must be >= 2, got {n}")
    seg = arr[start:end]
    return np.interp(np.linspace(0, seg.size - 1, n), np.arange(seg.size), seg)


def pulses_to_length(x, pulses, n: int = 100) -> np.ndarray:
    """Every ``(start, end)`` of ``pulses`` resampled to ``n`` samples: ``(n_pulses, n)``."""
    pulses = np.asarray(pulses, dtype=np.int64).reshape(-1, 2)
    return np.array([pulse_to_length(x, s, e, n) for s, e in pulses]).reshape(-1, n)
