"""Replay: a recorded array served as a stream of sensor blocks, without any driver.

Useful where a pipeline wants the sensor's block interface over data that already
is in ADC counts (e.g. a capture from the device). For light signals in other units
use the ``emulated`` backend, which passes them through the chip's quantisation.
"""
from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np

from ...dsp.rates import check_rate
from ...errors import ConfigError, DataError
from ..resample import replay_times
from .clock import Clock
from .max30102 import Block, SensorEvent

__all__ = ["ReplaySensor"]


def _counts(name: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"replay {name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(f"replay {name} has a non-finite value at sample {int(np.argmax(bad))}")
        if np.any(arr != np.round(arr)):
            raise DataError(
                f"replay {name} holds non-integer values: replay serves ADC counts; use the "
                f"'emulated' backend to turn a light signal into counts"
            )
    elif arr.dtype.kind not in "iu":
        raise DataError(f"replay {name} must be numeric, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 0x3FFFF):
        raise DataError(f"replay {name} is outside the 18-bit ADC range 0..262143")
    return arr.astype(np.int32)


class ReplaySensor:
    """Serve ``red`` / ``ir`` counts at ``fs`` in blocks of ``block_size`` samples.

    With a ``clock`` each block is released only when its last sample would have been
    measured (paced like a live sensor); without one, blocks come as fast as asked.
    After the end, :meth:`read` returns empty blocks and :attr:`exhausted` is true.
    ``reflected``: the counts are a real chip's reflected light (the default: a log
    from a MAX30102), labelled so on every block (see :class:`~.max30102.Block`).
    ``times``: the log's per-sample clock times (s, increasing); a block's ``t`` is then
    the time of its last sample and pacing follows them, so the pipeline measures the
    log's real rate (``fs`` stays the nominal one).
    """

    def __init__(self, red, ir=None, *, fs: float, block_size: int = 17,
                 resolution_bits: int = 18, clock: Clock | None = None, reflected: bool = True,
                 times=None) -> None:
        self._red = _counts("red", red)
        self._ir = _counts("ir", ir) if ir is not None else self._red.copy()
        if self._ir.shape != self._red.shape:
            raise DataError(f"replay red and ir lengths differ: {self._red.size} vs {self._ir.size}")
        fs = check_rate(fs, "replay sampling rate", number=True)
        if not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"replay block_size must be a positive integer, got {block_size!r}")
        if resolution_bits not in (15, 16, 17, 18):
            raise ConfigError(f"replay resolution_bits must be 15..18, got {resolution_bits!r}")
        self.fs = float(fs)
        self.times = replay_times(times, self._red.size)
        self.block_size = block_size
        self.resolution_bits = resolution_bits
        self.clock = clock
        self.reflected = bool(reflected)
        self._t0 = clock.now() if clock is not None else 0.0
        self._pos = 0
        self.samples_read = 0
        self.samples_lost = 0
        self.samples_saturated = 0
        self.i2c_errors = 0
        self.i2c_retries = 0
        self.events: collections.deque[SensorEvent] = collections.deque(maxlen=1000)

    @property
    def exhausted(self) -> bool:
        return self._pos >= self._red.size

    def read(self, timeout: float | None = None) -> Block:
        end = min(self._pos + self.block_size, self._red.size)
        t_end = None if self.times is None or end == 0 else float(self.times[end - 1])
        if self.clock is not None and end > self._pos:
            due = self._t0 + (end / self.fs if t_end is None else t_end - float(self.times[0]))
            wait = due - self.clock.now()
            if wait > 0:
                self.clock.sleep(wait)
        red = self._red[self._pos:end]
        ir = self._ir[self._pos:end]
        full = (1 << self.resolution_bits) - 1
        saturated = (red >= full) | (ir >= full)
        block = Block(red=red.copy(), ir=ir.copy(), first_index=self._pos, lost=0,
                      t=t_end if t_end is not None else (self.clock.now() if self.clock is not None
                                                          else end / self.fs),
                      fs=self.fs, resolution_bits=self.resolution_bits, saturated=saturated,
                      reflected=self.reflected)
        n_sat = int(saturated.sum())
        if n_sat:
            self.samples_saturated += n_sat
            self.events.append(SensorEvent("saturation", block.t, {"samples": n_sat,
                                                                    "first_index": self._pos}))
        self.samples_read += end - self._pos
        self._pos = end
        return block

    def blocks(self, *, n_samples: int | None = None, duration_s: float | None = None,
               ) -> Iterator[Block]:
        limit = self._red.size
        if n_samples is not None:
            limit = min(limit, n_samples)
        if duration_s is not None:
            limit = min(limit, int(round(duration_s * self.fs)))
        while self._pos < limit:
            yield self.read()

    def close(self) -> None:
        pass

    def __enter__(self) -> ReplaySensor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
