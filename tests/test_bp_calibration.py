"""BP calibration against continuous ABP: beats, calibration scoring, report, CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.data.record import Record
from ppg_edge.errors import DataError
from ppg_edge.evaluate import bp_calibration as bc

FS = 125.0


def synth_abp(sbp, dbp, periods_s, fs=FS, lead_s=0.5, rise_s=0.16):
    """ABP-like waveform: beat i rises from dbp[i] (its foot) to sbp[i] in ``rise_s`` and
    decays to dbp[i+1]. Beat boundaries and peaks fall on samples, so the foot and the
    peak are exact. Returns (signal, list of (foot index, peak index, sbp, dbp))."""
    n_rise = int(round(rise_s * fs))
    lead = int(round(lead_s * fs))
    u = np.arange(lead) / lead
    parts = [dbp[0] + (sbp[0] - dbp[0]) * 0.5 * (1 - u) ** 1.5]  # decay into the first foot
    beats, pos = [], lead
    dbp_next = list(dbp[1:]) + [dbp[-1]]
    for s, d, dn, T in zip(sbp, dbp, dbp_next, periods_s):
        n = int(round(T * fs))
        k = np.arange(n)
        rise = d + (s - d) * np.sin(0.5 * np.pi * k[:n_rise] / n_rise) ** 2
        v = (n - k[n_rise:]) / (n - n_rise)
        fall = dn + (s - dn) * v ** 1.5
        parts.append(np.concatenate([rise, fall]))
        beats.append((pos, pos + n_rise, s, d))
        pos += n
    parts.append(np.array([dbp_next[-1]] * 3))
    return np.concatenate(parts), beats


def _record(abp, ppg=None, rid="synth", fs=FS):
    ppg = np.sin(np.arange(abp.size) / fs * 2 * np.pi * 1.2) if ppg is None else ppg
    return Record(dataset="synth", record_id=rid, subject_id=rid, signals={"ppg": ppg, "abp": abp},
                  rates={"ppg": fs, "abp": fs})


def _beats_table(n, rng, drift=0.0):
    periods = rng.choice([0.72, 0.8, 0.88, 0.96], size=n)
    t = np.cumsum(periods)
    sbp = 120 + 4 * rng.standard_normal(n) + drift * t / t[-1]
    dbp = 75 + 3 * rng.standard_normal(n) + 0.5 * drift * t / t[-1]
    return sbp, dbp, periods


# --- abp_beats -----------------------------------------------------------------------


def test_abp_beats_exact_on_synthetic(rng):
    sbp, dbp, periods = _beats_table(60, rng)
    abp, truth = synth_abp(sbp, dbp, periods)
    b = bc.abp_beats(abp, FS)
    assert b["n_rejected"] == 0
    assert b["t_s"].size >= len(truth) - 2  # the last beat has no next foot
    feet = np.array([f for f, _, _, _ in truth]) / FS
    for t0, s, d in zip(b["t_start_s"], b["sbp"], b["dbp"]):
        i = int(np.argmin(np.abs(feet - t0)))
        assert abs(feet[i] - t0) < 0.02
        assert abs(s - truth[i][2]) < 1.0
        assert abs(d - truth[i][3]) < 1.0
    # t_s is the systolic peak time
    peaks = np.array([p for _, p, _, _ in truth]) / FS
    assert np.all(np.min(np.abs(b["t_s"][:, None] - peaks[None, :]), axis=1) < 0.02)


def test_abp_beats_rejects_impossible_beats(rng):
    sbp, dbp, periods = _beats_table(30, rng)
    normal, _ = synth_abp(sbp, dbp, periods)
    sbp[10] = 320.0  # above the 300 mmHg limit
    abp, _ = synth_abp(sbp, dbp, periods)
    b = bc.abp_beats(abp, FS)
    assert b["rejected"] == {"sbp out of range": 1}
    assert b["n_rejected"] == 1
    assert b["sbp"].max() < 300
    # everything scaled into an impossible range: all beats rejected, none kept
    low = bc.abp_beats(normal * 0.2, FS)  # SBP ~24 mmHg
    assert low["t_s"].size == 0 and low["n_rejected"] == low["n_found"] > 20


def test_abp_beats_nan_flat_and_bad_input(rng):
    sbp, dbp, periods = _beats_table(40, rng)
    abp, _ = synth_abp(sbp, dbp, periods)
    full = bc.abp_beats(abp, FS)
    gap = abp.copy()
    a, z = int(12 * FS), int(14 * FS)
    gap[a:z] = np.nan
    b = bc.abp_beats(gap, FS)
    assert 0 < b["t_s"].size < full["t_s"].size
    assert any("non-finite" in s for s in b["issues"])
    assert not np.any((b["t_start_s"] < z / FS) & (b["t_end_s"] > a / FS))  # no beat spans the gap
    assert np.all(np.isfinite(b["sbp"])) and np.all(np.isfinite(b["dbp"]))
    none = bc.abp_beats(np.full(1000, np.nan), FS)
    assert none["t_s"].size == 0 and "no finite sample" in none["issues"][0]
    flat = bc.abp_beats(np.full(2000, 90.0), FS)
    assert flat["t_s"].size == 0 and "flat" in flat["issues"][0]
    assert bc.abp_beats(np.zeros(0), FS)["issues"] == ["ABP is empty"]
    with pytest.raises(DataError):
        bc.abp_beats(np.zeros((10, 2)), FS)


def test_abp_beats_on_real_mixedsignals(data_root):
    from ppg_edge import data

    rec = data.load_record("wfdb-samples", "mixedsignals", root=data_root)
    abp, fs = bc._record_abp(rec)
    assert np.isnan(abp).sum() == 192  # the loader's filled span is not used as data
    b = bc.abp_beats(abp, fs)
    dur = abp.size / fs
    bpm = 60.0 * b["t_s"].size / dur
    assert 40 <= bpm <= 180
    hr = 60.0 / np.diff(b["t_s"])
    assert 40 <= np.median(hr) <= 180
    assert np.all(b["sbp"] > b["dbp"] + bc.MIN_PULSE_PRESSURE)
    assert b["t_s"].size > 300


# --- evaluate_calibration ------------------------------------------------------------


def _truth_estimator(truth, bias=(0.0, 0.0), step=5.0, stretch=10.0, noise_rng=None):
    """Estimates every ``step`` s of the true mean beat value over the stretch + bias,
    or pure noise with ``noise_rng``."""
    peaks = np.array([p for _, p, _, _ in truth]) / FS
    s_true = np.array([s for *_, s, _ in truth])
    d_true = np.array([d for *_, d in truth])

    def estimate(ppg, fs):
        out = []
        for t1 in np.arange(stretch, len(ppg) / fs, step):
            sel = (peaks >= t1 - stretch) & (peaks < t1)
            if noise_rng is not None:
                s, d = noise_rng.normal(120, 25), noise_rng.normal(75, 15)
            else:
                s, d = s_true[sel].mean() + bias[0], d_true[sel].mean() + bias[1]
            out.append({"t": float(t1), "t0": float(t1 - stretch), "t1": float(t1), "sbp": s, "dbp": d})
        return out

    return estimate


def test_calibration_removes_a_constant_bias(rng):
    sbp, dbp, periods = _beats_table(200, rng, drift=15.0)  # ~170 s, BP drifts up 15 mmHg
    abp, truth = synth_abp(sbp, dbp, periods)
    rec = _record(abp)
    res = bc.evaluate_calibration([rec], _truth_estimator(truth, bias=(-25.0, 12.0)), calib_s=60.0,
                                  population_mean=(110.0, 70.0))
    r = res["records"][0]
    assert r["status"] == "ok" and res["skipped"] == []
    ms, md = r["metrics"]["sbp"], r["metrics"]["dbp"]
    assert ms["n"] > 15
    assert ms["mae_calibrated"] < 1.0 and md["mae_calibrated"] < 1.0
    assert ms["mae_uncalibrated"] == pytest.approx(25.0, abs=1.0)
    assert md["mae_uncalibrated"] == pytest.approx(12.0, abs=1.0)
    assert r["offset"]["sbp"] == pytest.approx(25.0, abs=1.0)
    assert ms["mae_carry_forward"] > 3.0  # the drift defeats a cuff reading carried forward
    assert ms["mae_population"] is not None and ms["mae_population"] > 5.0
    assert res["pooled"]["metrics"]["sbp"]["mae_calibrated"] == pytest.approx(ms["mae_calibrated"])
    assert res["pooled"]["n_records"] == 1
    assert r["n_beats"] > 150 and r["test_s"] == pytest.approx(r["duration_s"] - 60.0)
    # test stretches lie wholly after the calibration period
    assert r["n_test_estimates"] == sum(1 for e in r["estimates"] if e["t0"] >= 60.0)


def test_noise_estimator_is_worse_than_carry_forward(rng):
    sbp, dbp, periods = _beats_table(200, rng)
    abp, truth = synth_abp(sbp, dbp, periods)
    res = bc.evaluate_calibration([_record(abp)], _truth_estimator(truth, noise_rng=rng), calib_s=60.0)
    m = res["records"][0]["metrics"]["sbp"]
    assert m["mae_calibrated"] > m["mae_carry_forward"] + 5.0
    assert m["mae_population"] is None
    md = res["records"][0]["metrics"]["dbp"]
    assert md["mae_calibrated"] > md["mae_carry_forward"]


def test_default_stretch_and_missing_values(rng):
    sbp, dbp, periods = _beats_table(200, rng)
    abp, truth = synth_abp(sbp, dbp, periods)
    full = _truth_estimator(truth)

    def est(ppg, fs):  # no t0/t1 (10 s before t is used); every third estimate gives no SBP
        out = [{"t": e["t"], "sbp": e["sbp"], "dbp": e["dbp"]} for e in full(ppg, fs)]
        for e in out[::3]:
            e["sbp"] = None
        return out

    r = bc.evaluate_calibration([_record(abp)], est)["records"][0]
    assert r["metrics"]["sbp"]["mae_calibrated"] < 1.0
    assert r["metrics"]["sbp"]["n_missing"] > 0
    assert r["metrics"]["dbp"]["n"] > r["metrics"]["sbp"]["n"]


def test_skips_are_reported_with_reasons(rng):
    sbp, dbp, periods = _beats_table(40, rng)  # ~34 s: too short for 60 + 30 s
    abp, truth = synth_abp(sbp, dbp, periods)
    no_abp = Record(dataset="synth", record_id="ppg-only", subject_id="p", signals={"ppg": np.zeros(5000)},
                    rates={"ppg": FS})
    calls = []

    def est(ppg, fs):
        calls.append(1)
        return []

    res = bc.evaluate_calibration([_record(abp, rid="short"), no_abp], est)
    reasons = {s["record"]: s["reason"] for s in res["skipped"]}
    assert "needs 60 s of calibration + 30 s of test" in reasons["synth/short"]
    assert "no ABP channel" in reasons["synth/ppg-only"]
    assert calls == []  # nothing estimated for a skipped record
    assert res["pooled"]["n_records"] == 0 and res["pooled"]["metrics"]["sbp"]["mae_calibrated"] is None
    long_abp, _ = synth_abp(*_beats_table(200, rng))
    res = bc.evaluate_calibration([_record(long_abp)], est)  # estimator gives nothing
    assert "no SBP estimate" in res["skipped"][0]["reason"]


def test_bad_estimator_output_and_options(rng):
    abp, _ = synth_abp(*_beats_table(200, rng))
    with pytest.raises(DataError):
        bc.evaluate_calibration([_record(abp)], lambda p, f: {"t": 1})
    with pytest.raises(DataError):
        bc.evaluate_calibration([_record(abp)], lambda p, f: [{"sbp": 1.0}])
    with pytest.raises(DataError):
        bc.evaluate_calibration([_record(abp)], lambda p, f: [{"t": 20, "t0": 30, "t1": 20, "sbp": 1}])
    with pytest.raises(ValueError):
        bc.evaluate_calibration([_record(abp)], lambda p, f: [], calib_s=0)
    with pytest.raises(ValueError):
        bc.evaluate_calibration([_record(abp)], lambda p, f: [], population_mean=(120.0,))


def test_041s_is_skipped_with_its_reason(data_root):
    from ppg_edge import data

    rec = data.load_record("wfdb-samples", "041s", root=data_root)
    res = bc.evaluate_calibration([rec], lambda p, f: pytest.fail("no estimate for a skipped record"))
    assert res["records"][0]["status"] == "skipped"
    assert res["skipped"][0]["reason"] == "16.0 s long, needs 60 s of calibration + 30 s of test"
    assert res["records"][0]["n_beats"] > 10  # its beats are still counted


def test_markdown_report(rng):
    sbp, dbp, periods = _beats_table(200, rng)
    abp, truth = synth_abp(sbp, dbp, periods)
    short, _ = synth_abp(*_beats_table(30, rng))
    res = bc.evaluate_calibration([_record(abp), _record(short, rid="short")],
                                  _truth_estimator(truth, bias=(5.0, 5.0)), population_mean=(120, 80))
    res["command"] = "ppg-edge evaluate bp-calibration --calib-s 60"
    md = bc.markdown_report(res)
    assert "## SBP (mmHg)" in md and "## DBP (mmHg)" in md
    assert "| record | test s | n | uncalibrated MAE | calibrated MAE | carry-forward MAE |" in md
    m = res["records"][0]["metrics"]["sbp"]
    assert f"| {m['mae_uncalibrated']:.2f} | {m['mae_calibrated']:.2f} |" in md
    assert "skipped: " in md and "synth/short" in md
    assert "1 record(s) scored (1 of 2 skipped)" in md and " min of test time" in md
    assert "Command: `ppg-edge evaluate bp-calibration --calib-s 60`" in md


# --- CLI and host estimator ----------------------------------------------------------


def test_cli_json_with_a_fake_estimator(data_root, monkeypatch, capsys, tmp_path):
    from ppg_edge.cli import evaluate_bp_calibration as cli

    def fake(model_path):
        def est(ppg, f):
            return [{"t": t, "sbp": 120.0, "dbp": 70.0} for t in np.arange(10.0, len(ppg) / f, 10.0)]
        est.population_mean = (120.0, 70.0)
        est.description = "constant"
        return est

    monkeypatch.setattr(bc, "device_estimator", fake)
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    args = p.parse_args(["bp-calibration", "--data-root", str(data_root), "--json",
                         "--markdown", str(tmp_path / "r.md"), "--out", str(tmp_path / "r.json")])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["benchmark"] == "bp-calibration" and doc["estimator"] == "constant"
    assert [r["record"] for r in doc["records"]] == ["wfdb-samples/mixedsignals", "wfdb-samples/041s"]
    assert doc["records"][0]["status"] == "ok" and doc["records"][1]["status"] == "skipped"
    m = doc["records"][0]["metrics"]["sbp"]
    assert m["mae_calibrated"] < m["mae_uncalibrated"]  # the constant is far from this ICU patient's ABP
    assert "--calib-s 60" in doc["command"] and "wfdb-samples/mixedsignals" in (tmp_path / "r.md").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["pooled"] == doc["pooled"]
    bad = p.parse_args(["bp-calibration", "--calib-s", "-1"])
    with pytest.raises(ValueError):
        bad.func(bad)


def test_device_estimator_on_real_ppg(data_root):
    """The committed device model through the device's BP stage, on an ICU patient's PLETH."""
    from ppg_edge import data

    model = Path(__file__).resolve().parents[1] / "models" / "device" / "bp-ppg-100hz.trees"
    est = bc.device_estimator(model)
    rec = data.load_record("wfdb-samples", "mixedsignals", root=data_root)
    out = est(rec.ppg[: int(60 * rec.rates["ppg"])], rec.rates["ppg"])
    assert 15 <= len(out) <= 27  # 2.1 s windows from the 3rd on (a stable stretch of 3), while the gate accepts
    for e in out:
        assert 6.2 <= e["t1"] - e["t0"] <= 10.6 and e["t"] == e["t1"]
        assert 60 < e["sbp"] < 220 and 30 < e["dbp"] < 130
    assert 90 < est.population_mean[0] < 160 and 50 < est.population_mean[1] < 100
    assert "dbp" in est.description                 # the device withholds DBP (CV MASE >= 0.95)
    assert est(np.zeros(50), 125.0) == []
    with pytest.raises(DataError):
        est(np.full(3000, np.nan), 125.0)
