"""The committed device models (models/device/) and the held-out compare report.

* every committed ``.tflite`` verifies against its sealed manifest and loads in the
  runtime's interpreter backend (no TensorFlow needed);
* a tampered committed manifest or model (copied to tmp, one byte flipped) is refused;
* the int8 peak file agrees with its Keras model on a few windows (TF);
* the BP output scaling folded into the last layer is the same function (TF);
* the held-out compare report runs on a tiny model with a tiny fake held-out set (TF, slow).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.errors import ModelError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "models" / "device"
EXPECTED = ("peaks-Type30-int8", "peaks-Type30-float32", "peaks-Type28-int8", "peaks-Type24-int8",
            "bp-cnn-lstm-100hz-int8", "bp-cnn-lstm-100hz-float32")


def _committed():
    return sorted(DEVICE.glob("*.tflite"))


def test_committed_device_files_present():
    have = {p.stem for p in _committed()}
    missing = [n for n in EXPECTED if n not in have]
    assert not missing, f"models/device lacks {missing} (make device-models)"


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_device_file_verifies_and_loads(name):
    from ppg_edge import manifest as mf
    from ppg_edge.edge_runtime.interpreter import EdgeModel

    path = DEVICE / f"{name}.tflite"
    if not path.is_file():
        pytest.fail(f"{path} missing")
    man = mf.verify_model(path)
    assert man["model_file"] == path.name and man["name"] == name
    assert 10_000 < man["size_bytes"] < 2_000_000
    em = EdgeModel(path, backend="ai-edge-litert")
    assert em.kind == ("bp" if name.startswith("bp-") else "peaks")
    assert "WHILE" not in man["ops"] and "UNIDIRECTIONAL_SEQUENCE_LSTM" in man["ops"]
    if name.endswith("int8"):
        assert man["inputs"][0]["dtype"] == "int8" and man["outputs"][0]["dtype"] == "int8"
        assert "int16" in man["tensor_dtypes"]  # the LSTM cell state
        assert man["calibration"]["n_windows"] >= 100
    rng = np.random.default_rng(0)
    y = em.predict_window(rng.standard_normal((em.window, em.n_channels)).astype(np.float32))
    assert np.all(np.isfinite(y))
    if em.kind == "peaks":
        assert y.shape == (em.window,) and np.all((y >= 0) & (y <= 1))
        src = json.loads((ROOT / "models" / "peaks" / name.split("-")[1] / f"{name.split('-')[1]}.json").read_text())
        assert man["decoder"]["threshold"] == pytest.approx(src["threshold"])
        assert man["training"]["split"] == "peaks"
    else:
        assert y.shape == (2,)
        assert man["targets"] == ["sbp", "dbp"]
        assert em.n_channels == 1 and em.fs == 100.0


def test_bp_int8_size_against_float32():
    i8, f32 = (DEVICE / "bp-cnn-lstm-100hz-int8.tflite"), (DEVICE / "bp-cnn-lstm-100hz-float32.tflite")
    assert i8.stat().st_size <= 0.35 * f32.stat().st_size


@pytest.mark.parametrize("what", ["manifest", "model"])
def test_tampered_committed_files_refused(tmp_path, what):
    from ppg_edge import manifest as mf
    from ppg_edge.edge_runtime.interpreter import EdgeModel

    src = DEVICE / "peaks-Type30-int8.tflite"
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    mf.verify_model(dst)  # the untouched copy verifies
    target = dst.with_suffix(".json") if what == "manifest" else dst
    data = bytearray(target.read_bytes())
    if what == "manifest":
        i = data.index(b'"hop": ') + len(b'"hop": ')
        data[i] = ord("9") if data[i] != ord("9") else ord("8")  # a different hop, still valid JSON
    else:
        data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="manifest_digest|sha256"):
        mf.verify_model(dst)
    with pytest.raises(ModelError):
        EdgeModel(dst)


# ----------------------------------------------------------------------------- with TensorFlow

@pytest.mark.tf
@pytest.mark.slow
def test_int8_device_file_matches_keras_on_windows():
    """peaks-Type30-int8 through the device runtime vs its Keras model on synthetic windows
    made with the manifest's preprocessing, within the tolerance recorded in the manifest."""
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.peaks import synthetic_windows
    from ppg_edge.convert.tflite import Tolerance
    from ppg_edge.edge_runtime.interpreter import EdgeModel
    from ppg_edge.train.peaks.fit import load_peak_model

    em = EdgeModel(DEVICE / "peaks-Type30-int8.tflite")
    model, _ = load_peak_model(ROOT / "models" / "peaks" / "Type30" / "Type30.json")
    x = synthetic_windows(em.spec, 6, np.random.default_rng(3))
    ref = model.predict(x, verbose=0)
    lite = np.stack([em.predict_window(w) for w in x])
    tol = em.manifest["self_check"]["tolerance"]
    t = Tolerance(**tol["override"]) if isinstance(tol, dict) else Tolerance(0.05, 0.15, 0.015, 0.03)
    lim_max, lim_mean = t.limits(float(np.ptp(ref)))
    d = np.abs(lite - ref)
    assert d.max() <= lim_max and d.mean() <= lim_mean, (d.max(), d.mean())
    assert d.max() > 0  # it is quantized: not bit-identical to float


