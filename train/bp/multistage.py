"""LSTM multi-stage transfer learning for BP, and its single-stage baselines.

Ali N.F., Atef M., "LSTM Multi-Stage Transfer Learning for Blood Pressure
Estimation Using Photoplethysmography", Electronics 11(22):3749, 2022. Only the
abstract is at hand; from it: three cascaded stages -- (1) BP class, (2) mean
arterial pressure (MAP, approaching vascular resistance through MAP = CO x VR with
a PPG-derived cardiac output), (3) SBP/DBP -- each later stage using the outputs
of the earlier ones, on physiologically motivated features; compared with
single-stage ANN and LSTM models.

Choices made here (the paper's details are not available):

* Input: a sequence of per-pulse feature vectors (``ppg_edge.features.bp.
  pulse_feature_sequence``: ``(n_steps, n_features)``, front-padded with zeros).
  A ``Normalization`` layer fixed from the training set standardises them.
* Classes: the four PPG-BP hypertension classes (:data:`BP_CLASSES`, JNC 7 limits,
  :func:`bp_class`). MAP = DBP + (SBP - DBP) / 3 (:func:`mean_arterial_pressure`).
* Transfer: every stage has its own LSTM of the same size; stage k's LSTM starts
  from stage k-1's trained weights. Stage k is trained with the earlier stages
  frozen, and their outputs (class probabilities; then MAP) are concatenated to
  its LSTM output before its dense head ("fed by the previous").
* The three stages make one Keras graph (:attr:`MultiStageBP.cascade`, outputs
  class probabilities, MAP, SBP/DBP) that converts as a single model.
"""
from __future__ import annotations

import logging

import numpy as np

from ppg_edge.errors import ConfigError, DataError

from ._keras import Inits, keras, output_bias

log = logging.getLogger(__name__)

BP_CLASSES = ("normal", "prehypertension", "stage1_hypertension", "stage2_hypertension")


def bp_class(sbp, dbp) -> np.ndarray:
    """Class index in :data:`BP_CLASSES` (JNC 7, as PPG-BP labels its subjects):
    normal < 120/80, prehypertension 120-139 or 80-89, stage 1 140-159 or 90-99,
    stage 2 >= 160 or >= 100 mmHg; the higher category of SBP and DBP wins."""
    sbp = np.asarray(sbp, dtype=np.float64)
    dbp = np.asarray(dbp, dtype=np.float64)
    if not (np.all(np.isfinite(sbp)) and np.all(np.isfinite(dbp))):
        raise DataError("bp_class: SBP/DBP hold non-finite values")
    s = np.digitize(sbp, [120.0, 140.0, 160.0])
    d = np.digitize(dbp, [80.0, 90.0, 100.0])
    return np.maximum(s, d).astype(np.int64)


def mean_arterial_pressure(sbp, dbp) -> np.ndarray:
    """MAP = DBP + (SBP - DBP) / 3 (the usual one-third form-factor estimate)."""
    sbp = np.asarray(sbp, dtype=np.float64)
    dbp = np.asarray(dbp, dtype=np.float64)
    return dbp + (sbp - dbp) / 3.0


def _check_seq(x, n_steps, n_features) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (n_steps, n_features):
        raise DataError(f"feature sequences must be (n, {n_steps}, {n_features}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("feature sequences hold NaN/inf: set invalid features to 0 "
                        "(PulseSequence.values already does)")
    return x


