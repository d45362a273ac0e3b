"""The 30 peak-detector variants: configurations, builders, counts, loss, fit, conversion."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, DataError, ModelError
from ppg_edge.train.peaks.labels import half_width_samples, peak_labels, window_labels
from ppg_edge.train.peaks.variants import (
    PAPER_PARAM_COUNTS,
    VARIANTS,
    PeakModelConfig,
    get_variant,
)

FS = 125.0
WINDOW = 250


# ---------------------------------------------------------------- configurations (no TF)

def test_table2_family_as_listed():
    assert list(VARIANTS) == [f"Type{i}" for i in range(1, 31)]
    nets = [VARIANTS[f"Type{i}"].network for i in range(1, 31)]
    assert nets == ["cnn"] * 6 + ["lstm"] * 6 + ["cnn_lstm"] * 12 + ["cnn_lstm_attention"] * 6
    # inputs cycle PPG, DWT 2, DWT 3 and activations sigmoid x3, tanh x3 in every block of six
    for i in range(1, 31):
        cfg = VARIANTS[f"Type{i}"]
        assert cfg.input == ("ppg", "ppg+dwt2", "ppg+dwt3")[(i - 1) % 3]
        assert cfg.activation == ("sigmoid", "tanh")[((i - 1) // 3) % 2]
        assert cfg.sizes == ((16, 32, 16) if i <= 18 else (32, 64, 32))
    t30 = VARIANTS["Type30"]
    assert (t30.n_channels, t30.dwt_level, t30.has_attention) == (2, 3, True)
    assert (VARIANTS["Type28"].n_channels, VARIANTS["Type28"].dwt_level) == (1, None)
    assert VARIANTS["Type29"].dwt_level == 2


def test_config_validation_and_round_trip():
    cfg = VARIANTS["Type26"]
    assert PeakModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        cfg.replace(network="transformer")
    with pytest.raises(ConfigError):
        cfg.replace(sizes=(32, 0, 32))
    with pytest.raises(ConfigError):
        cfg.replace(lstm_dropout=1.0)
    with pytest.raises(ConfigError):
        PeakModelConfig.from_dict({**cfg.to_dict(), "colour": "red"})
    with pytest.raises(ConfigError):
        get_variant("Type31")


# ---------------------------------------------------------------- labels (no TF)

def test_labels_mark_25_ms_each_side():
    assert half_width_samples(125.0) == 3  # 25 ms at 125 Hz = 3.1 samples
    y = peak_labels([10, 100], 120, 125.0)
    assert y.dtype == np.float32 and y.shape == (120,)
    np.testing.assert_array_equal(np.flatnonzero(y), list(range(7, 14)) + list(range(97, 104)))
    # clipped at the edges, not dropped
    np.testing.assert_array_equal(np.flatnonzero(peak_labels([0, 119], 120, 125.0)), [0, 1, 2, 3, 116, 117, 118, 119])


def test_window_labels_match_whole_record_labels():
    peaks = np.array([5, 130, 251, 380, 498])
    whole = peak_labels(peaks, 600, FS)
    starts = np.array([0, 125, 250, 350])
    y = window_labels(peaks, starts, WINDOW, FS)
    for row, s in zip(y, starts):
        np.testing.assert_array_equal(row, whole[s : s + WINDOW])
    assert window_labels([], starts, WINDOW, FS).sum() == 0


@pytest.mark.parametrize("peaks", [[-1, 5], [5, 120], [1.5], [np.nan], [[1, 2]]])
def test_bad_peak_indices_raise(peaks):
    with pytest.raises(DataError):
        peak_labels(peaks, 120, FS)


# ---------------------------------------------------------------- models (TF)

def expected_trainable(cfg: PeakModelConfig) -> int:
    """Trainable count from the layer formulas, written independently of the builder."""
    c = cfg.n_channels
    s1, s2, s3 = cfg.sizes
    total, feat = 0, c
    if cfg.has_cnn:
        for f, k in zip(cfg.sizes, cfg.conv_kernels):
            total += k * feat * f + f + 2 * f  # conv kernel + bias, BN gamma + beta
            feat = f
    if cfg.has_lstm:
        for u in cfg.sizes:
            total += 4 * (feat * u + u * u + u)
            feat = u
    if cfg.has_attention:
        total += feat * feat + feat + feat  # W, b, v
    if cfg.head == "paper":
        return total + feat + 1
    if cfg.has_attention:
        feat *= 2  # [h_t, context]
    return total + 5 * (feat + c) * 8 + 8 + 8 + 1  # refine Conv1D(8, 5) + Dense(1)


@pytest.fixture
def keras():
    tf_keras = pytest.importorskip("tf_keras")
    yield tf_keras
    tf_keras.backend.clear_session()


@pytest.mark.tf
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_builds_with_expected_shape_and_count(name, keras):
    from ppg_edge.train.peaks.models import build_peak_model, trainable_params

    cfg = VARIANTS[name]
    model = build_peak_model(cfg)
    assert model.input_shape == (None, WINDOW, cfg.n_channels)
    assert model.output_shape == (None, WINDOW)
    assert trainable_params(model) == expected_trainable(cfg)


@pytest.mark.tf
def test_paper_head_reproduces_table11_counts(keras):
    from ppg_edge.train.peaks.models import build_peak_model, trainable_params

    assert PAPER_PARAM_COUNTS == {"Type24": 62_689, "Type28": 63_617, "Type30": 63_777}
    for name, count in PAPER_PARAM_COUNTS.items():
        cfg = VARIANTS[name].replace(head="paper")
        model = build_peak_model(cfg)
        assert model.output_shape == (None, 1)
        assert trainable_params(model) == count == expected_trainable(cfg)
        keras.backend.clear_session()
    # Table 3 output shapes of Type30's layers
    model = build_peak_model(VARIANTS["Type30"].replace(head="paper"))
    shapes = {layer.name: layer.output_shape for layer in model.layers}
    assert shapes["conv1"] == (None, 246, 32) and shapes["pool1"] == (None, 123, 32)
    assert shapes["conv2"] == (None, 119, 64) and shapes["pool2"] == (None, 59, 64)
    assert shapes["conv3"] == (None, 57, 32) and shapes["lstm2"] == (None, 57, 64)
    assert shapes["attention"] == (None, 32)


@pytest.mark.tf
def test_deployed_type30_count(keras):
    from ppg_edge.train.peaks.models import build_peak_model, trainable_params

    model = build_peak_model(VARIANTS["Type30"])
    assert trainable_params(model) == 66_401 == 63_777 - 33 + 2_657
    with pytest.raises(ConfigError):
        build_peak_model(VARIANTS["Type30"], window=20)
    with pytest.raises(ConfigError):
        build_peak_model("Type30")


@pytest.mark.tf
def test_attention_layer_math_and_serialisation(keras, rng):
    from ppg_edge.train.peaks.models import custom_objects

    layer_cls = custom_objects()["TemporalAttention"]
    layer = layer_cls(output_mode="context", name="att")
    h = rng.normal(size=(2, 7, 4)).astype(np.float32)
    context = layer(h).numpy()
    w, b, v = (x.numpy() for x in (layer.w, layer.b, layer.v))
    e = (np.tanh(h @ w + b) @ v)[..., 0]
    alpha = np.exp(e - e.max(1, keepdims=True))
    alpha /= alpha.sum(1, keepdims=True)
    np.testing.assert_allclose(context, (alpha[..., None] * h).sum(1), rtol=1e-5, atol=1e-6)
    concat = layer_cls(output_mode="concat")
    concat.build(h.shape)
    concat.set_weights(layer.get_weights())
    out = concat(h).numpy()
    np.testing.assert_allclose(out[:, :, :4], h)
    np.testing.assert_allclose(out[:, 3, 4:], context, rtol=1e-5, atol=1e-6)
    clone = keras.layers.deserialize(keras.layers.serialize(layer), custom_objects=custom_objects())
    assert type(clone) is layer_cls and clone.get_config() == layer.get_config()
    with pytest.raises(ConfigError):
        layer_cls(output_mode="mean")


@pytest.mark.tf
def test_upsampling_aligns_steps_with_samples(keras):
    from ppg_edge.train.peaks.models import cnn_output_geometry, custom_objects

    steps, centre, stride = cnn_output_geometry(WINDOW)
    assert (steps, centre, stride) == (57, 11.5, 4)
    up = custom_objects()["AlignedUpsample"](steps, WINDOW, centre, stride)
    ramp = (centre + stride * np.arange(steps, dtype=np.float32)).reshape(1, steps, 1)
    out = up(ramp).numpy()[0, :, 0]
    inside = np.arange(WINDOW)[(np.arange(WINDOW) >= centre) & (np.arange(WINDOW) <= ramp.max())]
    np.testing.assert_allclose(out[inside], inside, atol=1e-4)
    assert out[0] == pytest.approx(centre) and out[-1] == pytest.approx(ramp.max())
    with pytest.raises(ConfigError):
        cnn_output_geometry(20)


# ---------------------------------------------------------------- loss (TF)

def _blob_probs(centres, n=WINDOW, floor=0.02, height=0.9):
    p = np.full(n, floor, dtype=np.float32)
    for c in centres:
        p[max(0, c - 3) : c + 4] = height
    return p[None]


@pytest.mark.tf
def test_loss_is_lower_for_closer_predictions(keras):
    from ppg_edge.train.peaks.losses import peak_distance_loss, total_loss

    y = peak_labels([60, 170], WINDOW, FS)[None]
    totals, dists = [], []
    for shift in (0, 3, 8, 20, 45):
        p = _blob_probs([60 + shift, 170 + shift])
        totals.append(float(total_loss(y, p)[0]))
        dists.append(float(peak_distance_loss(y, p)[0]))
    assert all(a < b for a, b in zip(dists, dists[1:])), dists
    assert all(a < b for a, b in zip(totals, totals[1:])), totals
    # weights: pure BCE is blind to how far a miss is; the distance term is not
    bce_far = float(total_loss(y, _blob_probs([100, 210]), 1.0, 0.0)[0])
    bce_farther = float(total_loss(y, _blob_probs([130, 240]), 1.0, 0.0)[0])
    assert bce_far == pytest.approx(bce_farther, rel=1e-3)


@pytest.mark.parametrize("fs, dist", [(0.0, 0.5), (float("inf"), 0.5), ("125", 0.5), (True, 0.5),
                                     (125.0, 0.0), (125.0, float("nan")), (125.0, "0.5")])
def test_loss_refuses_a_bad_rate_or_distance_before_tensorflow(fs, dist):
    from ppg_edge.train.peaks.losses import peak_distance_loss

    y = np.zeros((1, WINDOW), np.float32)
    with pytest.raises(ConfigError, match="fs|max_distance_s"):
        peak_distance_loss(y, y, fs, dist)


@pytest.mark.tf
def test_loss_handles_windows_without_peaks(keras):
    from ppg_edge.train.peaks.losses import total_loss

    y = np.zeros((1, WINDOW), np.float32)
    quiet = float(total_loss(y, _blob_probs([]))[0])
    spurious = float(total_loss(y, _blob_probs([100]))[0])
    assert np.isfinite(quiet) and np.isfinite(spurious) and quiet < spurious


@pytest.mark.tf
def test_loss_gradients_are_finite(keras, rng):
    import tensorflow as tf

    from ppg_edge.train.peaks.losses import PeakLoss

    y = np.stack(
        [peak_labels([30, 140], WINDOW, FS), np.zeros(WINDOW, np.float32), peak_labels([249], WINDOW, FS)]
    )
    init = rng.uniform(0, 1, (3, WINDOW)).astype(np.float32)
    init[0, :10], init[1, :10] = 0.0, 1.0  # saturated probabilities
    p = tf.Variable(init)
    loss = PeakLoss()
    with tf.GradientTape() as tape:
        value = loss(y, p)
    grad = tape.gradient(value, p).numpy()
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    assert type(loss).from_config(loss.get_config()).get_config() == loss.get_config()
    with pytest.raises(ConfigError):
        PeakLoss(alpha_bce=0.0, alpha_dist=0.0)


# ---------------------------------------------------------------- fit, save, clone (TF)

def _tiny_set(rng, n, channels):
    """Windows with 2 bumps each on noise; labels at the bumps."""
    x = rng.normal(0.0, 0.3, (n, WINDOW, channels)).astype(np.float32)
    y = np.zeros((n, WINDOW), np.float32)
    t = np.arange(WINDOW)
    for i in range(n):
        centres = rng.choice(np.arange(20, 230), 2, replace=False)
        for c in centres:
            x[i, :, 0] += np.exp(-0.5 * ((t - c) / 5.0) ** 2)
        y[i] = peak_labels(centres, WINDOW, FS)
    return x, y


@pytest.mark.tf
def test_fit_lowers_loss_and_weights_round_trip(keras, rng, tmp_path):
    from ppg_edge.train.peaks.fit import fit_peak_model, load_peak_model, save_peak_model
    from ppg_edge.train.peaks.losses import PeakLoss
    from ppg_edge.train.peaks.models import build_peak_model

    cfg = VARIANTS["Type14"]
    x, y = _tiny_set(rng, 40, cfg.n_channels)
    keras.utils.set_random_seed(3)
    model = build_peak_model(cfg)
    model.compile(loss=PeakLoss())
    before = model.evaluate(x[:32], y[:32], verbose=0)
    hist = fit_peak_model(model, x[:32], y[:32], x[32:], y[32:], epochs=2, batch_size=8, seed=3)
    after = model.evaluate(x[:32], y[:32], verbose=0)
    assert len(hist["loss"]) == 2 and len(hist["val_loss"]) == 2
    assert after < before, (before, after)

    meta = save_peak_model(model, cfg, tmp_path / "t14")
    assert meta.name == "t14.json" and (tmp_path / "t14.weights.h5").is_file()
    loaded, loaded_cfg = load_peak_model(tmp_path / "t14")
    assert loaded_cfg == cfg
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), atol=1e-6)

    with pytest.raises(ModelError):
        load_peak_model(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.weights.h5").write_bytes(b"")
    with pytest.raises(ModelError):
        load_peak_model(tmp_path / "bad")
    with pytest.raises(DataError):
        fit_peak_model(model, x[:4, :100], y[:4], x[32:], y[32:], epochs=1)
    bad = x[:4].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError):
        fit_peak_model(model, bad, y[:4], x[32:], y[32:], epochs=1)


@pytest.mark.tf
def test_clone_for_inference_has_batch_one_and_same_outputs(keras, rng):
    from ppg_edge.train.peaks.models import build_peak_model, clone_for_inference

    model = build_peak_model(VARIANTS["Type27"])
    x = rng.normal(size=(1, WINDOW, 2)).astype(np.float32)
    clone = clone_for_inference(model)
    assert clone.input_shape == (1, WINDOW, 2)
    np.testing.assert_allclose(clone(x).numpy(), model(x).numpy(), atol=1e-6)


@pytest.mark.tf
@pytest.mark.slow
def test_type30_converts_to_builtin_tflite_ops_with_fused_lstm(keras, rng):
    import tensorflow as tf

    pytest.importorskip("ai_edge_litert.interpreter")
    from ppg_edge.edge_runtime.interpreter import TFLiteModel
    from ppg_edge.train.peaks.models import build_peak_model, clone_for_inference

    model = build_peak_model(VARIANTS["Type30"])
    flat = tf.lite.TFLiteConverter.from_keras_model(clone_for_inference(model)).convert()
    lite_model = TFLiteModel(flat, backend="ai-edge-litert")
    ops = {d["op_name"] for d in lite_model.interpreter._get_ops_details()}
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops
    assert "WHILE" not in ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    assert lite_model.input_shape == (1, WINDOW, 2) and tuple(lite_model.output["shape"]) == (1, WINDOW)
    results = []
    for _ in range(2):
        x = rng.normal(size=(1, WINDOW, 2)).astype(np.float32)
        results.append((lite_model.invoke(x[0]), model(x).numpy()[0]))  # state reset before each window
    for lite, ref in results:
        np.testing.assert_allclose(lite, ref, atol=1e-5)
