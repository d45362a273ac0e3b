"""Blood-pressure error metrics and the standards' grades. NumPy only.

Errors are ``y_pred - y_true`` in mmHg.

- MAE, RMSE, ME (mean error, bias), SD (sample standard deviation of the error,
  ``ddof=1`` as in Bland-Altman and the AAMI/ISO 81060-2 analysis), MAPE (%).
- BHS grade (British Hypertension Society protocol, O'Brien et al., 1993): the
  cumulative percentage of absolute errors <= 5, <= 10 and <= 15 mmHg; grade A
  needs >= 60/85/95 %, B >= 50/75/90 %, C >= 40/65/85 %, else D (all three
  thresholds must hold for a grade).
- AAMI criterion (ANSI/AAMI SP10, ISO 81060-2): |ME| <= 5 mmHg and SD <= 8 mmHg.
  The standard also asks for at least 85 subjects; ``aami_pass`` judges the
  errors only, and ``aami_enough_subjects`` says whether ``n_subjects`` (when
  given) reaches 85.
- IEEE 1708-2014 class by MAE: A <= 5, B <= 6, C <= 7 mmHg, else D.
- The naive baseline: predicting the training-set mean for everyone. With
  ``y_train_mean`` we report its MAE/RMSE on the same targets and
  MASE = MAE_model / MAE_naive (< 1 means better than the naive predictor).

The BP papers (``docs/facts.md``, "Publications") report MAE/ME/SD and the BHS
and AAMI criteria; we report every number beside the naive baseline.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError

__all__ = ["bp_metrics", "bp_report", "bhs_grade", "ieee1708_class", "AAMI_MIN_SUBJECTS"]

BHS_THRESHOLDS_MMHG = (5.0, 10.0, 15.0)
BHS_GRADES = (("A", (60.0, 85.0, 95.0)), ("B", (50.0, 75.0, 90.0)), ("C", (40.0, 65.0, 85.0)))
IEEE1708_CLASSES = (("A", 5.0), ("B", 6.0), ("C", 7.0))
AAMI_MAX_ABS_ME = 5.0
AAMI_MAX_SD = 8.0
AAMI_MIN_SUBJECTS = 85


def bhs_grade(cum_pct: tuple[float, float, float] | list[float]) -> str:
    """BHS grade from the cumulative % of |error| within 5, 10, 15 mmHg."""
    for grade, need in BHS_GRADES:
        if all(p >= n for p, n in zip(cum_pct, need)):
            return grade
    return "D"


def ieee1708_class(mae: float) -> str:
    """IEEE 1708 class from the MAE in mmHg."""
    for cls, limit in IEEE1708_CLASSES:
        if mae <= limit:
            return cls
    return "D"


def _vector(x, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 2 and 1 in arr.shape:  # a column or row vector, e.g. a Keras output
        arr = arr.ravel()
    if arr.ndim != 1:
        raise DataError(f"{what} must be one-dimensional, got shape {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} contains NaN or infinity ({int((~np.isfinite(arr)).sum())} values)")
    return arr


def bp_metrics(y_true, y_pred, y_train_mean: float | None = None,
               n_subjects: int | None = None) -> dict:
    """Error metrics of one BP target (SBP or DBP) in mmHg.

    ``n_subjects``, when given, is reported and checked against the AAMI
    minimum of 85. Empty, mismatched or non-finite input raises ``DataError``.
    """
    t = _vector(y_true, "y_true")
    p = _vector(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise DataError("cannot compute BP metrics of zero samples")
    err = p - t
    ae = np.abs(err)
    mae = float(ae.mean())
    me = float(err.mean())
    sd = float(err.std(ddof=1)) if err.size > 1 else float("nan")
    if np.any(t == 0):
        mape = float("nan")
    else:
        mape = float(np.mean(ae / np.abs(t)) * 100.0)
    cum = [100.0 * int(np.count_nonzero(ae <= thr)) / t.size for thr in BHS_THRESHOLDS_MMHG]
    out = {
        "n": int(t.size),
        "mae": mae,
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "me": me,
        "sd": sd,
        "mape": mape,
        "bhs_pct_within_5": cum[0],
        "bhs_pct_within_10": cum[1],
        "bhs_pct_within_15": cum[2],
        "bhs_grade": bhs_grade(cum),
        "aami_pass": bool(abs(me) <= AAMI_MAX_ABS_ME and not math.isnan(sd) and sd <= AAMI_MAX_SD),
        "n_subjects": None if n_subjects is None else int(n_subjects),
        "aami_enough_subjects": None if n_subjects is None else int(n_subjects) >= AAMI_MIN_SUBJECTS,
        "aami_note": f"AAMI also requires >= {AAMI_MIN_SUBJECTS} subjects",
        "ieee1708_class": ieee1708_class(mae),
    }
    if y_train_mean is not None:
        m = float(y_train_mean)
        if not math.isfinite(m):
            raise DataError(f"y_train_mean must be finite, got {y_train_mean!r}")
        naive = m - t
        naive_mae = float(np.mean(np.abs(naive)))
        out.update(
            naive_mae=naive_mae,
            naive_rmse=float(np.sqrt(np.mean(naive ** 2))),
            naive_me=float(naive.mean()),
            mase=mae / naive_mae if naive_mae > 0 else float("nan"),
        )
    return out


def bp_report(sbp_true, sbp_pred, dbp_true, dbp_pred,
              train_sbp_mean: float | None = None, train_dbp_mean: float | None = None,
              n_subjects: int | None = None) -> dict:
    """:func:`bp_metrics` for SBP and DBP together: ``{"sbp": {...}, "dbp": {...}}``."""
    return {
        "sbp": bp_metrics(sbp_true, sbp_pred, train_sbp_mean, n_subjects),
        "dbp": bp_metrics(dbp_true, dbp_pred, train_dbp_mean, n_subjects),
    }
