"""HistGradientBoosting export (convert.trees) and the numpy evaluator (edge_runtime.trees)."""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: E402

from ppg_edge.convert.trees import INF_THRESHOLD, check_export, export_hgb  # noqa: E402
from ppg_edge.edge_runtime.trees import TreeEnsemble  # noqa: E402
from ppg_edge.errors import DataError, ModelError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 6
NAMES = [f"f{i}" for i in range(N_FEATURES)]
TARGETS = ["sbp", "dbp"]


def _rows(rng, n, nan_frac):
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < nan_frac] = np.nan
    return X


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(7)
    X = _rows(rng, 1500, 0.1)
    # Missingness itself carries signal, so the trees learn NaN routing (both directions).
    sbp = 120 + 8 * np.nan_to_num(X[:, 0]) + 6 * np.isnan(X[:, 1]) + rng.normal(size=len(X))
    dbp = 75 + 4 * np.nan_to_num(X[:, 2]) ** 2 - 5 * np.isnan(X[:, 3]) + rng.normal(size=len(X))
    models = [HistGradientBoostingRegressor(max_iter=80, max_leaf_nodes=15, random_state=s).fit(X, y)
              for s, y in ((1, sbp), (2, dbp))]
    return models, export_hgb(models, NAMES, TARGETS)


@pytest.fixture(scope="module")
def fresh():
    rng = np.random.default_rng(99)
    X = _rows(rng, 3000, 0.25)
    X[:20] = np.nan  # all-NaN rows
    X[20:40, :3] = np.nan
    return X


def _sk(models, X):
    return np.column_stack([m.predict(X) for m in models])


def test_document_shape(fitted):
    models, doc = fitted
    assert doc["format"] == "ppg-edge-trees" and doc["version"] == 1
    assert doc["feature_names"] == NAMES and doc["targets"] == TARGETS
    assert [e["target"] for e in doc["ensembles"]] == TARGETS
    assert [len(e["trees"]) for e in doc["ensembles"]] == [m.n_iter_ for m in models]
    assert doc["ensembles"][0]["baseline"] == pytest.approx(float(models[0]._baseline_prediction.ravel()[0]))
    tree = doc["ensembles"][0]["trees"][0]
    assert len({len(tree[k]) for k in tree}) == 1
    # Any missing_left node in either direction, and NaN-split (inf) thresholds exported finite.
    flags = [v for e in doc["ensembles"] for t in e["trees"] for v, leaf in zip(t["missing_left"], t["leaf"])
             if not leaf]
    assert any(flags) and not all(flags)
    json.dumps(doc, allow_nan=False)  # strict JSON


def test_device_equals_sklearn(fitted, fresh):
    models, doc = fitted
    ens = TreeEnsemble.from_dict(doc)
    got = ens.predict(fresh)
    ref = _sk(models, fresh)
    assert got.shape == (len(fresh), 2) and got.dtype == np.float64
    assert np.max(np.abs(got - ref)) <= 1e-9
    # all-NaN rows follow the missing branches: they equal sklearn and are not all equal to baseline
    assert np.max(np.abs(got[:20] - ref[:20])) <= 1e-9
    assert np.ptp(got[:, 0]) > 10  # the model does vary
    assert check_export(models, doc, fresh) <= 1e-9
    assert ens.feature_names == tuple(NAMES) and ens.targets == tuple(TARGETS) and ens.n_features == N_FEATURES


def test_values_on_thresholds_go_left(fitted):
    """Rows whose features sit exactly on split thresholds: sklearn's ``<=`` sends them left."""
    models, doc = fitted
    rng = np.random.default_rng(5)
    by_feature = {j: [] for j in range(N_FEATURES)}
    for e in doc["ensembles"]:
        for t in e["trees"]:
            for f, thr, leaf in zip(t["feature"], t["threshold"], t["leaf"]):
                if not leaf and thr < INF_THRESHOLD:
                    by_feature[f].append(thr)
    X = np.column_stack([rng.choice(by_feature[j], 2000) if by_feature[j] else rng.normal(size=2000)
                         for j in range(N_FEATURES)])
    got = TreeEnsemble.from_dict(doc).predict(X)
    assert np.max(np.abs(got - _sk(models, X))) <= 1e-9
    assert check_export(models, doc, X) <= 1e-9


