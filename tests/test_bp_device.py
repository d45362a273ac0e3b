"""The device's BP output (issue 16): the model chosen by CV, its worth on every event, quantities
withheld at CV MASE >= 0.95, the stretch average, the wearer's profile and the cuff calibration."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppg_edge import manifest as mf
from ppg_edge.cli import main
from ppg_edge.edge_runtime.bp import MASE_LIMIT, BPStage, withheld_reason
from ppg_edge.edge_runtime.pipeline import ArrayReplay, Pipeline
from ppg_edge.edge_runtime.sinks import MemorySink
from ppg_edge.edge_runtime.user import Calibration, Profile
from ppg_edge.errors import ConfigError, ModelError
from ppg_edge.synth import synth_ppg
from ppg_edge.train.bp import device

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "models" / "device" / "bp-ppg-100hz.trees"


def _row(model: str, sbp_mase: float, dbp_mase: float, dbp_folds: int = 10) -> dict:
    r = {"model": model, "inputs": device.inputs_of(model), "device": device.DEVICE_RUNNABLE.get(model),
         "command": "test"}
    for q, m in (("sbp", sbp_mase), ("dbp", dbp_mase)):
        r[q] = {"mae": 10 * m, "naive_mae": 10.0, "mase": m, "mase_sd_folds": 0.1, "mase_max_fold": m + 0.1,
                "folds_beating_naive": dbp_folds if q == "dbp" else 10, "n_folds": 10,
                "segment_mae": 10 * m, "segment_mase": m}
    return r


@pytest.fixture(scope="module")
def ds100(data_root):
    from ppg_edge.train.bp.dataset import load_bp_dataset

    return load_bp_dataset(100.0, root=data_root)


@pytest.fixture(scope="module")
def models(ds100, tmp_path_factory):
    """A PPG model (SBP shown, DBP withheld) and its profile variant, trained here on PPG-BP."""
    out = tmp_path_factory.mktemp("bpdev")
    prof = device.build_device_model(ds100, _row("feature-gbm-portable-demo", 0.7, 0.9), out,
                                     rng=np.random.default_rng(1), command="test")
    ppg = device.build_device_model(ds100, _row("feature-gbm-portable", 0.8, 0.97), out, rng=np.random.default_rng(1),
                                    command="test", profile_model=prof.name)
    return ppg, prof


def _ppg(seconds=40, seed=3, fs=100.0):
    return 2000 * synth_ppg(seconds, fs, np.random.default_rng(seed), hr_bpm=70).signal + 50000


def test_rule_prefers_more_outputs_then_a_stable_dbp_then_lower_mase():
    rows = [_row("feature-gbm-portable", 0.80, 0.96), _row("cnn-lstm-search", 0.85, 0.94, dbp_folds=6),
            _row("cnn-lstm", 0.90, 0.93), _row("ann", 0.50, 0.50),   # ann: the runtime cannot frame its input
            _row("feature-gbm", 0.50, 0.50)]                         # features in sensor units: not for the device
    keyed = []
    for r in rows:
        doc = {"model": r["model"], "leaky": False, "fs": 100.0,
               "report": {lvl: {q: {k: r[q][k] for k in ("mae", "naive_mae", "mase")} for q in ("sbp", "dbp")}
                          for lvl in ("segment", "subject")},
               "spread": {lvl: {q: {"mase_sd": 0.1, "mase_max": 1.0, "folds_beating_naive": r[q]["folds_beating_naive"],
                                    "n_folds": 10} for q in ("sbp", "dbp")} for lvl in ("segment", "subject")}}
        keyed.append(doc)
    ch = device.choose([{"results": keyed, "command": "cmd"}])
    # both outputs beat one output; of the two with both, the DBP that beats the mean on every fold wins
    assert ch["chosen"] == {"ppg": "cnn-lstm"}
    keyed[2]["spread"]["subject"]["dbp"]["folds_beating_naive"] = 6
    # now no model shows DBP (below 80% of folds beating the mean): the lower SBP MASE wins
    ch2 = device.choose([{"results": keyed}])
    assert ch2["chosen"] == {"ppg": "feature-gbm-portable"}
    assert {r["model"]: r["outputs"] for r in ch2["candidates"]}["cnn-lstm-search"] == ["sbp"]
    assert "nothing" not in device.choice_markdown(ch) and "(chosen)" in device.choice_markdown(ch)
    with pytest.raises(ConfigError, match="no subject-wise results"):
        device.choose([{"results": [dict(keyed[0], leaky=True)]}])


def test_exported_model_shows_sbp_withholds_dbp_and_says_what_it_is_worth(models):
    ppg, _ = models
    man = mf.read_manifest(mf.manifest_path_for(ppg))
    assert man["mode"] == "trees" and man["inputs_kind"] == "ppg" and man["training"]["export_max_abs_diff_vs_sklearn"] <= 1e-9
    st = BPStage(ppg, 100.0)
    est = st.push(_ppg())
    assert len(est) >= 15
    first, later = est[:2], est[2:]
    assert all(e.values == {"sbp": None, "dbp": None} and "settling" in e.withheld["sbp"] for e in first)
    for e in later:
        assert e.values["dbp"] is None and "CV MASE 0.97" in e.withheld["dbp"]
        assert e.values["sbp"] == pytest.approx(e.stretch_values["sbp"], abs=0.05)
        assert 3 <= e.stretch["windows"] <= 5 and e.stretch["pulses"] >= 4 and e.stretch["quality"] == "stable"
    # the shown SBP is the mean of the stretch's window outputs (the last five)
    wv = np.array([e.window_values["sbp"] for e in est])
    assert later[-1].stretch_values["sbp"] == pytest.approx(wv[-5:].mean(), abs=1e-9)
    ev = later[-1].event(st)
    assert ev["cv"]["sbp"]["mase"] == 0.8 and ev["inputs"] == "ppg" and ev["calibrated"] is False
    assert json.loads(json.dumps(ev)) == ev
    line = st.status(later[-1])
    assert "uncalibrated estimate, CV MAE 8 mmHg" in line and "DBP --" in line


def test_the_device_model_reads_any_sensor_scale(models):
    """No feature in sensor units: a MAX30102's counts (gain, DC, any offset) give PPG-BP-scale
    estimates, the same to rounding for the same waveform."""
    ppg, _ = models
    x = _ppg()
    a = BPStage(ppg, 100.0).push(x)
    b = BPStage(ppg, 100.0).push(37.0 * x - 2.6e6)
    assert len(a) == len(b) > 10
    for ea, eb in zip(a, b):
        assert ea.stretch_values == pytest.approx(eb.stretch_values, abs=1e-6)


def test_a_suppressed_window_ends_the_stretch(models):
    ppg, _ = models
    x = _ppg(40)
    x[1500:1520] = np.nan           # window 7 of 2.1 s holds NaN samples: the gate suppresses it
    st = BPStage(ppg, 100.0)
    from ppg_edge.edge_runtime.stream import FLAG_NONFINITE

    flags = np.where(np.isfinite(x), 0, FLAG_NONFINITE).astype(np.uint8)
    est = st.push(np.nan_to_num(x, nan=50000.0), flags)
    assert st.suppressed >= 1
    after = [e for e in est if e.stretch["t0"] > 15.0]
    assert after and after[0].stretch["windows"] == 1 and after[0].values["sbp"] is None


def test_profile_variant_needs_a_profile_and_the_ppg_model_refuses_one(models, tmp_path):
    ppg, prof = models
    p = Profile(age=52, sex="F", height_cm=168, weight_kg=71)
    with pytest.raises(ConfigError, match="--profile"):
        BPStage(prof, 100.0)
    with pytest.raises(ConfigError, match="PPG-only"):
        BPStage(ppg, 100.0, profile=p)
    a = BPStage(prof, 100.0, profile=p).push(_ppg())
    b = BPStage(prof, 100.0, profile=Profile(age=75, sex="M", height_cm=168, weight_kg=95)).push(_ppg())
    assert a[-1].values["dbp"] is not None          # the profile model's (test) CV MASE 0.9 shows DBP
    assert a[-1].stretch_values != b[-1].stretch_values  # the profile is an input
    assert p.vector() == [52.0, 0.0, pytest.approx(71 / 1.68 ** 2)]
    f = tmp_path / "profile.toml"
    f.write_text('age = 52\nsex = "F"\nheight_cm = 168\nweight_kg = 71\n')
    assert Profile.load(f) == p
    for bad, msg in (('age = 52\nsex = "X"\nheight_cm = 168\nweight_kg = 71\n', "sex"),
                     ('age = 500\nsex = "F"\nheight_cm = 168\nweight_kg = 71\n', "age"),
                     ('age = 52\nsex = "F"\nheight = 168\nweight_kg = 71\n', "unknown key"),
                     ('age = [52\n', "not valid TOML")):
        f.write_text(bad)
        with pytest.raises(ConfigError, match=msg):
            Profile.load(f)


def test_calibration_offset_and_two_point_and_refusals(models, tmp_path):
    ppg, _ = models
    sha = mf.read_manifest(mf.manifest_path_for(ppg))["sha256"]
    cal = Calibration(model_sha256=sha)
    cal.add({"sbp": 130.0, "dbp": 85.0}, {"sbp": 120.0, "dbp": 70.0}, time="2026-12-03T10:00:00+00:00")
    assert cal.fit("sbp") == {"method": "offset", "slope": 1.0, "intercept": 10.0, "n": 1}
    assert cal.apply("sbp", 111.0) == pytest.approx(121.0)
    cal.add({"sbp": 150.0}, {"sbp": 130.0})
    f = cal.fit("sbp")
    assert f["method"] == "two-point" and f["slope"] == pytest.approx(2.0) and cal.apply("sbp", 125.0) == pytest.approx(140.0)
    assert cal.fit("dbp")["method"] == "offset"      # DBP has one reading
    path = cal.save(tmp_path / "cal.json")
    assert Calibration.load(path, model_sha256=sha).readings == cal.readings
    with pytest.raises(ConfigError, match="another|calibrate again"):
        Calibration.load(path, model_sha256="0" * 64)
    for bad in ({"sbp": 400.0}, {"sbp": 90.0, "dbp": 85.0}, {}):
        with pytest.raises(ConfigError):
            cal.add(bad, {"sbp": 120.0, "dbp": 70.0})
    with pytest.raises(ConfigError, match="no uncalibrated"):
        cal.add({"dbp": 80.0}, {"sbp": 120.0, "dbp": None})
    path.write_text(path.read_text()[:40])
    with pytest.raises(ConfigError, match="not valid JSON"):
        Calibration.load(path)
    # the stage applies it: shown = estimate through the fit, calibrated = True
    one = Calibration(model_sha256=sha)
    one.add({"sbp": 140.0}, {"sbp": 120.0})
    e = BPStage(ppg, 100.0, calibration=one).push(_ppg())[-1]
    assert e.calibrated and e.values["sbp"] == pytest.approx(e.stretch_values["sbp"] + 20.0, abs=0.05)
    assert "calibrated, CV MAE" in BPStage(ppg, 100.0, calibration=one).status(e)
    with pytest.raises(ConfigError, match="another BP model"):
        BPStage(ppg, 100.0, calibration=Calibration(model_sha256="1" * 64))


def test_calibrate_cli_reads_the_last_stable_estimate_then_run_applies_it(models, tmp_path, capsys):
    ppg, _ = models
    sink = tmp_path / "events.jsonl"
    x = _ppg(40)
    s = MemorySink()
    Pipeline(100.0, s, bp_model_path=ppg).run(ArrayReplay(x, 100.0).blocks())
    sink.write_text("\n".join(json.dumps(e) for e in s.events) + "\n{cut off")
    bp = [e for e in s.events if e["type"] == "bp" and e["quality"] == "stable"]
    cal = tmp_path / "cal.json"
    rc = main(["calibrate", "--sbp", "135", "--dbp", "82", "--bp-model", str(ppg), "--calibration", str(cal),
               "--events", str(sink), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["readings"] == 1 and out["fit"]["sbp"]["intercept"] == pytest.approx(135 - bp[-1]["uncalibrated"]["sbp"])
    s2 = MemorySink()
    Pipeline(100.0, s2, bp_model_path=ppg, calibration=str(cal)).run(ArrayReplay(x, 100.0).blocks())
    last = [e for e in s2.events if e["type"] == "bp"][-1]
    assert last["calibrated"] and last["sbp"] == pytest.approx(135.0, abs=0.1)   # the same signal: the cuff value
    assert main(["calibrate", "--sbp", "135", "--bp-model", str(ppg), "--calibration", str(cal),
                 "--events", str(tmp_path / "none.jsonl")]) == 1
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(bp[-1]) + "\n" + json.dumps({"type": "hr", "t": bp[-1]["t"] + 1000}) + "\n")
    assert main(["calibrate", "--sbp", "135", "--bp-model", str(ppg), "--calibration", str(cal),
                 "--events", str(old)]) == 1
    assert "old" in capsys.readouterr().err


def test_corrupt_or_mismatched_tree_files_are_refused(models, tmp_path):
    ppg, _ = models
    import shutil

    bad = tmp_path / ppg.name
    shutil.copy(ppg, bad)
    shutil.copy(mf.manifest_path_for(ppg), mf.manifest_path_for(bad))
    blob = bytearray(bad.read_bytes())
    blob[100] = ord("9") if blob[100] != ord("9") else ord("8")
    bad.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="sha256"):
        BPStage(bad, 100.0)
    with pytest.raises(ConfigError, match="BP model"):
        BPStage(ppg, 30.0)                           # a rate that cannot carry the 20 Hz band
    with pytest.raises(ConfigError, match="for the BP model"):
        Pipeline(100.0, MemorySink(), calibration=Calibration(model_sha256="0" * 64))


def test_committed_device_model_is_the_choice_and_carries_its_cv():
    choice = json.loads((REPO / "docs" / "results" / "bp-device-choice.json").read_text())
    man = mf.read_manifest(mf.manifest_path_for(COMMITTED))
    assert man["name"] == choice["chosen"]["ppg"] and man["inputs_kind"] == "ppg"
    row = {r["model"]: r for r in choice["candidates"]}[man["name"]]
    for q in ("sbp", "dbp"):
        assert man["cv"][q]["mase"] == pytest.approx(row[q]["mase"], abs=1e-4)
    prof = COMMITTED.with_name(man["profile_model"])
    pm = mf.read_manifest(mf.manifest_path_for(prof))
    assert pm["name"] == choice["chosen"]["ppg+profile"] and pm["inputs_kind"] == "ppg+profile"
    assert BPStage(COMMITTED, 100.0).withheld.keys() == {q for q in ("sbp", "dbp") if withheld_reason(man["cv"][q])}
    assert set(row["outputs"]) == {q for q in ("sbp", "dbp") if not withheld_reason(man["cv"][q])}


def test_committed_cnn_lstm_files_carry_the_cv_of_their_recipe():
    """The CNN-LSTM TFLite files say what their recipe's subject-wise CV measured (``train bp-device``
    writes it), so the runtime withholds their numbers for what they are worth, not for want of a CV."""
    choice = json.loads((REPO / "docs" / "results" / "bp-device-choice.json").read_text())
    row = {r["model"]: r for r in choice["candidates"]}["cnn-lstm"]
    for mode in ("float32", "int8"):
        path = REPO / "models" / "device" / f"bp-cnn-lstm-100hz-{mode}.tflite"
        man = mf.read_manifest(mf.manifest_path_for(path))
        for q in ("sbp", "dbp"):
            assert man["cv"][q]["mase"] == pytest.approx(row[q]["mase"], abs=1e-4)
        stage = BPStage(path, 100.0)
        assert set(stage.withheld) == {"sbp", "dbp"} and all(">= 0.95" in w for w in stage.withheld.values())


def test_withheld_reasons():
    assert withheld_reason({"mase": 0.8, "mae": 8, "naive_mae": 10, "folds_beating_naive": 9, "n_folds": 10}) is None
    assert "0.97 >= 0.95" in withheld_reason({"mase": 0.97, "mae": 8, "naive_mae": 8.2})
    assert "only 4 of 10 folds" in withheld_reason({"mase": 0.94, "folds_beating_naive": 4, "n_folds": 10})
    assert withheld_reason({"mase": 0.9}) is not None          # no per-fold figures: not shown
    assert MASE_LIMIT == 0.95


def test_each_rate_has_its_model_and_a_slower_sensor_is_told():
    """The Zero 2 W samples at 50 Hz: its bundle takes the model chosen by CV at 50 Hz; the 100 Hz model
    on a 50 Hz sensor says its CV does not hold there."""
    from ppg_edge.boards.deploy.bundle import _board_bp_model

    assert _board_bp_model("rpi-zero-2w") == "bp-ppg-50hz.trees" and _board_bp_model("rpi4b") == "bp-ppg-100hz.trees"
    m50 = COMMITTED.with_name("bp-ppg-50hz.trees")
    man = mf.read_manifest(mf.manifest_path_for(m50))
    assert man["sample_rate_hz"] == 50.0 and man["cv"]["command"].count("--fs 50") == 1
    assert BPStage(m50, 50.0).cv_note is None
    st = BPStage(COMMITTED, 50.0)
    assert "100 Hz signals" in st.cv_note
    est = st.push(_ppg(30, fs=50.0))
    assert est and est[-1].event(st)["cv_note"] == st.cv_note


def test_state_dir_profile_and_calibration_for_the_service(models, tmp_path, monkeypatch, capsys, caplog):
    """The service passes --state-dir: the wearer's files outside the releases, used when present; a
    calibration made for another model (a deploy changed it) is set aside with a warning, not a crash."""
    import argparse
    import io

    from ppg_edge.boards.deploy.bundle import service_argv
    from ppg_edge.cli.run import bp_inputs

    ppg, prof = models
    argv = service_argv({"board": "rpi4b", "model": "models/p.tflite", "bp_model": "models/bp-ppg-100hz.trees"},
                        "/opt/ppg-edge/current")
    assert argv[-2:] == ["--state-dir", "/opt/ppg-edge/state"]
    state = tmp_path / "state"
    ns = argparse.Namespace(bp_model=str(ppg), profile=None, calibration=None, state_dir=str(state))
    assert bp_inputs(ns) == (ppg, None, None)                       # an empty (or missing) state: plain PPG
    state.mkdir()
    (state / "profile.toml").write_text('age = 52\nsex = "F"\nheight_cm = 168\nweight_kg = 71\n')
    path, profile, cal = bp_inputs(ns)
    assert path == prof and profile.age == 52 and cal is None      # the profile picks the profile model
    # calibrate through the state folder, the estimate piped in (journalctl -o cat | ... --events -)
    s = MemorySink()
    Pipeline(100.0, s, bp_model_path=prof, profile=profile).run(ArrayReplay(_ppg(), 100.0).blocks())
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(e) for e in s.events) + "\n"))
    assert main(["calibrate", "--sbp", "131", "--bp-model", str(ppg), "--state-dir", str(state),
                 "--events", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == prof.name
    _, _, cal = bp_inputs(ns)
    assert isinstance(cal, Calibration) and cal.fit("sbp")["n"] == 1
    (state / "profile.toml").unlink()                                # now the PPG model: the calibration is not its
    with caplog.at_level("WARNING"):
        assert bp_inputs(ns) == (ppg, None, None)
    assert "running uncalibrated" in caplog.text
    assert main(["calibrate", "--sbp", "131", "--bp-model", str(ppg), "--events", "-"]) == 1  # no file, no state
