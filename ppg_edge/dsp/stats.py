"""Small statistics in fewer interpreted steps than numpy's wrappers (numpy only).

On the device every numpy call costs thousands of interpreted instructions before it
touches the data (``np.median`` alone runs about twenty Python-level functions), and the
arrays of one window are small, so the runtime's per-window statistics come from here.
"""
from __future__ import annotations

import numpy as np


def mean(x: np.ndarray) -> float:
    """``np.mean``'s value of a non-empty 1-D float array (the same sum, divided by the size)
    without its Python-level wrapper."""
    return float(np.add.reduce(x)) / x.size


def median(x) -> float:
    """``np.median``'s value of finite data: a 1-D array in one partition; a short sequence
    of floats (a history of a few values) sorted in Python."""
    if isinstance(x, np.ndarray):
        h = x.size // 2
        if x.size % 2:
            return float(np.partition(x, h)[h])
        part = np.partition(x, (h - 1, h))
        return float((part[h - 1] + part[h]) / 2)
    s = sorted(x)
    h = len(s) // 2
    return float(s[h]) if len(s) % 2 else (s[h - 1] + s[h]) / 2


class LagProducts:
    """The mean-removed series ``v`` and its lag products ``ac[k] = sum_i v[i + lo + k] * v[i]``
    for the lags ``lo..hi`` (the unnormalised autocorrelation there): made by
    :func:`lag_products`, read by the pulse period and the signal-quality index."""

    __slots__ = ("v", "lo", "ac")

    def __init__(self, v: np.ndarray, lo: int, ac: np.ndarray):
        self.v, self.lo, self.ac = v, lo, ac

    def covers(self, lo: int, hi: int) -> bool:
        return self.lo <= lo and hi < self.lo + self.ac.size

    def at(self, lo: int, hi: int) -> np.ndarray:
        """The products for the lags ``lo..hi`` (a view; :meth:`covers` them)."""
        return self.ac[lo - self.lo:hi + 1 - self.lo]


def lag_products(x, lo: int, hi: int) -> LagProducts:
    """:class:`LagProducts` of the 1-D series ``x`` for the lags ``lo..hi`` (``0 <= lo``; none
    when ``hi < lo``). All lags at once: the rows of a strided view of the zero-padded series
    against the series (one ``einsum``; each row's sum does not depend on the other rows, so
    a wider range gives the same values for the lags they share). Direct sums, not an FFT:
    on a 2 s window numpy's FFT wrappers cost more than the products themselves."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    v = x - mean(x) if n else x
    rows = max(0, hi + 1 - lo)
    if rows == 0:
        return LagProducts(v, lo, np.zeros(0))
    pad = np.concatenate((v, np.zeros(hi + 1)))
    step = pad.strides[0]
    shifted = np.ndarray((rows, n), dtype=pad.dtype, buffer=pad, offset=lo * step, strides=(step, step))
    return LagProducts(v, lo, np.einsum("ij,j->i", shifted, v))
