"""Turn per-sample peak probabilities into peak indices (numpy only; runs on the device).

Post-processing of Georgieva-Tsaneva (2025), section 2.3 step 8: a threshold chosen on
validation data, each candidate checked against a local maximum of the filtered PPG,
candidates within 200 ms merged keeping the highest, and a 0.3 s refractory period
(the paper's minimum beat interval, 200 bpm).

The decoder's parameters are one :class:`DecoderSpec` (its defaults are the only ones in
the project): the model's manifest stores it (``decoder``), the stream decoder, the offline
evaluation of a trained model and the converter read it.

This module must not import TensorFlow or scipy.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppg_edge.dsp.rates import check_rate
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.metrics.peaks import f1_from_counts, match_peaks

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = tuple(np.round(np.arange(0.10, 0.91, 0.05), 2))

STITCH_MODES = ("mean", "center")
RAW_AXIS_MAPPINGS = ("snap", "shift")


@dataclass(frozen=True)
class DecoderSpec:
    """How per-sample peak probabilities become beats; stored as a manifest's ``decoder``.

    ``threshold``: the decision threshold (chosen on validation subjects); ``snap``: move
    each candidate to the local maximum of the band-passed PPG within ``snap_radius_s``
    (``snap_signal`` names that signal); candidates within ``merge_s`` merge and beats
    closer than ``refractory_s`` (0.3 s, 200 bpm) keep the larger; ``stitch``: how
    overlapping windows combine in the stream decoder (:mod:`.decoder`); ``rr_refractory``:
    a beat closer to the previous one than this fraction of the median of the recent beat
    intervals is dropped (:class:`RRGate`; 0: only the fixed ``refractory_s``).

    The raw-axis mapping (:func:`to_raw_axis`, :func:`snap_to_raw`): detections move back by
    ``raw_axis_shift_samples`` (the training's measured lag of the filtered PPG maximum;
    ``None``: beats stay on the filtered axis) and snap to the maximum of the raw PPG,
    smoothed over ``raw_smooth_s``, within ``raw_snap_radius_s`` (0: shift only), then to
    the raw maximum within ``raw_refine_s``. 65 ms is the radius training validated when a
    model records no choice of its own.
    """

    threshold: float = 0.5
    snap: bool = False
    snap_radius_s: float = 0.05
    merge_s: float = 0.2
    refractory_s: float = 0.3
    rr_refractory: float = 0.0
    stitch: str = "mean"
    raw_axis_shift_samples: int | None = None
    raw_snap_radius_s: float = 0.065
    raw_smooth_s: float = 0.0
    raw_refine_s: float = 0.0
    snap_signal: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"decoder threshold must be in [0, 1], got {self.threshold}")
        if self.stitch not in STITCH_MODES:
            raise ConfigError(f"decoder stitch {self.stitch!r}; choose one of {', '.join(STITCH_MODES)}")
        if min(self.snap_radius_s, self.merge_s, self.refractory_s) < 0:
            raise ConfigError("decoder snap_radius_s, merge_s and refractory_s must be >= 0")
        if not 0.0 <= self.rr_refractory < 1.0:
            raise ConfigError(f"decoder rr_refractory is a fraction of the beat interval in [0, 1), "
                              f"got {self.rr_refractory}")
        if min(self.raw_snap_radius_s, self.raw_smooth_s, self.raw_refine_s) < 0:
            raise ConfigError("decoder raw_snap_radius_s, raw_smooth_s and raw_refine_s must be >= 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, training: Mapping[str, Any] | None = None) -> DecoderSpec:
        """The spec of a manifest's ``decoder`` dict (missing keys take the defaults).

        Reads the layouts written so far: ``snap`` is on when the dict says so or names the
        signal to snap to (``snap_signal``, or ``signal`` as the training metadata's
        ``decode`` block does); manifests sealed before the spec held the raw-axis shift
        carry it in ``training.raw_axis_shift_samples`` (``training``: that block).
        Other keys (``threshold_source`` ...) are provenance and ignored."""
        d = dict(d or {})
        if not isinstance(d.get("threshold", 0.5), (int, float)):
            raise ConfigError(f"decoder threshold must be a number, got {d.get('threshold')!r}")
        signal = d.get("snap_signal", d.get("signal"))
        shift = d.get("raw_axis_shift_samples")
        if shift is None and training:
            shift = training.get("raw_axis_shift_samples")
        try:
            return cls(
                threshold=float(d.get("threshold", cls.threshold)),
                snap=bool(d.get("snap", str(signal or "").startswith("filtered"))),
                snap_radius_s=float(d.get("snap_radius_s", cls.snap_radius_s)),
                merge_s=float(d.get("merge_s", cls.merge_s)),
                refractory_s=float(d.get("refractory_s", cls.refractory_s)),
                rr_refractory=float(d.get("rr_refractory", cls.rr_refractory)),
                stitch=str(d.get("stitch", cls.stitch)),
                raw_axis_shift_samples=None if shift is None else int(shift),
                raw_snap_radius_s=float(d.get("raw_snap_radius_s", cls.raw_snap_radius_s)),
                raw_smooth_s=float(d.get("raw_smooth_s", cls.raw_smooth_s)),
                raw_refine_s=float(d.get("raw_refine_s", cls.raw_refine_s)),
                snap_signal=None if signal is None else str(signal),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad decoder settings {d}: {exc}") from None

    @classmethod
    def from_model_meta(cls, meta: Mapping[str, Any], threshold: float | None = None) -> DecoderSpec:
        """The spec of a trained peak model's JSON (``ppg-edge train peaks``): its validation
        ``threshold`` (``threshold`` overrides it), its ``decode`` block and its ``raw_axis``
        mapping (``"shift"``: no raw snap; absent: the default snap)."""
        dec = dict(meta.get("decode") or {})
        raw_axis = dict(meta.get("raw_axis") or {})
        mapping = raw_axis.get("mapping", "snap")
        if mapping not in RAW_AXIS_MAPPINGS:
            raise ConfigError(f"raw_axis.mapping {mapping!r}; valid: {list(RAW_AXIS_MAPPINGS)}")
        d = {k: dec[k] for k in ("snap_radius_s", "merge_s", "refractory_s", "rr_refractory", "signal", "snap")
             if k in dec}
        d["threshold"] = meta.get("threshold", cls.threshold) if threshold is None else threshold
        d["raw_axis_shift_samples"] = meta.get("raw_axis_shift_samples")
        if mapping == "shift":
            d["raw_snap_radius_s"] = 0.0
        else:
            d.update({f"raw_{k}": raw_axis[k] for k in ("smooth_s", "refine_s") if k in raw_axis})
            if "radius_s" in raw_axis:
                d["raw_snap_radius_s"] = raw_axis["radius_s"]
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        """The manifest's ``decoder`` (JSON types; ``None`` fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def decode_kwargs(self) -> dict:
        """The keyword arguments of :func:`decode_peaks` besides ``signal``."""
        return {"threshold": self.threshold, "snap_radius_s": self.snap_radius_s,
                "merge_s": self.merge_s, "refractory_s": self.refractory_s,
                "rr_refractory": self.rr_refractory}

    def raw_snap(self) -> tuple[float, float, float]:
        """``(radius_s, smooth_s, refine_s)`` of :func:`snap_to_raw`."""
        return self.raw_snap_radius_s, self.raw_smooth_s, self.raw_refine_s


