"""Peak-detection scores: one-to-one matching within a tolerance, P/R/F1/ADE, pooling.

NumPy only, so the same code scores detections on the device.

Matching rule (:func:`match_peaks`)
-----------------------------------
Every (reference, detection) pair closer than or equal to the tolerance is a
candidate. Candidates are taken in order of increasing absolute distance (ties
broken by the earlier reference, then the earlier detection); a pair is kept
when neither its reference nor its detection is already used. So each reference
peak is matched to at most one detection and vice versa, and the closest pairs
win. Kept pairs are true positives; unmatched detections are false positives;
unmatched reference peaks are false negatives.

This is the greedy nearest-first assignment; for peaks that are at least one
tolerance apart from each other (physiological pulses at <= 300 bpm are >=
200 ms apart, tolerances here are 25-50 ms) it equals the optimal assignment.

Scores (:func:`peak_scores`)
----------------------------
precision = TP / (TP + FP), recall (sensitivity) = TP / (TP + FN),
F1 = 2 TP / (2 TP + FP + FN), ADE = mean |detection - reference| over matched
pairs in milliseconds (the "average distance error" reported with MSPTD-style
benchmarks, e.g. Charlton et al., Physiol. Meas. 2022, "Detecting beats in the
photoplethysmogram: benchmarking open-source algorithms").

Edge cases, defined once here:

- no reference and no detection: P = R = F1 = 1.0 (nothing to find, nothing
  wrongly found), ADE = NaN (no pairs);
- no reference but detections: P = 0, R = 1.0 (vacuous), F1 = 0;
- reference but no detection: P = 1.0 (vacuous), R = 0, F1 = 0;
- any case without matched pairs: ADE = NaN.

F1 from the counts (2TP / (2TP+FP+FN)) follows these cases without special
handling except the all-empty one.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..dsp.rates import check_rate
from ..errors import DataError

__all__ = ["PeakMatch", "match_peaks", "peak_scores", "scores_from_match", "pool"]


@dataclass(frozen=True)
class PeakMatch:
    """Result of :func:`match_peaks`.

    ``pairs`` is an (n, 2) int array of (reference index, detection index)
    sample positions, sorted by reference; ``errors`` are the signed errors
    ``detection - reference`` of those pairs in samples; ``unmatched_ref`` and
    ``unmatched_det`` hold the sample positions left over.
    """

    fs: float
    tol_s: float
    pairs: np.ndarray
    errors: np.ndarray
    unmatched_ref: np.ndarray
    unmatched_det: np.ndarray

    @property
    def tp(self) -> int:
        return int(len(self.pairs))

    @property
    def fp(self) -> int:
        return int(len(self.unmatched_det))

    @property
    def fn(self) -> int:
        return int(len(self.unmatched_ref))

    @property
    def errors_s(self) -> np.ndarray:
        """Signed errors (detection - reference) in seconds."""
        return self.errors / self.fs


def _as_indices(x, what: str) -> np.ndarray:
    arr = np.asarray(x if x is not None else [], dtype=float).ravel()
    if arr.size and not np.all(np.isfinite(arr)):
        raise DataError(f"{what} peak indices contain NaN or infinity")
    if arr.size and np.any(arr < 0):
        raise DataError(f"{what} peak indices contain negative values")
    if arr.size and np.any(arr != np.round(arr)):
        raise DataError(f"{what} peak indices must be whole sample numbers")
    arr = arr.astype(np.int64)
    if arr.size and np.any(np.diff(arr) <= 0):
        if len(np.unique(arr)) != len(arr):
            raise DataError(f"{what} peak indices contain duplicates")
        arr = np.sort(arr)
    return arr


def match_peaks(ref, det, fs: float, tol_s: float = 0.050) -> PeakMatch:
    """Match detections to reference peaks one-to-one within ``tol_s`` seconds.

    ``ref`` and ``det`` are sample indices at rate ``fs`` (unsorted input is
    sorted; duplicates, negatives, NaN or fractional indices raise ``DataError``).
    See the module docstring for the nearest-first rule.
    """
    fs = check_rate(fs, error=DataError, number=True)
    if not (math.isfinite(tol_s) and tol_s >= 0):
        raise DataError(f"tolerance must be a non-negative number of seconds, got {tol_s!r}")
    r = _as_indices(ref, "reference")
    d = _as_indices(det, "detected")
    tol = tol_s * fs + 1e-9  # inclusive boundary, robust to float rounding of tol_s * fs
    empty = np.empty((0, 2), dtype=np.int64)
    if r.size == 0 or d.size == 0:
        return PeakMatch(float(fs), float(tol_s), empty, np.empty(0, np.int64), r, d)

    # Candidate pairs: for each reference, the detections within tol (sorted search keeps
    # this O((n + m) log m + candidates) instead of a dense n x m matrix).
    lo = np.searchsorted(d, r - tol, side="left")
    hi = np.searchsorted(d, r + tol, side="right")
    counts = hi - lo
    ri = np.repeat(np.arange(r.size), counts)
    if ri.size == 0:
        return PeakMatch(float(fs), float(tol_s), empty, np.empty(0, np.int64), r, d)
    starts = np.repeat(lo - np.cumsum(np.r_[0, counts[:-1]]), counts)
    di = np.arange(ri.size) + starts
    dist = np.abs(d[di] - r[ri])
    order = np.lexsort((di, ri, dist))  # by distance, then reference, then detection

    used_r = np.zeros(r.size, bool)
    used_d = np.zeros(d.size, bool)
    keep_r, keep_d = [], []
    for k in order:
        a, b = ri[k], di[k]
        if used_r[a] or used_d[b]:
            continue
        used_r[a] = used_d[b] = True
        keep_r.append(a)
        keep_d.append(b)
    keep_r = np.asarray(keep_r, dtype=np.int64)
    keep_d = np.asarray(keep_d, dtype=np.int64)
    srt = np.argsort(keep_r)
    pairs = np.column_stack([r[keep_r[srt]], d[keep_d[srt]]]).astype(np.int64)
    return PeakMatch(
        fs=float(fs),
        tol_s=float(tol_s),
        pairs=pairs,
        errors=pairs[:, 1] - pairs[:, 0],
        unmatched_ref=r[~used_r],
        unmatched_det=d[~used_d],
    )


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 = 2TP / (2TP + FP + FN); 1.0 when there is nothing to find and nothing found."""
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 1.0


