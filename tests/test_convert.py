"""Conversion: every mode on a tiny Conv1D+LSTM+attention model, op checks, self-check,
manifests, refusals (16x8, WHILE, Flex, tampered/corrupt files), state reset, calibration
lists from training subjects only."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ppg_edge.errors import DataError, ModelError, SplitError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

WINDOW = 64
MODES = ("float32", "float16", "dynamic", "int8")


# ----------------------------------------------------------------------------- helpers

def _tiny_model():
    """The Type30 block structure (Conv1D x3, LSTM x3, temporal attention, per-sample
    head) at sizes 8/16/8 on 64-sample, 2-channel windows."""
    from ppg_edge.train.peaks.models import build_peak_model
    from ppg_edge.train.peaks.variants import get_variant

    cfg = get_variant("Type30").replace(name="tiny30", sizes=(8, 16, 8))
    return build_peak_model(cfg, window=WINDOW), cfg


def _windows(rng, n):
    """Synthetic PPG-like 2-channel windows: a pulse train plus its high-passed copy."""
    from ppg_edge.synth import synth_ppg

    out = []
    for _ in range(n):
        s = synth_ppg(WINDOW / 125.0 + 1.0, 125.0, rng, hr_bpm=float(rng.uniform(50, 120))).signal[:WINDOW]
        s = (s - s.mean()) / (s.std() + 1e-9)
        out.append(np.stack([s, np.diff(s, prepend=s[0]) * 4.0], axis=-1))
    return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def tiny():
    """(keras model, config, calibration windows, held-out windows, {mode: bytes})."""
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.tflite import convert_model

    rng = np.random.default_rng(7)
    model, cfg = _tiny_model()
    cal, held = _windows(rng, 24), _windows(rng, 12)
    flats = {m: convert_model(model, m, calibration=cal if m == "int8" else None) for m in MODES}
    return model, cfg, cal, held, flats


# ----------------------------------------------------------------------------- modes

@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_builtin_fused_within_tolerance(tiny, mode, tmp_path):
    from ppg_edge import manifest as mf
    from ppg_edge.convert.package import save_converted
    from ppg_edge.convert.tflite import FUSED_LSTM, TOLERANCES, check_ops, self_check
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    model, cfg, cal, held, flats = tiny
    flat = flats[mode]
    ops = check_ops(flat)
    assert FUSED_LSTM in ops and "WHILE" not in ops
    assert not any(op.startswith("Flex") for op in ops)
    res = self_check(model, flat, held, mode)
    assert res.passed and res.max_abs <= TOLERANCES[mode].limits(res.span)[0]
    runner = TFLiteModel(flat)
    dtypes = runner.tensor_dtypes()
    if mode == "int8":
        assert runner.input["dtype"] == np.int8 and runner.output["dtype"] == np.int8
        assert "int16" in dtypes  # the LSTM cell state
        assert "float32" not in {np.dtype(d["dtype"]).name for d in runner.interpreter.get_input_details()}
    elif mode == "dynamic":
        # float I/O; this tiny model's weight tensors (fused LSTM gates of <= 16x16) are all
        # under the converter's 1,024-element threshold, so they stay float here
        assert runner.input["dtype"] == np.float32 and runner.output["dtype"] == np.float32
    elif mode == "float16":
        assert "float16" in dtypes
    else:
        assert res.max_abs < 1e-5
    path = save_converted(flat, tmp_path, f"tiny-{mode}", kind="peaks", mode=mode, sample_rate_hz=125,
                          window=WINDOW, hop=WINDOW // 2, preprocessing={"fs": 125.0},
                          decoder={"threshold": 0.5}, self_check=res.to_dict())
    man = mf.verify_model(path)
    assert man["sha256"] == mf.sha256_file(path) and man["size_bytes"] == len(flat)
    assert man["inputs"][0]["shape"] == [1, WINDOW, 2]
    if mode == "int8":
        assert set(man["inputs"][0]["quantization"]) == {"scale", "zero_point"}
    assert man["self_check"]["passed"] is True and FUSED_LSTM in man["ops"]


@pytest.mark.tf
@pytest.mark.slow
def test_sizes_shrink_with_quantization(tiny):
    *_, flats = tiny
    sizes = {m: len(b) for m, b in flats.items()}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"], sizes
    # dynamic range quantizes only weight tensors of >= 1,024 elements; this tiny model has none
    assert sizes["dynamic"] <= sizes["float32"], sizes


@pytest.mark.tf
@pytest.mark.slow
def test_state_reset_matters(tiny):
    """Without reset_all_variables() the fused LSTM carries state into the next window."""
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    model, _, _, held, flats = tiny
    runner = TFLiteModel(flats["float32"])
    ref = model.predict(held, verbose=0)
    with_reset = runner.predict(held, reset=True)
    without = runner.predict(held, reset=False)
    assert np.max(np.abs(with_reset - ref)) < 1e-5
    drift = np.max(np.abs(without[1:] - ref[1:]))
    assert drift > 1e-3, drift
    # the first window after a reset is fine; the drift comes from carried state
    runner.interpreter.reset_all_variables()
    np.testing.assert_allclose(runner.invoke(held[0], reset=False), ref[0], atol=1e-5)


@pytest.mark.tf
@pytest.mark.slow
def test_self_check_reports_failure(tiny):
    from ppg_edge.convert.tflite import Tolerance, self_check

    model, _, _, held, flats = tiny
    with pytest.raises(ModelError, match=r"(?s)self-check failed for mode int8.*keras output.*tflite output"):
        self_check(model, flats["int8"], held, "int8", tolerance=Tolerance(1e-9, 0, 1e-9, 0))
    res = self_check(model, flats["int8"], held, "int8", tolerance=Tolerance(1e-9, 0, 1e-9, 0),
                     raise_on_fail=False)
    assert not res.passed and "window" in res.detail and len(res.where) == 2


# ----------------------------------------------------------------------------- refusals

@pytest.mark.tf
def test_16x8_refused_for_lstm():
    from ppg_edge.convert.tflite import convert_model

    model, _ = _tiny_model()
    with pytest.raises(ModelError, match="16x8.*fused LSTM"):
        convert_model(model, "16x8", calibration=np.zeros((2, WINDOW, 2), np.float32))


@pytest.mark.tf
def test_bad_mode_and_bad_calibration_refused():
    from ppg_edge.convert.tflite import convert_model

    model, _ = _tiny_model()
    with pytest.raises(ModelError, match="unknown conversion mode"):
        convert_model(model, "int4")
    with pytest.raises(ModelError, match="calibration"):
        convert_model(model, "int8")
    with pytest.raises(DataError, match="shape"):
        convert_model(model, "int8", calibration=np.zeros((2, WINDOW, 3), np.float32))
    bad = np.zeros((2, WINDOW, 2), np.float32)
    bad[1, 3, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        convert_model(model, "int8", calibration=bad)


@pytest.mark.tf
def test_while_loop_lstm_refused(rng):
    """A generic RNN(LSTMCell) is what Keras 3 / QAT LSTMs look like to the converter: a WHILE loop."""
    import tf_keras as keras

    from ppg_edge.convert.tflite import check_ops, convert_model, list_ops

    inp = keras.Input((16, 1), batch_size=1)
    out = keras.layers.Dense(1)(keras.layers.RNN(keras.layers.LSTMCell(4))(inp))
    model = keras.Model(inp, out, name="while_lstm")
    with pytest.raises(ModelError, match="WHILE"):
        convert_model(model, "float32")
    flat = convert_model(model, "float32", check=False)
    assert "WHILE" in list_ops(flat)
    assert "WHILE" in check_ops(flat, allow=["WHILE"])


@pytest.mark.tf
def test_flex_op_refused():
    import tensorflow as tf
    import tf_keras as keras

    from ppg_edge.convert.tflite import check_ops, convert_model

    inp = keras.Input((8,), batch_size=1)
    out = keras.layers.Lambda(lambda t: tf.math.erf(t))(inp)  # no builtin ERF: becomes FlexErf
    model = keras.Model(inp, out, name="flexy")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    flat = conv.convert()
    with pytest.raises(ModelError, match="Flex.*Select-TF"):
        check_ops(flat)
    with pytest.raises(ModelError):  # builtins only: the converter itself refuses
        convert_model(model, "float32")


def test_not_a_flatbuffer_refused():
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.tflite import list_ops

    with pytest.raises(ModelError, match="TFL3"):
        list_ops(b"this is not a model at all")


@pytest.mark.tf
@pytest.mark.slow
def test_tampered_manifest_and_corrupt_model_refused(tiny, tmp_path):
    from ppg_edge import manifest as mf
    from ppg_edge.convert.package import save_converted
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    flat = tiny[4]["float32"]
    path = save_converted(flat, tmp_path, "m", kind="peaks", mode="float32", sample_rate_hz=125,
                          window=WINDOW, hop=32, preprocessing={"fs": 125.0})
    mpath = mf.manifest_path_for(path)
    good = mpath.read_text()
    d = json.loads(good)
    d["window"] = 128
    mpath.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="edited or corrupt manifest"):
        mf.verify_model(path)
    mpath.write_text(good)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        mf.verify_model(path)
    with pytest.raises(ModelError, match="TFL3|interpreter"):
        TFLiteModel(b"TFL" + b"\0" * 40)


@pytest.mark.tf
def test_save_leaves_nothing_on_refusal(tmp_path):
    pytest.importorskip("tensorflow")
    from ppg_edge.convert.package import save_converted

    with pytest.raises(ModelError):
        save_converted(b"garbage", tmp_path, "x", kind="peaks", mode="float32", sample_rate_hz=125,
                       window=WINDOW, hop=32, preprocessing={})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- calibration lists

def _split():
    return {"name": "toy", "sha256": "abc", "subjects": ["d/a", "d/b", "d/c", "d/t"],
            "train": ["d/a", "d/b"], "val": ["d/c"], "test": ["d/t"]}


def _refs():
    from ppg_edge.convert.calibration import RecordRef

    return [RecordRef("d", f"{s}1", s, 1000) for s in "abct"] + [RecordRef("d", "a2", "a", 300)]


def test_calibration_list_training_subjects_only_and_reproducible():
    from ppg_edge.convert.calibration import build_calibration_list, check_calibration_list, describe

    kw = dict(kind="peaks", fs=125.0, window=250, hop=125, n_windows=12, n_holdout=4)
    doc = build_calibration_list(_split(), _refs(), seed=3, **kw)
    assert doc == build_calibration_list(_split(), _refs(), seed=3, **kw)
    assert doc != build_calibration_list(_split(), _refs(), seed=4, **kw)
    assert {e["subject"] for e in doc["entries"]} <= {"a", "b"}
    assert {e["subject"] for e in doc["holdout_entries"]} == {"c"}
    assert doc["n_windows"] == 12 and doc["n_holdout"] == 4
    for e in doc["entries"] + doc["holdout_entries"]:
        assert all(s % 125 == 0 and s + 250 <= (300 if e["record"] == "a2" else 1000) for s in e["starts"])
    check_calibration_list(doc, _split())
    assert "12 windows" in describe(doc)

    doc["entries"].append({"dataset": "d", "record": "t1", "subject": "t", "starts": [0]})
    with pytest.raises(SplitError, match="TEST subject"):
        check_calibration_list(doc, _split())


def test_calibration_list_refuses_bad_input(tmp_path):
    from ppg_edge.convert.calibration import (
        RecordRef,
        build_calibration_list,
        load_calibration_list,
        save_calibration_list,
    )

    kw = dict(kind="peaks", fs=125.0, window=250, hop=125)
    with pytest.raises(SplitError, match="not in split"):
        build_calibration_list(_split(), _refs() + [RecordRef("d", "z1", "z", 1000)], **kw)
    with pytest.raises(SplitError, match="no record of a training subject"):
        build_calibration_list(_split(), [RecordRef("d", "t1", "t", 1000)], **kw)
    with pytest.raises(DataError, match="long enough"):
        build_calibration_list(_split(), [RecordRef("d", "a1", "a", 100)], **kw)
    with pytest.raises(DataError, match="kind"):
        build_calibration_list(_split(), _refs(), **{**kw, "kind": "spo2"})
    doc = build_calibration_list(_split(), _refs(), **kw)
    path = save_calibration_list(doc, tmp_path / "cal.json")
    assert load_calibration_list(path, _split()) == doc
    other = {**_split(), "sha256": "changed"}
    with pytest.raises(SplitError, match="another version"):
        load_calibration_list(path, other)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_calibration_list(tmp_path / "bad.json")
    with pytest.raises(DataError, match="not found"):
        load_calibration_list(tmp_path / "none.json")


def test_class_balance_peaks_and_bp():
    from ppg_edge.convert.calibration import class_balance

    b = class_balance("peaks", [np.array([10, 110]), np.array([], int)], [{}, {}], 250, 125.0)
    assert b["windows_with_peak"] == 0.5 and b["positive_sample_fraction"] == pytest.approx(14 / 250 / 2)
    b = class_balance("bp", [None, None], [{"sbp": 120, "dbp": 80}, {"sbp": 140, "dbp": 90}], 250, 125.0)
    assert b["sbp"]["mean"] == 130 and b["dbp"]["max"] == 90


# ----------------------------------------------------------------------------- CLI

@pytest.mark.tf
@pytest.mark.slow
def test_cli_convert_writes_checked_models(tmp_path, capsys):
    from ppg_edge import manifest as mf
    from ppg_edge.cli import main
    from ppg_edge.train.peaks.fit import save_peak_model

    model, cfg = _tiny_model()
    save_peak_model(model, cfg, tmp_path / "m" / "tiny30")
    rc = main(["-q", "convert", str(tmp_path / "m"), "--mode", "int8", "--synthetic-calibration", "32",
               "--check-windows", "8", "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in report] == ["int8"] and report[0]["self_check"]["passed"]
    man = mf.verify_model(tmp_path / "out" / "tiny30-int8.tflite")
    assert man["mode"] == "int8" and man["window"] == WINDOW and man["hop"] == WINDOW // 2
    from ppg_edge.edge_runtime.peaks_decode import DecoderSpec

    # no threshold, decode block or raw-axis shift in the json: the spec's defaults, all written
    assert man["preprocessing"]["dwt_levels"] == [3] and man["decoder"] == DecoderSpec().to_dict()
    assert man["calibration"]["n_windows"] == 32 and man["training"]["model_config"]["name"] == "tiny30"

    # int8 without calibration, 16x8, and a missing model: one clear error line each
    for argv, msg in (
        (["convert", str(tmp_path / "m"), "--mode", "int8"], "needs calibration"),
        (["convert", str(tmp_path / "m"), "--mode", "16x8", "--synthetic-calibration", "4"], "16x8"),
        (["convert", str(tmp_path / "nothing")], "no saved peak model"),
    ):
        assert main(["-q"] + argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("ppg-edge: error:") and msg in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny30-int8.json", "tiny30-int8.tflite"]


# ----------------------------------------------------------------------------- compare, pruning, QAT

@pytest.mark.tf
@pytest.mark.slow
def test_compare_report(tiny, tmp_path, monkeypatch):
    from ppg_edge.convert.compare import Variant, compare_variants, count_params, write_report
    from ppg_edge.convert.peaks import agreement_evaluate
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    model, _, _, held, flats = tiny
    p, nz = count_params(model)
    variants = [Variant("keras-float", keras=model, params=p, nonzero_params=nz)]
    variants += [Variant(m, tflite=flats[m], params=p, nonzero_params=nz) for m in ("float32", "int8")]
    result = compare_variants(variants, held[:4], agreement_evaluate(model, held[:4]), hop=32, runs=5, warmup=1)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["float32"]["metrics"]["max_abs_vs_keras"] < 1e-5
    assert rows["int8"]["metrics"]["max_abs_vs_keras"] > rows["float32"]["metrics"]["max_abs_vs_keras"]
    assert rows["int8"]["size_bytes"] == len(flats["int8"]) and rows["int8"]["gzip_bytes"] < len(flats["int8"])
    for r in result["rows"]:
        assert r["latency_ms_per_window"] > 0
        assert r["latency_us_per_sample"] == pytest.approx(r["latency_ms_per_window"] * 1e3 / 32)
    # each TFLite row names the backend that ran it, under a forced one too
    assert rows["int8"]["runtime"] == f"{TFLiteModel(flats['int8']).backend}, 1 thread"
    monkeypatch.setenv("PPG_EDGE_INTERPRETER", "tf.lite")
    forced = compare_variants(variants[1:2], held[:2], hop=32, runs=1, warmup=0)
    assert forced["rows"][0]["runtime"] == "tf.lite, 1 thread"
    monkeypatch.delenv("PPG_EDGE_INTERPRETER")
    assert result["tflite_runtime"] and "numpy" in result["tflite_runtime"].lower()
    paths = write_report(result, tmp_path, metric="mean_abs_vs_keras")
    assert "| int8 |" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["rows"][0]["name"] == "keras-float"
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ModelError, match="exactly one"):
        compare_variants([Variant("none")], held[:1], hop=32, runs=1)


@pytest.mark.tf
@pytest.mark.slow
def test_pruned_model_is_sparse_and_converts_fused(tiny):
    from ppg_edge.convert.optimize import prune_model, sparsity
    from ppg_edge.convert.tflite import FUSED_LSTM, check_ops, convert_model, self_check
    from ppg_edge.errors import ConfigError
    from ppg_edge.train.peaks.models import custom_objects

    model, _, cal, held, _ = tiny
    y = model.predict(cal, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    pruned = prune_model(model, cal, y, target_sparsity=0.5, schedule="constant", epochs=1, batch_size=8,
                         custom_objects=custom_objects())
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # original untouched
    sp = sparsity(pruned)
    assert sp and all(0.45 <= v <= 0.55 for v in sp.values()), sp
    assert "TemporalAttention" not in {type(layer.layer).__name__ for layer in pruned.layers if hasattr(layer, "layer")}
    flat = convert_model(pruned, "int8", calibration=cal)
    assert FUSED_LSTM in check_ops(flat)
    assert self_check(pruned, flat, held, "pruned-int8").passed
    with pytest.raises(ConfigError):
        prune_model(model, cal, y, target_sparsity=1.0)
    with pytest.raises(DataError):
        prune_model(model, cal[:, :10], y, target_sparsity=0.5)


@pytest.mark.tf
@pytest.mark.slow
def test_qat_wrapped_lstm_becomes_while_and_is_refused(tiny):
    """Calibrated (int8) conversion of the WHILE-loop model segfaulted in the converter here
    (as docs/facts.md saw for Keras 3 LSTMs), so the loop is shown on a float32 conversion."""
    from ppg_edge.convert.optimize import qat_model
    from ppg_edge.convert.tflite import FUSED_LSTM, convert_model, list_ops
    from ppg_edge.train.peaks.models import custom_objects

    model, _, cal, _, _ = tiny
    y = model.predict(cal, verbose=0)
    qat = qat_model(model, cal, y, epochs=1, batch_size=8, annotate_lstm=True, custom_objects=custom_objects())
    flat = convert_model(qat, "float32", custom_objects=custom_objects(), check=False)
    ops = list_ops(flat)
    assert "WHILE" in ops and FUSED_LSTM not in ops
    from ppg_edge.convert.tflite import check_ops

    with pytest.raises(ModelError, match="WHILE"):
        check_ops(flat)


# ----------------------------------------------------------------------------- committed calibration list

COMMITTED = "peaks-125hz-w250.json"


def _committed():
    from pathlib import Path

    import ppg_edge.convert as conv

    return Path(conv.__file__).resolve().parent / "calibration_lists" / COMMITTED


def test_committed_calibration_list_is_training_only():
    from ppg_edge.convert.calibration import load_calibration_list
    from ppg_edge.data.splits import load_split

    split = load_split("peaks")
    doc = load_calibration_list(_committed(), split)  # checks every entry's part
    assert doc["split"] == "peaks" and doc["split_sha256"] == split["sha256"]
    train = set(split["train"])
    assert {f"{e['dataset']}/{e['subject']}" for e in doc["entries"]} <= train
    assert not {f"{e['dataset']}/{e['subject']}" for e in doc["entries"] + doc["holdout_entries"]} & set(split["test"])
    assert doc["n_windows"] == 200 and doc["n_holdout"] == 50


def test_committed_calibration_windows_from_real_data(data_root):
    from ppg_edge.convert.calibration import load_calibration_list, load_windows
    from ppg_edge.convert.peaks import peak_preprocessing
    from ppg_edge.train.peaks.variants import get_variant

    doc = load_calibration_list(_committed())
    doc = {**doc, "entries": doc["entries"][:2]}
    pre = peak_preprocessing(get_variant("Type30"), 250)
    x, balance = load_windows(doc, pre, "entries", data_root, progress=False)
    assert x.shape == (sum(len(e["starts"]) for e in doc["entries"]), 250, 2)
    assert np.all(np.isfinite(x))
    assert 0.5 <= balance["windows_with_peak"] <= 1.0 and 0.0 < balance["positive_sample_fraction"] < 0.3


def test_float_ops_tells_full_int8_from_mixed():
    import sys
    from pathlib import Path

    from ppg_edge.convert.tflite import float_ops

    sys.path.insert(0, str(Path(__file__).parent))
    import runtime_models as rm

    assert float_ops(rm.tiny_model("peaks", "int8").read_bytes()) == []
    f32 = float_ops(rm.tiny_model("peaks", "float32").read_bytes())
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in f32 and "QUANTIZE" not in f32
