"""Streaming rational resampler (polyphase FIR), numpy only.

The board delivers 50-100 Hz; models run at their manifest rate (e.g. 125 Hz).
:class:`StreamResampler` converts by ``up/down`` with the same design as
``scipy.signal.resample_poly`` (Kaiser-windowed sinc, beta 5, ``10 * max(up,
down)`` taps on each side, cutoff ``1 / max(up, down)`` of the upsampled
Nyquist, unit DC gain), designed here with ``numpy.kaiser`` and ``numpy.sinc``
so no scipy is needed on the device.

Output sample ``m`` sits at input time ``m * down / up`` (zero phase, like
``resample_poly``), so it can be computed only once the input has reached
``(m * down + half) / up``: the resampler adds a latency of ``half / up``
input samples (10 samples for 100 -> 125 Hz). Before the first sample the input
is taken equal to the first sample (no start-up transient); away from the
edges the output equals ``resample_poly`` to ~1e-12.

Per-sample flags (see :mod:`.stream`) are carried too: an output sample is
flagged with every flag of the input samples within one input sample of it.
"""
from __future__ import annotations

import logging

import numpy as np

from ppg_edge.dsp.rates import rational_factor
from ppg_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_DENOMINATOR = 100  # the device resamples by exact factors with a small denominator


def check_rate_for(sensor_fs: float, spec, what: str = "model") -> None:
    """Refuse a sensor rate that cannot carry a model's band-pass (Nyquist below its upper
    edge): resampling cannot bring back what sampling aliased."""
    band = getattr(spec, "band", None)
    hi = float(band[1]) if band else 0.0
    if not sensor_fs > 2 * hi:
        raise ConfigError(f"sensor rate {sensor_fs:g} Hz cannot carry the {what}'s {band[0]:g}-{hi:g} Hz "
                          f"band (needs more than {2 * hi:g} Hz); the model was built for {spec.fs:g} Hz "
                          f"samples: raise the sensor rate (board sample_rate_hz / averaging)")


def design_filter(up: int, down: int, beta: float = 5.0) -> np.ndarray:
    """Low-pass taps of ``resample_poly`` (``firwin(2*half+1, 1/max(up,down), window=('kaiser', beta))``)."""
    mx = max(up, down)
    half = 10 * mx
    n = 2 * half + 1
    cutoff = 1.0 / mx
    m = np.arange(n) - half
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(n, beta)
    return h / h.sum()


class StreamResampler:
    """Resample a stream from ``fs_in`` to ``fs_out`` block by block (see the module docstring)."""

    def __init__(self, fs_in: float, fs_out: float):
        self.fs_in = float(fs_in)
        self.fs_out = float(fs_out)
        self.up, self.down = rational_factor(self.fs_in, self.fs_out, MAX_DENOMINATOR, exact=True)
        self.identity = self.up == self.down
        self.h = design_filter(self.up, self.down) * self.up
        self.half = (self.h.size - 1) // 2
        self._x = np.zeros(0)
        self._f = np.zeros(0, dtype=np.uint8)
        self._x_start = 0  # absolute input index of _x[0]
        self._n_in = 0
        self._m = 0  # next output sample
        self._first: float | None = None
        # polyphase table: output m uses inputs n_lo(m) + j, j < taps, with weights
        # _rows[(m * down) % up, j] (zero where the filter has no tap)
        self._taps = (self.half + self.up - 1) // self.up * 2 + 1
        self._rows = np.zeros((self.up, self._taps))
        for m in range(self.up):
            t = m * self.down
            n_lo = -((self.half - t) // self.up)
            k = t - (n_lo + np.arange(self._taps)) * self.up + self.half
            ok = (k >= 0) & (k < self.h.size)
            self._rows[t % self.up, ok] = self.h[k[ok]]

    @property
    def latency_in(self) -> float:
        """Input samples the output waits for."""
        return 0.0 if self.identity else self.half / self.up

    def inputs_needed(self, n_out: int) -> int:
        """Input samples (counted from the first) after which ``n_out`` outputs have been produced."""
        if n_out <= 0:
            return 0
        if self.identity:
            return int(n_out)
        # push() gives outputs m with m * down + half <= last_input * up
        return -(-((n_out - 1) * self.down + self.half) // self.up) + 1

    def out_index_to_in(self, m):
        """Input-time position (fractional input index) of output sample ``m``."""
        return np.asarray(m, dtype=np.float64) * self.down / self.up

    def push(self, x, flags=None) -> tuple[np.ndarray, np.ndarray]:
        """Add input samples (finite); returns ``(output samples, output flags)`` now computable."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise DataError(f"resampler block must be 1-D, got shape {x.shape}")
        f = np.zeros(x.size, dtype=np.uint8) if flags is None else np.asarray(flags, dtype=np.uint8)
        if f.shape != x.shape:
            raise DataError(f"flags shape {f.shape} does not match block {x.shape}")
        if x.size and not np.all(np.isfinite(x)):
            raise DataError("resampler input has NaN or infinite samples; hold or drop them first")
        if self.identity:
            self._n_in += x.size
            return x.copy(), f.copy()
        if x.size == 0:
            return np.zeros(0), np.zeros(0, dtype=np.uint8)
        if self._first is None:
            self._first = float(x[0])
        self._x = np.concatenate([self._x, x])
        self._f = np.concatenate([self._f, f])
        self._n_in += x.size
        up, down, half = self.up, self.down, self.half
        # output m needs input up to floor((m*down + half) / up)
        last_in = self._n_in - 1
        m_end = (last_in * up - half) // down + 1  # outputs m < m_end are computable
        ms = np.arange(self._m, max(self._m, m_end), dtype=np.int64)
        if ms.size == 0:
            return np.zeros(0), np.zeros(0, dtype=np.uint8)
        t = ms * down  # position in the upsampled domain
        n_lo = -((half - t) // up)  # ceil((t - half) / up)
        rel = n_lo[:, None] - self._x_start + np.arange(self._taps)[None, :]
        np.minimum(rel, self._x.size - 1, out=rel)  # taps past the input have zero weight
        if n_lo[0] < 0:  # before the first sample the input is held at it
            xs = np.where(rel + self._x_start < 0, self._first, self._x[np.maximum(rel, 0)])
        else:
            xs = self._x[rel]
        y = np.einsum("ij,ij->i", self._rows[t % up], xs)
        # flags: inputs within one sample of the output time
        if self._f.any():
            centre = t // up
            near = centre[:, None] + np.arange(-1, 3)[None, :]
            near_rel = np.clip(near - self._x_start, 0, self._f.size - 1)
            fo = np.bitwise_or.reduce(np.where((near >= 0) & (near < self._n_in), self._f[near_rel], 0)
                                      .astype(np.uint8), axis=1)
        else:
            fo = np.zeros(ms.size, dtype=np.uint8)
        self._m = int(ms[-1]) + 1
        # drop input no future output needs
        need_from = max(0, -((half - self._m * down) // up) - 2)
        cut = need_from - self._x_start
        if cut > 0:
            self._x = self._x[cut:]
            self._f = self._f[cut:]
            self._x_start += cut
        return y, fo
