"""BIDMC PPG and Respiration data set: loader and ECG-derived reference beats.

Source: Pimentel M.A.F. et al., "Toward a robust estimation of respiratory rate
from pulse oximeters", IEEE Trans. Biomed. Eng. 64(8):1914-1923, 2017; records
from the MIMIC-II matched waveform database (Goldberger et al., PhysioBank,
PhysioToolkit and PhysioNet, Circulation 101(23):e215-e220, 2000), published on
PhysioNet as ``bidmc`` (ODC-By 1.0).

Files (CSV export, one set per record ``bidmc_NN``):

* ``bidmc_NN_Signals.csv`` -- 125 Hz, 8 min; a ``Time [s]`` column then the
  channels (``RESP``, ``PLETH``, ``II``, ``V``, ``AVR`` ...) in an order that
  differs between records. Channels are selected by header name after stripping
  spaces; the time column is rounded inconsistently and is ignored (time is the
  sample index / 125 Hz).
* ``bidmc_NN_Numerics.csv`` -- 1 Hz monitor numerics ``HR``, ``PULSE``, ``RESP``,
  ``SpO2``. ``NaN`` there means the monitor gave no value (kept as NaN).
* ``bidmc_NN_Fix.txt`` -- age, gender, ICU location (optional).

The data set has no beat labels. :func:`derive_ppg_peaks` derives reference PPG
systolic peaks from the ECG: R peaks (NeuroKit2, Makowski et al., Behav. Res.
Methods 53:1689-1696, 2021), then the PPG maximum inside the pulse-arrival window
that follows each R peak. :func:`rate_agreement` checks the result against the
monitor's PULSE numerics.

Only the ``folder`` argument ties this module to a place on disk; the registry in
``ppg_edge.data`` passes ``<data root>/bidmc``. Files may sit in that folder or in
its ``bidmc_csv`` subfolder (the layout of the shared data).
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..dsp.rates import check_rate
from ..errors import DataError, DataNotFoundError
from .record import Record

log = logging.getLogger(__name__)

NAME = "bidmc"
FOLDER = "bidmc"
FS = 125.0
NUMERICS_FS = 1.0
CITATION = (
    "Pimentel MAF, Johnson AEW, Charlton PH, Birrenkott D, Watkinson PJ, Tarassenko L, "
    "Clifton DA. Toward a robust estimation of respiratory rate from pulse oximeters. "
    "IEEE Trans Biomed Eng 64(8):1914-1923, 2017. doi:10.1109/TBME.2016.2613124. "
    "Data: PhysioNet 'bidmc' (Goldberger et al., Circulation 101(23):e215-e220, 2000)."
)
SOURCES = [
    {
        "url": "https://physionet.org/content/bidmc/1.0.0/",
        "kind": "wfdb",
        "licence": "ODC-By-1.0",
        "note": "read with wfdb (pn_dir='bidmc'); records bidmc01..bidmc53 (.dat/.hea, numerics bidmcNNn)",
    },
    {
        "url": "https://physionet.org/content/bidmc/1.0.0/bidmc_csv/",
        "kind": "csv",
        "licence": "ODC-By-1.0",
        "note": "bidmc_NN_Signals.csv, bidmc_NN_Numerics.csv, bidmc_NN_Breaths.csv, bidmc_NN_Fix.txt",
    },
]

PPG_COLUMN = "PLETH"
ECG_COLUMN = "II"
RESP_COLUMN = "RESP"
NUMERIC_COLUMNS = {"HR": "hr_1hz", "PULSE": "pulse_1hz", "RESP": "resp_1hz", "SpO2": "spo2_1hz"}

_RECORD_RE = re.compile(r"^(bidmc_\d+)_(Signals|Numerics)\.csv$")


# ---------------------------------------------------------------------------
# Files and records
# ---------------------------------------------------------------------------
def _csv_dir(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"BIDMC folder {folder} does not exist")
    sub = folder / "bidmc_csv"
    return sub if sub.is_dir() else folder


def _records_with(folder: Path, kind: str) -> set[str]:
    out = set()
    for path in _csv_dir(folder).iterdir():
        m = _RECORD_RE.match(path.name)
        if m and m.group(2) == kind:
            out.add(m.group(1))
    return out


def list_records(folder: Path) -> list[str]:
    """Record ids (``"bidmc_01"`` ...) that have a ``*_Signals.csv`` file, sorted."""
    return sorted(_records_with(folder, "Signals"))


def numerics_only_records(folder: Path) -> list[str]:
    """Record ids that have 1 Hz numerics but no signals in this copy, sorted.

    The shared copy holds signals for only some of the 53 records; these are the
    ones a loader cannot return (they have no PPG).
    """
    return sorted(_records_with(folder, "Numerics") - _records_with(folder, "Signals"))


def _read_table(path: Path, what: str) -> tuple[list[str], np.ndarray]:
    """A numeric CSV with a header line: (stripped column names, float array rows x cols).

    Every row must have as many fields as the header and every field must parse
    as a float (``NaN`` text parses to NaN; callers decide whether NaN is allowed).
    """
    if not path.is_file():
        raise DataNotFoundError(f"BIDMC {what} file {path} does not exist")
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as ASCII text ({exc})") from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty file")
    header = [h.strip() for h in lines[0].split(",")]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: duplicate column names in header {header}")
    rows = lines[1:]
    if not rows:
        raise DataError(f"{path}: header only, no data rows")
    ncol = len(header)
    counts = np.fromiter((r.count(",") + 1 for r in rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(counts != ncol)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: line {i + 2} has {counts[i]} fields but the header has {ncol} "
            f"({bad.size} such line(s))"
        )
    try:
        data = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        # numpy names the row relative to the data rows; +1 for the header line.
        raise DataError(f"{path}: unparsable value in data rows ({exc}; row numbers exclude the header)") from exc
    return header, data


def read_signals(path: Path) -> dict[str, np.ndarray]:
    """The PLETH, II (and RESP when present) columns of a ``*_Signals.csv`` file.

    Returns ``{"ppg": ..., "ecg": ..., ["resp": ...]}`` as float64 arrays.
    Raises ``DataError`` for a missing column or any non-finite value in them.
    """
    path = Path(path)
    header, data = _read_table(path, "signals")
    out: dict[str, np.ndarray] = {}
    for column, name, required in ((PPG_COLUMN, "ppg", True), (ECG_COLUMN, "ecg", True), (RESP_COLUMN, "resp", False)):
        if column not in header:
            if required:
                raise DataError(f"{path}: no {column!r} column (header: {header})")
            continue
        x = np.ascontiguousarray(data[:, header.index(column)])
        finite = np.isfinite(x)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            raise DataError(
                f"{path}: column {column!r} has {int((~finite).sum())} non-finite value(s), "
                f"first at sample {first} (line {first + 2})"
            )
        out[name] = x
    return out


def read_numerics(path: Path) -> dict[str, np.ndarray]:
    """1 Hz monitor numerics as ``{"hr_1hz", "pulse_1hz", "resp_1hz", "spo2_1hz"}`` arrays.

    NaN (monitor gave no value) is kept; infinity is an error. Columns missing
    from a file are absent from the result, but ``PULSE`` is required.
    """
    path = Path(path)
    header, data = _read_table(path, "numerics")
    if "PULSE" not in header:
        raise DataError(f"{path}: no 'PULSE' column (header: {header})")
    out = {}
    for column, name in NUMERIC_COLUMNS.items():
        if column in header:
            x = np.ascontiguousarray(data[:, header.index(column)])
            if np.isinf(x).any():
                raise DataError(f"{path}: column {column!r} has infinite values")
            out[name] = x
    return out


def _read_fix(path: Path) -> dict[str, Any]:
    """Age, sex and ICU location from ``*_Fix.txt`` (best effort; absent file -> {})."""
    if not path.is_file():
        return {}
    out: dict[str, Any] = {}
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "age":
            try:
                out["age"] = float(value)
            except ValueError:
                log.warning("%s: age %r is not a number; left out", path, value)
        elif key == "gender" and value:
            out["sex"] = value.upper()[:1]
        elif key == "location" and value:
            out["location"] = value
    return out


def load_record(folder: Path, record_id: str, derive_peaks: bool = True) -> Record:
    """Load one record: PPG (PLETH), ECG (lead II), RESP, 1 Hz numerics, and
    ECG-derived reference PPG peaks (``derive_peaks=True``, the default).

    ``labels`` gets the 1 Hz arrays ``hr_1hz``, ``pulse_1hz``, ``resp_1hz``,
    ``spo2_1hz`` (index = second), plus ``hr`` (median monitor PULSE, bpm) and
    ``age``/``sex`` where the ``Fix`` file gives them. The subject id is the
    record id (one record per ICU patient).
    """
    folder = Path(folder)
    base = _csv_dir(folder)
    if not _RECORD_RE.match(f"{record_id}_Signals.csv"):
        raise DataNotFoundError(f"{record_id!r} is not a BIDMC record id (expected e.g. 'bidmc_01')")
    sig_path = base / f"{record_id}_Signals.csv"
    num_path = base / f"{record_id}_Numerics.csv"
    if not sig_path.is_file():
        raise DataNotFoundError(
            f"BIDMC record {record_id}: signals file {sig_path} does not exist "
            f"(records with signals here: {', '.join(list_records(folder)) or 'none'})"
        )
    signals = read_signals(sig_path)
    numerics = read_numerics(num_path)
    n = len(signals["ppg"])
    n_num = len(numerics["pulse_1hz"])
    if abs(n_num - n / FS) > 2:
        log.warning("%s: %d numerics rows for %.1f s of signals", num_path, n_num, n / FS)
    labels: dict[str, Any] = dict(numerics)
    pulse = numerics["pulse_1hz"]
    if np.isfinite(pulse).any():
        labels["hr"] = float(np.nanmedian(pulse))
    fix = _read_fix(base / f"{record_id}_Fix.txt")
    for key in ("age", "sex"):
        if key in fix:
            labels[key] = fix[key]
    meta: dict[str, Any] = {
        "source_file": str(sig_path),
        "numerics_file": str(num_path),
        "numerics_fs": NUMERICS_FS,
        "numerics_nan": {k: int(np.isnan(v).sum()) for k, v in numerics.items()},
        "citation": CITATION,
    }
    if "location" in fix:
        meta["location"] = fix["location"]
    record = Record(
        dataset=NAME,
        record_id=record_id,
        subject_id=record_id,
        signals=signals,
        rates={name: FS for name in signals},
        labels=labels,
        meta=meta,
    )
    if derive_peaks:
        peaks, info = derive_ppg_peaks(record.ppg, record.signals["ecg"], FS)
        record.peaks = peaks
        record.meta["peaks_source"] = "ecg-derived"
        record.meta["r_peaks"] = info.pop("r_peaks")
        record.meta["weak_peaks"] = info.pop("weak_peaks")
        record.meta["peaks_derivation"] = info
        record.__post_init__()
    return record


# ---------------------------------------------------------------------------
# Reference PPG peaks derived from the ECG
# ---------------------------------------------------------------------------
#: Range searched for the record's R-to-PPG-peak lag, in seconds. The lower end
#: is physiological (the pulse cannot reach the finger sooner than ~150 ms after
#: the R wave: pre-ejection period plus transit, e.g. Smith et al. 1999; Mukkamala
#: et al., IEEE TBME 62(8), 2015); the upper end allows for the monitor's own
#: PLETH processing delay, which in these MIMIC-II exports adds several hundred
#: milliseconds (the lags measured on the 8 records are 0.63-0.75 s).
LAG_RANGE_S = (0.15, 1.0)
#: Half-width of the per-beat search window around ``R + lag`` (s); it is also
#: capped at 45 % of the shorter neighbouring R-R interval so that windows of
#: neighbouring beats never overlap.
WINDOW_HALF_S = 0.15
#: A PPG maximum is a "clear" peak when its prominence on the low-passed PPG is
#: at least this fraction of the record's typical beat prominence.
MIN_REL_PROMINENCE = 0.05
#: A beat with no clear candidate in its window may still have a *weak* pulse:
#: premature (ectopic) beats eject little blood, so their pulse is a small bump,
#: often a shoulder on the falling limb of the previous pulse (seen on BIDMC
#: records with ventricular couplets). Such a local maximum of the low-passed PPG
#: is accepted when its prominence is at least this many times the record's PPG
#: noise level (robust SD of the raw PPG minus its low-passed copy), i.e. when it
#: cannot be explained by noise. Where the window holds no such maximum (the
#: pulse is absent or only a change of slope) the beat is still dropped.
WEAK_NOISE_FACTOR = 4.0
#: Half-width (s) of the search on the raw PPG around the low-passed maximum.
REFINE_HALF_S = 0.04
#: Low-pass cut-off (Hz) of the PPG copy in which systolic maxima are sought
#: (4th-order Butterworth, zero phase: offline reference labels, not a deployable
#: filter). No high-pass: its ringing makes bumps where a pulse is missing, which
#: would then pass as weak beats.
PPG_LOWPASS_HZ = 8.0


def detect_r_peaks(ecg: np.ndarray, fs: float) -> tuple[np.ndarray, dict[str, Any]]:
    """R-peak sample indices of an ECG lead with NeuroKit2.

    The lead is first checked for inversion (``nk.ecg_invert``, which flips it
    when the dominant QRS deflection is negative), cleaned with the ``neurokit``
    method (0.5 Hz high-pass, powerline notch) and searched with
    ``nk.ecg_peaks(method="neurokit")`` with artefact correction (Lipponen &
    Tarvainen, J. Med. Eng. Technol. 43(3):173-181, 2019) for missed and extra
    beats in low-quality stretches.
    """
    import neurokit2 as nk

    ecg = np.asarray(ecg, dtype=np.float64)
    if not np.isfinite(ecg).all():
        raise DataError("ECG has non-finite samples; cannot detect R peaks")
    fixed, inverted = nk.ecg_invert(ecg, sampling_rate=int(round(fs)), show=False)
    cleaned = nk.ecg_clean(fixed, sampling_rate=int(round(fs)), method="neurokit")
    _, info = nk.ecg_peaks(cleaned, sampling_rate=int(round(fs)), method="neurokit", correct_artifacts=True)
    r = np.unique(np.asarray(info["ECG_R_Peaks"], dtype=np.int64))
    r = r[(r >= 0) & (r < len(ecg))]
    return r, {"ecg_inverted": bool(inverted), "n_r_peaks": int(r.size)}


def _estimate_lag(r: np.ndarray, cand: np.ndarray, fs: float) -> float | None:
    """The record's R-to-PPG-peak lag (samples): the mode of the delays from each
    R peak to every clear PPG maximum within ``LAG_RANGE_S``, smoothed over
    +-24 ms. Using the mode over all beats ties each PPG peak to its own R wave
    even when the lag exceeds one R-R interval; the other delays (to the next or
    previous pulse) vary with the R-R interval and do not pile up."""
    lo, hi = (int(round(x * fs)) for x in LAG_RANGE_S)
    delays = []
    for rp in r:
        a, b = np.searchsorted(cand, [rp + lo, rp + hi + 1])
        delays.append(cand[a:b] - rp)
    if not delays:
        return None
    d = np.concatenate(delays)
    if d.size < 3:
        return None
    hist = np.bincount(d - lo, minlength=hi - lo + 1).astype(float)
    k = max(1, int(round(0.024 * fs)))
    smooth = np.convolve(hist, np.ones(2 * k + 1), mode="same")
    return float(lo + int(np.argmax(smooth)))


def _highest_in(idx: np.ndarray, f: np.ndarray, lo: float, hi: float) -> int | None:
    """The index in sorted ``idx`` within ``[lo, hi]`` where ``f`` is highest, or None."""
    a = np.searchsorted(idx, lo, side="left")
    b = np.searchsorted(idx, hi, side="right")
    if b <= a:
        return None
    return int(idx[a + int(np.argmax(f[idx[a:b]]))])


def _nearest_local_max(x: np.ndarray, j: int, lo: int, hi: int) -> int | None:
    """The local maximum of ``x`` (not below either neighbour, not on a flat run
    rising on) in ``[lo, hi)`` nearest to ``j``; None if there is none."""
    k = np.arange(lo, hi)
    ok = (x[k] >= x[k - 1]) & (x[k] >= x[k + 1]) & (x[k] > np.minimum(x[k - 1], x[k + 1]))
    if not ok.any():
        return None
    k = k[ok]
    return int(k[np.argmin(np.abs(k - j))])


def derive_ppg_peaks(ppg: np.ndarray, ecg: np.ndarray, fs: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Reference PPG systolic peaks from the ECG, deterministic.

    1. R peaks from the ECG (:func:`detect_r_peaks`).
    2. Low-pass the PPG (``PPG_LOWPASS_HZ``, Butterworth order 4, zero phase) and
       take its local maxima whose prominence is at least ``MIN_REL_PROMINENCE``
       times the typical beat prominence (median of the N most prominent maxima,
       N = number of R peaks): the "clear" candidates.
    3. Estimate the record's R-to-peak lag (:func:`_estimate_lag`): physiological
       pulse arrival time plus the monitor's PLETH delay.
    4. For each R peak take the highest clear candidate inside
       ``R + lag +- min(WINDOW_HALF_S, 0.45 * shorter neighbouring RR)``. With
       no clear candidate, take the highest *weak* pulse there: a local maximum
       of the low-passed PPG whose prominence is at least ``WEAK_NOISE_FACTOR``
       times the PPG noise level (a real if small pulse, typical of premature
       beats; counted in ``n_weak``, indices in ``weak_peaks``). Neither -> the
       beat is dropped (``dropped["no_peak"]``).
    5. Refine to the raw PPG maximum within +-``REFINE_HALF_S``; if that is not a
       local maximum of the raw PPG (it sits on the refine window's edge) the
       beat is dropped (``dropped["not_local_max"]``). A weak pulse is refined
       to the raw local maximum nearest to it in that range instead (a shoulder
       has no higher point nearby). Two R peaks mapping to one PPG peak keep one
       (``dropped["duplicate"]``).

    Returns ``(peaks, info)``: sorted unique int64 indices, and a dict with the
    lag, R-peak count, noise level, per-beat lags (ms) summary, weak-pulse and
    drop counts, and ``weak_peaks`` (the weak subset of the peaks).
    """
    from scipy import signal

    ppg = np.asarray(ppg, dtype=np.float64)
    ecg = np.asarray(ecg, dtype=np.float64)
    if ppg.shape != ecg.shape or ppg.ndim != 1:
        raise DataError(f"PPG {ppg.shape} and ECG {ecg.shape} must be 1-D of equal length")
    if not (np.isfinite(ppg).all() and np.isfinite(ecg).all()):
        raise DataError("PPG or ECG has non-finite samples; cannot derive peaks")
    fs = check_rate(fs, error=DataError, number=True)
    info: dict[str, Any] = {
        "method": "ecg-r-peak + PPG maximum in per-record lag window",
        "lowpass_hz": PPG_LOWPASS_HZ,
        "dropped": {"no_peak": 0, "not_local_max": 0, "duplicate": 0},
        "n_peaks": 0,
        "n_dropped": 0,
        "n_weak": 0,
        "weak_peaks": np.zeros(0, dtype=np.int64),
    }
    empty = np.zeros(0, dtype=np.int64)
    if len(ppg) < int(5 * fs):
        raise DataError(f"{len(ppg)} samples is too short to derive peaks (need >= 5 s)")
    r, rinfo = detect_r_peaks(ecg, fs)
    info.update(rinfo)
    info["r_peaks"] = r
    if r.size < 3:
        log.warning("only %d R peaks found; no reference peaks derived", r.size)
        info["lag_ms"] = None
        info["dropped"]["no_peak"] = info["n_dropped"] = int(r.size)
        return empty, info

    sos = signal.butter(4, PPG_LOWPASS_HZ, btype="lowpass", fs=fs, output="sos")
    f = signal.sosfiltfilt(sos, ppg)
    pk, props = signal.find_peaks(f, prominence=0)
    prom = props["prominences"]
    if pk.size == 0:
        info["lag_ms"] = None
        info["dropped"]["no_peak"] = info["n_dropped"] = int(r.size)
        return empty, info
    typical = float(np.median(np.sort(prom)[::-1][: r.size]))
    clear = prom >= MIN_REL_PROMINENCE * typical
    cand = pk[clear]
    info["typical_prominence"] = typical
    resid = ppg - f
    noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
    weak_cand = pk[~clear & (prom >= WEAK_NOISE_FACTOR * noise) & (prom > 0)]
    info["noise"] = noise

    lag = _estimate_lag(r, cand, fs)
    if lag is None:
        info["lag_ms"] = None
        info["dropped"]["no_peak"] = info["n_dropped"] = int(r.size)
        return empty, info
    info["lag_ms"] = 1000.0 * lag / fs

    rr = np.diff(r)
    rr_prev = np.concatenate([[rr[0]], rr])
    rr_next = np.concatenate([rr, [rr[-1]]])
    half = np.minimum(WINDOW_HALF_S * fs, 0.45 * np.minimum(rr_prev, rr_next))
    refine = max(1, int(round(REFINE_HALF_S * fs)))
    n = len(ppg)
    out: list[int] = []
    weak: list[int] = []
    beat_lag: list[int] = []
    for rp, h in zip(r, half):
        centre = rp + lag
        j = _highest_in(cand, f, centre - h, centre + h)
        is_weak = j is None
        if is_weak:
            j = _highest_in(weak_cand, f, centre - h, centre + h)
        if j is None:
            info["dropped"]["no_peak"] += 1
            continue
        if is_weak:
            k = _nearest_local_max(ppg, j, max(1, j - refine), min(n - 1, j + refine + 1))
        else:
            lo, hi = max(0, j - refine), min(n, j + refine + 1)
            k = lo + int(np.argmax(ppg[lo:hi]))
            if k in (0, n - 1) or (k == lo and lo > 0) or (k == hi - 1 and hi < n) \
                    or ppg[k] < ppg[k - 1] or ppg[k] < ppg[k + 1]:
                k = None
        if k is None:
            info["dropped"]["not_local_max"] += 1
            continue
        if out and k <= out[-1]:
            info["dropped"]["duplicate"] += 1
            continue
        out.append(k)
        if is_weak:
            weak.append(k)
        beat_lag.append(int(k - rp))
    peaks = np.asarray(out, dtype=np.int64)
    info["weak_peaks"] = np.asarray(weak, dtype=np.int64)
    info["n_weak"] = len(weak)
    bl = 1000.0 * np.asarray(beat_lag, dtype=float) / fs
    info["n_peaks"] = int(peaks.size)
    info["beat_lag_ms_median"] = float(np.median(bl)) if bl.size else None
    info["beat_lag_ms_iqr"] = float(np.subtract(*np.percentile(bl, [75, 25]))) if bl.size else None
    info["n_dropped"] = int(sum(info["dropped"].values()))
    return peaks, info


