"""Small checked readers shared by the loaders.

Every helper raises one clear error naming the file and the problem:
``DataNotFoundError`` for a missing file or folder, ``DataError`` for content
that is there but wrong (format, unparsable numbers, NaN/inf, bad rate).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..dsp.rates import check_rate as _check_rate
from ..errors import DataError, DataNotFoundError


def require_dir(path: Path, what: str = "data folder") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataNotFoundError(f"{what} {path} does not exist or is not a folder")
    return path


def require_file(path: Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{what} {path} does not exist")
    return path


def read_text(path: Path, what: str = "file") -> str:
    """Whole file as text (UTF-8, NUL bytes kept so callers can decide)."""
    require_file(path, what)
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc})") from None


def parse_floats(tokens, path: Path, what: str = "values") -> np.ndarray:
    """Parse a sequence of number strings; any unparsable token is an error naming it."""
    tokens = list(tokens)
    try:
        return np.asarray(tokens, dtype=np.float64)
    except ValueError:
        for i, t in enumerate(tokens):
            try:
                float(t)
            except ValueError:
                raise DataError(f"{path}: {what}: item {i} {t[:40]!r} is not a number") from None
        raise  # pragma: no cover - numpy and float() disagree


def split_numbers(text: str, sep: str | None, path: Path, what: str = "values") -> np.ndarray:
    """Split ``text`` on ``sep`` (None: any whitespace) and parse as floats.

    Empty items at the end (a trailing separator) are dropped; an empty item
    anywhere else is an error, not a silently skipped sample.
    """
    items = text.split(sep)
    while items and not items[-1].strip():
        items.pop()
    if not items:
        raise DataError(f"{path}: {what}: no values")
    return parse_floats(items, path, what)


def check_finite(x: np.ndarray, path: Path, what: str = "signal") -> np.ndarray:
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: {what} has {int(bad.sum())} NaN/inf value(s) (first at index {i})"
        )
    return x


def check_rate(rate, path: Path, what: str = "sampling rate") -> float:
    """A sampling rate must be a finite positive number (:func:`ppg_edge.dsp.rates.check_rate`,
    as a ``DataError`` naming ``path``)."""
    return _check_rate(rate, what, where=path, error=DataError)


_NUM = re.compile(r"(\d+)")


def natural_key(s: str):
    """Sort key that orders ``2_1`` before ``10_1`` (numbers compared as numbers)."""
    return [int(p) if p.isdigit() else p for p in _NUM.split(s)]


def nan_spans(x: np.ndarray) -> list[list[int]]:
    """Half-open ``[start, stop)`` index runs where ``x`` is NaN or inf."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return []
    edges = np.diff(np.concatenate(([0], bad.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return [[int(a), int(b)] for a, b in zip(starts, stops)]


def fill_invalid(x: np.ndarray, path: Path, what: str) -> tuple[np.ndarray, list[list[int]]]:
    """Replace NaN/inf runs (a format's own "invalid sample" marker, e.g. WFDB gaps).

    Interior runs are linearly interpolated between their neighbours; runs at
    either end take the nearest valid value. Returns the filled copy and the
    spans, which the caller must record in ``meta`` so nothing is hidden. A
    channel with no valid sample at all is an error.
    """
    spans = nan_spans(x)
    if not spans:
        return x, spans
    good = np.isfinite(x)
    if not good.any():
        raise DataError(f"{path}: {what} has no valid (finite) sample")
    idx = np.arange(x.size)
    y = x.copy()
    y[~good] = np.interp(idx[~good], idx[good], x[good])
    return y, spans
