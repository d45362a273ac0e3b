"""Streaming front end == batch Preprocessing; bad samples flagged (the resampler: tests/test_stream_resampler.py)."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.dsp.pipeline import bp_preprocessing, peaks_preprocessing
from ppg_edge.edge_runtime.stream import FLAG_LOST, FLAG_SATURATED, StreamPreprocessor
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.synth import synth_ppg


def _stream(sp, x, rng, max_block=60):
    out, i = [], 0
    while i < x.size:
        k = int(rng.integers(1, max_block))
        out += sp.push(x[i:i + k])
        i += k
    return out


@pytest.mark.parametrize("spec", [
    peaks_preprocessing(125.0),
    peaks_preprocessing(125.0, dwt_level=3),
    bp_preprocessing(125.0),
    peaks_preprocessing(100.0, hop=50, normalisation="minmax"),
], ids=["peaks", "peaks-dwt3", "bp-derivatives", "peaks-100hz-minmax"])
def test_float_stream_equals_batch(spec, rng):
    x = synth_ppg(40, spec.fs, rng, offset=2000.0).signal * 30 + rng.normal(0, 0.5, int(40 * spec.fs))
    ref = spec.apply(x)
    wins = _stream(StreamPreprocessor(spec), x, rng)
    assert len(wins) == ref.shape[0]
    np.testing.assert_array_equal([w.start for w in wins], spec.window_starts(x.size))
    filtered = spec.filter(x)
    for w in wins:
        np.testing.assert_allclose(w.filtered, filtered[w.start:w.end], rtol=0, atol=1e-9)
        assert w.flags == {}
    got = np.stack([w.x for w in wins])
    # float64 features agree to ~1e-12; the float32 cast may round those on either side
    np.testing.assert_allclose(got, ref, rtol=2e-7, atol=1e-6)


def test_q31_stream_is_bit_exact(rng):
    spec = peaks_preprocessing(125.0, dwt_level=2, arithmetic="q31", q31_frac_bits=12)
    x = np.round(synth_ppg(30, 125.0, rng, offset=100000.0).signal * 800)  # ADC-like counts
    ref = spec.apply(x)
    wins = _stream(StreamPreprocessor(spec), x, rng, max_block=40)
    filtered = spec.filter(x)
    for w in wins:
        np.testing.assert_array_equal(w.filtered, filtered[w.start:w.end])
    np.testing.assert_array_equal(np.stack([w.x for w in wins]), ref)


def test_custom_hop_and_absolute_starts(rng):
    spec = peaks_preprocessing(125.0)
    x = rng.standard_normal(1000)
    wins = StreamPreprocessor(spec, hop=50).push(x)
    assert [w.start for w in wins] == list(range(0, 1000 - 250 + 1, 50))
    assert [w.index for w in wins] == list(range(len(wins)))
    with pytest.raises(ConfigError):
        StreamPreprocessor(spec, hop=0)


def test_nonfinite_samples_are_held_and_flagged(rng):
    spec = peaks_preprocessing(125.0)
    x = synth_ppg(10, 125.0, rng, offset=500.0).signal
    x[300] = np.nan
    x[301] = np.inf
    wins = StreamPreprocessor(spec).push(x)
    for w in wins:
        covers = w.start <= 300 < w.end
        assert w.flags == ({"nonfinite": 2} if covers else {})
        assert np.all(np.isfinite(w.x)) and np.all(np.isfinite(w.filtered))
    assert sum(1 for w in wins if w.flags) == 2  # 50% overlap: two windows cover sample 300


def test_leading_nan_waits_for_a_reference_sample(rng):
    spec = peaks_preprocessing(125.0)
    sp = StreamPreprocessor(spec)
    assert sp.push(np.full(10, np.nan)) == []
    wins = sp.push(np.linspace(1, 2, 300))
    assert wins[0].start == 0 and wins[0].flags == {"nonfinite": 10}
    assert np.all(np.isfinite(wins[0].x))


def test_lost_and_flagged_samples_keep_indices_absolute(rng):
    spec = peaks_preprocessing(125.0)
    sp = StreamPreprocessor(spec)
    wins = sp.push(rng.standard_normal(200))
    wins += sp.push_lost(30)
    flags = np.zeros(400, dtype=np.uint8)
    flags[10] = FLAG_SATURATED
    wins += sp.push(rng.standard_normal(400), flags)
    assert sp.samples_in == 630
    assert [w.start for w in wins] == [0, 125, 250, 375]
    # lost: samples 200-229; saturated: sample 240
    assert wins[0].flags == {"lost": 30, "saturated": 1}
    assert wins[1].flags == {"lost": 30, "saturated": 1}
    assert wins[2].flags == {} and wins[3].flags == {}
    assert FLAG_LOST == 2
    with pytest.raises(DataError):
        sp.push(np.zeros((3, 2)))
    with pytest.raises(DataError):
        sp.push(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("n", [250, 200, 97])
@pytest.mark.parametrize("mode", ["symmetric", "zero", "periodic"])
def test_one_window_dwt_equals_the_batch_dwt(n, mode, rng):
    from ppg_edge.dsp.dwt import dwt_details
    from ppg_edge.edge_runtime.stream import dwt_details_1d

    x = rng.standard_normal(n)
    want = dwt_details(x[None], "db4", (1, 2, 3), mode)
    got = dwt_details_1d(x, "db4", (1, 2, 3), mode)
    assert list(got) == [1, 2, 3]
    for j in (1, 2, 3):
        np.testing.assert_allclose(got[j], want[j][0], rtol=0, atol=1e-12)
    got2 = dwt_details_1d(x, "db4", (3,), mode)
    np.testing.assert_allclose(got2[3], want[3][0], rtol=0, atol=1e-12)
