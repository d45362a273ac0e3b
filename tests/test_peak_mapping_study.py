"""The val-subject study that picks a trained model's raw-axis mapping (and threshold)."""
from __future__ import annotations

import shutil

import pytest

from ppg_edge.errors import ConfigError

pytest.importorskip("tensorflow")


@pytest.fixture
def one_val_record(data_root, monkeypatch):
    from dataclasses import replace

    from ppg_edge import data
    from ppg_edge.evaluate import selection

    rec = data.load_record("capnobase", "0038", root=data_root)
    n = int(40 * rec.fs)
    short = replace(rec, signals={"ppg": rec.ppg[:n]}, rates={"ppg": rec.fs}, peaks=rec.peaks[rec.peaks < n])
    seen = {}

    def select(datasets, part, *a, **k):
        seen["datasets"], seen["part"] = list(datasets), part
        return [short]

    monkeypatch.setattr(selection, "select_records", select)
    return seen


def test_joint_study_picks_a_mapping_and_a_threshold(one_val_record, tmp_path):
    from ppg_edge.train.peaks.detector import choose_mapping, main

    model = tmp_path / "Type16"
    shutil.copytree("models/peaks/Type16", model)
    cands = (("snap", 0.03, 0.0, 0.0), ("shift", None, 0.0, 0.0))
    study = choose_mapping([model], conditions=("clean", "gaussian:10"), candidates=cands,
                           thresholds=(0.3, 0.5), progress=False)
    assert one_val_record == {"datasets": ["capnobase", "bidmc"], "part": "val"}
    m = study["models"]["Type16"]
    assert len(m["candidates"]) == 4 and len({c["label"] for c in m["candidates"]}) == 4
    best = max((c for c in m["candidates"] if c["ade_ms"]["clean"] <= 5.0) or m["candidates"],
               key=lambda c: c["mean_f1_50ms"])
    assert m["threshold"] == best["threshold"] and m["choice"]["mapping"] == best["mapping"]
    # two models of one name cannot share a study; a leave-one-dataset-out model reads its own sets
    with pytest.raises(ConfigError, match="two models named"):
        choose_mapping([model, model], conditions=("clean",), candidates=cands[:1], progress=False)
    report = model / "report.json"
    text = report.read_text().replace('"bidmc"', '"capnobase_only_marker"')
    report.write_text(text)
    other = tmp_path / "other" / "Type16"
    shutil.copytree("models/peaks/Type16", other)
    with pytest.raises(ConfigError, match="different data sets"):
        choose_mapping([model, other], conditions=("clean",), candidates=cands[:1], progress=False)
    assert main(["--choose-mapping", str(other), "--with-thresholds", "--write"]) == 0
    import json

    meta = json.loads((other / "Type16.json").read_text())
    assert meta["threshold"] in (0.2, 0.3, 0.4, 0.5, 0.6) and "threshold_training" in meta
    assert meta["raw_axis"]["chosen_on"] == "val subjects of split peaks (capnobase, bidmc)"
