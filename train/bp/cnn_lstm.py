"""Calibration-free CNN-LSTM blood-pressure regressor (Hayirlioglu & Semiz 2025).

Hayirlioglu Y.Z., Semiz B., "A Novel Cuff-Less and Calibration-Free Blood Pressure
Estimation Framework Using Single Photoplethysmogram", BIOSIGNALS 2025, pp. 697-703,
DOI 10.5220/0013055600003911.

What the paper fixes (Table 2, Fig. 2, Sec. 2.4): three Conv1D layers with 16/32/64
filters and kernels 63/15/15, each followed by max pooling; five LSTM layers of
128/128/32/64/128 units; no hidden dense layer; a last layer of two neurons (SBP,
DBP); MSE loss; selection by validation RMSE over a random search of 100 models
(30 epochs each) on the Table 1 space (:data:`SEARCH_SPACE`). Input: one z-scored,
0.4-20 Hz band-passed PPG segment of 2.1 s (PPG-BP at 1000 Hz, 2100 samples).

What the paper leaves open, and the choice made here (all are parameters):
activations (ReLU after each convolution), pooling (size 2, stride 2), convolution
padding ("same", so any input of at least 8 samples works), dropout (none), the
output activation (linear), the optimiser (Adam, 1e-3). Fig. 2 draws a "Flatten"
before the LSTMs; an LSTM needs a sequence, so the pooled feature maps go to the
first LSTM as (time, channels) and only the last LSTM returns a single vector.

Input rate and length: kernel sizes are in samples, tuned by the paper at 1000 Hz.
The device samples at 50-100 Hz; a 2.1 s window there is 105-210 samples (use
:func:`input_length`), and a 63-sample kernel then spans 0.6-1.3 s instead of 63 ms.
That is a different receptive field from the paper's; the search space below is
kept in samples as published, so a search at the device rate re-selects them.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field

import numpy as np

from ppg_edge.errors import ConfigError

from ._keras import Inits, keras, output_bias

log = logging.getLogger(__name__)

#: Rate and segment length of the paper's input (PPG-BP).
PAPER_FS = 1000.0
PAPER_SEGMENT_S = 2.1

#: Table 2: the selected architecture.
PAPER_HPARAMS: dict[str, tuple[int, ...]] = {
    "cnn_filters": (16, 32, 64),
    "cnn_kernels": (63, 15, 15),
    "lstm_units": (128, 128, 32, 64, 128),
    "dense_units": (),
}

#: Table 1: the random-search space (each layer draws its own filters/kernel/units).
SEARCH_SPACE: dict[str, tuple[int, ...]] = {
    "cnn_layers": (1, 3),
    "cnn_filters": (16, 32, 64),
    "cnn_kernel_size": (5, 15, 63),
    "lstm_layers": (1, 3, 5),
    "lstm_units": (32, 64, 128),
    "dense_layers": (0, 1, 3),
    "dense_units": (16, 64, 128),
}

OUTPUT_NAMES = ("sbp", "dbp")


def input_length(fs: float, seconds: float = PAPER_SEGMENT_S) -> int:
    """Samples in a window of ``seconds`` at ``fs`` (2.1 s at 100 Hz -> 210)."""
    if not (np.isfinite(fs) and fs > 0 and np.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"need a positive rate and duration, got fs={fs}, seconds={seconds}")
    return int(round(fs * seconds))


def build_cnn_lstm_bp(input_len: int, channels: int = 1, *,
                      cnn_filters=PAPER_HPARAMS["cnn_filters"],
                      cnn_kernels=PAPER_HPARAMS["cnn_kernels"],
                      lstm_units=PAPER_HPARAMS["lstm_units"],
                      dense_units=PAPER_HPARAMS["dense_units"],
                      pool_size: int = 2,
                      activation: str = "relu",
                      dropout: float = 0.0,
                      target_mean=None,
                      learning_rate: float = 1e-3,
                      batch_size: int | None = None,
                      rng: np.random.Generator | None = None,
                      compile: bool = True,
                      name: str = "cnn_lstm_bp"):
    """The Table 2 CNN-LSTM (defaults) or any point of the Table 1 space.

    Input ``(batch, input_len, channels)``; output ``(batch, 2)`` = SBP, DBP in the
    units of the targets. ``target_mean`` (SBP, DBP of the training set) starts the
    output bias at the naive predictor. ``batch_size`` fixes the batch dimension
    (1 for TFLite conversion, see docs/facts.md). Compiled with MSE (the paper's
    training loss) and MAE as a metric unless ``compile=False``.
    """
    k = keras()
    cnn_filters, cnn_kernels = tuple(cnn_filters), tuple(cnn_kernels)
    lstm_units, dense_units = tuple(lstm_units), tuple(dense_units)
    if len(cnn_filters) != len(cnn_kernels):
        raise ConfigError(f"cnn_filters {cnn_filters} and cnn_kernels {cnn_kernels} differ in length")
    if not lstm_units:
        raise ConfigError("the model needs at least one LSTM layer")
    if int(channels) < 1:
        raise ConfigError(f"channels must be at least 1, got {channels}")
    steps = int(input_len)
    for _ in cnn_filters:
        steps //= pool_size
    if steps < 1:
        raise ConfigError(
            f"input_len {input_len} is too short for {len(cnn_filters)} poolings of {pool_size}")
    init = Inits(rng)
    inp = k.Input(shape=(int(input_len), int(channels)), batch_size=batch_size, name="ppg")
    h = inp
    for i, (f, ks) in enumerate(zip(cnn_filters, cnn_kernels)):
        h = init.conv1d(f, ks, padding="same", activation=activation, name=f"conv{i + 1}")(h)
        h = k.layers.MaxPooling1D(pool_size, name=f"pool{i + 1}")(h)
        if dropout:
            h = init.dropout(dropout, name=f"conv_dropout{i + 1}")(h)
    for i, u in enumerate(lstm_units):
        last = i == len(lstm_units) - 1
        h = init.lstm(u, return_sequences=not last, name=f"lstm{i + 1}")(h)
    for i, u in enumerate(dense_units):
        h = init.dense(u, activation=activation, name=f"dense{i + 1}")(h)
    out = init.dense(2, bias_initializer=output_bias(target_mean, 2), name="bp")(h)
    model = k.Model(inp, out, name=name)
    if compile:
        model.compile(optimizer=k.optimizers.Adam(learning_rate), loss="mse", metrics=["mae"])
    return model


def sample_hparams(rng: np.random.Generator) -> dict[str, tuple[int, ...]]:
    """One random point of :data:`SEARCH_SPACE` as build keyword arguments."""
    s = SEARCH_SPACE

    def pick(key, n):
        return tuple(int(v) for v in rng.choice(s[key], size=n))

    n_cnn = int(rng.choice(s["cnn_layers"]))
    n_lstm = int(rng.choice(s["lstm_layers"]))
    n_dense = int(rng.choice(s["dense_layers"]))
    return {
        "cnn_filters": pick("cnn_filters", n_cnn),
        "cnn_kernels": pick("cnn_kernel_size", n_cnn),
        "lstm_units": pick("lstm_units", n_lstm),
        "dense_units": pick("dense_units", n_dense),
    }


def hparams_from_tuner(hp) -> dict[str, tuple[int, ...]]:
    """Draw build keyword arguments from a KerasTuner ``HyperParameters`` object.

    Per-layer choices are named ``cnn_filters_1``, ``cnn_kernel_size_1``,
    ``lstm_units_1`` ... and are only drawn for the layers in use.
    """
    s = SEARCH_SPACE
    n_cnn = hp.Choice("cnn_layers", list(s["cnn_layers"]))
    n_lstm = hp.Choice("lstm_layers", list(s["lstm_layers"]))
    n_dense = hp.Choice("dense_layers", list(s["dense_layers"]))
    return {
        "cnn_filters": tuple(hp.Choice(f"cnn_filters_{i + 1}", list(s["cnn_filters"]))
                             for i in range(n_cnn)),
        "cnn_kernels": tuple(hp.Choice(f"cnn_kernel_size_{i + 1}", list(s["cnn_kernel_size"]))
                             for i in range(n_cnn)),
        "lstm_units": tuple(hp.Choice(f"lstm_units_{i + 1}", list(s["lstm_units"]))
                            for i in range(n_lstm)),
        "dense_units": tuple(hp.Choice(f"dense_units_{i + 1}", list(s["dense_units"]))
                             for i in range(n_dense)),
    }


@dataclass
class SearchResult:
    """Outcome of :func:`random_search`: the best point and every trial's score."""

    best_hparams: dict[str, tuple[int, ...]]
    best_val_loss: float
    trials: list[tuple[dict[str, tuple[int, ...]], float]] = field(default_factory=list)

    @property
    def best_val_rmse(self) -> float:
        """Root of the best validation MSE (averaged over SBP and DBP)."""
        return float(np.sqrt(self.best_val_loss))