def _ratios(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, f1_from_counts(tp, fp, fn)


def scores_from_match(m: PeakMatch) -> dict:
    """Scores of one :class:`PeakMatch` (see the module docstring for the definitions)."""
    precision, recall, f1 = _ratios(m.tp, m.fp, m.fn)
    signed_ms = m.errors / m.fs * 1000.0
    abs_ms = np.abs(signed_ms)
    return {
        "tp": m.tp,
        "fp": m.fp,
        "fn": m.fn,
        "n_ref": m.tp + m.fn,
        "n_det": m.tp + m.fp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ade_ms": float(abs_ms.mean()) if abs_ms.size else float("nan"),
        "abs_err_sum_ms": float(abs_ms.sum()),
        "bias_ms": float(signed_ms.mean()) if signed_ms.size else float("nan"),
        "err_sum_ms": float(signed_ms.sum()),
        "tol_ms": m.tol_s * 1000.0,
    }


def peak_scores(ref, det, fs: float, tol_s: float = 0.050) -> dict:
    """Match and score in one call: precision, recall, F1, ADE (ms), bias (ms) and counts.

    ``abs_err_sum_ms`` and ``err_sum_ms`` (signed) are kept so that
    :func:`pool` can pool ADE and bias exactly.
    """
    return scores_from_match(match_peaks(ref, det, fs, tol_s))


def pool(scores: Iterable[Mapping]) -> dict:
    """Pool per-record scores by summing counts (micro average).

    Returns the pooled precision/recall/F1 and ADE (total absolute error over
    total matched pairs), plus ``f1_mean_record`` (the mean of per-record F1,
    macro average) and ``n_records``. An empty list raises ``DataError``; mixing
    tolerances raises too.
    """
    rows = list(scores)
    if not rows:
        raise DataError("cannot pool an empty list of peak scores")
    tols = {round(float(s["tol_ms"]), 9) for s in rows}
    if len(tols) > 1:
        raise DataError(f"cannot pool peak scores made at different tolerances: {sorted(tols)} ms")
    tp = int(sum(s["tp"] for s in rows))
    fp = int(sum(s["fp"] for s in rows))
    fn = int(sum(s["fn"] for s in rows))
    precision, recall, f1 = _ratios(tp, fp, fn)
    err = float(sum(s["abs_err_sum_ms"] for s in rows))
    signed = float(sum(s["err_sum_ms"] for s in rows))
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_ref": tp + fn,
        "n_det": tp + fp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "ade_ms": err / tp if tp else float("nan"),
        "abs_err_sum_ms": err,
        "bias_ms": signed / tp if tp else float("nan"),
        "err_sum_ms": signed,
        "f1_mean_record": float(np.mean([s["f1"] for s in rows])),
        "n_records": len(rows),
        "tol_ms": tols.pop(),
    }
