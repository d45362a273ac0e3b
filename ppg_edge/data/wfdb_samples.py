"""WFDB sample records shipped with wfdb-python (PhysioNet data), read with ``wfdb.rdrecord``.

Records (record id -> WFDB record, relative to the folder):

- ``a103l``: ECG II, V, PLETH at 250 Hz (PhysioNet/CinC Challenge 2015 false-alarm
  record; Clifford GD et al., Comput Cardiol 2015).
- ``v102s``: ECG II, V, PLETH, RESP at 250 Hz (same challenge).
- ``mixedsignals``: multi-rate, FLAC-compressed: II, III, V at 4 samples/frame,
  ABP and Pleth at 2, Resp at 1 (frame rate 62.4725 Hz, so about 250 / 125 /
  62.5 Hz). Read with ``smooth_frames=False`` to keep each channel's native rate.
- ``041s``: the multi-segment record ``multi-segment/041s/041s`` (MIMIC database;
  Moody GB, Mark RG, Comput Cardiol 1996): III, I, V, ABP, PAP, PLETH, RESP at 125 Hz.

Channel names are lower case with ``PLETH`` -> ``ppg`` and ``II`` -> ``ecg``;
others keep their lower-cased WFDB names (``abp``, ``v``, ``resp``, ...). WFDB
invalid samples (NaN after ``rdrecord``; e.g. the first 1024 ECG samples of
``mixedsignals``) are filled (linear inside, nearest value at the ends) and
listed per channel in ``meta["invalid_spans"]`` as ``[start, stop)`` runs.
Citation of the platform: Goldberger AL et al., PhysioBank, PhysioToolkit, and
PhysioNet, Circulation 101(23):e215-e220 (2000).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataNotFoundError
from ._io import check_rate, fill_invalid, require_dir, require_file
from .record import Record

log = logging.getLogger(__name__)

NAME = "wfdb-samples"
FOLDER = "wfdb-samples"
CITATION = (
    "WFDB sample records (wfdb-python sample-data; PhysioNet: Goldberger AL et al., "
    "Circulation 101(23):e215-e220, 2000; Clifford GD et al., CinC 2015; MIMIC DB, Moody & Mark 1996)."
)
_COMMIT = "6850ad1aa0c1fcb2282b3625f767de98396cf740"
_RAW = f"https://raw.githubusercontent.com/MIT-LCP/wfdb-python/{_COMMIT}/sample-data/"
_FILES = [
    "a103l.hea", "a103l.mat",
    "v102s.hea", "v102s.dat",
    "mixedsignals.hea", "mixedsignals_e.dat", "mixedsignals_p.dat", "mixedsignals_r.dat",
    "multi-segment/041s/041s.hea", "multi-segment/041s/041s01.hea",
    "multi-segment/041s/041s01.dat", "multi-segment/041s/041s02.hea",
    "multi-segment/041s/041s02.dat",
]
SOURCES = [
    {
        "url": _RAW + f,
        "kind": "file",
        "path": f,
        "licence": "MIT (wfdb-python); record licences not stated",
    }
    for f in _FILES
]

# record id -> (path of the WFDB record without extension, rdrecord keyword arguments)
RECORDS: dict[str, tuple[str, dict[str, Any]]] = {
    "041s": ("multi-segment/041s/041s", {}),
    "a103l": ("a103l", {}),
    "mixedsignals": ("mixedsignals", {"smooth_frames": False}),
    "v102s": ("v102s", {}),
}
_RENAME = {"pleth": "ppg", "ii": "ecg"}


def subject_of(record_id: str) -> str:
    return record_id


def list_records(folder: Path) -> list[str]:
    folder = require_dir(folder, "WFDB samples folder")
    present = [rid for rid, (rel, _) in RECORDS.items() if (folder / f"{rel}.hea").is_file()]
    missing = sorted(set(RECORDS) - set(present))
    if missing:
        log.warning("wfdb-samples: %s lacks record header(s) for %s", folder, ", ".join(missing))
    if not present:
        raise DataNotFoundError(f"WFDB samples folder {folder} holds none of {', '.join(RECORDS)}")
    return sorted(present)


def load_record(folder: Path, record_id: str) -> Record:
    import wfdb

    folder = Path(folder)
    if record_id not in RECORDS:
        raise DataNotFoundError(
            f"wfdb-samples: no record {record_id!r}; records: {', '.join(sorted(RECORDS))}"
        )
    rel, kwargs = RECORDS[record_id]
    hea = require_file(folder / f"{rel}.hea", "WFDB header")
    try:
        rec = wfdb.rdrecord(str(folder / rel), **kwargs)
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"{hea}: a file of this WFDB record is missing ({exc})") from None
    except Exception as exc:  # wfdb raises ValueError/IndexError/... for a damaged record
        raise DataError(f"{hea}: could not read WFDB record ({type(exc).__name__}: {exc})") from None
    frame_fs = check_rate(rec.fs, hea, "frame rate in the WFDB header")
    if kwargs.get("smooth_frames") is False:
        arrays = list(rec.e_p_signal)
        spf = list(rec.samps_per_frame)
    else:
        if rec.p_signal is None:
            raise DataError(f"{hea}: WFDB record has no physical signal")
        arrays = [rec.p_signal[:, i] for i in range(rec.p_signal.shape[1])]
        spf = [1] * len(arrays)
    signals: dict[str, np.ndarray] = {}
    rates: dict[str, float] = {}
    units: dict[str, str] = {}
    invalid: dict[str, list[list[int]]] = {}
    for name, x, k, unit in zip(rec.sig_name, arrays, spf, rec.units):
        ch = _RENAME.get(name.strip().lower(), name.strip().lower())
        if ch in signals:
            raise DataError(f"{hea}: channel {name!r} appears twice")
        x, spans = fill_invalid(np.asarray(x, dtype=np.float64), hea, f"channel {name}")
        if spans:
            n_bad = sum(b - a for a, b in spans)
            log.info("wfdb-samples/%s: filled %d invalid sample(s) in %s", record_id, n_bad, ch)
            invalid[ch] = spans
        signals[ch] = x
        rates[ch] = frame_fs * int(k)
        units[ch] = unit
    if "ppg" not in signals:
        raise DataError(f"{hea}: no PLETH channel among {rec.sig_name}")
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=subject_of(record_id),
        signals=signals,
        rates=rates,
        labels={},
        meta={
            "source_file": str(hea),
            "wfdb_names": list(rec.sig_name),
            "units": units,
            "comments": list(rec.comments or []),
            "invalid_spans": invalid,
            "peaks_source": None,
        },
    )