DEFAULT_DECODER = DecoderSpec()

# What the device runtime lays over every peak model's decoder (the streaming pipeline and its
# batch twin, :func:`~.batch.offline_peaks`): the RR-relative refractory at half the recent beat
# interval. Chosen on the validation subjects with `ppg-edge bench hop --model
# models/device/peaks-Type30-float32.tflite --hop 250 --gate network auto classic --rr-refractory
# 0 0.4 0.5 0.6 --part val --snr 5 0 --board rpi-zero-2w` (docs/results/rr-refractory-val.md) as
# the smallest fraction within 0.001 pooled F1 of the best in every condition and path; the
# models' own evaluation (``ppg-edge evaluate peaks``) keeps the paper's decoder.
RUNTIME_DECODER: Mapping[str, Any] = {"rr_refractory": 0.5}


def runtime_decoder(decoder: DecoderSpec | Mapping[str, Any] | None,
                    overrides: Mapping[str, Any] | None = None) -> DecoderSpec:
    """The device runtime's decoder: ``decoder`` (a model's) with :data:`RUNTIME_DECODER`, then
    ``overrides``, laid over it; an override naming no :class:`DecoderSpec` field is refused."""
    unknown = set(overrides or {}) - {f.name for f in dataclasses.fields(DecoderSpec)}
    if unknown:
        raise ConfigError(f"unknown decoder setting(s) {sorted(unknown)}")
    base = decoder if isinstance(decoder, DecoderSpec) else DecoderSpec.from_dict(decoder)
    return DecoderSpec.from_dict({**base.to_dict(), **RUNTIME_DECODER, **(overrides or {})})


