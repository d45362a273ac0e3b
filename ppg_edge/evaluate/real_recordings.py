"""The device path on the real MAX30102 recordings (``max30102-raw``), checked against NeuroKit2.

For every recording of ``max30102-raw`` (issue 18):

- the record's 18-bit codes (:func:`ppg_edge.data.max30102_raw.adc_codes`; the jdesbonnet files
  are refused there, saying what they hold, and the refusal is reported) run through the
  runtime's :class:`~ppg_edge.edge_runtime.pipeline.Pipeline` on each **path** (``network-float32``
  and ``network-int8``: quality gate ``network`` with ``peaks-Type30-{float32,int8}.tflite``;
  ``gated``: gate ``auto``, the classic detector on clean windows and the board's peak model
  otherwise; ``classic``: gate ``classic`` with the same model's preprocessing, the detector the
  gate picks on clean windows) from each **source**: ``replay`` (the codes in FIFO-sized blocks,
  :class:`~ppg_edge.edge_runtime.sensors.ReplaySensor`) and ``emulated`` (the register-level
  emulated chip driven by the recording's light, ``light_from_codes``, at the recording's true
  rate: 100 sps with 4-sample averaging = 25 Hz for the Raspberry Pi logs, read by the unchanged
  driver); the framer hop is the board's ``runtime.hop_s``;
- NeuroKit2 (``nk.ppg_process``: elgendi cleaning and peaks, template-match quality) runs on the
  same device-oriented signal: the blood-volume waveform the pipeline computes, the reflected
  light negated (``-ir``);
- **confident** NeuroKit2: samples where its quality index is at least :data:`NK_CONFIDENT`
  and that lie in a window the device accepted (the device is not asked for beats in windows it
  suppresses with a reason: start-up step, finger off, stale reads), the quality computed per such
  stretch (:func:`nk_quality`). Beat agreement: every NeuroKit2 peak in that stretch should have a
  device beat within :data:`TOL_S` (recall, one-to-one by :func:`ppg_edge.metrics.match_peaks`); the
  precision against NeuroKit2 is reported beside it, not checked (NeuroKit2's peak finder misses clear
  beats of these 25 Hz logs, e.g. vrano714_rpi at 12.6 s and 15.6 s); a beat counted twice is checked
  on its own: consecutive device beats closer than :data:`DOUBLE_RR` of NeuroKit2's median RR;
- HR: the device's summary HR (mean RR of its beats) against NeuroKit2's (mean RR between
  consecutive confident NeuroKit2 peaks, the same formula), within :data:`HR_TOL_BPM`;
- gated vs network: the gated path's beats against the network path's, F1 within :data:`TOL_S`
  at least :data:`AGREE_F1` and HR within :data:`HR_TOL_BPM`;
- finger on/off: the contact changes of the IR level (a 1 s running median against the
  runtime's finger-off threshold, a state held for at least 2 s) against the device's ``finger``
  events, within :data:`FINGER_TOL_S`; no beats where the device says there is no finger, or over
  stale reads.

On synthetic morphologies (:mod:`ppg_edge.synth`, exact peak truth): a strong dicrotic wave
(``diastolic_ratio=0.7``, the largest the generator allows), a slow upstroke (beats of
:func:`ppg_edge.synth.rr_series` timing rising over :data:`SLOW_RISE` of the beat, 0.34 s at 70 bpm,
as in a stenosed artery's pulsus tardus; synth_ppg's rise takes about 0.2 of the beat) and a 10-bit ADC quantisation (the pulse spanning :data:`QUANT_CODES` codes). The classic
path and the gated path must not count a beat twice (two detections on one truth beat's interval),
checked against the truth and against the network path. One more is reported, not checked: the
synthetic record reversed in time (an anacrotic wave at 0.6 of the peak before each systolic
peak), which no path reads (the network included).

:func:`evaluate` returns one JSON-ready dict; :func:`write_report` writes the Markdown table, the
JSON and one PNG per recording. Host side (neurokit2, matplotlib); the runtime itself is unchanged.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.sinks import MemorySink
from ppg_edge.errors import DataError

log = logging.getLogger(__name__)

TOL_S = 0.050            # beat agreement tolerance (s)
HR_TOL_BPM = 5.0         # HR agreement (bpm)
NK_CONFIDENT = 0.9       # NeuroKit2 template-match quality at or above which it counts as confident
MIN_RECALL = 0.95        # of confident NeuroKit2 beats found by the device within TOL_S
DOUBLE_RR = 0.5          # real recordings: consecutive beats closer than this x NeuroKit2's median RR
AGREE_F1 = 0.95          # gated vs network beats, F1 within TOL_S
FINGER_TOL_S = 2.0       # finger on/off event vs the IR level's change
FINGER_MIN_S = 2.0       # a contact state must last this long to count as a transition
SLOW_RISE = 0.4          # slow-upstroke case: the rise from foot to systolic peak, fraction of the beat
QUANT_CODES = 24         # 10-bit case: the pulse spans this many ADC codes
SYNTH_SECONDS = 60.0
SYNTH_RATES = (25.0, 100.0)
SYNTH_EDGE_S = (3.0, 2.0)  # synthetic truth scored from 3 s after the start to 2 s before the end

MODELS = {"float32": "models/device/peaks-Type30-float32.tflite",
          "int8": "models/device/peaks-Type30-int8.tflite"}


# ------------------------------------------------------------------ running the device path
def path_specs(board, models: dict[str, str] | None = None) -> dict[str, tuple[str | None, str]]:
    """``{path: (model file, gate)}``: the two network paths, and the gated and classic paths with
    the board's own peak model (its preprocessing; the network where the gate sends a window)."""
    models = dict(MODELS if models is None else models)
    own = getattr(getattr(board, "runtime", None), "peak_model", None) or Path(models["float32"]).name
    own_path = str(Path(models["float32"]).parent / own)
    return {"network-float32": (models["float32"], "network"), "network-int8": (models["int8"], "network"),
            "gated": (own_path, "auto"), "classic": (own_path, "classic")}


