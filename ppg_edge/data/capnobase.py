"""CapnoBase IEEE TBME respiratory-rate benchmark loader (PPG + expert pulse peaks).

Karlen W, Raman S, Ansermino JM, Dumont GA. "Multiparameter respiratory rate
estimation from the photoplethysmogram." IEEE Trans Biomed Eng 60(7):1946-53
(2013). Data: capnobase.org (TBME 2013 RR benchmark).

Each record is a four-block text file ``capnobase_<id>.csv`` (converted from the
benchmark's ``<id>_8min.mat``; CRLF line ends)::

    1  File Name          2  mat/<id>_8min.mat
    4  PPG_fs             5  300
    7  PPG Peaks          8  comma list of peak sample indices (MATLAB, 1-based)
    10 PPG Signal         11 comma list of PPG samples

Peak indices are 1-based: the loader subtracts 1 (after the shift the index is
the local maximum for most labels). A peak outside the signal after the shift
is an error, never clipped. Each record is one subject (``subject_id =
record_id``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataNotFoundError
from ._io import check_finite, check_rate, natural_key, read_text, require_dir, split_numbers
from .record import Record

NAME = "capnobase"
FOLDER = "capnobase"
CITATION = (
    "Karlen W, Raman S, Ansermino JM, Dumont GA. Multiparameter respiratory rate estimation "
    "from the photoplethysmogram. IEEE Trans Biomed Eng 60(7):1946-1953 (2013)."
)
SOURCES = [
    {
        "url": "http://www.capnobase.org/uploads/media/TBME2013-PPGRR-Benchmark_R3.zip",
        "kind": "capnobase-zip",
        "licence": "not stated; cite Karlen et al. 2013",
        "note": "TBME 2013 RR benchmark; the .mat files are converted to the four-block text "
        "layout this loader reads",
    }
]

_FILE_RE = re.compile(r"^capnobase_(\w+)\.csv$")
_BLOCKS = {1: "file name", 4: "ppg_fs", 7: "ppg peaks", 10: "ppg signal"}


def subject_of(record_id: str) -> str:
    return record_id


def record_path(folder: Path, record_id: str) -> Path:
    return Path(folder) / f"capnobase_{record_id}.csv"


def list_records(folder: Path) -> list[str]:
    folder = require_dir(folder, "CapnoBase folder")
    ids = [m.group(1) for p in folder.iterdir() if (m := _FILE_RE.match(p.name))]
    if not ids:
        raise DataNotFoundError(f"CapnoBase folder {folder} holds no capnobase_<id>.csv files")
    return sorted(ids, key=natural_key)


def parse(path: Path) -> tuple[str, float, np.ndarray, np.ndarray]:
    """(source name, fs, 0-based peaks, signal) of one four-block file."""
    lines = read_text(path, "CapnoBase record").splitlines()
    if len(lines) < 11:
        raise DataError(f"{path}: expected the 11-line four-block layout, found {len(lines)} lines")
    for lineno, title in _BLOCKS.items():
        got = lines[lineno - 1].strip().lower()
        if got != title:
            raise DataError(
                f"{path}: line {lineno} should be the block title {title!r}, found {lines[lineno - 1][:40]!r}"
            )
    source = lines[1].strip()
    fs = check_rate(lines[4].strip() or None, path, "PPG_fs (line 5)")
    x = check_finite(split_numbers(lines[10], ",", path, "PPG signal (line 11)"), path, "PPG signal")
    raw = split_numbers(lines[7], ",", path, "PPG peaks (line 8)")
    check_finite(raw, path, "PPG peaks")
    if np.any(raw != np.round(raw)):
        raise DataError(f"{path}: PPG peaks (line 8) holds non-integer indices")
    peaks = raw.astype(np.int64) - 1  # MATLAB 1-based -> 0-based
    if peaks.size and (peaks.min() < 0 or peaks.max() >= x.size):
        raise DataError(
            f"{path}: peak index {int(raw.max() if peaks.max() >= x.size else raw.min())} (1-based) "
            f"lies outside the {x.size}-sample signal"
        )
    if np.any(np.diff(peaks) <= 0):
        raise DataError(f"{path}: PPG peaks (line 8) are not strictly increasing")
    return source, fs, peaks, x


def load_record(folder: Path, record_id: str) -> Record:
    path = record_path(folder, record_id)
    source, fs, peaks, x = parse(path)
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=subject_of(record_id),
        signals={"ppg": x},
        rates={"ppg": fs},
        peaks=peaks,
        labels={},
        meta={
            "source_file": str(path),
            "source_mat": source,
            "peaks_source": "expert labels (CapnoBase), 1-based indices shifted by -1",
        },
    )


def info_extra(folder: Path) -> dict[str, Any]:
    return {}
