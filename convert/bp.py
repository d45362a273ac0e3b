"""Convert a saved BP model (``models/bp/<name>/``: ``config.json`` + ``model.keras``) to
TFLite files with manifests the runtime's :class:`~ppg_edge.edge_runtime.bp.BPStage` loads.

The CNN-LSTM takes the PPG channel only (``train.bp.cv._cnn_x``: ``x[..., :1]``), so the
manifest's preprocessing is the model's own spec with ``derivatives`` off: the same
band-pass, window and per-window z-score, one channel (the derivative channels the
saved spec also lists are computed from the filtered PPG and do not change it).

The int8 scheme (:func:`fold_output_scaling`, scheme ``"scaled"``): the model's last
Dense layer (``bp``, linear, SBP/DBP in mmHg) is rewritten to output standardised
values ``z = (bp - mean) / std`` with the training mean/std of the targets
(``W' = W / std``, ``b' = (b - mean) / std``: the same function, exactly), and the
manifest's ``target_scaling`` undoes it on the device (``bp = z * std + mean``). Why:
the int8 output tensor has one scale for both outputs and its range must include 0, so
raw mmHg outputs (DBP ~70, SBP ~130) are quantized on a [0, ~170] range in steps of
~0.7 mmHg; standardised outputs share a range of a few units around 0. Scheme
``"raw"`` keeps mmHg outputs (plain post-training int8), for comparison.

Calibration windows are drawn with a seed from the PPG-BP windows the deployment
model was trained on (all subjects: the model card says so); the self-check runs on
other windows of the same data set (agreement with Keras, not accuracy).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import ConfigError, ModelError

from .peaks import Converted, _tol_doc

log = logging.getLogger(__name__)

SCHEMES = ("scaled", "raw")
TARGETS = ["sbp", "dbp"]


def is_bp_model_dir(path: str | os.PathLike) -> bool:
    """True for a folder holding a BP ``config.json`` with a ``model`` field."""
    p = Path(path)
    cfg = p / "config.json"
    if not (p.is_dir() and cfg.is_file()):
        return False
    try:
        return "model" in json.loads(cfg.read_text()) and "train_mean" in json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return False


def load_bp_keras(model_dir: str | os.PathLike):
    """``(keras model, config dict)`` of a saved tf_keras BP model (CNN-LSTM)."""
    from ppg_edge.train.bp.deploy import DeployedModel

    dm = DeployedModel(model_dir)
    if dm.name not in ("cnn-lstm", "cnn-lstm-search"):
        raise ModelError(f"{model_dir}: TFLite conversion supports the window CNN-LSTM only, not {dm.name!r}")
    return dm.model, dm.config


def device_preprocessing(config: dict):
    """The model's preprocessing spec with the PPG channel only (what the CNN-LSTM takes)."""
    from ppg_edge.dsp.pipeline import Preprocessing

    d = dict(config["preprocessing"])
    d.pop("channels", None)
    d["derivatives"] = False
    d["dwt_levels"] = []
    pre = Preprocessing.from_dict(d)
    if pre.window != int(config["input_len"]):
        raise ConfigError(f"preprocessing window {pre.window} != model input_len {config['input_len']}")
    return pre


def target_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per target of the training targets ``(n, 2)``."""
    y = np.asarray(y, np.float64)
    std = y.std(axis=0)
    if np.any(std <= 0) or not np.all(np.isfinite(std)):
        raise ModelError(f"cannot standardise targets with std {std}")
    return y.mean(axis=0), std


def fold_output_scaling(keras_model, mean, std, layer: str = "bp"):
    """A copy of ``keras_model`` whose linear last Dense layer ``layer`` outputs
    ``(bp - mean) / std`` (same function up to float rounding)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    try:
        last = keras_model.get_layer(layer)
    except ValueError as exc:
        raise ModelError(f"{keras_model.name}: no output layer {layer!r} to rescale") from exc
    act = getattr(last, "activation", None)
    if not isinstance(last, keras.layers.Dense) or getattr(act, "__name__", "") != "linear":
        raise ModelError(f"{keras_model.name}: layer {layer!r} is not a linear Dense layer")
    clone = keras.models.clone_model(keras_model)
    clone.set_weights(keras_model.get_weights())
    w, b = last.get_weights()
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    clone.get_layer(layer).set_weights([(w / std).astype(np.float32), ((b - mean) / std).astype(np.float32)])
    return clone


def bp_windows(ds) -> np.ndarray:
    """The CNN-LSTM input of a :class:`~ppg_edge.train.bp.dataset.BPDataset`."""
    return np.asarray(ds.x[..., :1], np.float32)


def draw_rows(n: int, n_take: int, seed: int) -> np.ndarray:
    """Sorted row indices drawn without replacement (``default_rng(seed)``)."""
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(int(n), size=min(int(n_take), int(n)), replace=False))


