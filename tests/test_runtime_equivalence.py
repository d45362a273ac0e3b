"""Streaming equals batch on a real model and a real test-subject record.

A CapnoBase record of a TEST subject (``ppg_edge/data/splits/peaks.json``) is
played through the emulated MAX30102 and the real driver, the streaming DSP,
framer, the int8 peak model and the stream decoder (``Pipeline``, network always
on). The same delivered samples go through the offline evaluation
(:func:`ppg_edge.edge_runtime.batch.offline_peaks`: batch preprocessing, the same
interpreter, ``stitch_windows``, ``decode_peaks``). The beats must agree within
one sample and score the same F1 against the expert peaks.

The model: ``$PPG_EDGE_TEST_PEAK_MODEL`` if set, else the committed
``models/device/peaks-Type30-int8.tflite``, else Type30 converted to int8 into a
temporary folder (needs TensorFlow, ~1 min). The conversion here does not
enforce the converter's Keras-agreement self-check: this test is about the
runtime giving the offline result of whatever model it runs, not about the
quantization (``tests/test_convert.py`` owns that).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.boards import load_board
from ppg_edge.data import load_record
from ppg_edge.edge_runtime.batch import offline_peaks
from ppg_edge.edge_runtime.decoder import StreamDecoder
from ppg_edge.edge_runtime.interpreter import EdgeModel
from ppg_edge.edge_runtime.peaks_decode import decode_peaks, stitch_windows
from ppg_edge.edge_runtime.pipeline import Pipeline
from ppg_edge.edge_runtime.playback import play_record, settings_from_board
from ppg_edge.edge_runtime.quality import QualityConfig
from ppg_edge.edge_runtime.sinks import MemorySink
from ppg_edge.metrics.peaks import f1_from_counts, match_peaks

REPO = Path(__file__).resolve().parents[1]
RECORD = "0009"  # a TEST subject of the committed 'peaks' split
SECONDS = 90.0
TOL_50MS = int(round(0.05 * 125))


def _convert_type30_int8(out: Path) -> Path:
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from ppg_edge.convert import calibration as cal
    from ppg_edge.convert.package import save_converted
    from ppg_edge.convert.peaks import find_saved_model, peak_preprocessing
    from ppg_edge.convert.tflite import convert_model
    from ppg_edge.data.splits import load_split
    from ppg_edge.train.peaks.fit import load_peak_model

    meta = find_saved_model(REPO / "models/peaks/Type30")
    model, config = load_peak_model(meta)
    pre = peak_preprocessing(config, int(model.input_shape[1]))
    doc = cal.load_calibration_list(REPO / "convert/calibration_lists/peaks-125hz-w250.json")
    cal.check_calibration_list(doc, load_split(doc["split"]))
    x_cal, _ = cal.load_windows(doc, pre, "entries", None)
    info = json.loads(meta.read_text())
    decoder = {"threshold": float(info["threshold"]), **info["decode"],
               "raw_axis_shift_samples": int(info["raw_axis_shift_samples"])}
    flat = convert_model(model, "int8", calibration=x_cal)
    return save_converted(flat, out, "peaks-Type30-int8", kind="peaks", mode="int8", sample_rate_hz=pre.fs,
                          window=pre.window, hop=pre.hop, preprocessing=pre.to_dict(), decoder=decoder)


@pytest.fixture(scope="session")
def peak_model_int8(tmp_path_factory, data_root) -> Path:
    env = os.environ.get("PPG_EDGE_TEST_PEAK_MODEL")
    if env:
        return Path(env)
    committed = REPO / "models/device/peaks-Type30-int8.tflite"
    if committed.exists():
        return committed
    return _convert_type30_int8(tmp_path_factory.mktemp("peaks-int8"))


def _f1(ref, det, tol=TOL_50MS) -> tuple[float, tuple[int, int, int]]:
    m = match_peaks(ref, det, 125.0, tol / 125.0)
    c = (m.tp, m.fp, m.fn)
    return f1_from_counts(*c), c


def _diff_report(stream: np.ndarray, batch: np.ndarray) -> str:
    lines = []
    for s in stream:
        j = np.searchsorted(batch, s)
        near = [int(batch[k]) for k in (j - 1, j) if 0 <= k < batch.size]
        if not near or min(abs(s - b) for b in near) > 1:
            lines.append(f"stream beat {int(s)} ({s / 125:.3f} s): nearest batch beats {near}")
    for b in batch:
        j = np.searchsorted(stream, b)
        near = [int(stream[k]) for k in (j - 1, j) if 0 <= k < stream.size]
        if not near or min(abs(b - s) for s in near) > 1:
            lines.append(f"batch beat {int(b)} ({b / 125:.3f} s): nearest stream beats {near}")
    return "\n".join(lines)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.tf  # only when models/device has no int8 Type30 yet: the fixture converts one
def test_streaming_equals_batch_on_a_test_subject(peak_model_int8, data_root):
    from ppg_edge.data.splits import load_split

    assert f"capnobase/{RECORD}" in load_split("peaks")["test"]
    rec = load_record("capnobase", RECORD, data_root)
    n_src = int(SECONDS * rec.fs)
    settings = settings_from_board(load_board("virtual-rpi4"))

    sink = MemorySink()
    pipe = Pipeline(settings.output_rate, sink, model_path=peak_model_int8,
                    full_scale=(1 << settings.resolution_bits) - 1, quality=QualityConfig(gate="network"))
    play = play_record(rec.ppg[:n_src], rec.fs, settings, pipe)
    summary = play.summary
    assert play.lost == 0 and summary["lost"] == 0 and summary["nonfinite"] == 0
    assert summary["samples"] == play.ir.size
    assert summary["suppressed"] == 0, summary["suppressed_by"]  # a clean stretch: every window runs
    assert summary["paths"] == {"network": summary["windows"]}

    model = EdgeModel(peak_model_int8)
    batch = offline_peaks(model, play.blood_volume, fs_in=play.fs)
    assert len(batch.windows) == summary["windows"]
    stream = np.array([e["index"] for e in sink.of("beat")], dtype=np.int64)
    report = _diff_report(stream, batch.beats)
    assert stream.size == batch.beats.size and not report, (
        f"{stream.size} stream beats vs {batch.beats.size} batch beats; differing:\n{report}")

    # expert peaks (300 Hz) on the model axis: sensor sample j averages conversions at
    # (4 j + 0..3) / 400 s, i.e. it sits 1.5 conversions (3.75 ms) after j / 100 s
    lag = (settings.averaging - 1) / 2 / settings.sample_rate
    ref = np.round((rec.peaks[rec.peaks < n_src] / rec.fs - lag) * model.fs).astype(np.int64)
    ref = ref[ref < batch.probs.size]
    f1_s, c_s = _f1(ref, stream)
    f1_b, c_b = _f1(ref, batch.beats)
    assert f1_s == f1_b, f"stream F1 {f1_s:.4f} {c_s} vs batch {f1_b:.4f} {c_b}"
    assert f1_s > 0.9, f"F1 {f1_s:.3f} {c_s}: the record or the reference axis is wrong"


def _pulse_train(rng, n: int, *, margin: int, width: float):
    """Peaks 80-120 samples apart (the last ``margin`` samples free) and Gaussians of ``width`` on them."""
    t = np.arange(n)
    peaks = np.cumsum(rng.integers(80, 120, size=80))
    peaks = peaks[peaks < n - margin]
    x = np.zeros(n)
    for k in peaks:
        x = np.maximum(x, np.exp(-0.5 * ((t - k) / width) ** 2))
    return peaks, x


def test_stream_decoder_equals_stitch_and_decode(rng):
    """The decoder alone: noisy overlapping windows, mean stitching, snap on."""
    fs, win, hop = 125.0, 250, 125
    n = 125 * 60
    peaks, clean = _pulse_train(rng, n, margin=5, width=3.0)
    sig = np.convolve(clean, np.hanning(15), mode="same") + 0.01 * rng.standard_normal(n)
    starts = range(0, n - win + 1, hop)
    wp = np.array([np.clip(clean[s:s + win] + rng.normal(0, 0.15, win), 0, 1) for s in starts])
    covered = (len(wp) - 1) * hop + win
    cfg = {"threshold": 0.45, "snap": True}
    dec = StreamDecoder(fs, win, hop, cfg)
    beats = []
    for k, s in enumerate(starts):
        beats += dec.push(s, wp[k], sig[s:s + win])
    beats += dec.flush()
    got = np.array([b.index for b in beats])
    want = decode_peaks(stitch_windows(wp, hop, covered), fs, threshold=0.45, signal=sig[:covered])
    np.testing.assert_array_equal(got, want)
    assert got.size > 0.9 * peaks.size


@pytest.mark.parametrize("raw_axis", [
    {"raw_snap_radius_s": 0.065},
    {"raw_snap_radius_s": 0.03, "raw_smooth_s": 0.04, "raw_refine_s": 0.008},  # the models' own
])
def test_stream_decoder_raw_axis_equals_the_offline_mapping(rng, raw_axis):
    """Beats moved onto a noisy raw PPG (shift, smoothed snap, refine) by the stream decoder
    equal the offline path's (``batch.decode_stream``, the same ``snap_to_raw``)."""
    from ppg_edge.edge_runtime.batch import decode_stream

    fs, win, hop, shift = 125.0, 250, 125, 3
    n = 125 * 60
    peaks, raw = _pulse_train(rng, n, margin=10, width=4.0)
    raw = raw + 0.08 * rng.standard_normal(n)
    filt = np.roll(np.convolve(raw, np.hanning(15) / 7.5, mode="same"), shift)
    lagged = np.roll(raw, shift) > 0.5
    starts = range(0, n - win + 1, hop)
    wp = np.array([np.clip(lagged[s:s + win] + rng.normal(0, 0.1, win), 0, 1) for s in starts])
    covered = (len(wp) - 1) * hop + win
    cfg = {"threshold": 0.45, "snap": True, "raw_axis_shift_samples": shift, **raw_axis}
    dec = StreamDecoder(fs, win, hop, cfg)
    beats = []
    for k, s in enumerate(starts):
        beats += dec.push(s, wp[k], filt[s:s + win], raw[s:s + win])
    beats += dec.flush()
    got = np.array([b.index for b in beats])
    want = decode_stream(stitch_windows(wp, hop, covered), filt[:covered], fs, cfg, raw=raw[:covered])
    assert np.array_equal(got, want), _diff_report(got, want)
    assert got.size > 0.9 * peaks.size


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.tf
def test_ppg_edge_run_on_a_real_record(peak_model_int8, data_root, tmp_path):
    """`ppg-edge run` streams capnobase/0009 through the emulated chip: beats, HR and BP,
    and every gate (network, classic, quality-gated) finds the same beats."""
    import runtime_models as rm

    from ppg_edge.cli import main

    bp = rm.tiny_model("bp", "float32", fs=100.0)  # plumbing only: random weights
    rec = load_record("capnobase", RECORD, data_root)
    ref_hr = 60.0 / np.median(np.diff(rec.peaks[rec.peaks < 30 * rec.fs]) / rec.fs)
    beats = {}
    for gate in ("network", "classic", "auto"):
        out = tmp_path / f"{gate}.jsonl"
        rc = main(["run", "--board", "virtual-rpi4", "--source", "emulated", "--record", f"capnobase/{RECORD}",
                   "--model", str(peak_model_int8), "--bp-model", str(bp), "--duration", "30", "--speed", "0",
                   "--gate", gate, "--no-status", "--data-root", str(data_root), "--out", str(out)])
        assert rc == 0
        ev = [json.loads(line) for line in out.read_text().splitlines()]
        summary = ev[-1]
        assert summary["type"] == "summary" and summary["lost"] == 0 and summary["suppressed"] == 0
        assert summary["hr_bpm"] == pytest.approx(ref_hr, rel=0.05)
        assert len([e for e in ev if e["type"] == "bp"]) >= 10
        beats[gate] = np.array([e["index"] for e in ev if e["type"] == "beat"])
    for gate in ("classic", "auto"):
        assert beats[gate].size == beats["network"].size
        assert np.abs(beats[gate] - beats["network"]).max() <= 2, gate
