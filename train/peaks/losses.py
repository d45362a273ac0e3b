"""BCE + a differentiable PeakDistanceLoss (Georgieva-Tsaneva 2025, eqs. 19-20).

The paper's ``L_DIST = 1/N sum_i min_j |p_i - p^_j|`` (mean distance from each true peak
to the nearest predicted peak) needs discrete predicted peaks, which have no gradient.
We relax it on the per-sample probabilities ``q_t`` of one window:

* **true -> predicted** (the paper's direction): read ``q_t`` as independent chances that
  sample ``t`` is a detected peak. For a true-peak sample ``s`` the expected distance to
  the nearest detection, capped at ``R`` samples, is
  ``E[min(D_s, R)] = sum_{r=0}^{R-1} prod_{|t-s|<=r} (1 - q_t)``, computed with a prefix
  sum of ``log(1 - q)``. Averaged over the positive samples of the labels; 0 for a
  window without peaks.
* **predicted -> true** (keeps the first term from being won by predicting peaks
  everywhere): ``sum_t q_t d_t / (sum_t q_t + 1)`` where ``d_t`` is the distance from
  ``t`` to the nearest positive label sample (``R`` when the window has none). The ``+1``
  keeps a little stray probability cheap but never free, and makes a peak-free window
  penalise any probability mass.

``L_DIST`` is the mean of the two, in seconds (distances divided by ``fs``), so with the
default cap of 0.5 s it is on the same scale as BCE. ``L_TOTAL = alpha1 BCE + alpha2 L_DIST``
with the paper's best weights 0.5/0.5 (Table 15) by default.

**Masked samples.** A label of ``-1`` (``train.peaks.dataset.MASKED``: a pseudo-labelled
record where the classic detectors disagreed, or outside its clean stretches) marks a sample
the loss must not use: BCE averages over the other samples only, and the predicted -> true
term leaves out the probability mass on masked samples (no distance can be known there), and
the true -> predicted term counts no detection on a masked sample. So nothing the network
outputs on a masked sample changes the loss.
"""
from __future__ import annotations

import math
import os
from numbers import Real

import numpy as np

from ppg_edge.dsp.rates import check_rate
from ppg_edge.errors import ConfigError

_EPS = 1e-6
_LOSS_CLASS: list = []


os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _tf():
    import tensorflow as tf

    return tf


def _as_2d(tf, y):
    y = tf.convert_to_tensor(y)
    y = tf.cast(y, tf.float32)
    if y.shape.rank == 3:
        y = tf.squeeze(y, axis=-1)
    return y


def _split_mask(tf, y_true):
    """Labels with masked samples (< 0) set to 0, and the 0/1 weight of usable samples."""
    y = _as_2d(tf, y_true)
    w = tf.cast(y >= 0.0, tf.float32)
    return tf.clip_by_value(y, 0.0, 1.0) * w, w


