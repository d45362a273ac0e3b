"""`ppg-edge data splits` and `ppg-edge data check-beats`."""
from __future__ import annotations

import json

import numpy as np

from ppg_edge.cli import main
from ppg_edge.evaluate.detectors import get_detector
from ppg_edge.metrics.peaks import peak_scores


def test_committed_splits_match_the_data(data_root, capsys):
    assert main(["data", "--data-root", str(data_root), "splits", "--json"]) == 0
    rows = {r["split"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["peaks"]["subjects"] == 40 and rows["peaks"]["matches_data"]
    assert rows["ppg-bp-10fold"]["subjects"] == 189
    assert len(rows["ppg-bp-10fold"]["parts"]) == 10


def test_check_beats_exit_code_follows_the_bound(monkeypatch, tmp_path, capsys):
    from ppg_edge.data import bidmc

    rows = [dict(record_id="bidmc_01", median_abs_diff_bpm=0.4),
            dict(record_id="bidmc_02", median_abs_diff_bpm=2.6)]
    monkeypatch.setattr(bidmc, "agreement_table", lambda folder: rows)
    assert main(["data", "--data-root", str(tmp_path), "check-beats", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["over_bound"] == ["bidmc_02"]
    assert main(["data", "--data-root", str(tmp_path), "check-beats", "--json",
                 "--max-mad-bpm", "3"]) == 0


def test_dwt_baseline_is_a_registered_detector():
    from ppg_edge.synth import synth_ppg

    fs = 125.0
    s = synth_ppg(30.0, fs, np.random.default_rng(3), hr_bpm=72)
    peaks, det = s.peaks, get_detector("dwt-baseline").detect(s.signal, fs)
    assert peak_scores(peaks, det, fs)["f1"] > 0.98
