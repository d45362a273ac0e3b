"""The device's arbitrary-ratio streaming resampler and the sensor-rate tracking that drives it.

Error bounds (relative to the test signal's peak amplitude, away from the edges; the module
docstring of ``edge_runtime/resample.py`` quotes them):

- against ``scipy.signal.resample_poly`` for rational ratios: < 1e-4 (the same kernel; what
  differs is the phase interpolation and resample_poly's normalisation on its upsampled grid);
- against exact band-limited resampling (sines evaluated at the output times) for any ratio,
  signals up to 0.4 of the lower Nyquist: < 2e-3 (the Kaiser design's passband ripple,
  which resample_poly shares: its own error against the same reference is the same size).

``pytest -s -k error`` prints the measured figures.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ppg_edge.edge_runtime.pipeline import ArrayReplay, FloatBlock, Pipeline
from ppg_edge.edge_runtime.resample import RateEstimator, StreamResampler, check_rate_for
from ppg_edge.edge_runtime.sinks import MemorySink
from ppg_edge.edge_runtime.stream import FLAG_LOST
from ppg_edge.errors import ConfigError, DataError

POLY_BOUND = 1e-4
BANDLIMITED_BOUND = 2e-3


def _sines(rng, fs_lo: float, n_sines: int = 20, frac: float = 0.4):
    """A band-limited signal: sines up to ``frac`` of the Nyquist of ``fs_lo``, as a function of time."""
    fr = rng.uniform(0.1, frac * fs_lo / 2, n_sines)
    ph = rng.uniform(0, 2 * np.pi, n_sines)
    return lambda t: np.sin(2 * np.pi * fr[:, None] * np.asarray(t)[None, :] + ph[:, None]).sum(axis=0)


def _split_push(r: StreamResampler, x, rng, flags=None):
    ys, fs, i = [], [], 0
    while i < x.size:
        k = int(rng.integers(1, 60))
        y, f = r.push(x[i:i + k], None if flags is None else flags[i:i + k])
        ys.append(y)
        fs.append(f)
        i += k
    return np.concatenate(ys), np.concatenate(fs)


@pytest.mark.parametrize("fs_in,fs_out", [(100, 125), (25, 125), (50, 125), (1000, 125), (300, 125), (125, 100)])
def test_error_against_resample_poly_for_rational_ratios(fs_in, fs_out, rng):
    from scipy.signal import resample_poly  # reference only

    sig = _sines(rng, min(fs_in, fs_out))
    x = sig(np.arange(int(40 * fs_in)) / fs_in)
    frac = Fraction(fs_out, fs_in)
    ref = resample_poly(x, frac.numerator, frac.denominator)
    y, _ = _split_push(StreamResampler(fs_in, fs_out), x, rng)
    edge = int(2 * fs_out)  # resample_poly pads with zeros; the stream holds the first sample
    n = y.size
    assert 0 <= ref.size - n <= 10 * max(1, fs_out / fs_in) + 12  # the latency: about 10 input samples
    err = np.abs(y[edge:n - edge] - ref[edge:n - edge]).max() / np.abs(x).max()
    print(f"{fs_in} -> {fs_out} Hz: max error vs resample_poly {err:.2e} of the peak")
    assert err < POLY_BOUND, f"{fs_in} -> {fs_out} Hz: max error {err:.3e} vs resample_poly"


@pytest.mark.parametrize("fs_in,fs_out", [(100.418, 125), (117, 125), (140.5, 125), (29.97, 125),
                                          (100, 125), (1000, 125), (98.37, 100)])
def test_error_against_exact_bandlimited_resampling(fs_in, fs_out, rng):
    sig = _sines(rng, min(fs_in, fs_out))
    x = sig(np.arange(int(40 * fs_in)) / fs_in)
    y, _ = _split_push(StreamResampler(fs_in, fs_out), x, rng)
    ref = sig(np.arange(y.size) / fs_out)  # output m sits at m / fs_out s
    edge = int(2 * fs_out)
    err = np.abs(y[edge:-edge] - ref[edge:-edge]).max() / np.abs(x).max()
    print(f"{fs_in} -> {fs_out} Hz: max error vs exact band-limited {err:.2e} of the peak")
    assert err < BANDLIMITED_BOUND, f"{fs_in} -> {fs_out} Hz: max error {err:.3e} vs exact band-limited"


@pytest.mark.parametrize("fs_in,fs_out", [(100.418, 125), (100, 125), (125, 100), (100, 100), (1000, 125),
                                          (25, 125)])
def test_any_split_of_the_input_gives_the_same_output(fs_in, fs_out, rng):
    x = np.cumsum(rng.standard_normal(3000))
    flags = np.zeros(x.size, dtype=np.uint8)
    flags[[100, 1500, 2999]] = FLAG_LOST
    r = StreamResampler(fs_in, fs_out)
    y1, f1 = r.push(x, flags)
    y2, f2 = _split_push(StreamResampler(fs_in, fs_out), x, rng, flags)
    assert np.array_equal(y1, y2) and np.array_equal(f1, f2)
    assert r.inputs_needed(y1.size) <= x.size < r.inputs_needed(y1.size + 1)
    if fs_in == fs_out:
        assert r.identity and np.array_equal(y1, x)


def test_flags_nan_and_rates():
    r = StreamResampler(100.418, 125)
    f = np.zeros(400, dtype=np.uint8)
    f[200] = FLAG_LOST
    y, fo = r.push(np.ones(400), f)
    hit = np.flatnonzero(fo)
    assert hit.size and np.all(np.abs(r.out_index_to_in(hit) - 200) <= 2)
    np.testing.assert_allclose(y, 1.0, atol=2e-3)  # the Kaiser design's ripple between phases
    with pytest.raises(DataError, match="NaN"):
        r.push(np.array([1.0, np.nan]))
    for bad in (20.0, 1600.0):
        with pytest.raises(ConfigError, match="outside the 25-1000 Hz"):
            StreamResampler(bad, 125)
    with pytest.raises(ConfigError):
        StreamResampler(0, 125)
    with pytest.raises(ConfigError):
        StreamResampler(100, float("nan"))
    spec = type("Spec", (), {"band": (0.5, 20.0), "fs": 100.0})()
    with pytest.raises(ConfigError, match="cannot carry"):
        check_rate_for(30.0, spec, "BP model")


def test_steering_moves_the_step_smoothly_and_leaves_identity(rng):
    for fs_in, fs_out in ((100.0, 125.0), (100.0, 100.0)):
        sig = _sines(rng, 100.0, frac=0.1)
        true_fs = 100.4
        x = sig(np.arange(6000) / true_fs)
        r = StreamResampler(fs_in, fs_out)
        ys = [r.push(x[:1000])[0]]
        assert r.steer(true_fs) and not r.identity
        assert not r.steer(true_fs)  # the same clock model changes nothing
        ys.append(r.push(x[1000:])[0])
        y = np.concatenate(ys)
        p = r.out_index_to_in(np.arange(y.size))
        step = np.diff(p)
        assert np.all(np.abs(step / (true_fs / fs_out) - 1) <= 0.0101)  # never more than 1 % off the rate
        # no phase jump: the step changes at a steer by the rate change and the 1 % pull at most
        assert np.abs(np.diff(step)).max() <= 0.015 * step.mean()
        assert np.abs(np.diff(step)[ys[0].size + 1:]).max() < 1e-4 * step.mean()  # then it settles smoothly
        # the output follows its own position map: the signal at those input times
        ref = sig(p / true_fs)
        err = np.abs(y[300:-300] - ref[300:-300]).max() / np.abs(x).max()
        assert err < BANDLIMITED_BOUND, err
        # and converges onto the clock: output m at m / fs_out s
        late = np.arange(y.size - 200, y.size)
        assert np.abs(p[late] - late * true_fs / fs_out).max() < 0.05


def _pulse_record(true_fs: float, seconds: float, rng):
    """A pulse train (Gaussian pulses, maxima at known times) sampled at ``true_fs``."""
    rr = 0.8 + 0.08 * np.sin(np.arange(int(seconds / 0.7) + 2) * 0.3)  # beats to the end
    beats = np.cumsum(rr)
    beats = beats[beats < seconds - 1]
    t = np.arange(int(seconds * true_fs)) / true_fs
    x = np.zeros(t.size)
    for b in beats:
        x += np.exp(-0.5 * ((t - b) / 0.07) ** 2)
    return x + 0.002 * rng.standard_normal(t.size), beats


def _jittered_blocks(x, true_fs, nominal, rng, block=17, jitter_s=0.01, lost_at=None):
    """Sensor blocks of ``x`` with read times = last sample's true time + a random delay (up to
    ``jitter_s``, one read in 40 late by 0.2 s); samples ``lost_at`` (start, count) are lost."""
    out, i = [], 0
    while i < x.size:
        end = min(i + block, x.size)
        if lost_at is not None and i <= lost_at[0] < end:
            i, end = lost_at[0] + lost_at[1], min(lost_at[0] + lost_at[1] + block, x.size)
        delay = rng.uniform(0, jitter_s) + (0.2 if rng.random() < 1 / 40 else 0.0)
        out.append(FloatBlock(ir=x[i:end].copy(), first_index=i, lost=0, t=(end - 1) / true_fs + delay,
                              fs=nominal, saturated=np.zeros(end - i, dtype=bool)))
        i = end
    return out


def _beat_errors(sink, beats, fs_model, after_s):
    det = np.array([e["index"] for e in sink.of("beat")]) / fs_model
    det = det[det > after_s]
    err = np.array([det_t - beats[np.argmin(np.abs(beats - det_t))] for det_t in det])
    return det, err


def test_drift_is_tracked_from_jittered_read_times(rng):
    true_fs, nominal = 100.4, 100.0
    x, beats = _pulse_record(true_fs, 120.0, rng)
    blocks = _jittered_blocks(x, true_fs, nominal, rng, lost_at=(17 * 353, 40))
    sink = MemorySink()
    pipe = Pipeline(nominal, sink)
    summary = pipe.run(blocks)
    est = summary["sensor_fs_measured"]
    assert summary["sensor_fs"] == nominal and summary["rate_tracked"]
    assert abs(est / true_fs - 1) < 5e-4, f"measured {est} Hz, true {true_fs} Hz"
    assert summary["lost"] == 40 and pipe.rate.rejected > 0  # the late reads were left out of the fit
    assert not sink.of("rate")  # 0.4 % is within the 1 % that raises a rate event
    det, err = _beat_errors(sink, beats, pipe.fs, after_s=50.0)  # the 30 s span full, the steering settled
    assert det.size > 40
    assert np.abs(err).max() < 0.010, f"beat time error after convergence: max {np.abs(err).max() * 1e3:.1f} ms"
    # sensor_index is the resampler's own map: the beat's sample at the measured rate
    b = sink.of("beat")[-1]
    assert abs(b["sensor_index"] - b["index"] / pipe.fs * true_fs) <= 1.5

    # the same stream at the nominal rate is off by 0.4 % of the elapsed time
    sink0 = MemorySink()
    fixed = Pipeline(nominal, sink0)
    fixed.rate.min_dev = np.inf  # never engage
    fixed.run(blocks)
    _, err0 = _beat_errors(sink0, beats, fixed.fs, after_s=100.0)
    assert np.median(np.abs(err0)) > 0.1, "the test cannot tell tracking from no tracking"  # 0.4 s, mod the RR


def test_rate_event_when_the_clock_is_more_than_one_percent_off(rng):
    x, _ = _pulse_record(97.5, 40.0, rng)
    sink = MemorySink()
    summary = Pipeline(100.0, sink).run(_jittered_blocks(x, 97.5, 100.0, rng))
    ev = sink.of("rate")
    assert len(ev) == 1 and ev[0]["departed"] and ev[0]["fs_nominal"] == 100.0
    assert abs(ev[0]["fs_measured"] - 97.5) < 0.2 and abs(summary["sensor_fs_measured"] - 97.5) < 0.05


def test_a_steady_clock_keeps_the_exact_nominal_grid(rng):
    """Read times of a sensor at its nominal rate (jittered): the estimate never engages and the
    stream equals one batch push."""
    x, _ = _pulse_record(100.0, 60.0, rng)
    sink = MemorySink()
    pipe = Pipeline(100.0, sink)
    pipe.run(_jittered_blocks(x, 100.0, 100.0, rng, jitter_s=0.015))
    assert not pipe.rate.engaged and abs(pipe.rate.fs / 100 - 1) < 2e-4
    assert len(pipe.resampler._seg) == 1  # never steered
    # exact timestamps (ArrayReplay without times): same
    sink2 = MemorySink()
    Pipeline(100.0, sink2).run(ArrayReplay(x, 100.0, block_size=17).blocks())
    assert [e["index"] for e in sink2.of("beat")] == [e["index"] for e in sink.of("beat")]


def test_rate_estimator_steps_and_bad_times():
    est = RateEstimator(100.0)
    for k in range(1, 200):
        est.add(17 * k, 17 * k / 100.4 + (5.0 if k > 100 else 0.0))  # the clock steps by 5 s
    assert est.engaged and abs(est.fs / 100.4 - 1) < 1e-6 and est.rejected == 3
    est.add(17 * 200, float("nan"))
    assert est.rejected == 4


def test_replay_sources_carry_log_times(rng):
    from ppg_edge.edge_runtime.sensors.replay import ReplaySensor

    times = np.arange(3000) / 100.4 + 1000.0
    x, _ = _pulse_record(100.4, 3000 / 100.4, rng)
    blocks = list(ArrayReplay(x, 100.0, block_size=25, times=times).blocks())
    assert blocks[0].t == times[24] and blocks[-1].t == times[-1]
    counts = np.round(1000 + 100 * x).astype(np.int64)
    sensor = ReplaySensor(counts, fs=100.0, times=times, block_size=17)
    assert sensor.read().t == times[16]
    with pytest.raises(DataError, match="do not increase"):
        ArrayReplay(x, 100.0, times=times[::-1])
    with pytest.raises(DataError, match="one time per sample"):
        ReplaySensor(counts, fs=100.0, times=times[:10])


@pytest.mark.data
def test_a_timestamped_max30102_log_replays_at_its_measured_rate(data_root):
    """jdesbonnet PPG_Tools: host times per sample; the header says 100 Hz, the sensors deliver
    about 98 and 140 samples/s (DATA.md). The pipeline, told 100 Hz, measures the log's rate."""
    from ppg_edge.data import load_record

    rec = load_record("max30102-raw", "jdesbonnet_left_hand_100sps_s1", data_root)
    times = rec.meta["host_time_s"]
    n = min(rec.ppg.size, int(120 * rec.fs))
    sink = MemorySink()
    summary = Pipeline(100.0, sink).run(ArrayReplay(rec.ppg[:n], 100.0, block_size=10, times=times[:n]).blocks())
    measured = summary["sensor_fs_measured"]
    print(f"header 100 Hz, loader {rec.fs:.3f} Hz, pipeline measured {measured} Hz")
    assert abs(measured / rec.fs - 1) < 5e-3
    assert summary["rate_tracked"] == (abs(rec.fs / 100 - 1) > 1e-3)
    assert bool(sink.of("rate")) == (abs(measured / 100 - 1) > 0.01)


