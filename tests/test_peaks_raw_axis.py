"""The one raw-axis mapping (``peaks_decode.snap_to_raw``) shared by the offline detector
and the streaming decoder."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.edge_runtime.peaks_decode import centred_moving_average, raw_snap_lookahead, snap_to_raw
from ppg_edge.errors import DataError
from ppg_edge.synth import synth_ppg

FS = 125.0


def _noisy(rng, seconds=30.0):
    sig = synth_ppg(seconds, FS, rng, hr_bpm=70.0)
    x, peaks = np.asarray(sig.signal, dtype=np.float64), np.asarray(sig.peaks, dtype=np.int64)
    return x + rng.normal(0, 0.15 * x.std(), x.size), x, peaks


def test_moving_average_is_centred_and_keeps_length():
    x = np.zeros(41)
    x[20] = 1.0
    y = centred_moving_average(x, FS, 0.04)  # 5 samples at 125 Hz
    assert y.shape == x.shape and np.flatnonzero(y).mean() == 20 and np.isclose(y.sum(), 1.0)
    assert np.array_equal(centred_moving_average(x, FS, 0.0), x)


def test_snap_lands_on_true_peaks_and_smoothing_helps_under_noise(rng):
    noisy, clean, peaks = _noisy(rng)
    start = np.clip(peaks + rng.integers(-3, 4, peaks.size), 0, clean.size - 1)
    assert np.array_equal(snap_to_raw(start, clean, FS, 0.03), np.unique(peaks))
    plain = snap_to_raw(start, noisy, FS, 0.03)
    smoothed = snap_to_raw(start, noisy, FS, 0.03, smooth_s=0.04, refine_s=0.008)
    err = lambda p: np.mean([np.min(np.abs(peaks - q)) for q in p])  # noqa: E731
    assert err(smoothed) < err(plain), (err(smoothed), err(plain))


def test_a_slice_reaching_the_lookahead_gives_the_whole_record_answer(rng):
    """What the streaming decoder relies on: snapping inside a slice that reaches
    ``raw_snap_lookahead`` samples (and as many before) past the beat equals the offline
    answer on the whole record."""
    noisy, _, peaks = _noisy(rng)
    kw = dict(radius_s=0.03, smooth_s=0.04, refine_s=0.008)
    whole = snap_to_raw(peaks[2:-2], noisy, FS, **kw)
    la = raw_snap_lookahead(FS, **kw)
    for p, w in zip(peaks[2:-2], whole):
        lo, hi = p - la, p + la + 1
        got = lo + snap_to_raw([la], noisy[lo:hi], FS, **kw)[0]
        assert got == w, (p, got, w)


def test_bad_positions_and_raw_are_clean_errors():
    with pytest.raises(DataError):
        snap_to_raw([5], np.zeros(3), FS, 0.03)
    with pytest.raises(DataError):
        snap_to_raw([0], np.zeros((2, 2)), FS, 0.03)


def test_stream_decoder_refuses_negative_raw_axis_settings():
    from ppg_edge.edge_runtime.decoder import StreamDecoder
    from ppg_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="raw_smooth_s"):
        StreamDecoder(FS, 250, 125, {"raw_axis_shift_samples": 2, "raw_smooth_s": -0.01})


def test_sweep_without_ray_installed_is_a_clean_error(monkeypatch, tmp_path):
    import sys

    from ppg_edge.errors import ConfigError
    from ppg_edge.train.peaks.train import sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match="Ray Tune"):
        sweep(["Type16"], tmp_path, use_ray=True)
