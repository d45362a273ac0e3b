"""Rational resampling factors: ``fs_in * up / down`` close to ``fs_out``. numpy-free, stdlib only.

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

__all__ = ["rational_factor"]


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
