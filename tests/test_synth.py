"""Synthetic PPG: physiology over a grid of rates, exact peak truth, noise models and SNR."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, DataError
from ppg_edge.synth import NOISE_KINDS, add_noise, band_power, make_noise, synth_ppg


@pytest.mark.parametrize("fs", [25.0, 50.0, 125.0, 500.0])
@pytest.mark.parametrize("hr", [40.0, 75.0, 120.0, 180.0])
def test_rate_from_true_peaks_matches_requested(hr, fs, rng):
    s = synth_ppg(60.0, fs, rng, hr_bpm=hr)
    assert s.unverified == 0
    measured = 60.0 / np.mean(np.diff(s.peaks) / fs)
    assert measured == pytest.approx(hr, rel=0.03)
    # one peak per beat that starts inside the record (edge beats may fall either side)
    assert abs(s.peaks.size - s.beat_times_s.size) <= 2
    # every peak is a local maximum, and the highest sample of its own pulse (trough to trough)
    x = s.signal
    assert np.all(x[s.peaks] > x[s.peaks - 1]) and np.all(x[s.peaks] >= x[s.peaks + 1])
    tr = [a + 1 + int(np.argmin(x[a + 1:b])) for a, b in zip(s.peaks[:-1], s.peaks[1:])]  # troughs
    for k, p in enumerate(s.peaks[1:-1]):
        assert x[tr[k]:tr[k + 1] + 1].max() == x[p]


def test_variability_is_there_and_controllable(rng):
    calm = synth_ppg(120.0, 125.0, rng, hr_bpm=70, hrv=0.0, rsa=0.0, amp_var=0.0, riav=0.0, morph_var=0.0)
    live = synth_ppg(120.0, 125.0, rng, hr_bpm=70, hrv=0.05, rsa=0.05)
    rr_calm, rr_live = np.diff(calm.peaks) / 125.0, np.diff(live.peaks) / 125.0
    assert np.std(rr_calm) < 0.01  # only sampling jitter
    assert np.std(rr_live) > 3 * np.std(rr_calm)
    assert np.std(calm.signal[calm.peaks]) < 0.01 < np.std(live.signal[live.peaks])
    # respiratory sinus arrhythmia: the RR series carries power at the breathing rate
    rsa_only = synth_ppg(240.0, 125.0, rng, hr_bpm=60, hrv=0.0, rsa=0.08, resp_hz=0.25)
    rr = rsa_only.rr_s - rsa_only.rr_s.mean()
    spec = np.abs(np.fft.rfft(rr)) ** 2
    freqs = np.fft.rfftfreq(rr.size, d=1.0)  # ~1 beat per second at 60 bpm
    assert abs(freqs[np.argmax(spec[1:]) + 1] - 0.25) < 0.03


def test_seeded_generator_reproduces():
    a = synth_ppg(10.0, 125.0, np.random.default_rng(7))
    b = synth_ppg(10.0, 125.0, np.random.default_rng(7))
    c = synth_ppg(10.0, 125.0, np.random.default_rng(8))
    np.testing.assert_array_equal(a.signal, b.signal)
    np.testing.assert_array_equal(a.peaks, b.peaks)
    assert not np.array_equal(a.signal, c.signal)


@pytest.mark.parametrize("kwargs", [dict(duration_s=0), dict(fs=-1), dict(hr_bpm=10), dict(hr_bpm=300),
                                    dict(hrv=0.9), dict(diastolic_ratio=1.2), dict(duration_s=0.01),
                                    dict(fs=float("nan"))])
def test_synth_bad_settings(kwargs, rng):
    args = dict(duration_s=10.0, fs=125.0)
    args.update(kwargs)
    with pytest.raises(ConfigError):
        synth_ppg(args.pop("duration_s"), args.pop("fs"), rng, **args)


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0, 0.0])
def test_add_noise_hits_the_snr(kind, snr_db, rng):
    s = synth_ppg(30.0, 250.0, rng, hr_bpm=70)
    noisy = add_noise(s.signal, 250.0, kind, snr_db, rng)
    achieved = 10 * np.log10(band_power(s.signal, 250.0) / np.mean((noisy - s.signal) ** 2))
    assert abs(achieved - snr_db) < 0.1


def test_reference_lets_noise_stack(rng):
    s = synth_ppg(30.0, 125.0, rng)
    once = add_noise(s.signal, 125.0, "baseline", 10.0, rng)
    twice = add_noise(once, 125.0, "gaussian", 10.0, rng, reference=s.signal)
    achieved = 10 * np.log10(band_power(s.signal, 125.0) / np.mean((twice - once) ** 2))
    assert abs(achieved - 10.0) < 0.1
    p = band_power(s.signal, 125.0)
    again = add_noise(s.signal, 125.0, "gaussian", 3.0, rng, reference=p)
    assert abs(10 * np.log10(p / np.mean((again - s.signal) ** 2)) - 3.0) < 0.1


def _dominant_hz(x, fs):
    spec = np.abs(np.fft.rfft(x - x.mean()))
    return np.fft.rfftfreq(x.size, 1 / fs)[np.argmax(spec)]


def test_noise_models_have_their_character(rng):
    fs, n = 250.0, 250 * 60
    assert 0.05 <= _dominant_hz(make_noise(n, fs, "baseline", rng), fs) <= 0.5
    assert _dominant_hz(make_noise(n, fs, "mains50", rng), fs) == pytest.approx(50.0, abs=0.05)
    assert _dominant_hz(make_noise(n, fs, "mains60", rng), fs) == pytest.approx(60.0, abs=0.05)
    # sampled at 100 Hz, 60 Hz mains shows up aliased at 40 Hz
    assert _dominant_hz(make_noise(6000, 100.0, "mains60", rng), 100.0) == pytest.approx(40.0, abs=0.05)
    g = make_noise(n, fs, "gaussian", rng)
    half = np.abs(np.fft.rfft(g)) ** 2
    lo, hi = half[1: half.size // 2].mean(), half[half.size // 2:].mean()
    assert 0.8 < lo / hi < 1.25  # white
    m = make_noise(n, fs, "motion", rng)
    assert np.mean(np.abs(m) > 0.05 * np.abs(m).max()) < 0.6  # bumps, not a continuous hum


def test_add_noise_bad_input(rng):
    x = synth_ppg(10.0, 125.0, rng).signal
    with pytest.raises(ConfigError, match="valid"):
        add_noise(x, 125.0, "pink", 10.0, rng)
    with pytest.raises(DataError):
        add_noise(np.zeros(1000), 125.0, "gaussian", 10.0, rng)  # no band power: SNR undefined
    with pytest.raises(DataError):
        add_noise(np.array([1.0, np.nan]), 125.0, "gaussian", 10.0, rng)
    with pytest.raises(DataError):
        add_noise(np.zeros(0), 125.0, "gaussian", 10.0, rng)
    with pytest.raises(DataError):
        add_noise(x, 125.0, "gaussian", 10.0, rng, reference=x[:10])
    with pytest.raises(ConfigError):
        add_noise(x, 125.0, "gaussian", float("inf"), rng)