def sliding_rate(peaks: np.ndarray, fs: float, times_s: np.ndarray, window_s: float = 10.0,
                 duration_s: float | None = None) -> np.ndarray:
    """Beat rate (bpm) from the peaks inside a window centred on each time.

    rate = 60 * (n - 1) / (t_last - t_first) over the n peaks inside
    ``[t - window_s/2, t + window_s/2]``; NaN where the window leaves the record
    or holds fewer than two peaks. Counting beats (not taking a median interval)
    means a missed or extra beat shows up in the rate.
    """
    t_peaks = np.asarray(peaks, dtype=float) / fs
    times_s = np.asarray(times_s, dtype=float)
    out = np.full(times_s.shape, np.nan)
    half = window_s / 2
    for i, t in enumerate(times_s):
        if t - half < 0 or (duration_s is not None and t + half > duration_s):
            continue
        a, b = np.searchsorted(t_peaks, [t - half, t + half])
        if b - a >= 2 and t_peaks[b - 1] > t_peaks[a]:
            out[i] = 60.0 * (b - a - 1) / (t_peaks[b - 1] - t_peaks[a])
    return out


def monitor_rate(peaks: np.ndarray, fs: float, times_s: np.ndarray, average_s: float = 10.0,
                 duration_s: float | None = None) -> np.ndarray:
    """Pulse rate (bpm) as a monitor reports it: averaged over the *last*
    ``average_s`` seconds before each time.

    rate = 60 * (n - 1) / (t_last - t_first) over the n peaks inside
    ``[t - average_s, t]`` -- the mean beat interval of that stretch, so a
    missed or an extra beat shows up in the rate. NaN where the window starts
    before the record, ends after it, or holds fewer than two peaks.

    Why a trailing average: the monitor's PULSE numeric is computed from the
    past pleth only and refreshed every ~2 s; Philips IntelliVue documentation
    (instructions for use, SpO2 chapter and specifications) describes it as an
    average over a configurable averaging time shared with SpO2, settings of
    the order of 5-20 s. The default 10 s was chosen with the ECG, not the PPG
    peaks: over the 8 BIDMC records the summed per-record median
    |R-peak rate - PULSE| (lag fitted per record) was 8.22 bpm for 10 s, against
    10.25 / 8.72 / 9.24 for 5 / 15 / 20 s and 9.33 / 8.29 / 8.23 for averages
    over the last 8 / 12 / 16 beats.
    """
    t_peaks = np.asarray(peaks, dtype=float) / fs
    times_s = np.asarray(times_s, dtype=float)
    if not average_s > 0:
        raise DataError(f"averaging time must be positive, got {average_s}")
    out = np.full(times_s.shape, np.nan)
    for i, t in enumerate(times_s):
        if t - average_s < 0 or (duration_s is not None and t > duration_s):
            continue
        a = np.searchsorted(t_peaks, t - average_s, side="left")
        b = np.searchsorted(t_peaks, t, side="right")
        if b - a >= 2 and t_peaks[b - 1] > t_peaks[a]:
            out[i] = 60.0 * (b - a - 1) / (t_peaks[b - 1] - t_peaks[a])
    return out


