"""Pulse segmentation and a rule-based systolic peak finder (numpy only).

Pulse segmentation (:func:`find_pulse_feet`, :func:`segment_pulses`): pulses run
foot to foot; a foot is the lowest sample before the steepest upstroke, searched
at no more than ``SEGMENT_FS`` Hz. The blood-pressure features
(:mod:`ppg_edge.features.bp`) and the BP training sets are built on these pulses,
so their numbers depend on every detail here.

Systolic peaks (:func:`find_systolic_peaks`): a simple detector for clean or
band-passed signals (the runtime's signal-quality check), not the project's
learned detector. Its rules follow the DWT baseline of the peak paper (Georgieva-Tsaneva
2025): peaks at least 0.3 s apart (200 bpm at most) and at least half as high
as the typical peak.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from .rates import check_rate
from .stats import LagProducts, lag_products, median

#: Pulses shorter/longer than this (seconds) are rejected as mis-segmented
#: (240 and 24 beats per minute).
MIN_PULSE_S = 0.25
MAX_PULSE_S = 2.5
#: Fewest samples a pulse (or a segment to search for feet) needs.
MIN_PULSE_SAMPLES = 8
SEGMENT_FS = 100.0  # pulse feet are searched at no more than this rate (see find_pulse_feet)


def _as_1d(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{what} must be a 1-D array, got shape {arr.shape}")
    return arr


def _local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of strict interior local maxima (plateaus: their first sample)."""
    if x.size < 3:
        return np.zeros(0, dtype=np.int64)
    d = np.diff(x)
    # carry the last non-zero slope over flat runs so plateaus count once
    nz = np.flatnonzero(d)
    if nz.size == 0:
        return np.zeros(0, dtype=np.int64)
    sign = np.sign(d)
    idx = np.maximum.accumulate(np.where(sign != 0, np.arange(d.size), -1))
    filled = np.where(idx >= 0, sign[np.maximum(idx, 0)], 0)
    peaks = np.flatnonzero((filled[:-1] > 0) & (sign[1:] < 0)) + 1
    # for a plateau, step back to its first sample
    out = []
    for p in peaks:
        q = p
        while q > 0 and x[q - 1] == x[p]:
            q -= 1
        out.append(q)
    return np.asarray(out, dtype=np.int64)


