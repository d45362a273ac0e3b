"""TensorFlow, tf_keras and tfmot, imported on first use with ``TF_USE_LEGACY_KERAS=1`` set
before the import, so every model is a tf_keras model whose LSTMs convert to the fused TFLite
op (docs/facts.md, "Converting Conv1D + LSTM + attention models"). Training and conversion both
import them from here."""
from __future__ import annotations

import os


def _legacy() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def tf():
    """The ``tensorflow`` module."""
    _legacy()
    import tensorflow

    return tensorflow


def keras():
    """The ``tf_keras`` module."""
    _legacy()
    import tf_keras

    return tf_keras


def tfmot():
    """The ``tensorflow_model_optimization`` module."""
    _legacy()
    import tensorflow_model_optimization

    return tensorflow_model_optimization
