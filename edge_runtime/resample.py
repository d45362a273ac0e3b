"""Streaming arbitrary-ratio resampler and the sensor-rate estimator that drives it, numpy only.

The board delivers what its oscillator gives (the datasheet says 100 Hz, a real
MAX30102 may run at 100.4 Hz); models run at their manifest rate (e.g. 125 Hz,
100 Hz for the BP models). :class:`StreamResampler` converts any input rate of
25-1000 Hz, rational or not, to the model rate.

Method: the continuous kernel of ``scipy.signal.resample_poly`` (Kaiser-windowed
sinc, beta 5, cutoff ``min(fs_in, fs_out) / 2``, half-width ``T = 10 * max(1,
fs_in / fs_out)`` input samples), tabulated at ``PHASES`` fractional positions
per input sample (fewer when the kernel is wider, so the table stays ~10k
entries), scaled to unit DC gain on average over the phases (as
``resample_poly`` does; single phases keep the design's ripple of ~1e-3), and
interpolated linearly between the two nearest phases:
a polyphase filter with interpolated phases. On the nominal grid of a small exact ratio
(``fs_out / fs_in = up / down``, ``down <= GRID_DENOMINATOR``: 50 or 100 -> 125 Hz) the
positions are integers and the ``up`` distinct phases' rows are combined once, so a block is
one gather and one dot product per output (the same samples to 1e-12, tested). Each pushed block is one
vectorised gather and dot product per output sample (no per-sample Python loop).

Output sample ``m`` sits at input position ``p(m)`` (fractional input index,
:meth:`StreamResampler.out_index_to_in`): ``m * fs_in / fs_out`` at the nominal
rate (zero phase, like ``resample_poly``), so it can be computed once the input
has reached ``p(m) + ceil(T)``: the resampler adds a latency of about ``T``
input samples (10 for 100 -> 125 Hz). Before the first sample the input is taken
equal to the first sample (no start-up transient). With a fixed rate the output
does not depend on how the input is split into blocks.

Error bound (measured by ``tests/test_stream_resampler.py``, host x86-64): away
from the edges, against ``resample_poly`` for rational ratios (100, 25, 50, 1000,
300 -> 125, 125 -> 100 Hz) the difference is below 2e-4 of the signal's peak
amplitude; against exact band-limited resampling (FFT interpolation of a periodic
signal limited to 0.4 of the lower Nyquist) for irrational ratios (100.418, 117,
140.5, 29.97 -> 125 Hz) below 1e-3 of the peak (the Kaiser design's own
passband ripple and transition, which ``resample_poly`` shares). Print the
measured figures with ``.venv/bin/pytest -q -s tests/test_stream_resampler.py -k error``.

Rate tracking: :class:`RateEstimator` fits the sensor blocks' read times against
their sample numbers (least squares over a sliding span, lost samples counted in
the numbering, read-time outliers rejected) and gives the measured rate and the
input position that the clock says output ``m`` should sit at. The pipeline hands
both to :meth:`StreamResampler.steer` once the measured rate departs from the
nominal one by more than the estimate's own uncertainty (and 1e-4): the step
then changes smoothly (the position error decays with a ``tau_s`` time constant,
the step never moves more than 1 % from the measured rate; no phase jump). A
sensor keeping its nominal rate leaves the resampler on its exact nominal grid,
so the stream stays equal to the batch path (one push).

Per-sample flags (see :mod:`.stream`) are carried too: an output sample is
flagged with every flag of the input samples within one input sample of it.
"""
from __future__ import annotations

import bisect
import logging
import math

import numpy as np

from ppg_edge.dsp.rates import check_rate, rational_factor
from ppg_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 25.0, 1000.0  # sensor rates the device resamples
BETA = 5.0  # Kaiser window of resample_poly's default design
PHASES = 512  # table rows per input sample at the narrowest kernel (fs_in <= fs_out)
GRID_DENOMINATOR = 100  # nominal ratios up to this denominator run on the integer grid (one row per phase)
HISTORY = 512  # steering segments kept for out_index_to_in (about one per pipeline window)


def check_rate_for(sensor_fs: float, spec, what: str = "model") -> None:
    """Refuse a sensor rate that cannot carry a model's band-pass (Nyquist below its upper
    edge): resampling cannot bring back what sampling aliased."""
    band = getattr(spec, "band", None)
    hi = float(band[1]) if band else 0.0
    if not sensor_fs > 2 * hi:
        raise ConfigError(f"sensor rate {sensor_fs:g} Hz cannot carry the {what}'s {band[0]:g}-{hi:g} Hz "
                          f"band (needs more than {2 * hi:g} Hz); the model was built for {spec.fs:g} Hz "
                          f"samples: raise the sensor rate (board sample_rate_hz / averaging)")