def test_predict_one_and_chunks(fitted, fresh):
    models, doc = fitted
    ens = TreeEnsemble.from_dict(doc)
    ref = _sk(models, fresh)
    for i in (0, 25, 1234):
        one = ens.predict_one(fresh[i])
        assert one.shape == (2,)
        assert np.max(np.abs(one - ref[i])) <= 1e-9
    assert ens.predict(fresh[:0]).shape == (0, 2)


def test_inf_threshold_split_on_nans():
    """A feature that is NaN or constant-ish: sklearn splits 'NaN vs the rest' with threshold +inf."""
    rng = np.random.default_rng(3)
    X = np.ones((600, 2))
    X[:, 1] = rng.normal(size=600)
    nan = rng.random(600) < 0.5
    X[nan, 0] = np.nan
    y = 10.0 * nan + rng.normal(size=600) * 0.1
    m = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(X, y)
    doc = export_hgb([m], ["a", "b"], ["y"])
    thr = [t for tr in doc["ensembles"][0]["trees"] for t in tr["threshold"]]
    assert INF_THRESHOLD in thr
    Xt = np.array([[1.0, 0.0], [np.nan, 0.0], [1e300, 0.0], [-5.0, np.nan]])
    assert np.max(np.abs(TreeEnsemble.from_dict(doc).predict(Xt)[:, 0] - m.predict(Xt))) <= 1e-9


def test_json_round_trip_and_file(fitted, fresh, tmp_path):
    models, doc = fitted
    back = json.loads(json.dumps(doc))
    ref = _sk(models, fresh)
    assert np.max(np.abs(TreeEnsemble.from_dict(back).predict(fresh) - ref)) <= 1e-9
    path = tmp_path / "bp_trees.json"
    path.write_text(json.dumps(doc))
    ens = TreeEnsemble.load(path)
    assert np.max(np.abs(ens.predict(fresh) - ref)) <= 1e-9


def _bad(doc, edit):
    d = copy.deepcopy(doc)
    edit(d)
    return d


def _tree0(d):
    return d["ensembles"][0]["trees"][0]


def _first_split(t):
    return t["leaf"].index(False)


@pytest.mark.parametrize("edit, msg", [
    (lambda d: _tree0(d)["left"].__setitem__(_first_split(_tree0(d)), 10**6), "out of range"),
    (lambda d: _tree0(d)["right"].__setitem__(_first_split(_tree0(d)), -3), "out of range"),
    (lambda d: _tree0(d)["left"].__setitem__(1 if not _tree0(d)["leaf"][1] else 0, 0), "not after it"),
    (lambda d: _tree0(d)["feature"].__setitem__(0, N_FEATURES), "splits on feature 6"),
    (lambda d: _tree0(d)["value"].pop(), "differ in length"),
    (lambda d: _tree0(d)["threshold"].__setitem__(0, float("nan")), "not finite"),
    (lambda d: _tree0(d).pop("leaf"), "lacks the node arrays"),
    (lambda d: d.__setitem__("format", "xgboost"), "format is 'xgboost'"),
    (lambda d: d.__setitem__("version", 2), "version 2"),
    (lambda d: d.__setitem__("targets", ["dbp", "sbp"]), "ensembles are for the targets"),
    (lambda d: d["ensembles"].pop(), "ensembles are for the targets"),
    (lambda d: d["ensembles"][1].__setitem__("baseline", None), "baseline must be a finite"),
    (lambda d: d.__setitem__("feature_names", NAMES[:-1]), "splits on feature 5"),
])
def test_validation_errors(fitted, edit, msg):
    _, doc = fitted
    with pytest.raises(ModelError, match=msg) as e:
        TreeEnsemble.from_dict(_bad(doc, edit), source="bp_trees.json")
    assert "bp_trees.json" in str(e.value)


