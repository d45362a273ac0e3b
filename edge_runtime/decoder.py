"""Stream peak decoder: overlapping window outputs -> one stream of beats, HR and HRV.

Overlapping windows are stitched like the offline evaluation
(:func:`~.peaks_decode.stitch_windows`, ``stitch="mean"``, the default): each
sample's probability is the mean over the windows covering it, so a sample is
*final* once the last window starting at or before it has arrived (window
start + hop). With ``stitch="center"`` each sample takes its probability from
the window in which it is most central instead: with window ``W`` and hop ``H``,
window ``k`` (start ``s``) owns samples ``[s + (W - H) // 2, s + (W - H) // 2 +
H)``; the first window also owns its beginning; a sample is final once the
window owning it has arrived. The decoder's ``stitch`` setting (manifest
``decoder``) chooses. The final
part of the stream is decoded with :func:`~.peaks_decode.decode_peaks`
(threshold, optional snap to the filtered PPG, 200 ms merge, 0.3 s refractory;
settings: the manifest's ``decoder``, a :class:`~.peaks_decode.DecoderSpec`) over a slice that reaches back
``context_s`` before the first undecided sample; only beats at or after that
sample and before a guard band at the end of the final part are emitted, and a
beat that one :class:`~.peaks_decode.RRGate` over the whole stream refuses (within the
refractory period of the last emitted beat, or the RR-relative one of ``rr_refractory``)
is dropped, as the offline decode drops it. So every beat is emitted once, with its
absolute sample index and time.

When the decoder settings give ``raw_axis_shift_samples`` (the training's
measured lag of the filtered PPG maximum behind the reference peak), each beat
found on the filtered axis is moved back by it and snapped onto the raw (model-rate,
unfiltered) PPG with :func:`~.peaks_decode.snap_to_raw` -- within ``raw_snap_radius_s``
(the spec's default: 65 ms) of the maximum of the raw PPG smoothed over ``raw_smooth_s``, then within
``raw_refine_s`` of the raw maximum -- the same function and settings as the offline
evaluation (the model's ``raw_axis``), so beat times lie on the raw PPG's time axis; without
it beats stay on the filtered axis. Beats wait for the snap's look-ahead.

Suppressed windows (bad quality) veto every sample they cover (probability 0,
whatever other windows say): no beats there, and the RR interval across a
suppressed stretch is not used for HR/HRV.

HR and HRV use the RR intervals of the last ``hrv_window_s`` seconds: HR =
60 / mean RR, SDNN = standard deviation of RR, RMSSD = root mean square of
successive RR differences (Task Force of the ESC and NASPE, Circulation 1996).
numpy only.
"""
from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass

import numpy as np

from ppg_edge.dsp.rates import check_rate
from ppg_edge.dsp.stats import mean
from ppg_edge.errors import ConfigError, DataError

from . import peaks_decode
from .peaks_decode import DecoderSpec

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Beat:
    index: int  # absolute sample index at the decoder's rate
    t: float  # seconds since the stream's first sample
    prob: float
    rr_s: float | None  # interval from the previous beat (None after a gap or at the start)


def hrv_metrics(rr_s) -> dict:
    """``{"hr_bpm", "sdnn_ms", "rmssd_ms", "n_rr"}`` of a series of RR intervals (s)."""
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.ndim != 1 or not np.isfinite(rr).all() or (rr <= 0).any():
        raise DataError("RR intervals must be a 1-D series of positive, finite seconds")
    return _hrv(rr)


def _hrv(rr: np.ndarray) -> dict:
    """:func:`hrv_metrics` of intervals known to be positive and finite (the decoder's own)."""
    n = rr.size
    out = {"hr_bpm": None, "sdnn_ms": None, "rmssd_ms": None, "n_rr": int(n)}
    if n:  # a few dozen values a window: plain reductions, not numpy's mean/std wrappers
        mu = mean(rr)
        out["hr_bpm"] = 60.0 / mu
    if n >= 2:
        d = rr - mu
        out["sdnn_ms"] = math.sqrt(float(d @ d) / (n - 1)) * 1000
        dd = rr[1:] - rr[:-1]
        out["rmssd_ms"] = math.sqrt(float(dd @ dd) / (n - 1)) * 1000
    return out