def _pipeline(fs: float, sink, model: str | None, gate: str, hop_s: float | None, full_scale: int):
    from ppg_edge.edge_runtime.pipeline import Pipeline
    from ppg_edge.edge_runtime.quality import QualityConfig

    return Pipeline(fs, sink, model_path=model, full_scale=full_scale, quality=QualityConfig(gate=gate),
                    hop_s=hop_s)


def chip_settings(board, fs: float):
    """The board's MAX30102 settings at the recording's true output rate (``fs``): the sample rate
    and averaging whose ratio is ``fs`` (100 sps / 4 for 25 Hz), the board's pulse width, ADC range,
    LED currents and FIFO threshold otherwise."""
    from ppg_edge.edge_runtime.playback import settings_from_board
    from ppg_edge.edge_runtime.sensors import Max30102Settings

    base = settings_from_board(board)
    for rate in (50, 100, 200, 400, 800, 1000, 1600, 3200):
        for avg in (1, 2, 4, 8, 16, 32):
            if abs(rate / avg - fs) < 1e-9 and rate >= 100:
                return Max30102Settings(sample_rate=rate, averaging=avg, pulse_width_us=base.pulse_width_us,
                                        adc_range_na=base.adc_range_na, red_current_ma=base.red_current_ma,
                                        ir_current_ma=base.ir_current_ma, almost_full=base.almost_full)
    raise DataError(f"no MAX30102 sample rate and averaging give the recording's {fs:g} Hz")


def run_device(red, ir, fs: float, *, source: str, model: str | None, gate: str, hop_s: float | None,
               board=None) -> dict:
    """One run of the device path over a recording's codes: beats (sensor samples), finger events,
    windows, summary; for the emulated chip also how its delivered codes compare with the log."""
    from ppg_edge.data.max30102_raw import FULL_SCALE

    sink = MemorySink()
    out: dict[str, Any] = {"source": source}
    if source == "replay":
        from ppg_edge.edge_runtime.sensors import ReplaySensor

        pipe = _pipeline(fs, sink, model, gate, hop_s, FULL_SCALE)
        sensor = ReplaySensor(red, ir, fs=fs)
        summary = pipe.run_sensor(sensor, sensor.events)
    elif source == "emulated":
        from ppg_edge.edge_runtime.playback import light_from_codes
        from ppg_edge.edge_runtime.sensors import VirtualClock, open_sensor

        settings = chip_settings(board, fs)
        bits = settings.resolution_bits
        light = np.column_stack([light_from_codes(red, settings.adc_range_na, settings.red_current_ma, bits),
                                 light_from_codes(ir, settings.adc_range_na, settings.ir_current_ma, bits)])
        events: list = []
        # the log's codes already carry the chip's noise: the ideal converter reproduces them
        sensor = open_sensor("emulated", source=light, source_fs=float(fs), clock=VirtualClock(),
                             settings=settings, on_event=events.append, adc_noise=0.0)
        pipe = None
        got = []
        try:
            for block in sensor.blocks():
                if pipe is None:
                    pipe = _pipeline(settings.output_rate, sink, model, gate, hop_s, block.full_scale)
                for ev in events:
                    pipe.sensor_event(ev)
                events.clear()
                pipe.process_block(block)
                got.append(np.asarray(block.ir, dtype=np.int64))
        finally:
            sensor.close()
        if pipe is None:
            raise DataError("the emulated chip delivered no samples")
        for ev in events:
            pipe.sensor_event(ev)
        summary = pipe.finish()
        delivered = np.concatenate(got)
        n = min(delivered.size, ir.size)
        diff = np.abs(delivered[:n] - np.asarray(ir[:n], dtype=np.int64))
        k = min(n, int(round(fs)))  # after the first second (the start-up step of the Pi logs)
        out["chip"] = {"output_rate": settings.output_rate, "sample_rate": settings.sample_rate,
                       "averaging": settings.averaging, "delivered": int(delivered.size), "log": int(ir.size),
                       "max_code_diff": int(diff.max()) if n else None,
                       "median_code_diff_after_1s": float(np.median(diff[k:])) if n > k else None}
    else:
        raise ValueError(f"unknown source {source!r}")
    out["beats"] = [int(b["sensor_index"]) for b in sink.of("beat")]
    out["fingers"] = [{"t": float(f["t"]), "on": bool(f["on"])} for f in sink.of("finger")]
    model_fs = pipe.fs
    out["windows"] = [{"t0": e["start"] / model_fs, "t1": float(e["t"]), "ok": bool(e["ok"]),
                       "reason": e.get("reason"), "path": e.get("path")} for e in sink.of("quality")]
    out["summary"] = {k: summary[k] for k in ("beats", "hr_bpm", "windows", "suppressed", "paths",
                                              "suppressed_by", "ir_inverted", "sensor_fs", "model")}
    return out


# ------------------------------------------------------------------ NeuroKit2 and the level
def neurokit(x, fs: float) -> dict:
    """NeuroKit2 on the device-oriented signal ``x`` (blood volume): ``nk.ppg_process`` (elgendi
    cleaning and peaks, template-match quality over the whole record)."""
    import neurokit2 as nk

    signals, info = nk.ppg_process(np.asarray(x, dtype=np.float64), sampling_rate=fs)
    return {"peaks": np.asarray(info["PPG_Peaks"], dtype=np.int64),
            "clean": np.asarray(signals["PPG_Clean"], dtype=np.float64),
            "quality_record": np.asarray(signals["PPG_Quality"], dtype=np.float64), "version": nk.__version__}