def random_search(x_train, y_train, x_val, y_val, *, rng: np.random.Generator,
                  max_trials: int = 100, epochs: int = 30, batch_size: int = 32,
                  directory: str | None = None, project_name: str = "cnn_lstm_bp",
                  verbose: int = 0, **build_kwargs) -> SearchResult:
    """Random search over :data:`SEARCH_SPACE` with ``keras_tuner.RandomSearch``.

    The paper trains 100 models for 30 epochs and keeps the smallest validation
    RMSE; here the objective is the validation MSE (same ranking), the best epoch
    of each trial counting. ``x_val``/``y_val`` must hold other subjects than the
    training data. ``build_kwargs`` go to :func:`build_cnn_lstm_bp` (``target_mean``,
    ``learning_rate`` ...). ``directory`` holds KerasTuner's trial files (a
    temporary folder, removed afterwards, when None).
    """
    import keras_tuner as kt

    k = keras()
    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    if x_train.ndim == 2:
        x_train, x_val = x_train[..., None], x_val[..., None]
    if x_train.ndim != 3 or x_val.shape[1:] != x_train.shape[1:]:
        raise ConfigError(f"x_train {x_train.shape} and x_val {x_val.shape} must be "
                          "(n, input_len[, channels]) with the same window shape")
    if int(max_trials) < 1:
        raise ConfigError(f"max_trials must be at least 1, got {max_trials}")
    input_len, channels = x_train.shape[1], x_train.shape[2]

    class _HyperModel(kt.HyperModel):
        def build(self, hp):
            return build_cnn_lstm_bp(input_len, channels, rng=rng,
                                     **hparams_from_tuner(hp), **build_kwargs)

    class _Tuner(kt.RandomSearch):
        """Fits the tf_keras model itself (KerasTuner's own fit path expects Keras 3)."""

        def run_trial(self, trial, *args, **kwargs):
            k.backend.clear_session()
            model = self.hypermodel.build(trial.hyperparameters)
            hist = model.fit(*args, **kwargs)
            return {"val_loss": float(np.nanmin(hist.history["val_loss"]))}

    with tempfile.TemporaryDirectory(prefix="bp_search_") as tmp:
        tuner = _Tuner(_HyperModel(), objective=kt.Objective("val_loss", "min"),
                       max_trials=int(max_trials), seed=int(rng.integers(0, 2**31 - 1)),
                       directory=directory or tmp, project_name=project_name, overwrite=True)
        tuner.search(x_train, np.asarray(y_train, dtype=np.float32),
                     validation_data=(x_val, np.asarray(y_val, dtype=np.float32)),
                     epochs=int(epochs), batch_size=int(batch_size), verbose=verbose)
        trials = []
        for t in tuner.oracle.trials.values():
            if t.score is None:
                log.warning("trial %s ended without a score (status %s)", t.trial_id, t.status)
                continue
            trials.append((hparams_from_tuner(t.hyperparameters.copy()), float(t.score)))
    if not trials:
        from ppg_edge.errors import ModelError

        raise ModelError(f"random search: none of {max_trials} trials finished")
    best = min(trials, key=lambda tr: tr[1])
    log.info("random search: %d trials, best val MSE %.3f", len(trials), best[1])
    return SearchResult(best_hparams=best[0], best_val_loss=best[1], trials=trials)