@pytest.mark.tf
def test_bp_output_scaling_is_the_same_function():
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.bp import fold_output_scaling, target_stats
    from ppg_edge.train.bp.cnn_lstm import build_cnn_lstm_bp

    rng = np.random.default_rng(0)
    model = build_cnn_lstm_bp(64, 1, cnn_filters=(4,), cnn_kernels=(3,), lstm_units=(4,), dense_units=(4,),
                              target_mean=[120.0, 70.0], compile=False)
    y = np.column_stack([rng.normal(120, 15, 50), rng.normal(70, 9, 50)])
    mean, std = target_stats(y)
    scaled = fold_output_scaling(model, mean, std)
    x = rng.standard_normal((5, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(scaled.predict(x, verbose=0) * std + mean, model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-3)
    with pytest.raises(ModelError, match="no output layer"):
        fold_output_scaling(model, mean, std, layer="nope")
    with pytest.raises(ModelError, match="standardise"):
        target_stats(np.ones((4, 2)))


@pytest.mark.tf
@pytest.mark.slow
def test_heldout_compare_report_on_tiny_model(tmp_path):
    """compare_saved_peak_model(heldout=True) on a tiny saved model and two fake 'test'
    records of synthetic PPG with known peaks: F1/ADE columns per variant, the TFLite
    variants run by EdgeModel, a DWT baseline, md/json/png written."""
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.peaks import compare_saved_peak_model
    from ppg_edge.data.record import Record
    from ppg_edge.synth import synth_ppg
    from ppg_edge.train.peaks.fit import save_peak_model
    from ppg_edge.train.peaks.models import build_peak_model
    from ppg_edge.train.peaks.variants import get_variant

    cfg = get_variant("Type30").replace(name="tiny30", sizes=(4, 8, 4))
    model = build_peak_model(cfg, window=250)
    save_peak_model(model, cfg, tmp_path / "m" / "tiny30", window=250)
    rng = np.random.default_rng(1)
    recs = []
    for i in range(2):
        s = synth_ppg(12.0, 125.0, rng, hr_bpm=70.0 + 10 * i)
        recs.append(Record(dataset="fake", record_id=f"r{i}", subject_id=f"s{i}", signals={"ppg": s.signal},
                           rates={"ppg": 125.0}, peaks=np.asarray(s.peaks)))
    result, paths = compare_saved_peak_model(
        tmp_path / "m", tmp_path / "out", ("float32", "int8"), synthetic_calibration=16, n_check=4, runs=3,
        heldout=True, test_records=recs, name="compare-tiny", command="test")
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"keras-float", "float32", "int8"}
    for r in rows.values():
        for key in ("f1_50ms_clean", "f1_50ms_10dB", "f1_50ms_5dB", "ade_ms_clean"):
            assert key in r["metrics"]
        assert 0.0 <= r["metrics"]["f1_50ms_clean"] <= 1.0
    # float32 runs the same float graph: same detections as Keras
    assert rows["float32"]["metrics"]["f1_50ms_clean"] == pytest.approx(rows["keras-float"]["metrics"]["f1_50ms_clean"])
    assert "fake/s0" in result["accuracy"] and result["baseline"]
    assert paths["markdown"].name == "compare-tiny.md" and "f1_50ms_clean" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["command"] == "test"
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.data
def test_heldout_records_are_the_split_test_subjects(data_root):
    from ppg_edge.convert.heldout import load_test_records
    from ppg_edge.data.splits import load_split

    recs = load_test_records("peaks", ["capnobase", "bidmc"], 125.0, root=data_root)
    assert {f"{r.dataset}/{r.subject_id}" for r in recs} == set(load_split("peaks")["test"])
    assert all(r.fs == 125.0 and r.peaks.size > 0 for r in recs)


def test_compare_adds_a_qat_int8_variant_with_fused_lstms(tmp_path):
    """--qat: Conv1D/Dense/attention fine-tuned quantization-aware, LSTMs left fused; the
    variant converts with builtin ops only (convert_model refuses a WHILE) and is scored."""
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.peaks import compare_saved_peak_model
    from ppg_edge.train.peaks.fit import save_peak_model
    from ppg_edge.train.peaks.models import build_peak_model
    from ppg_edge.train.peaks.variants import get_variant

    cfg = get_variant("Type30").replace(name="tiny30", sizes=(4, 8, 4))
    save_peak_model(build_peak_model(cfg, window=250), cfg, tmp_path / "m" / "tiny30", window=250)
    result, _ = compare_saved_peak_model(tmp_path / "m", tmp_path / "out", ("float32",), synthetic_calibration=16,
                                         n_check=4, runs=2, qat_epochs=1, name="compare-qat", command="test")
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"keras-float", "float32", "qat-int8"}
    assert "QAT" in rows["qat-int8"]["note"] and "mlir quantizer" in rows["qat-int8"]["note"]
    # the MLIR quantizer keeps the LSTM that feeds the attention and the concat in float; said so
    assert "NOT full int8: float UNIDIRECTIONAL_SEQUENCE_LSTM" in rows["qat-int8"]["note"]
    assert result["self_checks"]["qat-int8"]["quantizer"]["used"] == "mlir"


def test_compare_refuses_peak_only_options_for_a_bp_model(capsys, tmp_path):
    from ppg_edge.cli import main

    bp = str(Path(__file__).resolve().parents[1] / "models" / "bp" / "cnn-lstm-100hz")
    assert main(["compare", bp, "--out", str(tmp_path), "--qat", "2"]) == 1
    assert "--qat applies to peak models" in capsys.readouterr().err
    assert main(["compare", bp, "--out", str(tmp_path), "--prune", "0.5"]) == 1
    assert "--prune applies to peak models" in capsys.readouterr().err
