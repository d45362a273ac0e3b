"""The real device path as a DUT pipeline: emulated MAX30102 -> real driver -> edge runtime.

:class:`DevicePipeline` satisfies :class:`~.pipeline.Pipeline` by wrapping
``edge_runtime`` without re-implementing any of it: the stimulus (light at the
photodiode, nA per mA of LED current) is played by
:class:`~ppg_edge.edge_runtime.sensors.EmulatedMax30102`, read by the real
:class:`~ppg_edge.edge_runtime.sensors.Max30102` driver in FIFO bursts on the
chip's almost-full interrupt, and every block goes through
:class:`ppg_edge.edge_runtime.pipeline.Pipeline` (resampler, DSP, framer,
quality gate, TFLite model, decoder).

Time: the chip and the driver share a :class:`VirtualClock`. Each ``feed`` of
``k`` stimulus samples moves it forward by ``k / fs`` (accelerated playback: as
fast as the DUT computes), then drains the FIFO while its interrupt line is
asserted. The DUT's own monotonic clock stamps when each sensor sample became
available ("arrival", the ``feed`` call that made the chip convert it) and when
the first model window covering it was processed ("result"): their difference
is the per-sample latency reported in ``m-slat`` lines. ``inference_us`` is the
wall time of each ``predict_window`` call.

Lost samples come from the driver's own count (OVF_COUNTER, and the clock
estimate once it saturates); the emulated chip's true count is reported beside
it so a gap between the two is visible.

``cfg speed=S`` paces playback at S x real time (1: the real sample rate, so latency
includes waiting for the FIFO and the framer hop); 0 (default) plays as fast as possible.

Faults (``cfg`` keys): ``i2c_burst=START:COUNT`` makes transfers START..START+COUNT-1
(counted from the first read after start-up) fail with EIO; ``stall=AT:SECONDS``
makes the DUT stop reading the FIFO for SECONDS of signal from stimulus sample AT
(a busy DUT: the FIFO overflows).

Stimulus light (:func:`to_light`) is the playback's light mapping
(:mod:`ppg_edge.edge_runtime.playback`); record loading is host
side (:func:`record_stimulus`, needs the data root). This module runs on the Pi:
numpy and the edge runtime only.
"""
from __future__ import annotations

import collections
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.playback import EMU_AC, EMU_DC, light_from_codes, light_from_ppg
from ppg_edge.errors import ConfigError, DataError, HardwareError

from .pipeline import Result, Stimulus

log = logging.getLogger(__name__)

RAW_BITS = 18          # raw MAX30102 logs hold 18-bit codes (pulse width 411 us)
RAW_STIMULUS_PREFIX = "max30102-raw-"  # the id of a stimulus made from one (load_stimulus)
GATES = ("network", "auto", "classic")


def to_light(x: np.ndarray, *, counts: bool = False, adc_range_na: float = 4096.0,
             led_ma: float = 7.0) -> np.ndarray:
    """Light (nA per mA) the emulated chip converts back into the same signal.

    ``counts``: ``x`` is raw 18-bit MAX30102 codes; the light reproduces those codes
    at ``adc_range_na`` and ``led_ma`` (so a no-finger log stays a no-finger level).
    Otherwise ``x`` (any units) is standardised to a fingertip level. Both are the
    playback's mappings (:func:`~ppg_edge.edge_runtime.playback.light_from_codes`,
    :func:`~ppg_edge.edge_runtime.playback.light_from_ppg`).
    """
    if counts:
        return light_from_codes(x, adc_range_na, led_ma, RAW_BITS)
    return light_from_ppg(x)


