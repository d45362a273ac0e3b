"""Raw MAX30102 red/IR recordings from hobby boards (no labels; for replay and sensor tests).

Sources (each sub-folder; see the folder's SOURCE.txt for commits):

- ``vrano714_rpi``, ``szymanel_rpi``, ``sergiomagdalenop_rpi``: Raspberry Pi +
  MAX30102 over I2C (github.com/vrano714/max30102-tutorial-raspberrypi and forks),
  ``ir.log`` / ``red.log`` with one integer per line. The driver sets 100 sps with
  4-sample averaging, so the rate is 25 Hz (inferred from the register setup,
  not stored in the logs). ``sergiomagdalenop_rpi`` has no finger on the sensor
  (``labels["contact"] = "none"``); ``szymanel_rpi`` has a finger coming on and
  off (``"intermittent"``).
- ``aromring_MAX30102_by_RF/ExpectedGoodQualitySignals.csv`` (``Sample,RED,IR``;
  100 samples at 25 Hz per the algorithm header; R. Fraczkiewicz).
- ``jdesbonnet_PPG_Tools/*.dat``: LPC824 + two MAX30102 sensors (J. Desbonnet),
  ``#``-prefixed JSON header then rows ``host_time_s mcu_ticks sensor RED IR c6 c7``
  with the two sensors interleaved: split into one record per sensor
  (``<stem>_s0``, ``<stem>_s1``). Rate: the header's ``sampling_rate`` does not
  fit the data (it says 100 even in ``left_hand_200sps``, and the two sensors
  deliver about 140 and 98 samples/s): the loader uses each sensor's measured
  rate ``(n - 1) / (last host time - first host time)``, which makes the pulse
  rate of the two simultaneous sensors agree; the header value is kept in
  ``meta["header_sampling_rate"]``. Values exceed 18 bits (firmware scaling):
  arbitrary units.
- ``jdesbonnet_LPC824_MAX30102/run1.dat``: rows ``ticks RED IR``, first byte NUL,
  CRLF line ends; ticks run at 30 MHz (``run1.gp``), rate = 30e6 / median tick
  step (about 137 Hz).

Every record has ``red`` and ``ir`` channels and ``ppg`` = IR. :func:`adc_codes` gives a
record's channels as 18-bit MAX30102 codes (what replay and the emulated chip take) or refuses
it with what the file holds (the jdesbonnet files: values beyond 18 bits, ``meta["file_summary"]``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataNotFoundError
from ._io import check_finite, check_rate, read_text, require_dir, require_file, split_numbers
from .record import Record

log = logging.getLogger(__name__)

NAME = "max30102-raw"
FOLDER = "max30102-raw"
CITATION = (
    "Raw MAX30102 logs from public repositories: vrano714/max30102-tutorial-raspberrypi, "
    "szymanel/SPO2_and_Heart_Rate, sergiomagdalenop/proycapstone, aromring/MAX30102_by_RF, "
    "jdesbonnet/PPG_Tools, jdesbonnet/LPC824_MAX30102."
)


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


SOURCES = [
    {"url": _raw("vrano714/max30102-tutorial-raspberrypi", "8a80db704c4f51789536735fce16f619083d58ca", f),
     "kind": "file", "path": f"vrano714_rpi/{f}", "licence": "none stated"}
    for f in ("ir.log", "red.log")
] + [
    {"url": _raw("szymanel/SPO2_and_Heart_Rate", "a240ac11b3bfc3991cd7332ce94758289ee18fa2", f),
     "kind": "file", "path": f"szymanel_rpi/{f}", "licence": "none stated"}
    for f in ("ir.log", "red.log")
] + [
    {"url": _raw("sergiomagdalenop/proycapstone", "bdb28dddfd103f284f5d49b3a47ba916111d9304", f),
     "kind": "file", "path": f"sergiomagdalenop_rpi/{f}", "licence": "none stated"}
    for f in ("ir.log", "red.log")
] + [
    {"url": _raw("aromring/MAX30102_by_RF", "553ba61952012ad6e895532bb2bfda0e790a3beb",
                 "ExpectedGoodQualitySignals.csv"),
     "kind": "file", "path": "aromring_MAX30102_by_RF/ExpectedGoodQualitySignals.csv",
     "licence": "MIT-style notice on code; none on data"},
    {"url": _raw("jdesbonnet/LPC824_MAX30102", "e9f0f7175f8f190ebbd3e4430e640c2eb661f79c", "doc/run1.dat"),
     "kind": "file", "path": "jdesbonnet_LPC824_MAX30102/run1.dat", "licence": "none stated"},
] + [
    {"url": _raw("jdesbonnet/PPG_Tools", "d3fdf13146ba0ef7227a66509be4c38333869c6d", f"data/{f}"),
     "kind": "file", "path": f"jdesbonnet_PPG_Tools/{f}", "licence": "none stated"}
    for f in ("left_hand_100sps.dat", "left_hand_200sps.dat", "thumb_toe_100sps.dat")
]

FULL_SCALE = (1 << 18) - 1  # the MAX30102's largest 18-bit code (262143)
RPI_FS = 25.0  # 100 sps with 4-sample FIFO averaging (driver register setup)
AROMRING_FS = 25.0  # algorithm_by_RF.h: FS 25
RUN1_TICK_HZ = 30e6  # run1.gp scales ticks by 30e6
RPI_DIRS = {
    "vrano714_rpi": "on",
    "szymanel_rpi": "intermittent",
    "sergiomagdalenop_rpi": "none",
}
AROMRING = "aromring_MAX30102_by_RF"
AROMRING_FILE = "ExpectedGoodQualitySignals.csv"
PPG_TOOLS = "jdesbonnet_PPG_Tools"
RUN1 = "jdesbonnet_LPC824_MAX30102"


def subject_of(record_id: str) -> str:
    """The person behind a record: the repository owner (jdesbonnet's header says subject "JD")."""
    if record_id.startswith("jdesbonnet"):
        return "jdesbonnet"
    return record_id.split("_")[0]


def list_records(folder: Path) -> list[str]:
    folder = require_dir(folder, "MAX30102 raw folder")
    ids: list[str] = []
    for d in RPI_DIRS:
        if (folder / d / "ir.log").is_file():
            ids.append(d)
    if (folder / AROMRING / AROMRING_FILE).is_file():
        ids.append("aromring")
    if (folder / PPG_TOOLS).is_dir():
        for p in sorted((folder / PPG_TOOLS).glob("*.dat")):
            ids += [f"jdesbonnet_{p.stem}_s0", f"jdesbonnet_{p.stem}_s1"]
    if (folder / RUN1 / "run1.dat").is_file():
        ids.append("jdesbonnet_run1")
    if not ids:
        raise DataNotFoundError(f"MAX30102 raw folder {folder} holds none of the known recordings")
    return sorted(ids)


def _read_log(path: Path) -> np.ndarray:
    text = read_text(require_file(path, "MAX30102 log"), "MAX30102 log")
    if not text.strip():
        raise DataError(f"{path}: empty log")
    return check_finite(split_numbers(text.strip(), None, path, "samples"), path, "samples")


def _record(record_id: str, red: np.ndarray, ir: np.ndarray, fs: float, contact: str, meta: dict) -> Record:
    meta.setdefault("peaks_source", None)
    meta["units"] = "ADC counts (arbitrary units)"
    return Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=subject_of(record_id),
        signals={"ppg": ir.copy(), "red": red, "ir": ir},
        rates={"ppg": fs, "red": fs, "ir": fs},
        labels={"contact": contact},
        meta=meta,
    )