def stretches(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of true samples."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def nk_quality(nk: dict, fs: float, accepted: np.ndarray) -> np.ndarray:
    """NeuroKit2's template-match quality (``nk.ppg_quality``) per stretch the device accepted (0
    elsewhere): its template is the stretch's own mean beat, not one blurred by a start-up step the
    device suppresses (over the whole of vrano714_rpi the step holds it at 0.7-0.9 everywhere). A
    stretch of fewer than 3 NeuroKit2 peaks (aromring's 4 s) keeps the whole record's quality."""
    import neurokit2 as nk_

    q = np.zeros(nk["clean"].size)
    for a, b in stretches(accepted[: q.size]):
        p = nk["peaks"][(nk["peaks"] >= a) & (nk["peaks"] < b)] - a
        if p.size < 3:  # a template needs a few beats: the whole record's quality there
            q[a:b] = nk["quality_record"][a:b]
            continue
        try:
            q[a:b] = np.asarray(nk_.ppg_quality(nk["clean"][a:b], peaks=p, sampling_rate=fs), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - NeuroKit2 fails in many ways on short stretches
            log.info("NeuroKit2 quality on samples %d..%d failed: %s", a, b, exc)
    return q


def contact_changes(ir, fs: float, threshold: float, min_s: float = FINGER_MIN_S) -> list[dict]:
    """The finger's contact from the IR level: a 1 s running median (centred) against ``threshold``
    (counts); states shorter than ``min_s`` are merged into their neighbours. The first entry is
    the state at the start (``t`` 0), then each change."""
    x = np.asarray(ir, dtype=np.float64)
    k = max(1, int(round(fs)))
    pad = np.pad(x, (k // 2, k - 1 - k // 2), mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)
    on = med > threshold
    runs = []  # [state, start, end)
    start = 0
    for i in range(1, on.size + 1):
        if i == on.size or on[i] != on[start]:
            runs.append([bool(on[start]), start, i])
            start = i
    merged: list[list] = []
    for r in runs:
        if merged and (r[2] - r[1] < min_s * fs or merged[-1][0] == r[0]):
            merged[-1][2] = r[2]  # a short state belongs to the one before it
        else:
            merged.append(list(r))
    out = []
    for r in merged:
        if out and out[-1]["on"] == r[0]:
            continue
        out.append({"t": r[1] / fs, "on": r[0]})
    return out


def _in_stretch(idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    ok = (idx >= 0) & (idx < mask.size)
    sel = np.zeros(idx.size, dtype=bool)
    sel[ok] = mask[idx[ok]]
    return sel


def _hr(peaks: np.ndarray, fs: float, keep: np.ndarray | None = None) -> float | None:
    """HR (60 / median RR) over consecutive peaks both in ``keep``: the median, so that a beat
    NeuroKit2 misses (one RR of two beats) does not bias its reference."""
    p = np.asarray(peaks, dtype=np.int64)
    if p.size < 2:
        return None
    rr = np.diff(p) / fs
    both = np.ones(rr.size, dtype=bool) if keep is None else (keep[:-1] & keep[1:])
    rr = rr[both & (rr > 0.27) & (rr < 2.5)]
    return float(60.0 / np.median(rr)) if rr.size else None


def beat_agreement(device: list[int], nk: dict, fs: float, confident: np.ndarray,
                   accepted: np.ndarray | None = None) -> dict:
    """Device beats against NeuroKit2's peaks on the ``confident`` samples (see the module docstring):
    one match of all NeuroKit2 peaks with all device beats, then scored on the confident stretch;
    ``missed_any_t``: NeuroKit2 peaks of any quality in the ``accepted`` stretch the device missed."""
    from ppg_edge.metrics import match_peaks

    m = match_peaks(nk["peaks"], np.asarray(device, dtype=np.int64), fs, TOL_S)
    nk_in = _in_stretch(nk["peaks"], confident)
    dev = np.asarray(device, dtype=np.int64)
    dev_in = _in_stretch(dev, confident)
    matched_nk = set(m.pairs[:, 0].tolist())
    matched_dev = set(m.pairs[:, 1].tolist())
    n_nk = int(nk_in.sum())
    n_dev = int(dev_in.sum())
    found = sum(int(p) in matched_nk for p in nk["peaks"][nk_in])
    real = sum(int(b) in matched_dev for b in dev[dev_in])
    errs = [abs(int(b) - int(r)) / fs * 1000 for r, b in m.pairs if _in_stretch([r], confident)[0]]
    return {"confident_s": float(confident.sum() / fs), "nk_confident_beats": n_nk, "device_beats_in": n_dev,
            "recall": found / n_nk if n_nk else None, "precision": real / n_dev if n_dev else None,
            "max_err_ms": max(errs) if errs else None,
            "missed_t": [round(int(p) / fs, 2) for p in nk["peaks"][nk_in] if int(p) not in matched_nk],
            "extra_t": [round(int(b) / fs, 2) for b in dev[dev_in] if int(b) not in matched_dev],
            "missed_any_t": [] if accepted is None else
            [round(int(p) / fs, 2) for p in nk["peaks"][_in_stretch(nk["peaks"], accepted)] if int(p) not in matched_nk]}


def close_pairs(device, nk_peaks, fs: float) -> dict:
    """Consecutive device beats closer than :data:`DOUBLE_RR` of NeuroKit2's median RR (a beat counted
    twice: no heart beats at twice its rate from one beat to the next)."""
    rr_nk = np.diff(np.asarray(nk_peaks, dtype=np.int64)) / fs
    rr_nk = rr_nk[(rr_nk > 0.27) & (rr_nk < 2.5)]
    if rr_nk.size == 0:
        return {"n": None, "min_rr_s": None, "pairs_t": []}
    lim = DOUBLE_RR * float(np.median(rr_nk))
    b = np.asarray(device, dtype=np.int64)
    close = np.flatnonzero(np.diff(b) / fs < lim)
    return {"n": int(close.size), "min_rr_s": lim,
            "pairs_t": [(round(int(b[i]) / fs, 2), round(int(b[i + 1]) / fs, 2)) for i in close]}


def accepted_mask(windows: list[dict], n: int, fs: float) -> np.ndarray:
    """Sensor samples covered by a window the device accepted."""
    mask = np.zeros(n, dtype=bool)
    for w in windows:
        if w["ok"]:
            mask[max(0, int(math.floor(w["t0"] * fs))): min(n, int(math.ceil(w["t1"] * fs)))] = True
    return mask


def stream_agreement(ref: list[int], det: list[int], fs: float) -> dict:
    """One beat stream against another (e.g. gated against network): F1 within TOL_S."""
    from ppg_edge.metrics import peak_scores

    s = peak_scores(np.asarray(ref, dtype=np.int64), np.asarray(det, dtype=np.int64), fs, TOL_S)
    return {"f1": s["f1"], "tp": s["tp"], "fp": s["fp"], "fn": s["fn"]}


# ------------------------------------------------------------------ one recording
def evaluate_record(rec, *, board, paths: dict, sources=("replay", "emulated")) -> dict:
    """Every path from every source over one ``max30102-raw`` record, NeuroKit2 beside it."""
    from ppg_edge.data.max30102_raw import FULL_SCALE, adc_codes
    from ppg_edge.edge_runtime.quality import QualityConfig

    fs = float(rec.fs)
    res: dict[str, Any] = {"record": rec.record_id, "fs": fs, "contact": rec.labels.get("contact"),
                           "n": int(rec.signals["ir"].size), "seconds": rec.signals["ir"].size / fs}
    try:
        red, ir = adc_codes(rec)
    except DataError as exc:
        res["refused"] = str(exc)
        return res
    hop_s = getattr(getattr(board, "runtime", None), "hop_s", None)
    res["hop_s"] = hop_s
    runs: dict[str, dict] = {}
    for src in sources:
        for name, (model, gate) in paths.items():
            runs[f"{src}/{name}"] = run_device(red, ir, fs, source=src, model=model, gate=gate, hop_s=hop_s,
                                               board=board)
    res["runs"] = runs
    bv = -ir.astype(np.float64)  # the device's waveform: reflected light negated
    try:
        nk = neurokit(bv, fs)
        res["neurokit"] = {"peaks": nk["peaks"].tolist(), "version": nk["version"],
                           "hr_all_bpm": _hr(nk["peaks"], fs),
                           "quality_record_mean": float(np.mean(nk["quality_record"]))}
    except Exception as exc:  # noqa: BLE001 - NeuroKit2 fails in many ways on short or flat records
        nk = None
        res["neurokit"] = {"error": f"{type(exc).__name__}: {exc}"}
    threshold = QualityConfig().finger_off_frac * FULL_SCALE
    res["contact_changes"] = contact_changes(ir, fs, threshold)
    agreements = {}
    for key, run in runs.items():
        acc = accepted_mask(run["windows"], ir.size, fs)
        a: dict[str, Any] = {"device_hr_bpm": run["summary"]["hr_bpm"], "device_beats": len(run["beats"]),
                             "accepted_s": float(acc.sum() / fs)}
        if nk is not None:
            q = nk_quality(nk, fs, acc)
            conf = q >= NK_CONFIDENT
            a["nk_quality_accepted_mean"] = float(q[acc[: q.size]].mean()) if acc.any() else None
            a["nk_hr_bpm"] = _hr(nk["peaks"], fs, _in_stretch(nk["peaks"], conf))
            a["beats"] = beat_agreement(run["beats"], nk, fs, conf, acc)
            a["double"] = close_pairs(run["beats"], nk["peaks"], fs)
        agreements[key] = a
    res["vs_neurokit"] = agreements
    if nk is not None and rec.labels.get("contact") == "on":  # the same at the model's own framer hop
        res["manifest_hop"] = {}
        for name in ("network-float32", "gated"):
            model, gate = paths[name]
            run = run_device(red, ir, fs, source="replay", model=model, gate=gate, hop_s=None, board=board)
            acc = accepted_mask(run["windows"], ir.size, fs)
            conf = nk_quality(nk, fs, acc) >= NK_CONFIDENT
            res["manifest_hop"][name] = {"beats": len(run["beats"]), "hr_bpm": run["summary"]["hr_bpm"],
                                         "agreement": beat_agreement(run["beats"], nk, fs, conf, acc),
                                         "double": close_pairs(run["beats"], nk["peaks"], fs)}
    res["gated_vs_network"] = {}
    for src in sources:
        g = runs[f"{src}/gated"]
        for net in ("network-float32", "network-int8"):
            n = runs[f"{src}/{net}"]
            s = stream_agreement(n["beats"], g["beats"], fs)
            hg, hn = g["summary"]["hr_bpm"], n["summary"]["hr_bpm"]
            s["hr_diff_bpm"] = None if hg is None or hn is None else abs(hg - hn)
            res["gated_vs_network"][f"{src}/gated~{net}"] = s
    if "emulated" in sources and "replay" in sources:
        res["emulated_vs_replay"] = {}
        for name in paths:
            s = stream_agreement(runs[f"replay/{name}"]["beats"], runs[f"emulated/{name}"]["beats"], fs)
            s["identical"] = runs[f"replay/{name}"]["beats"] == runs[f"emulated/{name}"]["beats"]
            res["emulated_vs_replay"][name] = s
    return res


# ------------------------------------------------------------------ synthetic morphologies
def synth_morphology(kind: str, fs: float, seed: int, seconds: float = SYNTH_SECONDS):
    """``(signal, truth peaks, description)`` of one synthetic morphology (blood-volume PPG)."""
    from ppg_edge.synth import synth_ppg

    rng = np.random.default_rng(seed)
    if kind == "dicrotic":
        s = synth_ppg(seconds, fs, rng, hr_bpm=60.0, diastolic_ratio=0.7)
        return s.signal, s.peaks, "diastolic wave at 0.7 of the systolic (synth_ppg diastolic_ratio=0.7), 60 bpm"
    if kind == "slow-upstroke":
        return _slow_upstroke(seconds, fs, rng)
    if kind == "anacrotic-reversed":
        s = synth_ppg(seconds, fs, rng, hr_bpm=75.0, diastolic_ratio=0.6)
        x = s.signal[::-1].copy()
        return x, np.sort(x.size - 1 - s.peaks), ("synth_ppg (diastolic_ratio=0.6, 75 bpm) reversed in time: an "
                                                  "anacrotic wave at 0.6 of the peak 0.33 RR before it, a fast fall")
    if kind == "quantised-10bit":
        s = synth_ppg(seconds, fs, rng, hr_bpm=70.0)
        z = (s.signal - s.signal.min()) / np.ptp(s.signal)
        codes = np.clip(np.round(500 + QUANT_CODES * z + 0.3 * rng.standard_normal(z.size)), 0, 1023)
        return codes, s.peaks, (f"synth_ppg at 70 bpm on a 10-bit ADC: the pulse spans {QUANT_CODES} of 1024 "
                                "codes (0.3 code of noise before rounding)")
    raise ValueError(f"unknown morphology {kind!r}")


def _slow_upstroke(seconds: float, fs: float, rng: np.random.Generator, hr_bpm: float = 70.0):
    """Beats of :func:`ppg_edge.synth.rr_series` timing whose rise from the foot to the systolic peak
    takes :data:`SLOW_RISE` of the beat (a raised cosine), then an exponential fall to the next foot;
    amplitudes vary by 10 %. The peak is the sample nearest the end of the rise (the truth)."""
    from ppg_edge.synth import rr_series

    onsets = rr_series(seconds, hr_bpm, rng)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    x = np.zeros(n)
    truth = []
    for t0, r in zip(onsets[:-1], np.diff(onsets)):
        amp = max(0.3, 1 + 0.1 * rng.standard_normal())
        tr = SLOW_RISE * r
        lo, hi = max(0, int(np.ceil(t0 * fs))), min(n, int(np.ceil((t0 + r) * fs)))
        if hi <= lo:
            continue
        u = t[lo:hi] - t0
        e_end = math.exp(-(r - tr) / (0.25 * r))
        fall = (np.exp(-(u - tr) / (0.25 * r)) - e_end) / (1 - e_end)
        x[lo:hi] = amp * np.where(u < tr, 0.5 * (1 - np.cos(np.pi * u / tr)), fall)
        k = lo + int(np.argmax(x[lo:hi]))
        if 0 < k < n - 1 and t0 >= 0:
            truth.append(k)
    return x, np.asarray(truth, dtype=np.int64), (
        f"rr_series timing at {hr_bpm:g} bpm, each beat rising from its foot to the systolic peak over "
        f"{SLOW_RISE:g} of the beat ({SLOW_RISE * 60 / hr_bpm:.2f} s; synth_ppg's about 0.2), then falling")


SYNTH_KINDS = ("dicrotic", "slow-upstroke", "quantised-10bit")
#: reported, not checked: a morphology outside what every path handles (the network included)
SYNTH_INFO_KINDS = ("anacrotic-reversed",)


def double_counts(truth: np.ndarray, det: np.ndarray) -> int:
    """Detections beyond the first on one truth beat's interval (half-way to its neighbours)."""
    truth = np.asarray(truth, dtype=np.float64)
    det = np.asarray(det, dtype=np.float64)
    if truth.size == 0 or det.size == 0:
        return 0
    edges = (truth[1:] + truth[:-1]) / 2
    owner = np.searchsorted(edges, det)
    return int(det.size - np.unique(owner).size)


def evaluate_synth(paths: dict, hop_s: float | None, seed: int = 0, rates=SYNTH_RATES) -> list[dict]:
    """Every path on each synthetic morphology at each rate, against the truth and the network."""
    from ppg_edge.edge_runtime.pipeline import ArrayReplay, Pipeline
    from ppg_edge.edge_runtime.quality import QualityConfig
    from ppg_edge.metrics import match_peaks, peak_scores
    from ppg_edge.metrics.peaks import scores_from_match

    out = []
    for fs in rates:
        for i, kind in enumerate(SYNTH_KINDS + SYNTH_INFO_KINDS):
            x, truth, what = synth_morphology(kind, fs, seed + i)
            lo, hi = SYNTH_EDGE_S[0] * fs, x.size - SYNTH_EDGE_S[1] * fs
            t_in = truth[(truth >= lo) & (truth < hi)]
            row: dict[str, Any] = {"kind": kind, "fs": fs, "what": what, "truth_beats": int(t_in.size),
                                   "checked": kind in SYNTH_KINDS, "paths": {}}
            beats = {}
            for name, (model, gate) in paths.items():
                sink = MemorySink()
                pipe = Pipeline(fs, sink, model_path=model, quality=QualityConfig(gate=gate), hop_s=hop_s)
                summary = pipe.run(ArrayReplay(x, fs).blocks())
                b = np.array([e["sensor_index"] for e in sink.of("beat")], dtype=np.int64)
                b = b[(b >= lo - TOL_S * fs) & (b < hi + TOL_S * fs)]
                beats[name] = b
                s = peak_scores(t_in, b, fs, TOL_S)
                row["paths"][name] = {"beats": int(b.size), "f1": s["f1"], "fp": s["fp"], "fn": s["fn"],
                                      "double": double_counts(t_in, b), "paths": summary["paths"]}
            for name in ("gated", "classic"):
                m = match_peaks(beats["network-float32"], beats[name], fs, TOL_S)
                s = scores_from_match(m)
                # beats the network does not have and that are no truth beat either: counted twice, or false
                false = match_peaks(t_in, m.unmatched_det, fs, TOL_S).unmatched_det
                row["paths"][name]["vs_network"] = {"f1": s["f1"], "extra": s["fp"], "missing": s["fn"],
                                                    "extra_not_truth": int(false.size)}
            out.append(row)
    return out


# ------------------------------------------------------------------ checks
def _check(name: str, record: str, passed: bool, figure: str, limit: str) -> dict:
    return {"check": name, "record": record, "passed": bool(passed), "figure": figure, "limit": limit}


def checks(doc: dict) -> list[dict]:
    """The issue's checks, each with its figure and limit (what the report's table and the tests read)."""
    out = []
    for r in doc["records"]:
        rid = r["record"]
        if "refused" in r:
            out.append(_check("refused", rid, "not raw MAX30102 codes" in r["refused"], r["refused"][:120],
                              "refused with what the file holds"))
            continue
        finger = r["contact"] in ("on",)
        for key, a in r["vs_neurokit"].items():
            src, path = key.split("/")
            if finger:
                hd, hn = a["device_hr_bpm"], a.get("nk_hr_bpm")
                ok = hd is not None and hn is not None and abs(hd - hn) <= HR_TOL_BPM
                out.append(_check("hr_vs_neurokit", rid, ok, f"{key}: device {_f(hd)} vs NeuroKit2 {_f(hn)} bpm",
                                  f"<= {HR_TOL_BPM:g} bpm"))
                b = a.get("beats") or {}
                rec_, prec = b.get("recall"), b.get("precision")
                ok = rec_ is not None and rec_ >= MIN_RECALL
                out.append(_check("beats_vs_neurokit", rid, ok,
                                  f"{key}: recall {_f(rec_, 3)} of {b.get('nk_confident_beats')} confident "
                                  f"(missed {b.get('missed_t')}); beside it precision {_f(prec, 3)} of "
                                  f"{b.get('device_beats_in')} (not NeuroKit2's: {b.get('extra_t')})",
                                  f"recall >= {MIN_RECALL:g} within {TOL_S * 1000:.0f} ms"))
                d = a.get("double") or {}
                out.append(_check("no_double_count", rid, d.get("n") == 0,
                                  f"{key}: {d.get('n')} beat pairs closer than {_f(d.get('min_rr_s'), 2)} s "
                                  f"{d.get('pairs_t')}", f"0 (pairs closer than {DOUBLE_RR:g} x NeuroKit2's "
                                  "median RR)"))
            if r["contact"] == "none":
                n = a["device_beats"]
                out.append(_check("no_finger_no_beats", rid, n == 0, f"{key}: {n} beats", "0"))
        for key, s in r["gated_vs_network"].items():
            hd = s["hr_diff_bpm"]
            ok = s["f1"] >= AGREE_F1 and (hd is None or hd <= HR_TOL_BPM)
            out.append(_check("gated_vs_network", rid, ok, f"{key}: F1 {s['f1']:.3f} (tp {s['tp']}, fp {s['fp']}, "
                              f"fn {s['fn']}), HR diff {_f(hd)} bpm",
                              f"F1 >= {AGREE_F1:g} within {TOL_S * 1000:.0f} ms, HR <= {HR_TOL_BPM:g} bpm"))
        if r["contact"] in ("intermittent", "none"):
            ref = r["contact_changes"]
            for key, run in r["runs"].items():
                ok, fig = finger_agreement(ref, run["fingers"])
                out.append(_check("finger_transitions", rid, ok, f"{key}: {fig}", f"same changes, each within "
                                  f"{FINGER_TOL_S:g} s"))
                if r["contact"] == "intermittent":
                    n = len(run["beats"])
                    out.append(_check("no_beats_from_spikes", rid, n == 0,
                                      f"{key}: {n} beats (stale reads and spikes throughout)", "0"))
        for name, s in r.get("emulated_vs_replay", {}).items():
            out.append(_check("emulated_vs_replay", rid, s["f1"] >= AGREE_F1,
                              f"{name}: F1 {s['f1']:.3f} (tp {s['tp']}, fp {s['fp']}, fn {s['fn']}; identical "
                              f"{s['identical']})", f"F1 >= {AGREE_F1:g} within {TOL_S * 1000:.0f} ms"))
    for row in doc.get("synth", []):
        if not row.get("checked", True):
            continue
        tag = f"synth:{row['kind']}@{row['fs']:g}Hz"
        for name in ("classic", "gated"):
            p = row["paths"][name]
            v = p["vs_network"]
            ok = p["double"] == 0 and v["extra_not_truth"] == 0 and p["f1"] >= AGREE_F1 and v["f1"] >= AGREE_F1
            out.append(_check("no_double_count", tag, ok,
                              f"{name}: {p['double']} double, F1 vs truth {p['f1']:.3f} (fp {p['fp']}, fn {p['fn']}), "
                              f"vs network F1 {v['f1']:.3f} (extra {v['extra']}, of them not truth "
                              f"{v['extra_not_truth']}); network F1 {row['paths']['network-float32']['f1']:.3f}",
                              f"0 double, 0 beyond network and truth, F1 >= {AGREE_F1:g} vs truth and vs network"))
    return out


def finger_agreement(ref: list[dict], got: list[dict]) -> tuple[bool, str]:
    """Whether the device's finger events are the level's contact changes, each within FINGER_TOL_S
    (the first entry of each: the state at the start, compared by state only)."""
    fig = (f"level {[(round(c['t'], 2), c['on']) for c in ref]}, device "
           f"{[(round(c['t'], 2), c['on']) for c in got]}")
    if [c["on"] for c in ref] != [c["on"] for c in got]:
        return False, fig
    return all(abs(a["t"] - b["t"]) <= FINGER_TOL_S for a, b in zip(ref[1:], got[1:])), fig


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ------------------------------------------------------------------ the whole evaluation
def evaluate(data_root=None, *, board: str = "rpi-zero-2w", models: dict[str, str] | None = None,
             records: list[str] | None = None, seed: int = 0, synth: bool = True,
             sources=("replay", "emulated")) -> dict:
    """Every ``max30102-raw`` recording (or ``records``) and the synthetic morphologies; a dict
    with the per-record results, the synthetic rows and :func:`checks`."""
    import ppg_edge.convert  # noqa: F401  (registers the host-only tf.lite interpreter backend)
    from ppg_edge import config
    from ppg_edge.boards import load_board
    from ppg_edge.data import load_record
    from ppg_edge.data.max30102_raw import list_records

    root = config.data_root(data_root) if data_root is not None else config.data_root()
    b = load_board(board)
    paths = path_specs(b, models)
    for model, _ in paths.values():
        if model is not None and not Path(model).is_file():
            raise DataError(f"peak model {model} is not there (run from the repository root)")
    ids = records or list_records(Path(root) / "max30102-raw")
    doc: dict[str, Any] = {"board": b.identifier, "hop_s": getattr(b.runtime, "hop_s", None),
                           "paths": {k: {"model": m, "gate": g} for k, (m, g) in paths.items()},
                           "sources": list(sources), "tol_s": TOL_S, "hr_tol_bpm": HR_TOL_BPM,
                           "nk_confident": NK_CONFIDENT, "records": []}
    for rid in ids:
        log.info("max30102-raw/%s", rid)
        doc["records"].append(evaluate_record(load_record("max30102-raw", rid, root), board=b, paths=paths,
                                              sources=sources))
    if synth:
        doc["synth"] = evaluate_synth(paths, doc["hop_s"], seed)
    doc["checks"] = checks(doc)
    doc["passed"] = all(c["passed"] for c in doc["checks"])
    doc["code"] = _code_version()
    return doc


def _code_version() -> dict:
    """The commit the device path ran from, and whether ``edge_runtime/`` differed from it."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "edge_runtime", "models/device"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "runtime_modified": None}
    return {"commit": head, "runtime_modified": bool(dirty)}


# ------------------------------------------------------------------ report
def to_markdown(doc: dict) -> str:
    lines = ["# The device path on the real MAX30102 recordings", ""]
    if doc.get("command"):
        lines += [f"Command: `{doc['command']}`  "]
    code = doc.get("code") or {}
    if code.get("commit"):
        lines += [f"Code: commit {code['commit']}" + (" with edge_runtime/ or models/device/ modified"
                                                      if code.get("runtime_modified") else "") + "  "]
    lines += [""]
    lines += [f"Board {doc['board']} (framer hop {doc['hop_s']} s); paths: "
              + "; ".join(f"{k} = gate {v['gate']}, {Path(v['model']).name}" for k, v in doc["paths"].items())
              + f". Sources: {', '.join(doc['sources'])} (emulated: the register-level chip driven by the log's "
              "codes at the log's rate, read by the driver). NeuroKit2 `ppg_process` on the device's waveform "
              f"(-IR); confident = its template-match quality >= {doc['nk_confident']:g} in a window the device "
              f"accepted. Beats within {doc['tol_s'] * 1000:.0f} ms (`ppg_edge.metrics.match_peaks`).", ""]
    lines += ["| record | s | contact | source/path | beats | HR device | HR NeuroKit2 | recall / precision "
              "(confident beats) | NeuroKit2 beats missed (any quality, accepted windows) | suppressed | "
              "finger events |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["records"]:
        if "refused" in r:
            lines.append(f"| {r['record']} | {r['seconds']:.1f} | {r['contact']} | refused | - | - | - | - | - | - | "
                         f"{r['refused'][:200].replace('|', '/')} |")
            continue
        for key, run in r["runs"].items():
            a = r["vs_neurokit"][key]
            b = a.get("beats") or {}
            s = run["summary"]
            fingers = " ".join(f"{'on' if f['on'] else 'off'}@{f['t']:.1f}" for f in run["fingers"]) or "-"
            lines.append(f"| {r['record']} | {r['seconds']:.1f} | {r['contact']} | {key} | {s['beats']} | "
                         f"{_f(s['hr_bpm'])} | {_f(a.get('nk_hr_bpm'))} | {_f(b.get('recall'), 3)} / "
                         f"{_f(b.get('precision'), 3)} of {b.get('nk_confident_beats', '-')} | "
                         f"{b.get('missed_any_t', '-')} | "
                         f"{s['suppressed']}/{s['windows']} {_reasons(s['suppressed_by'])} | {fingers} |")
    hop_rows = [(r["record"], k, v) for r in doc["records"] for k, v in (r.get("manifest_hop") or {}).items()]
    if hop_rows:
        lines += ["", f"## The same at the model's own framer hop (the manifest's; above: the board's "
                  f"{doc['hop_s']} s)", "",
                  "| record | replay/path | beats | HR | recall of confident NeuroKit2 beats | not NeuroKit2's | "
                  "pairs counted twice |", "|---|---|---|---|---|---|---|"]
        for rid, k, v in hop_rows:
            a = v["agreement"]
            lines.append(f"| {rid} | {k} | {v['beats']} | {_f(v['hr_bpm'])} | {_f(a['recall'], 3)} of "
                         f"{a['nk_confident_beats']} {a['missed_t'] or ''} | {a['extra_t']} | "
                         f"{v['double']['pairs_t']} |")
    if doc.get("synth"):
        lines += ["", "## Synthetic morphologies (exact truth)", "",
                  "| morphology | Hz | truth beats | path | beats | F1 vs truth | double counts | F1 vs network |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in doc["synth"]:
            for name, p in row["paths"].items():
                v = p.get("vs_network", {}).get("f1")
                lines.append(f"| {row['kind']} | {row['fs']:g} | {row['truth_beats']} | {name} | {p['beats']} | "
                             f"{p['f1']:.3f} | {p['double']} | {_f(v, 3)} |")
        n_kinds = len(SYNTH_KINDS) + len(SYNTH_INFO_KINDS)
        lines += [""] + [f"- {row['kind']}{'' if row.get('checked', True) else ' (reported, not checked)'}: "
                         f"{row['what']}" for row in doc["synth"][:n_kinds]]
    failed = [c for c in doc["checks"] if not c["passed"]]
    lines += ["", "## Checks", "",
              f"{sum(c['passed'] for c in doc['checks'])} of {len(doc['checks'])} pass.", ""]
    lines += ["| check | record | passed | figure | limit |", "|---|---|---|---|---|"]
    for c in doc["checks"]:
        lines.append(f"| {c['check']} | {c['record']} | {'yes' if c['passed'] else '**no**'} | "
                     f"{c['figure'].replace('|', '/')} | {c['limit']} |")
    if failed:
        lines += ["", "Failed: " + "; ".join(f"{c['check']} {c['record']} ({c['figure']})" for c in failed)]
    lines += ["", "Data: " + _citation(), ""]
    return "\n".join(lines) + "\n"


def _reasons(by: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(by.items())) if by else ""


def _citation() -> str:
    from ppg_edge.data.max30102_raw import CITATION

    return CITATION


def plot_record(r: dict, rec, path: Path) -> None:
    """Raw IR counts, the device's waveform (-IR) with its beats and NeuroKit2's, suppressed windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs = r["fs"]
    ir = np.asarray(rec.signals["ir"], dtype=np.float64)
    t = np.arange(ir.size) / fs
    refused = "refused" in r
    fig, axes = plt.subplots(1 if refused else 2, 1, figsize=(11, 2.6 if refused else 5), sharex=True,
                             squeeze=False)
    ax = axes[0, 0]
    ax.plot(t, ir, lw=0.7, color="0.2")
    ax.set_ylabel("IR (raw)")
    ax.set_title(f"max30102-raw/{r['record']} ({fs:.1f} Hz)" + (": refused by adc_codes" if refused else ""),
                 fontsize=9)
    if refused:
        ax.text(0.01, 0.05, r["refused"][:160] + "...", transform=ax.transAxes, fontsize=6)
    else:
        net, gated = r["runs"]["replay/network-float32"], r["runs"]["replay/gated"]
        for f in net["fingers"]:
            ax.axvline(f["t"], color="g" if f["on"] else "r", ls="--", lw=0.8)
        for c in r["contact_changes"][1:]:
            ax.axvline(c["t"], color="g" if c["on"] else "r", ls=":", lw=1.5)
        ax2 = axes[1, 0]
        bv = -ir
        ax2.plot(t, bv, lw=0.7, color="0.2", label="device waveform (-IR)")
        for w in net["windows"]:
            if not w["ok"]:
                ax2.axvspan(w["t0"], w["t1"], color="0.85", lw=0)
        acc = accepted_mask(net["windows"], ir.size, fs)
        lo, hi = (np.percentile(bv[acc], [0.5, 99.5]) if acc.any() else (bv.min(), bv.max()))
        span = float(hi - lo) or 1.0
        for name, run, mk, col, off in (("network float32", net, "v", "C0", 0.08), ("gated", gated, "^", "C1", -0.08)):
            b = np.asarray(run["beats"], dtype=np.int64)
            b = b[(b >= 0) & (b < ir.size)]
            ax2.plot(b / fs, bv[b] + off * span, mk, ms=4, color=col, label=f"{name} ({len(run['beats'])})")
        nkp = np.asarray(r.get("neurokit", {}).get("peaks", []), dtype=np.int64)
        if nkp.size:
            ax2.plot(nkp / fs, bv[nkp], "x", ms=4, color="C3", label=f"NeuroKit2 ({nkp.size})")
        ax2.set_ylabel("-IR (counts)")
        ax2.set_xlabel("s (grey: windows the device suppressed; above, dashed: the device's finger events, "
                       "dotted: the IR level's contact changes; green on, red off)", fontsize=8)
        ax2.legend(fontsize=6, loc="lower right", ncol=4)
        if r["contact"] == "on" and np.ptp(bv) > 5 * span:  # a start-up step dwarfs the pulse
            ax2.set_ylim(lo - 0.2 * span, hi + 0.2 * span)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_synth(doc: dict, path: Path, seed: int = 0) -> None:
    """The first 8 s of each synthetic morphology (at 100 Hz) with its truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = SYNTH_KINDS + SYNTH_INFO_KINDS
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 7.5))
    for i, (ax, kind) in enumerate(zip(axes, kinds)):
        fs = SYNTH_RATES[-1]
        x, truth, what = synth_morphology(kind, fs, seed + i)
        n = int(8 * fs)
        ax.plot(np.arange(n) / fs, x[:n], lw=0.8, color="0.2")
        tr = truth[truth < n]
        ax.plot(tr / fs, x[tr], "o", mfc="none", color="C2", ms=5, label="truth")
        ax.set_title(f"{kind}: {what}", fontsize=8)
        ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(doc: dict, out: Path, data_root=None) -> list[Path]:
    """``real-recordings.md``, ``real-recordings.json`` and the PNGs in ``out``."""
    from ppg_edge import config
    from ppg_edge.data import load_record

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = config.data_root(data_root) if data_root is not None else config.data_root()
    written = []
    for r in doc["records"]:
        p = out / f"real-recordings-{r['record']}.png"
        plot_record(r, load_record("max30102-raw", r["record"], root), p)
        written.append(p)
    if doc.get("synth"):
        p = out / "real-recordings-synth.png"
        plot_synth(doc, p)
        written.append(p)
    md = out / "real-recordings.md"
    md.write_text(to_markdown(doc))
    js = out / "real-recordings.json"
    js.write_text(json.dumps(doc, indent=1) + "\n")
    return [md, js, *written]