def _check_probs(probs) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"peak probabilities must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"peak probabilities contain {int(np.sum(~np.isfinite(arr)))} NaN/inf")
    if arr.size and (arr.min() < -1e-6 or arr.max() > 1 + 1e-6):
        raise DataError(
            f"peak probabilities must lie in [0, 1], got {arr.min():.3g}..{arr.max():.3g}"
        )
    return arr


def _check_signal(signal, n: int) -> np.ndarray:
    arr = np.asarray(signal, dtype=np.float64)
    if arr.shape != (n,):
        raise DataError(f"PPG signal shape {arr.shape} does not match probabilities ({n},)")
    if not np.isfinite(arr).all():
        raise DataError(f"PPG signal contains {int(np.sum(~np.isfinite(arr)))} NaN/inf")
    return arr


def _check_fs(fs: float) -> float:
    return check_rate(fs, number=True)


def threshold_candidates(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the highest probability in each run of samples at or above ``threshold``.

    When several samples share the run's maximum (a plateau), the middle one is taken.
    """
    return np.array(_threshold_runs(probs, threshold), dtype=np.int64)


def _threshold_runs(probs: np.ndarray, threshold: float) -> list[int]:
    """:func:`threshold_candidates` as a list. The runs in Python: a window holds a few dozen
    samples above the threshold, and a dozen numpy calls on arrays that small cost more than
    the loop (a record's few thousand take milliseconds)."""
    idx = (probs >= threshold).nonzero()[0]
    if idx.size == 0:
        return []
    ids, vals = idx.tolist(), probs[idx].tolist()
    out = []
    first = 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or ids[k] - ids[k - 1] > 1:  # the run ids[first:k] ends
            run = vals[first:k]
            top = max(run)
            hits = [ids[first + j] for j, v in enumerate(run) if v == top]
            out.append(hits[len(hits) // 2])
            first = k
    return out


_OFFSETS: dict[int, np.ndarray] = {}  # radius -> row vector -r..r (a decoder asks for a few radii)


def _window_argmax(signal: np.ndarray, centres, radius: int):
    """Index of the first maximum of ``signal[max(0, c - r):c + r + 1]`` for each centre ``c``
    (inside the signal). An array of centres: one gather, no loop over them; positions
    outside the signal read its edge sample (``take(mode="clip")``), which comes before the
    real edge sample on the left and after it on the right, so the first maximum, clipped
    back into range, is the one the clipped range gives. A list (the stream decoder's few
    beats of one slice): a list, one ``argmax`` of the clipped range each, which costs a
    fraction of the gather's dozen numpy calls."""
    if isinstance(centres, list):
        out = []
        for c in centres:
            lo = c - radius if c > radius else 0
            out.append(lo + int(signal[lo:c + radius + 1].argmax()))
        return out
    off = _OFFSETS.get(radius)
    if off is None:
        off = _OFFSETS.setdefault(radius, np.arange(-radius, radius + 1)[None, :])
    win = signal.take(centres[:, None] + off, mode="clip")
    # np.minimum/np.maximum: np.clip's wrapper checks the bounds' dtype limits in Python
    return np.minimum(np.maximum(centres - radius + win.argmax(axis=1), 0), signal.size - 1)


def snap_to_local_max(signal: np.ndarray, candidates: np.ndarray, radius: int) -> np.ndarray:
    """Move each candidate to the signal's maximum within +-radius samples.

    Returns -1 for a candidate whose maximum lies on the border of its search range
    (the signal still rises beyond it, so it is a slope, not a local maximum), unless
    that border is the edge of the signal itself.
    """
    return np.array(_local_max(signal, np.asarray(candidates, dtype=np.int64).tolist(), radius), dtype=np.int64)


def _local_max(signal: np.ndarray, candidates: list[int], radius: int) -> list[int]:
    """:func:`snap_to_local_max` on a list: a loop over the candidates (a few per decoded slice;
    a record's few thousand take milliseconds), one argmax each instead of some twenty numpy
    calls on tiny arrays."""
    n = signal.size
    out = []
    for c in candidates:
        lo, hi = max(0, c - radius), min(n, c + radius + 1)
        i = lo + int(signal[lo:hi].argmax())
        v = signal[i]
        ok = ((i > lo or lo == 0) and (i < hi - 1 or hi == n)
              and (i == 0 or v >= signal[i - 1]) and (i == n - 1 or v >= signal[i + 1]))
        out.append(i if ok else -1)
    return out


def centred_moving_average(x: np.ndarray, fs: float, width_s: float) -> np.ndarray:
    """Centred moving average over ``width_s`` (rounded to an odd number of samples, so no
    delay); ``x`` itself when that is under 2 samples. Edges are padded with the edge value."""
    w = int(round(float(width_s) * fs))
    if w < 2:
        return np.asarray(x, dtype=np.float64)
    w += 1 - w % 2
    x = np.asarray(x, dtype=np.float64)
    h = w // 2
    xp = np.concatenate((np.full(h, x[0]), x, np.full(h, x[-1])))  # edge padding
    return np.convolve(xp, _box(w), mode="valid")


@functools.lru_cache(maxsize=16)
def _box(w: int) -> np.ndarray:
    """The moving average's ``w`` equal taps (read-only; a decoder asks for one or two widths)."""
    k = np.ones(w) / w
    k.flags.writeable = False
    return k


def raw_snap_lookahead(fs: float, radius_s: float, smooth_s: float = 0.0, refine_s: float = 0.0) -> int:
    """Samples after a beat that :func:`snap_to_raw` reads: what a streaming decoder must wait for."""
    w = int(round(float(smooth_s) * fs))
    half = (w + 1 - w % 2) // 2 if w >= 2 else 0
    return int(round(radius_s * fs)) + half + (int(round(refine_s * fs)) if refine_s > 0 else 0)


def snap_positions(positions, raw, fs: float, radius_s: float, smooth_s: float = 0.0,
                   refine_s: float = 0.0) -> np.ndarray:
    """:func:`snap_to_raw` for each position, in the given order and not de-duplicated
    (the streaming decoder snaps a decode's beats in one call and keeps its own order)."""
    x = np.asarray(raw, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.int64)
    if x.ndim != 1 or x.size == 0:
        raise DataError(f"raw PPG must be a non-empty 1-D array, got shape {x.shape}")
    if pos.size and (pos.min() < 0 or pos.max() >= x.size):
        raise DataError(f"positions outside the raw PPG (0..{x.size - 1})")
    return snap_checked(pos, x, _check_fs(fs), radius_s, smooth_s, refine_s)


def snap_checked(pos, x: np.ndarray, fs: float, radius_s: float, smooth_s: float = 0.0,
                 refine_s: float = 0.0):
    """:func:`snap_positions` on inputs its checks have passed (int64 positions inside the
    float64 1-D ``x``): the stream decoder makes its positions inside its slice itself, and
    gives them as a list (a list comes back: see :func:`_window_argmax`)."""
    if len(pos) == 0:
        return pos

    def snap(sig, p, radius):
        r = int(round(radius * fs))
        if r <= 0:  # radius 0: no snap (the "shift only" mapping)
            return p
        return _window_argmax(sig, p, r)

    pos = snap(centred_moving_average(x, fs, smooth_s), pos, radius_s)
    if smooth_s > 0 and refine_s > 0:
        pos = snap(x, pos, refine_s)
    return pos


def snap_to_raw(positions, raw, fs: float, radius_s: float, smooth_s: float = 0.0,
                refine_s: float = 0.0) -> np.ndarray:
    """Beats moved onto the raw PPG's own peaks: the one raw-axis mapping of the project.

    Each position moves to the maximum of ``raw`` smoothed by a centred moving average over
    ``smooth_s`` (none when 0) within ``radius_s`` (no move when that is under half a sample); when smoothing and ``refine_s`` > 0 it then
    moves to the maximum of ``raw`` itself within ``refine_s`` (the smoothing displaces the
    maximum of an asymmetric pulse by a few ms). Used by the offline detector
    (``ppg_edge.evaluate.peak_model``) and by the streaming decoder on a slice of the raw
    stream that reaches :func:`raw_snap_lookahead` samples past each beat. Positions are
    indices into ``raw``; the result is sorted and de-duplicated.
    """
    return np.unique(snap_positions(positions, raw, fs, radius_s, smooth_s, refine_s))


def to_raw_axis(detected, n: int, shift: int, raw=None, fs: float = 125.0,
                radius_s: float = DEFAULT_DECODER.raw_snap_radius_s) -> np.ndarray:
    """Detections on the filtered axis moved onto the raw PPG's time axis.

    Each detection moves back by the measured median ``shift`` (samples); when ``raw``
    (the raw PPG, length ``n``) is given it then snaps to the raw maximum within
    ``radius_s`` (:func:`snap_to_raw`). The per-record shift varies (-5..+5 samples,
    depending on pulse shape), so the constant alone leaves 10-30 ms of error; the snap
    removes it on clean signals. Results are clipped to ``[0, n)`` and de-duplicated.
    """
    det = np.asarray(detected, dtype=np.int64)
    if n <= 0:
        raise DataError(f"signal length must be positive, got {n}")
    pos = np.clip(det - int(shift), 0, n - 1)
    if raw is not None:
        x = np.asarray(raw, dtype=np.float64)
        if x.shape != (n,):
            raise DataError(f"raw PPG has shape {x.shape}, expected ({n},)")
        return snap_to_raw(pos, x, fs, radius_s)
    return np.unique(pos)


def merge_close(positions: np.ndarray, scores: np.ndarray, gap: int) -> np.ndarray:
    """Chain candidates closer than ``gap`` samples into groups; keep each group's best.

    Returns the kept positions (sorted).
    """
    kept, _ = _merge_close(np.asarray(positions).tolist(), np.asarray(scores).tolist(), gap)
    return np.array(kept, dtype=np.int64)  # sorted and distinct: groups lie >= gap apart


def _merge_close(pos: list[int], sc: list[float], gap: int) -> tuple[list[int], list[float]]:
    """:func:`merge_close` on lists (a few per call), with the kept positions' scores."""
    if not pos:
        return [], []
    order = sorted(range(len(pos)), key=pos.__getitem__)  # stable, as argsort(kind="stable")
    pos, sc = [pos[j] for j in order], [sc[j] for j in order]
    kept, kept_sc = [], []
    best = 0
    for j in range(1, len(pos)):
        if pos[j] - pos[j - 1] < gap:
            if sc[j] > sc[best]:
                best = j
        else:
            kept.append(pos[best])
            kept_sc.append(sc[best])
            best = j
    kept.append(pos[best])
    kept_sc.append(sc[best])
    return kept, kept_sc


def enforce_refractory(positions: np.ndarray, scores: np.ndarray, min_gap: int) -> np.ndarray:
    """Keep the highest-scoring peaks so that no two are closer than ``min_gap`` samples."""
    return np.array(_refractory(np.asarray(positions).tolist(), np.asarray(scores).tolist(), min_gap),
                    dtype=np.int64)


def _refractory(pos: list[int], sc: list[float], min_gap: int) -> list[int]:
    """:func:`enforce_refractory` on lists: best score first (ties in order, as a stable
    argsort of the negated scores), sorted positions out."""
    accepted: list[int] = []
    for j in sorted(range(len(pos)), key=lambda k: -sc[k]):
        p = pos[j]
        if all(abs(p - a) >= min_gap for a in accepted):
            accepted.append(p)
    return sorted(accepted)


RR_GATE_HISTORY = 5  # accepted beat intervals whose median sets the RR gate
RR_GATE_MIN_INTERVALS = 3  # fewer than this: the fixed refractory only
RR_GATE_CAP_S = 0.5  # the gate never refuses an interval of 0.5 s (120 bpm) or more
MAX_RR_S = 2.5  # a longer interval is a gap (missed beats, finger off), not a beat interval


class RRGate:
    """Accept beats in time order; of two that come too close, keep the one with the higher score.

    Too close: nearer than the fixed ``refractory_s``, or, with ``frac`` > 0 and at least
    ``RR_GATE_MIN_INTERVALS`` recent intervals, nearer than ``frac`` x their median (the last
    ``RR_GATE_HISTORY`` accepted intervals), capped at ``RR_GATE_CAP_S``. A disturbed pulse that a
    detector counts twice 0.36 s apart at 65 bpm keeps one beat; a premature beat (typically 0.6-0.8
    of the interval) stays at ``frac`` 0.5. Of a too-close pair the higher score wins (the decoder's
    ranking: the filtered PPG's amplitude when it snaps, else the probability), not the earlier
    one: a noise peak just before a pulse must not push the pulse out. So a beat is held
    (``pending``) until a beat ``gap()`` after it, or :meth:`settle` / :meth:`flush`, makes it final.
    The history is only final intervals, so the cap keeps it from latching: an interval of 0.5 s
    or more is never refused, whatever came before, and an interval longer than ``MAX_RR_S`` (a
    gap) clears the history.

    One implementation for the offline decode (:func:`decode_peaks`, whole records) and the
    stream decoder (one gate over the whole stream), so both keep the same beats.
    """

    def __init__(self, fs: float, refractory_s: float = DecoderSpec.refractory_s, frac: float = 0.0,
                 max_rr_s: float = MAX_RR_S):
        fs = _check_fs(fs)
        self.min_gap = max(1, int(round(refractory_s * fs)))
        self.frac = float(frac)
        self.cap = int(round(RR_GATE_CAP_S * fs))
        self.max_rr = max_rr_s * fs
        self.last: int | None = None  # the last final beat
        self.pending: tuple[int, float, Any, bool] | None = None  # (index, score, payload, interval_ok)
        self.intervals: collections.deque[int] = collections.deque(maxlen=RR_GATE_HISTORY)
        self.refused = 0

    def gap(self) -> int:
        """The shortest interval (samples) between two beats now."""
        g = self.min_gap
        if self.frac > 0 and len(self.intervals) >= RR_GATE_MIN_INTERVALS:
            med = sorted(self.intervals)[len(self.intervals) // 2]
            g = max(g, min(self.cap, int(round(self.frac * med))))
        return g

    def offer(self, i: int, score: float, payload: Any = None, interval_ok: bool = True) -> list[tuple]:
        """Offer the beat at sample ``i`` (after every beat offered before); returns the beats this
        makes final, as ``(index, interval in samples or None, payload)``. ``interval_ok`` False:
        its interval spans a stretch the caller does not trust (suppressed windows), so the
        history restarts there and the interval is None."""
        if self.pending is not None:
            j, sc, pay, ok = self.pending
            if i - j < self.gap():
                self.refused += 1
                if score > sc:
                    self.pending = (int(i), float(score), payload, ok and interval_ok)
                return []
            out = [self._finalize()]
        else:
            out = []
        self.pending = (int(i), float(score), payload, interval_ok)
        return out

    def settle(self, until: int) -> list[tuple]:
        """The pending beat, final once no beat before ``until`` is still to come and ``until``
        lies a ``gap()`` past it (no later rival can be offered)."""
        if self.pending is not None and self.pending[0] + self.gap() <= until:
            return [self._finalize()]
        return []

    def flush(self) -> list[tuple]:
        """End of input: the pending beat is final."""
        return [self._finalize()] if self.pending is not None else []

    def _finalize(self) -> tuple:
        i, _, payload, ok = self.pending
        self.pending = None
        d = None
        if self.last is not None:
            if ok and i - self.last <= self.max_rr:
                d = i - self.last
                self.intervals.append(d)
            else:
                self.intervals.clear()
        self.last = i
        return i, d, payload


def decode_peaks(
    probs,
    fs: float,
    threshold: float = DEFAULT_DECODER.threshold,
    signal=None,
    snap_radius_s: float = DEFAULT_DECODER.snap_radius_s,
    merge_s: float = DEFAULT_DECODER.merge_s,
    refractory_s: float = DEFAULT_DECODER.refractory_s,
    rr_refractory: float = DEFAULT_DECODER.rr_refractory,
) -> np.ndarray:
    """Peak indices from per-sample probabilities of one window or a whole stream.

    ``signal`` is the filtered PPG aligned with ``probs``; when given, each candidate is
    snapped to the PPG's local maximum within ``snap_radius_s`` (candidates on a slope
    are rejected) and ranked by PPG amplitude, otherwise by probability. With
    ``rr_refractory`` > 0 the peaks then pass one :class:`RRGate` in time order.
    """
    fs = _check_fs(fs)
    p = _check_probs(probs)
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must lie in [0, 1], got {threshold}")
    sig = None if signal is None else _check_signal(signal, p.size)
    return decode_checked(p, fs, threshold, sig, snap_radius_s, merge_s, refractory_s, rr_refractory)


def decode_checked(p: np.ndarray, fs: float, threshold: float, sig: np.ndarray | None, snap_radius_s: float,
                   merge_s: float, refractory_s: float, rr_refractory: float = 0.0) -> np.ndarray:
    """:func:`decode_peaks` on inputs its checks have passed (float64 1-D probabilities in
    [0, 1], a finite ``sig`` of the same length or None): the stream decoder checks each
    window once as it arrives instead of every decoded slice again."""
    cand = _threshold_runs(p, threshold)
    if sig is not None:
        snapped = _local_max(sig, cand, max(1, int(round(snap_radius_s * fs))))
        cand = [c for c in snapped if c >= 0]
        if len(cand) < len(snapped):
            log.debug("rejected %d candidate(s) that are not PPG local maxima", len(snapped) - len(cand))
        ranked = sig
    else:
        ranked = p
    if not cand:
        return np.zeros(0, dtype=np.int64)
    cand, sc = _merge_close(cand, ranked[cand].tolist(), max(1, int(round(merge_s * fs))))
    out = _refractory(cand, sc, max(1, int(round(refractory_s * fs))))
    if rr_refractory > 0 and len(out) > 1:
        gate = RRGate(fs, refractory_s, rr_refractory)
        kept = [b for i in out for b in gate.offer(i, ranked[i])] + gate.flush()
        out = [b[0] for b in kept]
    return np.array(out, dtype=np.int64)


def stitch_windows(window_probs, hop: int, length: int | None = None) -> np.ndarray:
    """Average overlapping per-window probabilities ``(n_windows, window)`` into one stream.

    Window ``k`` covers samples ``[k*hop, k*hop + window)``. Samples no window covers
    (only possible when ``length`` exceeds the last window) are 0.
    """
    wp = np.asarray(window_probs, dtype=np.float64)
    if wp.ndim != 2:
        raise DataError(f"window probabilities must be 2-D (windows, samples), got {wp.shape}")
    if hop <= 0:
        raise ConfigError(f"hop must be positive, got {hop}")
    n_win, win = wp.shape
    total = (n_win - 1) * hop + win if n_win else 0
    length = total if length is None else int(length)
    if length < total:
        raise DataError(f"stream length {length} is shorter than the windows cover ({total})")
    acc = np.zeros(length)
    cnt = np.zeros(length)
    for k in range(n_win):
        acc[k * hop : k * hop + win] += wp[k]
        cnt[k * hop : k * hop + win] += 1
    return np.divide(acc, cnt, out=np.zeros(length), where=cnt > 0)


def choose_threshold(
    probs,
    ref_peaks,
    fs: float,
    candidates: Sequence[float] = DEFAULT_CANDIDATES,
    signals=None,
    tolerance_s: float = 0.05,
    scorer: Callable[[np.ndarray, np.ndarray], float] | None = None,
    **decode_kwargs,
) -> tuple[float, float]:
    """The candidate threshold with the best F1 over validation streams.

    ``probs`` is one 1-D probability stream or a list of them (one per record);
    ``ref_peaks`` the matching reference peak indices; ``signals`` optionally the
    filtered PPG streams for the local-maximum check. F1 counts come from
    :func:`ppg_edge.metrics.peaks.match_peaks` within ``tolerance_s`` (rounded to whole
    samples), pooled over all streams, unless
    ``scorer(reference, detected) -> score`` is given (then the mean score is used).
    Ties keep the lowest threshold. Returns ``(threshold, score)``.
    """
    fs = _check_fs(fs)
    single = isinstance(probs, np.ndarray) and probs.ndim == 1
    streams = [probs] if single else list(probs)
    refs = [ref_peaks] if single else list(ref_peaks)
    if signals is None:
        sigs = [None] * len(streams)
    else:
        sigs = [signals] if single else list(signals)
    if not (len(streams) == len(refs) == len(sigs)):
        raise DataError(
            f"{len(streams)} probability streams, {len(refs)} reference lists and "
            f"{len(sigs)} signals: they must match one to one"
        )
    if not streams:
        raise DataError("no validation streams to choose a threshold on")
    cands = [float(c) for c in candidates]
    if not cands:
        raise ConfigError("no candidate thresholds given")
    tol = max(0, int(round(tolerance_s * fs)))
    best_t, best_s = cands[0], -np.inf
    for t in cands:
        tp = fp = fn = 0
        scores = []
        for p, r, s in zip(streams, refs, sigs):
            det = decode_peaks(p, fs, threshold=t, signal=s, **decode_kwargs)
            if scorer is None:
                m = match_peaks(r, det, fs, tol / fs)
                tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
            else:
                scores.append(float(scorer(np.asarray(r), det)))
        score = f1_from_counts(tp, fp, fn) if scorer is None else float(np.mean(scores))
        log.debug("threshold %.3f -> score %.4f", t, score)
        if score > best_s:
            best_t, best_s = t, score
    log.info("chose threshold %.3f (score %.4f)", best_t, best_s)
    return best_t, float(best_s)