def _load_rpi(folder: Path, record_id: str) -> Record:
    d = Path(folder) / record_id
    ir = _read_log(d / "ir.log")
    red = _read_log(d / "red.log")
    if ir.size != red.size:
        raise DataError(f"{d}: ir.log has {ir.size} samples but red.log {red.size}")
    meta = {
        "source_file": str(d / "ir.log"),
        "red_file": str(d / "red.log"),
        "rate_source": "inferred from the driver setup (100 sps, 4-sample averaging)",
    }
    if RPI_DIRS[record_id] == "none":
        meta["note"] = "no finger on the sensor: a no-contact baseline"
    elif RPI_DIRS[record_id] == "intermittent":
        meta["note"] = "finger comes on and off the sensor"
    return _record(record_id, red, ir, RPI_FS, RPI_DIRS[record_id], meta)


def _load_aromring(folder: Path) -> Record:
    path = Path(folder) / AROMRING / AROMRING_FILE
    lines = [ln for ln in read_text(path, "aromring CSV").splitlines() if ln.strip()]
    if not lines or [h.strip().lower() for h in lines[0].split(",")] != ["sample", "red", "ir"]:
        raise DataError(f"{path}: header should be 'Sample,RED,IR', found {(lines[0] if lines else '')[:40]!r}")
    rows = np.array([split_numbers(ln, ",", path, f"line {i + 2}") for i, ln in enumerate(lines[1:])]
                    if len(lines) > 1 else np.empty((0, 3)))
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.shape[0] == 0:
        raise DataError(f"{path}: expected rows of 3 numbers (Sample,RED,IR)")
    check_finite(rows.ravel(), path, "values")
    return _record("aromring", rows[:, 1].copy(), rows[:, 2].copy(), AROMRING_FS, "on",
                   {"source_file": str(path), "rate_source": "algorithm_by_RF.h FS = 25"})


