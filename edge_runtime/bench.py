"""Device-side timing for ``ppg-edge bench runtime``: what each stage of the streaming runtime costs.

The parts the benchmark (:mod:`ppg_edge.evaluate.runtime_bench`, host side: the data
sets, the NeuroKit2 peers, Keras in TensorFlow, the report) times on the device's code:

- :func:`capture`: a record played once through the emulated MAX30102 and the real driver
  at the board's settings, its FIFO blocks kept so every stage is timed on the same samples;
- :func:`time_frontend`: the DSP front end (:class:`~.resample.StreamResampler` +
  :class:`~.stream.StreamPreprocessor`) fed as the pipeline feeds it;
- :func:`time_windows`: :meth:`~.interpreter.EdgeModel.predict_window` per window;
- :func:`run_pipeline`: the whole :class:`~.pipeline.Pipeline` into a memory sink;
- :func:`f1` (+-50 ms, one-to-one) of its beats against reference peaks.

Costs are CPU time of this process (:data:`cpu_time`, ``time.process_time``) around the
work only: on a shared machine wall time would also count other jobs' turns on the core.
:func:`pin_to_one_core` pins the process to one CPU. numpy and the runtime only: nothing
here imports TensorFlow, NeuroKit2 or scipy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppg_edge.errors import ConfigError, DataError
from ppg_edge.metrics.peaks import f1_from_counts, match_peaks

from .interpreter import EdgeModel
from .pipeline import Pipeline
from .playback import light_from_ppg
from .quality import QualityConfig
from .resample import StreamResampler
from .sensors import SensorEvent, VirtualClock, open_sensor
from .sinks import MemorySink
from .stream import StreamPreprocessor

log = logging.getLogger(__name__)

#: The cost clock: CPU seconds of this process (``time.process_time``). On a shared machine
#: wall time also counts the other jobs' turns on the core; CPU time counts only ours.
cpu_time = time.process_time

TOL_S = 0.05


# ----------------------------------------------------------------------------- machine
def pin_to_one_core(core: int | None = None) -> int | None:
    """Pin this process to one CPU (the last allowed one by default); returns it (None if the OS
    cannot pin). Also sets :data:`~ppg_edge.edge_runtime.SINGLE_THREAD_ENV` for libraries
    imported afterwards."""
    from . import SINGLE_THREAD_ENV

    os.environ.update(SINGLE_THREAD_ENV)
    if not hasattr(os, "sched_setaffinity"):
        log.warning("cannot pin to one core on this OS; timings may use several")
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if core is None else int(core)
    if chosen not in allowed:
        raise ConfigError(f"core {chosen} is not available to this process (allowed: {allowed})")
    os.sched_setaffinity(0, {chosen})
    return chosen


def machine(core: int | None) -> dict:
    """:func:`ppg_edge.provenance.machine` with the pinned core and the load at the start."""
    from ppg_edge.provenance import machine as _machine

    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return _machine(pinned_core=core, loadavg_at_start=load)


# ----------------------------------------------------------------------------- helpers
@dataclass


class Capture:
    """A record played through the emulated chip + driver: the driver's blocks, kept."""

    blocks: list
    fs: float
    full_scale: int
    seconds: float
    emulate_s: float

    @property
    def ir(self) -> np.ndarray:
        return np.concatenate([np.asarray(b.ir, dtype=np.float64) for b in self.blocks])

    @property
    def blood_volume(self) -> np.ndarray:
        """The IR counts as the pipeline turns them into the blood-volume waveform (reflected
        light negated): what the peers must see to find the same pulse maxima."""
        return np.concatenate([b.blood_volume for b in self.blocks])


