"""CNN + LSTM over one pulse and its derivatives (PPG, VPG, APG, JPG) -> SBP, DBP.

After the "CNN+LSTM Blood Pressure Prediction" notebook (J. Naramore, PPG_to_BP
repository, 2025): four input channels (the pulse and its 1st-3rd derivatives),
convolution blocks (Conv1D -> batch norm -> ReLU -> max pool 2 -> dropout 0.2) of
16/32/64/128 filters, a two-layer bidirectional LSTM of 16 units whose last hidden
states feed a Dense(64, ReLU) -> dropout 0.2 -> linear head. The notebook predicts
SBP only; this head predicts SBP and DBP.

Fixed input length -- resampling, not padding. The notebook pads pulses of
different lengths in each batch. A device model needs one static input shape
(TFLite, int8 calibration), so each pulse is **resampled to ``pulse_len`` samples**
(default 128) over its foot-to-foot duration, and the duration in seconds goes in
as a second input, so no information is lost. Padding with a mask was rejected:
Conv1D ignores Keras masks (the zeros leak into the convolutions near the pulse
end), a masked LSTM does not convert to the fused TFLite LSTM op, and a padded
length must cover the slowest heart rate (2.5 s), wasting most of the input at
normal rates. Because a resampled pulse is a fraction of a beat rather than of a
second, the notebook's kernels (240/120/60/60 samples at 1000 Hz on ~800-sample
pulses, about 30/15/7.5/7.5% of a pulse) are scaled to 39/19/9/9 of 128 samples.

Derivatives are taken on the height-normalised pulse in seconds (``np.gradient``)
before resampling; each channel is then divided by its largest absolute value
(amplitudes of derivatives differ by orders of magnitude). ``ppg_edge.dsp``'s
VPG/APG/JPG can replace :func:`derivative_channels` once merged.
"""
from __future__ import annotations

import logging

import numpy as np

from ppg_edge.dsp.rates import check_rate
from ppg_edge.errors import ConfigError, DataError

from ._keras import Inits, keras, output_bias

log = logging.getLogger(__name__)

DEFAULT_PULSE_LEN = 128
CHANNEL_NAMES = ("ppg", "vpg", "apg", "jpg")


def derivative_channels(pulse, fs: float) -> np.ndarray:
    """(n, 4): the pulse with its foot-to-foot baseline removed and height scaled to 1,
    and its first three time derivatives (per second)."""
    x = np.asarray(pulse, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"pulse must be 1-D, got shape {x.shape}")
    fs = check_rate(fs, number=True)
    if x.size < 4 or not np.all(np.isfinite(x)):
        raise DataError(f"pulse of {x.size} samples is too short or holds non-finite values")
    y = x - np.linspace(x[0], x[-1], x.size)
    h = y.max()
    if not h > 0:
        raise DataError("pulse has no peak above its foot-to-foot baseline")
    y = y / h
    d1 = np.gradient(y, 1.0 / fs)
    d2 = np.gradient(d1, 1.0 / fs)
    d3 = np.gradient(d2, 1.0 / fs)
    return np.stack([y, d1, d2, d3], axis=1)


def prepare_pulse(pulse, fs: float, pulse_len: int = DEFAULT_PULSE_LEN) -> tuple[np.ndarray, float]:
    """One pulse (foot to next foot, both included) -> ((pulse_len, 4) float32, duration s)."""
    ch = derivative_channels(pulse, fs)
    n = ch.shape[0]
    src = np.linspace(0.0, 1.0, n)
    dst = np.linspace(0.0, 1.0, int(pulse_len))
    out = np.stack([np.interp(dst, src, ch[:, j]) for j in range(4)], axis=1)
    peak = np.max(np.abs(out), axis=0)
    peak[peak == 0] = 1.0
    return (out / peak).astype(np.float32), (n - 1) / float(fs)


