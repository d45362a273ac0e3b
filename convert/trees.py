"""Export fitted ``HistGradientBoostingRegressor`` models to the device's tree format.

The format (``"ppg-edge-trees"`` version 1) and its evaluator are in
:mod:`ppg_edge.edge_runtime.trees`; this side reads the fitted trees from scikit-learn's
private predictor arrays (checked against scikit-learn 1.9.1's source):

- ``model._baseline_prediction`` (shape (1, 1)) is the starting raw prediction and
  ``model._predictors[i][0]`` the tree of iteration i; ``_raw_predict`` adds them in that
  order and ``predict`` applies the loss's inverse link (identity for the squared, absolute
  and quantile losses: others are refused).
- ``TreePredictor.nodes`` is a structured array (``PREDICTOR_RECORD_DTYPE``): ``value``
  (the leaf value, learning rate already applied), ``feature_idx``, ``num_threshold``,
  ``missing_go_to_left``, ``left``, ``right``, ``is_leaf``, ``is_categorical``; node 0 is the
  root and children follow their parent (depth-first). ``_predictor.pyx`` goes left when
  the value is NaN and ``missing_go_to_left``, or when ``value <= num_threshold``.
- A "split on NaNs" (``grower._fill_predictor_arrays``: the last non-missing bin) has
  ``num_threshold = +inf``: every non-missing value goes left. JSON has no infinity, so it
  is written as the largest finite double, the same split for every finite input (the
  device refuses inf inputs).

Categorical splits (bitsets) are not in the format and are refused.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.trees import FORMAT, VERSION, TreeEnsemble
from ppg_edge.errors import DataError, ModelError

log = logging.getLogger(__name__)

#: Stand-in for scikit-learn's ``+inf`` threshold (a split on NaNs): x <= this for every finite x.
INF_THRESHOLD = sys.float_info.max
_IDENTITY_LOSSES = ("squared_error", "absolute_error", "quantile")


def _check_model(model: Any, k: int) -> None:
    if not hasattr(model, "_predictors") or not hasattr(model, "_baseline_prediction"):
        raise ModelError(f"model {k} ({type(model).__name__}) is not a fitted HistGradientBoostingRegressor")
    is_cat = getattr(model, "is_categorical_", None)
    if is_cat is not None and np.any(is_cat):
        raise ModelError(f"model {k} has categorical features {np.flatnonzero(is_cat).tolist()}: "
                         "the tree format holds numeric splits only")
    loss = getattr(model, "loss", None)
    link = type(getattr(getattr(model, "_loss", None), "link", None)).__name__
    if loss not in _IDENTITY_LOSSES or link != "IdentityLink":
        raise ModelError(f"model {k} has loss {loss!r} (link {link}); only the identity-link losses "
                         f"{list(_IDENTITY_LOSSES)} are exported")
    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        raise ModelError(f"model {k} has {model.n_trees_per_iteration_} trees per iteration (a classifier?)")


def _tree(nodes: np.ndarray, where: str) -> dict[str, list]:
    if np.any(nodes["is_categorical"]):
        raise ModelError(f"{where} has a categorical split: the tree format holds numeric splits only")
    leaf = nodes["is_leaf"].astype(bool)
    thr = nodes["num_threshold"].astype(np.float64)
    if np.any(np.isnan(thr[~leaf])) or np.any(thr[~leaf] == -np.inf):
        raise ModelError(f"{where} has a NaN or -inf threshold")
    thr = np.where(thr == np.inf, INF_THRESHOLD, thr)
    thr = np.where(leaf, 0.0, thr)
    return {
        "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(int).tolist(),
        "threshold": thr.tolist(),
        "missing_left": (nodes["missing_go_to_left"].astype(bool) & ~leaf).tolist(),
        "left": np.where(leaf, -1, nodes["left"].astype(np.int64)).tolist(),
        "right": np.where(leaf, -1, nodes["right"].astype(np.int64)).tolist(),
        "leaf": leaf.tolist(),
        "value": nodes["value"].astype(np.float64).tolist(),
    }


def export_hgb(models: Sequence[Any], feature_names: Sequence[str], targets: Sequence[str]) -> dict:
    """Fitted ``HistGradientBoostingRegressor`` models (one per target, same features) -> a
    JSON-able ``"ppg-edge-trees"`` document; validated by the device loader before it returns."""
    import sklearn

    models = list(models)
    feature_names = [str(f) for f in feature_names]
    targets = [str(t) for t in targets]
    if not models:
        raise ModelError("no models to export")
    if len(models) != len(targets):
        raise ModelError(f"{len(models)} models for {len(targets)} targets {targets}")
    for k, m in enumerate(models):
        _check_model(m, k)
    n_in = [int(m.n_features_in_) for m in models]
    if len(set(n_in)) != 1:
        raise ModelError(f"the models take different numbers of features {n_in}")
    if n_in[0] != len(feature_names):
        raise ModelError(f"{len(feature_names)} feature names for models with {n_in[0]} features")
    for k, m in enumerate(models):
        fitted = getattr(m, "feature_names_in_", None)
        if fitted is not None and list(fitted) != feature_names:
            raise ModelError(f"model {k} was fitted on the features {list(fitted)}, "
                             f"not {feature_names}")
    ensembles = []
    for k, (m, target) in enumerate(zip(models, targets, strict=True)):
        base = np.asarray(m._baseline_prediction, dtype=np.float64)
        if base.size != 1:
            raise ModelError(f"model {k} has a baseline of shape {base.shape}, expected one value")
        trees = []
        for i, iteration in enumerate(m._predictors):
            if len(iteration) != 1:
                raise ModelError(f"model {k} iteration {i} has {len(iteration)} trees, expected 1")
            trees.append(_tree(iteration[0].nodes, f"model {k} ({target}) tree {i}"))
        ensembles.append({"target": target, "baseline": float(base.ravel()[0]), "trees": trees})
    doc = {"format": FORMAT, "version": VERSION, "feature_names": feature_names, "targets": targets,
           "ensembles": ensembles, "sklearn_version": sklearn.__version__}
    TreeEnsemble.from_dict(doc, source="export")  # the device must accept what we write
    log.info("exported %d tree ensembles (%s trees) on %d features", len(ensembles),
             [len(e["trees"]) for e in ensembles], len(feature_names))
    return doc


def check_export(models: Sequence[Any], doc: dict, X: Any, atol: float = 1e-9) -> float:
    """Evaluate ``doc`` with the device evaluator on X and compare with ``model.predict(X)``;
    a difference above ``atol`` -> ModelError naming the target and row. Returns the max |diff|."""
    ens = TreeEnsemble.from_dict(doc, source="export check")
    models = list(models)
    if len(models) != len(ens.targets):
        raise ModelError(f"{len(models)} models for the {len(ens.targets)} targets {list(ens.targets)}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"check rows must be a non-empty (n, n_features) array, got {X.shape}")
    got = ens.predict(X)
    ref = np.column_stack([np.asarray(m.predict(X), dtype=np.float64) for m in models])
    diff = np.abs(got - ref)
    diff = np.where(np.isnan(diff), np.inf, diff)
    worst = float(diff.max())
    if worst > atol:
        row, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise ModelError(f"exported trees disagree with scikit-learn: max |diff| {worst:.3g} > {atol:g} "
                         f"for target {ens.targets[j]!r} at row {int(row)} "
                         f"(device {got[row, j]!r}, sklearn {ref[row, j]!r})")
    log.info("export check: %d rows, max |device - sklearn| = %.3g", X.shape[0], worst)
    return worst
