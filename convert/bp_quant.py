"""Prototype of the BP int8 scheme on a synthetic CNN-LSTM regression.

TOOLCHAIN.md measured plain post-training int8 of a CNN-LSTM BP regressor giving
tens of mmHg of error. The scheme measured here, on a task small enough to run in
minutes (the real BP models come later, from ``train/bp``):

1. **Output scaling** -- train on standardised targets ``z = (bp - mean) / std``
   (training-subject mean/std) and undo it outside the model (``output_transform`` in the
   manifest). The int8 output step is then ``~8 std / 256`` instead of a mmHg range
   shaped by outliers, and the last Dense layer's weights stay near unit scale.
2. **Dynamic range** as the fallback that keeps activations float.
3. **QAT** of everything but the LSTMs (which stay fused and take calibrated ranges).
4. The converter's legacy quantizer (default in :func:`~ppg_edge.convert.tflite.convert_model`)
   against its MLIR quantizer (``new_quantizer=True``).

:func:`run_experiment` trains each variant and reports SBP/DBP MAE beside the naive
(training-mean) baseline. The synthetic task: SBP/DBP are smooth functions of the pulse
rate, the diastolic-peak ratio and the pulse amplitude of a synthetic PPG window, plus
noise -- a stand-in with the right shape, not physiology.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)


def synthetic_bp_task(rng: np.random.Generator, n_subjects: int = 60, windows_per_subject: int = 20,
                      window: int = 128, fs: float = 62.5):
    """``(x, y, subject)``: windows ``(n, window, 2)`` (z-scored PPG and its first
    difference), targets ``(n, 2)`` SBP/DBP in mmHg, and a subject id per window."""
    from ppg_edge.synth import synth_ppg

    xs, ys, subj = [], [], []
    for s in range(n_subjects):
        hr = rng.uniform(55, 110)
        ratio = rng.uniform(0.2, 0.7)
        sbp0 = 95 + 0.45 * (hr - 55) + 60 * (0.7 - ratio) + rng.normal(0, 4)
        dbp0 = 60 + 0.25 * (hr - 55) + 25 * (0.7 - ratio) + rng.normal(0, 3)
        sig = synth_ppg(window / fs * windows_per_subject + 2, fs, rng, hr_bpm=hr, diastolic_ratio=ratio).signal
        for w in range(windows_per_subject):
            seg = sig[w * window: (w + 1) * window]
            seg = (seg - seg.mean()) / (seg.std() + 1e-9)
            xs.append(np.stack([seg, np.diff(seg, prepend=seg[0]) * 5], -1))
            ys.append([sbp0 + rng.normal(0, 2), dbp0 + rng.normal(0, 1.5)])
            subj.append(s)
    return np.asarray(xs, np.float32), np.asarray(ys, np.float32), np.asarray(subj)


def build_regressor(window: int, channels: int = 2, n_lstm: int = 2, output_bias=None):
    """Conv1D x2 -> LSTM x ``n_lstm`` -> Dense(2): a small CNN-LSTM BP regressor (tf_keras).
    ``output_bias`` (e.g. the training mean in mmHg) initialises the last bias."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    L = keras.layers
    inp = keras.Input((window, channels), name="ppg")
    x = L.Conv1D(16, 5, activation="relu", name="conv1")(inp)
    x = L.MaxPooling1D(2, name="pool1")(x)
    x = L.Conv1D(16, 5, activation="relu", name="conv2")(x)
    x = L.MaxPooling1D(2, name="pool2")(x)
    for i in range(n_lstm):
        x = L.LSTM(32 if i == 0 else 16, return_sequences=i < n_lstm - 1, name=f"lstm{i + 1}")(x)
    init = "zeros" if output_bias is None else keras.initializers.Constant(np.asarray(output_bias, float))
    out = L.Dense(2, bias_initializer=init, name="bp")(x)
    return keras.Model(inp, out, name="bp_proto")


def _mae(pred, y):
    d = np.abs(np.asarray(pred, np.float64) - y)
    return {"sbp_mae": float(d[:, 0].mean()), "dbp_mae": float(d[:, 1].mean()),
            "sbp_max": float(d[:, 0].max()), "dbp_max": float(d[:, 1].max())}


def run_experiment(rng: np.random.Generator, epochs: int = 8, n_cal: int = 200) -> dict:
    """Train the regressor on raw mmHg and on standardised targets, convert, and report
    test-subject MAE (mmHg) per variant with the naive baseline; subject-wise split."""
    import tf_keras as keras

    from .optimize import qat_model
    from .tflite import LiteRunner, convert_model

    x, y, subj = synthetic_bp_task(rng)
    order = rng.permutation(np.unique(subj))
    test_s = set(order[: len(order) // 5].tolist())
    tr = np.array([s not in test_s for s in subj])
    xtr, ytr, xte, yte = x[tr], y[tr], x[~tr], y[~tr]
    mean, std = ytr.mean(0), ytr.std(0)
    cal = xtr[rng.choice(len(xtr), size=min(n_cal, len(xtr)), replace=False)]
    out: dict = {"n_train": int(tr.sum()), "n_test": int((~tr).sum()), "epochs": epochs,
                 "naive": _mae(np.broadcast_to(mean, yte.shape), yte), "variants": {}}

    def record(name, pred, nbytes=None):
        out["variants"][name] = {**_mae(pred, yte), "bytes": nbytes}
        log.info("%s: %s", name, out["variants"][name])

    for scaling in ("raw", "standardised"):
        keras.utils.set_random_seed(int(rng.integers(1 << 30)))
        # raw mmHg targets: the last bias starts at the training mean (else 8 epochs do not
        # even reach the baseline); standardised targets: zero bias
        model = build_regressor(x.shape[1], output_bias=mean if scaling == "raw" else None)
        target = ytr if scaling == "raw" else (ytr - mean) / std
        unscale = (lambda p: p) if scaling == "raw" else (lambda p: p * std + mean)
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
        t0 = time.time()
        model.fit(xtr, target, epochs=epochs, batch_size=32, verbose=0)
        out[f"train_s_{scaling}"] = time.time() - t0
        record(f"keras/{scaling}", unscale(model.predict(xte, verbose=0)))
        for mode in ("float32", "dynamic", "int8"):
            flat = convert_model(model, mode, calibration=cal)
            record(f"{mode}/{scaling}", unscale(LiteRunner(flat).predict(xte)), len(flat))
        flat = convert_model(model, "int8", calibration=cal, new_quantizer=True)
        record(f"int8-mlir-quantizer/{scaling}", unscale(LiteRunner(flat).predict(xte)), len(flat))
        if scaling == "standardised":
            qat = qat_model(model, xtr, target, epochs=1, annotate_lstm=False)
            record("keras-qat/standardised", unscale(qat.predict(xte, verbose=0)))
            flat = convert_model(qat, "int8", calibration=cal)
            record("qat-int8/standardised", unscale(LiteRunner(flat).predict(xte)), len(flat))
    return out


if __name__ == "__main__":  # python -m ppg_edge.convert.bp_quant
    import json

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run_experiment(np.random.default_rng(20251122)), indent=1))
