"""Save a BP model trained on all subjects for deployment, load it back, predict.

A model folder (``models/bp/<name>/``) holds:

* ``config.json`` -- model name, rate, input length, the shared preprocessing
  spec (``Preprocessing.to_dict``, filter ``sos`` included), the training means
  (the naive predictor, also the fallback for windows without a pulse), the
  training data, seed, and the command that made it;
* ``model.keras`` (tf_keras models) or ``model.pkl`` (the scikit-learn feature
  baseline: pickled ``HistGradientBoostingRegressor`` pair);
* ``MODEL_CARD.md`` (written by the CLI).
"""
from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np

from ppg_edge.errors import ConfigError, ModelError

from .dataset import BPDataset

log = logging.getLogger(__name__)

KERAS_FILE = "model.keras"
SKLEARN_FILE = "model.pkl"
CONFIG_FILE = "config.json"


def save_model(fitted, out_dir, *, ds: BPDataset, extra: dict | None = None) -> Path:
    """Write ``fitted`` (a :class:`.cv.FittedModel` trained on ``ds``) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model": fitted.name,
        "fs": ds.fs,
        "input_len": ds.input_len,
        "channels": list(ds.channels),
        "preprocessing": ds.preprocessing,
        "train_mean": {"sbp": float(ds.y[:, 0].mean()), "dbp": float(ds.y[:, 1].mean())},
        "n_train_windows": len(ds),
        "n_train_subjects": int(np.unique(ds.subjects).size),
        "info": fitted.info,
        **(extra or {}),
    }
    if fitted.keras_model is not None:
        fitted.keras_model.save(out / KERAS_FILE)
        cfg["weights"] = KERAS_FILE
    elif fitted.sklearn_models is not None:
        with open(out / SKLEARN_FILE, "wb") as fh:
            pickle.dump(fitted.sklearn_models, fh)
        cfg["weights"] = SKLEARN_FILE
    else:
        raise ModelError(f"{fitted.name}: nothing to save")
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=1, default=_json_default) + "\n")
    log.info("saved %s to %s", fitted.name, out)
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_config(model_dir) -> dict:
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{model_dir}: no {CONFIG_FILE}; not a BP model folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc


class DeployedModel:
    """A saved BP model: ``predict(ds)`` -> (n, 2) SBP, DBP for a :class:`BPDataset`."""

    def __init__(self, model_dir):
        self.dir = Path(model_dir)
        self.config = read_config(self.dir)
        self.name = self.config.get("model")
        weights = self.dir / self.config.get("weights", "")
        if not weights.is_file():
            raise ModelError(f"{self.dir}: weights file {weights.name!r} missing")
        if weights.suffix == ".pkl":
            with open(weights, "rb") as fh:
                self.model = pickle.load(fh)  # noqa: S301 - our own committed artefact
        else:
            from ._keras import keras

            self.model = keras().models.load_model(weights, compile=False)
        tm = self.config["train_mean"]
        self.fallback = np.array([tm["sbp"], tm["dbp"]], dtype=np.float64)

    @property
    def fs(self) -> float:
        return float(self.config["fs"])

    def predict(self, ds: BPDataset) -> np.ndarray:
        if abs(ds.fs - self.fs) > 1e-9 or ds.input_len != int(self.config["input_len"]):
            raise ConfigError(f"{self.dir}: model takes {self.config['input_len']} samples at "
                              f"{self.fs:g} Hz, data is {ds.input_len} at {ds.fs:g} Hz")
        name = self.name
        if name in ("feature-gbm", "feature-gbm-demo"):
            return self.model.predict(ds.features, ds.demographics if name.endswith("demo") else None)
        if name in ("cnn-lstm", "cnn-lstm-search"):
            return self.model.predict(ds.x[..., :1], batch_size=256, verbose=0).astype(np.float64)
        if name == "ann":
            from .cv import _impute

            fill = _impute(ds.features, self.config["info"]["impute_medians"])
            return self.model.predict(fill(ds.features), batch_size=256, verbose=0).astype(np.float64)
        if name in ("lstm",):
            return self.model.predict(ds.pulse_seq, batch_size=256, verbose=0).astype(np.float64)
        if name == "multistage":
            return self.model.predict(ds.pulse_seq, batch_size=256, verbose=0)[2].astype(np.float64)
        if name == "derivatives":
            out = np.tile(self.fallback, (len(ds), 1))
            if ds.pulses.shape[0]:
                p = self.model.predict([ds.pulses, ds.pulse_dur[:, None]], batch_size=256, verbose=0)
                sums = np.zeros((len(ds), 2))
                np.add.at(sums, ds.pulse_row, p.astype(np.float64))
                cnt = np.bincount(ds.pulse_row, minlength=len(ds))
                out[cnt > 0] = sums[cnt > 0] / cnt[cnt > 0, None]
            return out
        raise ConfigError(f"{self.dir}: deployment of model {name!r} is not supported")
