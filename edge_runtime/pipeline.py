"""The streaming pipeline: sensor -> DSP -> framer -> model -> decoder -> sink.

:class:`Pipeline` takes sensor blocks (:class:`~.sensors.Block` from the real
driver, the emulated chip or replay, or :class:`ArrayReplay` for float records)
and turns them into events on a sink:

- gaps in the sensor's sample numbering (FIFO overflow, a cut-off burst) are
  counted and reported as ``lost`` events; the missing samples are inserted as
  held values flagged ``lost`` so indices stay absolute and the windows covering
  them are suppressed;
- NaN/inf samples (a replayed record) become a ``nonfinite`` event, are held and
  flagged, and the windows covering them are suppressed: never a crash;
- samples at ADC full scale are flagged ``saturated``; ADC samples equal to the
  one before are flagged ``held`` (a logger repeating stale reads; the quality
  stage suppresses windows made mostly of them);
- with ADC counts the finger's contact state is tracked: a ``finger`` event
  (``on`` true/false, ``t`` at the threshold crossing) on every change;
- reflected light (a sensor block with ``reflected`` true: the MAX30102's counts
  under a finger, which fall as the blood volume rises) is negated into the
  blood-volume waveform the models were trained on (pulse maxima = beats); float
  records and sources that already rise with the blood volume pass unchanged;
- the sensor's rate is measured from the blocks' read times
  (:class:`~.resample.RateEstimator`; lost samples counted): once it departs from
  the nominal one the resampler follows it (rate and phase, smoothly); a ``rate``
  event reports a departure of more than 1 % (and a return within 0.8 %), the summary gives
  ``sensor_fs_measured`` beside ``sensor_fs``; beat ``sensor_index`` is the
  resampler's own input position of the beat;
- the samples are resampled to the model rate (numpy, any ratio), band-passed and
  framed by :class:`~.stream.StreamPreprocessor`; each window is assessed by
  :class:`~.quality.QualityGate` (suppressed with a reason, or sent to the
  classic detector when clean, the network when quality drops); the
  :class:`~.decoder.StreamDecoder` emits each beat once; HR/HRV follow every
  window with new beats;
- an optional :class:`~.bp.BPStage` adds a ``bp`` event per accepted window: the estimate over the
  stable stretch, its CV MAE and MASE, withheld quantities, calibrated or not (with the wearer's
  profile and cuff calibration when given);
- sensor events (overflow, I2C errors, saturation, stall) go to the sink as
  ``sensor`` events.

numpy only (no TensorFlow, no scipy) when a model manifest provides the filter.
"""
from __future__ import annotations

import collections
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np

from ppg_edge.dsp.pipeline import Preprocessing, peaks_preprocessing
from ppg_edge.dsp.rates import check_rate
from ppg_edge.errors import ConfigError, DataError

from .bp import BPStage
from .decoder import StreamDecoder
from .interpreter import EdgeModel
from .peaks_decode import runtime_decoder
from .quality import QualityConfig, QualityGate, classic_probs, settle_time
from .resample import RateEstimator, StreamResampler, check_rate_for, replay_times
from .stream import FLAG_HELD, FLAG_LOST, FLAG_NONFINITE, FLAG_SATURATED, StreamPreprocessor

log = logging.getLogger(__name__)

CLASSIC_CONTEXT_S = 0.5  # the previous window's tail the classic detector sees when windows do not overlap
RATE_EVENT = 0.01  # a measured sensor rate this far (relative) from nominal is a ``rate`` event
RATE_RETURN = 0.8  # ... and it has returned once within this fraction of that


@dataclass(frozen=True)
class FloatBlock:
    """A block of float samples (what :class:`ArrayReplay` serves): ``ir`` may hold NaN/inf."""

    ir: np.ndarray
    first_index: int
    lost: int
    t: float
    fs: float
    saturated: np.ndarray

    def __len__(self) -> int:
        return int(self.ir.shape[0])


