"""Pruning and quantization-aware training (tfmot) for the Conv1D + LSTM (+ attention) models.

Recipes measured in ``docs/facts.md``:

* **Pruning** -- ``prune_low_magnitude`` on Conv1D, LSTM and Dense layers only (the custom
  attention layer cannot be wrapped), a polynomial or constant sparsity schedule, a few
  epochs of fine-tuning with ``UpdatePruningStep``, then ``strip_pruning``: the result is
  a plain tf_keras model again (fused LSTM on conversion). Zeros do not shrink the
  .tflite file, only its gzip.
* **QAT** -- ``quantize_model`` rejects Conv1D, BatchNorm, MaxPooling1D, LSTM and custom
  layers, so layers are annotated one by one: the default config for Dense, custom
  :class:`QuantizeConfig` s for Conv1D and the attention layer, ``Default8BitQuantizeConfigRNN``
  for LSTM (only when ``annotate_lstm``), no-op configs for BatchNorm/MaxPool; then
  ``quantize_apply``. A QAT-wrapped LSTM converts to a ``WHILE`` loop instead of the
  fused op; with ``annotate_lstm=False`` the LSTMs stay plain (fused, quantized after
  training from calibration ranges) while everything around them trains with fake quant.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from ppg_edge.errors import ConfigError, DataError
from ppg_edge.train.tf_lazy import keras as _keras
from ppg_edge.train.tf_lazy import tfmot as _tfmot

log = logging.getLogger(__name__)

PRUNABLE = ("Conv1D", "LSTM", "Dense")






def _check_xy(model, x, y):
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    if x.shape[1:] != tuple(model.input_shape[1:]) or len(x) != len(y) or not len(x):
        raise DataError(f"fine-tuning data {x.shape} / {y.shape} does not fit the model input {model.input_shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataError("fine-tuning data contain NaN/inf")
    return x, y


def sparsity(model) -> dict[str, float]:
    """Fraction of exact zeros in each kernel of the prunable layers."""
    out = {}
    for layer in model.layers:
        if type(layer).__name__ in PRUNABLE:
            for w in layer.weights:
                if "kernel" in w.name:
                    arr = w.numpy()
                    out[w.name] = float(np.mean(arr == 0))
    return out


def prune_model(
    model,
    x,
    y,
    *,
    target_sparsity: float = 0.5,
    schedule: str = "polynomial",
    initial_sparsity: float = 0.0,
    epochs: int = 2,
    batch_size: int = 32,
    loss: Any = "mse",
    lr: float = 1e-3,
    seed: int = 0,
    custom_objects: dict | None = None,
):
    """Prune Conv1D/LSTM/Dense weights to ``target_sparsity`` while fine-tuning on
    ``(x, y)`` for ``epochs``; returns the stripped (plain) model.

    ``schedule``: ``"polynomial"`` (from ``initial_sparsity`` to the target over the
    fine-tuning steps) or ``"constant"`` (the target from the first step).
    """
    keras, tfmot = _keras(), _tfmot()
    if not 0.0 < target_sparsity < 1.0 or not 0.0 <= initial_sparsity <= target_sparsity:
        raise ConfigError(f"sparsity must satisfy 0 <= initial <= target < 1, got {initial_sparsity}, {target_sparsity}")
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    x, y = _check_xy(model, x, y)
    steps = int(np.ceil(len(x) / batch_size)) * int(epochs)
    sp = tfmot.sparsity.keras
    if schedule == "polynomial":
        sched = sp.PolynomialDecay(initial_sparsity, target_sparsity, begin_step=0, end_step=max(1, steps - 1),
                                   frequency=max(1, steps // 10))
    elif schedule == "constant":
        sched = sp.ConstantSparsity(target_sparsity, begin_step=0, frequency=1)
    else:
        raise ConfigError(f"schedule must be 'polynomial' or 'constant', got {schedule!r}")

    def wrap(layer):
        # always a fresh copy: wrapping ``layer`` itself would prune the caller's model in place
        fresh = layer.__class__.from_config(layer.get_config())
        if type(layer).__name__ in PRUNABLE:
            return sp.prune_low_magnitude(fresh, pruning_schedule=sched)
        return fresh

    with keras.utils.custom_object_scope(custom_objects or {}):
        pruned = keras.models.clone_model(model, clone_function=wrap)
    _copy_weights_by_name(model, pruned)
    keras.utils.set_random_seed(int(seed))
    pruned.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    pruned.fit(x, y, epochs=int(epochs), batch_size=int(batch_size), verbose=0,
               callbacks=[sp.UpdatePruningStep()])
    stripped = sp.strip_pruning(pruned)
    log.info("pruned %s to %s sparsity: %s", model.name, target_sparsity, sparsity(stripped))
    return stripped


def _copy_weights_by_name(src, dst) -> None:
    by_name = {layer.name: layer for layer in src.layers}
    for layer in dst.layers:
        inner = getattr(layer, "layer", layer)
        ref = by_name.get(inner.name) or by_name.get(layer.name)
        if ref is not None and ref.get_weights():
            inner.set_weights(ref.get_weights())


# ----------------------------------------------------------------------------- QAT

def qat_scope_objects() -> dict:
    """Every class needed to (de)serialise a QAT model made by :func:`qat_model`."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs8,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry8,
    )

    conv, att = _configs()
    return {"Conv1DQuantizeConfig": conv, "AttentionQuantizeConfig": att,
            "NoOpQuantizeConfig": configs8.NoOpQuantizeConfig,
            "Default8BitQuantizeConfigRNN": registry8.Default8BitQuantizeConfigRNN}


