"""BioSPPy example finger PPG (20 s at 1000 Hz, no labels).

Carreiras C, Alves AP, Lourenço A, Canento F, Silva H, Fred A, et al. BioSPPy:
Biosignal Processing in Python (2015-), github.com/scientisst/BioSPPy
(``examples/ppg.txt``, BSD-style licence).

Format ("Simple Text Format"): ``#`` header lines, among them
``# Sampling Rate (Hz):= 1000.00``, then one sample per line.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError, DataNotFoundError
from ._io import check_finite, check_rate, read_text, require_dir, split_numbers
from .record import Record

NAME = "biosppy"
FOLDER = "biosppy-examples"
CITATION = "Carreiras C et al. BioSPPy: Biosignal Processing in Python (2015-), examples/ppg.txt."
SOURCES = [
    {
        "url": "https://raw.githubusercontent.com/scientisst/BioSPPy/"
        "82e894096ba76cce343a9f9d688e9325f1c95d59/examples/ppg.txt",
        "kind": "file",
        "path": "ppg.txt",
        "licence": "BSD-style (BioSPPy LICENSE)",
    }
]
RECORDS = {"ppg": "ppg.txt"}


def subject_of(record_id: str) -> str:
    return "biosppy-example"


def list_records(folder: Path) -> list[str]:
    folder = require_dir(folder, "BioSPPy examples folder")
    ids = sorted(rid for rid, f in RECORDS.items() if (folder / f).is_file())
    if not ids:
        raise DataNotFoundError(f"BioSPPy examples folder {folder} has no {', '.join(RECORDS.values())}")
    return ids


def parse(path: Path) -> tuple[float, dict[str, str], object]:
    lines = read_text(path, "BioSPPy text file").splitlines()
    header: dict[str, str] = {}
    body: list[str] = []
    for i, ln in enumerate(lines):
        s = ln.strip()
        if s.startswith("#"):
            if body:
                raise DataError(f"{path}: '#' header line {i + 1} after the samples began")
            if ":=" in s:
                k, v = s[1:].split(":=", 1)
                header[k.strip().lower()] = v.strip()
        elif s:
            body.append(s)
    if not header:
        raise DataError(f"{path}: no '#' header (expected 'Simple Text Format' with a sampling rate)")
    rate = header.get("sampling rate (hz)")
    if rate is None:
        raise DataError(f"{path}: header has no 'Sampling Rate (Hz):=' line")
    fs = check_rate(rate, path, "sampling rate in the header")
    if not body:
        raise DataError(f"{path}: no samples after the header")
    x = check_finite(split_numbers("\n".join(body), "\n", path, "samples"), path, "samples")
    return fs, header, x


def load_record(folder: Path, record_id: str) -> Record:
    if record_id not in RECORDS:
        raise DataNotFoundError(f"biosppy: no record {record_id!r}; records: {', '.join(RECORDS)}")
    path = Path(folder) / RECORDS[record_id]
    if not path.is_file():
        raise DataNotFoundError(f"BioSPPy file {path} does not exist")
    fs, header, x = parse(path)
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=subject_of(record_id),
        signals={"ppg": x},
        rates={"ppg": fs},
        meta={"source_file": str(path), "header": header, "peaks_source": None},
    )
