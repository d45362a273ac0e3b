"""Normalisation, derivatives, DWT vs pywt, framing, pulses, the Preprocessing spec."""
from __future__ import annotations

import json

import numpy as np
import pytest
import pywt

from ppg_edge.dsp import derivatives as D
from ppg_edge.dsp import dwt as W
from ppg_edge.dsp import normalize as N
from ppg_edge.dsp import pulses as P
from ppg_edge.dsp import windows as Wn
from ppg_edge.dsp.filters import BANDS, design_bandpass, sosfilt
from ppg_edge.dsp.pipeline import Preprocessing, bp_preprocessing, peaks_preprocessing
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.synth import synth_ppg


# ------------------------------------------------------------------ normalisation
def test_zscore_and_minmax_per_window_batched(rng):
    x = rng.normal(size=(3, 5, 250)) * rng.uniform(0.1, 100, size=(3, 5, 1)) + 7.0
    z = N.zscore(x)
    np.testing.assert_allclose(z.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=-1), 1, atol=1e-12)
    m = N.minmax(x)
    np.testing.assert_allclose(m.min(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(m.max(axis=-1), 1, atol=1e-12)
    # each window on its own: the same as normalising it alone
    np.testing.assert_allclose(z[1, 2], N.zscore(x[1, 2]))


def test_flat_window_gives_zeros_not_nan():
    x = np.vstack([np.full(250, 3.0), np.arange(250.0)])
    for fn in (N.zscore, N.minmax):
        out = fn(x)
        assert np.all(np.isfinite(out))
        assert np.all(out[0] == 0) and np.any(out[1] != 0)


def test_normalise_bad_input():
    with pytest.raises(DataError):
        N.zscore([1.0, np.nan])
    with pytest.raises(DataError):
        N.minmax(np.zeros((2, 0)))
    with pytest.raises(ConfigError, match="valid"):
        N.normalise([1.0, 2.0], "robust")


# ------------------------------------------------------------------ derivatives
def test_derivatives_of_a_polynomial_are_rate_invariant():
    for fs in (50.0, 125.0, 1000.0):
        t = np.arange(int(2 * fs)) / fs
        x = 2.0 * t**3
        st = D.derivative_stack(x, fs)
        assert st.shape == (t.size, 4)
        k = 10  # past the start-up samples
        # backward differences of t^3 converge to 6t^2, 12t, 12 as fs grows
        np.testing.assert_allclose(st[k:, 1], 6 * t[k:] ** 2, atol=30 / fs)
        np.testing.assert_allclose(st[k:, 2], 12 * t[k:], atol=40 / fs)
        np.testing.assert_allclose(st[k:, 3], 12.0, atol=1e-6 * fs**2)
        assert np.all(st[0, 1:] == 0)  # causal start: x[-1] taken as x[0]


def test_derivatives_are_causal(rng):
    x = rng.normal(size=300)
    y = x.copy()
    y[200:] += 5.0  # change the future only
    a, b = D.derivative_stack(x, 125.0), D.derivative_stack(y, 125.0)
    np.testing.assert_array_equal(a[:200], b[:200])
    np.testing.assert_allclose(D.vpg(x, 125.0), np.diff(x, prepend=x[0]) * 125.0)
    np.testing.assert_allclose(D.jpg(x, 125.0), a[:, 3])


def test_derivative_bad_input():
    with pytest.raises(DataError):
        D.vpg([], 125.0)
    with pytest.raises(DataError):
        D.vpg([1.0, np.inf], 125.0)
    with pytest.raises(ConfigError):
        D.vpg([1.0, 2.0], 0.0)


# ------------------------------------------------------------------ DWT
def test_db4_constants_are_pywts():
    w = pywt.Wavelet("db4")
    assert w.dec_len == 8
    np.testing.assert_allclose(W.DB4_DEC_LO, w.dec_lo, rtol=0, atol=1e-15)
    np.testing.assert_allclose(W.DB4_DEC_HI, w.dec_hi, rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", W.MODES)
@pytest.mark.parametrize("n", [250, 251, 100])
def test_dwt_details_match_pywt_wavedec(mode, n, rng):
    x = rng.normal(size=(4, n))
    top = min(4, pywt.dwt_max_level(n, 8))
    ref = pywt.wavedec(x, "db4", mode=mode, level=top, axis=-1)
    mine = W.dwt_details(x, levels=range(1, top + 1), mode=mode)
    for j in range(1, top + 1):
        assert mine[j].shape == ref[-j].shape
        np.testing.assert_allclose(mine[j], ref[-j], rtol=0, atol=1e-9)


def test_dwt_bad_input():
    with pytest.raises(DataError, match="level"):
        W.dwt_details(np.zeros(20), levels=(1, 2, 3))
    with pytest.raises(DataError):
        W.dwt_details(np.array([1.0, np.nan] * 50))
    with pytest.raises(DataError):
        W.dwt_details(np.zeros(0))
    with pytest.raises(ConfigError):
        W.dwt_details(np.zeros(250), mode="periodization")
    with pytest.raises(ConfigError):
        W.dwt_details(np.zeros(250), wavelet="db2")
    with pytest.raises(ConfigError):
        W.dwt_details(np.zeros(250), levels=(0,))


def test_details_to_length_shapes_and_centred_alignment():
    n = 256
    x = np.zeros(n)
    spike = 150
    x[spike] = 1.0
    det = W.dwt_details(x, levels=(1, 2, 3, 4))
    st = W.details_to_length(det, n)
    assert st.shape == (n, 4)
    for j in (1, 2, 3, 4):
        # each coefficient held for 2**j samples
        s = W.detail_to_length(det[j], j, n, align="start")
        np.testing.assert_array_equal(s[: 2**j], det[j][0])
        # energy centroid of the centred version sits near the spike (db4 is not symmetric,
        # so within half a hold plus 3 samples), the plain one lags by about detail_offset
        cen = {}
        for align in ("center", "start"):
            e = W.detail_to_length(det[j], j, n, align=align) ** 2
            cen[align] = np.sum(np.arange(n) * e) / e.sum() - spike
        assert abs(cen["center"]) <= 2 ** (j - 1) + 3, (j, cen)
        assert abs(cen["start"] - cen["center"] - W.detail_offset(j)) <= 2**j, (j, cen)
        if j >= 2:
            assert abs(cen["center"]) < abs(cen["start"])
    assert [W.detail_offset(j) for j in (1, 2, 3, 4)] == [3, 9, 21, 45]


# ------------------------------------------------------------------ framing
def test_frame_shapes_starts_and_inverse(rng):
    x = np.arange(1000.0)
    f = Wn.frame(x, 250, 125)
    starts = Wn.window_starts(1000, 250, 125)
    assert f.shape == (7, 250) and starts.tolist() == [0, 125, 250, 375, 500, 625, 750]
    np.testing.assert_array_equal(f[:, 0], starts)
    w, o = rng.integers(0, 7, 50), rng.integers(0, 250, 50)
    np.testing.assert_array_equal(x[Wn.to_absolute(w, o, 125)], f[w, o])
    for sample in (0, 130, 999 - 250):
        pairs = Wn.windows_containing(sample, 1000, 250, 125)
        assert pairs and all(f[wi, oi] == sample for wi, oi in pairs)
    assert Wn.windows_containing(999, 1000, 250, 125) == [(6, 249)]
    assert Wn.windows_containing(1005, 1010, 250, 125) == []  # past the last full window
    two = Wn.frame(np.stack([x, -x], axis=1), 250, 125)
    assert two.shape == (7, 250, 2) and np.all(two[..., 1] == -two[..., 0])
    assert Wn.default_window(125.0) == (250, 125)


def test_short_input_gives_zero_windows_or_error():
    assert Wn.frame(np.zeros(100), 250, 125).shape == (0, 250)
    assert Wn.n_windows(249, 250, 125) == 0 and Wn.n_windows(250, 250, 125) == 1
    with pytest.raises(DataError, match="shorter"):
        Wn.frame(np.zeros(100), 250, 125, strict=True)
    with pytest.raises(ConfigError):
        Wn.frame(np.zeros(100), 0, 125)
    with pytest.raises(ConfigError):
        Wn.frame(np.zeros(100), 50, -1)


# ------------------------------------------------------------------ pulses
@pytest.mark.parametrize("hr,fs", [(50, 125.0), (80, 125.0), (120, 250.0), (160, 100.0)])
def test_segment_pulses_finds_one_peak_per_pulse(hr, fs, rng):
    s = synth_ppg(30.0, fs, rng, hr_bpm=hr)
    found = P.find_systolic_peaks(s.signal, fs)
    # every true peak detected within 2 samples, nothing extra
    assert found.size == s.peaks.size
    assert np.max(np.abs(found - s.peaks)) <= 2
    pulses, issues = P.segment_pulses(s.signal, fs)
    assert issues == [] and abs(len(pulses) - (s.peaks.size - 1)) <= 1
    pulses = np.asarray(pulses)
    assert np.all(pulses[:, 1] > pulses[:, 0]) and np.all(pulses[1:, 0] == pulses[:-1, 1])
    for a, b in pulses:
        inside = s.peaks[(s.peaks >= a) & (s.peaks < b)]
        assert inside.size == 1  # foot to foot: one systolic peak per pulse
        assert (inside[0] - a) / fs < 0.4  # the foot lies just before its upstroke
    # durations agree with the heart rate
    np.testing.assert_allclose(np.median(np.diff(pulses, axis=1)) / fs, 60.0 / hr, rtol=0.1)


def test_lag_products_are_the_autocorrelation_and_the_period_reads_them(rng):
    from ppg_edge.dsp import stats
    from ppg_edge.dsp.stats import lag_products

    for n in (40, 250, 333):
        x = np.cumsum(rng.standard_normal(n))
        v = x - x.mean()
        lp = lag_products(x, 5, n - 1)
        naive = np.array([v[L:] @ v[:n - L] for L in range(5, n)])
        np.testing.assert_allclose(lp.ac, naive, rtol=1e-12, atol=1e-9 * float(v @ v))
        np.testing.assert_array_equal(lp.at(7, 20), lag_products(x, 7, 20).ac)  # a wider range, the same values
        assert lp.covers(5, n - 1) and not lp.covers(4, 10) and not lp.covers(5, n)
        assert stats.mean(x) == np.mean(x)  # the same value as numpy's wrapper, to the bit
    assert lag_products(np.ones(10), 5, 4).ac.size == 0  # no lags
    fs = 125.0
    for hr in (45, 75, 150):
        x = synth_ppg(2.0, fs, rng, hr_bpm=hr).signal
        period = P.dominant_period_s(x, fs)
        assert period == pytest.approx(60.0 / hr, rel=0.12)
        assert P.dominant_period_s(x, fs, products=lag_products(x, *P.pulse_lag_range(x.size, fs))) == period
        # products that do not cover the lags are not used
        assert P.dominant_period_s(x, fs, products=lag_products(x, 40, 60)) == period
        np.testing.assert_array_equal(P.find_systolic_peaks(x, fs, products=lag_products(x, 30, 249)),
                                      P.find_systolic_peaks(x, fs))


def test_pulses_bad_input():
    with pytest.raises(DataError):
        P.find_systolic_peaks(np.array([0.0, np.nan, 1.0]), 125.0)
    with pytest.raises(DataError):
        P.segment_pulses(np.zeros((2, 10)), 125.0)
    assert P.segment_pulses(np.zeros(100), 125.0) == ([], [])  # flat: no pulses
    assert P.segment_pulses(np.array([0.0, np.nan] * 50), 125.0) == ([], [])
    with pytest.raises(ConfigError):
        P.find_systolic_peaks(np.zeros(10), -5.0)
    with pytest.raises(ConfigError):
        P.segment_pulses(np.zeros(100), 0.0)


# ------------------------------------------------------------------ pipeline
def test_presets_channels_and_round_trip(rng):
    s = synth_ppg(12.0, 125.0, rng, hr_bpm=72, offset=5e4)
    for spec in (peaks_preprocessing(), peaks_preprocessing(dwt_level=2), peaks_preprocessing(dwt_level=3),
                 bp_preprocessing(125.0), peaks_preprocessing(arithmetic="q31", q31_frac_bits=13)):
        d = spec.to_dict()
        again = Preprocessing.from_dict(json.loads(json.dumps(d)))
        assert again == spec and again.to_dict() == d
        feats = spec.apply(s.signal)
        nw = Wn.n_windows(s.signal.size, spec.window, spec.hop)
        assert feats.shape == (nw, 250, len(spec.channels)) and feats.dtype == np.float32
        assert np.all(np.isfinite(feats))
        np.testing.assert_array_equal(again.apply(s.signal), feats)
    assert peaks_preprocessing(dwt_level=3).channels == ("ppg", "d1", "d2", "d3")
    assert bp_preprocessing().channels == ("ppg", "vpg", "apg", "jpg")
    assert peaks_preprocessing().sos == design_bandpass(*BANDS["peaks"], 125.0).tolist()


def test_apply_is_filter_frame_normalise(rng):
    spec = peaks_preprocessing(dwt_level=2, initial="zero")
    x = rng.normal(size=1000)
    feats = spec.apply(x)
    y = sosfilt(spec.sos, x)
    frames = Wn.frame(y, 250, 125)
    np.testing.assert_allclose(feats[..., 0], N.zscore(frames), atol=1e-5)
    det = W.dwt_details(N.zscore(frames), levels=(1, 2))
    np.testing.assert_allclose(feats[..., 1:], W.details_to_length(det, 250), atol=1e-5)


def test_q31_pipeline_tracks_float_pipeline(rng):
    s = synth_ppg(20.0, 125.0, rng, hr_bpm=65)
    x = 400.0 * s.signal + 1.2e5  # raw-count-like: ~400 counts of pulse on a large DC level
    f = peaks_preprocessing(dwt_level=3).apply(x)
    spec = peaks_preprocessing(dwt_level=3, arithmetic="q31", q31_frac_bits=12)
    q = spec.apply(x)
    assert np.max(np.abs(f - q)) < 0.02
    # the bound of the fixed-point filter holds on the record (after the first-sample offset)
    from ppg_edge.dsp.filters import Q31BiquadCascade

    c = Q31BiquadCascade.from_sos(spec.sos)
    err = np.max(np.abs(spec.filter(x) - peaks_preprocessing().filter(x)))
    assert err <= c.error_bound(spec.sos, np.max(np.abs(x - x[0])), 12)


@pytest.mark.parametrize("bad,match", [([], "empty"), ([1.0, np.nan, 2.0], "NaN"), ([[1.0, 2.0]], "1-D")])
def test_pipeline_bad_records(bad, match):
    with pytest.raises(DataError, match=match):
        peaks_preprocessing().apply(np.array(bad))


def test_pipeline_bad_specs():
    with pytest.raises(ConfigError, match="Nyquist"):
        bp_preprocessing(fs=30.0)
    with pytest.raises(ConfigError, match="Nyquist"):
        peaks_preprocessing(fs=12.0)
    with pytest.raises(ConfigError, match="unknown keys"):
        Preprocessing.from_dict({**peaks_preprocessing().to_dict(), "extra": 1})
    with pytest.raises(ConfigError, match="lacks"):
        Preprocessing.from_dict({"band": [0.5, 8.0]})
    with pytest.raises(ConfigError, match="channels"):
        Preprocessing.from_dict({**peaks_preprocessing().to_dict(), "channels": ["ppg", "d1"]})
    with pytest.raises(ConfigError):
        peaks_preprocessing(dwt_level=7)
    with pytest.raises(ConfigError):
        peaks_preprocessing(normalisation="robust")
    with pytest.raises(ConfigError, match="sections"):
        peaks_preprocessing(order=2, sos=design_bandpass(0.5, 8.0, 125.0).tolist())
    assert peaks_preprocessing().apply(np.zeros(100)).shape == (0, 250, 1)  # short: zero windows


def test_pipeline_on_a_real_bidmc_record(data_root):
    """Real PLETH (BIDMC, Pimentel et al. 2016): finite features, pulse rate near the monitor's."""
    import csv

    path = data_root / "bidmc" / "bidmc_csv" / "bidmc_01_Signals.csv"
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        header = [h.strip() for h in next(rows)]
        col = header.index("PLETH")
        x = np.array([float(r[col]) for r in rows])
    spec = peaks_preprocessing(dwt_level=3)
    feats = spec.apply(x)
    assert feats.shape == (Wn.n_windows(x.size, 250, 125), 250, 4) and np.all(np.isfinite(feats))
    peaks = P.find_systolic_peaks(spec.filter(x), 125.0)
    hr = 60.0 / np.median(np.diff(peaks) / 125.0)
    assert 40 < hr < 150
