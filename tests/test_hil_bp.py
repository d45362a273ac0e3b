"""The bp step (hil_tests/bp_check.py): wfdb-samples/mixedsignals through emulated chip -> real driver ->
Pipeline with the BP model in one process (`ppg-edge hil run --suite accuracy-bp`, as a user runs it),
beside the host's BPStage of the same model (trees) and of the float32 model (cnn-lstm int8 on the
device), and against the record's ABP. Plus the checks failing on doctored results and bad steps."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import run_hil_suite

from ppg_edge import manifest as mf
from ppg_edge.errors import ConfigError
from ppg_edge.hil_tests import bp_check
from ppg_edge.hil_tests.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
TREES = REPO / "models" / "device" / "bp-ppg-100hz.trees"
CNN8 = REPO / "models" / "device" / "bp-cnn-lstm-100hz-int8.tflite"
PEAKS8 = REPO / "models" / "device" / "peaks-Type30-int8.tflite"


@pytest.fixture(scope="module")
def bp_suite(data_root, tmp_path_factory):
    """``ppg-edge hil run --suite accuracy-bp`` in a process of its own; (session folder, results)."""
    for m in (TREES, CNN8, PEAKS8):
        if not m.is_file():
            pytest.skip(f"no committed device model {m}")
    folder, res, head, p = run_hil_suite("accuracy-bp", data_root, tmp_path_factory.mktemp("bp") / "runs",
                                         PEAKS8, timeout=600)
    assert p.returncode == 0 and head["status"] == "ok", p.stderr[-3000:]
    return folder, res


def _step(res, name):
    return next(s for s in res["steps"] if s["name"] == name)


def test_suite_passes_in_process(bp_suite):
    folder, res = bp_suite
    assert res["status"] == "ok" and res["checks_failed"] == 0
    assert res["dut_where"].startswith("this process (bp:")
    for st in res["steps"]:
        names = {c["check"]: c["status"] for c in st["checks"]}
        assert names == {"completed": "pass", "min_estimates": "pass", "max_mean_abs_diff_vs_host_mmhg": "pass",
                         "max_abs_diff_vs_host_mmhg": "pass"}, st["name"]
        assert st["bp"]["in_process"]["pid"] > 0 and st["bp"]["sensor_fs"] == 100.0
    report = (folder / "report.md").read_text()
    assert "ran in this (the harness's) process" in report
    assert "PASS bp-trees: max_mean_abs_diff_vs_host_mmhg" in report and "against the ABP beats" in report


def test_trees_device_close_to_host_but_not_the_same_run(bp_suite):
    _, res = bp_suite
    b = _step(res, "bp-trees")["bp"]
    d, vh = b["device"], b["vs_host"]
    assert 95 <= d["estimates"] <= 115 and d["lost"] == 0      # 230 s of record, one estimate per 2.1 s hop
    assert vh["matched"] == d["estimates"] and vh["unmatched_device"] == 0
    # one time base: every match is the sensor lag (3.75 ms at 400 Hz / 4) apart, not a hop
    assert b["sensor_lag_s"] == pytest.approx(0.00375)
    assert all(abs(dt) < 0.01 for dt in vh["time_offsets_s"])
    for q in ("sbp", "dbp"):
        # the device path changes the signal (decimation, 18-bit codes, sign), so not identical ...
        assert 0.05 < vh[q]["mean_abs"] <= 5.0 and vh[q]["max_abs"] <= 15.0
        assert vh[q]["n"] == vh["matched"]
    assert "dbp" in d["withheld"] and "sbp" not in d["withheld"]   # DBP's CV MASE is above the limit


def test_profile_trees_on_the_device_take_the_profile_as_the_host_does(bp_suite):
    _, res = bp_suite
    st = _step(res, "bp-trees-profile")
    b = st["bp"]
    assert st["profile"] == {"age": 45.0, "sex": "M", "height_cm": 178.0, "weight_kg": 80.0}
    assert b["device"]["estimates"] >= 95 and b["vs_host"]["matched"] == b["device"]["estimates"]
    for q in ("sbp", "dbp"):
        assert 0.05 < b["vs_host"][q]["mean_abs"] <= 3.5
    # not the PPG-only trees under another name: the profile moves the estimates
    plain = _step(res, "bp-trees")["bp"]["vs_reference"]
    assert b["vs_reference"]["sbp"]["device_mean"] != plain["sbp"]["device_mean"]


def test_trees_reference_from_the_abp(bp_suite):
    _, res = bp_suite
    ref = _step(res, "bp-trees")["bp"]["vs_reference"]
    man = json.loads(TREES.with_suffix(".json").read_text())
    assert ref["status"] == "ok" and ref["abp_beats"] > 200 and ref["stretches"] >= 90
    assert ref["naive_mean"] == man["naive_mean"]
    for q in ("sbp", "dbp"):
        r = ref[q]
        assert r["cv_mae"] == man["cv"][q]["mae"] and r["cv_naive_mae"] == man["cv"][q]["naive_mae"]
        assert 40 < r["ref_mean"] < 220 and r["n"] == ref["stretches"]
        assert r["device_mae"] > 0 and r["host_mae"] > 0 and r["naive_mae"] > 0
        # device and host run one model on one record: their errors against the ABP differ by at most
        # the largest |device - host| (the triangle inequality, on any subset of the pairs; 0.01 of rounding)
        assert abs(r["device_mae"] - r["host_mae"]) <= _step(res, "bp-trees")["bp"]["vs_host"][q]["max_abs"] + 0.01
        # the naive MAE is |naive_mean - ABP| averaged over the same stretches (this patient's ABP lies
        # above the training mean throughout, so it is the difference of the means)
        assert r["naive_mae"] == pytest.approx(abs(r["ref_mean"] - man["naive_mean"][("sbp", "dbp").index(q)]), abs=0.05)


def test_cnn_int8_device_vs_float32_host(bp_suite):
    _, res = bp_suite
    st = _step(res, "bp-cnn-lstm-int8-vs-float32")
    b = st["bp"]
    assert st["model"] == CNN8.name and st["host_model"] == "bp-cnn-lstm-100hz-float32.tflite"
    vh, ref = b["vs_host"], b["vs_reference"]
    assert vh["matched"] == b["device"]["estimates"] >= 95
    man = mf.read_manifest(mf.manifest_path_for(CNN8))
    for q in ("sbp", "dbp"):
        assert vh[q]["mean_abs"] <= 0.1 and vh[q]["max_abs"] <= 1.0
        assert ref[q]["cv_mae"] == man["cv"][q]["mae"] and ref[q]["naive_mae"] is None  # no naive_mean
        assert ref[q]["device_mae"] > 0
    # its CV MASE (0.98 / 1.00) says it is the population mean: both values withheld, and why
    assert set(b["device"]["withheld"]) == {"sbp", "dbp"}


def test_checks_fail_on_a_difference_above_tolerance_and_too_few_estimates(bp_suite):
    _, res = bp_suite
    steps = {s["name"]: s for s in load_suite("accuracy-bp")["steps"]}
    step = steps["bp-trees"]
    base = _step(res, "bp-trees")
    assert all(c["status"] == "pass" for c in bp_check.bp_checks(step, base))
    bad = copy.deepcopy(base)
    bad["bp"]["vs_host"]["sbp"]["mean_abs"] = step["expect"]["max_mean_abs_diff_vs_host_mmhg"] + 0.1
    bad["bp"]["vs_host"]["dbp"]["max_abs"] = step["expect"]["max_abs_diff_vs_host_mmhg"] + 0.1
    bad["bp"]["device"]["estimates"] = step["expect"]["min_estimates"] - 1
    status = {c["check"]: c["status"] for c in bp_check.bp_checks(step, bad)}
    assert status == {"completed": "pass", "min_estimates": "fail", "max_mean_abs_diff_vs_host_mmhg": "fail",
                      "max_abs_diff_vs_host_mmhg": "fail"}
    none = copy.deepcopy(base)                       # nothing matched: the diff checks cannot pass
    none["bp"]["vs_host"].update(matched=0, sbp={"n": 0, "mean_abs": None, "max_abs": None},
                                 dbp={"n": 0, "mean_abs": None, "max_abs": None})
    none["status"], none["error"] = "failed", "HardwareError: the bus went away"
    status = {c["check"]: c["status"] for c in bp_check.bp_checks(step, none)}
    assert status["completed"] == status["max_mean_abs_diff_vs_host_mmhg"] == status["max_abs_diff_vs_host_mmhg"] == "fail"
    # a per-quantity limit: only SBP's is tightened below what was measured
    tight = {**step, "expect": {"max_mean_abs_diff_vs_host_mmhg": {"sbp": 0.01}}}
    c = bp_check.bp_checks(tight, base)[-1]
    assert c["status"] == "fail" and "SBP" in c["detail"] and "DBP" not in c["detail"]


def test_bad_steps_are_refused(data_root, tmp_path):
    board = _board()
    with pytest.raises(ConfigError, match="unknown key 'bp_modle'"):
        bp_check.run_bp_step({"name": "x", "kind": "bp", "bp_modle": str(TREES)}, board, data_root=data_root)
    with pytest.raises(ConfigError, match="needs bp_model"):
        bp_check.run_bp_step({"name": "x", "kind": "bp"}, board, data_root=data_root)
    with pytest.raises(ConfigError, match="unknown expectation 'max_diff'"):
        bp_check.run_bp_step({"name": "x", "bp_model": str(TREES), "expect": {"max_diff": 1}}, board,
                             data_root=data_root)
    with pytest.raises(ConfigError, match="not found"):
        bp_check.run_bp_step({"name": "x", "bp_model": "models/device/nope.trees"}, board, data_root=data_root)
    with pytest.raises(ConfigError, match="DATASET/ID"):
        bp_check.run_bp_step({"name": "x", "bp_model": str(TREES), "record": "mixedsignals"}, board,
                             data_root=data_root)
    with pytest.raises(ConfigError, match="profile"):  # a ppg+profile model without the wearer's profile
        bp_check.run_bp_step({"name": "x", "bp_model": str(TREES.with_name("bp-ppg-profile-100hz.trees"))}, board,
                             data_root=data_root)
    with pytest.raises(ConfigError, match="sex"):
        bp_check.run_bp_step({"name": "x", "bp_model": str(TREES), "profile": {"age": 40, "sex": "?", "height_cm": 170,
                                                                              "weight_kg": 70}}, board, data_root=data_root)
    with pytest.raises(ConfigError, match="not a table"):
        bp_check.run_bp_step({"name": "x", "bp_model": str(TREES), "profile": "age 40"}, board, data_root=data_root)
    with pytest.raises(ConfigError, match="unknown quantities"):
        bp_check.bp_checks({"expect": {"max_abs_diff_vs_host_mmhg": {"map": 1}}}, {"bp": {}})
    suite = tmp_path / "s.toml"
    suite.write_text('[[step]]\nname = "b"\nkind = "bp"\n')
    with pytest.raises(ConfigError, match="needs bp_model"):
        load_suite(suite)


def test_a_record_without_abp_skips_the_reference_with_the_reason(data_root):
    if not TREES.is_file():
        pytest.skip(f"no committed device model {TREES}")
    res = bp_check.run_bp_step({"name": "capno", "record": "capnobase/0009", "seconds": 60,
                                "bp_model": "models/device/bp-ppg-100hz.trees"}, _board(), data_root=data_root)
    b = res["bp"]
    assert res["status"] == "ok" and res["gate"] == "classic" and res["peak_model"] is None
    assert b["vs_reference"]["status"] == "skipped" and "no ABP channel" in b["vs_reference"]["reason"]
    assert b["vs_host"]["matched"] >= 20 and b["vs_host"]["sbp"]["max_abs"] is not None
    checks = bp_check.bp_checks({"expect": {"min_estimates": 20}}, res)
    assert [c["status"] for c in checks] == ["pass", "pass"]
    assert any("no reference comparison: no ABP channel" in e["message"] for e in bp_check.bp_events(res))


def _board():
    from ppg_edge.boards import load_board

    return load_board("virtual-rpi4")