#: Delays (s) searched for the monitor's PULSE reporting lag: the numeric at
#: second t describes the average over ``[t - lag - average_s, t - lag]``
#: (processing, display refresh and the export's time stamping). Estimated
#: from the ECG per record; on these records it is 3-14 s.
MONITOR_LAG_RANGE_S = (0, 20)


def _shifted(x: np.ndarray, lag: int) -> np.ndarray:
    """``x`` read ``lag`` samples later: out[t] = x[t + lag], NaN past the end."""
    out = np.full(x.shape, np.nan)
    out[: x.size - lag] = x[lag:]
    return out


def monitor_lag(record: Record, window_s: float = 10.0) -> int:
    """The monitor's PULSE reporting delay (whole seconds) for one record.

    Estimated from the ECG, not from the derived PPG peaks: the lag in
    ``MONITOR_LAG_RANGE_S`` that minimises the median |R-peak rate - PULSE|,
    with the rate averaged as the monitor does (:func:`monitor_rate` over the
    last ``window_s`` s). So the check of the PPG peaks is not tuned on the PPG
    peaks themselves.
    """
    pulse = np.asarray(record.labels["pulse_1hz"], dtype=float)
    t = np.arange(pulse.size, dtype=float) / NUMERICS_FS
    r = record.meta.get("r_peaks")
    if r is None:
        r, _ = detect_r_peaks(record.signals["ecg"], record.rates["ecg"])
    rate_r = monitor_rate(r, record.rates["ecg"], t, window_s, record.duration_s)
    best, best_lag = math.inf, 0
    for lag in range(MONITOR_LAG_RANGE_S[0], MONITOR_LAG_RANGE_S[1] + 1):
        d = np.abs(rate_r - _shifted(pulse, lag))
        d = d[np.isfinite(d)]
        if d.size and np.median(d) < best:
            best, best_lag = float(np.median(d)), lag
    return best_lag


