"""Synthetic PPG for the evaluate tests: two Gaussians per beat, known peaks.

Not a conftest: the test modules import it directly (``tests`` is on
``sys.path`` under pytest's default rootdir-based import mode).
"""
from __future__ import annotations

import numpy as np

from ppg_edge.data.record import Record


def two_gaussian_ppg(fs: float, duration_s: float, hr_bpm: float, rng: np.random.Generator,
                     rr_jitter: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """A PPG-like signal (systolic Gaussian + smaller, wider diastolic one per beat)
    and the sample index of every systolic peak (the true maximum of each beat)."""
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    rr = 60.0 / hr_bpm
    onsets = []
    tb = 0.3 * rng.random()
    while tb < duration_s:
        onsets.append(tb)
        tb += rr * (1.0 + rr_jitter * rng.standard_normal())
    x = np.zeros(n)
    centres = []
    for tb in onsets:
        c_sys, c_dia = tb + 0.18 * rr, tb + 0.45 * rr
        x += np.exp(-0.5 * ((t - c_sys) / (0.07 * rr)) ** 2)
        x += 0.45 * np.exp(-0.5 * ((t - c_dia) / (0.12 * rr)) ** 2)
        centres.append(c_sys)
    peaks = []
    half = int(0.1 * rr * fs)
    for c in centres:
        i = int(round(c * fs))
        lo, hi = max(0, i - half), min(n, i + half + 1)
        if i - half < 1 or i + half >= n - 1:  # keep only beats fully inside the record
            continue
        peaks.append(lo + int(np.argmax(x[lo:hi])))
    return 1000.0 + 50.0 * x, np.asarray(peaks, dtype=np.int64)


def make_record(dataset: str, rid: str, fs: float, duration_s: float, hr_bpm: float,
                rng: np.random.Generator, with_peaks: bool = True) -> Record:
    x, peaks = two_gaussian_ppg(fs, duration_s, hr_bpm, rng)
    return Record(dataset=dataset, record_id=rid, subject_id=f"{dataset}-{rid}",
                  signals={"ppg": x}, rates={"ppg": fs},
                  peaks=peaks if with_peaks else None)


def white_noise(x, fs, kind, snr_db, rng, reference=None):
    """Gaussian white noise at ``snr_db`` against the power of the mean-removed signal
    (a stand-in for ppg_edge.synth.add_noise with the same signature)."""
    if kind != "gaussian":
        raise ValueError(f"test noise only does gaussian, not {kind}")
    ref = np.asarray(x if reference is None else reference, dtype=float)
    p_sig = np.mean((ref - ref.mean()) ** 2)
    sigma = np.sqrt(p_sig / 10 ** (snr_db / 10))
    return np.asarray(x, dtype=float) + sigma * rng.standard_normal(len(x))


def local_max_detector(x, fs):
    """A simple numpy detector for fast harness tests: local maxima above the median,
    at least 0.3 s apart (the larger one wins)."""
    x = np.asarray(x, dtype=float)
    cand = np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > np.median(x))) + 1
    keep: list[int] = []
    gap = int(0.3 * fs)
    for i in cand[np.argsort(-x[cand], kind="stable")]:
        if all(abs(i - k) >= gap for k in keep):
            keep.append(int(i))
    return np.sort(np.asarray(keep, dtype=np.int64))