def test_cycle_refused():
    """A hand-made tree whose child points back to the root: a cycle."""
    tree = {"feature": [0, -1, -1], "threshold": [0.5, 0.0, 0.0], "missing_left": [True, False, False],
            "left": [1, -1, -1], "right": [2, -1, -1], "leaf": [False, True, True], "value": [0.0, 1.0, 2.0]}
    doc = {"format": "ppg-edge-trees", "version": 1, "feature_names": ["a"], "targets": ["y"],
           "ensembles": [{"target": "y", "baseline": 0.5, "trees": [tree]}]}
    ens = TreeEnsemble.from_dict(doc)
    assert ens.predict(np.array([[0.0], [1.0], [np.nan]]))[:, 0].tolist() == [1.5, 2.5, 1.5]
    cyc = copy.deepcopy(doc)
    cyc["ensembles"][0]["trees"][0].update(leaf=[False, False, True], left=[1, 0, -1], right=[2, 2, -1],
                                           feature=[0, 0, -1])
    with pytest.raises(ModelError, match="not after it"):
        TreeEnsemble.from_dict(cyc)
    leafy = copy.deepcopy(doc)
    leafy["ensembles"][0]["trees"][0]["left"] = [1, 2, -1]
    with pytest.raises(ModelError, match="leaf node 1 has children"):
        TreeEnsemble.from_dict(leafy)


def test_bad_inputs(fitted):
    _, doc = fitted
    ens = TreeEnsemble.from_dict(doc)
    with pytest.raises(DataError, match=r"shape \(n, 6\)"):
        ens.predict(np.zeros((3, N_FEATURES + 1)))
    with pytest.raises(DataError, match=r"shape \(6,\)"):
        ens.predict_one(np.zeros(N_FEATURES - 1))
    X = np.zeros((3, N_FEATURES))
    X[1, 2] = np.inf
    with pytest.raises(DataError, match="inf"):
        ens.predict(X)
    with pytest.raises(DataError, match="numbers"):
        ens.predict([["a"] * N_FEATURES])


def test_load_errors(fitted, tmp_path):
    _, doc = fitted
    with pytest.raises(ModelError, match="not found"):
        TreeEnsemble.load(tmp_path / "absent.json")
    text = json.dumps(doc)
    trunc = tmp_path / "trunc.json"
    trunc.write_text(text[: len(text) // 2])
    with pytest.raises(ModelError, match="not valid JSON") as e:
        TreeEnsemble.load(trunc)
    assert "trunc.json" in str(e.value)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ModelError, match="must be a JSON object"):
        TreeEnsemble.load(lst)


def test_check_export_catches_tampering(fitted, fresh):
    models, doc = fitted
    bad = copy.deepcopy(doc)
    tree = bad["ensembles"][1]["trees"][3]
    leaf = tree["leaf"].index(True)
    tree["value"][leaf] += 0.5
    with pytest.raises(ModelError, match=r"max \|diff\| 0.5 > 1e-09 for target 'dbp' at row"):
        check_export(models, bad, fresh)


def test_export_refusals(fitted):
    models, _ = fitted
    with pytest.raises(ModelError, match="2 models for 1 targets"):
        export_hgb(models, NAMES, ["sbp"])
    with pytest.raises(ModelError, match="5 feature names"):
        export_hgb(models, NAMES[:5], TARGETS)
    rng = np.random.default_rng(0)
    other = HistGradientBoostingRegressor(max_iter=3).fit(rng.normal(size=(200, 4)), rng.normal(size=200))
    with pytest.raises(ModelError, match="different numbers of features"):
        export_hgb([models[0], other], NAMES, TARGETS)
    Xc = np.column_stack([rng.integers(0, 4, 300), rng.normal(size=300)]).astype(float)
    cat = HistGradientBoostingRegressor(max_iter=3, categorical_features=[0]).fit(Xc, Xc[:, 0] * 3)
    with pytest.raises(ModelError, match="categorical"):
        export_hgb([cat], ["c", "x"], ["y"])
    pois = HistGradientBoostingRegressor(max_iter=3, loss="poisson").fit(Xc, Xc[:, 0] + 1)
    with pytest.raises(ModelError, match="poisson"):
        export_hgb([pois], ["c", "x"], ["y"])


def test_device_module_imports_numpy_and_stdlib_only():
    import sys

    tree = ast.parse((ROOT / "edge_runtime" / "trees.py").read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports (only ppg_edge.errors from the package)"
            if node.module == "ppg_edge.errors":
                continue
            mods.add((node.module or "").split(".")[0])
    assert "numpy" in mods
    third = {m for m in mods - {"numpy", "__future__"} if m not in sys.stdlib_module_names}
    assert not third, f"edge_runtime/trees.py imports {third}"
