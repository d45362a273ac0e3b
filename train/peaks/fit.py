"""Training, saving and loading of the peak detectors.

Protocol of Georgieva-Tsaneva (2025), Table 4: Adam (lr 1e-3, beta 0.9/0.999), batch 64,
early stopping on the validation loss with patience 5, the best weights restored.
Loss: BCE + PeakDistanceLoss (0.5/0.5) for per-sample heads, plain BCE for the paper's
one-unit head.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ppg_edge.errors import DataError, ModelError

from .variants import PeakModelConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def _check_xy(x, y, what: str, model) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    want_x = tuple(model.input_shape[1:])
    if x.ndim != 3 or x.shape[1:] != want_x:
        raise DataError(f"{what} inputs have shape {x.shape}; the model takes (n, *{want_x})")
    want_y = tuple(model.output_shape[1:])
    if y.shape != (x.shape[0], *want_y):
        raise DataError(f"{what} labels have shape {y.shape}; expected {(x.shape[0], *want_y)}")
    if x.shape[0] == 0:
        raise DataError(f"{what} set is empty")
    for name, arr in (("inputs", x), ("labels", y)):
        bad = int(np.sum(~np.isfinite(arr)))
        if bad:
            raise DataError(f"{what} {name} contain {bad} NaN/inf values")
    masked = y == -1.0  # train.peaks.dataset.MASKED: a sample the loss leaves out
    if y[~masked].size and (y[~masked].min() < 0 or y[~masked].max() > 1):
        raise DataError(f"{what} labels must lie in [0, 1] (or be -1, masked), got "
                        f"{y[~masked].min()}..{y[~masked].max()}")
    return x, y


def fit_peak_model(
    model,
    x_train,
    y_train,
    x_val,
    y_val,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int = 5,
    seed: int = 0,
    loss=None,
    fs: float = 125.0,
) -> dict[str, list[float]]:
    """Compile with Adam and train with early stopping; returns the history dict.

    ``loss`` defaults to ``PeakLoss(fs=fs)`` (BCE + PeakDistanceLoss, 0.5/0.5) when the
    model outputs one probability per sample and to BCE for the paper's one-unit head.
    ``seed`` seeds Python, numpy and TensorFlow through ``tf_keras.utils.set_random_seed``
    (weight initialisation of a model built afterwards, dropout, shuffling).
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras

    from .losses import PeakLoss

    if int(epochs) < 1:
        raise DataError(f"epochs must be >= 1, got {epochs}")
    x_train, y_train = _check_xy(x_train, y_train, "training", model)
    x_val, y_val = _check_xy(x_val, y_val, "validation", model)
    tf_keras.utils.set_random_seed(int(seed))
    if loss is None:
        per_sample = len(model.output_shape) == 2 and model.output_shape[1] > 1
        loss = PeakLoss(fs=fs) if per_sample else tf_keras.losses.BinaryCrossentropy()
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999),
        loss=loss,
    )

    class _EpochLog(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            log.info(
                "%s epoch %d/%d: loss %.4f, val_loss %.4f",
                model.name, epoch + 1, epochs, logs.get("loss", float("nan")),
                logs.get("val_loss", float("nan")),
            )

    stop = tf_keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    hist = model.fit(
        x_train, y_train,
        validation_data=(x_val, y_val),
        epochs=int(epochs),
        batch_size=int(batch_size),
        shuffle=True,
        callbacks=[stop, _EpochLog()],
        verbose=0,
    )
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.name
    for suffix in (".weights.h5", ".json"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return p.with_name(stem + ".weights.h5"), p.with_name(stem + ".json")


def save_peak_model(model, config: PeakModelConfig, path, window: int | None = None) -> Path:
    """Write ``<path>.weights.h5`` and ``<path>.json`` (configuration, window); returns the JSON path."""
    weights, meta = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    window = int(window or model.input_shape[1])
    model.save_weights(str(weights))
    meta.write_text(
        json.dumps(
            {"format": FORMAT_VERSION, "window": window, "config": config.to_dict()}, indent=2
        )
    )
    log.info("saved %s and %s", weights, meta)
    return meta


def load_peak_model(path, batch_size: int | None = None):
    """Rebuild a saved model from its JSON and weights; returns ``(model, config)``."""
    from .models import build_peak_model

    weights, meta = _paths(path)
    for f in (weights, meta):
        if not f.is_file():
            raise ModelError(f"{f}: peak model file is missing")
    try:
        info = json.loads(meta.read_text())
        config = PeakModelConfig.from_dict(info["config"])
        window = int(info["window"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{meta}: not a valid peak model description ({exc})") from exc
    if info.get("format") != FORMAT_VERSION:
        raise ModelError(f"{meta}: format {info.get('format')!r}, expected {FORMAT_VERSION}")
    model = build_peak_model(config, window=window, batch_size=batch_size)
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError) as exc:
        raise ModelError(f"{weights}: weights do not fit {config.name} ({exc})") from exc
    return model, config
