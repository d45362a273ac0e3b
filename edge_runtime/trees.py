"""Gradient-boosted tree ensembles evaluated in numpy (format ``"ppg-edge-trees"``, version 1).

The host exports fitted ``HistGradientBoostingRegressor`` models with
:func:`ppg_edge.convert.trees.export_hgb`; the device loads the JSON file here and predicts
without scikit-learn. One ensemble per target (e.g. ``sbp``, ``dbp``), all on the same features::

    {"format": "ppg-edge-trees", "version": 1,
     "feature_names": [...], "targets": ["sbp", "dbp"],
     "ensembles": [{"target": "sbp", "baseline": 121.3, "trees": [tree, ...]}, ...]}

A tree is parallel node arrays, node 0 the root: ``feature`` (int), ``threshold`` (float),
``missing_left`` (bool), ``left``/``right`` (child node indices), ``leaf`` (bool) and
``value`` (float; a leaf's contribution). At a split a row goes left when its feature is
``<= threshold``, right otherwise; a NaN feature (missing) goes left when ``missing_left``,
else right: scikit-learn's rule (``_predictor.pyx``, numeric splits). A prediction is the
baseline plus the leaf values of the trees, added in tree order as scikit-learn adds them.
Leaves carry ``-1`` as feature and children. Children always have larger indices than their
parent (scikit-learn's depth-first layout), which :meth:`TreeEnsemble.from_dict` checks, so a
file cannot hold a cycle and a traversal ends within the tree's depth.

numpy and the standard library only.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import DataError, ModelError

log = logging.getLogger(__name__)

FORMAT = "ppg-edge-trees"
VERSION = 1
NODE_FIELDS = ("feature", "threshold", "missing_left", "left", "right", "leaf", "value")
#: Rows evaluated together (bounds the (rows, trees) index arrays to a few MB).
ROW_CHUNK = 2048


@dataclass(frozen=True)
class _Forest:
    """One target's trees, concatenated into flat node arrays (tree t starts at ``roots[t]``)."""

    target: str
    baseline: float
    roots: np.ndarray  # (n_trees,) int64
    feature: np.ndarray  # (n_nodes,) int64, leaves 0 (never read: a leaf does not move)
    threshold: np.ndarray  # (n_nodes,) float64
    missing_left: np.ndarray  # (n_nodes,) bool
    left: np.ndarray  # (n_nodes,) int64, leaves point at themselves
    right: np.ndarray  # (n_nodes,) int64, leaves point at themselves
    leaf: np.ndarray  # (n_nodes,) bool
    value: np.ndarray  # (n_nodes,) float64
    max_depth: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Baseline + sum of leaf values for each row of X ((n, n_features) float64, no inf)."""
        n = X.shape[0]
        n_trees = self.roots.size
        out = np.empty(n, dtype=np.float64)
        if n_trees == 0:
            out.fill(self.baseline)
            return out
        for start in range(0, n, ROW_CHUNK):
            Xc = X[start:start + ROW_CHUNK]
            rows = np.arange(Xc.shape[0])[:, None]
            node = np.broadcast_to(self.roots, (Xc.shape[0], n_trees)).copy()
            # One depth step for all rows and all trees at once; a row at a leaf stays there.
            for _ in range(self.max_depth):
                active = ~self.leaf[node]
                if not active.any():
                    break
                x = Xc[rows, self.feature[node]]
                nan = np.isnan(x)
                go_left = np.where(nan, self.missing_left[node], x <= self.threshold[node])
                node = np.where(go_left, self.left[node], self.right[node])
            leaf_values = self.value[node]
            # Sequential sum in tree order (cumsum adds left to right), as scikit-learn does:
            # raw = baseline; raw += tree_0; raw += tree_1 ...
            acc = np.empty((Xc.shape[0], n_trees + 1), dtype=np.float64)
            acc[:, 0] = self.baseline
            acc[:, 1:] = leaf_values
            out[start:start + ROW_CHUNK] = np.cumsum(acc, axis=1)[:, -1]
        return out


def _fail(source: str, msg: str) -> ModelError:
    return ModelError(f"{source}: {msg}")


def _array(source: str, where: str, name: str, values: Any, kind: str) -> np.ndarray:
    """One node array from a JSON list: kind ``"int"``, ``"bool"`` or ``"float"``."""
    if not isinstance(values, (list, tuple)):
        raise _fail(source, f"{where}: '{name}' must be a list, got {type(values).__name__}")
    if not all(isinstance(v, (bool, int, float)) and not isinstance(v, complex) for v in values):
        raise _fail(source, f"{where}: '{name}' must hold numbers only")
    if kind == "float":
        arr = np.asarray(values, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise _fail(source, f"{where}: '{name}' of node {bad} is not finite ({arr[bad]})")
        return arr
    if kind == "int":
        if any(isinstance(v, float) and not float(v).is_integer() for v in values):
            raise _fail(source, f"{where}: '{name}' must hold integers")
        return np.asarray([int(v) for v in values], dtype=np.int64)
    # bool: JSON true/false or 0/1
    if any(v not in (0, 1) for v in values):
        raise _fail(source, f"{where}: '{name}' must hold booleans (true/false or 0/1)")
    return np.asarray([bool(v) for v in values], dtype=bool)


def _check_tree(source: str, where: str, tree: Any, n_features: int) -> dict[str, np.ndarray]:
    if not isinstance(tree, Mapping):
        raise _fail(source, f"{where} must be an object with the node arrays {list(NODE_FIELDS)}")
    missing = [f for f in NODE_FIELDS if f not in tree]
    if missing:
        raise _fail(source, f"{where} lacks the node arrays {missing}")
    kinds = {"feature": "int", "threshold": "float", "missing_left": "bool", "left": "int",
             "right": "int", "leaf": "bool", "value": "float"}
    a = {f: _array(source, where, f, tree[f], kinds[f]) for f in NODE_FIELDS}
    lengths = {f: int(a[f].size) for f in NODE_FIELDS}
    if len(set(lengths.values())) != 1:
        raise _fail(source, f"{where}: node arrays differ in length {lengths}")
    n = lengths["feature"]
    if n == 0:
        raise _fail(source, f"{where} has no nodes")
    idx = np.arange(n)
    split = ~a["leaf"]
    for name in ("left", "right"):
        child = a[name]
        bad = split & ((child < 0) | (child >= n))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(source, f"{where}: node {i} has {name} child {int(child[i])} out of range "
                                f"(a split needs children in 0..{n - 1})")
        bad = split & (child <= idx)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(source, f"{where}: node {i} has {name} child {int(child[i])} not after it "
                                "(children must have larger indices: a cycle or a broken layout)")
    bad = split & (a["left"] == a["right"])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(source, f"{where}: node {i} has the same node {int(a['left'][i])} as both children")
    children = np.concatenate([a["left"][split], a["right"][split]])
    if children.size != np.unique(children).size:
        raise _fail(source, f"{where}: a node is the child of two splits (not a tree)")
    leaf = a["leaf"]
    if leaf.any() and (np.any(a["left"][leaf] != -1) or np.any(a["right"][leaf] != -1)):
        i = int(np.flatnonzero(leaf & ((a["left"] != -1) | (a["right"] != -1)))[0])
        raise _fail(source, f"{where}: leaf node {i} has children (a leaf's left/right must be -1)")
    feat = a["feature"]
    bad = split & ((feat < 0) | (feat >= n_features))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(source, f"{where}: node {i} splits on feature {int(feat[i])}, "
                            f"the model has {n_features} features")
    return a


def _depth(left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> int:
    """Longest root-to-leaf path in edges (children after parents: one forward pass)."""
    depth = np.zeros(left.size, dtype=np.int64)
    for i in range(left.size):
        if not leaf[i]:
            depth[left[i]] = depth[i] + 1
            depth[right[i]] = depth[i] + 1
    return int(depth.max())


class TreeEnsemble:
    """Tree ensembles, one per target, on one feature vector; see the module docstring."""

    def __init__(self, feature_names: Sequence[str], forests: Sequence[_Forest], meta: dict):
        self._feature_names = tuple(feature_names)
        self._forests = tuple(forests)
        self.meta = dict(meta)

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any, source: str = "trees") -> TreeEnsemble:
        """Validate a parsed document and build the ensemble; any defect -> ModelError."""
        if not isinstance(doc, Mapping):
            raise _fail(source, f"a tree model must be a JSON object, got {type(doc).__name__}")
        if doc.get("format") != FORMAT:
            raise _fail(source, f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        if doc.get("version") != VERSION:
            raise _fail(source, f"version {doc.get('version')!r} is not supported (this runtime reads "
                                f"version {VERSION})")
        names = doc.get("feature_names")
        if (not isinstance(names, list) or not names
                or not all(isinstance(s, str) and s for s in names)):
            raise _fail(source, "feature_names must be a non-empty list of names")
        if len(set(names)) != len(names):
            raise _fail(source, "feature_names has duplicates")
        targets = doc.get("targets")
        if (not isinstance(targets, list) or not targets
                or not all(isinstance(s, str) and s for s in targets)):
            raise _fail(source, "targets must be a non-empty list of names")
        if len(set(targets)) != len(targets):
            raise _fail(source, "targets has duplicates")
        ensembles = doc.get("ensembles")
        if not isinstance(ensembles, list):
            raise _fail(source, "ensembles must be a list (one per target)")
        found = [e.get("target") if isinstance(e, Mapping) else None for e in ensembles]
        if found != targets:
            raise _fail(source, f"ensembles are for the targets {found}, the file lists targets {targets}")
        n_features = len(names)
        forests = []
        for ens in ensembles:
            target = ens["target"]
            baseline = ens.get("baseline")
            if (isinstance(baseline, bool) or not isinstance(baseline, (int, float))
                    or not math.isfinite(baseline)):
                raise _fail(source, f"ensemble {target!r}: baseline must be a finite number, got {baseline!r}")
            trees = ens.get("trees")
            if not isinstance(trees, list):
                raise _fail(source, f"ensemble {target!r}: trees must be a list")
            forests.append(cls._forest(source, target, float(baseline), trees, n_features))
        meta = {k: v for k, v in doc.items() if k not in ("feature_names", "targets", "ensembles")}
        out = cls(names, forests, meta)
        log.debug("%s: %d targets, %s trees, %d features", source, len(targets),
                  [f.roots.size for f in forests], n_features)
        return out

    @staticmethod
    def _forest(source: str, target: str, baseline: float, trees: list, n_features: int) -> _Forest:
        parts = [_check_tree(source, f"ensemble {target!r} tree {t}", tree, n_features)
                 for t, tree in enumerate(trees)]
        sizes = [p["feature"].size for p in parts]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if parts else np.zeros(0, np.int64)
        depth = max((_depth(p["left"], p["right"], p["leaf"]) for p in parts), default=0)

        def cat(field, dtype):
            if not parts:
                return np.zeros(0, dtype=dtype)
            return np.concatenate([p[field] for p in parts]).astype(dtype)

        leaf = cat("leaf", bool)
        self_idx = np.arange(leaf.size, dtype=np.int64)
        off = np.repeat(offsets, sizes) if parts else np.zeros(0, np.int64)
        left = np.where(leaf, self_idx, cat("left", np.int64) + off)
        right = np.where(leaf, self_idx, cat("right", np.int64) + off)
        feature = np.where(leaf, 0, cat("feature", np.int64))
        return _Forest(target=target, baseline=baseline, roots=offsets, feature=feature,
                       threshold=cat("threshold", np.float64), missing_left=cat("missing_left", bool),
                       left=left, right=right, leaf=leaf, value=cat("value", np.float64), max_depth=depth)

    @classmethod
    def load(cls, path: str | Path) -> TreeEnsemble:
        """Read a JSON tree file; a missing, unreadable, truncated or non-JSON file -> ModelError."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise ModelError(f"{path}: tree model file not found") from e
        except (OSError, UnicodeDecodeError) as e:
            raise ModelError(f"{path}: cannot read the tree model file ({e})") from e
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}: not valid JSON (truncated or corrupt?): {e}") from e
        return cls.from_dict(doc, source=str(path))

    # --- properties ----------------------------------------------------------------------
    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._feature_names

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(f.target for f in self._forests)

    @property
    def n_features(self) -> int:
        return len(self._feature_names)

    @property
    def n_trees(self) -> tuple[int, ...]:
        return tuple(int(f.roots.size) for f in self._forests)

    # --- prediction ----------------------------------------------------------------------
    def _check_x(self, X: Any, ndim: int) -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DataError(f"features must be numbers: {e}") from e
        if X.ndim != ndim or X.shape[-1] != self.n_features:
            want = f"(n, {self.n_features})" if ndim == 2 else f"({self.n_features},)"
            raise DataError(f"features must have shape {want} ({', '.join(self._feature_names)}), "
                            f"got {X.shape}")
        if np.isinf(X).any():
            raise DataError("features hold inf (use NaN for a missing feature)")
        return X

    def predict(self, X: Any) -> np.ndarray:
        """(n, n_targets) float64 predictions for X of shape (n, n_features); NaN = missing."""
        X = self._check_x(X, 2)
        out = np.empty((X.shape[0], len(self._forests)), dtype=np.float64)
        for j, forest in enumerate(self._forests):
            out[:, j] = forest.predict(X)
        return out

    def predict_one(self, x: Any) -> np.ndarray:
        """(n_targets,) predictions for one feature vector of shape (n_features,)."""
        x = self._check_x(x, 1)
        return self.predict(x[None, :])[0]

    def predict_dict(self, x: Any) -> dict[str, float]:
        """One feature vector -> {target: value}."""
        return dict(zip(self.targets, (float(v) for v in self.predict_one(x)), strict=True))
