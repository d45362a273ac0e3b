"""Small checked readers shared by the loaders.

Every helper raises one clear error naming the file and the problem:
``DataNotFoundError`` for a missing file or folder, ``DataError`` for content
that is there but wrong (format, unparsable numbers, NaN/inf, bad rate).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

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
        return np.asarray([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        for i, t in enumerate(tokens):
            try:
                float(t)
            except ValueError:
                raise DataError(f"{path}: {what}: item {i} {t[:40]!r} is not a number") from None
        raise  # pragma: no cover - unreachable


def split_numbers(text: str, sep: str | None, path: Path, what: str = "values") -> np.ndarray:
    """Split ``text`` on ``sep`` (None: any whitespace), drop empty items, parse as floats."""
    items = [t.strip() for t in (text.split(sep) if sep is not None else text.split())]
    items = [t for t in items if t]
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
    """A sampling rate must be a finite positive number."""
    try:
        fs = float(rate)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {what} {rate!r} is not a number") from None
    if not math.isfinite(fs) or fs <= 0:
        raise DataError(f"{path}: {what} {rate!r} is not a positive finite rate")
    return fs


_NUM = re.compile(r"(\d+)")


def natural_key(s: str):
    """Sort key that orders ``2_1`` before ``10_1`` (numbers compared as numbers)."""
    return [int(p) if p.isdigit() else p for p in _NUM.split(s)]
