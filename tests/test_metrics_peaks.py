"""Peak matching and scores: hand-made cases with known answers, and properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppg_edge.errors import DataError, PPGEdgeError
from ppg_edge.metrics.peaks import match_peaks, peak_scores, pool


def test_exact_and_shifted_matches_counted():
    fs = 100.0
    ref = [100, 200, 300, 400]
    det = [102, 197, 360, 500]  # 2 hits (+20 ms, -30 ms), 300 missed (60 ms off), 2 false
    m = match_peaks(ref, det, fs, tol_s=0.050)
    assert (m.tp, m.fp, m.fn) == (2, 2, 2)
    assert m.pairs.tolist() == [[100, 102], [200, 197]]
    assert m.errors.tolist() == [2, -3]
    assert m.unmatched_ref.tolist() == [300, 400]
    assert m.unmatched_det.tolist() == [360, 500]
    s = peak_scores(ref, det, fs)
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.5)
    assert s["ade_ms"] == pytest.approx(25.0)
    assert s["bias_ms"] == pytest.approx(-5.0)


def test_tolerance_boundary_is_inclusive():
    assert match_peaks([100], [105], 100.0, tol_s=0.050).tp == 1
    assert match_peaks([100], [106], 100.0, tol_s=0.050).tp == 0


def test_nearest_pair_wins_over_order():
    # Detection 108 is within 50 ms of both 100 and 110; the nearer reference (110) takes it,
    # so 100 is matched to 96 and nothing is lost.
    m = match_peaks([100, 110], [96, 108], 100.0, tol_s=0.050)
    assert m.pairs.tolist() == [[100, 96], [110, 108]]
    # Two detections near one reference: only the nearest counts, the other is a false positive.
    m = match_peaks([100], [97, 101], 100.0, tol_s=0.050)
    assert m.pairs.tolist() == [[100, 101]]
    assert m.unmatched_det.tolist() == [97]


def test_one_detection_cannot_serve_two_references():
    m = match_peaks([100, 104], [102], 100.0, tol_s=0.050)
    assert m.tp == 1 and m.fn == 1 and m.fp == 0
    # equal distances: the earlier reference wins (documented tie rule)
    assert m.pairs.tolist() == [[100, 102]]


def test_unsorted_input_is_sorted():
    m = match_peaks([300, 100, 200], [201, 99], 100.0)
    assert m.pairs.tolist() == [[100, 99], [200, 201]]


@pytest.mark.parametrize(
    "ref, det, expect",
    [
        ([], [], dict(tp=0, fp=0, fn=0, precision=1.0, recall=1.0, f1=1.0)),
        ([], [10, 20], dict(tp=0, fp=2, fn=0, precision=0.0, recall=1.0, f1=0.0)),
        ([10, 20], [], dict(tp=0, fp=0, fn=2, precision=1.0, recall=0.0, f1=0.0)),
        ([10], [90], dict(tp=0, fp=1, fn=1, precision=0.0, recall=0.0, f1=0.0)),
    ],
)
def test_edge_cases(ref, det, expect):
    s = peak_scores(ref, det, 100.0)
    for k, v in expect.items():
        assert s[k] == v, k
    assert math.isnan(s["ade_ms"])


@pytest.mark.parametrize(
    "ref, det, msg",
    [
        ([1, 1, 5], [1], "duplicates"),
        ([1, 2], [np.nan], "NaN"),
        ([-1, 2], [1], "negative"),
        ([1.5], [1], "whole sample"),
    ],
)
def test_bad_indices_raise(ref, det, msg):
    with pytest.raises(DataError, match=msg):
        match_peaks(ref, det, 100.0)


@pytest.mark.parametrize("fs", [0, -1, float("nan")])
def test_bad_rate_raises(fs):
    with pytest.raises(PPGEdgeError, match="sampling rate"):
        match_peaks([1], [1], fs)


def test_bad_tolerance_raises():
    with pytest.raises(DataError, match="tolerance"):
        match_peaks([1], [1], 100.0, tol_s=-0.01)


def test_pool_sums_counts_and_averages_f1():
    a = peak_scores([100, 200, 300, 400], [101, 201, 301, 401], 100.0)  # 4 TP, 10 ms each
    b = peak_scores([100, 200], [103, 500, 600], 100.0)  # 1 TP (30 ms), 2 FP, 1 FN
    p = pool([a, b])
    assert (p["tp"], p["fp"], p["fn"]) == (5, 2, 1)
    assert p["precision"] == pytest.approx(5 / 7)
    assert p["recall"] == pytest.approx(5 / 6)
    assert p["f1"] == pytest.approx(10 / 13)
    assert p["ade_ms"] == pytest.approx((4 * 10 + 30) / 5)
    assert p["f1_mean_record"] == pytest.approx((1.0 + 2 / 5) / 2)
    assert p["n_records"] == 2


def test_pool_rejects_empty_and_mixed_tolerances():
    with pytest.raises(DataError, match="empty"):
        pool([])
    with pytest.raises(DataError, match="tolerances"):
        pool([peak_scores([1], [1], 100.0, 0.05), peak_scores([1], [1], 100.0, 0.025)])


def _brute_force_max_matching(ref, det, tol):
    """Size of a maximum one-to-one matching, by augmenting paths (for small sets)."""
    adj = [[j for j, d in enumerate(det) if abs(d - r) <= tol] for r in ref]
    owner = [-1] * len(det)

    def augment(i, seen):
        for j in adj[i]:
            if j in seen:
                continue
            seen.add(j)
            if owner[j] < 0 or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    return sum(augment(i, set()) for i in range(len(ref)))


@settings(max_examples=150, deadline=None)
@given(
    ref=st.lists(st.integers(0, 400), max_size=12, unique=True),
    det=st.lists(st.integers(0, 400), max_size=12, unique=True),
)
def test_matching_properties(ref, det):
    m = match_peaks(ref, det, 100.0, tol_s=0.050)
    assert m.tp + m.fn == len(ref) and m.tp + m.fp == len(det)
    assert len(set(m.pairs[:, 0])) == m.tp and len(set(m.pairs[:, 1])) == m.tp
    assert np.all(np.abs(m.errors) <= 5)
    # greedy nearest-first never beats the maximum matching; for peaks spaced more than
    # a tolerance apart it reaches it
    best = _brute_force_max_matching(ref, det, 5)
    assert m.tp <= best
    if all(np.diff(sorted(ref)) > 10) and all(np.diff(sorted(det)) > 10):
        assert m.tp == best


def test_matching_scales_to_long_records(rng):
    fs = 300.0
    ref = np.cumsum(rng.integers(200, 400, size=20000))
    det = ref + rng.integers(-15, 16, size=ref.size)  # within +-50 ms at 300 Hz
    s = peak_scores(ref, det, fs, tol_s=0.050)
    assert s["tp"] == ref.size and s["fp"] == 0
