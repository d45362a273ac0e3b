"""The soak step (hil_tests/soak.py): 10 minutes of signal (soak-10min) through emulated chip ->
real driver -> Pipeline in one process (`ppg-edge hil run`, as a user runs it), with I2C errors, cut-off bursts and FIFO overflows injected;
every sample accounted for, no duplicate beat, flat RSS, F1 as the offline runs give. Plus the checks
themselves failing on bad input (so they can fail)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import run_hil_suite

from ppg_edge.hil_tests import soak
from ppg_edge.hil_tests.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
INT8 = REPO / "models" / "device" / "peaks-Type30-int8.tflite"


@pytest.fixture(scope="module")
def soak10(data_root, tmp_path_factory):
    """The suite as a user runs it: ``ppg-edge hil run`` in a process of its own. The RSS check
    measures that process; inside pytest's, the heap left by the tests before it (2 GB, its
    allocator's thresholds raised by freed arrays) made RSS grow by up to 7 MB without a leak."""
    if not INT8.is_file():
        pytest.skip(f"no committed device model {INT8}")
    folder, res, _, _ = run_hil_suite("soak-10min", data_root, tmp_path_factory.mktemp("soak") / "runs", INT8)
    return folder, res


def test_soak_10min_accounts_for_every_sample(soak10):
    _, res = soak10
    st = res["steps"][0]
    a = st["soak"]["accounting"]
    assert st["status"] == "ok" and st["soak"]["signal_s"] == pytest.approx(600, abs=0.1)
    assert a["pipeline_samples"] + a["pipeline_lost"] == a["chip_produced"] - a["chip_unread_at_end"]
    assert a["pipeline_lost"] == a["driver_samples_lost"] == sum(a["lost_by_reason"].values())
    assert a["reported_lost_by_reason"] == a["lost_by_reason"]
    # the faults really happened: samples were lost to both reasons, and I2C errors were retried
    assert a["lost_by_reason"]["fifo_overflow"] > 0 and a["lost_by_reason"]["i2c_burst_cut_off"] > 0
    assert st["soak"]["faults"]["driver_i2c_errors"] > 0


def test_soak_10min_beats_rss_and_f1(soak10):
    _, res = soak10
    s = res["steps"][0]["soak"]
    assert s["beats"]["total"] > 500
    assert s["beats"]["duplicates"] == 0 and s["beats"]["within_refractory"] == 0
    rss = [r["rss_kb"] for r in s["rss"]]
    assert len(rss) >= 10 and max(rss[1:]) - rss[0] <= 5120
    rows = s["f1"]["per_template"]
    assert {r["kind"] for r in rows} == {"record", "noise"}
    for r in rows:
        assert r["labels_scored"] > 50
        assert abs(r["f1_soak"] - r["f1_offline"]) <= 0.02, r
    assert s["f1"]["pooled_soak"] >= 0.95


def test_soak_10min_results_and_report(soak10):
    folder, res = soak10
    assert res["status"] == "ok" and res["checks_failed"] == 0
    names = {c["check"] for c in res["checks"]}
    assert {"exact_accounting", "max_rss_growth_kb", "no_duplicate_beats", "max_f1_delta_vs_offline"} <= names
    saved = json.loads((folder / "results.json").read_text())
    assert saved["steps"][0]["soak"]["in_process"]["pid"] > 0
    report = (folder / "report.md").read_text()
    assert "ran in this (the measured) process" in report and "PASS soak-10min: exact_accounting" in report


def test_checks_fail_on_a_lost_sample_a_duplicate_beat_rss_growth_and_an_f1_drop(soak10):
    _, res = soak10
    step = load_suite("soak-10min")["steps"][0]
    base = res["steps"][0]
    bad = copy.deepcopy(base)
    bad["soak"]["accounting"]["pipeline_samples"] -= 1                  # one sample gone silently
    bad["soak"]["beats"]["duplicates"] = 1
    bad["soak"]["rss"].append({"signal_s": 601, "rss_kb": bad["soak"]["rss"][0]["rss_kb"] + 6000})
    bad["soak"]["f1"]["per_template"][0]["f1_soak"] = bad["soak"]["f1"]["per_template"][0]["f1_offline"] - 0.05
    status = {c["check"]: c["status"] for c in soak.soak_checks(step, bad)}
    assert status["exact_accounting"] == status["no_duplicate_beats"] == "fail"
    assert status["max_rss_growth_kb"] == status["max_f1_delta_vs_offline"] == "fail"
    assert {c["check"]: c["status"] for c in soak.soak_checks(step, base)}["exact_accounting"] == "pass"


def test_sink_counts_a_beat_twice_and_beats_within_the_refractory():
    sink = soak.SoakSink(None, refractory_s=0.3)
    for idx, t in ((100, 0.8), (200, 1.6), (200, 1.6), (230, 1.84)):
        sink.emit({"type": "beat", "index": idx, "t": t, "sensor_index": t * 100})
    assert sink.counts["duplicate_beats"] == 1 and sink.counts["beats_within_refractory"] == 2
