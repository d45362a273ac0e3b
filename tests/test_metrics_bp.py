"""BP metrics on constructed errors with answers computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ppg_edge.errors import DataError
from ppg_edge.metrics.bp import bhs_grade, bp_metrics, bp_report, ieee1708_class


def test_hand_computed_errors():
    y_true = np.array([100.0, 120.0, 140.0, 160.0])
    y_pred = y_true + np.array([2.0, -2.0, 4.0, -4.0])
    m = bp_metrics(y_true, y_pred)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(3.0)
    assert m["rmse"] == pytest.approx(math.sqrt(10.0))
    assert m["me"] == pytest.approx(0.0)
    assert m["sd"] == pytest.approx(math.sqrt(40.0 / 3.0))  # ddof=1
    assert m["mape"] == pytest.approx(100 * (2 / 100 + 2 / 120 + 4 / 140 + 4 / 160) / 4)
    assert m["bhs_pct_within_5"] == 100.0
    assert m["bhs_grade"] == "A"
    assert m["aami_pass"] is True
    assert m["ieee1708_class"] == "A"
    assert "naive_mae" not in m


def test_bhs_cumulative_percentages_and_grade():
    # 20 errors: 11 within 5 (55 %), 16 within 10 (80 %), 19 within 15 (95 %) -> B
    err = np.array([1.0] * 11 + [8.0] * 5 + [12.0] * 3 + [30.0])
    m = bp_metrics(np.full(20, 120.0), 120.0 + err)
    assert (m["bhs_pct_within_5"], m["bhs_pct_within_10"], m["bhs_pct_within_15"]) == (55.0, 80.0, 95.0)
    assert m["bhs_grade"] == "B"


@pytest.mark.parametrize(
    "pct, grade",
    [((60, 85, 95), "A"), ((59.9, 85, 95), "B"), ((70, 90, 89), "C"), ((50, 75, 90), "B"),
     ((40, 65, 85), "C"), ((39, 90, 99), "D"), ((100, 100, 84), "D")],
)
def test_bhs_grade_thresholds(pct, grade):
    assert bhs_grade(pct) == grade


@pytest.mark.parametrize("mae, cls", [(5.0, "A"), (5.01, "B"), (6.0, "B"), (7.0, "C"), (7.1, "D")])
def test_ieee1708_class(mae, cls):
    assert ieee1708_class(mae) == cls


def test_aami_fails_on_bias_and_on_spread():
    t = np.full(10, 120.0)
    biased = bp_metrics(t, t + 6.0)  # ME 6 > 5
    assert biased["me"] == pytest.approx(6.0) and biased["sd"] == pytest.approx(0.0)
    assert biased["aami_pass"] is False
    spread = bp_metrics(t, t + np.array([10.0, -10.0] * 5))  # ME 0, SD > 8
    assert spread["me"] == pytest.approx(0.0) and spread["sd"] > 8
    assert spread["aami_pass"] is False


def test_aami_subject_count_reported():
    t = np.full(5, 120.0)
    assert bp_metrics(t, t, n_subjects=40)["aami_enough_subjects"] is False
    assert bp_metrics(t, t, n_subjects=85)["aami_enough_subjects"] is True
    assert bp_metrics(t, t)["aami_enough_subjects"] is None


def test_naive_baseline_and_mase():
    y_true = np.array([110.0, 130.0])
    y_pred = np.array([112.0, 128.0])  # MAE 2
    m = bp_metrics(y_true, y_pred, y_train_mean=120.0)  # naive errors 10, 10
    assert m["naive_mae"] == pytest.approx(10.0)
    assert m["naive_rmse"] == pytest.approx(10.0)
    assert m["mase"] == pytest.approx(0.2)


def test_bp_report_both_targets():
    r = bp_report([120, 140], [125, 140], [80, 90], [80, 91], 130.0, 85.0)
    assert r["sbp"]["mae"] == pytest.approx(2.5)
    assert r["dbp"]["mae"] == pytest.approx(0.5)
    assert r["sbp"]["naive_mae"] == pytest.approx(10.0)
    assert r["dbp"]["naive_mae"] == pytest.approx(5.0)


def test_column_vectors_accepted():
    m = bp_metrics(np.array([[100.0], [110.0]]), np.array([[101.0], [109.0]]))
    assert m["mae"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "t, p, msg",
    [
        ([1.0, 2.0], [1.0], "has 2 values"),
        ([], [], "zero samples"),
        ([1.0, np.nan], [1.0, 2.0], "NaN"),
        (np.ones((2, 2)), np.ones((2, 2)), "one-dimensional"),
    ],
)
def test_bad_input_raises(t, p, msg):
    with pytest.raises(DataError, match=msg):
        bp_metrics(t, p)


def test_bad_train_mean_raises():
    with pytest.raises(DataError, match="y_train_mean"):
        bp_metrics([1.0, 2.0], [1.0, 2.0], y_train_mean=float("nan"))


def test_single_sample_has_undefined_sd_and_fails_aami():
    m = bp_metrics([120.0], [121.0])
    assert math.isnan(m["sd"]) and m["aami_pass"] is False