def convert_bp_keras(model, mode: str, x_cal: np.ndarray | None, scheme: str, mean, std):
    """``(keras model actually converted, tflite bytes, target_scaling or None)``."""
    from .tflite import convert_model

    if scheme not in SCHEMES:
        raise ModelError(f"unknown BP int8 scheme {scheme!r}; valid: {SCHEMES}")
    scaling = None
    if scheme == "scaled" and mode in ("int8", "16x8"):
        model = fold_output_scaling(model, mean, std)
        scaling = {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    return model, convert_model(model, mode, calibration=x_cal), scaling


def convert_saved_bp_model(
    model_dir: str | os.PathLike,
    modes: Sequence[str],
    out_dir: str | os.PathLike | None = None,
    *,
    stem: str | None = None,
    scheme: str = "scaled",
    n_calibration: int = 200,
    n_check: int = 64,
    seed: int = 0,
    data_root=None,
    tolerance=None,
) -> list[Converted]:
    """Convert, self-check and write each mode of a saved BP CNN-LSTM; returns what was written.
    ``tolerance`` overrides the int8 self-check :class:`~.tflite.Tolerance`."""
    from ppg_edge.train.bp.dataset import load_bp_dataset

    from .package import save_converted
    from .tflite import MODES, self_check

    for m in modes:
        if m not in MODES:
            raise ModelError(f"unknown conversion mode {m!r}; valid modes: {', '.join(MODES)}")
    model_dir = Path(model_dir)
    model, cfg = load_bp_keras(model_dir)
    pre = device_preprocessing(cfg)
    ds = load_bp_dataset(float(cfg["fs"]), root=data_root)
    x = bp_windows(ds)
    if x.shape[1] != pre.window:
        raise ModelError(f"data windows of {x.shape[1]} samples, model takes {pre.window}")
    trained_on = set(cfg.get("train_subjects") or [])
    rows = np.flatnonzero([f"ppg-bp/{s}" in trained_on or s in trained_on for s in ds.subjects]) \
        if trained_on else np.arange(len(ds))
    if not rows.size:
        raise ModelError(f"{model_dir}: none of the model's training subjects are in the data")
    perm = np.random.default_rng(int(seed)).permutation(rows.size)
    n_cal = min(int(n_calibration), rows.size - 1)
    cal_rows = np.sort(rows[perm[:n_cal]])
    check_rows = np.sort(rows[perm[n_cal:n_cal + int(n_check)]])
    x_cal, x_check = x[cal_rows], x[check_rows]
    mean, std = target_stats(ds.y[rows])
    stem = stem or f"bp-{model_dir.name}"
    out_dir = Path(out_dir) if out_dir else model_dir / "tflite"
    cal_info = {"source": f"PPG-BP windows of the model's training subjects at {float(cfg['fs']):g} Hz",
                "seed": int(seed), "n_windows": int(len(cal_rows)),
                "n_subjects": int(np.unique(ds.subjects[cal_rows]).size),
                "rows": [int(r) for r in cal_rows],
                "balance": {"sbp_mean": float(ds.y[cal_rows, 0].mean()), "dbp_mean": float(ds.y[cal_rows, 1].mean()),
                            "sbp_std": float(ds.y[cal_rows, 0].std()), "dbp_std": float(ds.y[cal_rows, 1].std())}}
    log.info("BP calibration: %d windows of %d subjects; self-check on %d other windows",
             len(cal_rows), cal_info["n_subjects"], len(check_rows))
    written = []
    for mode in modes:
        conv_model, flat, scaling = convert_bp_keras(model, mode, x_cal, scheme, mean, std)
        tol = tolerance if mode in ("int8", "16x8") else None
        check = self_check(conv_model, flat, x_check, mode, tolerance=tol)
        extra: dict[str, Any] = {"targets": list(TARGETS), "units": "mmHg"}
        if scaling is not None:
            extra["target_scaling"] = scaling
            extra["int8_scheme"] = ("output scaling: last Dense layer outputs (bp - mean) / std of the "
                                    "training targets; bp = output * std + mean")
        elif mode in ("int8", "16x8"):
            extra["int8_scheme"] = "plain post-training int8 (mmHg outputs)"
        path = save_converted(
            flat, out_dir, f"{stem}-{mode}", kind="bp", mode=mode, sample_rate_hz=pre.fs,
            window=pre.window, hop=pre.hop, preprocessing=pre.to_dict(),
            training={"keras_model": f"{model_dir.name}/{cfg.get('weights', 'model.keras')}",
                      "model": cfg.get("model"), "dataset": cfg.get("dataset"),
                      "split": "all subjects (deployment model; accuracy from the subject-wise CV)",
                      "n_train_subjects": cfg.get("n_train_subjects"), "train_mean": cfg.get("train_mean"),
                      "command": cfg.get("command")},
            calibration=cal_info if mode in ("int8", "16x8") else None,
            self_check={**check.to_dict(), "windows": "PPG-BP windows not used for calibration",
                        "tolerance": _tol_doc(tol),
                        "units": "standardised" if scaling else "mmHg"},
            extra=extra,
        )
        written.append(Converted(mode, path, len(flat), check.to_dict()))
    return written
