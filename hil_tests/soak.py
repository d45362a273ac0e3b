"""The soak step (``kind = "soak"``): hours of signal through the device path, accelerated, in one process.

A soak step lists its stimulus as data (``[[step.segment]]`` tables, cycled until
``signal_s`` seconds of signal are laid out):

- ``kind = "record"``: a labelled record (``record = "DATASET/ID"``, ``start_s``,
  ``seconds``), its expert peaks kept as labels;
- ``kind = "noise"``: the same with white Gaussian noise added at ``snr_db``
  (signal power over noise power, on the standardised PPG at the source rate; a fixed
  ``seed`` per segment, so every occurrence is the same signal); labels kept;
- ``kind = "raw"``: a real MAX30102 log (``record = "max30102-raw/ID"``), its 18-bit
  codes turned back into the light that gives the same codes at the board's ADC range
  and LED current (no labels);
- ``kind = "finger_off"``: the no-finger level (``level_code``, default 1020 as in the
  real no-finger log ``sergiomagdalenop_rpi``) with ``noise_codes`` of noise.

Every segment becomes light (nA per mA) at :data:`SOURCE_FS`; the whole schedule is one
source array played by :class:`~ppg_edge.edge_runtime.sensors.EmulatedMax30102` (instrumented
by :class:`SoakChip`, which counts what the chip handed out), read by the real
:class:`~ppg_edge.edge_runtime.sensors.Max30102` driver on the chip's interrupt, and
streamed block by block through :class:`ppg_edge.edge_runtime.pipeline.Pipeline`, all
sharing one virtual clock (``VirtualClock(keep_sleeps=False)``: as fast as the CPU allows)
in this process: RSS is this process's.

Faults (``[step.faults]``, counts per hour of signal, placed at seeded random times):
``i2c_bursts_per_hour`` (1..``i2c_burst_max`` consecutive transfers fail with EIO; the
driver retries), ``partial_bursts_per_hour`` (a FIFO burst pops its samples, then fails:
those samples are lost), ``overflows_per_hour`` (the reader stalls for one of
``stall_s`` seconds: the FIFO overflows).

Recorded, each as a check (``expect``):

- ``exact_accounting``: samples delivered to the pipeline + samples it counted lost ==
  samples the chip produced (less any left unread), and the lost samples by reason
  (FIFO overflow, cut-off burst) equal the chip's own counts;
- ``max_rss_growth_kb``: RSS (``/proc/self/statm``) at the start (pipeline built, before
  the first sample), every ``rss_every_s`` of signal and at the end; growth = the
  largest sample minus the start;
- ``no_duplicate_beats``: no beat index twice and no two beats closer than the
  decoder's refractory period (across windows, i.e. over the whole stream);
- ``max_f1_delta_vs_offline``: for every labelled segment template, the pooled F1 of the
  soak's beats against the labels differs from the offline F1 (the same template's light
  played alone through a fresh chip -> driver -> pipeline, scored on the same span) by at
  most this much; both skip ``margin_s`` at each segment edge and the spans around lost
  samples (``lost_guard_s`` either side), where the soak cannot be the offline run.

Host side (loads records, scipy for decimation).
"""
from __future__ import annotations

import bisect
import collections
import gc
import logging
import math
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import ConfigError, DataError, HardwareError

log = logging.getLogger(__name__)

SOURCE_FS = 100.0          # Hz: every segment's light is laid out at this rate
SEGMENT_KINDS = ("record", "noise", "raw", "finger_off")
FAULT_KEYS = ("i2c_bursts_per_hour", "i2c_burst_max", "partial_bursts_per_hour", "overflows_per_hour", "stall_s")
STEP_KEYS = ("signal_s", "segment", "faults", "seed", "rss_every_s", "margin_s", "lost_guard_s", "gate",
             "beat_buffer")
NO_FINGER_CODE = 1020      # the real no-finger log's IR level (max30102-raw/sergiomagdalenop_rpi)
SCORE_DELAY_S = 30.0       # a segment is scored once the stream is this far past its end (beats decided)


# --------------------------------------------------------------------------- memory


def rss_kb() -> int:
    """Resident set size of this process now (KiB): ``/proc/self/statm``, else ru_maxrss (peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# --------------------------------------------------------------------------- schedule


@dataclass
class Template:
    """One segment's light at :data:`SOURCE_FS` (and its labels, seconds from its start)."""

    key: str
    kind: str
    light: np.ndarray
    labels: np.ndarray | None
    source: str

    @property
    def seconds(self) -> float:
        return self.light.size / SOURCE_FS


@dataclass
class Placed:
    """A template placed in the schedule: source samples ``start .. start + n``."""

    template: Template
    start: int
    n: int
    occurrence: int
    lost_spans: list = field(default_factory=list)   # (first, end) sensor samples lost inside it
    beats: list = field(default_factory=list)        # sensor indices of the soak's beats inside it


