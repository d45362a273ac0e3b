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
                 l2_regularization: float = 1.0, per_target: list[dict] | None = None):
        self.use_demographics = bool(use_demographics)
        self.params = dict(max_iter=max_iter, learning_rate=learning_rate,
                           max_leaf_nodes=max_leaf_nodes, min_samples_leaf=min_samples_leaf,
                           l2_regularization=l2_regularization)
        if per_target is not None and len(per_target) != len(TARGET_NAMES):
            raise ConfigError(f"per_target needs one parameter set per target {TARGET_NAMES}")
        # per target (SBP, DBP): the shared parameters updated by that target's own (a nested search's)
        self.target_params = [dict(self.params, **(per_target[j] if per_target else {}))
                              for j in range(len(TARGET_NAMES))]
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
                random_state=int(self.rng.integers(0, 2**31 - 1)), **self.target_params[j])
            self.models.append(m.fit(Z, y[:, j]))
        return self

    def predict(self, X, demographics=None) -> np.ndarray:
        if not self.models:
            raise ConfigError("FeatureBaseline.predict before fit")
        X, _ = _check_xy(X)
        Z = self._design(X, demographics)
        return np.stack([m.predict(Z) for m in self.models], axis=1)


#: the nested search's grid, fixed before any result was seen: few, shallow trees (a strong pull
#: towards the mean, for a target the features barely predict) to the default's 200 x 15 leaves
SEARCH_GRID: tuple[dict, ...] = tuple(
    {"max_iter": it, "max_leaf_nodes": leaves, "min_samples_leaf": leaf}
    for it in (50, 200) for leaves in (7, 15) for leaf in (10, 30))


def nested_search(X, y, subjects, *, rng: np.random.Generator, n_inner: int = 5, demographics=None,
                  grid: tuple[dict, ...] = SEARCH_GRID) -> dict:
    """Choose the parameters of each target on an inner subject-wise K-fold CV of the given
    (training) rows only: the set with the lowest inner MAE per target. Returns
    ``{"per_target": [params_sbp, params_dbp], "inner_mae": [[sbp, dbp] per grid row], "grid": grid}``."""
    X, y = _check_xy(X, y)
    folds = subject_folds(subjects, n_inner, rng)
    use_demo = demographics is not None
    D = np.asarray(demographics, dtype=np.float64) if use_demo else None
    inner = np.zeros((len(grid), 2))
    for g, params in enumerate(grid):
        err = np.zeros_like(y)
        for k in range(int(n_inner)):
            te, tr = folds == k, folds != k
            m = FeatureBaseline(use_demographics=use_demo, rng=rng, **params)
            m.fit(X[tr], y[tr], D[tr] if use_demo else None)
            err[te] = np.abs(m.predict(X[te], D[te] if use_demo else None) - y[te])
        inner[g] = err.mean(axis=0)
    best = [dict(grid[int(np.argmin(inner[:, j]))]) for j in range(2)]
    return {"per_target": best, "inner_mae": inner.round(3).tolist(), "grid": [dict(g) for g in grid]}


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