@pytest.mark.parametrize("fs_in,fs_out", [(50, 125), (100, 125), (125, 100), (25, 125), (300, 125)])
def test_the_nominal_integer_grid_equals_the_general_path(fs_in, fs_out, rng):
    """Rational nominal ratios run on an integer grid (one weight row per phase); the general
    floating-point path gives the same samples and flags."""
    x = np.cumsum(rng.standard_normal(4000))
    flags = np.zeros(x.size, dtype=np.uint8)
    flags[[7, 1234]] = FLAG_LOST
    grid = StreamResampler(fs_in, fs_out)
    assert grid._grid is not None
    plain = StreamResampler(fs_in, fs_out)
    plain._grid = None
    y1, f1 = _split_push(grid, x, rng, flags)
    y2, f2 = _split_push(plain, x, rng, flags)
    assert y1.size == y2.size and np.array_equal(f1, f2)
    assert np.abs(y1 - y2).max() <= 1e-12 * np.abs(x).max()
    assert grid.inputs_needed(y1.size) == plain.inputs_needed(y1.size)
    assert StreamResampler(100.418, 125)._grid is None  # a measured rate: the general path


def test_a_rate_at_the_event_limit_reports_once(rng):
    """A chip 1 % fast sits on the rate event's limit: the estimate's scatter must not make it
    depart and return again and again (hysteresis)."""
    x, _ = _pulse_record(101.0, 80.0, rng)
    sink = MemorySink()
    Pipeline(100.0, sink).run(_jittered_blocks(x, 101.0, 100.0, rng))
    assert len(sink.of("rate")) <= 1, [e["departed"] for e in sink.of("rate")]