def _rows(lines: list[str], ncols: int, path: Path, what: str, expected: str) -> np.ndarray:
    """Whitespace-separated numeric rows of exactly ``ncols`` columns, all finite (``DataError`` naming
    the first bad row otherwise)."""
    rows = np.empty((len(lines), ncols))
    for i, ln in enumerate(lines):
        n = len(ln.split())
        if n != ncols:
            raise DataError(f"{path}: {what} {i + 1} has {n} columns, expected {expected}")
        rows[i] = split_numbers(ln, None, path, f"{what} {i + 1}")
    check_finite(rows.ravel(), path, "values")
    return rows


def read_ppg_tools(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Header JSON and the (n, 7) data rows of a jdesbonnet PPG_Tools .dat file."""
    text = read_text(require_file(path, "PPG_Tools .dat file"), "PPG_Tools .dat file")
    head, body = [], []
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith("#"):
            head.append(s[1:])
        elif s:
            body.append(s)
    if not head:
        raise DataError(f"{path}: no '#' JSON header")
    try:
        header = json.loads("\n".join(head))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: '#' header is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: '#' header is not a JSON object")
    if "sampling_rate" not in header:
        raise DataError(f"{path}: header has no sampling_rate")
    check_rate(header["sampling_rate"], path, "header sampling_rate")
    if not body:
        raise DataError(f"{path}: no data rows after the header")
    rows = _rows(body, 7, path, "data row", "7")
    sensors = set(np.unique(rows[:, 2]).tolist())
    if not sensors <= {0.0, 1.0}:
        raise DataError(f"{path}: sensor column holds {sorted(sensors)}, expected 0 and 1")
    return header, rows


def _value_range(values: np.ndarray) -> str:
    return f"RED/IR values {values.min():.0f}..{values.max():.0f}"


def _ppg_tools_summary(path: Path, rows: np.ndarray) -> str:
    """What a PPG_Tools file holds, in words (for refusals that must say why)."""
    s = rows[:, 2]
    parts = []
    for k in (0, 1):
        p = rows[s == k]
        span = p[-1, 0] - p[0, 0] if p.shape[0] > 1 else 0.0
        rate = f" at {(p.shape[0] - 1) / span:.1f} Hz" if span > 0 else ""
        parts.append(f"sensor {k}: {p.shape[0]} rows{rate}")
    switch = 100.0 * float(np.mean(s[1:] != s[:-1])) if s.size > 1 else 0.0
    return (f"{path.name}: {rows.shape[0]} rows of two MAX30102 sensors interleaved ({', '.join(parts)}; "
            f"the sensor column changes on {switch:.0f}% of rows), {_value_range(rows[:, 3:5])}")


def _load_ppg_tools(folder: Path, record_id: str) -> Record:
    stem, sensor = record_id[len("jdesbonnet_"):].rsplit("_s", 1)
    path = Path(folder) / PPG_TOOLS / f"{stem}.dat"
    header, rows = read_ppg_tools(path)
    s = int(sensor)
    part = rows[rows[:, 2] == s]
    if part.shape[0] < 2:
        raise DataError(f"{path}: sensor {s} has {part.shape[0]} rows; cannot derive its rate")
    span = part[-1, 0] - part[0, 0]
    if not span > 0:
        raise DataError(f"{path}: host times of sensor {s} do not increase")
    fs = check_rate((part.shape[0] - 1) / span, path, f"measured rate of sensor {s}")
    hdr_fs = float(header["sampling_rate"])
    if abs(fs - hdr_fs) / hdr_fs > 0.1:
        log.info("max30102-raw/%s: measured %.1f Hz vs header sampling_rate %g", record_id, fs, hdr_fs)
    locs = header.get("sensorLocations") or []
    return _record(record_id, part[:, 3].copy(), part[:, 4].copy(), fs, "on", {
        "source_file": str(path),
        "file_summary": _ppg_tools_summary(path, rows),
        "sensor": s,
        "location": locs[s] if s < len(locs) else None,
        "header_sampling_rate": hdr_fs,
        "rate_source": "measured from host timestamps ((n-1)/span); header rate does not fit",
        "host_time_s": part[:, 0].copy(),
        "mcu_ticks": part[:, 1].copy(),
        "extra_columns": part[:, 5:7].copy(),
        "header": header,
    })


def _load_run1(folder: Path) -> Record:
    path = Path(folder) / RUN1 / "run1.dat"
    text = read_text(require_file(path, "run1.dat"), "run1.dat")
    n_nul = text.count("\0")
    text = text.replace("\0", "")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{path}: no data rows")
    rows = _rows(lines, 3, path, "row", "3 (ticks RED IR)")
    if rows.shape[0] < 2:
        raise DataError(f"{path}: fewer than two rows; cannot derive the rate")
    steps = np.diff(rows[:, 0])
    if np.any(steps <= 0):
        raise DataError(f"{path}: tick counter does not increase at row {int(np.argmax(steps <= 0)) + 2}")
    fs = check_rate(RUN1_TICK_HZ / float(np.median(steps)), path, "rate from ticks")
    return _record("jdesbonnet_run1", rows[:, 1].copy(), rows[:, 2].copy(), fs, "on", {
        "source_file": str(path),
        "file_summary": f"{path.name}: {rows.shape[0]} rows of one sensor (30 MHz ticks, RED, IR; "
                        f"{fs:.1f} Hz), {_value_range(rows[:, 1:3])}",
        "nul_bytes_removed": n_nul,
        "rate_source": "30 MHz ticks / median tick step",
        "ticks": rows[:, 0].copy(),
    })


def adc_codes(rec: Record) -> tuple[np.ndarray, np.ndarray]:
    """``(red, ir)`` of a max30102-raw record as int64 18-bit MAX30102 codes (0..262143), what
    replay and the emulated chip are driven by; a ``DataError`` saying what the file holds when
    its values are not such codes (the jdesbonnet files: firmware-scaled values beyond 18 bits)."""
    out = []
    for name in ("red", "ir"):
        x = np.asarray(rec.signals[name], dtype=np.float64)
        over = int(np.count_nonzero((x < 0) | (x > FULL_SCALE)))
        frac = int(np.count_nonzero(x != np.round(x)))
        if over or frac:
            what = rec.meta.get("file_summary") or f"{x.size} samples, {_value_range(x)}"
            why = (f"{over} of {x.size} {name.upper()} samples lie outside the 18-bit range "
                   f"0..2^18-1 = {FULL_SCALE}" if over else f"{frac} {name.upper()} samples are not integers")
            raise DataError(
                f"{NAME}/{rec.record_id} is not raw MAX30102 codes: {what}; {why} (the logger's "
                f"firmware scaled or accumulated them: arbitrary units). Replay and the emulated chip "
                f"need the 18-bit codes as the chip's FIFO gives them")
        out.append(x.astype(np.int64))
    return out[0], out[1]


def load_record(folder: Path, record_id: str) -> Record:
    folder = Path(folder)
    if record_id in RPI_DIRS:
        return _load_rpi(folder, record_id)
    if record_id == "aromring":
        return _load_aromring(folder)
    if record_id == "jdesbonnet_run1":
        return _load_run1(folder)
    if record_id.startswith("jdesbonnet_") and record_id[-3:] in ("_s0", "_s1"):
        return _load_ppg_tools(folder, record_id)
    raise DataNotFoundError(f"max30102-raw: no record {record_id!r} in {folder}")
