"""BUT PPG: 10-s smartphone PPG clips with quality and heart-rate labels.

Nemcova A, Smisek R, Vargova E, Maršánová L, Vitek M, Smital L. "BUT PPG:
Database of photoplethysmography signals recorded by smartphone" (PhysioNet,
2021, doi:10.13026/tn53-8153); Nemcova A et al., "Monitoring of heart rate,
blood oxygen saturation, and blood pressure using a smartphone", Biomed Signal
Process Control 59:101928 (2020).

This copy is one CSV (``but_ppg_dataset.csv``; converted from ``BUT_PPG.mat``)
with header ``ID, PPG_fs, Quality, HR, PPG_Signal``, values padded with spaces
and the signal column a bracketed list written as text. One ``Record`` per row:
``record_id`` = ID (``SSSRRR``: subject SSS, recording RRR), ``subject_id`` =
the first three digits. Labels: ``quality`` ("good" for 1, "bad" for 0) and
``hr`` (reference HR, bpm). The rate comes from ``PPG_fs`` of each row (30 Hz).
"""
from __future__ import annotations

import csv
import functools
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataNotFoundError
from ._io import check_finite, check_rate, natural_key, read_text, require_file, split_numbers
from .record import Record

NAME = "but-ppg"
FOLDER = "but-ppg"
CITATION = (
    "Nemcova A et al. BUT PPG: database of photoplethysmography signals recorded by smartphone. "
    "PhysioNet (2021), doi:10.13026/tn53-8153."
)
SOURCES = [
    {
        "url": "https://physionet.org/content/butppg/",
        "kind": "reference",
        "db": "butppg",
        "licence": "see PhysioNet page (not stated in this copy)",
        "note": "official home (WFDB records); not fetched: this loader reads the one-CSV "
        "conversion (but_ppg_dataset.csv) of github.com/simcak/bakalarka fetched below",
    },
    {
        "url": "https://raw.githubusercontent.com/simcak/bakalarka/"
        "35f4e2dae637afb02611eb3cc5a6350680afd03b/code/BUT_PPG/but_ppg_dataset.csv",
        "kind": "file",
        "path": "but_ppg_dataset.csv",
        "licence": "no licence file in the source repository",
    },
]

CSV_NAME = "but_ppg_dataset.csv"
_HEADER = ["id", "ppg_fs", "quality", "hr", "ppg_signal"]
_ID_RE = re.compile(r"^\d{6}$")
_QUALITY = {0: "bad", 1: "good"}


def subject_of(record_id: str) -> str:
    return record_id[:3]


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _rows_cached(key: tuple[str, int, int]) -> dict[str, dict[str, Any]]:
    path = Path(key[0])
    text = read_text(path, "BUT PPG CSV")
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file") from None
    if [h.strip().lower() for h in header] != _HEADER:
        raise DataError(f"{path}: header should be 'ID,PPG_fs,Quality,HR,PPG_Signal', found {header!r}")
    out: dict[str, dict[str, Any]] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 5:
            raise DataError(f"{path}: line {lineno} has {len(row)} fields, expected 5")
        rid = row[0].strip()
        if not _ID_RE.match(rid):
            raise DataError(f"{path}: line {lineno}: ID {rid!r} is not a six-digit record id")
        if rid in out:
            raise DataError(f"{path}: line {lineno}: ID {rid} appears twice")
        fs = check_rate(row[1].strip() or None, path, f"PPG_fs of line {lineno}")
        try:
            q = int(float(row[2]))
            hr = float(row[3])
        except ValueError:
            raise DataError(f"{path}: line {lineno}: Quality {row[2]!r} / HR {row[3]!r} not numbers") from None
        if q not in _QUALITY:
            raise DataError(f"{path}: line {lineno}: Quality {row[2].strip()!r} is not 0 or 1")
        if not np.isfinite(hr) or hr <= 0:
            raise DataError(f"{path}: line {lineno}: HR {row[3]!r} is not a positive number")
        sig = row[4].strip()
        if not (sig.startswith("[") and sig.endswith("]")):
            raise DataError(f"{path}: line {lineno}: PPG_Signal is not a bracketed list")
        x = split_numbers(sig[1:-1], ",", path, f"PPG_Signal of line {lineno}")
        check_finite(x, path, f"PPG_Signal of line {lineno}")
        out[rid] = {"fs": fs, "quality": _QUALITY[q], "hr": hr, "x": x, "line": lineno}
    if not out:
        raise DataError(f"{path}: no data rows")
    return out


def read_rows(folder: Path) -> dict[str, dict[str, Any]]:
    return _rows_cached(_key(require_file(Path(folder) / CSV_NAME, "BUT PPG CSV")))


def list_records(folder: Path) -> list[str]:
    return sorted(read_rows(folder), key=natural_key)


def load_record(folder: Path, record_id: str) -> Record:
    rows = read_rows(folder)
    if record_id not in rows:
        raise DataNotFoundError(f"{Path(folder) / CSV_NAME}: no record with ID {record_id!r}")
    row = rows[record_id]
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=subject_of(record_id),
        signals={"ppg": row["x"].copy()},
        rates={"ppg": row["fs"]},
        labels={"quality": row["quality"], "hr": row["hr"]},
        meta={"source_file": str(Path(folder) / CSV_NAME), "line": row["line"], "peaks_source": None},
    )
