"""The paper's classic db4 wavelet detector on synthetic two-Gaussian pulses with known peaks."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, DataError, PPGEdgeError
from ppg_edge.evaluate import dwt_baseline
from ppg_edge.metrics.peaks import peak_scores

FS = 125.0


def two_gaussian_ppg(hr_bpm, fs=FS, duration_s=30.0, rng=None, jitter=0.0, noise=0.0):
    """PPG as a systolic + diastolic Gaussian per beat; returns (signal, true peak indices).

    The true peak of each beat is the actual local maximum of the clean sum near the
    systolic centre (the diastolic tail shifts it slightly), found numerically.
    """
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    period = 60.0 / hr_bpm
    onsets, o = [], 0.1
    while o < duration_s:
        onsets.append(o)
        step = period * (1.0 + (rng.normal(0.0, jitter) if jitter else 0.0))
        o += max(step, 0.5 * period)
    x = np.zeros(n)
    for o in onsets:
        x += np.exp(-0.5 * ((t - (o + 0.25 * period)) / (0.07 * period)) ** 2)
        x += 0.45 * np.exp(-0.5 * ((t - (o + 0.55 * period)) / (0.10 * period)) ** 2)
    peaks = []
    for o in onsets:
        c = int(round((o + 0.25 * period) * fs))
        r = int(0.1 * period * fs) + 1
        lo, hi = max(0, c - r), min(n, c + r + 1)
        if hi - lo < 3:
            continue
        i = lo + int(np.argmax(x[lo:hi]))
        if 0 < i < n - 1 and x[i] >= x[i - 1] and x[i] >= x[i + 1]:
            peaks.append(i)
    if noise:
        x = x + rng.normal(0.0, noise, n)
    return x, np.array(peaks, dtype=np.int64)


@pytest.mark.parametrize("hr", [45, 60, 75, 90, 105, 120, 135, 150])
def test_clean_pulses_f1_over_grid(hr, rng):
    x, ref = two_gaussian_ppg(hr, jitter=0.03, rng=rng)
    det = dwt_baseline.detect(x, FS)
    s = peak_scores(ref, det, FS, int(round(0.05 * FS)) / FS)
    assert s["f1"] >= 0.98, (hr, s["tp"], s["fp"], s["fn"])
    # the detected rate matches the simulated rate
    assert np.median(np.diff(det)) / FS == pytest.approx(60.0 / hr, rel=0.08)


def test_peaks_are_ppg_local_maxima_and_respect_min_interval(rng):
    x, _ = two_gaussian_ppg(80, rng=rng, noise=0.02)
    det = dwt_baseline.detect(x, FS)
    assert det.size > 0
    assert np.all(np.diff(det) >= int(round(0.3 * FS)))
    assert np.all((x[det] >= x[det - 1]) & (x[det] >= x[det + 1]))


def test_amplitude_scale_and_offset_do_not_matter(rng):
    x, ref = two_gaussian_ppg(70, rng=rng, jitter=0.02)
    a = dwt_baseline.detect(x, FS)
    b = dwt_baseline.detect(1000.0 * x - 37.0, FS)
    np.testing.assert_array_equal(a, b)


def test_flat_and_tiny_signals_give_no_peaks():
    assert dwt_baseline.detect(np.ones(500), FS).size == 0
    assert dwt_baseline.detect(np.array([1.0, 2.0]), FS).size == 0


@pytest.mark.parametrize(
    "signal, fs, exc",
    [
        (np.array([0.0, np.nan, 1.0, 0.0]), FS, DataError),
        (np.zeros((10, 2)), FS, DataError),
        (np.zeros(100), 0.0, ConfigError),
        (np.zeros(100), float("nan"), ConfigError),
    ],
)
def test_bad_input_raises_clear_error(signal, fs, exc):
    with pytest.raises(exc) as info:
        dwt_baseline.detect(signal, fs)
    assert isinstance(info.value, PPGEdgeError)