class ArrayReplay:
    """Serve a float record (any units, NaN allowed) in blocks, like a sensor without ADC.

    ``times``: the log's own per-sample clock times (s); each block's ``t`` is then the time
    of its last sample (else ``end / fs``), so the pipeline measures the log's real rate."""

    def __init__(self, values, fs: float, block_size: int = 25, clock=None, times=None):
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise DataError(f"replay record must be a non-empty 1-D array, got shape {arr.shape}")
        fs = check_rate(fs, "replay sampling rate", number=True)
        self.x, self.fs, self.block_size, self.clock = arr, float(fs), int(block_size), clock
        self.times = replay_times(times, arr.size)
        self._pos = 0
        self._t0 = clock.now() if clock is not None else 0.0
        self.events: collections.deque = collections.deque(maxlen=1000)
        self.samples_lost = 0

    @property
    def exhausted(self) -> bool:
        return self._pos >= self.x.size

    def blocks(self, *, n_samples: int | None = None, duration_s: float | None = None) -> Iterator[FloatBlock]:
        limit = self.x.size
        if duration_s is not None:
            limit = min(limit, int(round(duration_s * self.fs)))
        if n_samples is not None:
            limit = min(limit, n_samples)
        while self._pos < limit:
            end = min(self._pos + self.block_size, limit)
            t = end / self.fs if self.times is None else float(self.times[end - 1])
            if self.clock is not None:
                due = end / self.fs if self.times is None else t - float(self.times[0])
                wait = self._t0 + due - self.clock.now()
                if wait > 0:
                    self.clock.sleep(wait)
            seg = self.x[self._pos:end]
            yield FloatBlock(ir=seg.copy(), first_index=self._pos, lost=0, t=t, fs=self.fs,
                             saturated=np.zeros(seg.size, dtype=bool))
            self._pos = end

    def close(self) -> None:
        pass