def rate_agreement(record: Record, window_s: float = 10.0, lag_s: int | None = None) -> dict[str, Any]:
    """Derived beat rate against the monitor's 1 Hz PULSE numerics.

    The monitor's PULSE is mirrored: the rate of the reference peaks averaged
    over the last ``window_s`` seconds before second t (:func:`monitor_rate`)
    is compared with the PULSE reported at t + lag, where the lag is the
    monitor's reporting delay (``lag_s``, default :func:`monitor_lag`,
    estimated from the ECG R peaks, never from the PPG peaks). Returns ``record_id``,
    ``median_abs_diff_bpm`` (median over the seconds where both exist),
    ``p90_abs_diff_bpm``, ``n_compared``, ``monitor_lag_s``,
    ``ecg_median_abs_diff_bpm`` (the same figure for the ECG R peaks: how well
    the monitor numeric can be matched at all), ``n_beats``, ``n_r_peaks``,
    ``dropped_beats`` (and by reason), ``weak_beats`` (weak pulses accepted), ``lag_ms_median``/``lag_ms_iqr`` (R peak
    to PPG peak per beat: pulse arrival time plus the monitor's PLETH delay) and
    ``pulse_median_bpm``.
    """
    if record.peaks is None:
        raise DataError(f"{record.key}: record has no reference peaks")
    pulse = record.labels.get("pulse_1hz")
    if pulse is None:
        raise DataError(f"{record.key}: record has no 1 Hz PULSE numerics")
    pulse = np.asarray(pulse, dtype=float)
    t = np.arange(pulse.size, dtype=float) / NUMERICS_FS
    if lag_s is None:
        lag_s = monitor_lag(record, window_s)
    target = _shifted(pulse, int(lag_s))
    rate = monitor_rate(record.peaks, record.fs, t, window_s, record.duration_s)
    ok = np.isfinite(rate) & np.isfinite(target)
    diff = np.abs(rate[ok] - target[ok])
    r = record.meta.get("r_peaks")
    if r is None:
        r, _ = detect_r_peaks(record.signals["ecg"], record.rates["ecg"])
    rate_r = monitor_rate(r, record.rates["ecg"], t, window_s, record.duration_s)
    ok_r = np.isfinite(rate_r) & np.isfinite(target)
    diff_r = np.abs(rate_r[ok_r] - target[ok_r])
    deriv = record.meta.get("peaks_derivation", {})
    return {
        "record_id": record.record_id,
        "median_abs_diff_bpm": float(np.median(diff)) if diff.size else math.nan,
        "p90_abs_diff_bpm": float(np.percentile(diff, 90)) if diff.size else math.nan,
        "n_compared": int(diff.size),
        "monitor_lag_s": int(lag_s),
        "ecg_median_abs_diff_bpm": float(np.median(diff_r)) if diff_r.size else math.nan,
        "n_beats": int(record.peaks.size),
        "n_r_peaks": deriv.get("n_r_peaks"),
        "dropped_beats": deriv.get("n_dropped"),
        "weak_beats": deriv.get("n_weak", 0),
        "dropped_by_reason": dict(deriv.get("dropped", {})),
        "lag_ms_median": deriv.get("beat_lag_ms_median"),
        "lag_ms_iqr": deriv.get("beat_lag_ms_iqr"),
        "pulse_median_bpm": float(np.nanmedian(pulse)) if np.isfinite(pulse).any() else math.nan,
        "window_s": window_s,
    }


