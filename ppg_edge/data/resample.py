"""Resample a record to another rate, mapping its reference peaks exactly.

Every channel is resampled from its own rate to ``fs_target`` with
``scipy.signal.resample_poly`` (polyphase FIR, Kaiser window), using the
rational factor ``up/down = Fraction(fs_target / fs).limit_denominator(...)``.
After this every channel of the record runs at the same rate.

Reference peak indices (at the PPG rate) are mapped by time,
``round(i * up / down)``, with integer arithmetic (round half up), then clipped
to the new length and de-duplicated; the number removed is recorded in
``meta["resample"]["peaks_removed"]``. The low-pass of the polyphase filter
moves a sharp maximum by less than one output sample, so the mapped index lies
within one sample of the resampled signal's local maximum (checked in
``tests/test_resample.py``).

``rates`` holds exactly ``fs_target`` when ``fs * up / down`` equals it (to
1e-9 relative); when the factor had to be approximated the true rate
``fs * up / down`` is stored instead and a warning is logged, so the rate never
silently disagrees with the samples.
"""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from ..dsp.rates import rational_factor
from ..errors import DataError
from .record import Record

log = logging.getLogger(__name__)

MAX_DENOMINATOR = 1000


def map_indices(idx: np.ndarray, up: int, down: int, n_out: int) -> tuple[np.ndarray, int]:
    """Map sample indices by time: ``round(i * up / down)`` (half up), clipped to
    ``0..n_out-1`` and de-duplicated. Returns ``(mapped, number_removed)``."""
    idx = np.asarray(idx, dtype=np.int64)
    mapped = (2 * idx * up + down) // (2 * down)
    mapped = np.clip(mapped, 0, n_out - 1)
    unique = np.unique(mapped)
    return unique, int(idx.size - unique.size)


def resample_signal(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase resampling of one channel (``padtype="line"`` to avoid edge dips)."""
    from scipy import signal

    x = np.asarray(x, dtype=np.float64)
    if up == down:
        return x.copy()
    return signal.resample_poly(x, up, down, padtype="line")


def resample_record(record: Record, fs_target: float, max_denominator: int = MAX_DENOMINATOR) -> Record:
    """A new record with every channel at ``fs_target`` Hz and peaks mapped by time.

    Labels are kept as they are (scalars, and 1 Hz arrays that carry their own
    rate). Raises ``ConfigError`` for a non-positive or non-finite rate and
    ``DataError`` for non-finite samples.
    """
    rational_factor(1.0, fs_target, max_denominator)  # validates fs_target
    for name, x in record.signals.items():
        if not np.isfinite(x).all():
            raise DataError(
                f"{record.key}: channel {name!r} has {int((~np.isfinite(x)).sum())} non-finite "
                "sample(s); cannot resample"
            )
    signals, rates, factors = {}, {}, {}
    for name, x in record.signals.items():
        fs = record.rates[name]
        up, down = rational_factor(fs, fs_target, max_denominator)
        signals[name] = resample_signal(x, up, down)
        actual = fs * up / down
        if abs(actual - fs_target) <= 1e-9 * fs_target:
            rates[name] = float(fs_target)
        else:
            log.warning("%s: %s resampled to %.9g Hz, not %.9g Hz (factor %d/%d)",
                        record.key, name, actual, fs_target, up, down)
            rates[name] = actual
        factors[name] = (up, down)
    peaks, removed = None, 0
    if record.peaks is not None:
        up, down = factors["ppg"]
        peaks, removed = map_indices(record.peaks, up, down, len(signals["ppg"]))
        if removed:
            log.info("%s: %d reference peak(s) merged or clipped by resampling", record.key, removed)
    meta = dict(record.meta)
    meta["resample"] = {
        "from_hz": {k: float(v) for k, v in record.rates.items()},
        "to_hz": float(fs_target),
        "factors": {k: list(v) for k, v in factors.items()},
        "method": "scipy.signal.resample_poly",
        "peaks_removed": removed,
    }
    return replace(record, signals=signals, rates=rates, peaks=peaks, meta=meta,
                   labels=dict(record.labels))