def peak_distance_loss(y_true, y_pred, fs: float = 125.0, max_distance_s: float = 0.5):
    """Per-window soft peak distance in seconds, shape ``(batch,)``.

    ``y_true``: per-sample 0/1 labels ``(batch, T)`` (or ``(batch, T, 1)``), ``-1`` where
    masked; ``y_pred``: per-sample probabilities of the same shape.
    """
    fs = check_rate(fs, "peak_distance_loss: fs", number=True)
    if isinstance(max_distance_s, bool) or not (isinstance(max_distance_s, Real) and math.isfinite(max_distance_s)
                                                and max_distance_s > 0):
        raise ConfigError(f"max_distance_s must be a positive finite number, got {max_distance_s!r}")
    tf = _tf()
    y, w = _split_mask(tf, y_true)
    q = tf.clip_by_value(_as_2d(tf, y_pred), _EPS, 1.0 - _EPS)
    n = y.shape[-1]
    if n is None:
        raise ConfigError("peak_distance_loss needs a static window length")
    cap = max(1, min(int(round(max_distance_s * fs)), n))

    # true -> predicted: expected capped distance to the nearest (soft) detection
    log_none = tf.math.log1p(-q * w)  # a masked sample is no detection either way
    prefix = tf.pad(tf.cumsum(log_none, axis=-1), [[0, 0], [1, 0]])
    s = np.arange(n)[:, None]
    r = np.arange(cap)[None, :]
    hi = np.minimum(s + r + 1, n)
    lo = np.maximum(s - r, 0)
    survive = tf.exp(tf.gather(prefix, hi, axis=1) - tf.gather(prefix, lo, axis=1))
    expected = tf.reduce_sum(survive, axis=-1)  # (batch, T) in samples
    n_pos = tf.reduce_sum(y, axis=-1)
    recall_term = tf.math.divide_no_nan(tf.reduce_sum(y * expected, axis=-1), n_pos)

    # predicted -> true: probability mass weighted by its distance to the nearest truth
    dist = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(np.float32)
    dist = np.minimum(dist, cap)
    to_truth = tf.reduce_min(
        tf.where(tf.expand_dims(y, 1) > 0.5, tf.constant(dist)[None], float(cap)), axis=-1
    )
    qw = q * w
    precision_term = tf.reduce_sum(qw * to_truth, axis=-1) / (tf.reduce_sum(qw, axis=-1) + 1.0)
    return 0.5 * (recall_term + precision_term) / float(fs)


def total_loss(y_true, y_pred, alpha_bce=0.5, alpha_dist=0.5, fs=125.0, max_distance_s=0.5):
    """``alpha_bce * BCE + alpha_dist * L_DIST``, per window ``(batch,)``; samples labelled
    ``-1`` are left out of both (module docstring)."""
    tf = _tf()
    y, w = _split_mask(tf, y_true)
    q = tf.clip_by_value(_as_2d(tf, y_pred), _EPS, 1.0 - _EPS)
    ce = -(y * tf.math.log(q) + (1.0 - y) * tf.math.log(1.0 - q))
    bce = tf.reduce_sum(w * ce, axis=-1) / tf.maximum(tf.reduce_sum(w, axis=-1), 1.0)
    out = alpha_bce * bce
    if alpha_dist:
        out = out + alpha_dist * peak_distance_loss(y_true, q, fs, max_distance_s)
    return out


def get_loss_class():
    """The registered tf_keras ``PeakLoss`` class (defined on first use)."""
    if _LOSS_CLASS:
        return _LOSS_CLASS[0]
    import tf_keras

    @tf_keras.utils.register_keras_serializable(package="ppg_edge")
    class PeakLoss(tf_keras.losses.Loss):
        """tf_keras loss: ``alpha_bce * BCE + alpha_dist * PeakDistanceLoss``."""

        def __init__(
            self, alpha_bce=0.5, alpha_dist=0.5, fs=125.0, max_distance_s=0.5,
            name="peak_loss", **kwargs,
        ):
            super().__init__(name=name, **kwargs)
            if alpha_bce < 0 or alpha_dist < 0 or alpha_bce + alpha_dist == 0:
                raise ConfigError(
                    f"loss weights must be >= 0 and not both 0, got {alpha_bce}, {alpha_dist}"
                )
            self.alpha_bce, self.alpha_dist = float(alpha_bce), float(alpha_dist)
            self.fs, self.max_distance_s = float(fs), float(max_distance_s)

        def call(self, y_true, y_pred):
            return total_loss(
                y_true, y_pred, self.alpha_bce, self.alpha_dist, self.fs, self.max_distance_s
            )

        def get_config(self):
            cfg = super().get_config()
            cfg.update(
                alpha_bce=self.alpha_bce, alpha_dist=self.alpha_dist,
                fs=self.fs, max_distance_s=self.max_distance_s,
            )
            return cfg

    _LOSS_CLASS.append(PeakLoss)
    return PeakLoss


def PeakLoss(**kwargs):  # noqa: N802 - reads like the class it returns
    """A ``PeakLoss`` instance (see :func:`get_loss_class`)."""
    return get_loss_class()(**kwargs)
