"""What the DUT runs: the :class:`Pipeline` protocol, stimuli, and a trivial stand-in.

The real edge runtime (sensor, DSP, model, decoder) plugs into the DUT by
satisfying :class:`Pipeline`: it is fed blocks of samples and returns the
results they produced, each tied to the stimulus sample it refers to. The DUT
adds the device-side timestamps.

:class:`MovingAveragePeaks` is a deliberately simple pipeline (a moving-average
smoother and a local-maximum peak picker) so the link, the DUT mode and the
harness can be tested end to end before the real runtime exists. It is not a
PPG peak detector to report numbers for.

This module runs on the Pi: numpy only.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ppg_edge.errors import ConfigError, DataError
from ppg_edge.synth import synth_ppg

from .protocol import samples_crc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """One output of a pipeline: ``kind`` ("peak", "hr", "sbp" ...) at stimulus sample ``index``."""

    index: int
    kind: str
    value: float


@runtime_checkable
class Pipeline(Protocol):
    """The DUT's view of the edge runtime.

    ``lost_samples`` counts input samples the pipeline could not process (a
    full FIFO, a rejected value); the DUT reports its change per window.
    """

    name: str
    lost_samples: int

    def describe(self) -> Mapping[str, str]:
        """Versions and model hashes, e.g. ``{"model": "peaks-v1:3f2a9c01e4b7"}``."""

    def configure(self, key: str, value: str) -> None:
        """Apply one setting; raise :class:`ConfigError` for an unknown key or bad value."""

    def settings(self) -> Mapping[str, str]:
        """The current settings, as text."""

    def reset(self) -> None:
        """Forget all stream state (filters, buffers, model state)."""

    def feed(self, samples: np.ndarray) -> Sequence[Result]:
        """Process the next samples of the stream; return the results they completed."""


@dataclass
class Stimulus:
    """A signal the DUT is fed, with the reference annotations the host scores against."""

    id: str
    samples: np.ndarray
    fs: float
    peaks: np.ndarray | None = None          # reference peak sample indices
    source: str = ""

    def __post_init__(self) -> None:
        self.samples = np.asarray(self.samples, dtype=np.float64)
        if self.samples.ndim != 1 or self.samples.size == 0:
            raise DataError(f"stimulus {self.id}: samples must be a non-empty 1-D array")
        if not np.all(np.isfinite(self.samples)):
            bad = int(np.flatnonzero(~np.isfinite(self.samples))[0])
            raise DataError(f"stimulus {self.id}: sample {bad} is not finite")
        if not self.fs > 0:
            raise DataError(f"stimulus {self.id}: sampling rate {self.fs} must be positive")

    @property
    def crc(self) -> str:
        return samples_crc(self.samples)


def synthetic_ppg(rng: np.random.Generator, *, fs: float = 100.0, seconds: float = 30.0,
                  bpm: float = 72.0, rr_jitter: float = 0.03, noise: float = 0.02,
                  id: str | None = None) -> Stimulus:
    """A stimulus from the project's one generator, :func:`ppg_edge.synth.synth_ppg` (its exact
    systolic peaks are the reference), with beat-to-beat variability ``rr_jitter`` (relative
    SD) and white noise of SD ``noise`` added."""
    s = synth_ppg(seconds, fs, rng, hr_bpm=bpm, hrv=rr_jitter)
    x = s.signal + noise * rng.standard_normal(s.signal.size)
    return Stimulus(id=id or f"synthetic-{bpm:g}bpm-{fs:g}hz", samples=x, fs=fs, peaks=s.peaks,
                    source=f"synth_ppg(hr_bpm={bpm}, fs={fs}, seconds={seconds}) + noise {noise}")


@dataclass
class MovingAveragePeaks:
    """Trivial streaming detector: moving average, then local maxima above mid-envelope.

    Settings (``configure``): ``fs`` (Hz), ``width`` (moving-average samples),
    ``refractory_s`` (shortest gap between peaks), ``delay_s`` (sleep per fed
    block, to simulate a slow model in tests).
    """

    name: str = "moving-average-peaks"
    fs: float = 100.0
    width: int = 5
    refractory_s: float = 0.3
    delay_s: float = 0.0
    lost_samples: int = 0
    _state: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def describe(self) -> Mapping[str, str]:
        return {"pipeline": self.name, "numpy": np.__version__, "models": "none"}

    def settings(self) -> Mapping[str, str]:
        return {"fs": f"{self.fs:g}", "width": str(self.width),
                "refractory_s": f"{self.refractory_s:g}", "delay_s": f"{self.delay_s:g}"}

    def configure(self, key: str, value: str) -> None:
        try:
            if key == "fs":
                v = float(value)
                if not 1 <= v <= 10_000:
                    raise ValueError("outside 1-10000 Hz")
                self.fs = v
            elif key == "width":
                w = int(value)
                if not 1 <= w <= 1000:
                    raise ValueError("outside 1-1000 samples")
                self.width = w
            elif key == "refractory_s":
                v = float(value)
                if not 0 <= v <= 10:
                    raise ValueError("outside 0-10 s")
                self.refractory_s = v
            elif key == "delay_s":
                v = float(value)
                if not 0 <= v <= 10:
                    raise ValueError("outside 0-10 s")
                self.delay_s = v
            else:
                raise ConfigError(f"{self.name}: unknown setting {key!r}; known: "
                                  + ", ".join(self.settings()))
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{self.name}: {key}={value!r}: {exc}") from None
        self.reset()

    def reset(self) -> None:
        self._state = {"ma": deque(maxlen=self.width), "sum": 0.0, "n": 0,
                       "mean": None, "env": None, "prev2": None, "prev1": None, "last_peak": -10**9}

    def feed(self, samples: np.ndarray) -> Sequence[Result]:
        import time

        s = self._state
        out: list[Result] = []
        alpha = 1.0 / max(1.0, 1.5 * self.fs)       # ~1.5 s running mean
        refractory = int(self.refractory_s * self.fs)
        lag = (self.width - 1) / 2.0
        for x in np.asarray(samples, dtype=np.float64).ravel():
            ma: deque = s["ma"]
            if len(ma) == ma.maxlen:
                s["sum"] -= ma[0]
            ma.append(x)
            s["sum"] += x
            y = s["sum"] / len(ma)
            s["mean"] = y if s["mean"] is None else s["mean"] + alpha * (y - s["mean"])
            # upper envelope: jumps to new maxima, relaxes towards the mean over ~1.5 s
            env = s["env"]
            env = y if env is None or y > env else env + alpha * (s["mean"] - env)
            s["env"] = env
            p2, p1 = s["prev2"], s["prev1"]
            i = s["n"]
            threshold = s["mean"] + 0.5 * (env - s["mean"])
            settled = i >= self.width + int(0.5 * self.fs)    # envelope needs a moment
            if settled and p2 is not None and p1 > p2 and p1 >= y and p1 > threshold:
                idx = int(round(i - 1 - lag))
                if idx - s["last_peak"] >= refractory:
                    out.append(Result(index=max(idx, 0), kind="peak", value=float(p1)))
                    s["last_peak"] = idx
            s["prev2"], s["prev1"] = p1, y
            s["n"] = i + 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return out
