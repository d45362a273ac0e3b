"""tf_keras builders for the 30 peak-detector variants (Georgieva-Tsaneva 2025, Tables 2-3).

Built with tf_keras (``TF_USE_LEGACY_KERAS=1``) so every LSTM converts to TFLite's fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` op (see docs/facts.md). TensorFlow is imported inside
the functions, never at module import.

Blocks (Table 3 for Type30; the other variants use the same blocks with their sizes):

* CNN: Conv1D(s1, 5) -> BatchNorm -> MaxPool(2) -> Dropout(0.25) -> Conv1D(s2, 5) ->
  BatchNorm -> MaxPool(2) -> Dropout(0.25) -> Conv1D(s3, 3) -> BatchNorm -> Dropout(0.25);
  'valid' padding, He-normal init, L2 1e-4 (Table 4). 250 samples -> 57 steps.
* LSTM: three LSTMs (s1, s2, s3 units, each followed by Dropout(0.3)).
* Attention: Bahdanau temporal attention, ``e_t = v^T tanh(W h_t + b)``,
  ``alpha = softmax(e)``, ``c = sum_t alpha_t h_t`` (:class:`TemporalAttention`).

Two heads (``PeakModelConfig.head``):

* ``"paper"``: one sigmoid unit per window, as in Table 3 (Dense(1) on the attention
  context; on the last LSTM state without attention; on the globally averaged features
  for CNN-only models). Its trainable count reproduces Table 11 (Type30 = 63,777;
  Type24 = 62,689; Type28 = 63,617). One context vector per window cannot say *where*
  a peak is, so this head is kept only to check the paper's counts.
* ``"per_sample"`` (default, deployed): one probability per input sample. The attention
  context is joined to every time step's LSTM output (``[h_t, c]``), the 57 steps are
  linearly interpolated back to the window length at the centres of their receptive
  fields (:class:`AlignedUpsample`, fixed weights, no parameters), joined to the input
  channels, refined by Conv1D(8, 5, 'same', ReLU) and mapped to a probability per
  sample by Dense(1, sigmoid). Cost for Type30: 2,657 parameters instead of the paper
  head's 33 (66,401 trainable in all).
"""
from __future__ import annotations

import os

import numpy as np

from ppg_edge.errors import ConfigError, ModelError
from ppg_edge.train.tf_lazy import keras as _keras

from .variants import PeakModelConfig

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

REFINE_FILTERS = 8
REFINE_KERNEL = 5
L2 = 1e-4
_PACKAGE = "ppg_edge"
_CUSTOM: dict = {}




def cnn_output_geometry(window: int, kernels=(5, 5, 3)) -> tuple[int, float, int]:
    """``(steps, first_centre, stride)`` of the CNN block's output on ``window`` samples.

    Step ``p`` sees input samples ``[stride*p, stride*p + field)``; its centre is
    ``first_centre + stride*p``.
    """
    length, field, stride = window, 1, 1
    for i, k in enumerate(kernels):
        length = length - k + 1
        field += (k - 1) * stride
        if length < 1:
            break
        if i < 2:
            length //= 2
            field += stride
            stride *= 2
    if length < 1:
        raise ConfigError(f"window of {window} samples is too short for the CNN block {kernels}")
    return length, (field - 1) / 2.0, stride