def agreement_table(folder: Path, window_s: float = 10.0) -> list[dict[str, Any]]:
    """:func:`rate_agreement` for every record with signals in ``folder``."""
    from tqdm import tqdm

    rows = []
    for rid in tqdm(list_records(folder), desc="bidmc agreement", unit="record", leave=False):
        rows.append(rate_agreement(load_record(folder, rid), window_s))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`agreement_table` rows."""
    head = (f"{'record':<10} {'beats':>5} {'R':>5} {'drop':>4} {'weak':>4} {'lag_ms':>7} {'lagIQR':>6} {'pulse':>6} "
            f"{'mon_lag':>7} {'MAD_bpm':>7} {'p90':>5} {'ECG_MAD':>7} {'n':>4}")
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['record_id']:<10} {r['n_beats']:>5} {r['n_r_peaks']:>5} {r['dropped_beats']:>4} "
            f"{r.get('weak_beats', 0):>4} "
            f"{r['lag_ms_median']:>7.0f} {r['lag_ms_iqr']:>6.0f} {r['pulse_median_bpm']:>6.1f} "
            f"{r['monitor_lag_s']:>7} {r['median_abs_diff_bpm']:>7.2f} {r['p90_abs_diff_bpm']:>5.2f} "
            f"{r['ecg_median_abs_diff_bpm']:>7.2f} {r['n_compared']:>4}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m ppg_edge.data.bidmc [--data-root DIR] [--window S]``: print the agreement table."""
    import argparse

    from .. import config

    parser = argparse.ArgumentParser(prog="python -m ppg_edge.data.bidmc", description=main.__doc__)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--window", type=float, default=10.0, help="sliding-rate window in s")
    args = parser.parse_args(argv)
    folder = config.data_root(args.data_root) / FOLDER
    print(format_table(agreement_table(folder, args.window)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
