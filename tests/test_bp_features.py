"""BP features against synthetic pulses whose answers are known analytically."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.dsp.pulses import _local_maxima, find_pulse_feet
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.features import bp

# two-Gaussian pulse: systolic wave (A1, M1, S1), diastolic wave (A2, M2, S2), 1 s long.
# The waves are 4 and 2.9 standard deviations from the notch region, so their
# overlap changes peak heights, positions and areas by well under 0.5%.
A1, M1, S1 = 1.0, 0.25, 0.05
A2, M2, S2 = 0.6, 0.65, 0.07


def two_gauss(t, a2=A2):
    return A1 * np.exp(-(t - M1) ** 2 / (2 * S1 ** 2)) + a2 * np.exp(-(t - M2) ** 2 / (2 * S2 ** 2))


def one_pulse(fs, offset=3.0, gain=2.0, a2=A2):
    t = np.arange(0.0, 1.0 + 0.5 / fs, 1.0 / fs)  # both feet included: duration 1 s
    return offset + gain * two_gauss(t, a2)


def realistic_shape(t):
    """Systolic wave plus a broad, overlapping diastolic wave (notch well above the foot)."""
    return np.exp(-(t - 0.15) ** 2 / (2 * 0.045 ** 2)) + 0.5 * np.exp(-(t - 0.42) ** 2 / (2 * 0.09 ** 2))


def pulse_train(bpm, fs, dur=10.0):
    period = 60.0 / bpm
    t = np.arange(0.0, dur, 1.0 / fs)
    x = np.zeros_like(t)
    for k in range(-2, int(dur / period) + 2):
        x += realistic_shape(t - k * period)
    return x


@pytest.mark.parametrize("fs", [100, 250, 1000])
def test_two_gaussian_pulse_indices_match_analytic_values(fs):
    r = bp.pulse_features(one_pulse(fs), fs)
    tol_t = 1.01 / fs  # one sample
    assert r["hr_bpm"] == pytest.approx(60.0, rel=1e-9)
    assert r["delta_t_s"] == pytest.approx(M2 - M1, abs=tol_t)
    assert r["stiffness_index"] == pytest.approx(1.0 / (M2 - M1), rel=0.03)
    assert r["reflection_index"] == pytest.approx(A2 / A1, abs=0.005)
    assert r["augmentation_index"] == pytest.approx(1 - A2 / A1, abs=0.005)
    assert r["crest_time_s"] == pytest.approx(M1, abs=tol_t)
    # 50%: rising edge of the systolic wave to the falling edge of the diastolic one
    w50 = (M2 + S2 * np.sqrt(2 * np.log(A2 / 0.5))) - (M1 - S1 * np.sqrt(2 * np.log(2)))
    assert r["width50_s"] == pytest.approx(w50, abs=0.003)
    # 75% is above the diastolic wave: width of the systolic Gaussian alone
    assert r["width75_s"] == pytest.approx(2 * S1 * np.sqrt(2 * np.log(1 / 0.75)), abs=0.003)
    rise = S1 * (np.sqrt(-2 * np.log(0.1)) - np.sqrt(-2 * np.log(0.9)))
    assert r["rise_time_s"] == pytest.approx(rise, abs=0.002)
    sys_area = A1 * S1 * np.sqrt(2 * np.pi)
    dia_area = A2 * S2 * np.sqrt(2 * np.pi)
    assert r["sys_area_s"] == pytest.approx(sys_area, rel=0.01)
    assert r["dia_area_s"] == pytest.approx(dia_area, rel=0.01)
    assert r["ipa_ratio"] == pytest.approx(dia_area / sys_area, rel=0.02)
    assert r["sv_proxy_s"] == pytest.approx(sys_area + dia_area, rel=0.01)
    assert r["co_proxy"] == pytest.approx(60.0 * (sys_area + dia_area), rel=0.01)
    assert r.issues == []
    assert np.all(np.isfinite(r.values)) and r.valid.all()


def test_indices_do_not_depend_on_gain_or_offset():
    a = bp.pulse_features(one_pulse(200, offset=0.0, gain=1.0), 200)
    b = bp.pulse_features(one_pulse(200, offset=-5e4, gain=3e3), 200)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6, atol=1e-9)


def test_stiffness_index_uses_height():
    r = bp.pulse_features(one_pulse(500), 500, height_m=1.8)
    assert r["stiffness_index"] == pytest.approx(1.8 / (M2 - M1), rel=0.01)


@pytest.mark.parametrize("fs", [250, 1000])
def test_apg_b_over_a_of_a_gaussian_upstroke(fs):
    """For a Gaussian the APG maximum sits at mu - sqrt(3) sigma with value
    2 A e^-1.5 / sigma^2 and its minimum at mu with -A / sigma^2: b/a = -e^1.5 / 2."""
    r = bp.pulse_features(one_pulse(fs), fs)
    assert r["apg_b_a"] == pytest.approx(-np.exp(1.5) / 2, rel=0.01)
    # c: the APG maximum at mu + sqrt(3) sigma, same height as a
    assert r["apg_c_a"] == pytest.approx(1.0, rel=0.01)


def test_apg_d_and_e_waves_match_the_analytic_second_derivative():
    """d and e found on the sampled pulse match the extrema of the closed-form APG
    (on a 10 microsecond grid): d is the first minimum after c, e the next maximum."""
    def g2(t, a, m, s):  # second derivative of a Gaussian
        return a / s ** 2 * ((t - m) ** 2 / s ** 2 - 1) * np.exp(-(t - m) ** 2 / (2 * s ** 2))

    tf = np.arange(0.0, 1.0, 1e-5)
    apg = g2(tf, A1, M1, S1) + g2(tf, A2, M2, S2)
    slope = np.sign(np.diff(apg))
    minima = np.flatnonzero((slope[:-1] < 0) & (slope[1:] > 0)) + 1
    maxima = np.flatnonzero((slope[:-1] > 0) & (slope[1:] < 0)) + 1
    a = apg[maxima[0]]
    c_t = M1 + np.sqrt(3) * S1
    d_i = minima[tf[minima] > c_t + 1e-3][0]
    e_i = maxima[maxima > d_i][0]
    d_ref, e_ref = apg[d_i] / a, apg[e_i] / a
    assert 0.0 < d_ref < e_ref  # the shallow dip between the two waves, then the diastolic upstroke
    for fs in (500, 1000):
        r = bp.pulse_features(one_pulse(fs), fs)
        assert r["apg_d_a"] == pytest.approx(d_ref, abs=0.01)
        assert r["apg_e_a"] == pytest.approx(e_ref, abs=0.01)
        b_ref, c_ref = -np.exp(1.5) / 2, 1.0
        assert r["aging_index"] == pytest.approx(b_ref - c_ref - d_ref - e_ref, abs=0.03)


def test_single_wave_pulse_flags_diastolic_features_instead_of_crashing():
    fs = 200
    r = bp.pulse_features(one_pulse(fs, a2=0.0), fs)
    assert not any(r.valid[r.names.index(n)] for n in
                   ("delta_t_s", "reflection_index", "ipa_ratio", "aging_index"))
    assert r.valid[r.names.index("hr_bpm")] and r.valid[r.names.index("width50_s")]
    assert np.all(np.isfinite(r.values))
    assert any("diastolic" in s for s in r.issues)
    assert np.isnan(r["reflection_index"])


def test_diastolic_shoulder_without_peak_uses_the_inflection():
    """A diastolic wave that only makes a shoulder on the down-slope."""
    fs = 1000
    t = np.arange(0.0, 1.0 + 0.5 / fs, 1.0 / fs)
    x = np.exp(-(t - 0.25) ** 2 / (2 * 0.06 ** 2)) + 0.45 * np.exp(-(t - 0.42) ** 2 / (2 * 0.08 ** 2))
    y = x - np.linspace(x[0], x[-1], x.size)
    assert len(_local_maxima(y)) == 1  # really no second peak
    r = bp.pulse_features(x, fs)
    assert any("inflection" in s for s in r.issues)
    assert 0.05 < r["delta_t_s"] < 0.3
    assert 0.0 < r["reflection_index"] < 1.0


@pytest.mark.parametrize("bad, why", [
    (np.full(200, 1.0), "baseline"),
    (np.r_[np.sin(np.linspace(0, np.pi, 100)), np.nan], "non-finite"),
    (np.array([0.0, 1.0, 0.0]), "fewer"),
    (np.sin(np.linspace(0, np.pi, 2000)), "lasts"),  # 20 s at 100 Hz
    (np.linspace(0.0, 1.0, 100), "systolic"),  # a ramp: no peak above baseline
])
def test_bad_pulses_give_flags_not_crashes(bad, why):
    r = bp.pulse_features(bad, 100)
    assert not r.valid.any()
    assert np.all(np.isfinite(r.values))
    assert any(why in s for s in r.issues), r.issues
    assert r.as_dict() == {}


def test_wrong_arguments_raise_clear_errors():
    with pytest.raises(DataError, match="1-D"):
        bp.pulse_features(np.zeros((10, 2)), 100)
    with pytest.raises(ConfigError, match="sampling rate"):
        bp.segment_features(np.zeros(100), 0)
    with pytest.raises(ConfigError, match="sampling rate"):
        bp.segment_features(np.zeros(100), float("nan"))
    with pytest.raises(ConfigError, match="max_pulses"):
        bp.pulse_feature_sequence(np.zeros(100), 100, 0)
    with pytest.raises(ConfigError, match="unknown feature"):
        bp.describe("nope")


@pytest.mark.parametrize("fs", [50, 100, 1000])
@pytest.mark.parametrize("bpm", [45, 72, 110, 150])
def test_segment_heart_rate_of_a_pulse_train(fs, bpm):
    r = bp.segment_features(pulse_train(bpm, fs) + 100.0, fs)
    assert r["hr_bpm"] == pytest.approx(bpm, rel=0.015)
    expected_pulses = int(10.0 * bpm / 60.0) - 1
    assert abs(r["n_pulses"] - expected_pulses) <= 1


def test_segment_features_pool_pulse_features_and_common_ones():
    fs = 100
    x = pulse_train(72, fs) * 0.05 + 2.0  # DC level present
    r = bp.segment_features(x, fs)
    assert r.names == bp.FEATURE_NAMES
    assert r["dominant_freq_hz"] == pytest.approx(72 / 60, abs=0.11)
    assert r["reflection_index"] == pytest.approx(0.5, abs=0.03)
    ac = np.percentile(x, 95) - np.percentile(x, 5)
    assert r["ac_dc_ratio"] == pytest.approx(ac / x.mean(), rel=1e-9)
    assert 0.0 < r["spectral_entropy"] < 1.0
    z = (x - x.mean()) / x.std()
    assert r["skewness"] == pytest.approx(np.mean(z ** 3))
    # band-passed (zero-mean) input: the perfusion-like ratio is flagged, not invented
    r0 = bp.segment_features(x - x.mean(), fs)
    assert np.isnan(r0["ac_dc_ratio"]) and any("ac_dc" in s for s in r0.issues)


def test_ppg_bp_like_short_segment_at_1000_hz():
    """2.1 s at 1000 Hz, the PPG-BP segment format: one or two pulses still give features."""
    r = bp.segment_features(pulse_train(72, 1000, dur=2.1), 1000)
    assert r["n_pulses"] >= 1
    assert r["hr_bpm"] == pytest.approx(72, rel=0.01)


@pytest.mark.parametrize("seg, why", [
    (np.r_[np.zeros(50), np.nan, np.zeros(50)], "non-finite"),
    (np.zeros(3), "samples"),
    (np.zeros(500), "no complete pulse"),
])
def test_bad_segments_are_recorded(seg, why):
    r = bp.segment_features(seg, 100)
    assert np.all(np.isfinite(r.values))
    assert any(why in s for s in r.issues), r.issues
    assert not r.valid[r.names.index("hr_bpm")]


def test_noisy_segment_never_yields_nan_values(rng):
    for _ in range(20):
        x = rng.normal(size=int(rng.integers(5, 600)))
        r = bp.segment_features(x, 100)
        assert np.all(np.isfinite(r.values))
        s = bp.pulse_feature_sequence(x, 100, 4)
        assert np.all(np.isfinite(s.values))


def test_pulse_feature_sequence_is_front_padded():
    fs = 100
    x = pulse_train(60, fs, dur=4.0)
    seq = bp.pulse_feature_sequence(x, fs, max_pulses=8)
    n = int(seq.step_mask.sum())
    assert 2 <= n <= 4
    assert seq.values.shape == (8, len(bp.PULSE_FEATURE_NAMES))
    assert not seq.step_mask[: 8 - n].any() and seq.step_mask[8 - n:].all()
    assert np.all(seq.values[: 8 - n] == 0)
    hr = seq.values[8 - n:, bp.PULSE_FEATURE_NAMES.index("hr_bpm")]
    np.testing.assert_allclose(hr, 60.0, rtol=0.02)
    short = bp.pulse_feature_sequence(pulse_train(60, fs, dur=20.0), fs, max_pulses=3)
    assert short.step_mask.all() and any("dropped" in s for s in short.issues)


def test_features_matrix_marks_missing_as_nan():
    fs = 100
    X, M = bp.features_matrix([pulse_train(72, fs), np.zeros(300)], fs)
    assert X.shape == (2, len(bp.FEATURE_NAMES))
    assert np.all(np.isnan(X[~M])) and np.all(np.isfinite(X[M]))
    assert M[0, bp.FEATURE_NAMES.index("hr_bpm")] and not M[1, bp.FEATURE_NAMES.index("hr_bpm")]


def test_every_feature_is_documented():
    for name in bp.FEATURE_NAMES:
        assert bp.describe(name)


@pytest.mark.parametrize("hr", [55.0, 75.0, 110.0])
def test_feet_of_a_noisy_stepped_1000_hz_record_match_the_beats(rng, hr):
    """At 1000 Hz the sample-to-sample derivative is ADC steps and noise; the feet are found
    at 100 Hz and refined, so there is one foot per beat, each just before its systolic peak."""
    from ppg_edge.synth import synth_ppg

    s = synth_ppg(10.0, 1000.0, rng, hr_bpm=hr)
    x = np.round((s.signal + 0.01 * rng.standard_normal(s.signal.size)) * 400) / 400  # ~12-bit steps
    feet = find_pulse_feet(x, 1000.0)
    peaks = np.asarray(s.peaks)
    inner = peaks[peaks > 0.4 * 1000]           # beats whose foot lies inside the record
    assert abs(len(feet) - len(inner)) <= 1, (len(feet), len(inner))
    for f in feet:
        nxt = peaks[peaks > f]
        assert nxt.size and (nxt[0] - f) / 1000.0 < 0.4, f


def test_pulse_counts_agree_between_1000_and_100_hz_on_ppg_bp(data_root):
    from ppg_edge.data import load
    from ppg_edge.data.resample import resample_record

    recs = load("ppg-bp", data_root)
    counts = {}
    for fs in (1000.0, 100.0):
        n = [len(find_pulse_feet(np.asarray((r if r.fs == fs else resample_record(r, fs)).ppg[:int(2.1 * fs)],
                                               dtype=float), fs)) for r in recs]
        counts[fs] = float(np.mean(n))
    # measured: 2.78 feet per 2.1 s segment at 1000 Hz, 2.77 at 100 Hz (5.43 before the decimation)
    assert abs(counts[1000.0] - counts[100.0]) < 0.1, counts


def test_column_medians_equal_numpy_median_of_the_finite_values():
    from ppg_edge.features.bp import column_medians

    rng = np.random.default_rng(0)
    for _ in range(300):
        v = rng.normal(size=(int(rng.integers(1, 12)), int(rng.integers(1, 25))))
        v[rng.random(v.shape) < rng.random()] = np.nan
        v[rng.random(v.shape) < 0.05] = np.inf
        got = column_medians(v)
        for j in range(v.shape[1]):
            col = v[:, j][np.isfinite(v[:, j])]
            if col.size:
                assert got[j] == np.median(col)  # bit for bit: the device model's features
            else:
                assert np.isnan(got[j])
    with pytest.raises(ValueError):
        column_medians(np.zeros((0, 3)))
