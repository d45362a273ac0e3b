"""Sampling rates: the one rate check and rational resampling factors. numpy-free, stdlib only.

:func:`check_rate` is the one check that a sampling rate is a finite positive number,
for rates read from files (the loaders, ``DataError`` naming the file) and rates
passed to the signal code (``ConfigError``).

:func:`rational_factor`: ``fs_in * up / down`` close to ``fs_out``.

One function for the two resamplers: the record resampler of the data side
(:mod:`ppg_edge.data.resample`, best approximation with a large denominator, the
true rate stored) and the device's streaming resampler
(:mod:`ppg_edge.edge_runtime.resample`, exact factors with a small denominator
or a ``ConfigError``).
"""
from __future__ import annotations

import math
from fractions import Fraction
from numbers import Real

from ..errors import ConfigError

__all__ = ["check_rate", "rational_factor"]


def check_rate(rate, what: str = "sampling rate", *, where: object = None,
               error: type[Exception] = ConfigError, number: bool = False) -> float:
    """``rate`` as a float when it is a finite positive number, else ``error``.

    The message names ``what`` and, when given, ``where`` (a file: ``"<where>: ..."``).
    ``None`` or an empty string is "missing"; anything :func:`float` cannot read, and a
    bool, is "not a number". ``number``: the rate must already be a number (an int, a
    float or a numpy scalar; the signal code's arguments), not text that reads as one
    (a file's field).
    """
    prefix = "" if where is None else f"{where}: "
    if rate is None or (isinstance(rate, str) and not rate.strip()):
        raise error(f"{prefix}{what} is missing")
    if isinstance(rate, bool) or (number and not isinstance(rate, Real)):
        raise error(f"{prefix}{what} {rate!r} is not a number")
    try:
        fs = float(rate)
    except (TypeError, ValueError):
        raise error(f"{prefix}{what} {rate!r} is not a number") from None
    if not math.isfinite(fs) or fs <= 0:
        raise error(f"{prefix}{what} {rate!r} is not a positive finite rate")
    return fs


def rational_factor(fs_in: float, fs_out: float, max_denominator: int = 1000, *,
                    exact: bool = False) -> tuple[int, int]:
    """``(up, down)``, ``up/down`` the best approximation of ``fs_out/fs_in`` with
    ``down <= max_denominator``.

    ``exact``: ``fs_in * up / down`` must equal ``fs_out`` (to 1e-9 relative), else
    ``ConfigError``. A non-positive or non-finite rate is a ``ConfigError``.
    """
    for name, v in (("input rate", fs_in), ("output rate", fs_out)):
        if not isinstance(v, Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{name} must be a positive finite number of Hz, got {v!r}")
    frac = Fraction(fs_out / fs_in).limit_denominator(max_denominator)
    if frac.numerator == 0:
        raise ConfigError(f"cannot resample {fs_in:g} Hz to {fs_out:g} Hz with denominators <= {max_denominator}")
    if exact and abs(fs_in * frac.numerator / frac.denominator - fs_out) > 1e-9 * fs_out:
        raise ConfigError(f"cannot resample {fs_in:g} Hz to {fs_out:g} Hz with a small rational factor "
                          f"(best {frac.numerator}/{frac.denominator})")
    return frac.numerator, frac.denominator
