"""Leave-one-dataset-out evaluation: the drop is the in-distribution F1 minus the held-out one."""
from __future__ import annotations

import json

import pytest

from ppg_edge.cli import main
from ppg_edge.errors import ConfigError
from ppg_edge.evaluate import lodo


@pytest.fixture
def short_bidmc(data_root, monkeypatch):
    from dataclasses import replace

    from ppg_edge import data
    from ppg_edge.evaluate import selection

    rec = data.load_record("bidmc", "bidmc_14", root=data_root)
    n = int(60 * rec.fs)
    short = replace(rec, signals={"ppg": rec.ppg[:n]}, rates={"ppg": rec.fs}, peaks=rec.peaks[rec.peaks < n])
    other = replace(short, record_id="bidmc_x", subject_id="bidmc_x")
    monkeypatch.setattr(data, "load", lambda name, root=None, progress=False: [short, other])
    monkeypatch.setattr(selection, "select_records", lambda *a, **k: [short])
    return short


def test_drop_and_tables(short_bidmc):
    doc = lodo.evaluate_lodo({"bidmc": "dwt-baseline"}, "nk-elgendi", ("clean", "gaussian:5"),
                             classic=("nk-msptdfastv2",), progress=False)
    r = doc["datasets"]["bidmc"]
    assert r["records_whole"] == ["bidmc/bidmc_14", "bidmc/bidmc_x"] and r["records_test"] == ["bidmc/bidmc_14"]
    for c in ("clean", "gaussian:5"):
        t = r["test_subjects"][c]
        assert r["drop"][c] == pytest.approx(t[lodo.IN_DISTRIBUTION]["f1"] - t["without-bidmc"]["f1"])
        assert 0 < r["whole"][c]["without-bidmc"]["f1"] <= 1
    assert r["drop_at_gaussian_5_within_limit"] == (r["drop"]["gaussian:5"] <= lodo.DROP_LIMIT)
    json.dumps(doc, allow_nan=False)
    md = lodo.markdown(doc, "cmd")
    assert "held out whole (2 records)" in md and "| gaussian:5 |" in md
    with pytest.raises(ConfigError, match="at least one"):
        lodo.evaluate_lodo({}, "nk-elgendi")


def test_cli_rejects_a_without_that_names_no_model(capsys):
    assert main(["evaluate", "lodo", "--without", "bidmc", "--in-distribution", "Type30"]) == 1
    assert "DATASET=MODEL" in capsys.readouterr().err