def record_stimulus(key: str, *, root: str | Path | None = None, seconds: float | None = None,
                    start_s: float = 0.0, board: Any = None) -> Stimulus:
    """A stimulus (light) from a record ``DATASET/ID`` with its reference peaks (host side)."""
    from ppg_edge.data import load_record

    if "/" not in key:
        raise ConfigError(f"stimulus record must be DATASET/ID (e.g. capnobase/0009), got {key!r}")
    dataset, rid = key.split("/", 1)
    rec = load_record(dataset, rid, root)
    fs = float(rec.fs)
    a = int(round(start_s * fs))
    b = rec.ppg.size if seconds is None else min(rec.ppg.size, a + int(round(seconds * fs)))
    if b - a < 2:
        raise DataError(f"{key}: nothing between {start_s} s and {seconds} s (record is "
                        f"{rec.ppg.size / fs:.1f} s)")
    x = np.asarray(rec.ppg[a:b], dtype=np.float64)
    bad = ~np.isfinite(x)
    note = ""
    if bad.any():
        x = np.where(bad, float(np.nanmedian(x)), x)
        note = f"; {int(bad.sum())} non-finite samples replaced by the median"
    counts = dataset == "max30102-raw"
    if counts:
        from ppg_edge.data.max30102_raw import adc_codes

        adc_codes(rec)  # refuses a file that is not 18-bit codes, saying what it holds
    m = getattr(board, "max30102", None)
    light = to_light(x, counts=counts, adc_range_na=getattr(m, "adc_range_na", 4096),
                     led_ma=getattr(m, "led_ir_ma", 7.0))
    peaks = None
    if rec.peaks is not None and len(rec.peaks):
        p = np.asarray(rec.peaks, dtype=np.int64)
        peaks = p[(p >= a) & (p < b)] - a
    how = "raw 18-bit codes at the board's ADC range and LED current" if counts else \
        f"standardised to {EMU_DC:g}+{EMU_AC:g}*z nA/mA"
    sid = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{key}-{start_s:g}s-{(b - a) / fs:g}s")   # protocol-safe
    return Stimulus(id=sid, samples=light, fs=fs, peaks=peaks,
                    source=f"{key} samples {a}..{b} ({how}){note}")


class _Collect:
    """Sink of the edge pipeline: keeps the events the DUT reports."""

    def __init__(self, on_window):
        self.events: list[dict] = []
        self.on_window = on_window

    def emit(self, event: dict) -> None:
        if event.get("type") == "quality":
            self.on_window(event)
        self.events.append(event)

    def close(self) -> None:
        pass


def _parse_pair(value: str, what: str, cast=float) -> tuple[Any, Any]:
    try:
        a, b = value.split(":")
        return cast(a), float(b)
    except ValueError:
        raise ConfigError(f"{what}={value!r}: expected A:B") from None