def _feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each feature over the non-padding steps."""
    rows = x.reshape(-1, x.shape[-1])
    rows = rows[np.any(rows != 0, axis=1)]
    if rows.shape[0] < 2:
        raise DataError("fewer than two non-padding pulses to standardise features on")
    var = rows.var(axis=0)
    var[var == 0] = 1.0
    return rows.mean(axis=0), var


class MultiStageBP:
    """Three cascaded LSTM stages: BP class -> MAP -> SBP/DBP.

    ``build`` creates the graph (``fit`` calls it with the training statistics);
    ``stage_models`` holds the per-stage training models, ``cascade`` the whole.
    """

    def __init__(self, n_steps: int, n_features: int, *, lstm_units: int = 64,
                 dense_units: int = 32, learning_rate: float = 1e-3,
                 rng: np.random.Generator | None = None):
        if int(n_steps) < 1 or int(n_features) < 1:
            raise ConfigError(f"need n_steps, n_features >= 1, got {n_steps}, {n_features}")
        self.n_steps, self.n_features = int(n_steps), int(n_features)
        self.lstm_units, self.dense_units = int(lstm_units), int(dense_units)
        self.learning_rate = float(learning_rate)
        self.rng = rng
        self.cascade = None
        self.current_stage: str | None = None
        self.stage_models: dict[str, object] = {}

    def build(self, feature_mean=None, feature_var=None, map_mean=None, bp_mean=None):
        k = keras()
        init = Inits(self.rng)
        f = self.n_features
        mean = np.zeros(f) if feature_mean is None else np.asarray(feature_mean, dtype=np.float64)
        var = np.ones(f) if feature_var is None else np.asarray(feature_var, dtype=np.float64)
        seq = k.Input(shape=(self.n_steps, f), name="features")
        z = k.layers.Normalization(mean=mean, variance=var, name="standardise")(seq)

        self.lstm1 = init.lstm(self.lstm_units, name="stage1_lstm")
        self.lstm2 = init.lstm(self.lstm_units, name="stage2_lstm")
        self.lstm3 = init.lstm(self.lstm_units, name="stage3_lstm")

        h1 = init.dense(self.dense_units, activation="relu", name="stage1_dense")(self.lstm1(z))
        probs = init.dense(len(BP_CLASSES), activation="softmax", name="bp_class")(h1)

        h2 = k.layers.Concatenate(name="stage2_in")([self.lstm2(z), probs])
        h2 = init.dense(self.dense_units, activation="relu", name="stage2_dense")(h2)
        map_out = init.dense(1, bias_initializer=output_bias(map_mean, 1), name="map")(h2)

        h3 = k.layers.Concatenate(name="stage3_in")([self.lstm3(z), probs, map_out])
        h3 = init.dense(self.dense_units, activation="relu", name="stage3_dense")(h3)
        bp = init.dense(2, bias_initializer=output_bias(bp_mean, 2), name="bp")(h3)

        self.cascade = k.Model(seq, [probs, map_out, bp], name="multistage_bp")
        self.stage_models = {
            "class": k.Model(seq, probs, name="stage1_class"),
            "map": k.Model(seq, map_out, name="stage2_map"),
            "bp": k.Model(seq, bp, name="stage3_bp"),
        }
        self._stage_layers = {
            "class": ["stage1_lstm", "stage1_dense", "bp_class"],
            "map": ["stage2_lstm", "stage2_dense", "map"],
            "bp": ["stage3_lstm", "stage3_dense", "bp"],
        }
        return self.cascade

    def _compile_stage(self, stage: str):
        k = keras()
        trainable = set(self._stage_layers[stage])
        for layer in self.cascade.layers:
            if layer.weights and layer.name != "standardise":
                layer.trainable = layer.name in trainable
        model = self.stage_models[stage]
        if stage == "class":
            model.compile(k.optimizers.Adam(self.learning_rate),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        else:
            model.compile(k.optimizers.Adam(self.learning_rate), loss="mse", metrics=["mae"])
        return model

    def fit(self, x, y, *, epochs=(30, 30, 30), batch_size: int = 32,
            validation_data=None, callbacks=None, verbose: int = 0) -> dict[str, object]:
        """Train stage 1, then 2, then 3. ``y`` is (n, 2) SBP, DBP in mmHg.

        ``epochs`` is one number or one per stage (0 leaves a stage as initialised:
        for a later stage, a copy of the previous stage's LSTM). Returns each
        stage's history (None for a stage with 0 epochs). ``callbacks`` (Keras
        callbacks) go to every stage's ``fit``; ``self.current_stage`` names the
        stage being trained.
        """
        x = _check_seq(x, self.n_steps, self.n_features)
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (x.shape[0], 2) or not np.all(np.isfinite(y)):
            raise DataError(f"targets must be finite (n, 2) SBP, DBP, got {y.shape}")
        ep = (int(epochs),) * 3 if np.isscalar(epochs) else tuple(int(e) for e in epochs)
        if len(ep) != 3:
            raise ConfigError(f"epochs: one number or three, got {epochs}")
        targets = self._targets(y)
        val = None
        if validation_data is not None:
            xv = _check_seq(validation_data[0], self.n_steps, self.n_features)
            val = (xv, self._targets(np.asarray(validation_data[1], dtype=np.float64)))
        mean, var = _feature_stats(x)
        self.build(mean, var, map_mean=targets["map"].mean(), bp_mean=y.mean(axis=0))
        hist = {}
        for i, stage in enumerate(("class", "map", "bp")):
            if stage == "map":
                self.lstm2.set_weights(self.lstm1.get_weights())
            elif stage == "bp":
                self.lstm3.set_weights(self.lstm2.get_weights())
            model = self._compile_stage(stage)
            self.current_stage = stage
            if ep[i] == 0:
                log.info("multi-stage: stage %d (%s) keeps its initial weights (0 epochs)", i + 1, stage)
                hist[stage] = None
                continue
            vd = None if val is None else (val[0], val[1][stage])
            log.info("multi-stage: training stage %d (%s) for %d epochs", i + 1, stage, ep[i])
            hist[stage] = model.fit(x, targets[stage], epochs=ep[i], batch_size=batch_size,
                                    validation_data=vd, callbacks=callbacks, verbose=verbose)
        return hist

    @staticmethod
    def _targets(y: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "class": bp_class(y[:, 0], y[:, 1]),
            "map": mean_arterial_pressure(y[:, 0], y[:, 1])[:, None].astype(np.float32),
            "bp": y.astype(np.float32),
        }

    def predict(self, x, batch_size: int = 256) -> dict[str, np.ndarray]:
        """``{"class_probs": (n, 4), "map": (n,), "bp": (n, 2)}``."""
        if self.cascade is None:
            raise ConfigError("MultiStageBP.predict before fit/build")
        x = _check_seq(x, self.n_steps, self.n_features)
        probs, map_out, bp = self.cascade.predict(x, batch_size=batch_size, verbose=0)
        return {"class_probs": probs, "map": map_out[:, 0], "bp": bp}


def build_ann_baseline(n_features: int, *, hidden=(64, 32), feature_mean=None, feature_var=None,
                       target_mean=None, learning_rate: float = 1e-3,
                       rng: np.random.Generator | None = None, name: str = "ann_bp"):
    """Single-stage ANN on one feature vector per segment -> SBP, DBP (Ali & Atef's
    ANN comparison model; the layer sizes are a choice)."""
    k = keras()
    init = Inits(rng)
    inp = k.Input(shape=(int(n_features),), name="features")
    h = k.layers.Normalization(
        mean=np.zeros(n_features) if feature_mean is None else feature_mean,
        variance=np.ones(n_features) if feature_var is None else feature_var,
        name="standardise")(inp)
    for i, u in enumerate(hidden):
        h = init.dense(u, activation="relu", name=f"dense{i + 1}")(h)
    out = init.dense(2, bias_initializer=output_bias(target_mean, 2), name="bp")(h)
    model = k.Model(inp, out, name=name)
    model.compile(k.optimizers.Adam(learning_rate), loss="mse", metrics=["mae"])
    return model


def build_lstm_baseline(n_steps: int, n_features: int, *, lstm_units: int = 64,
                        dense_units: int = 32, feature_mean=None, feature_var=None,
                        target_mean=None, learning_rate: float = 1e-3,
                        rng: np.random.Generator | None = None, name: str = "lstm_bp"):
    """Single-stage LSTM on the per-pulse feature sequence -> SBP, DBP (Ali & Atef's
    LSTM comparison model: stage 3 without stages 1 and 2)."""
    k = keras()
    init = Inits(rng)
    inp = k.Input(shape=(int(n_steps), int(n_features)), name="features")
    h = k.layers.Normalization(
        mean=np.zeros(n_features) if feature_mean is None else feature_mean,
        variance=np.ones(n_features) if feature_var is None else feature_var,
        name="standardise")(inp)
    h = init.lstm(lstm_units, name="lstm")(h)
    h = init.dense(dense_units, activation="relu", name="dense")(h)
    out = init.dense(2, bias_initializer=output_bias(target_mean, 2), name="bp")(h)
    model = k.Model(inp, out, name=name)
    model.compile(k.optimizers.Adam(learning_rate), loss="mse", metrics=["mae"])
    return model