class StreamDecoder:
    """Decode per-window peak probabilities into beats (see the module docstring)."""

    def __init__(self, fs: float, window: int, hop: int, decoder: DecoderSpec | dict | None = None,
                 context_s: float = 1.0, hrv_window_s: float = 60.0, max_rr_s: float = peaks_decode.MAX_RR_S):
        fs = check_rate(fs, "decoder sampling rate", number=True)
        if not (0 < hop <= window):
            raise ConfigError(f"decoder needs 0 < hop <= window, got hop={hop}, window={window}")
        d = decoder if isinstance(decoder, DecoderSpec) else DecoderSpec.from_dict(decoder)
        self.spec = d
        self.fs = float(fs)
        self.window, self.hop = int(window), int(hop)
        self.threshold = d.threshold
        self.snap = d.snap
        self.snap_radius_s = d.snap_radius_s
        self.merge_s = d.merge_s
        self.refractory_s = d.refractory_s
        self.stitch = d.stitch
        self.raw_shift = d.raw_axis_shift_samples
        self.raw_snap = d.raw_snap()
        self.raw_lookahead = peaks_decode.raw_snap_lookahead(self.fs, *self.raw_snap)
        self.context = int(round(context_s * fs))
        self.guard = int(round(max(self.merge_s, self.refractory_s, self.snap_radius_s) * fs)) + 1
        if self.raw_shift is not None:
            # a beat is decided only once the raw samples its snap reads are final
            self.guard = max(self.guard, self.raw_lookahead - self.raw_shift + 1)
        self.hrv_window_s = float(hrv_window_s)
        self.max_rr_s = float(max_rr_s)
        self._lead = (self.window - self.hop) // 2
        # rows of one buffer (one concatenation per window, not four): stitched probabilities
        # (mean: the sum over covering windows), windows covering each sample (mean stitching),
        # the filtered and the raw PPG; views _p, _cnt, _sig, _raw
        self._set_buf(np.zeros((4, 0)))
        self._last_raw: int | None = None
        self._valid = np.zeros(0, dtype=bool)
        self._start = 0  # absolute index of _p[0]
        self._final = 0  # samples [0, _final) are final
        self._decoded = 0  # beats before this index are decided
        self._expected_start = 0
        self._end = 0
        self.beats: list[Beat] = []
        self._rr: collections.deque[tuple[float, float]] = collections.deque()  # (t, rr_s) in the HRV window
        # the fixed and the RR-relative refractory over the whole stream (as the offline decode)
        self._gate = peaks_decode.RRGate(self.fs, self.refractory_s, d.rr_refractory, self.max_rr_s)

    def _set_buf(self, buf: np.ndarray) -> None:
        self._buf = buf
        self._p, self._cnt, self._sig, self._raw = buf

    @property
    def _last_beat(self) -> int | None:
        return self._gate.last

    @property
    def refused(self) -> int:
        """Beats the refractory gate refused (too close to a better-scored one)."""
        return self._gate.refused

    def _owned(self, start: int) -> tuple[int, int]:
        """``(first sample written, end of the final part)`` for the window at ``start``."""
        if self.stitch == "mean":
            return start, start + self.hop
        lo = 0 if start == 0 else start + self._lead
        return lo, start + self._lead + self.hop

    def push(self, start: int, probs=None, filtered=None, raw=None, lead=None) -> list[Beat]:
        """Add the window starting at ``start`` (``probs=None``: suppressed); returns new beats.

        ``filtered``/``raw``: the window's band-passed and raw PPG (for the snaps). ``lead``:
        probabilities for the samples just before ``start`` (at most ``guard`` of them, so not
        yet decided), raised to at least these values: what a detector that saw the previous
        window's tail found there (the classic path when windows do not overlap)."""
        if start != self._expected_start:
            raise DataError(f"decoder expected the window at {self._expected_start}, got {start}")
        lp = None  # checked before anything changes
        if lead is not None and probs is not None and len(lead):
            lp = np.minimum(np.maximum(np.asarray(lead, dtype=np.float64), 0.0), 1.0)  # no np.clip wrapper
            if lp.ndim != 1 or lp.size > self.guard:
                raise DataError(f"lead probabilities: {lp.size} samples, at most the decoder's guard ({self.guard})")
        self._expected_start = start + self.hop
        lo, hi = self._owned(start)
        end = start + self.window  # [hi, end) is provisional until the next window comes
        n_new = end - (self._start + self._p.size)
        if n_new > 0:
            self._set_buf(np.concatenate((self._buf, np.zeros((4, n_new))), axis=1))
            # a sample is valid until a suppressed window covers it
            self._valid = np.concatenate((self._valid, np.ones(n_new, dtype=bool)))
        a, e = lo - self._start, end - self._start
        if probs is not None:
            p = np.asarray(probs, dtype=np.float64)
            if p.shape != (self.window,):
                raise DataError(f"window probabilities shape {p.shape}, expected ({self.window},)")
            if not math.isfinite(float(p.sum())):  # checked here once, not in every decode of it
                raise DataError(f"window probabilities at {start} contain NaN/inf")
            p = np.minimum(np.maximum(p, 0.0), 1.0)
            if self.stitch == "mean":
                self._p[a:e] += p[lo - start:]
                self._cnt[a:e] += 1
            else:  # center: the newest window owns these samples, good or bad
                self._p[a:e] = p[lo - start:]
                self._cnt[a:e] = 1
                self._valid[a:e] = True
            if filtered is not None:
                f = np.asarray(filtered, dtype=np.float64)[lo - start:]
                if self.snap and not math.isfinite(float(f.sum())):
                    raise DataError(f"filtered PPG of the window at {start} contains NaN/inf")
                self._sig[a:e] = f
            if raw is not None:
                self._raw[a:e] = np.asarray(raw, dtype=np.float64)[lo - start:]
        else:
            if self.stitch == "center":
                self._p[a:e] = 0.0
                self._cnt[a:e] = 0
            self._valid[a:e] = False
        if lp is not None:
            b0 = start - lp.size - self._start
            if b0 >= 0 and start - lp.size >= self._decoded:
                seg = slice(b0, b0 + lp.size)
                # the stitched mean p / cnt rises to the lead where a window covers the sample
                self._p[seg] = np.maximum(self._p[seg], lp * self._cnt[seg])
        self._final = hi
        self._end = end
        return self._decode(self._final - self.guard)

    def flush(self) -> list[Beat]:
        """End of input: the last window's tail becomes final; decide the rest."""
        self._final = max(self._final, self._end)
        return self._decode(self._final, end=True)

    def _decode(self, until: int, end: bool = False) -> list[Beat]:
        if until <= self._decoded and not (end and self._gate.pending is not None):
            return []
        lo = max(self._start, self._decoded - self.context)
        a, b = lo - self._start, self._final - self._start
        cnt = self._cnt[a:b]
        p = np.divide(self._p[a:b], cnt, out=np.zeros(b - a), where=(cnt > 0) & self._valid[a:b])
        sig = self._sig[a:b] if self.snap else None
        # the windows were checked as they came (push): no checks of the stitched slice again
        idx = peaks_decode.decode_checked(p, self.fs, self.threshold, sig, self.snap_radius_s, self.merge_s,
                                          self.refractory_s) + lo
        kept: list[tuple[int, float | None, float]] = []  # (index, rr_s, prob) on the filtered axis
        final = []
        for i in idx.tolist():
            if i < self._decoded or i >= until:
                continue
            last = self._gate.last
            valid = last is None or bool(self._valid[last - self._start:i - self._start + 1].all())
            # the one gate over the whole stream: of two beats too close, the better one stays
            final += self._gate.offer(i, (sig if sig is not None else p)[i - lo], float(p[i - lo]), valid)
        final += self._gate.flush() if end else self._gate.settle(until)
        for i, d, prob in final:
            rr = None if d is None or d / self.fs > self.max_rr_s else d / self.fs
            kept.append((i, rr, prob))
        new = []
        if self.raw_shift is None:
            new = [Beat(index=i, t=i / self.fs, prob=prob, rr_s=rr) for i, rr, prob in kept]
        elif kept:
            for i, (_, rr, prob) in zip(self._to_raw([k[0] for k in kept]), kept):
                if self._last_raw is not None and i <= self._last_raw:
                    continue  # snapped onto the previous beat (the offline path de-duplicates too)
                if self._last_raw is not None and rr is not None:
                    rr = (i - self._last_raw) / self.fs
                self._last_raw = i
                new.append(Beat(index=i, t=i / self.fs, prob=prob, rr_s=rr))
        self._decoded = max(self._decoded, until)
        self.beats.extend(new)
        self._rr.extend((b.t, b.rr_s) for b in new if b.rr_s is not None)
        # keep context for the next decode and the last beat for RR/gap checks
        keep = min(self._decoded - self.context,
                   self._last_beat if self._last_beat is not None else self._decoded)
        cut = keep - self._start
        if cut > 0:
            self._set_buf(self._buf[:, cut:])
            self._valid = self._valid[cut:]
            self._start += cut
        if len(self.beats) > 10000:
            self.beats = self.beats[-5000:]
        return new

    def _to_raw(self, beats: list[int]) -> list[int]:
        """Filtered-axis beats moved back by the shift and snapped onto the raw PPG as
        :func:`~.peaks_decode.snap_positions` does (the offline evaluation's mapping), all in one
        call on a slice reaching each beat's look-ahead on both sides (the snap reads only
        that far, so one slice gives what a slice per beat gives); unchecked, as the slice and
        the positions inside it are the decoder's own."""
        first, last = self._start, self._final - 1
        pos = [min(max(b - self.raw_shift, first), last) for b in beats]  # a few beats: no numpy
        lo = max(first, pos[0] - self.raw_lookahead)
        hi = min(self._final, pos[-1] + self.raw_lookahead + 1)
        seg = self._raw[lo - first:hi - first]
        if seg.size == 0:
            return pos
        return [lo + p for p in peaks_decode.snap_checked([p - lo for p in pos], seg, self.fs, *self.raw_snap)]

    def metrics(self) -> dict:
        """HR and HRV over the RR intervals of beats in the last ``hrv_window_s`` seconds
        (before the last beat)."""
        if not self.beats:
            return hrv_metrics([])
        start = self.beats[-1].t - self.hrv_window_s
        rr = self._rr
        while rr and rr[0][0] < start:  # the window only moves forward: drop what left it
            rr.popleft()
        return _hrv(np.array([r for _, r in rr], dtype=np.float64))
