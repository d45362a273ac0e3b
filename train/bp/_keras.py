"""Lazy tf_keras import and seeded initialisers drawn from one numpy Generator."""
from __future__ import annotations

import numpy as np

from ppg_edge.errors import ConfigError
from ppg_edge.train.tf_lazy import keras


class Inits:
    """Weight initialisers whose seeds come from ``rng`` (unseeded when ``rng`` is None)."""

    def __init__(self, rng: np.random.Generator | None):
        self.rng = rng
        self.k = keras()

    def _seed(self):
        return None if self.rng is None else int(self.rng.integers(0, 2**31 - 1))

    def glorot(self):
        return self.k.initializers.GlorotUniform(seed=self._seed())

    def orthogonal(self):
        return self.k.initializers.Orthogonal(seed=self._seed())

    def dense(self, units, **kw):
        return self.k.layers.Dense(units, kernel_initializer=self.glorot(), **kw)

    def conv1d(self, filters, kernel_size, **kw):
        return self.k.layers.Conv1D(filters, kernel_size, kernel_initializer=self.glorot(), **kw)

    def lstm(self, units, **kw):
        return self.k.layers.LSTM(units, kernel_initializer=self.glorot(),
                                  recurrent_initializer=self.orthogonal(), **kw)

    def dropout(self, rate, **kw):
        return self.k.layers.Dropout(rate, seed=self._seed(), **kw)


def output_bias(target_mean, n: int):
    """Bias initialiser that starts an output layer at the training mean (or zeros)."""
    k = keras()
    if target_mean is None:
        return "zeros"
    mean = np.broadcast_to(np.asarray(target_mean, dtype=np.float64), (n,))
    if not np.all(np.isfinite(mean)):
        raise ConfigError(f"target_mean must be finite, got {target_mean!r}")
    return k.initializers.Constant([float(v) for v in mean])
