"""Discrete wavelet transform detail coefficients, numpy only (``pywt`` is the test reference).

One DWT level convolves the (mode-extended) signal with the decomposition
filters and keeps every second output, exactly as ``pywt.dwt`` does for the
non-periodising modes: with ``F`` taps, the signal is extended by ``F - 1``
samples on each side and ``cA[i] = sum_k dec_lo[k] * ext[2 i + F - k]`` (the
odd-indexed outputs of the full convolution), giving ``floor((n + F - 1) / 2)``
coefficients. :func:`dwt_details` repeats this on the approximation and returns
the requested detail levels; it matches ``pywt.wavedec`` to 1e-9.

db4 (8 taps, pywt naming) at 4 levels follows the peak paper (Georgieva-Tsaneva
2025, docs/facts.md: "Db4 ... with 4 levels of decomposition"; its best
model feeds 3 levels).
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import ConfigError, DataError

#: Daubechies-4 (8 taps) decomposition filters, as ``pywt.Wavelet("db4").dec_lo/dec_hi``.
DB4_DEC_LO = np.array([
    -0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
    -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965,
])
DB4_DEC_HI = np.array([
    -0.2303778133088965, 0.7148465705529157, -0.6308807679298589, -0.027983769416859854,
    0.18703481171909309, 0.030841381835560764, -0.0328830116668852, -0.010597401785069032,
])
WAVELETS = {"db4": (DB4_DEC_LO, DB4_DEC_HI)}

MODES = ("zero", "constant", "symmetric", "reflect", "periodic", "smooth", "antisymmetric")


def _extend(x: np.ndarray, p: int, mode: str) -> np.ndarray:
    """Extend the last axis by ``p`` samples on each side, pywt-style."""
    pad = [(0, 0)] * (x.ndim - 1) + [(p, p)]
    if mode == "zero":
        return np.pad(x, pad, mode="constant")
    if mode == "constant":
        return np.pad(x, pad, mode="edge")
    if mode == "symmetric":
        return np.pad(x, pad, mode="symmetric")
    if mode == "reflect":
        return np.pad(x, pad, mode="reflect")
    if mode == "periodic":
        return np.pad(x, pad, mode="wrap")
    if mode == "smooth":
        n = x.shape[-1]
        k = np.arange(1, p + 1)
        if n == 1:
            left = np.repeat(x[..., :1], p, axis=-1)
            right = np.repeat(x[..., -1:], p, axis=-1)
        else:
            dl = x[..., :1] - x[..., 1:2]
            dr = x[..., -1:] - x[..., -2:-1]
            left = x[..., :1] + dl * k[::-1]
            right = x[..., -1:] + dr * k
        return np.concatenate([left, x, right], axis=-1)
    if mode == "antisymmetric":
        # mirror with sign flip, period 2n: x0..x_{n-1}, -x_{n-1}..-x0, x0..
        n = x.shape[-1]
        idx = np.arange(-p, n + p)
        m = np.mod(idx, 2 * n)
        src = np.where(m < n, m, 2 * n - 1 - m)
        sign = np.where(m < n, 1.0, -1.0)
        return x[..., src] * sign
    raise ConfigError(f"unknown DWT mode {mode!r}; valid: {list(MODES)}")


def _filters(wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        return WAVELETS[wavelet]
    except KeyError:
        raise ConfigError(f"unknown wavelet {wavelet!r}; valid: {sorted(WAVELETS)}") from None


def dwt_step(x, wavelet: str = "db4", mode: str = "symmetric") -> tuple[np.ndarray, np.ndarray]:
    """One level ``(cA, cD)`` along the last axis, batched over leading axes (== ``pywt.dwt``)."""
    lo, hi = _filters(wavelet)
    arr = np.asarray(x, dtype=np.float64)
    F = lo.size
    ext = _extend(arr, F - 1, mode)
    win = np.lib.stride_tricks.sliding_window_view(ext, F, axis=-1)  # (..., n + F - 1, F)
    # full-convolution output j = sum_k h[k] ext[j + F - 1 - k]; keep odd j
    sel = win[..., 1::2, :]
    return sel @ lo[::-1], sel @ hi[::-1]


def dwt_details(x, wavelet: str = "db4", levels=(1, 2, 3, 4), mode: str = "symmetric") -> dict[int, np.ndarray]:
    """Detail coefficients ``{level: cD_level}`` along the last axis (batched over leading axes).

    Equals ``pywt.wavedec(x, wavelet, mode, level=max(levels))`` details. Level
    ``j`` has about ``n / 2**j + 7`` coefficients.
    """
    arr = np.asarray(x, dtype=np.float64)
    levels = tuple(int(j) for j in levels)
    if not levels or min(levels) < 1:
        raise ConfigError(f"DWT levels must be integers >= 1, got {levels!r}")
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise DataError(f"DWT of an empty signal (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise DataError("DWT input has NaN or infinite values")
    F = _filters(wavelet)[0].size
    top = max(levels)
    max_level = int(np.floor(np.log2(arr.shape[-1] / (F - 1)))) if arr.shape[-1] >= F - 1 else 0
    if top > max_level:
        raise DataError(f"DWT level {top} needs more samples: {arr.shape[-1]} allows at most "
                        f"level {max_level} with {wavelet}")
    out = {}
    a = arr
    for j in range(1, top + 1):
        a, d = dwt_step(a, wavelet, mode)
        if j in levels:
            out[j] = d
    return {j: out[j] for j in levels}


def detail_offset(level: int, wavelet: str = "db4") -> int:
    """Samples by which plain repetition of a level's coefficients lags the input.

    Coefficient ``i`` of level ``j`` is centred on input sample
    ``2**j * i - (F/2 - 1.5)(2**j - 1)``, ``F`` taps; repeating it over
    ``[2**j i, 2**j (i + 1))`` places it ``(F/2 - 1)(2**j - 1)`` samples late
    (db4: 3, 9, 21, 45 for levels 1-4).
    """
    F = _filters(wavelet)[0].size
    return (F // 2 - 1) * (2**level - 1)


def detail_to_length(d, level: int, n: int, align: str = "center", wavelet: str = "db4") -> np.ndarray:
    """Level-``level`` details -> ``n`` samples (last axis), each coefficient held for ``2**level`` samples.

    ``align="start"``: sample ``m`` takes coefficient ``m // 2**level`` (simple
    upsampling, lags by :func:`detail_offset`). ``align="center"`` (default):
    sample ``m`` takes coefficient ``(m + detail_offset) // 2**level``, so each
    coefficient sits over the input samples it was centred on. Indices past the
    last coefficient are clipped to it.
    """
    arr = np.asarray(d, dtype=np.float64)
    return arr[..., _length_index(level, n, arr.shape[-1], align, wavelet)]


@functools.lru_cache(maxsize=64)
def _length_index(level: int, n: int, n_coef: int, align: str, wavelet: str) -> np.ndarray:
    """The coefficient :func:`detail_to_length` gives each of ``n`` samples (read-only; a
    stream asks for the same few every window)."""
    step = 2**level
    if align == "start":
        off = 0
    elif align == "center":
        off = detail_offset(level, wavelet)
    else:
        raise ConfigError(f"unknown alignment {align!r}; valid: ['center', 'start']")
    idx = np.minimum((np.arange(n) + off) // step, n_coef - 1)
    idx.flags.writeable = False
    return idx


def details_to_length(details: dict[int, np.ndarray], n: int, align: str = "center",
                      wavelet: str = "db4") -> np.ndarray:
    """Stack every level of ``dwt_details`` output at length ``n``: ``(..., n, len(details))``."""
    return np.stack([detail_to_length(d, j, n, align, wavelet) for j, d in details.items()], axis=-1)
