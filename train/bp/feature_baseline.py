"""Gradient boosting on segment features -> SBP, DBP, beside the naive baseline.

One ``sklearn.ensemble.HistGradientBoostingRegressor`` per target (it takes NaN
for missing features natively, so invalid features stay NaN). Two labelled
variants: ``"ppg"`` (PPG features only) and ``"ppg+demographics"`` (plus age, sex,
BMI). Every evaluation reports the naive predictor (the training-set mean) beside
the model, and folds are by subject (:func:`cross_validate`).

Gradient boosting on PPG-BP features is the strongest SBP baseline in the
benchmark of Gonzalez, Hsieh & Chen (2023, Sci Data 10:149; LightGBM).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ppg_edge.errors import ConfigError, DataError, SplitError

log = logging.getLogger(__name__)

DEMOGRAPHIC_NAMES = ("age", "sex", "bmi")
TARGET_NAMES = ("sbp", "dbp")


def _check_xy(X, y=None):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"features must be (n, n_features), got {X.shape}")
    if np.any(np.isinf(X)):
        raise DataError("features hold inf (use NaN for a missing feature)")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (X.shape[0], 2) or not np.all(np.isfinite(y)):
        raise DataError(f"targets must be finite (n, 2) SBP, DBP for {X.shape[0]} rows, got {y.shape}")
    return X, y


class FeatureBaseline:
    """SBP and DBP regressors on segment features (optionally with demographics)."""

    def __init__(self, *, use_demographics: bool = False, rng: np.random.Generator,
                 max_iter: int = 200, learning_rate: float = 0.05,
                 max_leaf_nodes: int = 15, min_samples_leaf: int = 10,
                 l2_regularization: float = 1.0):
        self.use_demographics = bool(use_demographics)
        self.params = dict(max_iter=max_iter, learning_rate=learning_rate,
                           max_leaf_nodes=max_leaf_nodes, min_samples_leaf=min_samples_leaf,
                           l2_regularization=l2_regularization)
        self.rng = rng
        self.models: list = []

    @property
    def variant(self) -> str:
        return "ppg+demographics" if self.use_demographics else "ppg"

    def _design(self, X, demographics):
        if not self.use_demographics:
            if demographics is not None:
                raise ConfigError("demographics given to the 'ppg' variant; "
                                  "use use_demographics=True for that variant")
            return X
        if demographics is None:
            raise ConfigError("the 'ppg+demographics' variant needs demographics (age, sex, bmi)")
        D = np.asarray(demographics, dtype=np.float64)
        if D.shape != (X.shape[0], len(DEMOGRAPHIC_NAMES)):
            raise DataError(f"demographics must be (n, 3) age, sex, bmi, got {D.shape}")
        return np.hstack([X, D])

    def fit(self, X, y, demographics=None) -> FeatureBaseline:
        from sklearn.ensemble import HistGradientBoostingRegressor

        X, y = _check_xy(X, y)
        Z = self._design(X, demographics)
        self.models = []
        for j in range(2):
            m = HistGradientBoostingRegressor(
                random_state=int(self.rng.integers(0, 2**31 - 1)), **self.params)
            self.models.append(m.fit(Z, y[:, j]))
        return self

    def predict(self, X, demographics=None) -> np.ndarray:
        if not self.models:
            raise ConfigError("FeatureBaseline.predict before fit")
        X, _ = _check_xy(X)
        Z = self._design(X, demographics)
        return np.stack([m.predict(Z) for m in self.models], axis=1)


def naive_predict(y_train, n: int) -> np.ndarray:
    """The naive predictor: the training-set mean SBP, DBP for every row."""
    y_train = np.asarray(y_train, dtype=np.float64)
    return np.tile(y_train.mean(axis=0), (int(n), 1))


def subject_folds(subjects, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per row, every subject's rows in one fold (subjects shuffled by ``rng``)."""
    subjects = np.asarray(subjects)
    uniq = np.unique(subjects)
    if int(n_folds) < 2 or uniq.size < int(n_folds):
        raise SplitError(f"{uniq.size} subjects cannot make {n_folds} subject-wise folds")
    order = rng.permutation(uniq.size)
    fold_of = np.empty(uniq.size, dtype=np.int64)
    fold_of[order] = np.arange(uniq.size) % int(n_folds)
    return fold_of[np.searchsorted(uniq, subjects)]


@dataclass
class CVResult:
    """Pooled out-of-fold MAE (mmHg) per method, SBP and DBP."""

    mae: dict[str, tuple[float, float]]
    n_rows: int
    n_subjects: int
    n_folds: int

    def lines(self) -> list[str]:
        out = [f"{self.n_folds}-fold subject-wise CV, {self.n_subjects} subjects, {self.n_rows} segments"]
        for name, (s, d) in self.mae.items():
            out.append(f"{name:>20}: SBP MAE {s:6.2f}  DBP MAE {d:6.2f}")
        return out


def cross_validate(X, y, subjects, *, rng: np.random.Generator, n_folds: int = 10,
                   demographics=None, **params) -> CVResult:
    """Subject-wise K-fold MAE of the naive mean, the ``ppg`` variant, and (when
    ``demographics`` is given) the ``ppg+demographics`` variant."""
    X, y = _check_xy(X, y)
    subjects = np.asarray(subjects)
    if subjects.shape != (X.shape[0],):
        raise DataError(f"one subject id per row needed, got {subjects.shape}")
    folds = subject_folds(subjects, n_folds, rng)
    preds = {"naive (train mean)": np.zeros_like(y), "gbm ppg": np.zeros_like(y)}
    if demographics is not None:
        D = np.asarray(demographics, dtype=np.float64)
        preds["gbm ppg+demographics"] = np.zeros_like(y)
    for k in range(int(n_folds)):
        te, tr = folds == k, folds != k
        preds["naive (train mean)"][te] = naive_predict(y[tr], te.sum())
        preds["gbm ppg"][te] = FeatureBaseline(rng=rng, **params).fit(X[tr], y[tr]).predict(X[te])
        if demographics is not None:
            m = FeatureBaseline(use_demographics=True, rng=rng, **params).fit(X[tr], y[tr], D[tr])
            preds["gbm ppg+demographics"][te] = m.predict(X[te], D[te])
    mae = {name: tuple(float(v) for v in np.mean(np.abs(p - y), axis=0)) for name, p in preds.items()}
    return CVResult(mae=mae, n_rows=X.shape[0], n_subjects=int(np.unique(subjects).size),
                    n_folds=int(n_folds))
