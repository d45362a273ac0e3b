"""Subject-wise splits and the committed split files."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from ppg_edge.data import splits
from ppg_edge.errors import DataNotFoundError, SplitError

SUBJECTS = [f"s{i:03d}" for i in range(57)]


def test_holdout_partitions_deterministically():
    a = splits.holdout(SUBJECTS, seed=7)
    b = splits.holdout(list(reversed(SUBJECTS)) + SUBJECTS[:5], seed=7)  # order and repeats do not matter
    assert a == b
    assert sorted(a["train"] + a["val"] + a["test"]) == SUBJECTS
    assert [len(a[p]) for p in splits.PARTS] == [40, 9, 8]  # 39.9, 8.55, 8.55 by largest remainder
    splits.check_split(a)
    assert splits.holdout(SUBJECTS, seed=8) != a
    small = splits.holdout(["a", "b", "c"], seed=1)
    assert all(len(small[p]) == 1 for p in splits.PARTS)


def test_holdout_bad_input():
    with pytest.raises(SplitError, match="no subjects"):
        splits.holdout([], seed=1)
    with pytest.raises(SplitError, match="summing to 1"):
        splits.holdout(SUBJECTS, fractions=(0.5, 0.2, 0.2), seed=1)
    with pytest.raises(SplitError, match="three"):
        splits.holdout(SUBJECTS, fractions=(0.5, 0.5), seed=1)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_kfold_covers_every_subject_once(k):
    folds = splits.kfold(SUBJECTS, k, seed=3)
    assert len(folds) == k
    assert sorted(s for f in folds for s in f) == SUBJECTS
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    splits.check_split(folds)
    assert splits.kfold(SUBJECTS, k, seed=3) == folds


def test_kfold_stratified_balances_classes():
    strata = {s: ("hyper" if i % 4 == 0 else "normal") for i, s in enumerate(SUBJECTS)}  # 15 hyper
    folds = splits.kfold(SUBJECTS, 5, seed=3, strata=strata)
    per_fold = [Counter(strata[s] for s in f)["hyper"] for f in folds]
    assert per_fold == [3, 3, 3, 3, 3]
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    with pytest.raises(SplitError, match="k must be"):
        splits.kfold(SUBJECTS, 1, seed=3)
    with pytest.raises(SplitError, match="k must be"):
        splits.kfold(["a", "b"], 3, seed=3)


def test_check_split_fails_on_overlap():
    with pytest.raises(SplitError, match="'s001' appears in train and test"):
        splits.check_split({"train": ["s000", "s001"], "val": ["s002"], "test": ["s001"]})
    with pytest.raises(SplitError, match="'b' appears in fold 0 and fold 2"):
        splits.check_split([["a", "b"], ["c"], ["b"]])
    with pytest.raises(SplitError, match="appears in fold 0$"):
        splits.check_split([["a", "a"], ["c"]])
    with pytest.raises(SplitError, match="neither parts"):
        splits.check_split({"training": ["a"]})
    with pytest.raises(SplitError, match=r"2 subject\(s\) in both.*\['b', 'c'\]"):
        splits.assert_disjoint(["a", "b", "c"], ["c", "b", "d"])
    splits.assert_disjoint(["a"], ["b"])


def test_check_split_fails_on_tampered_document():
    doc = splits._doc("t", "holdout", ["x"], ["a", "b", "c"], train=["a"], val=["b"], test=["c"])
    splits.check_split(doc)
    missing = dict(doc, test=[])
    with pytest.raises(SplitError, match="missing \\['c'\\]"):
        splits.check_split(missing)
    edited = dict(doc, subjects=["a", "b", "d"], test=["d"])
    with pytest.raises(SplitError, match="sha256"):
        splits.check_split(edited)


def test_load_split_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="no split 'nope'"):
        splits.load_split("nope", tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SplitError, match="not valid JSON"):
        splits.load_split("bad", tmp_path)
    (tmp_path / "dup.json").write_text(json.dumps({"train": ["a"], "val": [], "test": ["a"]}))
    with pytest.raises(SplitError, match="appears in train and test"):
        splits.load_split("dup", tmp_path)


def test_committed_files_are_valid_and_disjoint():
    for name in ("peaks", "ppg-bp-10fold", "ppg-bp-5fold"):
        doc = splits.load_split(name)
        assert doc["seed"] == splits.SEED and doc["sha256"] == splits.subjects_sha256(doc["subjects"])
    peaks = splits.load_split("peaks")
    assert {s.split("/")[0] for s in peaks["subjects"]} == {"capnobase", "bidmc"}
    for p in splits.PARTS:  # both data sets are present in each part
        assert {s.split("/")[0] for s in peaks[p]} == {"capnobase", "bidmc"}
    assert [len(f) for f in splits.load_split("ppg-bp-10fold")["folds"]].count(19) == 9


def test_rebuild_from_real_data_reproduces_committed_files(data_root, tmp_path):
    built = splits.build_committed_splits(data_root)
    assert set(built) == {"peaks", "ppg-bp-10fold", "ppg-bp-5fold"}
    for name, doc in built.items():
        committed = (splits.SPLITS_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert splits.dumps(doc) == committed, f"{name}.json differs from a rebuild; run python -m ppg_edge.data.splits"
    # coverage: every subject with signals, and nothing else
    capno = {f"capnobase/{p.stem.split('_')[1]}" for p in (data_root / "capnobase").glob("capnobase_*.csv")}
    bid = {f"bidmc/{p.name[:8]}" for p in (data_root / "bidmc").rglob("bidmc_*_Signals.csv")}
    bp = {f"ppg-bp/{p.name.split('_')[0]}" for p in (data_root / "ppg-bp" / "Data File" / "0_subject").glob("*_*.txt")}
    assert len(capno) == 32 and len(bid) == 8 and len(bp) == 189
    assert set(built["peaks"]["subjects"]) == capno | bid
    assert set(built["ppg-bp-10fold"]["subjects"]) == bp == set(built["ppg-bp-5fold"]["subjects"])
    paths = splits.write_committed_splits(data_root, tmp_path)
    assert sorted(p.name for p in paths) == ["peaks.json", "ppg-bp-10fold.json", "ppg-bp-5fold.json"]