def find_pulse_feet(segment, fs: float) -> np.ndarray:
    """Pulse feet (sample indices, increasing) of a PPG segment.

    Systolic upstrokes are local maxima of the first derivative above half its 98th
    percentile and at least ``MIN_PULSE_S`` apart (the larger wins); each foot is the
    lowest sample in the 0.4 s before its upstroke (not before the previous upstroke).
    Above ``SEGMENT_FS`` the upstrokes are found on a block-mean copy at
    ``fs / q`` (``q = fs // SEGMENT_FS``) and each foot is refined to the lowest
    full-rate sample within ``q`` samples: the sample-to-sample derivative of a
    1000 Hz record is dominated by ADC steps and noise (PPG-BP: 5.4 feet per 2.1 s
    against 2.8 at 100 Hz, i.e. about twice the true pulse count; with the
    decimation 2.8 at both rates).
    Returns an empty array when the segment is too short or flat.
    """
    fs = check_rate(fs)
    x = _as_1d(segment, "segment")
    if x.size < MIN_PULSE_SAMPLES or not np.isfinite(x).all():
        return np.zeros(0, dtype=np.int64)
    q = int(fs // SEGMENT_FS)
    if q >= 2:
        m = x.size // q
        coarse = find_pulse_feet(x[:m * q].reshape(m, q).mean(axis=1), fs / q)
        lo = np.maximum(coarse * q - q, 0)
        hi = np.minimum(coarse * q + 2 * q, x.size)
        return np.unique([a + int(np.argmin(x[a:b])) for a, b in zip(lo, hi)]).astype(np.int64)
    v = np.gradient(x)
    hi = np.percentile(v, 98)
    if not hi > 0:
        return np.zeros(0, dtype=np.int64)
    cand = _local_maxima(v)
    cand = cand[v[cand] >= 0.5 * hi]
    # enforce a refractory period, keeping the steeper upstroke
    min_gap = MIN_PULSE_S * fs
    kept: list[int] = []
    for c in cand[np.argsort(-v[cand], kind="stable")]:
        if all(abs(c - k) >= min_gap for k in kept):
            kept.append(int(c))
    ups = np.sort(np.asarray(kept, dtype=np.int64))
    feet = []
    look = int(round(0.4 * fs))
    prev = 0
    for u in ups:
        lo = max(prev, u - look)
        f = lo + int(np.argmin(x[lo:u + 1]))
        prev = u
        if f == lo and lo == 0 and u - look < 0:
            continue  # the lowest point is the segment's first sample: foot not seen
        feet.append(f)
    return np.asarray(feet, dtype=np.int64)


def segment_pulses(x: np.ndarray, fs: float) -> tuple[list[tuple[int, int]], list[str]]:
    """Pulses of a PPG segment as ``(foot, next foot)`` sample pairs, with the issues found.

    Consecutive feet of :func:`find_pulse_feet` make a pulse when they lie
    ``MIN_PULSE_S``..``MAX_PULSE_S`` apart; other gaps are skipped and reported.
    """
    feet = find_pulse_feet(x, fs)
    pulses, issues = [], []
    for f0, f1 in zip(feet[:-1], feet[1:]):
        dur = (f1 - f0) / fs
        if MIN_PULSE_S <= dur <= MAX_PULSE_S:
            pulses.append((int(f0), int(f1)))
        else:
            issues.append(f"pulse at {f0 / fs:.2f} s lasts {dur:.2f} s: skipped")
    return pulses, issues


def _signal(x, fs) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"pulse segmentation takes a 1-D signal, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("pulse segmentation input has NaN or infinite values")
    check_rate(fs)
    return arr


#: The lags of a pulse period (s): 220 to 30 beats per minute.
PULSE_LAGS_S = (0.27, 2.0)


def pulse_lag_range(n: int, fs: float, lo_s: float = PULSE_LAGS_S[0], hi_s: float = PULSE_LAGS_S[1]) -> tuple[int, int]:
    """The lags (samples) ``lo..hi`` of :func:`dominant_period_s` in ``n`` samples at ``fs``."""
    return max(1, int(lo_s * fs)), min(n - 1, math.ceil(hi_s * fs))


def dominant_period_s(x, fs: float, lo_s: float = PULSE_LAGS_S[0], hi_s: float = PULSE_LAGS_S[1],
                      products: LagProducts | None = None) -> float | None:
    """Pulse period (s) from the autocorrelation: the shortest lag in ``[lo_s, hi_s]``
    whose autocorrelation peak reaches 80% of the highest one there; ``None`` if none.

    ``products``: :func:`~.stats.lag_products` of ``x`` already made (the runtime's window
    keeps one for its quality check and this), used when it covers the lags."""
    arr = np.asarray(x, dtype=np.float64)
    n = arr.size
    lo, hi = pulse_lag_range(n, fs, lo_s, hi_s)
    if hi <= lo + 1:
        return None
    if products is None or not products.covers(lo, hi):
        products = lag_products(arr, lo, hi)
    seg = products.at(lo, hi)
    k = ((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])).nonzero()[0] + 1
    if k.size == 0 or not float(products.v @ products.v) > 0:
        return None
    best = seg[k].max()
    if best <= 0:
        return None
    return (lo + k[np.argmax(seg[k] >= 0.8 * best)]) / fs


def find_systolic_peaks(x, fs: float, min_distance_s: float | None = None, rel_height: float = 0.5,
                        products: LagProducts | None = None) -> np.ndarray:
    """Indices of systolic peaks of a 1-D PPG (sorted).

    Candidates are local maxima (``x[i] > x[i-1]`` and ``x[i] >= x[i+1]``) whose
    height above the signal median is at least ``rel_height`` times the median
    height of the candidates above the median; then, tallest first, any
    candidate closer than ``min_distance_s`` to a kept one is dropped.
    ``min_distance_s=None``: 0.6 of the autocorrelation pulse period (keeps a
    diastolic wave out at slow rates), never below 0.3 s; ``products``: see
    :func:`dominant_period_s`.
    """
    arr = _signal(x, fs)
    if min_distance_s is None:
        period = dominant_period_s(arr, fs, products=products) if arr.size >= 3 else None
        min_distance_s = max(0.3, 0.6 * period) if period else 0.3
    if arr.size < 3:
        return np.zeros(0, dtype=np.int64)
    i = ((arr[1:-1] > arr[:-2]) & (arr[1:-1] >= arr[2:])).nonzero()[0] + 1
    # the candidates are a handful per window: plain Python on lists from here, not a dozen
    # numpy calls on arrays of a few values
    med = median(arr)
    cand = [(k, v - med) for k, v in zip(i.tolist(), arr[i].tolist()) if v - med > 0]
    if not cand:
        return np.zeros(0, dtype=np.int64)
    floor = rel_height * median([v for _, v in cand])
    cand = [c for c in cand if c[1] >= floor]
    dist = max(1, int(round(min_distance_s * fs)))
    # tallest first (ties: the earlier one), a candidate closer than dist to a kept one goes
    out: list[int] = []
    for p, _ in sorted(cand, key=lambda c: -c[1]):
        if all(abs(p - q) >= dist for q in out):
            out.append(p)
    return np.array(sorted(out), dtype=np.int64)