def capture(ppg, fs: float, settings) -> Capture:
    events: list[SensorEvent] = []
    t0 = cpu_time()
    sensor = open_sensor("emulated", source=light_from_ppg(ppg), source_fs=float(fs), clock=VirtualClock(),
                         settings=settings, on_event=events.append)
    try:
        blocks = list(sensor.blocks())
    finally:
        sensor.close()
    dt = cpu_time() - t0
    n = sum(len(b.ir) for b in blocks)
    lost = sum(1 for e in events if e.kind == "overflow")
    if lost:
        raise DataError(f"the emulated chip overflowed {lost} times under a virtual clock: a bug")
    return Capture(blocks=blocks, fs=settings.output_rate, full_scale=(1 << settings.resolution_bits) - 1,
                   seconds=n / settings.output_rate, emulate_s=dt)


def reference_on_model_axis(peaks, src_fs: float, n_src: int, settings, model_fs: float) -> np.ndarray:
    """Expert peaks (source samples) as model-rate indices of the emulated stream: sensor sample
    ``j`` averages conversions ``averaging * j + 0..averaging-1``, so it lies
    ``(averaging - 1) / 2`` conversions after ``j / output_rate``."""
    lag = (settings.averaging - 1) / 2 / settings.sample_rate
    p = np.asarray(peaks)
    return np.round((p[p < n_src] / src_fs - lag) * model_fs).astype(np.int64)


def f1(ref, det, fs: float) -> dict:
    ref = np.asarray(ref, dtype=np.int64)
    det = np.asarray(det, dtype=np.int64)
    m = match_peaks(ref, det, fs, int(round(TOL_S * fs)) / fs)
    tp, fp, fn = m.tp, m.fp, m.fn
    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1_from_counts(tp, fp, fn)}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = cpu_time()
    out = fn()
    return out, cpu_time() - t0


def time_frontend(cap: Capture, spec) -> tuple[float, list]:
    """CPU seconds of the resampler + streaming preprocessing (with every window's model input)
    over the capture, fed as the pipeline feeds it (bursts held until a window can complete);
    returns the windows too."""
    r = StreamResampler(cap.fs, spec.fs)
    sp = StreamPreprocessor(spec)
    wins: list = []
    blocks = [np.asarray(b.ir, dtype=np.float64) for b in cap.blocks]
    pending: list = []
    n_pending = n_fed = 0
    need = r.inputs_needed(sp.window)
    t0 = cpu_time()
    for x in blocks:
        pending.append(x)
        n_pending += x.size
        if n_fed + n_pending < need:
            continue
        y, f = r.push(np.concatenate(pending) if len(pending) > 1 else pending[0])
        n_fed += n_pending
        pending, n_pending = [], 0
        for w in sp.push(y, f):
            _ = w.x  # compute the features (a lazy property), as the network path does
            wins.append(w)
        need = r.inputs_needed(sp.next_window * sp.hop + sp.window)
    return cpu_time() - t0, wins


def time_windows(model: EdgeModel, windows: Sequence[np.ndarray]) -> np.ndarray:
    """Per-window seconds of ``predict_window`` (after 3 untimed warm-up windows)."""
    for w in windows[:3]:
        model.predict_window(w)
    out = np.zeros(len(windows))
    for k, w in enumerate(windows):
        t0 = cpu_time()
        model.predict_window(w)
        out[k] = cpu_time() - t0
    return out


def run_pipeline(cap: Capture, model_path, gate: str, sqi_classic: float | None = None, *,
                 hop: int | None = None, decoder: dict | None = None) -> tuple[dict, np.ndarray, float]:
    sink = MemorySink()
    q = QualityConfig(gate=gate) if sqi_classic is None else QualityConfig(gate=gate, sqi_classic=sqi_classic)
    pipe = Pipeline(cap.fs, sink, model_path=model_path, full_scale=cap.full_scale, quality=q, hop=hop,
                    decoder=decoder)
    summary, dt = timed(lambda: pipe.run(cap.blocks))
    beats = np.array([e["index"] for e in sink.of("beat")], dtype=np.int64)
    return summary, beats, dt