def interpolation_matrix(n_in: int, n_out: int, first_centre: float, stride: float) -> np.ndarray:
    """``(n_out, n_in)`` linear interpolation from step centres to sample positions.

    Samples before the first centre or after the last take the edge step's value.
    """
    pos = (np.arange(n_out) - first_centre) / stride
    pos = np.clip(pos, 0.0, n_in - 1.0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m


def custom_objects() -> dict:
    """The custom layers and losses, for ``from_config``/``load_model``."""
    _register()
    from .losses import get_loss_class

    out = dict(_CUSTOM)
    out["PeakLoss"] = get_loss_class()
    return out


def _register() -> None:
    """Define and register the custom layers once (needs TensorFlow)."""
    if _CUSTOM:
        return
    keras = _keras()
    import tensorflow as tf

    @keras.utils.register_keras_serializable(package=_PACKAGE)
    class TemporalAttention(keras.layers.Layer):
        """Bahdanau temporal attention over ``(batch, steps, features)``.

        ``e_t = v^T tanh(W h_t + b)``, ``alpha = softmax_t(e)``, ``c = sum_t alpha_t h_t``
        (Georgieva-Tsaneva 2025, eqs. 15-17). ``units`` is the size of ``W``'s output
        (defaults to the feature size: 32 for Type30 -> 1,088 parameters).
        ``output_mode="context"`` returns ``c`` ``(batch, features)``; ``"concat"``
        returns ``[h_t, c]`` for every step ``(batch, steps, 2*features)``.
        Only builtin TFLite ops (FULLY_CONNECTED, TANH, SOFTMAX, MUL, SUM, ...).
        """

        def __init__(self, units: int | None = None, output_mode: str = "context", **kwargs):
            super().__init__(**kwargs)
            if output_mode not in ("context", "concat"):
                raise ConfigError(f"output_mode must be 'context' or 'concat', got {output_mode!r}")
            self.units = units
            self.output_mode = output_mode

        def build(self, input_shape):
            features = int(input_shape[-1])
            units = self.units or features
            self.w = self.add_weight(
                name="w", shape=(features, units), initializer="glorot_uniform"
            )
            self.b = self.add_weight(name="b", shape=(units,), initializer="zeros")
            self.v = self.add_weight(name="v", shape=(units, 1), initializer="glorot_uniform")
            super().build(input_shape)

        def attention_weights(self, h):
            score = tf.tensordot(tf.tanh(tf.tensordot(h, self.w, axes=1) + self.b), self.v, axes=1)
            return tf.nn.softmax(tf.squeeze(score, axis=-1), axis=-1)

        def call(self, h):
            alpha = self.attention_weights(h)
            context = tf.reduce_sum(h * tf.expand_dims(alpha, -1), axis=1)
            if self.output_mode == "context":
                return context
            tiled = tf.tile(tf.expand_dims(context, 1), tf.stack([1, tf.shape(h)[1], 1]))
            return tf.concat([h, tiled], axis=-1)

        def compute_output_shape(self, input_shape):
            if self.output_mode == "context":
                return tf.TensorShape((input_shape[0], input_shape[-1]))
            return tf.TensorShape((input_shape[0], input_shape[1], 2 * input_shape[-1]))

        def get_config(self):
            cfg = super().get_config()
            cfg.update(units=self.units, output_mode=self.output_mode)
            return cfg

    @keras.utils.register_keras_serializable(package=_PACKAGE)
    class AlignedUpsample(keras.layers.Layer):
        """Linear interpolation of ``(batch, n_in, c)`` steps to ``(batch, n_out, c)``.

        Step ``p`` sits at sample ``first_centre + stride*p`` (the centre of its
        receptive field), so upsampled features line up with the input samples.
        A fixed matrix product (BATCH_MATMUL in TFLite); no trainable weights.
        """

        def __init__(self, n_in: int, n_out: int, first_centre: float, stride: float, **kwargs):
            super().__init__(**kwargs)
            self.n_in, self.n_out = int(n_in), int(n_out)
            self.first_centre, self.stride = float(first_centre), float(stride)
            self._matrix = interpolation_matrix(self.n_in, self.n_out, self.first_centre, self.stride)

        def call(self, x):
            m = tf.constant(self._matrix)
            batch = tf.shape(x)[0]
            return tf.matmul(tf.tile(tf.expand_dims(m, 0), tf.stack([batch, 1, 1])), x)

        def compute_output_shape(self, input_shape):
            return tf.TensorShape((input_shape[0], self.n_out, input_shape[-1]))

        def get_config(self):
            cfg = super().get_config()
            cfg.update(
                n_in=self.n_in, n_out=self.n_out, first_centre=self.first_centre, stride=self.stride
            )
            return cfg

    _CUSTOM["TemporalAttention"] = TemporalAttention
    _CUSTOM["AlignedUpsample"] = AlignedUpsample


def build_peak_model(config: PeakModelConfig, window: int = 250, batch_size: int | None = None):
    """A tf_keras ``Model`` for one configuration (uncompiled).

    Input ``(batch, window, config.n_channels)``. Output ``(batch, window)`` per-sample
    peak probabilities for ``head="per_sample"``, ``(batch, 1)`` for ``head="paper"``.
    """
    if not isinstance(config, PeakModelConfig):
        raise ConfigError(f"expected a PeakModelConfig, got {type(config).__name__}")
    if int(window) < 8:
        raise ConfigError(f"window must be at least 8 samples, got {window}")
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size must be positive or None, got {batch_size}")
    if config.has_cnn:
        steps, centre, stride = cnn_output_geometry(int(window), config.conv_kernels)
    keras = _keras()
    _register()
    layers = keras.layers
    reg = keras.regularizers.L2(L2)
    s1, s2, s3 = (int(s) for s in config.sizes)
    paper = config.head == "paper"

    inp = keras.Input(shape=(window, config.n_channels), batch_size=batch_size, name="ppg")
    x = inp
    if config.has_cnn:
        conv_act = config.activation if config.network == "cnn" else "relu"
        for i, (filters, kernel) in enumerate(zip((s1, s2, s3), config.conv_kernels), start=1):
            x = layers.Conv1D(
                filters, kernel, activation=conv_act, kernel_initializer="he_normal",
                kernel_regularizer=reg, name=f"conv{i}",
            )(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            if i < 3:
                x = layers.MaxPooling1D(2, name=f"pool{i}")(x)
            x = layers.Dropout(config.conv_dropout, name=f"conv_drop{i}")(x)
    if config.has_lstm:
        for i, units in enumerate((s1, s2, s3), start=1):
            last = i == 3
            seq = not (last and paper and not config.has_attention)
            x = layers.LSTM(
                units, activation=config.activation, return_sequences=seq, name=f"lstm{i}"
            )(x)
            x = layers.Dropout(config.lstm_dropout, name=f"lstm_drop{i}")(x)
    if config.has_attention:
        x = _CUSTOM["TemporalAttention"](
            output_mode="context" if paper else "concat", name="attention"
        )(x)

    if paper:
        if config.network == "cnn":
            x = layers.GlobalAveragePooling1D(name="gap")(x)
        out = layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name="peak")(x)
    else:
        if config.has_cnn:
            x = _CUSTOM["AlignedUpsample"](steps, window, centre, stride, name="upsample")(x)
        x = layers.Concatenate(name="join_input")([x, inp])
        x = layers.Conv1D(
            REFINE_FILTERS, REFINE_KERNEL, padding="same", activation="relu",
            kernel_initializer="he_normal", kernel_regularizer=reg, name="refine",
        )(x)
        x = layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name="peak")(x)
        out = layers.Reshape((window,), name="probs")(x)
    return keras.Model(inp, out, name=f"{config.name}_{config.head}")


def trainable_params(model) -> int:
    """Number of trainable parameters (what the paper's Table 11 counts)."""
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def clone_for_inference(model):
    """The same network on a fixed batch of 1 (weights copied), as TFLite conversion needs."""
    keras = _keras()
    _register()
    try:
        cfg = model.get_config()
        for layer_cfg in cfg["layers"]:
            if layer_cfg["class_name"] == "InputLayer":
                shape = list(layer_cfg["config"]["batch_input_shape"])
                layer_cfg["config"]["batch_input_shape"] = [1] + shape[1:]
        clone = keras.Model.from_config(cfg, custom_objects=custom_objects())
        clone.set_weights(model.get_weights())
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot clone model {model.name!r} for batch-1 inference: {exc}") from exc
    return clone
