"""EdgeModel: verified before load, fits the pipeline, int8 through the manifest's params, reset per window."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import runtime_models as rm

from ppg_edge import manifest as mf
from ppg_edge.edge_runtime import interpreter as itp
from ppg_edge.edge_runtime.interpreter import EdgeModel, InterpreterFallback, interpreter_class
from ppg_edge.errors import ConfigError, ModelError


@pytest.fixture(scope="module")
def peaks_f32():
    return rm.tiny_model("peaks", "float32")


@pytest.fixture(scope="module")
def peaks_i8():
    return rm.tiny_model("peaks", "int8")


def test_float_model_matches_keras(peaks_f32, rng):
    m = EdgeModel(peaks_f32, expected_fs=125.0, kind="peaks")
    x = rng.standard_normal((250, 1)).astype(np.float32)
    y = m.predict_window(x)
    ref = rm.keras_reference("peaks").predict(x[None], verbose=0)[0, :, 0]
    assert y.shape == (250,) and m.backend == "ai-edge-litert"
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert m.decoder.threshold == 0.5


def test_int8_model_uses_manifest_quantization(peaks_i8, rng):
    m = EdgeModel(peaks_i8)
    assert m.in_dtype == np.int8 and m.in_q is not None and m.out_q is not None
    x = rng.standard_normal((250, 1)).astype(np.float32)
    y = m.predict_window(x)
    ref = rm.keras_reference("peaks", "int8").predict(x[None], verbose=0)[0, :, 0]
    assert np.all((y >= 0) & (y <= 1))
    d = np.abs(y - ref)
    # The tiny model's weights are the same in every process (numpy-drawn); measured on five
    # random windows: max 0.56-0.71 LSB, mean 0.24-0.26 LSB (the flatbuffer's bytes still differ by
    # layer names, so the sha256 is not a check).
    lsb = m.out_q[0]
    assert d.mean() < 0.5 * lsb and d.max() < 2 * lsb, (
        f"int8 vs Keras: max {d.max() / lsb:.1f} LSB, mean {d.mean() / lsb:.2f} LSB")
    # the quantizer is the manifest's affine map, clipped to int8
    scale, zp = m.in_q
    q = m.quantize(np.array([0.0, scale * 3, 1e6, -1e6]))
    assert q.tolist() == [zp, zp + 3, 127, -128]


def test_reset_all_variables_before_every_window(peaks_f32, rng):
    m = EdgeModel(peaks_f32)
    calls = []
    real = m.interpreter

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def reset_all_variables(self):
            calls.append("reset")
            real.reset_all_variables()

        def invoke(self):
            calls.append("invoke")
            real.invoke()

    m.interpreter = Spy()
    x = rng.standard_normal((250, 1))
    a = m.predict_window(x)
    b = m.predict_window(x)
    assert calls == ["reset", "invoke", "reset", "invoke"]
    np.testing.assert_array_equal(a, b)


def test_tampered_manifest_refused(peaks_f32, tmp_path):
    p = rm.copy_model(peaks_f32, tmp_path)
    man = mf.manifest_path_for(p)
    d = json.loads(man.read_text())
    d["decoder"]["threshold"] = 0.1  # edited without resealing
    man.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="manifest_digest"):
        EdgeModel(p)


def test_corrupt_model_refused_before_loading(peaks_f32, tmp_path, monkeypatch):
    p = rm.copy_model(peaks_f32, tmp_path)
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    p.write_bytes(bytes(blob))
    loaded = []
    monkeypatch.setattr(itp, "interpreter_class", lambda *a, **k: loaded.append(1))
    with pytest.raises(ModelError, match="sha256"):
        EdgeModel(p)
    assert loaded == []  # refused before any interpreter was asked for


def test_truncated_and_garbage_models(peaks_f32, tmp_path):
    p = rm.copy_model(peaks_f32, tmp_path)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ModelError, match="bytes"):
        EdgeModel(p)
    # a sealed manifest for a file that is not a flatbuffer: the interpreter's failure is a ModelError
    g = tmp_path / "garbage" / "junk.tflite"
    g.parent.mkdir()
    g.write_bytes(b"\x00" * 512)
    d = json.loads(mf.manifest_path_for(peaks_f32).read_text())
    d.update(model_file=g.name, sha256=mf.sha256_file(g), size_bytes=512)
    mf.write_manifest(d, mf.manifest_path_for(g))
    with pytest.raises(ModelError, match="cannot load"):
        EdgeModel(g)


def test_wrong_sample_rate_refused(peaks_f32):
    with pytest.raises(ModelError, match=r"expects 125 Hz.*delivers 100 Hz"):
        EdgeModel(peaks_f32, expected_fs=100.0)


def test_manifest_that_does_not_fit_the_model(peaks_f32, tmp_path):
    p = rm.copy_model(peaks_f32, tmp_path)
    man = mf.manifest_path_for(p)
    d = json.loads(man.read_text())
    d["sample_rate_hz"] = 100
    mf.write_manifest(d, man)
    with pytest.raises(ModelError, match="disagrees with its preprocessing"):
        EdgeModel(p)
    d["sample_rate_hz"] = 125.0
    d["inputs"][0]["shape"] = [1, 250, 2]
    mf.write_manifest(d, man)
    with pytest.raises(ModelError, match="input shape"):
        EdgeModel(p)
    with pytest.raises(ModelError, match="'bp' model is needed"):
        EdgeModel(peaks_f32, kind="bp")


def test_window_shape_and_nan_refused(peaks_f32):
    m = EdgeModel(peaks_f32)
    with pytest.raises(ModelError, match="window shape"):
        m.predict_window(np.zeros((200, 1)))
    x = np.zeros((250, 1))
    x[3] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        m.predict_window(x)


def test_backend_selection_and_fallback(monkeypatch):
    def broken():
        raise ImportError("no module named tflite_runtime")

    monkeypatch.setitem(itp._LOADERS, "tflite-runtime", broken)
    name, cls = interpreter_class(preference=["tflite-runtime", "ai-edge-litert"])
    assert name == "ai-edge-litert"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        interpreter_class(preference=["tflite-runtime"])
    assert any(issubclass(x.category, InterpreterFallback) for x in w)
    with pytest.raises(ModelError, match="not usable"):
        interpreter_class("tflite-runtime")  # named: no fallback
    monkeypatch.setenv(itp.INTERPRETER_ENV, "nope")
    with pytest.raises(ConfigError, match="PPG_EDGE_INTERPRETER"):
        interpreter_class()
    monkeypatch.setenv(itp.INTERPRETER_ENV, "ai-edge-litert")
    assert interpreter_class()[0] == "ai-edge-litert"
    for key in list(itp._LOADERS):  # built-in and host-registered (tf.lite) alike
        monkeypatch.setitem(itp._LOADERS, key, broken)
    monkeypatch.delenv(itp.INTERPRETER_ENV)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelError, match="no TFLite interpreter"):
            interpreter_class()


def test_raw_axis_shift_taken_from_the_training_block(peaks_f32, tmp_path):
    """Manifests from `ppg-edge convert` keep the training's raw-axis shift under "training";
    the decoder gets it (beats then land on the raw PPG axis, as in the offline evaluation)."""
    from ppg_edge.dsp.pipeline import peaks_preprocessing
    from ppg_edge.edge_runtime.decoder import StreamDecoder

    path = rm.copy_model(peaks_f32, tmp_path / "m")
    rm.write_model_manifest(path, "peaks", "float32", peaks_preprocessing(125.0),
                            decoder={"threshold": 0.45, "snap": True, "snap_signal": "filtered ppg"},
                            training={"raw_axis_shift_samples": 2})
    m = EdgeModel(path)
    assert m.decoder.raw_axis_shift_samples == 2 and m.decoder.threshold == 0.45
    assert StreamDecoder(125.0, 250, 125, m.decoder).raw_shift == 2
    assert json.loads(mf.manifest_path_for(path).read_text())["training"]["raw_axis_shift_samples"] == 2


def test_host_backend_is_registered_from_outside_the_device_package(monkeypatch):
    """tf.lite is no backend of edge_runtime itself: ppg_edge.convert registers it, after the
    device's two; a built-in backend cannot be replaced."""
    import subprocess
    import sys

    code = ("import sys; from ppg_edge.edge_runtime import interpreter as i; a = i.backends(); "
            "import ppg_edge.convert; print(a, i.backends(), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["('ai-edge-litert',", "'tflite-runtime')", "('ai-edge-litert',",
                                  "'tflite-runtime',", "'tf.lite')", "False"]
    with pytest.raises(ConfigError, match="built in"):
        itp.register_backend("ai-edge-litert", lambda: None)
    real = itp._LOADERS["ai-edge-litert"]

    def broken():
        raise ImportError("gone")

    monkeypatch.setitem(itp._LOADERS, "ai-edge-litert", broken)
    monkeypatch.setitem(itp._LOADERS, "tflite-runtime", broken)
    monkeypatch.delitem(itp._LOADERS, "tf.lite", raising=False)  # registered if this worker imported convert
    monkeypatch.setitem(itp._LOADERS, "host-test", real)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert interpreter_class()[0] == "host-test"  # registered backends come last
    monkeypatch.delitem(itp._LOADERS, "host-test")
    monkeypatch.setattr(itp, "_LOADERS", {k: v for k, v in itp._LOADERS.items() if k != "tf.lite"})
    with pytest.raises(ConfigError, match="registered by ppg_edge.convert"):
        interpreter_class("tf.lite")


def test_tflite_model_from_bytes_and_garbage(peaks_f32, rng):
    """The one wrapper takes bytes too (the converter's self-check); garbage is a ModelError."""
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    m = TFLiteModel(peaks_f32.read_bytes())
    e = EdgeModel(peaks_f32)
    x = rng.standard_normal((3, 250, 1)).astype(np.float32)
    y = m.predict(x)
    assert y.shape == (3, 250, 1) and y.dtype == np.float64
    np.testing.assert_array_equal(y[:, :, 0], np.stack([e.predict_window(w) for w in x]))
    with pytest.raises(ModelError, match="cannot load"):
        TFLiteModel(b"TFL3" + b"\0" * 40)
