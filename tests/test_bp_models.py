"""BP model builders: shapes, parameter counts, a short fit that learns, the
multi-stage cascade, the Table 1 search; and the gradient-boosting baseline."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, DataError, SplitError
from ppg_edge.train.bp import feature_baseline as fb
from ppg_edge.train.bp import multistage as ms


def conv_params(k, cin, f):
    return k * cin * f + f


def lstm_params(cin, u):
    return 4 * (u * (cin + u) + u)


def windows(rng, n, length, channels=1):
    """Sine windows whose amplitude sets SBP and whose frequency sets DBP."""
    t = np.arange(length) / 50.0
    amp = rng.uniform(0.5, 2.0, n)
    freq = rng.uniform(0.8, 2.0, n)
    x = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None, :])
    x = np.repeat(x[..., None], channels, axis=2).astype(np.float32)
    y = np.stack([100 + 20 * amp, 60 + 15 * freq], axis=1).astype(np.float32)
    return x, y


def fit_loss_drops(model, x, y, epochs=2, batch_size=16):
    """Training loss of the last epoch below the first (one compile: cheaper than evaluate)."""
    loss = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False).history["loss"]
    return loss[0], loss[-1]


def loss_drops(model, x, y, epochs=2, batch_size=16):
    """Loss on the training set before fitting against after fitting."""
    before = model.evaluate(x, y, verbose=0, batch_size=64)
    before = before[0] if isinstance(before, list) else before
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False)
    after = model.evaluate(x, y, verbose=0, batch_size=64)
    after = after[0] if isinstance(after, list) else after
    return before, after


# ---------------------------------------------------------------- CNN-LSTM (paper 002)
@pytest.mark.tf
def test_cnn_lstm_is_table_2_and_counts_its_parameters():
    from ppg_edge.train.bp import cnn_lstm

    m = cnn_lstm.build_cnn_lstm_bp(cnn_lstm.input_length(100.0), rng=np.random.default_rng(1))
    assert m.input_shape == (None, 210, 1) and m.output_shape == (None, 2)
    convs = [l for l in m.layers if l.__class__.__name__ == "Conv1D"]
    assert [c.filters for c in convs] == [16, 32, 64]
    assert [c.kernel_size[0] for c in convs] == [63, 15, 15]
    assert len([l for l in m.layers if l.__class__.__name__ == "MaxPooling1D"]) == 3
    lstms = [l for l in m.layers if l.__class__.__name__ == "LSTM"]
    assert [l.units for l in lstms] == [128, 128, 32, 64, 128]
    assert [l.return_sequences for l in lstms] == [True] * 4 + [False]
    dense = [l for l in m.layers if l.__class__.__name__ == "Dense"]
    assert len(dense) == 1 and dense[0].units == 2  # Table 2: no hidden dense layer
    expected = (conv_params(63, 1, 16) + conv_params(15, 16, 32) + conv_params(15, 32, 64)
                + lstm_params(64, 128) + lstm_params(128, 128) + lstm_params(128, 32)
                + lstm_params(32, 64) + lstm_params(64, 128) + 128 * 2 + 2)
    assert m.count_params() == expected == 414434
    # parameters do not depend on the input length; only the LSTM sequence does
    assert cnn_lstm.build_cnn_lstm_bp(2100).count_params() == expected


@pytest.mark.tf
def test_cnn_lstm_two_epochs_lower_the_loss(rng):
    from ppg_edge.train.bp import cnn_lstm

    x, y = windows(rng, 96, 64)
    m = cnn_lstm.build_cnn_lstm_bp(64, target_mean=y.mean(axis=0), learning_rate=3e-3, rng=rng)
    before, after = fit_loss_drops(m, x, y)
    assert after < before


@pytest.mark.tf
def test_cnn_lstm_rejects_impossible_shapes():
    from ppg_edge.train.bp import cnn_lstm

    with pytest.raises(ConfigError, match="too short"):
        cnn_lstm.build_cnn_lstm_bp(7)
    with pytest.raises(ConfigError, match="differ"):
        cnn_lstm.build_cnn_lstm_bp(64, cnn_filters=(16, 32), cnn_kernels=(5,))
    with pytest.raises(ConfigError):
        cnn_lstm.input_length(0)


def test_search_space_is_table_1_and_sampling_stays_inside_it():
    from ppg_edge.train.bp import cnn_lstm

    s = cnn_lstm.SEARCH_SPACE
    assert s["cnn_layers"] == (1, 3) and s["lstm_layers"] == (1, 3, 5)
    assert s["cnn_kernel_size"] == (5, 15, 63) and s["dense_units"] == (16, 64, 128)
    seen = {"cnn": set(), "lstm": set(), "dense": set(), "kernels": set()}
    for seed in range(200):
        hp = cnn_lstm.sample_hparams(np.random.default_rng(seed))
        assert len(hp["cnn_filters"]) == len(hp["cnn_kernels"]) in s["cnn_layers"]
        assert len(hp["lstm_units"]) in s["lstm_layers"]
        assert len(hp["dense_units"]) in s["dense_layers"]
        assert set(hp["cnn_filters"]) <= set(s["cnn_filters"])
        assert set(hp["lstm_units"]) <= set(s["lstm_units"])
        seen["cnn"].add(len(hp["cnn_filters"]))
        seen["lstm"].add(len(hp["lstm_units"]))
        seen["dense"].add(len(hp["dense_units"]))
        seen["kernels"].update(hp["cnn_kernels"])
    assert seen["cnn"] == {1, 3} and seen["lstm"] == {1, 3, 5} and seen["dense"] == {0, 1, 3}
    assert seen["kernels"] == {5, 15, 63}
    a = cnn_lstm.sample_hparams(np.random.default_rng(7))
    assert a == cnn_lstm.sample_hparams(np.random.default_rng(7))


@pytest.mark.tf
@pytest.mark.slow
def test_two_trial_random_search_finishes(rng, tmp_path):
    pytest.importorskip("keras_tuner")
    from ppg_edge.train.bp import cnn_lstm

    x, y = windows(rng, 24, 32)
    res = cnn_lstm.random_search(x[:16], y[:16], x[16:], y[16:], rng=rng, max_trials=2, epochs=1,
                                 batch_size=8, directory=str(tmp_path),
                                 target_mean=y[:16].mean(axis=0))
    assert len(res.trials) == 2
    assert res.best_val_loss == min(score for _, score in res.trials)
    assert np.isfinite(res.best_val_rmse)
    for hp, _ in res.trials:
        assert len(hp["lstm_units"]) in cnn_lstm.SEARCH_SPACE["lstm_layers"]
        assert set(hp["cnn_kernels"]) <= set(cnn_lstm.SEARCH_SPACE["cnn_kernel_size"])


# ---------------------------------------------------------------- derivatives (notebook 001)
def test_prepare_pulse_resamples_to_a_fixed_length_and_keeps_duration():
    from ppg_edge.train.bp import derivatives_model as dm

    for fs, dur in ((100, 0.6), (100, 1.2), (1000, 0.8)):
        t = np.arange(0, dur + 0.5 / fs, 1 / fs)
        pulse = np.exp(-(t - 0.3 * dur) ** 2 / (2 * (0.08 * dur) ** 2))
        x, d = dm.prepare_pulse(pulse, fs, 128)
        assert x.shape == (128, 4) and x.dtype == np.float32
        assert d == pytest.approx(dur, abs=1e-9)
        assert np.max(np.abs(x), axis=0) == pytest.approx(np.ones(4))
        # the resampled pulse peaks at 30% of the beat, where its derivative crosses zero
        i = int(np.argmax(x[:, 0]))
        assert abs(i / 127 - 0.3) < 0.01
        assert x[i - 3, 1] > 0 > x[i + 3, 1]


def test_prepare_pulses_flags_bad_pulses(caplog):
    from ppg_edge.train.bp import derivatives_model as dm

    good = np.sin(np.linspace(0, np.pi, 80))
    X, dur, ok = dm.prepare_pulses([good, np.ones(80), np.r_[good, np.nan], good[:2]], 100)
    assert ok.tolist() == [True, False, False, False]
    assert np.all(X[~ok] == 0) and np.all(np.isfinite(X))
    assert "skipped" in caplog.text


@pytest.mark.tf
def test_derivatives_model_shapes_parameters_and_learning(rng):
    from ppg_edge.train.bp import derivatives_model as dm

    m = dm.build_derivatives_model(rng=rng)
    assert [tuple(i.shape) for i in m.inputs] == [(None, 128, 4), (None, 1)]
    assert m.output_shape == (None, 2)
    convs = (conv_params(39, 4, 16) + conv_params(19, 16, 32) + conv_params(9, 32, 64)
             + conv_params(9, 64, 128))
    bn = 4 * (16 + 32 + 64 + 128)  # gamma, beta, moving mean, moving variance
    lstm = 2 * lstm_params(128, 16) + 2 * lstm_params(32, 16)
    head = (32 + 1) * 64 + 64 + 64 * 2 + 2
    assert m.count_params() == convs + bn + lstm + head

    x, y = windows(rng, 96, 64, channels=4)
    dur = rng.uniform(0.5, 1.2, (96, 1)).astype(np.float32)
    small = dm.build_derivatives_model(64, cnn_kernels=(15, 9, 5, 5), target_mean=y.mean(axis=0),
                                       learning_rate=3e-3, rng=rng)
    before, after = fit_loss_drops(small, [x, dur], y)
    assert after < before
    no_dur = dm.build_derivatives_model(64, with_duration=False, bidirectional=False, rng=rng)
    assert len(no_dur.inputs) == 1


# ---------------------------------------------------------------- multi-stage (paper 000)
def test_bp_classes_and_map_known_values():
    sbp = np.array([110, 125, 115, 145, 118, 170, 150])
    dbp = np.array([70, 75, 85, 70, 95, 80, 105])
    assert ms.bp_class(sbp, dbp).tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert ms.mean_arterial_pressure(120, 80) == pytest.approx(80 + 40 / 3)
    with pytest.raises(DataError):
        ms.bp_class([np.nan], [80])


def feature_sequences(rng, n=96, steps=4, feats=6):
    """Pulse-feature sequences whose mean sets SBP/DBP; the first step is padding."""
    x = rng.normal(size=(n, steps, feats)).astype(np.float32)
    x[:, 0] = 0.0
    drive = x[:, 1:, :3].mean(axis=(1, 2))
    y = np.stack([130 + 25 * drive, 80 + 12 * drive], axis=1).astype(np.float32)
    return x, y


@pytest.mark.tf
def test_multistage_shapes_and_parameter_counts():
    m = ms.MultiStageBP(8, 21, lstm_units=64, dense_units=32, rng=np.random.default_rng(3))
    cascade = m.build()
    assert cascade.input_shape == (None, 8, 21)
    assert cascade.output_shape == [(None, 4), (None, 1), (None, 2)]
    lstm = lstm_params(21, 64)
    norm = 0  # the standardisation is fixed at build time: constants, not weights
    stage1 = lstm + 64 * 32 + 32 + 32 * 4 + 4
    stage2 = lstm + (64 + 4) * 32 + 32 + 32 + 1
    stage3 = lstm + (64 + 4 + 1) * 32 + 32 + 32 * 2 + 2
    assert cascade.count_params() == norm + stage1 + stage2 + stage3


@pytest.mark.tf
def test_multistage_cascade_trains_stage_by_stage_and_passes_outputs(rng):
    from ppg_edge.train.bp._keras import keras

    x, y = feature_sequences(rng)
    m = ms.MultiStageBP(4, 6, lstm_units=8, dense_units=8, learning_rate=5e-3, rng=rng)
    seen = {}

    class Spy(keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen[m.current_stage, "begin"] = [[w.copy() for w in l.get_weights()]
                                              for l in (m.lstm1, m.lstm2, m.lstm3)]

        def on_train_end(self, logs=None):
            seen[m.current_stage, "end"] = [[w.copy() for w in l.get_weights()]
                                            for l in (m.lstm1, m.lstm2, m.lstm3)]

    hist = m.fit(x, y, epochs=2, batch_size=16, callbacks=[Spy()])

    def same(a, b):
        return all(np.array_equal(u, v) for u, v in zip(a, b))

    # transfer: stage k's LSTM starts as a copy of stage k-1's trained LSTM ...
    assert same(seen["map", "begin"][1], seen["class", "end"][0])
    assert same(seen["bp", "begin"][2], seen["map", "end"][1])
    # ... and then trains away from it, while earlier stages stay frozen
    assert not same(seen["map", "end"][1], seen["map", "begin"][1])
    assert not same(seen["bp", "end"][2], seen["bp", "begin"][2])
    assert same(seen["bp", "end"][0], seen["class", "end"][0])
    assert same(seen["bp", "end"][1], seen["map", "end"][1])
    for stage in ("class", "map", "bp"):
        loss = hist[stage].history["loss"]
        assert loss[-1] < loss[0], (stage, loss)

    out = m.predict(x[:8])
    assert out["class_probs"].shape == (8, 4) and out["map"].shape == (8,) and out["bp"].shape == (8, 2)
    np.testing.assert_allclose(out["class_probs"].sum(axis=1), 1.0, rtol=1e-5)

    # outputs flow forward: changing the class head changes MAP, changing MAP changes SBP/DBP
    layer = m.cascade.get_layer("bp_class")
    w, b = layer.get_weights()
    layer.set_weights([w * 0.0, b + np.arange(4, dtype=np.float32) * 3.0])
    moved = m.predict(x[:8])
    assert not np.allclose(moved["map"], out["map"])
    layer.set_weights([w, b])
    map_layer = m.cascade.get_layer("map")
    mw, mb = map_layer.get_weights()
    map_layer.set_weights([mw, mb + 50.0])
    moved = m.predict(x[:8])
    np.testing.assert_allclose(moved["class_probs"], out["class_probs"], rtol=1e-5)
    assert not np.allclose(moved["bp"], out["bp"])

    # a stage with 0 epochs keeps the copy it started from
    m0 = ms.MultiStageBP(4, 6, lstm_units=8, dense_units=8, rng=rng)
    assert m0.fit(x, y, epochs=(1, 0, 0), batch_size=32)["bp"] is None
    assert same(m0.lstm3.get_weights(), m0.lstm1.get_weights())


@pytest.mark.tf
def test_multistage_rejects_bad_input(rng):
    m = ms.MultiStageBP(4, 6, lstm_units=4, dense_units=4, rng=rng)
    x, y = feature_sequences(rng, n=8)
    with pytest.raises(DataError, match="must be"):
        m.fit(x[:, :3], y)
    bad = x.copy()
    bad[0, 1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        m.fit(bad, y)
    with pytest.raises(ConfigError):
        m.predict(x)


@pytest.mark.tf
def test_single_stage_baselines_shapes_and_learning(rng):
    x, y = feature_sequences(rng)
    seg = x[:, 1:].mean(axis=1)
    ann = ms.build_ann_baseline(6, target_mean=y.mean(axis=0), learning_rate=5e-3, rng=rng)
    assert ann.output_shape == (None, 2)
    assert ann.count_params() == (6 * 64 + 64) + (64 * 32 + 32) + (32 * 2 + 2)
    before, after = loss_drops(ann, seg, y)
    assert after < before
    lstm = ms.build_lstm_baseline(4, 6, lstm_units=8, dense_units=8, target_mean=y.mean(axis=0),
                                  learning_rate=5e-3, rng=rng)
    assert lstm.count_params() == lstm_params(6, 8) + (8 * 8 + 8) + (8 * 2 + 2)
    before, after = loss_drops(lstm, x, y)
    assert after < before


# ---------------------------------------------------------------- feature baseline
def test_subject_folds_keep_subjects_together(rng):
    subjects = np.repeat(np.arange(30), 3)
    folds = fb.subject_folds(subjects, 10, rng)
    for s in np.unique(subjects):
        assert np.unique(folds[subjects == s]).size == 1
    assert np.bincount(folds).tolist() == [9] * 10
    with pytest.raises(SplitError):
        fb.subject_folds(np.arange(5), 10, rng)


def test_gradient_boosting_beats_the_naive_mean_when_features_carry_bp(rng):
    n_sub = 60
    subjects = np.repeat(np.arange(n_sub), 3)
    f = rng.normal(size=(n_sub, 5))
    sbp = 125 + 15 * f[:, 0] + rng.normal(0, 3, n_sub)
    dbp = 78 + 8 * f[:, 1] + rng.normal(0, 2, n_sub)
    X = f[subjects] + rng.normal(0, 0.1, (subjects.size, 5))
    X[::7, 2] = np.nan  # missing features are allowed
    y = np.stack([sbp, dbp], axis=1)[subjects]
    age = rng.uniform(20, 80, n_sub)[subjects]
    demo = np.stack([age, rng.integers(0, 2, subjects.size), rng.uniform(18, 35, subjects.size)], axis=1)
    res = fb.cross_validate(X, y, subjects, rng=rng, n_folds=3, demographics=demo, max_iter=40,
                            learning_rate=0.15)
    naive = res.mae["naive (train mean)"]
    gbm = res.mae["gbm ppg"]
    assert gbm[0] < 0.6 * naive[0] and gbm[1] < 0.6 * naive[1]
    assert "gbm ppg+demographics" in res.mae
    assert res.n_subjects == n_sub and len(res.lines()) == 4


def test_naive_predictor_is_the_training_mean():
    y = np.array([[120.0, 80.0], [140.0, 90.0]])
    np.testing.assert_allclose(fb.naive_predict(y, 3), [[130, 85]] * 3)


def test_feature_baseline_variants_are_explicit(rng):
    X = rng.normal(size=(40, 3))
    y = np.stack([120 + X[:, 0], 80 + X[:, 1]], axis=1)
    with pytest.raises(ConfigError, match="demographics"):
        fb.FeatureBaseline(rng=rng).fit(X, y, demographics=np.zeros((40, 3)))
    with pytest.raises(ConfigError, match="needs demographics"):
        fb.FeatureBaseline(use_demographics=True, rng=rng).fit(X, y)
    with pytest.raises(DataError, match="targets"):
        fb.FeatureBaseline(rng=rng).fit(X, y[:, :1])
    with pytest.raises(ConfigError, match="before fit"):
        fb.FeatureBaseline(rng=rng).predict(X)
    assert fb.FeatureBaseline(use_demographics=True, rng=rng).variant == "ppg+demographics"
