"""PPG-BP database loader (Liang et al. 2018).

Liang Y, Chen Z, Liu G, Elgendi M. "A new, short-recorded photoplethysmogram
dataset for blood pressure monitoring in China." Sci Data 5:180020 (2018).
Data on figshare (doi:10.6084/m9.figshare.5459299), CC BY 4.0.

Layout under the folder: ``Data File/0_subject/<subject>_<n>.txt`` (one line of
tab-separated samples at 1000 Hz, ending in a trailing tab), the label sheet
``Data File/PPG-BP dataset.xlsx`` (title row, header on the second row) and,
optionally, ``Table 1.xlsx`` (per-segment skewness SQI, four side-by-side blocks
of ``Num., subject ID, segment 1..3``).

One ``Record`` per segment: ``record_id = "<subject>_<n>"``, ``subject_id =
"<subject>"``. Segments are 2100 samples (2.1 s); subject 231 has 4200-sample
segments, kept whole. Any length that is not a multiple of 2100 is an error.
Labels (one cuff reading per subject): ``sbp``, ``dbp``, ``hr``, ``age``,
``sex`` ("F"/"M"), ``height_cm``, ``weight_kg``, ``bmi``, ``ht_class``
(``normal``, ``prehypertension``, ``stage_1_hypertension``,
``stage_2_hypertension``), ``diabetes`` (bool) and ``diabetes_type``,
``cerebral_infarction`` (bool), ``cerebrovascular`` (name or None), and the
segment's ``skewness_sqi`` when ``Table 1.xlsx`` is there.
"""
from __future__ import annotations

import functools
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataNotFoundError
from ._io import check_finite, natural_key, read_text, require_dir, require_file, split_numbers
from .record import Record

log = logging.getLogger(__name__)

NAME = "ppg-bp"
FOLDER = "ppg-bp"
CITATION = (
    "Liang Y, Chen Z, Liu G, Elgendi M. A new, short-recorded photoplethysmogram dataset for "
    "blood pressure monitoring in China. Sci Data 5:180020 (2018)."
)
SOURCES = [
    {
        "url": "https://api.figshare.com/v2/articles/5459299",
        "kind": "figshare",
        "licence": "CC BY 4.0",
        "note": "figshare record of Liang et al. 2018 (doi:10.6084/m9.figshare.5459299); "
        "the zip holds 'Data File/'",
    }
]

FS = 1000.0
SEGMENT_LEN = 2100
SIGNAL_DIR = Path("Data File") / "0_subject"
SHEET = Path("Data File") / "PPG-BP dataset.xlsx"
SQI_SHEET = Path("Table 1.xlsx")

_FILE_RE = re.compile(r"^(\d+)_(\d+)\.txt$")
_ID_RE = re.compile(r"^(\d+)_(\d+)$")

# Sheet header (second row) -> label key. Matched after lower-casing and
# removing spaces, so small spelling changes in the header still match.
_COLUMNS = {
    "subject_id": "subject_id",
    "sex(m/f)": "sex",
    "age(year)": "age",
    "height(cm)": "height_cm",
    "weight(kg)": "weight_kg",
    "systolicbloodpressure(mmhg)": "sbp",
    "diastolicbloodpressure(mmhg)": "dbp",
    "heartrate(b/m)": "hr",
    "bmi(kg/m^2)": "bmi",
    "hypertension": "ht_class",
    "diabetes": "diabetes_type",
    "cerebralinfarction": "cerebral_infarction",
    "cerebrovasculardisease": "cerebrovascular",
}
_REQUIRED = ("subject_id", "sex", "age", "sbp", "dbp", "hr")
_NUMERIC = ("age", "height_cm", "weight_kg", "sbp", "dbp", "hr", "bmi")


def _norm_name(value: Any) -> str | None:
    """'Stage 2 hypertension' -> 'stage_2_hypertension'; blank -> None."""
    if value is None:
        return None
    s = re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")
    return s or None


def subject_of(record_id: str) -> str:
    m = _ID_RE.match(record_id)
    if not m:
        raise DataNotFoundError(f"ppg-bp: record id {record_id!r} is not '<subject>_<n>'")
    return m.group(1)


def list_records(folder: Path) -> list[str]:
    sig_dir = require_dir(Path(folder) / SIGNAL_DIR, "PPG-BP signal folder")
    ids = []
    for p in sig_dir.iterdir():
        m = _FILE_RE.match(p.name)
        if m:
            ids.append(f"{m.group(1)}_{m.group(2)}")
        elif p.suffix == ".txt":
            log.warning("ppg-bp: ignoring %s: name is not <subject>_<n>.txt", p)
    if not ids:
        raise DataNotFoundError(f"PPG-BP signal folder {sig_dir} holds no <subject>_<n>.txt files")
    return sorted(ids, key=natural_key)


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _open_sheet_rows(path: Path) -> list[tuple]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        return list(wb.worksheets[0].iter_rows(values_only=True))
    finally:
        wb.close()


