"""Welltory smartphone-camera PPG with Polar H10 RR intervals.

Neshitov A, Tyapochkin K, Smorodnikova E, Pravdin P. "Wavelet Analysis and
Self-Similarity of Photoplethysmography Signals for HRV Estimation and Quality
Assessment." Sensors 21:6798 (2021). Data: github.com/Welltory/welltory-ppg-dataset,
CC0 1.0.

Layout: ``data/subject_XX/PPG.csv`` (header ``time,R,G,B``; time in ms from the
start, frame times irregular) and ``data/subject_XX/RR.txt`` (space-separated RR
intervals in ms).

Resampling: the camera's frame times jitter (and drop frames), so each colour
channel is linearly interpolated (``numpy.interp``) onto a uniform grid that
starts at the first frame, at the *median* frame rate ``1000 / median(diff(time))``
Hz, up to the last frame. The raw frame times are kept in
``meta["frame_times_ms"]``. Non-increasing frame times are an error.

PPG channel: the red channel carries the pulse in this data set (green is 0 in
many recordings; the flash/finger makes red dominant) and is used as ``ppg``,
unless more than 5 % of its frames are clipped at 255 (subjects 20 and 21):
then green is used. ``meta["ppg_channel"]`` and ``meta["red_saturated_fraction"]``
say which and why. All three colours stay in ``signals`` as ``r``, ``g``, ``b``.

Labels: ``rr_ms`` (array of RR intervals, NOT time-aligned with the PPG: usable
for HR/HRV agreement, not for beat positions) and ``hr`` (60000 / mean RR).
The repository names 13 participants but does not map them to the 21 folders,
so ``subject_id`` is the folder name and ``meta["subject_mapping"]`` says the
mapping is unknown: a split by folder is NOT guaranteed to be a split by person.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataNotFoundError
from ._io import check_finite, natural_key, read_text, require_dir, require_file, split_numbers
from .record import Record

log = logging.getLogger(__name__)

NAME = "welltory"
FOLDER = "welltory-ppg"
CITATION = (
    "Neshitov A, Tyapochkin K, Smorodnikova E, Pravdin P. Wavelet analysis and self-similarity "
    "of photoplethysmography signals for HRV estimation and quality assessment. Sensors 21:6798 (2021)."
)
_COMMIT = "3b506e9c97c45b89695e87f1d667fe8a033e24fa"
SOURCES = [
    {
        "url": f"https://codeload.github.com/Welltory/welltory-ppg-dataset/tar.gz/{_COMMIT}",
        "kind": "github-archive",
        "licence": "CC0 1.0",
        "subdir": "",
    }
]

SATURATION_LEVEL = 255.0
SATURATED_FRACTION_MAX = 0.05
_DIR_RE = re.compile(r"^subject_\d+$")


def subject_of(record_id: str) -> str:
    return record_id


def list_records(folder: Path) -> list[str]:
    data = require_dir(Path(folder) / "data", "Welltory data folder")
    ids = [p.name for p in data.iterdir() if p.is_dir() and _DIR_RE.match(p.name)]
    if not ids:
        raise DataNotFoundError(f"Welltory data folder {data} holds no subject_XX folders")
    return sorted(ids, key=natural_key)


def read_ppg_csv(path: Path) -> np.ndarray:
    """(n, 4) array of time_ms, R, G, B with checked header, numbers and times."""
    lines = read_text(path, "Welltory PPG.csv").splitlines()
    if not lines or [h.strip().lower() for h in lines[0].split(",")] != ["time", "r", "g", "b"]:
        head = lines[0][:60] if lines else ""
        raise DataError(f"{path}: header should be 'time,R,G,B', found {head!r}")
    rows = [ln for ln in lines[1:] if ln.strip()]
    if len(rows) < 2:
        raise DataError(f"{path}: fewer than two frames")
    out = np.empty((len(rows), 4))
    for i, ln in enumerate(rows):
        parts = ln.split(",")
        if len(parts) != 4:
            raise DataError(f"{path}: line {i + 2} has {len(parts)} fields, expected 4")
        out[i] = split_numbers(ln, ",", path, f"line {i + 2}")
    check_finite(out.ravel(), path, "PPG.csv values")
    bad = np.flatnonzero(np.diff(out[:, 0]) <= 0)
    if bad.size:
        raise DataError(
            f"{path}: frame times not increasing at line {int(bad[0]) + 3} "
            f"({out[bad[0], 0]:g} ms then {out[bad[0] + 1, 0]:g} ms)"
        )
    return out


def resample_uniform(t_ms: np.ndarray, x: np.ndarray, fs: float) -> np.ndarray:
    """Linear interpolation of samples at times ``t_ms`` onto ``t_ms[0] + k / fs``."""
    n = int(np.floor((t_ms[-1] - t_ms[0]) * fs / 1000.0 + 1e-9)) + 1
    grid = t_ms[0] + np.arange(n) * (1000.0 / fs)
    return np.interp(grid, t_ms, x)


def read_rr(path: Path) -> np.ndarray:
    text = read_text(path, "Welltory RR.txt")
    if not text.strip():
        raise DataError(f"{path}: no RR intervals")
    rr = check_finite(split_numbers(text.strip(), None, path, "RR intervals"), path, "RR intervals")
    if np.any(rr <= 0):
        raise DataError(f"{path}: RR intervals must be positive (found {rr.min():g} ms)")
    return rr


def load_record(folder: Path, record_id: str) -> Record:
    d = Path(folder) / "data" / record_id
    if not d.is_dir():
        raise DataNotFoundError(f"Welltory record folder {d} does not exist")
    ppg_path = require_file(d / "PPG.csv", "Welltory PPG.csv")
    rr_path = require_file(d / "RR.txt", "Welltory RR.txt")
    raw = read_ppg_csv(ppg_path)
    t = raw[:, 0]
    fs = 1000.0 / float(np.median(np.diff(t)))
    chans = {c: resample_uniform(t, raw[:, i + 1], fs) for i, c in enumerate(("r", "g", "b"))}
    sat = float(np.mean(raw[:, 1] >= SATURATION_LEVEL))
    ppg_ch = "r" if sat <= SATURATED_FRACTION_MAX else "g"
    if ppg_ch != "r":
        log.info("welltory/%s: red clipped at 255 in %.0f%% of frames; ppg = green", record_id, 100 * sat)
    rr = read_rr(rr_path)
    signals = {"ppg": chans[ppg_ch].copy(), **chans}
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=record_id,
        signals=signals,
        rates={c: fs for c in signals},
        labels={"rr_ms": rr, "hr": float(60000.0 / rr.mean())},
        meta={
            "source_file": str(ppg_path),
            "rr_file": str(rr_path),
            "ppg_channel": ppg_ch,
            "red_saturated_fraction": sat,
            "resampling": "linear interpolation onto a uniform grid at the median frame rate",
            "frame_times_ms": t,
            "n_frames": int(t.size),
            "rr_aligned": False,
            "subject_mapping": "unknown: 13 participants, not mapped to the 21 folders",
            "peaks_source": None,
        },
    )


def info_extra(folder: Path) -> dict[str, Any]:
    return {"subject_mapping": "unknown (13 participants over 21 folders; subjects = folders)"}
