"""Stream decoder (one beat stream, absolute indices, HR/HRV) and per-window quality."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.dsp.pipeline import peaks_preprocessing
from ppg_edge.edge_runtime.decoder import StreamDecoder, hrv_metrics
from ppg_edge.edge_runtime.quality import QualityConfig, QualityGate, classic_probs, sqi_autocorr
from ppg_edge.edge_runtime.stream import FLAG_SATURATED, StreamPreprocessor
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.metrics.peaks import match_peaks
from ppg_edge.synth import synth_ppg

FS = 125.0


def _probs_at(peaks, n, width=2.0):
    t = np.arange(n)
    p = np.zeros(n)
    for k in peaks:
        p = np.maximum(p, np.exp(-0.5 * ((t - k) / width) ** 2))
    return p


@pytest.mark.parametrize("hop", [125, 50, 250])
def test_decoder_absolute_indices_no_duplicates(hop, rng):
    s = synth_ppg(60, FS, rng, hr_bpm=75)
    p = _probs_at(s.peaks, s.signal.size)
    dec = StreamDecoder(FS, 250, hop, {"threshold": 0.5})
    beats = []
    for start in range(0, s.signal.size - 250 + 1, hop):
        # each window sees the same peaks, with its own noise: overlapping windows disagree a little
        w = np.clip(p[start:start + 250] + rng.normal(0, 0.05, 250), 0, 1)
        beats += dec.push(start, w)
    beats += dec.flush()
    idx = np.array([b.index for b in beats])
    assert np.all(np.diff(idx) >= int(0.3 * FS))  # no duplicates, refractory respected
    covered = s.peaks[s.peaks < (s.signal.size - 250) // hop * hop + 250]
    m = match_peaks(covered, idx, FS, tol_s=1 / FS)
    assert (m.fp, m.fn) == (0, 0) and m.tp == covered.size
    np.testing.assert_allclose([b.t for b in beats], idx / FS)


def test_decoder_suppressed_windows_break_rr():
    peaks = np.arange(50, 3000, 100)  # 75 bpm at 125 Hz
    p = _probs_at(peaks, 3000)
    dec = StreamDecoder(FS, 250, 125, {"threshold": 0.5})
    beats = []
    for start in range(0, 3000 - 250 + 1, 125):
        beats += dec.push(start, None if 1000 <= start < 1500 else p[start:start + 250])
    beats += dec.flush()
    idx = [b.index for b in beats]
    assert not any(1100 <= i < 1600 for i in idx)  # nothing from the suppressed stretch
    after_gap = [b for b in beats if b.index > 1600][0]
    assert after_gap.rr_s is None
    m = dec.metrics()
    assert m["hr_bpm"] == pytest.approx(75.0, abs=0.01) and m["sdnn_ms"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DataError, match="expected the window"):
        dec.push(5, p[:250])


def test_hrv_on_a_known_rr_series():
    rr = np.array([0.8, 0.9, 0.8, 0.9, 0.8, 0.9])
    m = hrv_metrics(rr)
    assert m["hr_bpm"] == pytest.approx(60 / 0.85)
    assert m["rmssd_ms"] == pytest.approx(100.0)
    assert m["sdnn_ms"] == pytest.approx(np.std(rr, ddof=1) * 1000)
    assert hrv_metrics([])["hr_bpm"] is None
    with pytest.raises(DataError):
        hrv_metrics([0.8, -1.0])
    with pytest.raises(ConfigError):
        StreamDecoder(FS, 250, 300)


def test_decoder_hrv_matches_the_synthetic_rr(rng):
    s = synth_ppg(120, FS, rng, hr_bpm=65, hrv=0.05)
    dec = StreamDecoder(FS, 250, 125, {"threshold": 0.5}, hrv_window_s=1000)
    p = _probs_at(s.peaks, s.signal.size)
    for start in range(0, s.signal.size - 250 + 1, 125):
        dec.push(start, p[start:start + 250])
    dec.flush()
    idx = np.array([b.index for b in dec.beats])
    ref = hrv_metrics(np.diff(idx) / FS)
    m = dec.metrics()
    assert m["n_rr"] == idx.size - 1
    assert m["sdnn_ms"] == pytest.approx(ref["sdnn_ms"]) and m["rmssd_ms"] == pytest.approx(ref["rmssd_ms"])
    true = hrv_metrics(np.diff(s.peaks) / FS)
    assert m["hr_bpm"] == pytest.approx(true["hr_bpm"], rel=0.02)
    assert m["sdnn_ms"] == pytest.approx(true["sdnn_ms"], rel=0.1)


# ------------------------------------------------------------------ quality

def _windows(x, fs=25.0, flags=None):
    spec = peaks_preprocessing(fs)
    return StreamPreprocessor(spec).push(x, flags)


def test_finger_off_on_the_real_no_finger_recording(data_root):
    from ppg_edge.data import load_record

    rec = load_record("max30102-raw", "sergiomagdalenop_rpi", data_root)
    assert rec.fs == 25.0
    gate = QualityGate(rec.fs, QualityConfig(full_scale=(1 << 18) - 1))
    wins = _windows(rec.signals["ir"], rec.fs)
    qs = [gate.assess(w) for w in wins]
    assert qs and all(not q.ok and q.reason == "finger_off" for q in qs)
    on = load_record("max30102-raw", "vrano714_rpi", data_root)
    q_on = [QualityGate(on.fs, QualityConfig(full_scale=(1 << 18) - 1)).assess(w)
            for w in _windows(on.signals["ir"][10:], on.fs)]
    assert sum(q.reason == "finger_off" for q in q_on) == 0


def test_finger_on_and_off_recording(data_root):
    from ppg_edge.data import load_record

    rec = load_record("max30102-raw", "szymanel_rpi", data_root)
    gate = QualityGate(rec.fs, QualityConfig(full_scale=(1 << 18) - 1))
    qs = [gate.assess(w) for w in _windows(rec.signals["ir"], rec.fs)]
    reasons = [q.reason for q in qs]
    assert reasons[0] == "finger_off"  # the log starts at ~800 counts: no finger yet
    assert any(r != "finger_off" for r in reasons)  # and the finger comes on later


def test_saturation_suppressed(rng):
    fs = 100.0
    x = 100000 + 2000 * synth_ppg(10, fs, rng).signal
    full = (1 << 18) - 1
    x[300:340] = full
    flags = np.zeros(x.size, dtype=np.uint8)
    flags[300:340] = FLAG_SATURATED
    gate = QualityGate(fs, QualityConfig(full_scale=full))
    qs = [(w.start, gate.assess(w)) for w in _windows(x, fs, flags)]
    for start, q in qs:
        hit = start <= 300 < start + 200 or start <= 339 < start + 200
        assert (q.reason == "saturation") == hit
    assert any(q.ok for _, q in qs)


def test_nan_window_suppressed_and_motion_detected(rng):
    fs = 100.0
    x = 100000 + 2000 * synth_ppg(30, fs, rng, hr_bpm=70).signal
    x[1000] = np.nan
    x[2000:2050] += 60000 * np.hanning(50)  # a motion artefact: a big bump (a step of 60% of the DC)
    gate = QualityGate(fs, QualityConfig(full_scale=(1 << 18) - 1))
    qs = {w.start: gate.assess(w) for w in _windows(x, fs)}
    assert all(qs[s].reason == "nonfinite" for s in qs if s <= 1000 < s + 200)
    assert any(qs[s].reason in ("motion", "transient") for s in qs if s <= 2025 < s + 200)
    clean = [q for s, q in qs.items() if s + 200 < 950]
    assert clean and all(q.ok for q in clean)
    assert sum(q.path == "classic" for q in clean) > len(clean) / 2


def test_sqi_drives_the_gate(rng):
    fs = 100.0
    clean = synth_ppg(2.0, fs, rng, hr_bpm=80).signal
    assert sqi_autocorr(clean, fs) > 0.8
    noise = rng.standard_normal(200)
    assert sqi_autocorr(noise, fs) < 0.5
    gate = QualityGate(fs, QualityConfig(full_scale=None, hf_ratio=1e9, motion_ratio=1e9))
    w_noise = _windows(noise + 5, fs)[0]
    assert gate.assess(w_noise).path == "network"
    with pytest.raises(ConfigError):
        QualityConfig(gate="maybe")


def test_the_gate_and_the_classic_detector_share_one_autocorrelation_per_window(rng, monkeypatch):
    from ppg_edge.dsp import pulses, stats
    from ppg_edge.edge_runtime import quality, stream

    s = synth_ppg(20, FS, rng, hr_bpm=70)
    wins = StreamPreprocessor(peaks_preprocessing(FS)).push(s.signal)[2:6]
    # the values they get from the shared products are those each computes alone
    alone = [(sqi_autocorr(w.filtered, FS), pulses.find_systolic_peaks(w.filtered, FS)) for w in wins]
    calls = []

    def counted(x, lo, hi):
        calls.append((lo, hi))
        return stats.lag_products(x, lo, hi)

    for mod in (stream, quality, pulses):
        monkeypatch.setattr(mod, "lag_products", counted)
    gate = QualityGate(FS, QualityConfig(full_scale=None, gate="classic"))
    for w, (sqi, peaks) in zip(wins, alone):
        q = gate.assess(w)
        assert q.ok and q.sqi == sqi
        classic_probs(w, FS)
        np.testing.assert_array_equal(pulses.find_systolic_peaks(w.filtered, FS, products=w.pulse_products(FS)),
                                      peaks)
    assert calls == [pulses.pulse_lag_range(wins[0].filtered.size, FS)] * len(wins)
    # the products are the window's at one rate: asked at another, they are made again
    w = wins[0]
    assert w.pulse_products(FS / 2).covers(*pulses.pulse_lag_range(w.filtered.size, FS / 2))
    assert calls[-1] == pulses.pulse_lag_range(w.filtered.size, FS / 2)


def test_classic_probs_land_on_the_raw_peaks(rng):
    spec = peaks_preprocessing(FS)
    s = synth_ppg(20, FS, rng, hr_bpm=70)
    wins = StreamPreprocessor(spec).push(s.signal)
    hits = []
    for w in wins[2:]:
        p = classic_probs(w, FS)
        central = np.flatnonzero(p[62:187] == 1.0) + 62 + w.start
        hits += central.tolist()
    err = [np.min(np.abs(s.peaks - h)) for h in hits]
    assert hits and max(err) <= 1  # on the true systolic peak (synthetic, noise-free)


def test_classic_context_and_decoder_lead_refuse_what_does_not_fit(rng):
    spec = peaks_preprocessing(FS)
    w = StreamPreprocessor(spec).push(synth_ppg(10, FS, rng, hr_bpm=70).signal)[1]
    ctx = (w.filtered[-40:], w.raw[-40:])
    assert classic_probs(w, FS, context=ctx, lead=20).size == 20 + w.filtered.size
    with pytest.raises(ConfigError, match="lead"):
        classic_probs(w, FS, context=ctx, lead=41)  # longer than the context
    with pytest.raises(ConfigError, match="lead"):
        classic_probs(w, FS, context=(ctx[0], ctx[1][:10]))  # filtered and raw disagree
    with pytest.raises(ConfigError, match="context"):
        classic_probs(w, FS, lead=5)
    dec = StreamDecoder(FS, 250, 250, {"threshold": 0.5})
    dec.push(0, np.zeros(250))
    with pytest.raises(DataError, match="guard"):
        dec.push(250, np.zeros(250), lead=np.ones(dec.guard + 1))  # reaching into decided samples
    dec.push(250, np.zeros(250))  # the refused push changed nothing: the same window is next



@pytest.mark.data
def test_classic_path_finds_pulses_at_the_edges_of_windows_that_do_not_overlap(data_root):
    """hop = window (a 2 s hop, the Zero 2 W's before its 1.8 s): a pulse at a window's last or
    first samples has a neighbour on one side only; with the previous window's tail as context the classic
    detector still finds it (validation subject capnobase/0038: 8 beats missed without it, all
    at window positions 244-249 of 250)."""
    from ppg_edge.boards import load_board
    from ppg_edge.data import load_record
    from ppg_edge.edge_runtime.bench import capture, reference_on_model_axis, run_pipeline
    from ppg_edge.edge_runtime.playback import settings_from_board
    from ppg_edge.metrics.peaks import match_peaks

    settings = settings_from_board(load_board("rpi-zero-2w"))
    rec = load_record("capnobase", "0038", data_root)
    n = int(240 * rec.fs)
    cap = capture(rec.ppg[:n], rec.fs, settings)
    ref = reference_on_model_axis(rec.peaks[rec.peaks < n], rec.fs, n, settings, 125.0)
    summary, beats, _ = run_pipeline(cap, "models/device/peaks-Type30-float32.tflite", "classic", hop=250)
    m = match_peaks(ref[ref < summary["windows"] * 250], beats, 125.0, 0.05)
    edge = [int(r) % 250 for r in m.unmatched_ref]
    assert m.unmatched_ref.size <= 1 and m.unmatched_det.size == 0, f"missed at window positions {edge}"


def test_quality_median_is_numpys(rng):
    from ppg_edge.edge_runtime.quality import median

    for n in (1, 2, 7, 250):
        x = np.round(rng.standard_normal(n), 1)  # ties included
        assert median(x) == float(np.median(x)) == median(list(x))


# ------------------------------------------------------------------ the RR-relative refractory (issue 18)
def _beats_with_a_double(rr_s=0.92, n=30, at=15, after_s=0.36):
    """Beats every ``rr_s`` with one extra ``after_s`` after beat ``at`` (a disturbed pulse counted
    twice, as the network counted vrano714_rpi at 35.1 s)."""
    beats = np.round(np.arange(1, n + 1) * rr_s * FS).astype(int)
    extra = beats[at] + int(round(after_s * FS))
    return beats, extra


def _gate_run(gate, beats, scores=None):
    scores = np.ones(len(beats)) if scores is None else scores
    out = [b for i, s in zip(beats, scores) for b in gate.offer(int(i), float(s))] + gate.flush()
    return [b[0] for b in out]


def test_rr_gate_keeps_the_better_of_a_double_count_and_keeps_a_premature_beat():
    from ppg_edge.edge_runtime.peaks_decode import RRGate

    beats, extra = _beats_with_a_double()
    both = sorted([*beats.tolist(), extra])
    for first_better in (True, False):  # the double after the pulse, or a noise peak scoring higher
        scores = np.array([0.5 if (i == extra) == first_better else 1.0 for i in both])
        for frac, refused in ((0.0, 0), (0.5, 1)):
            g = RRGate(FS, 0.3, frac)
            kept = _gate_run(g, both, scores)
            assert g.refused == refused and len(kept) == beats.size + 1 - refused
            if refused:
                want = beats.tolist() if first_better else [extra if i == beats[15] else i for i in beats.tolist()]
                assert kept == want, (first_better, kept)
    # a premature beat at 0.65 of the interval (and the compensatory pause after it) is a beat
    pre = beats.copy()
    pre[16] = pre[15] + int(round(0.65 * 0.92 * FS))
    g = RRGate(FS, 0.3, 0.5)
    assert _gate_run(g, pre) == pre.tolist() and g.refused == 0


def test_rr_gate_does_not_latch_on_a_fast_heart_rate_or_after_a_gap():
    from ppg_edge.edge_runtime.peaks_decode import RR_GATE_CAP_S, RRGate

    slow = np.round(np.arange(1, 11) * 1.2 * FS).astype(int)  # 50 bpm
    fast = slow[-1] + np.round(np.arange(1, 21) * RR_GATE_CAP_S * FS).astype(int)  # then 120 bpm at once
    g = RRGate(FS, 0.3, 0.5)
    seq = [*slow.tolist(), *fast.tolist()]
    assert _gate_run(g, seq) == seq  # 0.5 x 1.2 s would refuse them: the cap does not
    g = RRGate(FS, 0.3, 0.9)
    _gate_run(g, slow)
    assert g.gap() == int(round(RR_GATE_CAP_S * FS))
    g.offer(int(slow[-1] + 4 * FS), 1.0)  # a gap (finger off) clears the history
    assert g.settle(int(slow[-1] + 4 * FS) + g.gap()) and len(g.intervals) == 0
    assert g.gap() == int(round(0.3 * FS))
    g.offer(int(slow[-1] + 4.4 * FS), 1.0)  # 0.4 s after the gap: only the fixed refractory holds
    assert g.refused == 0 and g.flush()[0][1] == int(0.4 * FS)


@pytest.mark.parametrize("hop", [125, 250])
def test_stream_decoder_refuses_what_the_offline_decode_refuses(hop, rng):
    from ppg_edge.edge_runtime import peaks_decode as pdec

    beats, extra = _beats_with_a_double()
    n = int(beats[-1] + 2 * FS)
    p = _probs_at([*beats.tolist(), extra], n)
    p[extra - 3:extra + 4] *= 0.8  # the double is the weaker candidate
    for frac in (0.0, 0.5):
        offline = pdec.decode_peaks(p, FS, threshold=0.5, rr_refractory=frac)
        dec = StreamDecoder(FS, 250, hop, {"threshold": 0.5, "rr_refractory": frac})
        got = []
        for start in range(0, n - 250 + 1, hop):
            got += dec.push(start, p[start:start + 250])
        got += dec.flush()
        covered = offline[offline < (n - 250) // hop * hop + 250]
        np.testing.assert_array_equal([b.index for b in got], covered, err_msg=f"rr_refractory {frac}")
        assert (extra in covered) == (frac == 0.0)
        assert dec.refused == (1 if frac else 0)


def test_rr_refractory_is_a_fraction():
    from ppg_edge.edge_runtime.peaks_decode import DecoderSpec

    assert DecoderSpec.from_dict({"rr_refractory": 0.5}).rr_refractory == 0.5
    for bad in (-0.1, 1.0, "half"):
        with pytest.raises(ConfigError):
            DecoderSpec.from_dict({"rr_refractory": bad})
