"""Small statistics in fewer interpreted steps than numpy's wrappers (numpy only).

On the device every numpy call costs thousands of interpreted instructions before it
touches the data (``np.median`` alone runs about twenty Python-level functions), and the
arrays of one window are small, so the runtime's per-window statistics come from here.
"""
from __future__ import annotations

import numpy as np


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