def kernel(t, c: float, half_width: float, beta: float = BETA) -> np.ndarray:
    """``resample_poly``'s continuous low-pass at ``t`` input samples from the output:
    ``c * sinc(c t)`` (``c = min(1, fs_out / fs_in)``) under a Kaiser window of half-width
    ``half_width``; zero outside it."""
    t = np.asarray(t, dtype=np.float64)
    u = np.clip(1.0 - (t / half_width) ** 2, 0.0, None)
    w = np.i0(beta * np.sqrt(u)) / np.i0(beta)
    return np.where(np.abs(t) < half_width, c * np.sinc(c * t) * w, 0.0)


class StreamResampler:
    """Resample a stream from ``fs_in`` to ``fs_out`` block by block (see the module docstring).

    ``fs_in`` is the nominal input rate; :meth:`steer` moves the step to a measured one.
    """

    def __init__(self, fs_in: float, fs_out: float, *, tau_s: float = 2.0):
        self.fs_in = check_rate(fs_in, "resampler input rate")
        self.fs_out = check_rate(fs_out, "resampler output rate")
        if not MIN_RATE <= self.fs_in <= MAX_RATE:
            raise ConfigError(f"sensor rate {self.fs_in:g} Hz is outside the {MIN_RATE:g}-{MAX_RATE:g} Hz "
                              f"that the streaming resampler converts")
        if not tau_s > 0:
            raise ConfigError(f"resampler steering time constant must be positive, got {tau_s!r}")
        self.identity = self.fs_in == self.fs_out
        c = min(1.0, self.fs_out / self.fs_in)
        self.half_width = 10.0 / c  # input samples
        self.hi = int(math.ceil(self.half_width))  # taps past the output position
        self.lo = self.hi - 1  # taps before it
        self.taps = self.lo + self.hi + 1
        self.phases = max(64, int(math.ceil(PHASES * c)))
        # row k: weights of inputs floor(p) - lo + j for p = floor(p) + k / phases
        frac = np.arange(self.phases + 1)[:, None] / self.phases
        tab = kernel(frac + self.lo - np.arange(self.taps)[None, :], c, self.half_width)
        tab /= tab[:-1].sum() / self.phases  # unit DC gain on average over the phases, as resample_poly
        self._a = tab[:-1].copy()
        self._d = tab[1:] - tab[:-1]
        self._alpha = 1.0 / (tau_s * self.fs_out)  # position-error decay per output sample
        # position map p(m) = P0 + (m - M0) * r + D * (1 - g ** (m - M0)) per segment from M0 on
        r = self.fs_in / self.fs_out
        self._seg_m: list[int] = [0]
        self._seg: list[tuple[float, float, float, float]] = [(0.0, r, 0.0, self._alpha)]
        self._target = (0.0, r)  # (pos0, r) of the last steer: q(m) = pos0 + m * r
        # nominal grid of a rational ratio num/den (in samples per out sample): output m sits at
        # m * num / den, so its weights repeat every den outputs -- one table row per phase,
        # the two interpolated rows already combined, used until the first steer
        self._grid = None
        self._grid_rows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        try:  # fs_out / fs_in = up / down exactly, down <= GRID_DENOMINATOR: m sits at m * down / up
            den, num = rational_factor(self.fs_in, self.fs_out, GRID_DENOMINATOR, exact=True)
        except ConfigError:
            den = num = 0  # no small exact ratio (a measured rate): positions in floating point
        if not self.identity and den:
            u = (np.arange(den) * num % den) / den * self.phases
            row = np.minimum(u.astype(np.int64), self.phases - 1)
            self._grid = (num, den, self._a[row] + (u - row)[:, None] * self._d[row])
        self._x = np.zeros(0)
        self._f = np.zeros(0, dtype=np.uint8)
        self._x_start = 0  # absolute input index of _x[0]
        self._n_in = 0
        self._m = 0  # next output sample
        self._first: float | None = None

    # ------------------------------------------------------------ position map
    @property
    def _on_grid(self) -> bool:
        """Outputs sit on the nominal rational grid (a small exact ratio, never steered)."""
        return self._grid is not None and len(self._seg_m) == 1

    @property
    def step(self) -> float:
        """Input samples per output sample now (the measured rate over ``fs_out`` once steered)."""
        _, r, d, a = self._seg[-1]
        return r + a * d * (1 - a) ** (self._m - self._seg_m[-1])

    @property
    def latency_in(self) -> float:
        """Input samples the output waits for."""
        return 0.0 if self.identity else float(self.hi)

    def _pos(self, ms: np.ndarray, k: int | None = None) -> np.ndarray:
        """Input positions of outputs ``ms`` (int64, ascending) on segment ``k`` (default: each its own)."""
        if k is None:
            if len(self._seg_m) == 1 or ms.size == 0 or ms[0] >= self._seg_m[-1]:
                k = len(self._seg_m) - 1
            else:
                ks = np.clip(np.searchsorted(np.asarray(self._seg_m), ms, side="right") - 1, 0, None)
                out = np.empty(ms.size)
                for kk in np.unique(ks):
                    sel = ks == kk
                    out[sel] = self._pos(ms[sel], int(kk))
                return out
        m0 = self._seg_m[k]
        p0, r, d, a = self._seg[k]
        k_rel = ms - m0
        p = p0 + k_rel * r
        if d:
            p = p + d * (1.0 - (1.0 - a) ** np.maximum(k_rel, 0))
        return p

    def out_index_to_in(self, m):
        """Input position (fractional input index) of output sample ``m``: the map the resampler
        used (or, for outputs not made yet, will use unless steered again). Outputs older than the
        last ``HISTORY`` steering changes are mapped on the oldest segment kept."""
        if isinstance(m, (int, float, np.integer, np.floating)):  # one beat: no arrays
            if self.identity:
                return float(m)
            k = bisect.bisect_right(self._seg_m, m) - 1 if len(self._seg_m) > 1 else 0
            mi = math.floor(m)
            m0 = self._seg_m[max(k, 0)]
            p0, r, d, a = self._seg[max(k, 0)]
            rel = mi - m0
            p = p0 + rel * r + (d * (1.0 - (1.0 - a) ** max(rel, 0)) if d else 0.0)
            return p + (m - mi) * self.step if m != mi else p
        arr = np.asarray(m, dtype=np.float64)
        if self.identity:
            return arr.copy() if arr.ndim else float(arr)
        flat = np.atleast_1d(arr).ravel()
        order = np.argsort(flat, kind="stable")
        ms = flat[order]
        out = np.empty(ms.size)
        mi = np.floor(ms).astype(np.int64)
        out[order] = self._pos(mi) + (ms - mi) * self.step if ms.size else out
        return out.reshape(arr.shape) if arr.ndim else float(out[0])

    def inputs_needed(self, n_out: int) -> int:
        """Input samples (counted from the first) after which ``n_out`` outputs have been produced
        (on the current position map)."""
        if n_out <= 0:
            return 0
        if self.identity:
            return int(n_out)
        if self._on_grid:
            return (n_out - 1) * self._grid[0] // self._grid[1] + self.hi + 1
        p = float(self._pos(np.array([n_out - 1], dtype=np.int64))[0])
        return int(math.floor(p)) + self.hi + 1

    def steer(self, fs_in: float, pos0: float = 0.0) -> bool:
        """Follow a clock model from the next output on: output ``m`` should sit at input position
        ``pos0 + m * fs_in / fs_out`` (``fs_in`` the measured rate). The step moves there smoothly
        (no phase jump; see the module docstring). Returns whether the map changed (a model within
        1e-9 of the last one changes nothing, so a steady clock keeps the exact grid)."""
        fs_in = check_rate(fs_in, "measured input rate")
        r = fs_in / self.fs_out
        pos0 = float(pos0)
        old0, old_r = self._target
        m = self._m
        if abs(r - old_r) <= 1e-9 * old_r and abs((pos0 - old0) + m * (r - old_r)) <= 1e-6:
            return False
        p = float(self._pos(np.array([m], dtype=np.int64))[0])
        self._target = (pos0, r)
        d = pos0 + m * r - p
        # the pull's first step is a * d: a large error decays slower, so that the step never
        # moves more than 1 % from the measured rate (and the error still goes to zero)
        a = min(self._alpha, 0.01 * r / abs(d)) if d else self._alpha
        if self.identity:  # leave the fast path: keep the kernel's history of the input
            self.identity = False
            self._seg_m, self._seg = [m], [(float(self._n_in), 1.0, 0.0, self._alpha)]
        elif self._seg_m[-1] == m and len(self._seg_m) > 1:  # steered again before any output
            self._seg_m.pop()
            self._seg.pop()
        self._seg_m.append(m)
        self._seg.append((p, r, d, a))
        if len(self._seg_m) > HISTORY:
            del self._seg_m[0], self._seg[0]
        return True

    # ------------------------------------------------------------ samples
    def push(self, x, flags=None) -> tuple[np.ndarray, np.ndarray]:
        """Add input samples (finite); returns ``(output samples, output flags)`` now computable."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise DataError(f"resampler block must be 1-D, got shape {x.shape}")
        f = np.zeros(x.size, dtype=np.uint8) if flags is None else np.asarray(flags, dtype=np.uint8)
        if f.shape != x.shape:
            raise DataError(f"flags shape {f.shape} does not match block {x.shape}")
        if x.size and not np.isfinite(x).all():
            raise DataError("resampler input has NaN or infinite samples; hold or drop them first")
        if x.size == 0:
            return np.zeros(0), np.zeros(0, dtype=np.uint8)
        if self._first is None:
            self._first = float(x[0])
        if self.identity:  # keep the tail a later steer() needs
            self._n_in += x.size
            self._m = self._n_in
            keep = self.taps + 4
            self._x = np.concatenate([self._x, x])[-keep:]
            self._f = np.concatenate([self._f, f])[-keep:]
            self._x_start = self._n_in - self._x.size
            return x.copy(), f.copy()
        self._x = np.concatenate([self._x, x])
        self._f = np.concatenate([self._f, f])
        self._n_in += x.size
        # outputs m >= self._m with floor(p(m)) + hi <= last input are computable
        limit = self._n_in - 1 - self.hi
        if self._on_grid:
            return self._push_grid(limit)
        m0 = self._seg_m[-1]
        p0, r, d, _ = self._seg[-1]
        est = m0 + int(math.floor((limit - p0 - min(d, 0.0)) / r))  # p(m) >= p0 + (m - m0) r + min(d, 0)
        ms = np.arange(self._m, max(self._m, est + int(1 / r) + 3), dtype=np.int64)
        pos = self._pos(ms)
        ip = np.floor(pos)
        ok = ip <= limit
        if not ok.all():
            n_ok = int(np.argmin(ok))
            ms, pos, ip = ms[:n_ok], pos[:n_ok], ip[:n_ok]
        if ms.size == 0:
            self._trim()
            return np.zeros(0), np.zeros(0, dtype=np.uint8)
        i = ip.astype(np.int64)
        u = (pos - ip) * self.phases
        row = np.minimum(u.astype(np.int64), self.phases - 1)
        a = u - row
        xs = self._taps_of(i)
        y = np.einsum("ij,ij->i", self._a[row], xs) + a * np.einsum("ij,ij->i", self._d[row], xs)
        return y, self._finish(ms, i)

    def _push_grid(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`push` on the nominal grid: positions in integers, one weight row per phase.

        A block of outputs starting at phase ``m0 % den`` has the same weight rows and the same
        input offsets whatever its start (they are cached, a few entries: the pipeline pushes
        one window's worth at a time); the inputs under the kernel are rows of a strided view
        of the buffer (a row gather instead of an element gather). The products and their sum
        are those of the gathered form, bit for bit."""
        num, den, w = self._grid
        m0 = self._m
        m_end = ((limit + 1) * den - 1) // num  # the last m with floor(m * num / den) <= limit
        if m_end < m0:
            self._trim()
            return np.zeros(0), np.zeros(0, dtype=np.uint8)
        n = m_end + 1 - m0
        base = m0 * num // den - self.lo - self._x_start
        if base < 0:  # the kernel reaches before the first sample: held at it
            ms = np.arange(m0, m_end + 1, dtype=np.int64)
            i = ms * num // den
            return np.einsum("ij,ij->i", w[ms % den], self._taps_of(i)), self._finish(ms, i)
        key = (m0 % den, n)
        rows = self._grid_rows.get(key)
        if rows is None:
            if len(self._grid_rows) >= 8:
                self._grid_rows.clear()
            ms = np.arange(m0, m_end + 1, dtype=np.int64)
            rows = self._grid_rows[key] = (w[ms % den], ms * num // den - m0 * num // den)
        wk, off = rows
        y = np.einsum("ij,ij->i", wk, self._rows()[off + base])
        if self._f.any():
            ms = np.arange(m0, m_end + 1, dtype=np.int64)
            return y, self._finish(ms, ms * num // den)
        self._m = m_end + 1
        self._trim()
        return y, np.zeros(n, dtype=np.uint8)

    def _taps_of(self, i: np.ndarray) -> np.ndarray:
        """The input samples under the kernel of each output at integer position ``i``
        ``(outputs, taps)``; before the first sample the input is held at it."""
        base = i - self.lo - self._x_start
        if base[0] < 0:
            rel = base[:, None] + np.arange(self.taps)[None, :]
            return np.where(rel < -self._x_start, self._first, self._x[np.maximum(rel, 0)])
        return self._rows()[base]

    def _rows(self) -> np.ndarray:
        """The buffer as overlapping rows of ``taps`` samples (a strided view, no copy): row ``j``
        is the kernel's input for an output whose first tap is buffer sample ``j``, so a row
        gather gives what an element gather of the taps gives."""
        x = self._x
        step = x.strides[0]
        return np.ndarray((x.size - self.taps + 1, self.taps), dtype=x.dtype, buffer=x, strides=(step, step))

    def _finish(self, ms: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The output flags (inputs within one sample of each output), then advance and trim."""
        if self._f.any():
            near = i[:, None] + np.arange(-1, 3)[None, :]
            near_rel = np.clip(near - self._x_start, 0, self._f.size - 1)
            fo = np.bitwise_or.reduce(np.where((near >= 0) & (near < self._n_in), self._f[near_rel], 0)
                                      .astype(np.uint8), axis=1)
        else:
            fo = np.zeros(ms.size, dtype=np.uint8)
        self._m = int(ms[-1]) + 1
        self._trim()
        return fo

    def _trim(self) -> None:
        """Drop input no future output needs."""
        if self._on_grid:
            p = float(self._m * self._grid[0] // self._grid[1])
        else:
            p = float(self._pos(np.array([self._m], dtype=np.int64))[0])
        cut = int(math.floor(p)) - self.lo - 2 - self._x_start
        if cut > 0:
            self._x = self._x[cut:]
            self._f = self._f[cut:]
            self._x_start += cut


def replay_times(times, n: int, what: str = "replay") -> np.ndarray | None:
    """Per-sample clock times (s) of a replayed log as float64, checked: one per sample,
    finite, strictly increasing (``None`` passes)."""
    if times is None:
        return None
    t = np.asarray(times, dtype=np.float64)
    if t.shape != (n,):
        raise DataError(f"{what} times must hold one time per sample ({n}), got shape {t.shape}")
    if not np.isfinite(t).all():
        raise DataError(f"{what} times have a non-finite value at sample {int(np.argmax(~np.isfinite(t)))}")
    if n > 1 and not np.all(np.diff(t) > 0):
        raise DataError(f"{what} times do not increase at sample {int(np.argmax(np.diff(t) <= 0)) + 1}")
    return t


class RateEstimator:
    """The sensor's measured rate from its blocks' read times (see the module docstring).

    :meth:`add` takes each block's end (``first_index + len``: the sample number after its
    last sample, lost samples counted) and read time ``t``. The fit is least squares of ``t``
    against the sample number over the last ``span_s`` seconds of samples (running sums,
    cheap per block); a read more than ``max(4 sigma, outlier_s)`` off the fit is rejected
    (a late read, a clock step), and ``reset_after`` consecutive rejections re-anchor the
    time line (a clock step: the offset is taken out of the later reads).

    :attr:`fs` is the estimate (the nominal rate until ``min_points`` reads over
    ``min_span_s`` exist); :attr:`engaged` turns true, for good, once it departs from
    nominal by more than ``max(min_dev, 5 sigma)`` relative. :meth:`pos0` is the input
    position where output 0 sits on the clock (the time since sample 0 is carried along
    the span's fit as it slides), the ``pos0`` of :meth:`StreamResampler.steer`.
    """

    def __init__(self, fs_nominal: float, *, span_s: float = 30.0, min_points: int = 8,
                 min_span_s: float = 2.0, min_dev: float = 1e-4, outlier_s: float = 0.05,
                 reset_after: int = 3):
        self.nominal = check_rate(fs_nominal, "nominal sensor rate")
        self.span = max(1, int(round(span_s * self.nominal)))
        self.min_points, self.min_span = int(min_points), min_span_s * self.nominal
        self.min_dev, self.outlier_s, self.reset_after = float(min_dev), float(outlier_s), int(reset_after)
        self._pts: list[tuple[float, float]] = []  # (n, t - t_origin), ascending n
        self._start = 0  # first live point in _pts
        self._ref = (0.0, 0.0)  # sums are of (n - ref_n, t - ref_t)
        self._s = [0, 0.0, 0.0, 0.0, 0.0, 0.0]  # count, sn, st, snn, snt, stt
        self._t_origin: float | None = None
        self._offset = 0.0  # clock steps taken out of the reads
        self._rejects: list[float] = []
        self.rejected = 0
        self.engaged = False
        self.measured = False  # fs comes from a fit
        self.fs = self.nominal
        self.sigma = math.inf  # relative standard error of fs
        self.residual_s = 0.0  # read-time scatter about the fit (s)
        self._fit: tuple[float, float] | None = None  # t = a + b n (relative to the origin)
        # clock time of sample n_anchor after sample 0's: advanced along the fit as the span slides
        # (slope errors count over each span only, not back to sample 0)
        self._anchor = (0.0, 0.0)

    def _sums_add(self, n: float, t: float, sign: int) -> None:
        dn, dt = n - self._ref[0], t - self._ref[1]
        s = self._s
        s[0] += sign
        s[1] += sign * dn
        s[2] += sign * dt
        s[3] += sign * dn * dn
        s[4] += sign * dn * dt
        s[5] += sign * dt * dt

    def _refit(self) -> None:
        k, sn, st, snn, snt, stt = self._s
        if k < 2:
            return
        mn, mt = sn / k, st / k
        vnn, vnt, vtt = snn - k * mn * mn, snt - k * mn * mt, stt - k * mt * mt
        if not vnn > 0 or not vnt > 0:
            return
        b = vnt / vnn
        a = self._ref[1] + mt - b * (self._ref[0] + mn)
        self._fit = (a, b)
        res = max(vtt - b * vnt, 0.0) / max(k - 2, 1)
        self.residual_s = math.sqrt(res)
        self.sigma = math.sqrt(res / vnn) / b if k > 2 else math.inf
        span = self._pts[-1][0] - self._pts[self._start][0]
        if k >= self.min_points and span >= self.min_span:
            self.fs = 1.0 / b
            self.measured = True
            if abs(self.fs / self.nominal - 1) > max(self.min_dev, 5 * self.sigma) and not self.engaged:
                self.engaged = True
                log.info("sensor clock: %.4f Hz measured (nominal %g Hz): resampling at the measured rate",
                         self.fs, self.nominal)

    def add(self, n_end: int, t) -> None:
        """Add one block: ``n_end`` samples (read or lost) came before read time ``t``."""
        if t is None:
            return
        t = float(t)
        if not math.isfinite(t):
            self.rejected += 1
            return
        if self._t_origin is None:
            self._t_origin = t
        n, tr = float(n_end), t - self._t_origin - self._offset
        if self._pts and n <= self._pts[-1][0]:
            return
        if self._fit is not None and self._s[0] >= self.min_points:
            a, b = self._fit
            off = tr - (a + b * n)
            if abs(off) > max(4 * self.residual_s, self.outlier_s):
                self.rejected += 1
                self._rejects.append(off)
                if len(self._rejects) < self.reset_after:
                    return
                step = sorted(self._rejects)[len(self._rejects) // 2]
                log.warning("sensor read times stepped by %.3f s; the rate estimate follows the new time line", step)
                self._offset += step
                tr -= step
            self._rejects.clear()
        self._pts.append((n, tr))
        if self._s[0] == 0:
            self._ref = (n, tr)
        self._sums_add(n, tr, +1)
        while n - self._pts[self._start][0] > self.span:
            self._sums_add(*self._pts[self._start], -1)
            self._start += 1
            n_a, t_a = self._anchor
            n_s = self._pts[self._start][0]
            b = self._fit[1] if self._fit is not None else 1.0 / self.nominal
            self._anchor = (n_s, t_a + b * (n_s - n_a))
        if self._start > 2 * self._s[0] + 16:  # re-reference the sums on the live points
            self._pts = self._pts[self._start:]
            self._start = 0
            self._ref = self._pts[0]
            self._s = [0, 0.0, 0.0, 0.0, 0.0, 0.0]
            for p in self._pts:
                self._sums_add(*p, +1)
        self._refit()

    def pos0(self) -> float:
        """Input position of output 0 on the current clock model: output ``m`` at ``m / fs_out`` s
        after sample 0 sits at ``pos0 + m * fs / fs_out`` (0 while the span reaches back to the
        first read; then the anchor's drift along the span's slope)."""
        n_a, t_a = self._anchor
        if self._fit is None or n_a == 0.0:
            return 0.0
        return n_a - t_a / self._fit[1]