def _to_source_fs(x: np.ndarray, fs: float, *, smooth: bool) -> np.ndarray:
    """``x`` at ``fs`` -> :data:`SOURCE_FS`: polyphase decimation for records (``smooth``), linear
    interpolation for raw logs (what the emulated chip itself does to a slower source, and no
    ringing at a finger's step)."""
    from fractions import Fraction

    if fs == SOURCE_FS:
        return np.asarray(x, dtype=np.float64)
    if smooth and fs > SOURCE_FS:
        from scipy.signal import resample_poly

        r = Fraction(SOURCE_FS / fs).limit_denominator(1000)
        return resample_poly(np.asarray(x, dtype=np.float64), r.numerator, r.denominator)
    n = int(math.floor((x.size - 1) * SOURCE_FS / fs)) + 1
    return np.interp(np.arange(n) / SOURCE_FS, np.arange(x.size) / fs, np.asarray(x, dtype=np.float64))


class Schedule:
    """The segments of a soak step, cycled to ``signal_s`` seconds; :meth:`light` lays them out."""

    def __init__(self, step: Mapping[str, Any], board, root=None):
        self.step, self.board, self.root = step, board, root
        segs = step.get("segment") or []
        if not segs:
            raise ConfigError(f"soak step {step.get('name')}: no [[step.segment]] tables")
        self.signal_s = float(step.get("signal_s", 0))
        if not self.signal_s > 0:
            raise ConfigError(f"soak step {step.get('name')}: signal_s must be a positive number of seconds")
        self.templates = [self._template(i, s) for i, s in enumerate(segs)]
        self.total = int(round(self.signal_s * SOURCE_FS))
        self.placed: list[Placed] = []
        pos, k = 0, 0
        counts: collections.Counter = collections.Counter()
        while pos < self.total:
            t = self.templates[k % len(self.templates)]
            n = min(t.light.size, self.total - pos)
            self.placed.append(Placed(t, pos, n, counts[t.key]))
            counts[t.key] += 1
            pos += n
            k += 1
        self.starts = [p.start for p in self.placed]

    def _template(self, i: int, seg: Mapping[str, Any]) -> Template:
        from ppg_edge.data import load_record
        from ppg_edge.edge_runtime.playback import light_from_codes, light_from_ppg

        kind = seg.get("kind")
        if kind not in SEGMENT_KINDS:
            raise ConfigError(f"soak segment {i}: kind {kind!r} not one of {', '.join(SEGMENT_KINDS)}")
        m = self.board.max30102
        if kind == "finger_off":
            seconds = float(seg.get("seconds", 30))
            rng = np.random.default_rng(int(seg.get("seed", 1000 + i)))
            codes = float(seg.get("level_code", NO_FINGER_CODE)) + \
                rng.normal(0.0, float(seg.get("noise_codes", 2.0)), int(round(seconds * SOURCE_FS)))
            light = light_from_codes(np.clip(codes, 0, None), m.adc_range_na, m.led_ir_ma, 18)
            return Template(f"{i}:finger_off", kind, light, None,
                            f"no finger: code {seg.get('level_code', NO_FINGER_CODE)} +- {seg.get('noise_codes', 2.0)}")
        key = seg.get("record")
        if not key or "/" not in key:
            raise ConfigError(f"soak segment {i} ({kind}): needs record = \"DATASET/ID\"")
        dataset, rid = key.split("/", 1)
        rec = load_record(dataset, rid, self.root)
        fs = float(rec.fs)
        a = int(round(float(seg.get("start_s", 0.0)) * fs))
        b = rec.ppg.size if seg.get("seconds") is None else min(rec.ppg.size, a + int(round(float(seg["seconds"]) * fs)))
        if b - a < 2 * fs:
            raise DataError(f"soak segment {i}: {key} has under 2 s between {a / fs:g} s and {b / fs:g} s")
        x = np.asarray(rec.ppg[a:b], dtype=np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            x = np.where(bad, float(np.nanmedian(x)), x)
        if kind == "raw":
            if dataset != "max30102-raw":
                raise ConfigError(f"soak segment {i}: kind raw plays max30102-raw logs, not {key}")
            from ppg_edge.data.max30102_raw import adc_codes

            adc_codes(rec)   # refuses a file that is not 18-bit codes
            light = light_from_codes(_to_source_fs(x, fs, smooth=False), m.adc_range_na, m.led_ir_ma, 18)
            return Template(f"{i}:{key}", kind, np.clip(light, 0.0, None), None,
                            f"{key} samples {a}..{b} at {fs:g} Hz (raw 18-bit codes), linearly interpolated")
        y = _to_source_fs(x, fs, smooth=True)
        src = f"{key} samples {a}..{b} at {fs:g} Hz, decimated to {SOURCE_FS:g} Hz"
        if kind == "noise":
            snr_db = float(seg.get("snr_db", 10.0))
            rng = np.random.default_rng(int(seg.get("seed", 2000 + i)))
            z = (y - y.mean()) / (y.std() or 1.0)
            y = z + rng.normal(0.0, 10 ** (-snr_db / 20.0), y.size)
            src += f", white noise at {snr_db:g} dB SNR"
        labels = None
        if rec.peaks is not None and len(rec.peaks):
            p = np.asarray(rec.peaks, dtype=np.int64)
            labels = (p[(p >= a) & (p < b)] - a) / fs
        return Template(f"{i}:{key}" + (f"@{seg.get('snr_db', 10.0)}dB" if kind == "noise" else ""),
                        kind, light_from_ppg(y), labels, src)

    def light(self) -> np.ndarray:
        """The whole schedule as the chip's (n, 2) source (red = IR light)."""
        out = np.empty((self.total, 2), dtype=np.float64)
        for p in self.placed:
            out[p.start:p.start + p.n, 0] = p.template.light[:p.n]
        out[:, 1] = out[:, 0]
        return out

    def at(self, index: float) -> Placed | None:
        k = bisect.bisect_right(self.starts, index) - 1
        return self.placed[k] if 0 <= k < len(self.placed) else None


# --------------------------------------------------------------------------- device path


def _soak_chip_class():
    from ppg_edge.edge_runtime.sensors import EmulatedMax30102

    class SoakChip(EmulatedMax30102):
        """The emulated chip, counting the samples it handed out over the bus (``popped``) and
        those popped by a FIFO burst that then failed (``popped_failed``)."""

        popped = 0
        popped_failed = 0

        def _read_fifo_burst(self, length: int) -> bytes:
            before = self.unread
            try:
                return super()._read_fifo_burst(length)
            finally:
                self.popped += before - self.unread

        def i2c_rdwr(self, *msgs) -> None:
            before = self.popped
            try:
                super().i2c_rdwr(*msgs)
            except OSError:
                self.popped_failed += self.popped - before
                raise

    return SoakChip


class SoakSink:
    """The pipeline's sink for a soak: counts every event, checks beats for duplicates as they
    come, hands beats and lost spans to the schedule's segments. Keeps nothing else (flat memory)."""

    def __init__(self, schedule: Schedule | None, refractory_s: float, buffer: int = 16):
        self.schedule = schedule
        self.refractory_s = float(refractory_s)
        self.counts: collections.Counter = collections.Counter()
        self.recent: collections.deque = collections.deque(maxlen=buffer)   # (index, t)
        self.duplicates: list[dict] = []
        self.too_close: list[dict] = []
        self.out_of_order = 0
        self.lost_events: list[tuple[int, int]] = []
        self.stalls: list[float] = []
        self.beats_all: list[int] | None = None      # offline runs keep every beat
        self.summary: dict | None = None

    def emit(self, ev: dict) -> None:
        t = ev.get("type")
        self.counts[t] += 1
        if t == "beat":
            self._beat(ev)
        elif t == "lost":
            span = (int(ev["index"]), int(ev["index"]) + int(ev["samples"]))
            self.lost_events.append(span)
            if self.schedule is not None:
                for p in self._overlapping(*span):
                    p.lost_spans.append(span)
        elif t == "sensor":
            kind = ev.get("kind")
            self.counts[f"sensor:{kind}"] += 1
            if kind == "overflow":     # the driver's count of samples the FIFO dropped
                self.counts["_overflow_lost"] += int(ev.get("lost") or 0)
                self.counts["_overflow_estimated"] += bool(ev.get("estimated"))
            elif kind == "i2c_error" and ev.get("popped_and_lost"):
                self.counts["_popped_lost"] += int(ev["popped_and_lost"])
            elif kind == "stall" and len(self.stalls) < 20:   # a read that timed out empty
                self.stalls.append(round(float(ev.get("t") or 0.0), 2))
        elif t == "quality" and not ev.get("ok"):
            self.counts[f"suppressed:{ev.get('reason')}"] += 1
        elif t == "summary":
            self.summary = ev

    def _overlapping(self, a: int, b: int):
        k = max(0, bisect.bisect_right(self.schedule.starts, a) - 1)
        while k < len(self.schedule.placed) and self.schedule.placed[k].start < b:
            p = self.schedule.placed[k]
            if p.start + p.n > a:
                yield p
            k += 1

    def _beat(self, ev: dict) -> None:
        idx, tt = int(ev["index"]), float(ev["t"])
        for j, tj in self.recent:
            if j == idx:
                if len(self.duplicates) < 20:
                    self.duplicates.append({"index": idx, "t": tt})
                self.counts["duplicate_beats"] += 1
            elif abs(tt - tj) < self.refractory_s - 1e-6:
                if len(self.too_close) < 20:
                    self.too_close.append({"index": idx, "t": tt, "other_t": tj})
                self.counts["beats_within_refractory"] += 1
        if self.recent and idx < self.recent[-1][0]:
            self.out_of_order += 1
        self.recent.append((idx, tt))
        si = int(round(float(ev["sensor_index"])))
        if self.beats_all is not None:
            self.beats_all.append(si)
        if self.schedule is not None:
            p = self.schedule.at(si)
            if p is not None and p.template.labels is not None:
                p.beats.append(si)

    def close(self) -> None:
        pass


def open_device_path(light: np.ndarray, board, model_path: Path, sink, *, gate: str, clock=None,
                     bp_model_path: Path | None = None, profile=None):
    """Emulated chip (:class:`SoakChip`) -> real driver -> :class:`Pipeline` on one virtual clock
    (with the BP stage when ``bp_model_path`` is given, and the wearer's ``profile``: the ``bp``
    step, hil_tests/bp_check.py)."""
    from ppg_edge.edge_runtime.pipeline import Pipeline
    from ppg_edge.edge_runtime.playback import settings_from_board
    from ppg_edge.edge_runtime.quality import QualityConfig
    from ppg_edge.edge_runtime.sensors import Max30102, VirtualClock

    settings = settings_from_board(board)
    clock = clock or VirtualClock(keep_sleeps=False)  # hours of waits: count them, keep none
    events: list = []
    chip = _soak_chip_class()(light, SOURCE_FS, clock=clock)
    driver = Max30102(chip, settings=settings, clock=clock, wait_for_interrupt=chip.wait_for_interrupt,
                      on_event=events.append, owns_bus=False)
    driver.start()
    pipe = Pipeline(settings.output_rate, sink, model_path=model_path, bp_model_path=bp_model_path, profile=profile,
                    full_scale=(1 << settings.resolution_bits) - 1,
                    quality=QualityConfig(gate=gate), preference=getattr(board, "interpreters", None))
    return chip, driver, pipe, events, clock, settings


def sensor_lag_s(settings) -> float:
    """Sensor sample ``j`` averages conversions ``avg*j .. avg*j+avg-1``: it lies this long after ``j / fs``."""
    return (settings.averaging - 1) / 2 / settings.sample_rate


def offline_beats(t: Template, board, model_path: Path, gate: str) -> tuple[np.ndarray, dict]:
    """The template's light alone through a fresh device path: beat times (s from its start)."""
    sink = SoakSink(None, 0.0)
    sink.beats_all = []
    light = np.stack([t.light, t.light], axis=1)
    chip, driver, pipe, events, clock, settings = open_device_path(light, board, model_path, sink, gate=gate)
    summary = pipe.run_sensor(driver, events)
    out = np.asarray(sink.beats_all, dtype=np.float64) / settings.output_rate + sensor_lag_s(settings)
    return out, summary


def _score(labels: np.ndarray, det_s: np.ndarray, lo: float, hi: float, exclude: list[tuple[float, float]]):
    """tp/fp/fn of ``det_s`` against ``labels`` (both s from the segment start) on [lo, hi) less
    ``exclude``, with the project's matcher at the sensor rate (+-50 ms)."""
    from ppg_edge.edge_runtime.bench import f1 as bench_f1

    def keep(x):
        x = np.asarray(x, dtype=np.float64)
        m = (x >= lo) & (x < hi)
        for a, b in exclude:
            m &= ~((x >= a) & (x < b))
        return x[m]

    fs = 100.0
    r = np.unique(np.round(keep(labels) * fs).astype(np.int64))
    d = np.unique(np.round(keep(det_s) * fs).astype(np.int64))
    s = bench_f1(r, d, fs)
    return s["tp"], s["fp"], s["fn"]


# --------------------------------------------------------------------------- the step


class FaultInjector:
    """Faults at seeded random sample positions (see the module docstring)."""

    def __init__(self, cfg: Mapping[str, Any], n_samples: int, fs: float, seed: int):
        for k in cfg:
            if k not in FAULT_KEYS:
                raise ConfigError(f"soak faults: unknown key {k!r} (known: {', '.join(FAULT_KEYS)})")
        rng = np.random.default_rng(seed)
        hours = n_samples / fs / 3600.0
        self.burst_max = int(cfg.get("i2c_burst_max", 3))
        if not 1 <= self.burst_max <= 5:
            raise ConfigError("soak faults: i2c_burst_max must be 1..5 (the driver gives up after 5 retries)")
        self.stall_s = [float(v) for v in np.atleast_1d(cfg.get("stall_s", [0.25, 0.5, 2.0]))]
        lo = int(30 * fs)                         # not in the first 30 s (start-up)

        def times(rate):
            k = int(round(float(rate) * hours))
            return sorted(rng.integers(lo, max(lo + 1, n_samples - int(5 * fs)), size=k).tolist())

        plan = [(i, "i2c") for i in times(cfg.get("i2c_bursts_per_hour", 0))]
        plan += [(i, "partial") for i in times(cfg.get("partial_bursts_per_hour", 0))]
        plan += [(i, "stall") for i in times(cfg.get("overflows_per_hour", 0))]
        plan.sort()
        self.plan = [(i, kind, int(rng.integers(1, self.burst_max + 1)) if kind == "i2c" else
                      (self.stall_s[int(rng.integers(len(self.stall_s)))] if kind == "stall" else 0))
                     for i, kind in plan]
        self.k = 0
        self.done: collections.Counter = collections.Counter()
        self.stalled_s = 0.0

    def due(self, pos: int, chip, clock) -> None:
        from ppg_edge.edge_runtime.sensors import FaultPlan

        while self.k < len(self.plan) and self.plan[self.k][0] <= pos:
            _, kind, arg = self.plan[self.k]
            self.k += 1
            if kind == "i2c":      # the next transfers fail before doing anything
                chip.faults = FaultPlan(fail_transfers=FaultPlan.burst(chip.transfers + 1, arg))
                self.done["i2c_bursts"] += 1
                self.done["i2c_failed_transfers_planned"] += arg
            elif kind == "partial":   # the next read cycle: pointer read, then the FIFO burst (cut off)
                chip.faults = FaultPlan(partial_bursts=frozenset({chip.transfers + 2}))
                self.done["partial_bursts_planned"] += 1
            else:                  # the reader is late: the FIFO overflows
                clock.advance(arg)
                self.stalled_s += arg
                self.done["stalls"] += 1


def run_soak(step: Mapping[str, Any], board, model_path: Path, *, data_root=None, progress: bool = True) -> dict:
    """Run one soak step; the results dict (checks are made by :func:`soak_checks`)."""
    for k in step:
        if k not in STEP_KEYS and k not in ("name", "kind", "model", "expect", "window_s", "chunk_s", "windows",
                                            "warmups", "loops", "seconds", "start_s", "settings", "score_margin_s",
                                            "f1_tolerance"):
            raise ConfigError(f"soak step {step.get('name')}: unknown key {k!r}")
    t_wall, t_cpu = time.monotonic(), time.process_time()
    gate = str(step.get("gate", "network"))
    sched = Schedule(step, board, root=data_root)
    guard_s = float(step.get("lost_guard_s", 3.0))

    # offline: every labelled template alone through a fresh device path (before the soak's RSS baseline)
    offline: dict[str, np.ndarray] = {}
    for t in sched.templates:
        if t.labels is not None:
            offline[t.key], _ = offline_beats(t, board, model_path, gate)
    t_offline = time.monotonic() - t_wall

    light = sched.light()
    sink = SoakSink(sched, refractory_s=0.3, buffer=int(step.get("beat_buffer", 16)))
    chip, driver, pipe, events, clock, settings = open_device_path(light, board, model_path, sink, gate=gate)
    sink.refractory_s = float(pipe.decoder.refractory_s)
    # segment edges: a level step (finger placed, a new record) makes the quality gate wait for the
    # band-pass to settle, then a window fills; the offline run starts without such a step
    margin_s = float(step["margin_s"]) if "margin_s" in step else \
        math.ceil(10 * (float(pipe.gate.cfg.settle_s) + pipe.spec.window / pipe.fs)) / 10
    del light                                     # the chip holds its own (n, 2) source
    fs = settings.output_rate
    lag = sensor_lag_s(settings)
    faults = FaultInjector(step.get("faults") or {}, sched.total, fs, int(step.get("seed", 1)))
    rss_every = int(round(float(step.get("rss_every_s", 3600.0)) * fs))
    gc.collect()
    rss = [{"signal_s": 0.0, "rss_kb": rss_kb(), "wall_s": round(time.monotonic() - t_wall, 1)}]
    next_rss = rss_every
    scored: dict[str, list] = collections.defaultdict(list)
    pending = collections.deque(p for p in sched.placed if p.template.labels is not None)
    delay = int(SCORE_DELAY_S * fs)

    def score_ready(pos: int | None) -> None:
        while pending and (pos is None or pending[0].start + pending[0].n + delay <= pos):
            p = pending.popleft()
            scored[p.template.key].append(_score_placed(p, offline[p.template.key], fs, lag, margin_s, guard_s))
            p.beats = []                          # scored: the beats go (memory stays flat)

    drv_overflow, overflow_diff = 0, 0
    overflow_mismatch: list[dict] = []      # where the driver's overflow count departed from the chip's
    other_events: list[dict] = []           # driver events other than I2C errors, overflows, saturation
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=int(sched.signal_s), desc=f"soak {step.get('name')}", unit="s signal", disable=None)
        except ImportError:
            bar = None
    error = None
    shown = 0
    try:
        try:
            for block in driver.blocks():
                for ev in events:
                    pipe.sensor_event(ev)
                    if ev.kind == "overflow":
                        drv_overflow += int(ev.detail.get("lost", 0))
                    elif ev.kind not in ("i2c_error", "saturation") and len(other_events) < 20:
                        other_events.append({"kind": ev.kind, "t": round(ev.t, 3), "index": block.first_index,
                                             **{k: v for k, v in ev.detail.items() if isinstance(v, (int, float, str))}})
                if events and drv_overflow - chip.lost != overflow_diff:   # the driver's count left the chip's
                    overflow_diff = drv_overflow - chip.lost
                    if len(overflow_mismatch) < 50:
                        overflow_mismatch.append({
                            "block_first_index": block.first_index, "clock_s": round(clock.now(), 4),
                            "driver_minus_chip": overflow_diff,
                            "events": [{"kind": e.kind, **{k: v for k, v in e.detail.items()
                                                           if isinstance(v, (int, float, str, bool))}}
                                       for e in events if e.kind in ("overflow", "i2c_error")],
                            "last_fault": faults.plan[faults.k - 1] if faults.k else None})
                events.clear()
                pipe.process_block(block)
                pos = block.first_index + len(block)
                faults.due(pos, chip, clock)
                if pos >= next_rss:
                    rss.append({"signal_s": round(pos / fs, 1), "rss_kb": rss_kb(),
                                "wall_s": round(time.monotonic() - t_wall, 1)})
                    next_rss += rss_every
                    score_ready(pos)
                if bar is not None and pos / fs - shown >= 60:
                    bar.update(int(pos / fs - shown))
                    shown = int(pos / fs)
        finally:
            driver.close()
        for ev in events:
            pipe.sensor_event(ev)
        events.clear()
        summary = pipe.finish()
    except (HardwareError, DataError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        summary = sink.summary or {}
        log.error("soak %s stopped: %s", step.get("name"), error)
    finally:
        if bar is not None:
            bar.close()
    score_ready(None)
    gc.collect()
    rss.append({"signal_s": round(chip.produced / fs, 1), "rss_kb": rss_kb(), "wall_s": round(time.monotonic() - t_wall, 1),
                "end": True})
    wall, cpu = time.monotonic() - t_wall, time.process_time() - t_cpu
    res = _results(step, sched, chip, driver, summary, sink, faults, rss, scored, offline, error, wall, cpu,
                   t_offline, model_path, gate, settings, margin_s, guard_s)
    res["soak"]["accounting"]["overflow_count_departures"] = overflow_mismatch
    res["soak"]["faults"]["other_driver_events"] = other_events
    return res


def _score_placed(p: Placed, off: np.ndarray, fs: float, lag: float, margin_s: float, guard_s: float) -> dict:
    t0 = p.start / SOURCE_FS                  # the segment's first source sample, in s of source time
    dur = p.n / SOURCE_FS
    det = np.asarray(p.beats, dtype=np.float64) / fs + lag - t0
    excl = [((a / fs + lag - t0) - guard_s, (b / fs + lag - t0) + guard_s) for a, b in p.lost_spans]
    lo, hi = margin_s, dur - margin_s
    soak = _score(p.template.labels, det, lo, hi, excl)
    ref = _score(p.template.labels, off, lo, hi, excl)
    n_lab = int(np.sum((p.template.labels >= lo) & (p.template.labels < hi)))
    return {"occurrence": p.occurrence, "start_s": round(t0, 2), "seconds": round(dur, 2), "soak": soak,
            "offline": ref, "labels_in_span": n_lab, "labels_scored": ref[0] + ref[2],
            "lost_spans": len(p.lost_spans)}


def _f1(tp, fp, fn) -> float:
    from ppg_edge.metrics.peaks import f1_from_counts

    return f1_from_counts(tp, fp, fn)


def _results(step, sched, chip, driver, summary, sink, faults, rss, scored, offline, error, wall, cpu, t_offline,
             model_path, gate, settings, margin_s, guard_s) -> dict:
    fs = settings.output_rate
    ev = driver.event_counts
    popped_lost = int(chip.popped_failed)
    f1_rows = []
    pooled = {"soak": [0, 0, 0], "offline": [0, 0, 0]}
    for t in sched.templates:
        if t.labels is None:
            continue
        rows = scored.get(t.key, [])
        s = np.sum([r["soak"] for r in rows], axis=0).tolist() if rows else [0, 0, 0]
        o = np.sum([r["offline"] for r in rows], axis=0).tolist() if rows else [0, 0, 0]
        for k in range(3):
            pooled["soak"][k] += s[k]
            pooled["offline"][k] += o[k]
        f1_rows.append({"template": t.key, "kind": t.kind, "source": t.source, "occurrences": len(rows),
                        "labels_in_span": int(sum(r["labels_in_span"] for r in rows)),
                        "labels_scored": int(sum(r["labels_scored"] for r in rows)),
                        "soak_tp_fp_fn": s, "offline_tp_fp_fn": o,
                        "f1_soak": round(_f1(*s), 4) if rows else None,
                        "f1_offline": round(_f1(*o), 4) if rows else None,
                        "occurrences_with_lost_samples": sum(1 for r in rows if r["lost_spans"]),
                        "worst_occurrence_delta": round(max((abs(_f1(*r["soak"]) - _f1(*r["offline"])) for r in rows),
                                                            default=0.0), 4)})
    kinds = collections.Counter(p.template.kind for p in sched.placed)
    secs = collections.Counter()
    for p in sched.placed:
        secs[p.template.kind] += p.n / SOURCE_FS
    produced = int(chip.produced)
    delivered = int(summary.get("samples", 0)) if summary else 0
    lost = int(summary.get("lost", 0)) if summary else 0
    acc = {
        "chip_produced": produced,
        "chip_unread_at_end": int(chip.unread),
        "chip_handed_out": int(chip.popped),
        "chip_overflow_lost": int(chip.lost),
        "chip_popped_by_failed_bursts": popped_lost,
        "driver_samples_read": int(driver.samples_read),
        "driver_samples_lost": int(driver.samples_lost),
        "pipeline_samples": delivered,
        "pipeline_lost": lost,
        "lost_by_reason": {"fifo_overflow": int(chip.lost), "i2c_burst_cut_off": popped_lost},
        "reported_lost_by_reason": {"fifo_overflow": int(sink.counts.get("_overflow_lost", 0)),
                                    "i2c_burst_cut_off": int(sink.counts.get("_popped_lost", 0))},
        "driver_overflow_events": int(ev.get("overflow", 0)),
        "overflow_events_estimated": int(sink.counts.get("_overflow_estimated", 0)),
    }
    signal_s = produced / fs
    res = {
        "status": "failed" if error else "ok", "error": error,
        "loops": 1, "loops_completed": 0 if error else 1,
        "record": ", ".join(sorted({t.key.split(":", 1)[1] for t in sched.templates if t.kind != "finger_off"})),
        "model": Path(model_path).name, "gate": gate,
        "beats": int(summary.get("beats", 0)) if summary else sink.counts.get("beat", 0),
        "lost_samples": lost,
        "accuracy": {"f1": round(_f1(*pooled["soak"]), 4), "tolerance_s": 0.05,
                     "reference": "expert labels of the labelled segments (record and noise)",
                     "unscored_tail_s": margin_s},
        "soak": {
            "in_process": {"pid": os.getpid(), "note": "the emulated MAX30102, the real driver and the edge "
                           "Pipeline ran in this (the measured) process on one virtual clock (VirtualClock(keep_sleeps=False): "
                           "it counts its sleeps and keeps no list of them); no DUT process"},
            "signal_s": round(signal_s, 1), "signal_h": round(signal_s / 3600, 3),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "offline_wall_s": round(t_offline, 1),
            "speed_x_real_time": round(signal_s / max(wall - t_offline, 1e-9), 1),
            "source_fs": SOURCE_FS, "sensor_fs": fs, "sensor": {"sample_rate": settings.sample_rate,
                                                                "averaging": settings.averaging,
                                                                "almost_full": settings.almost_full},
            "segments_placed": dict(kinds), "seconds_by_kind": {k: round(v, 1) for k, v in secs.items()},
            "templates": [{"key": t.key, "kind": t.kind, "seconds": round(t.seconds, 1), "source": t.source,
                           "labels": None if t.labels is None else int(t.labels.size)} for t in sched.templates],
            "faults": {"planned": len(faults.plan), **dict(faults.done), "stalled_s": round(faults.stalled_s, 2),
                       "driver_i2c_errors": int(driver.i2c_errors), "driver_i2c_retries": int(driver.i2c_retries),
                       "chip_failed_transfers": int(chip.failed_transfers),
                       "driver_events": dict(ev), "driver_stall_times_s": sink.stalls,
                       "note_stall": "a driver 'stall' event is a read that found no sample within its timeout"},
            "accounting": acc,
            "rss": rss,
            "beats": {"total": int(sink.counts.get("beat", 0)), "duplicates": int(sink.counts.get("duplicate_beats", 0)),
                      "within_refractory": int(sink.counts.get("beats_within_refractory", 0)),
                      "refractory_s": sink.refractory_s, "out_of_order": sink.out_of_order,
                      "examples": sink.duplicates[:5] + sink.too_close[:5]},
            "pipeline": {k: summary.get(k) for k in ("windows", "suppressed", "suppressed_by", "paths", "sensor_events",
                                                     "sensor_fs_measured", "rate_tracked", "hr_bpm")} if summary else {},
            "events_seen": {k: v for k, v in sink.counts.items() if k and ":" in k},
            "event_counts": {k: v for k, v in sink.counts.items() if k and ":" not in k and not k.startswith("_")},
            "f1": {"margin_s": margin_s, "lost_guard_s": guard_s, "per_template": f1_rows, "pooled_soak": round(_f1(*pooled["soak"]), 4),
                   "pooled_offline": round(_f1(*pooled["offline"]), 4),
                   "method": (f"bench.f1 (ppg_edge.metrics.match_peaks, +-50 ms, one-to-one) at the sensor rate; "
                              f"labels and beats on [{margin_s:g} s, end - {margin_s:g} s] of each segment, less "
                              f"{guard_s:g} s either side of lost samples; offline = the same segment's light played "
                              "alone through a fresh emulated chip -> driver -> Pipeline")},
        },
    }
    return res


def soak_checks(step: Mapping[str, Any], res: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        out.append({"check": name, "status": "pass" if ok else "fail", "detail": detail})

    exp = step.get("expect", {})
    check("completed", res.get("status") == "ok", res.get("error") or "the whole schedule was played")
    s = res.get("soak") or {}
    a = s.get("accounting") or {}
    if exp.get("exact_accounting", True):
        total = a.get("pipeline_samples", 0) + a.get("pipeline_lost", 0)
        expected = a.get("chip_produced", 0) - a.get("chip_unread_at_end", 0)
        by_reason = sum((a.get("lost_by_reason") or {}).values())
        ok = (total == expected and a.get("pipeline_lost") == by_reason == a.get("driver_samples_lost")
              and a.get("reported_lost_by_reason") == a.get("lost_by_reason")
              and a.get("pipeline_samples") == a.get("chip_handed_out") - a.get("chip_popped_by_failed_bursts", 0))
        check("exact_accounting", ok,
              f"delivered {a.get('pipeline_samples')} + lost {a.get('pipeline_lost')} = {total}; chip produced "
              f"{a.get('chip_produced')} ({a.get('chip_unread_at_end')} left unread); lost by reason, chip's own "
              f"count {a.get('lost_by_reason')} = {by_reason}, as the driver's events reported them "
              f"{a.get('reported_lost_by_reason')} ({a.get('driver_overflow_events')} overflow events, "
              f"{a.get('overflow_events_estimated')} of them estimated past OVF_COUNTER's 31); driver counted "
              f"{a.get('driver_samples_lost')} lost"
              + (f"; the driver's overflow count departed from the chip's at {a.get('overflow_count_departures')[:3]}"
                 if a.get("overflow_count_departures") else ""))
    if "max_rss_growth_kb" in exp:
        rss = [r["rss_kb"] for r in s.get("rss", [])]
        growth = (max(rss[1:]) - rss[0]) if len(rss) >= 2 else None
        check("max_rss_growth_kb", growth is not None and growth <= exp["max_rss_growth_kb"],
              f"RSS {rss[0] if rss else '-'} KiB at the start, {rss[-1] if rss else '-'} KiB at the end, "
              f"{len(rss) - 2} samples between; largest growth {growth} KiB (max {exp['max_rss_growth_kb']})")
    if exp.get("no_duplicate_beats", True):
        b = s.get("beats") or {}
        ok = b.get("duplicates", 1) == 0 and b.get("within_refractory", 1) == 0
        check("no_duplicate_beats", ok,
              f"{b.get('total')} beats: {b.get('duplicates')} with an index seen before, {b.get('within_refractory')} "
              f"within {b.get('refractory_s')} s of another, {b.get('out_of_order')} out of order"
              + (f"; e.g. {b.get('examples')}" if not ok else ""))
    if "max_f1_delta_vs_offline" in exp:
        tol = float(exp["max_f1_delta_vs_offline"])
        rows = (s.get("f1") or {}).get("per_template", [])
        bad = [r for r in rows if r["f1_soak"] is None or abs(r["f1_soak"] - r["f1_offline"]) > tol]
        detail = "; ".join(f"{r['template']}: {r['f1_soak']} vs {r['f1_offline']} offline over {r['occurrences']} "
                           f"occurrences ({r['labels_scored']} labels scored of {r['labels_in_span']})" for r in rows)
        check("max_f1_delta_vs_offline", bool(rows) and not bad, f"|F1 soak - F1 offline| <= {tol:g} per labelled "
              f"template: {detail}")
    if "min_f1" in exp:
        f1 = (s.get("f1") or {}).get("pooled_soak")
        check("min_f1", f1 is not None and f1 >= exp["min_f1"], f"pooled F1 on the labelled segments {f1} "
              f"(min {exp['min_f1']})")
    if "min_faults" in exp:
        f = s.get("faults") or {}
        a_ = s.get("accounting") or {}
        got = {"i2c_errors": f.get("driver_i2c_errors", 0), "overflow_events": a_.get("driver_overflow_events", 0),
               "cut_off_bursts": 1 if a_.get("chip_popped_by_failed_bursts", 0) else 0}
        ok = all(got.get(k, 0) >= v for k, v in exp["min_faults"].items())
        check("min_faults", ok, f"faults the driver saw {got} (min {exp['min_faults']})")
    return out


def soak_events(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Lines for the report's Events section: where it ran, what was played, RSS, F1, faults."""
    s = res.get("soak") or {}
    if not s:
        return []
    ip = s.get("in_process", {})
    rss = s.get("rss", [])
    f = s.get("faults", {})
    a = s.get("accounting", {})
    out = [{"kind": "soak", "message": f"{ip.get('note')} (pid {ip.get('pid')}): {s.get('signal_h')} h of signal in "
            f"{s.get('wall_s')} s wall ({s.get('cpu_s')} s CPU, {s.get('speed_x_real_time')}x real time; "
            f"the offline runs took {s.get('offline_wall_s')} s of it)"},
           {"kind": "soak", "message": f"schedule: {s.get('segments_placed')} segments, seconds by kind "
            f"{s.get('seconds_by_kind')}; templates: " + "; ".join(
                f"{t['key']} ({t['seconds']} s, {t['source']})" for t in s.get("templates", []))},
           {"kind": "soak", "message": "RSS (KiB) by signal time: " + ", ".join(
               f"{r['signal_s'] / 3600:.2f} h {r['rss_kb']}" for r in rss)},
           {"kind": "soak", "message": f"faults: {f.get('i2c_bursts', 0)} I2C error bursts "
            f"({f.get('chip_failed_transfers')} failed transfers, {f.get('driver_i2c_retries')} driver retries), "
            f"{f.get('partial_bursts_planned', 0)} cut-off FIFO bursts planned "
            f"({a.get('chip_popped_by_failed_bursts')} samples popped and lost), {f.get('stalls', 0)} reader stalls "
            f"({f.get('stalled_s')} s: {a.get('driver_overflow_events')} overflow events, "
            f"{a.get('chip_overflow_lost')} samples lost); driver events {f.get('driver_events')}"
            + (f"; driver stall events (a read timing out empty) at clock {f.get('driver_stall_times_s')} s of "
               f"{s.get('signal_s')} s" if f.get("driver_stall_times_s") else "")
            + (f"; other driver events {f.get('other_driver_events')}" if f.get("other_driver_events") else "")}]
    for r in (s.get("f1") or {}).get("per_template", []):
        out.append({"kind": "soak", "message": f"F1 {r['template']}: soak {r['f1_soak']} (tp/fp/fn "
                    f"{r['soak_tp_fp_fn']}) vs offline {r['f1_offline']} ({r['offline_tp_fp_fn']}) over "
                    f"{r['occurrences']} occurrences, {r['occurrences_with_lost_samples']} with lost samples; "
                    f"worst single occurrence differs by {r['worst_occurrence_delta']}"})
    out.append({"kind": "soak", "message": (s.get("f1") or {}).get("method", "")})
    return out