class DevicePipeline:
    """The device path behind the DUT protocol (see the module docstring).

    ``models``: name -> .tflite path (manifest beside it); ``model`` picks one
    (``cfg model=NAME`` or a path switches). ``board``: a board object for the
    MAX30102 settings and interpreter preference (defaults otherwise).
    """

    name = "device"

    def __init__(self, models: Mapping[str, str | Path] | None = None, *, model: str | None = None,
                 board: Any = None, gate: str = "network", backend: str | None = None,
                 clock_us=None):
        from ppg_edge.edge_runtime.sensors import Max30102Settings

        self.models = {k: Path(v) for k, v in (models or {}).items()}
        self.board = board
        self.backend = backend
        self.gate = gate
        self.clock_us = clock_us or (lambda: time.monotonic_ns() // 1000)
        m = getattr(board, "max30102", None)
        self.sensor_settings = Max30102Settings() if m is None else Max30102Settings(
            sample_rate=m.sample_rate_hz, averaging=m.averaging, pulse_width_us=m.pulse_width_us,
            adc_range_na=m.adc_range_na, red_current_ma=m.led_red_ma, ir_current_ma=m.led_ir_ma)
        self.model_name: str | None = None
        self.model_path: Path | None = None
        self.i2c_burst: tuple[int, float] | None = None
        self.stall: tuple[int, float] | None = None
        self.speed = 0.0
        self.stim: Stimulus | None = None
        self.lost_samples = 0
        self.outputs: list | None = None        # set to [] to keep every model output (device checks)
        self._pipe = None
        if model is not None or self.models:
            self._select_model(model or sorted(self.models)[0])

    # ------------------------------------------------------------------ protocol

    def _select_model(self, value: str) -> None:
        from ppg_edge.edge_runtime.interpreter import EdgeModel

        path = self.models.get(value)
        name = value
        if path is None:
            path = Path(value)
            name = path.stem
            if not path.suffix == ".tflite":
                raise ConfigError(f"model {value!r}: neither a model this DUT holds "
                                  f"({', '.join(sorted(self.models)) or 'none'}) nor a .tflite path")
        # Load once now: a corrupt or mismatched file is refused here (ModelError), not mid-run.
        EdgeModel(path, kind="peaks", backend=self.backend,
                  preference=getattr(self.board, "interpreters", None))
        self.model_name, self.model_path = name, path
        self.models.setdefault(name, path)

    def describe(self) -> Mapping[str, str]:
        from ppg_edge import manifest as mf

        info = {"pipeline": self.name, "numpy": np.__version__, "sensor": "emulated-max30102",
                "sensor_fs": f"{self.sensor_settings.output_rate:g}"}
        models = []
        for name, path in sorted(self.models.items()):
            try:
                sha = str(mf.read_manifest(mf.manifest_path_for(path)).get("sha256", ""))[:12]
            except Exception:  # noqa: BLE001 - describe must not fail on a bad manifest
                sha = "unreadable"
            models.append(f"{name}:{sha}")
        info["models"] = ",".join(models) or "none"
        info["model"] = self.model_name or "none"
        try:
            from ppg_edge.edge_runtime.interpreter import interpreter_class

            info["backend"] = interpreter_class(self.backend, getattr(self.board, "interpreters", None))[0]
        except Exception as exc:  # noqa: BLE001
            info["backend"] = f"none ({type(exc).__name__})"
        return info

    def settings(self) -> Mapping[str, str]:
        return {"model": self.model_name or "none", "gate": self.gate, "speed": f"{self.speed:g}",
                "i2c_burst": "none" if self.i2c_burst is None else f"{self.i2c_burst[0]}:{int(self.i2c_burst[1])}",
                "stall": "none" if self.stall is None else f"{self.stall[0]}:{self.stall[1]:g}"}

    def configure(self, key: str, value: str) -> None:
        if key == "model":
            self._select_model(value)
        elif key == "gate":
            if value not in GATES:
                raise ConfigError(f"gate {value!r}: choose one of {', '.join(GATES)}")
            self.gate = value
        elif key == "i2c_burst":
            if value == "none":
                self.i2c_burst = None
            else:
                start, count = _parse_pair(value, key, int)
                if start < 1 or not 1 <= count <= 1000:
                    raise ConfigError(f"i2c_burst={value!r}: START >= 1 and COUNT in 1..1000")
                self.i2c_burst = (start, count)
        elif key == "stall":
            if value == "none":
                self.stall = None
            else:
                at, seconds = _parse_pair(value, key, int)
                if at < 0 or not 0 < seconds <= 60:
                    raise ConfigError(f"stall={value!r}: AT >= 0 and SECONDS in (0, 60]")
                self.stall = (at, seconds)
        elif key == "speed":
            try:
                v = float(value)
            except ValueError:
                v = -1.0
            if not 0 <= v <= 1000:
                raise ConfigError(f"speed={value!r}: 0 (as fast as possible) or a factor of real time up to 1000")
            self.speed = v
        elif key == "fs":
            return   # the stimulus carries its rate; accepted for compatibility with the harness
        else:
            raise ConfigError(f"{self.name}: unknown setting {key!r}; known: " + ", ".join(self.settings()))
        self.reset()

    def bind(self, stim: Stimulus) -> None:
        """The stimulus the emulated chip plays (called by the DUT on select/upload)."""
        self.stim = stim
        self.reset()

    # ------------------------------------------------------------------ stream

    def reset(self) -> None:
        if self.stim is None:
            self._pipe = None
            return
        from ppg_edge.edge_runtime.pipeline import Pipeline as EdgePipeline
        from ppg_edge.edge_runtime.quality import QualityConfig
        from ppg_edge.edge_runtime.sensors import EmulatedMax30102, FaultPlan, Max30102, VirtualClock

        if self.model_path is None and self.gate == "network":
            raise ConfigError("device pipeline: no model loaded (start the DUT with --model, or cfg model=PATH)")
        self.clock = VirtualClock(keep_sleeps=False)  # a DUT soak runs for hours: no list of every wait
        self.sensor_events: list = []
        # a stimulus made from a real MAX30102 log (its id names the max30102-raw data set, here and
        # after an upload to the DUT) carries that chip's noise and stale repeats: the ideal converter
        # reproduces its codes; any other stimulus gets the emulated chip's conversion noise
        raw_log = self.stim.id.startswith(RAW_STIMULUS_PREFIX)
        self.chip = EmulatedMax30102(self.stim.samples, self.stim.fs, clock=self.clock,
                                     adc_noise=0.0 if raw_log else None)
        self.driver = Max30102(self.chip, settings=self.sensor_settings, clock=self.clock,
                               wait_for_interrupt=self.chip.wait_for_interrupt,
                               on_event=self.sensor_events.append, owns_bus=False)
        self.driver.start()
        self.t_origin = self.clock.now()
        if self.i2c_burst is not None:
            start, count = self.i2c_burst
            self.chip.faults = FaultPlan(fail_transfers=FaultPlan.burst(self.chip.transfers + start, int(count)))
        self.sink = _Collect(self._on_window)
        s = self.sensor_settings
        self.fs_sensor = s.output_rate
        self._pipe = EdgePipeline(self.fs_sensor, self.sink, model_path=self.model_path,
                                  full_scale=(1 << s.resolution_bits) - 1,
                                  quality=QualityConfig(gate=self.gate), backend=self.backend,
                                  preference=getattr(self.board, "interpreters", None))
        self._inference_us: list[int] = []
        if self._pipe.model is not None:
            predict = self._pipe.model.predict_window

            def timed(x, _predict=predict):
                a = self.clock_us()
                y = _predict(x)
                self._inference_us.append(self.clock_us() - a)
                if self.outputs is not None:
                    self.outputs.append(np.array(y, copy=True))
                return y

            self._pipe.model.predict_window = timed   # wraps the instance's method; API unchanged
        self.pos = 0
        self._real0: float | None = None
        self._produced = 0
        self._arrivals: collections.deque = collections.deque()   # [first, end, t_us]
        self._latency_us: list[int] = []
        self._seen = 0
        self.lost_samples = 0

    def _on_window(self, ev: dict) -> None:
        covered = int(np.floor(float(ev["t"]) * self.fs_sensor + 1e-9))
        now = self.clock_us()
        arr = self._arrivals
        while arr and arr[0][0] < covered:
            first, end, t = arr[0]
            take = min(end, covered)
            self._latency_us.extend([now - t] * (take - first))
            if take >= end:
                arr.popleft()
            else:
                arr[0][0] = take

    def _stalled(self) -> bool:
        if self.stall is None:
            return False
        at, seconds = self.stall
        return at <= self.pos < at + seconds * self.stim.fs

    def feed(self, samples: np.ndarray) -> Sequence[Result]:
        if self._pipe is None:
            raise DataError("device pipeline: no stimulus bound (select or upload one first)")
        x = np.asarray(samples, dtype=np.float64).ravel()
        k = x.size
        if not np.array_equal(x, self.stim.samples[self.pos:self.pos + k]):
            raise DataError(f"device pipeline: fed samples {self.pos}..{self.pos + k} are not the bound "
                            f"stimulus {self.stim.id}'s (the chip plays the stimulus; feed it in order)")
        if self.speed > 0:            # paced playback: the samples exist only once their time has come
            if self._real0 is None:
                self._real0 = time.monotonic() - self.pos / self.stim.fs / self.speed
            wait = self._real0 + (self.pos + k) / self.stim.fs / self.speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        t_arr = self.clock_us()
        self.pos += k
        target = self.t_origin + self.pos / self.stim.fs
        if target > self.clock.now():
            self.clock.advance(target - self.clock.now())
        produced = self.chip.produced
        if produced > self._produced:
            self._arrivals.append([self._produced, produced, t_arr])
            self._produced = produced
        if not self._stalled():
            while self.chip.int_asserted:
                try:
                    block = self.driver.read()
                finally:
                    self._forward_events()
                self._pipe.process_block(block)
        self.lost_samples = self.driver.samples_lost
        out: list[Result] = []
        new = self.sink.events[self._seen:]
        self._seen = len(self.sink.events)
        for ev in new:
            if ev.get("type") == "beat":
                idx = int(round(ev["sensor_index"] * self.stim.fs / self.fs_sensor))
                out.append(Result(index=idx, kind="peak", value=float(ev.get("prob") or 0.0)))
        return out

    def _forward_events(self) -> None:
        for ev in self.sensor_events:
            self._pipe.sensor_event(ev)
        self.sensor_events.clear()

    # ------------------------------------------------------------------ per window (DUT)

    def take_window_stats(self) -> dict[str, Any]:
        """What happened since the last call: latencies, inference times, events by kind."""
        lat, self._latency_us = self._latency_us, []
        inf, self._inference_us = self._inference_us, []
        kinds: collections.Counter = collections.Counter()
        for ev in self.sink.events:
            t = ev.get("type")
            if t == "sensor":
                kinds[f"sensor:{ev.get('kind')}"] += 1
            elif t == "quality" and not ev.get("ok"):
                kinds[f"suppressed:{ev.get('reason')}"] += 1
            elif t in ("lost", "nonfinite"):
                kinds[t] += int(ev.get("samples", 1))
        # keep only beats not yet handed out; the rest is summarised above
        self.sink.events = self.sink.events[self._seen:]
        self._seen = 0
        return {"sample_latency_us": lat, "inference_us": inf, "events": dict(kinds),
                "chip_lost": int(self.chip.lost), "driver_lost": int(self.driver.samples_lost),
                "samples_read": int(self.driver.samples_read),
                "i2c_errors": int(self.driver.i2c_errors)}


def reference_beats(stim: Stimulus, model_path: str | Path, *, n_samples: int, chunk: int,
                    board: Any = None, gate: str = "network", backend: str | None = None,
                    settings: Mapping[str, str] | None = None) -> list[int]:
    """The host's run of the same device path on the same samples: beat indices (stimulus samples)."""
    pipe = DevicePipeline({Path(model_path).stem: model_path}, board=board, gate=gate, backend=backend)
    for k, v in (settings or {}).items():
        pipe.configure(k, v)
    pipe.bind(stim)
    beats: list[int] = []
    for j in range(0, n_samples, chunk):
        beats.extend(r.index for r in pipe.feed(stim.samples[j:min(j + chunk, n_samples)]))
    return beats


def run_outputs(stim: Stimulus, model_path: str | Path, *, n_samples: int, chunk: int, board: Any = None,
                gate: str = "network") -> dict[str, Any]:
    """The device path on ``n_samples`` of ``stim``: every model output, the beats, the losses.

    Run on the host and on the device (``python -m ppg_edge.hil_tests.device``) to compare them:
    an int8 model must give the same bytes, a float model the same values within rounding.
    """
    import hashlib
    import platform

    pipe = DevicePipeline({Path(model_path).stem: model_path}, board=board, gate=gate)
    pipe.outputs = []
    pipe.bind(stim)
    beats: list[int] = []
    for j in range(0, n_samples, chunk):
        beats.extend(r.index for r in pipe.feed(stim.samples[j:min(j + chunk, n_samples)]))
    outs = [np.asarray(o, dtype=np.float64).ravel() for o in pipe.outputs]
    flat = np.concatenate(outs) if outs else np.zeros(0)
    return {"machine": platform.machine(), "backend": pipe._pipe.model.backend if pipe._pipe.model else None,
            "model": Path(model_path).name, "windows": len(outs), "beats": beats,
            "outputs": [o.tolist() for o in outs], "sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
            "driver_lost": int(pipe.driver.samples_lost), "chip_lost": int(pipe.chip.lost),
            "samples_read": int(pipe.driver.samples_read)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ppg_edge.hil_tests.device --model M --stimulus S.npy --fs FS --samples N``: JSON on stdout."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m ppg_edge.hil_tests.device", description=main.__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--stimulus", required=True, help=".npy of light values (nA per mA)")
    ap.add_argument("--fs", type=float, required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--chunk", type=int, default=30)
    ap.add_argument("--board", help="board identifier (MAX30102 settings)")
    args = ap.parse_args(argv)
    board = None
    if args.board:
        from ppg_edge.boards import load_board

        board = load_board(args.board)
    x = np.load(args.stimulus)
    stim = Stimulus(id=Path(args.stimulus).stem, samples=x, fs=args.fs)
    n = min(args.samples, x.size)
    print(json.dumps(run_outputs(stim, args.model, n_samples=n, chunk=args.chunk, board=board)))
    return 0


def check_no_silent_loss(stats: Mapping[str, Any]) -> str | None:
    """A message when the driver counted fewer lost samples than the chip really lost."""
    if stats.get("driver_lost", 0) < stats.get("chip_lost", 0):
        return (f"driver counted {stats['driver_lost']} lost samples, the chip lost {stats['chip_lost']}: "
                "samples lost silently")
    return None


__all__ = ["DevicePipeline", "EMU_AC", "EMU_DC", "HardwareError", "check_no_silent_loss",
           "record_stimulus", "reference_beats", "run_outputs", "to_light"]

if __name__ == "__main__":
    raise SystemExit(main())