class StatusLine:
    """A live one-line status on a terminal stream (``\\r``-updated, at most every ``every_s``)."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = 0.5):
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self._last = -1e9
        self._shown = False

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self.stream.write("\r" + text[:160].ljust(80))
            self.stream.flush()
            self._last = now
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


class Pipeline:
    """Wire the stages for a sensor at ``sensor_fs`` Hz (see the module docstring).

    ``model_path``: peak model (.tflite with manifest); without one the classic
    detector runs on a 0.5-8 Hz band-pass designed at ``sensor_fs`` (needs scipy
    to design it, i.e. a host). ``full_scale``: ADC full-scale code for the
    finger-off and saturation checks (None for float records). Reflected light is
    negated into the blood-volume waveform as the first block's ``reflected`` says
    (sensor blocks carry it; a :class:`FloatBlock` is blood-volume PPG); every later
    block must agree. ``hop`` (model samples) or ``hop_s`` (seconds, e.g. the board's
    ``runtime.hop_s``) overrides the manifest's framer hop; ``hop`` wins. The decoder is the
    model's (or the classic path's) with :data:`~.peaks_decode.RUNTIME_DECODER` and then
    ``decoder`` (settings of a :class:`~.peaks_decode.DecoderSpec`, for a benchmark that
    chooses one: ``ppg-edge bench hop --rr-refractory``) laid over it.
    """

    def __init__(self, sensor_fs: float, sink, *, model_path=None, bp_model_path=None,
                 full_scale: int | None = None, quality: QualityConfig | None = None,
                 backend: str | None = None, preference=None, hop: int | None = None,
                 hop_s: float | None = None, status: StatusLine | None = None,
                 profile=None, calibration=None, decoder: dict | None = None):
        self.sensor_fs = float(sensor_fs)
        self.full_scale = full_scale
        self._prev_count: float | None = None  # last ADC sample (held-sample flags across blocks)
        self._finger: bool | None = None
        self.reflected: bool | None = None  # decided by the first block
        self.sink = sink
        self.status = status
        qcfg = quality or QualityConfig()
        qcfg.full_scale = full_scale
        self.model = None
        if model_path is not None:
            self.model = EdgeModel(model_path, kind="peaks", backend=backend, preference=preference)
            spec: Preprocessing = self.model.spec
            decoder_cfg = self.model.decoder
        else:
            spec = peaks_preprocessing(self.sensor_fs)
            # classic peaks sit on the filtered maxima; the decoder snaps them to the raw PPG
            decoder_cfg = {"snap": True, "raw_axis_shift_samples": 0}
            if qcfg.gate == "network":
                raise ConfigError("quality gate 'network' needs a peak model (--model)")
            qcfg.gate = "classic"
        decoder_cfg = runtime_decoder(decoder_cfg, decoder)
        self.fs = spec.fs
        self.spec = spec
        if qcfg.settle_s is None:  # the band-pass rings this long after a step (quality: transient)
            qcfg.settle_s = settle_time(spec.sos, spec.fs)
        check_rate_for(self.sensor_fs, spec, "peak model" if self.model is not None else "classic detector")
        self.resampler = StreamResampler(self.sensor_fs, self.fs)
        self.rate = RateEstimator(self.sensor_fs)
        self._rate_off = False  # the measured rate departs from nominal by more than RATE_EVENT
        self._prev_w = None  # the last window (context for the classic detector)
        if hop is None and hop_s is not None:  # a board's hop in seconds, at the model's rate
            hop = max(1, int(round(hop_s * self.fs)))
        self.stream = StreamPreprocessor(spec, hop=hop)
        self.gate = QualityGate(self.fs, qcfg)
        self.decoder = StreamDecoder(self.fs, spec.window, self.stream.hop, decoder_cfg)
        # the classic path puts its peaks where the decoder expects the network's: on the
        # filtered maxima when the decoder moves beats onto the raw axis, else on the raw peaks
        self.classic_axis = "filtered" if self.decoder.raw_shift is not None else "raw"
        if bp_model_path is None and (profile is not None or calibration is not None):
            raise ConfigError("a profile or a calibration is for the BP model: give the BP model too")
        self.bp = BPStage(bp_model_path, self.sensor_fs, QualityConfig(**{**qcfg.__dict__, "gate": "classic"}),
                          backend=backend, profile=profile,
                          calibration=calibration) if bp_model_path is not None else None
        self._bp_last = None  # the last BP estimate (the status line)
        self.n_sensor = 0  # sensor samples accounted for (read + lost)
        self.counts = collections.Counter()
        self._hold = None
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._n_pending = 0  # sensor samples queued for the DSP
        self._n_fed = 0  # sensor samples given to the DSP
        self._need = self._inputs_for_next_window()

    # ------------------------------------------------------------ events
    def _emit(self, _type: str, **fields) -> None:
        self.counts[f"events_{_type}"] += 1
        self.sink.emit({"type": _type, **fields})

    def sensor_event(self, ev) -> None:
        """Forward a driver :class:`~.sensors.SensorEvent` to the sink."""
        self.counts[f"sensor_{ev.kind}"] += 1
        self._emit("sensor", kind=ev.kind, t=ev.t, **{k: v for k, v in ev.detail.items()
                                                     if isinstance(v, (int, float, str, bool, type(None)))})

    # ------------------------------------------------------------ blocks
    def _polarity(self, block) -> bool:
        """Whether ``block`` holds reflected light (negated here); the first block decides."""
        r = bool(getattr(block, "reflected", False))
        if self.reflected is None:
            self.reflected = r
            sign = -1.0 if r else 1.0
            # the quality checks read ADC counts back from the (negated) samples
            self.gate.cfg.counts_sign = sign
            if self.bp is not None:
                self.bp.gate.cfg.counts_sign = sign
            log.debug("sensor samples are %s", "reflected light: negated" if r else "blood-volume PPG")
        elif r != self.reflected:
            raise DataError(f"sensor block at sample {block.first_index} is "
                            f"{'reflected light' if r else 'blood-volume PPG'}, the stream before it was not")
        return self.reflected

    def process_block(self, block) -> None:
        # reflected light -> blood volume (negated as it becomes float64: one pass)
        ir = np.negative(block.ir, dtype=np.float64) if self._polarity(block) else np.asarray(block.ir, dtype=np.float64)
        first = int(block.first_index)
        if first < self.n_sensor:
            raise DataError(f"sensor block starts at sample {first}, before {self.n_sensor} already seen")
        gap = first - self.n_sensor
        if gap:
            self.counts["lost"] += gap
            self._emit("lost", t=self.n_sensor / self.sensor_fs, index=self.n_sensor, samples=gap)
            hold = self._hold if self._hold is not None else (float(ir[np.isfinite(ir)][0])
                                                              if np.isfinite(ir).any() else 0.0)
            self._feed(np.full(gap, hold), np.full(gap, FLAG_LOST, dtype=np.uint8))
        if ir.size == 0:
            self.n_sensor = first
            return
        # a burst is a few dozen samples: test before building a flag's index (no saturation,
        # no repeated code and no NaN is the common case, and costs three reductions)
        flags = np.zeros(ir.size, dtype=np.uint8)
        sat = np.asarray(block.saturated, dtype=bool)
        if sat.any():
            flags[sat] |= FLAG_SATURATED
        if self.full_scale is not None:  # ADC counts: a repeated code is a stale read
            first_held = self._prev_count is not None and ir[0] == self._prev_count
            same = ir[1:] == ir[:-1]
            if first_held or same.any():
                flags[0] |= FLAG_HELD if first_held else 0
                flags[1:][same] |= FLAG_HELD
            self._prev_count = float(ir[-1])
        # a NaN or an infinity anywhere makes the sum one; ADC counts (an integer array) have none
        counts = isinstance(block.ir, np.ndarray) and block.ir.dtype.kind in "iu"
        if not counts and not math.isfinite(float(ir.sum())):
            bad = ~np.isfinite(ir)
            flags[bad] |= FLAG_NONFINITE
            self.counts["nonfinite"] += int(bad.sum())
            self._emit("nonfinite", t=first / self.sensor_fs, index=first + int(np.argmax(bad)),
                       samples=int(bad.sum()))
            ir = self._held(ir, bad)
        self._hold = float(ir[-1])
        self.counts["samples"] += ir.size
        self.n_sensor = first + ir.size
        self.rate.add(self.n_sensor, getattr(block, "t", None))
        self._feed(ir, flags)

    def _held(self, x: np.ndarray, bad: np.ndarray) -> np.ndarray:
        idx = np.where(bad, 0, np.arange(x.size))
        np.maximum.accumulate(idx, out=idx)
        out = x[idx]
        good = np.flatnonzero(~bad)
        fill = self._hold if self._hold is not None else (float(x[good[0]]) if good.size else 0.0)
        out[: good[0] if good.size else x.size] = fill
        return out

    def _feed(self, x: np.ndarray, flags: np.ndarray) -> None:
        """Queue samples; run the DSP once the next window can be completed.

        A window is emitted when its last sample arrives either way, so holding the
        samples of the FIFO bursts in between adds no latency; the DSP then runs once per
        window instead of once per burst (a 17-sample burst at 100 Hz: ~6 times fewer
        calls, each on longer arrays)."""
        self._pending.append((x, flags))
        self._n_pending += x.size
        if self._n_fed + self._n_pending >= self._need:
            self._drain()

    def _drain(self) -> None:
        if not self._pending:
            return
        if len(self._pending) == 1:
            x, flags = self._pending[0]
        else:
            x = np.concatenate([p[0] for p in self._pending])
            flags = np.concatenate([p[1] for p in self._pending])
        self._pending.clear()
        self._n_fed += self._n_pending
        self._n_pending = 0
        self._track_rate()
        if self.bp is not None:
            for est in self.bp.push(x, flags):
                self._emit("bp", **est.event(self.bp))
                self._bp_last = est
        y, f = self.resampler.push(x, flags)
        for w in self.stream.push(y, f):
            self._window(w)
        self._need = self._inputs_for_next_window()

    def _track_rate(self) -> None:
        """Steer the resamplers onto the measured clock (once it departs from nominal) and
        report a departure of more than :data:`RATE_EVENT`."""
        est = self.rate
        if est.engaged:
            pos0 = est.pos0()
            self.resampler.steer(est.fs, pos0)
            if self.bp is not None:
                self.bp.resampler.steer(est.fs, pos0)
        dev = est.fs / self.sensor_fs - 1.0
        # hysteresis: a rate near the limit would otherwise depart and return with every estimate
        off = abs(dev) > RATE_EVENT * (RATE_RETURN if self._rate_off else 1.0)
        if off != self._rate_off:
            self._rate_off = off
            (log.warning if off else log.info)("sensor rate %.3f Hz measured, nominal %g Hz (%+.2f %%)",
                                               est.fs, self.sensor_fs, 100 * dev)
            self._emit("rate", t=round(self._n_fed / self.sensor_fs, 4), index=self._n_fed,
                       fs_nominal=self.sensor_fs, fs_measured=round(est.fs, 4),
                       deviation=round(dev, 6), departed=off)

    def _sensor_index(self, k: int) -> int:
        """Sensor sample at model-rate sample ``k`` (the resampler's own position map)."""
        return int(round(float(self.resampler.out_index_to_in(k))))

    def _inputs_for_next_window(self) -> int:
        """Sensor samples after which the stream can emit its next window (and the BP stage its next)."""
        st = self.stream
        ends = [self.resampler.inputs_needed(st.next_window * st.hop + st.window)]
        if self.bp is not None:
            s = self.bp.stream
            ends.append(self.bp.resampler.inputs_needed(s.next_window * s.hop + s.window))
        return min(ends)

    def _window(self, w) -> None:
        q = self.gate.assess(w)
        if self.gate.finger_on is not None and self.gate.finger_on != self._finger:
            k = w.start + self.gate.finger_crossing(w)
            self._finger = self.gate.finger_on
            self._emit("finger", t=round(k / self.fs, 4), on=self._finger, index=k,
                       sensor_index=self._sensor_index(k))
        self.counts["windows"] += 1
        t = w.end / self.fs
        if not q.ok:
            self.counts["suppressed"] += 1
            self.counts[f"suppressed_{q.reason}"] += 1
            self._emit("quality", t=t, window=w.index, start=w.start, ok=False, reason=q.reason, **q.detail)
            beats = self.decoder.push(w.start, None)
        else:
            lead = None
            if q.path == "network":
                probs = self.model.predict_window(w.x)
            else:
                probs, lead = self._classic(w)
            self.counts[f"path_{q.path}"] += 1
            log.debug("window %d: %s path (sqi %.2f)", w.index, q.path, q.sqi)
            self._emit("quality", t=t, window=w.index, start=w.start, ok=True, sqi=round(q.sqi, 4), path=q.path)
            beats = self.decoder.push(w.start, probs, w.filtered, w.raw, lead=lead)
        self._prev_w = w
        self._beats(beats)
        self._show()

    def _classic(self, w):
        """The classic detector's probabilities for window ``w`` (and the lead before it).

        When windows do not overlap (hop = window) a pulse at a window's edge has no neighbour
        on one side and the detector cannot see it; with the previous window's last
        :data:`CLASSIC_CONTEXT_S` before ``w`` as context it finds the pulses at ``w``'s start and
        those cut off at the previous window's end (in the lead, up to the decoder's guard)."""
        prev = self._prev_w
        n = 0 if prev is None else min(prev.filtered.size, int(round(CLASSIC_CONTEXT_S * self.fs)))
        if n <= 0 or prev.start + prev.filtered.size != w.start:
            return classic_probs(w, self.fs, axis=self.classic_axis), None
        lead = min(n, self.decoder.guard)
        p = classic_probs(w, self.fs, axis=self.classic_axis, context=(prev.filtered[-n:], prev.raw[-n:]),
                          lead=lead)
        return p[lead:], p[:lead]

    def _beats(self, beats) -> None:
        for b in beats:
            self.counts["beats"] += 1
            self._emit("beat", t=round(b.t, 4), index=b.index,
                       sensor_index=self._sensor_index(b.index),
                       prob=round(b.prob, 4), rr_s=None if b.rr_s is None else round(b.rr_s, 4))
        if beats:
            m = self.decoder.metrics()
            if m["hr_bpm"] is not None:
                self._emit("hr", t=round(beats[-1].t, 4), **{k: (round(v, 3) if isinstance(v, float) else v)
                                                             for k, v in m.items()})

    def _show(self, force: bool = False) -> None:
        if self.status is None:
            return
        m = self.decoder.metrics()
        hr = f"{m['hr_bpm']:.0f}" if m["hr_bpm"] else "--"
        ev = sum(v for k, v in self.counts.items() if k.startswith("sensor_"))
        self.status.update(f"beats {self.counts['beats']}  HR {hr} bpm  windows {self.counts['windows']} "
                           f"(suppressed {self.counts['suppressed']})  lost {self.counts['lost']}  "
                           f"nonfinite {self.counts['nonfinite']}  sensor events {ev}"
                           + (f"  {self.bp.status(self._bp_last)}" if self.bp is not None else ""), force)

    # ------------------------------------------------------------ run
    def finish(self) -> dict:
        self._drain()
        self._beats(self.decoder.flush())
        self._show(force=True)
        if self.status is not None:
            self.status.close()
        m = self.decoder.metrics()
        summary = {"type": "summary", "t": self.n_sensor / self.sensor_fs, "samples": self.counts["samples"],
                   "lost": self.counts["lost"], "nonfinite": self.counts["nonfinite"],
                   "windows": self.counts["windows"], "suppressed": self.counts["suppressed"],
                   "beats": self.counts["beats"],
                   # beats the decoder's refractory gate refused (too close to a better one)
                   "beats_refused": self.decoder.refused,
                   # rounded as in the hr events: the last bits of a numpy reduction differ between
                   # CPUs (NEON and AVX sum in other orders), the beats they come from do not
                   **{k: None if m[k] is None else round(m[k], 3) for k in ("hr_bpm", "sdnn_ms", "rmssd_ms")},
                   "paths": {k[5:]: v for k, v in self.counts.items() if k.startswith("path_")},
                   "suppressed_by": {k[11:]: v for k, v in self.counts.items() if k.startswith("suppressed_")},
                   "sensor_events": {k[7:]: v for k, v in self.counts.items() if k.startswith("sensor_")},
                   "ir_inverted": bool(self.reflected),
                   "sensor_fs": self.sensor_fs,
                   "sensor_fs_measured": round(self.rate.fs, 4) if self.rate.measured else None,
                   "rate_tracked": self.rate.engaged,
                   "model": None if self.model is None else self.model.path.name,
                   "backend": None if self.model is None else self.model.backend}
        self.sink.emit(summary)
        return summary

    def run(self, blocks: Iterable) -> dict:
        """Process every block, then flush; returns the summary (also emitted)."""
        for block in blocks:
            self.process_block(block)
        return self.finish()

    def run_sensor(self, sensor, events, duration_s: float | None = None) -> dict:
        """Read ``sensor`` block by block (``duration_s`` of sensor time, or until it ends),
        forwarding the driver's events first (``events``: the list or deque its ``on_event``
        fills, emptied here, so none is lost or reported twice); close the sensor and flush.
        Returns the summary."""
        try:
            for block in sensor.blocks(duration_s=duration_s):
                self._forward(events)
                self.process_block(block)
        finally:
            sensor.close()
        self._forward(events)
        return self.finish()

    def _forward(self, events) -> None:
        for ev in events:
            self.sensor_event(ev)
        events.clear()