@functools.lru_cache(maxsize=8)
def _labels_cached(key: tuple[str, int, int]) -> dict[str, dict[str, Any]]:
    path = Path(key[0])
    rows = _open_sheet_rows(path)
    if len(rows) < 3:
        raise DataError(f"{path}: expected a title row, a header row and data rows; got {len(rows)} rows")
    header = [str(h).replace(" ", "").lower() if h is not None else "" for h in rows[1]]
    col: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in _COLUMNS:
            col[_COLUMNS[h]] = i
    missing = [k for k in _REQUIRED if k not in col]
    if missing:
        raise DataError(
            f"{path}: header (second row) lacks column(s) for {', '.join(missing)}; found {rows[1]!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for rno, row in enumerate(rows[2:], start=3):
        if row is None or all(v is None for v in row):
            continue
        sid_raw = row[col["subject_id"]]
        try:
            sid = str(int(sid_raw))
        except (TypeError, ValueError):
            raise DataError(f"{path}: row {rno}: subject_ID {sid_raw!r} is not an integer") from None
        if sid in out:
            raise DataError(f"{path}: row {rno}: subject {sid} listed twice")
        lab: dict[str, Any] = {}
        for key in _NUMERIC:
            if key not in col:
                continue
            v = row[col[key]]
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {rno}: {key} {v!r} is not a number") from None
            if not math.isfinite(fv):
                raise DataError(f"{path}: row {rno}: {key} is {v!r}")
            lab[key] = fv
        sex = str(row[col["sex"]] or "").strip().lower()
        if sex not in ("female", "male", "f", "m"):
            raise DataError(f"{path}: row {rno}: sex {row[col['sex']]!r} is not Female/Male")
        lab["sex"] = sex[0].upper()
        if "ht_class" in col:
            lab["ht_class"] = _norm_name(row[col["ht_class"]])
        if "diabetes_type" in col:
            lab["diabetes_type"] = _norm_name(row[col["diabetes_type"]])
            lab["diabetes"] = lab["diabetes_type"] is not None
        if "cerebral_infarction" in col:
            lab["cerebral_infarction"] = _norm_name(row[col["cerebral_infarction"]]) is not None
        if "cerebrovascular" in col:
            lab["cerebrovascular"] = _norm_name(row[col["cerebrovascular"]])
        out[sid] = lab
    if not out:
        raise DataError(f"{path}: no subject rows under the header")
    return out


def read_labels(folder: Path) -> dict[str, dict[str, Any]]:
    """Per-subject labels from the sheet, keyed by subject id (all sheet subjects)."""
    path = require_file(Path(folder) / SHEET, "PPG-BP label sheet")
    return _labels_cached(_file_key(path))


@functools.lru_cache(maxsize=8)
def _sqi_cached(key: tuple[str, int, int]) -> dict[str, float]:
    path = Path(key[0])
    rows = _open_sheet_rows(path)
    if not rows:
        raise DataError(f"{path}: empty sheet")
    header = [str(h).strip().lower() if h is not None else "" for h in rows[0]]
    starts = [i for i, h in enumerate(header) if h == "subject id"]
    if not starts:
        raise DataError(f"{path}: no 'subject ID' column in the first row {rows[0]!r}")
    out: dict[str, float] = {}
    for rno, row in enumerate(rows[1:], start=2):
        for s in starts:
            sid_raw = row[s] if s < len(row) else None
            if sid_raw is None:
                continue
            try:
                sid = str(int(sid_raw))
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {rno}: subject ID {sid_raw!r} is not an integer") from None
            for n in (1, 2, 3):
                v = row[s + n] if s + n < len(row) else None
                if v is None:
                    continue
                try:
                    fv = float(v)
                except (TypeError, ValueError):
                    raise DataError(f"{path}: row {rno}: SQI {v!r} of subject {sid} is not a number") from None
                out[f"{sid}_{n}"] = fv
    return out


def read_sqi(folder: Path) -> dict[str, float] | None:
    """Per-segment skewness SQI from ``Table 1.xlsx`` keyed by record id, or None if absent."""
    path = Path(folder) / SQI_SHEET
    if not path.is_file():
        return None
    return _sqi_cached(_file_key(path))


def read_segment(path: Path) -> np.ndarray:
    """One segment file: tab-separated samples with a trailing tab, length a multiple of 2100."""
    text = read_text(path, "PPG-BP segment")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise DataError(f"{path}: expected one line of tab-separated samples, found {len(lines)} lines")
    x = split_numbers(lines[0], "\t", path, "PPG samples")
    if x.size % SEGMENT_LEN:
        raise DataError(
            f"{path}: {x.size} samples is not a multiple of the {SEGMENT_LEN}-sample segment length"
        )
    return check_finite(x, path, "PPG samples")


def load_record(folder: Path, record_id: str) -> Record:
    folder = Path(folder)
    sid = subject_of(record_id)
    seg = int(record_id.split("_")[1])
    path = require_file(folder / SIGNAL_DIR / f"{record_id}.txt", "PPG-BP segment")
    labels_all = read_labels(folder)
    if sid not in labels_all:
        raise DataError(f"{path}: subject {sid} has signals but no row in {folder / SHEET}")
    x = read_segment(path)
    labels = dict(labels_all[sid])
    sqi = read_sqi(folder)
    if sqi is not None:
        if record_id in sqi:
            labels["skewness_sqi"] = sqi[record_id]
        else:
            log.warning("ppg-bp: %s has no skewness SQI in %s", record_id, folder / SQI_SHEET)
    meta = {
        "source_file": str(path),
        "label_file": str(folder / SHEET),
        "segment": seg,
        "n_2100_blocks": x.size // SEGMENT_LEN,
        "peaks_source": None,
    }
    if sqi is not None:
        meta["sqi_file"] = str(folder / SQI_SHEET)
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=sid,
        signals={"ppg": x},
        rates={"ppg": FS},
        labels=labels,
        meta=meta,
    )


def info_extra(folder: Path) -> dict[str, Any]:
    """Sheet subjects without signals (left out of every load)."""
    folder = Path(folder)
    sheet = read_labels(folder)
    with_signals = {subject_of(r) for r in list_records(folder)}
    left = sorted(set(sheet) - with_signals, key=natural_key)
    return {
        "sheet_subjects": len(sheet),
        "subjects_left_out": len(left),
        "subjects_left_out_ids": left,
        "skewness_sqi": read_sqi(folder) is not None,
    }
