"""Polyphase resampling of records with exact peak mapping."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.data.record import Record
from ppg_edge.data.resample import map_indices, rational_factor, resample_record
from ppg_edge.errors import ConfigError, DataError


def _pulse_train(rng, fs, seconds=20.0, hr=72.0):
    """Smooth pulses (Gaussian, sigma 80 ms) at known times; peaks exact at fs."""
    n = int(seconds * fs)
    t = np.arange(n) / fs
    times = np.cumsum(60 / hr * (1 + 0.05 * rng.standard_normal(int(seconds * hr / 60) + 2)))
    times = times[(times > 0.5) & (times < seconds - 0.5)]
    peaks = np.round(times * fs).astype(int)
    x = np.zeros(n)
    for p in peaks:
        x += np.exp(-0.5 * ((t - p / fs) / 0.08) ** 2)
    return x, peaks


def _nearest_local_max_offset(y, m, half):
    lo, hi = max(0, m - half), min(len(y), m + half + 1)
    return lo + int(np.argmax(y[lo:hi])) - m


@pytest.mark.parametrize("fs, target", [(300.0, 125.0), (125.0, 100.0), (1000.0, 125.0), (125.0, 250.0),
                                        (25.0, 125.0), (128.0, 125.0)])
def test_synthetic_peaks_land_on_local_maxima(rng, fs, target):
    x, peaks = _pulse_train(rng, fs)
    rec = Record("syn", "r1", "s1", {"ppg": x, "ecg": x[::-1].copy()}, {"ppg": fs, "ecg": fs}, peaks=peaks)
    out = resample_record(rec, target)
    assert out.rates == {"ppg": target, "ecg": target} and out.fs == target
    assert abs(len(out.ppg) - len(x) * target / fs) <= 1
    assert len(out.signals["ecg"]) == len(out.ppg)
    assert out.peaks.size == peaks.size and out.meta["resample"]["peaks_removed"] == 0
    offsets = [_nearest_local_max_offset(out.ppg, int(m), int(0.1 * target)) for m in out.peaks]
    assert max(abs(o) for o in offsets) <= 1
    # the mapping is by time: same instants within half an output sample
    assert np.max(np.abs(out.peaks / target - peaks / fs)) <= 0.5 / target + 1e-12
    # the input record is untouched
    assert rec.fs == fs and np.array_equal(rec.peaks, peaks)


def test_rational_factor_and_exact_rates():
    assert rational_factor(300, 125) == (5, 12)
    assert rational_factor(125, 125) == (1, 1)
    assert rational_factor(44100, 48000) == (160, 147)
    rec = Record("syn", "r", "s", {"ppg": np.sin(np.arange(300.0))}, {"ppg": 30.0})
    assert resample_record(rec, 30.0).ppg.tolist() == rec.ppg.tolist()
    # 1000/3 Hz -> 100 Hz is 3/10 exactly; the stored rate is the requested one
    rec = Record("syn", "r", "s", {"ppg": np.zeros(1000)}, {"ppg": 1000 / 3})
    assert resample_record(rec, 100.0).fs == 100.0
    # an irrational ratio: the stored rate is the true one, not the requested one
    rec = Record("syn", "r", "s", {"ppg": np.zeros(2000)}, {"ppg": 100.0})
    out = resample_record(rec, 100.0 * np.sqrt(2), max_denominator=50)
    up, down = rational_factor(100.0, 100.0 * np.sqrt(2), 50)
    assert out.fs == 100.0 * up / down and out.fs != 100.0 * np.sqrt(2)


def test_one_rational_factor_for_both_resamplers():
    from ppg_edge.dsp.rates import rational_factor as shared
    from ppg_edge.edge_runtime import resample as stream

    assert rational_factor is shared and stream.rational_factor is shared  # the stream's nominal grid


@pytest.mark.parametrize("rate,msg", [(None, "is missing"), (" ", "is missing"), ("fast", "not a number"),
                                      (0, "not a positive finite rate"), (-1.0, "not a positive finite rate"),
                                      (float("nan"), "not a positive finite rate"),
                                      (float("inf"), "not a positive finite rate")])
def test_one_rate_check_for_files_and_signals(rate, msg):
    """The loaders (DataError naming the file) and the signal code (ConfigError) share one check."""
    from ppg_edge.data._io import check_rate as file_rate
    from ppg_edge.dsp.pulses import find_pulse_feet
    from ppg_edge.dsp.rates import check_rate

    assert check_rate("125") == 125.0 and file_rate(np.float32(100), "f.txt") == 100.0
    with pytest.raises(ConfigError, match=f"sampling rate .*{msg}"):
        check_rate(rate)
    with pytest.raises(DataError, match=f"^f.txt: PPG_fs .*{msg}"):
        file_rate(rate, "f.txt", "PPG_fs")
    with pytest.raises(ConfigError, match=msg):
        find_pulse_feet(np.zeros(500), rate)


@pytest.mark.parametrize("fs", ["125", True, float("inf"), -125.0])
def test_signal_code_takes_a_rate_only_as_a_positive_finite_number(fs):
    """Text that reads as a number is a file's field, not an argument of the signal code, and
    a bool is never a rate: the one check refuses both where a number is due, and inf."""
    from ppg_edge.dsp.derivatives import backward_diff
    from ppg_edge.dsp.filters import check_band
    from ppg_edge.dsp.rates import check_rate
    from ppg_edge.edge_runtime.decoder import StreamDecoder

    for call in (lambda: check_rate(fs, number=True), lambda: StreamDecoder(fs, 250, 225),
                 lambda: backward_diff(np.zeros(10), fs), lambda: check_band(0.5, 8.0, fs)):
        with pytest.raises(ConfigError, match="not a number|not a positive finite rate"):
            call()


def test_peak_mapping_clips_and_counts_duplicates():
    mapped, removed = map_indices(np.array([0, 1, 2, 3, 10, 11]), 1, 4, 3)
    assert mapped.tolist() == [0, 1, 2] and removed == 3
    mapped, removed = map_indices(np.array([2, 6]), 1, 4, 100)  # 0.5 and 1.5 round half up
    assert mapped.tolist() == [1, 2] and removed == 0
    x = np.zeros(600)
    rec = Record("syn", "r", "s", {"ppg": x}, {"ppg": 300.0}, peaks=np.array([10, 11, 12, 599]))
    out = resample_record(rec, 25.0)
    assert out.peaks.tolist() == [1, 49] and out.meta["resample"]["peaks_removed"] == 2


@pytest.mark.parametrize("bad", [0, -125.0, float("nan"), float("inf"), "125"])
def test_bad_rate(bad):
    rec = Record("syn", "r", "s", {"ppg": np.zeros(100)}, {"ppg": 100.0})
    with pytest.raises(ConfigError, match="positive finite"):
        resample_record(rec, bad)


def test_nan_input_rejected():
    x = np.zeros(100)
    x[7] = np.nan
    rec = Record("syn", "r", "s", {"ppg": x}, {"ppg": 100.0})
    with pytest.raises(DataError, match="'ppg' has 1 non-finite"):
        resample_record(rec, 50.0)


def _read_capnobase(path):
    """Minimal reader for the test (the project loader belongs to another module):
    line 5 rate, line 8 1-based peak indices, line 11 samples."""
    lines = path.read_text().splitlines()
    fs = float(lines[4])
    peaks = np.array([int(v) for v in lines[7].split(",") if v.strip()]) - 1
    x = np.array([float(v) for v in lines[10].split(",") if v.strip()])
    return fs, x, peaks


def test_capnobase_300_to_125(data_root):
    path = data_root / "capnobase" / "capnobase_0009.csv"
    fs, x, peaks = _read_capnobase(path)
    assert fs == 300.0
    # expert labels sit within a sample or two of a raw local maximum; use those maxima
    true = np.array([p + _nearest_local_max_offset(x, int(p), 6) for p in peaks])
    rec = Record("capnobase", "0009", "0009", {"ppg": x}, {"ppg": fs}, peaks=np.unique(true))
    out = resample_record(rec, 125.0)
    assert out.fs == 125.0 and out.meta["resample"]["factors"]["ppg"] == [5, 12]
    assert out.peaks.size == np.unique(true).size
    y = out.ppg
    is_max = np.zeros(y.size, bool)
    is_max[1:-1] = (y[1:-1] >= y[:-2]) & (y[1:-1] >= y[2:])
    near = is_max[np.clip(out.peaks - 1, 0, y.size - 1)] | is_max[out.peaks] | \
        is_max[np.clip(out.peaks + 1, 0, y.size - 1)]
    # (about 1 % are small noise maxima at 300 Hz on a flat top that the 62.5 Hz
    # anti-alias low-pass removes; they move by 2 samples, never more)
    assert near.mean() >= 0.98, out.peaks[~near]
    # and that maximum is the pulse's top: the largest value within +-40 ms for nearly all
    offsets = np.array([_nearest_local_max_offset(y, int(m), 5) for m in out.peaks])
    assert np.mean(np.abs(offsets) <= 1) >= 0.98, np.unique(offsets, return_counts=True)
    assert np.max(np.abs(offsets)) <= 2