def prepare_pulses(pulses, fs: float, pulse_len: int = DEFAULT_PULSE_LEN):
    """Many pulses -> (X (n, pulse_len, 4), durations (n,), valid (n,)).

    A bad pulse (too short, flat, non-finite) gives a zero row, ``valid`` False and
    a logged warning; it never raises.
    """
    pulses = list(pulses)
    X = np.zeros((len(pulses), int(pulse_len), 4), dtype=np.float32)
    dur = np.zeros(len(pulses), dtype=np.float32)
    valid = np.zeros(len(pulses), dtype=bool)
    for i, p in enumerate(pulses):
        try:
            X[i], dur[i] = prepare_pulse(p, fs, pulse_len)
            valid[i] = True
        except DataError as exc:
            log.warning("pulse %d skipped: %s", i, exc)
    return X, dur, valid


def build_derivatives_model(pulse_len: int = DEFAULT_PULSE_LEN, channels: int = 4, *,
                            cnn_filters=(16, 32, 64, 128),
                            cnn_kernels=(39, 19, 9, 9),
                            dropout: float = 0.2,
                            lstm_units: int = 16,
                            lstm_layers: int = 2,
                            bidirectional: bool = True,
                            head_units: int = 64,
                            with_duration: bool = True,
                            target_mean=None,
                            learning_rate: float = 1e-3,
                            batch_size: int | None = None,
                            rng: np.random.Generator | None = None,
                            compile: bool = True,
                            name: str = "derivatives_bp"):
    """Inputs ``pulse`` (batch, pulse_len, 4) [and ``duration`` (batch, 1) in s];
    output ``bp`` (batch, 2) = SBP, DBP. Compiled with MSE (the notebook's loss)
    and MAE unless ``compile=False``."""
    k = keras()
    if len(cnn_filters) != len(cnn_kernels):
        raise ConfigError(f"cnn_filters {cnn_filters} and cnn_kernels {cnn_kernels} differ in length")
    if int(pulse_len) // 2 ** len(cnn_filters) < 1:
        raise ConfigError(f"pulse_len {pulse_len} is too short for {len(cnn_filters)} poolings")
    if int(lstm_layers) < 1:
        raise ConfigError("lstm_layers must be at least 1")
    init = Inits(rng)
    inp = k.Input(shape=(int(pulse_len), int(channels)), batch_size=batch_size, name="pulse")
    h = inp
    for i, (f, ks) in enumerate(zip(cnn_filters, cnn_kernels)):
        h = init.conv1d(f, ks, padding="same", name=f"conv{i + 1}")(h)
        h = k.layers.BatchNormalization(name=f"bn{i + 1}")(h)
        h = k.layers.ReLU(name=f"relu{i + 1}")(h)
        h = k.layers.MaxPooling1D(2, name=f"pool{i + 1}")(h)
        h = init.dropout(dropout, name=f"conv_dropout{i + 1}")(h)
    for i in range(int(lstm_layers)):
        last = i == int(lstm_layers) - 1
        layer = init.lstm(lstm_units, return_sequences=not last, name=f"lstm{i + 1}")
        if bidirectional:
            layer = k.layers.Bidirectional(layer, name=f"bilstm{i + 1}")
        h = layer(h)
        if not last:
            h = init.dropout(0.1, name=f"lstm_dropout{i + 1}")(h)
    inputs = [inp]
    if with_duration:
        dur = k.Input(shape=(1,), batch_size=batch_size, name="duration")
        inputs.append(dur)
        h = k.layers.Concatenate(name="with_duration")([h, dur])
    h = init.dense(head_units, activation="relu", name="head")(h)
    h = init.dropout(0.2, name="head_dropout")(h)
    out = init.dense(2, bias_initializer=output_bias(target_mean, 2), name="bp")(h)
    model = k.Model(inputs if with_duration else inp, out, name=name)
    if compile:
        model.compile(optimizer=k.optimizers.Adam(learning_rate), loss="mse", metrics=["mae"])
    return model