@functools.cache
def _configs():
    """Custom QuantizeConfig classes (defined once, lazily: they subclass tfmot types)."""
    tfmot = _tfmot()
    q = tfmot.quantization.keras
    quantizers = q.quantizers

    class Conv1DQuantizeConfig(q.QuantizeConfig):
        """8-bit symmetric per-tensor kernel, 8-bit activation output (as TFLite int8 conv)."""

        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, quantizers.LastValueQuantizer(
                num_bits=8, per_axis=False, symmetric=True, narrow_range=True))]

        def get_activations_and_quantizers(self, layer):
            return [(layer.activation, quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False))]

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            layer.activation = quantize_activations[0]

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class AttentionQuantizeConfig(q.QuantizeConfig):
        """Temporal attention: 8-bit ``W`` and ``v``, 8-bit output."""

        def get_weights_and_quantizers(self, layer):
            lv = lambda: quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True,  # noqa: E731
                                                       narrow_range=True)
            return [(layer.w, lv()), (layer.v, lv())]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            layer.w, layer.v = quantize_weights

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

        def get_config(self):
            return {}

    return Conv1DQuantizeConfig, AttentionQuantizeConfig


def qat_model(
    model,
    x,
    y,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    loss: Any = "mse",
    lr: float = 5e-4,
    annotate_lstm: bool = False,
    seed: int = 0,
    custom_objects: dict | None = None,
):
    """Quantization-aware fine-tuning by selective annotation; returns the QAT model
    (convert it with ``convert_model(..., "int8", calibration=...)``; with
    ``annotate_lstm`` the result holds ``WHILE`` loops and needs ``allow_ops=["WHILE"]``)."""
    keras, tfmot = _keras(), _tfmot()
    q = tfmot.quantization.keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs8,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry8,
    )

    x, y = _check_xy(model, x, y)
    Conv1DConfig, AttentionConfig = _configs()

    def annotate(layer):
        kind = type(layer).__name__
        clone = layer.__class__.from_config(layer.get_config())
        if kind == "Dense":
            return q.quantize_annotate_layer(clone)
        if kind == "Conv1D":
            return q.quantize_annotate_layer(clone, Conv1DConfig())
        if kind == "TemporalAttention":
            return q.quantize_annotate_layer(clone, AttentionConfig())
        if kind == "LSTM" and annotate_lstm:
            return q.quantize_annotate_layer(clone, registry8.Default8BitQuantizeConfigRNN(
                [["kernel", "recurrent_kernel"]], [["activation", "recurrent_activation"]], False))
        if kind in ("BatchNormalization", "MaxPooling1D"):
            return q.quantize_annotate_layer(clone, configs8.NoOpQuantizeConfig())
        return clone

    scope = dict(custom_objects or {})
    scope.update(qat_scope_objects())
    with keras.utils.custom_object_scope(scope):
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        with q.quantize_scope(scope):
            qat = q.quantize_apply(annotated)  # carries the annotated model's weights over
    keras.utils.set_random_seed(int(seed))
    qat.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    qat.fit(x, y, epochs=int(epochs), batch_size=int(batch_size), verbose=0)
    return qat
