"""Per-window signal quality: suppress bad windows with a reason, and choose the detector path.

Checks, in order (the first that fails names the reason):

``nonfinite`` / ``lost``
    the window covers NaN/inf samples (replay) or samples the sensor lost.
``finger_off``
    the IR DC level (median of the raw counts) is below ``finger_off_frac`` of
    the ADC full scale. Measured on Raspberry Pi MAX30102 logs at 18 bits: with
    no finger the IR reads about 1020 counts (0.4% of full scale,
    ``max30102-raw/sergiomagdalenop_rpi``); with a finger 35,000-145,000
    (13-55%, ``szymanel_rpi``, ``vrano714_rpi``). The default threshold, 2% of
    full scale, sits between them with margin on both sides; being a fraction of
    full scale it holds for every pulse width (15-18 bits).
``saturation``
    more than ``max_saturated_frac`` of the samples sit at the ADC full scale.
``held`` (counts only)
    more than ``max_held_frac`` of the window's samples are flagged ``held``: ADC
    samples equal to the one before (the pipeline flags them). A live 18-bit
    conversion with a finger on almost never repeats (0-6% of each 2 s window of
    ``vrano714_rpi``), but a logger that re-reads stale FIFO data does, 54-82% of
    the windows of ``szymanel_rpi``, with spikes between the repeats: no pulse
    can be read from that. The flags spread by one input sample through the
    resampler. The emulated chip has no conversion noise, so a medical record's
    quantised plateaus repeat through it: up to 69% of a window on the CapnoBase
    and BIDMC training subjects (``capnobase/0133``, a test subject, loses three
    windows in the HIL accuracy suite), a limit of the emulator, not of the chip.
``transient`` (counts only)
    the raw window moves by more than ``transient_frac`` of its DC level: a step
    no pulse makes (a finger's reflected pulse is 0.1-5% of the DC): the sensor
    settling after start-up (the Raspberry Pi logs start with a step from about
    83,000 to 145,000 counts), an LED current change, a finger put down. The
    band-pass rings after a step, so the windows starting less than
    ``settle_s`` after the step's largest jump are suppressed with the same
    reason (``Pipeline`` sets ``settle_s`` from its filter's step response:
    the time it takes to fall below ``SETTLE_TOL`` of the step). A transient
    also clears the motion reference: the pulse after it has a new amplitude.
``motion``
    the band-passed window's spread is more than ``motion_ratio`` times (or less
    than ``1 / motion_ratio`` of) the running median spread of recent accepted
    windows, or its energy above ``hf_hz`` (in the raw window, by FFT) is more
    than ``hf_ratio`` of the in-band pulse energy. The reference cannot latch:
    when the spread check has rejected every window for ``motion_relearn_s``
    (measured from the first rejected window's start), the reference is
    relearned from the spreads of those rejected windows, so a reference poisoned
    by a transient it missed, or left from before a lasting change of amplitude,
    recovers within a few seconds. A finger taken off clears it too.

``counts_sign``: the sign that turns the window's ``raw`` samples into ADC counts
(``-1`` where the pipeline has inverted the sensor's reflected light into a
blood-volume waveform), for the DC, finger-off, saturation and transient checks.

A cheap signal quality index (SQI) in [0, 1] drives the quality-gated path: the
highest normalised autocorrelation of the band-passed window at lags of
0.27-1.5 s (one pulse period for 40-220 bpm). Clean, periodic windows
(SQI >= ``sqi_classic``) go to the classic detector
(:func:`ppg_edge.dsp.pulses.find_systolic_peaks`), others to the network. The
decision is logged per window. numpy only.
"""
from __future__ import annotations

import collections
import functools
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ppg_edge.dsp.stats import LagProducts, lag_products, mean, median
from ppg_edge.errors import ConfigError

from .stream import Window

log = logging.getLogger(__name__)

GATES = ("auto", "network", "classic")


@dataclass
class QualityConfig:
    full_scale: int | None = None  # ADC full-scale code; None: counts unknown (no finger/saturation check)
    finger_off_frac: float = 0.02
    max_saturated_frac: float = 0.0
    motion_ratio: float = 4.0
    motion_history: int = 8
    hf_hz: float = 10.0
    hf_ratio: float = 0.5
    sqi_classic: float = 0.8
    gate: str = "auto"
    transient_frac: float = 0.2
    max_held_frac: float = 0.5
    settle_s: float | None = None  # None: the pipeline's filter settling time (else DEFAULT_SETTLE_S)
    motion_relearn_s: float = 4.0
    counts_sign: float = 1.0

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ConfigError(f"quality gate {self.gate!r}; choose one of {', '.join(GATES)}")
        if self.full_scale is not None and self.full_scale < 1:
            raise ConfigError(f"ADC full scale must be a positive code, got {self.full_scale}")
        if not 0 <= self.finger_off_frac < 1:
            raise ConfigError(f"finger_off_frac must be in [0, 1), got {self.finger_off_frac}")
        if not self.transient_frac > 0:
            raise ConfigError(f"transient_frac must be positive, got {self.transient_frac}")
        if (self.settle_s is not None and self.settle_s < 0) or self.motion_relearn_s < 0:
            raise ConfigError(f"settle_s and motion_relearn_s must be >= 0, got {self.settle_s}, "
                              f"{self.motion_relearn_s}")
        if self.counts_sign not in (1.0, -1.0):
            raise ConfigError(f"counts_sign must be 1 or -1, got {self.counts_sign}")


#: Settling time used when no filter is known (a 0.5-8 Hz band-pass: about 4.8 s to 0.3%).
DEFAULT_SETTLE_S = 4.8
#: Residual (fraction of a step) below which the band-pass counts as settled after the step.
SETTLE_TOL = 3e-3


def settle_time(sos, fs: float, tol: float = SETTLE_TOL, max_s: float = 30.0) -> float:
    """Seconds after a unit step until the band-pass output stays below ``tol`` (numpy only)."""
    from ppg_edge.dsp.filters import SOSFilter

    y = SOSFilter(np.asarray(sos, dtype=np.float64)).process(np.ones(int(round(max_s * fs))))
    above = np.flatnonzero(np.abs(y) > tol)
    return float((above[-1] + 1) / fs) if above.size else 0.0


@dataclass
class Quality:
    ok: bool
    reason: str | None
    sqi: float
    path: str | None  # "classic" | "network" | None when suppressed
    detail: dict = field(default_factory=dict)


_LAGS: dict[tuple, tuple] = {}  # (n, fs, lo_s, hi_s) -> lag range and index arrays (one window size)


def _lags(n: int, fs: float, lo_s: float, hi_s: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    key = (n, fs, lo_s, hi_s)
    got = _LAGS.get(key)
    if got is None:
        lo, hi = max(1, int(lo_s * fs)), min(n - 2, int(hi_s * fs))
        lags = np.arange(lo, max(lo, hi + 1))
        got = _LAGS.setdefault(key, (lo, hi, lags, n - lags))
    return got


def sqi_autocorr(x, fs: float, lo_s: float = 0.27, hi_s: float = 1.5, products: LagProducts | None = None) -> float:
    """Highest normalised autocorrelation at lags ``lo_s..hi_s`` (overlap-normalised), in [0, 1].

    At lag ``L`` the window's first ``n - L`` samples ``a`` meet its last ``n - L`` samples
    ``b``: ``a.b / sqrt(a.a * b.b)``. The dot products are :func:`~ppg_edge.dsp.stats.lag_products`
    (``products``: those of ``x`` already made, used when they cover the lags: the runtime's
    window keeps one for this and the classic detector's pulse period), the energies come
    from cumulative sums.
    """
    n = len(x)
    lo, hi, lags, rest = _lags(n, float(fs), lo_s, hi_s)
    if products is None or not products.covers(lo, hi):
        products = lag_products(x, lo, max(lo, hi))
    v = products.v
    if hi <= lo or not v.any():
        return 0.0
    ac = products.at(lo, hi)  # ac[L - lo] = sum_i v[i + L] v[i]
    cs = np.concatenate(([0.0], (v * v).cumsum()))
    den = np.sqrt(cs[rest] * (cs[n] - cs[lags]))
    ok = den > 0
    if not ok.any():
        return 0.0
    best = float((ac[ok] / den[ok]).max())
    return min(max(best, 0.0), 1.0)


class QualityGate:
    """Stateful per-window assessment (keeps the recent spreads for the motion check)."""

    def __init__(self, fs: float, config: QualityConfig | None = None):
        self.fs = float(fs)
        self.cfg = config or QualityConfig()
        self._spreads: collections.deque[float] = collections.deque(maxlen=self.cfg.motion_history)
        self._rejected: list[float] = []  # spreads of the current run of motion-rejected windows
        self._rejected_since: int | None = None  # start of the run's first window
        self._settled_at: int | None = None  # sample index before which the band-pass still rings
        self.relearned = 0
        self.finger_on: bool | None = None  # the contact state after the last window with counts
        self.counts: collections.Counter[str] = collections.Counter()
        self._hf_n = 0  # window size the high-frequency masks were made for

    def assess(self, w: Window) -> Quality:
        q = self._assess(w)
        self.counts[q.reason or q.path] += 1
        log.debug("window %d @%d: %s sqi=%.2f %s", w.index, w.start,
                  q.path if q.ok else "suppressed", q.sqi, q.reason or "")
        return q

    def _assess(self, w: Window) -> Quality:
        cfg = self.cfg
        for reason in ("nonfinite", "lost"):
            if w.flags.get(reason):
                return Quality(False, reason, 0.0, None, {"samples": w.flags[reason]})
        detail: dict = {}
        if cfg.full_scale is not None:
            counts = w.raw * cfg.counts_sign
            dc = median(counts)
            detail["dc_frac"] = round(dc / cfg.full_scale, 5)
            self.finger_on = dc >= cfg.finger_off_frac * cfg.full_scale
            if not self.finger_on:
                self._reset_reference()
                return Quality(False, "finger_off", 0.0, None, detail)
            sat = max(w.flags.get("saturated", 0), int(np.count_nonzero(counts >= cfg.full_scale)))
            if sat > cfg.max_saturated_frac * w.raw.size:
                detail["saturated"] = sat
                return Quality(False, "saturation", 0.0, None, detail)
            held = w.flags.get("held", 0)
            if held > cfg.max_held_frac * w.raw.size:
                detail["held"] = held
                self._reset_reference()
                return Quality(False, "held", 0.0, None, detail)
            if self._transient(w, counts, dc, detail):
                return Quality(False, "transient", 0.0, None, detail)
        elif w.flags.get("saturated", 0) > cfg.max_saturated_frac * w.raw.size:
            return Quality(False, "saturation", 0.0, None, {"saturated": w.flags["saturated"]})
        d = w.filtered - mean(w.filtered)
        spread = math.sqrt(float(d @ d) / d.size)  # the window's standard deviation
        if not self._spread_ok(w, spread, detail):
            return Quality(False, "motion", 0.0, None, detail)
        hf = self._hf_ratio(w.raw)
        detail["hf_ratio"] = round(hf, 4)
        if hf > cfg.hf_ratio:
            return Quality(False, "motion", 0.0, None, detail)
        self._spreads.append(spread)
        # the window's lag products reach the classic detector's pulse lags where it may run;
        # the network path needs only the index's shorter range
        sqi = sqi_autocorr(w.filtered, self.fs, products=w.pulse_products(self.fs) if cfg.gate != "network" else None)
        if cfg.gate == "auto":
            path = "classic" if sqi >= cfg.sqi_classic else "network"
        else:
            path = cfg.gate
        return Quality(True, None, sqi, path, detail)

    def finger_crossing(self, w: Window) -> int:
        """Index in ``w`` where the contact state that ``w`` ended in began: the sample after
        the last one on the other side of the finger-off threshold (0 if none)."""
        counts = w.raw * self.cfg.counts_sign
        level = self.cfg.finger_off_frac * self.cfg.full_scale
        other = np.flatnonzero(counts < level) if self.finger_on else np.flatnonzero(counts >= level)
        return int(other[-1]) + 1 if other.size else 0

    def _reset_reference(self) -> None:
        self._spreads.clear()
        self._rejected.clear()
        self._rejected_since = None

    def _transient(self, w: Window, counts: np.ndarray, dc: float, detail: dict) -> bool:
        """A step in this window (which starts a settling period), or the band-pass still ringing."""
        cfg = self.cfg
        swing = float(counts.max() - counts.min())
        if swing > cfg.transient_frac * dc:
            jump = int(np.argmax(np.abs(np.diff(counts)))) + 1 if counts.size > 1 else 0
            settle_s = DEFAULT_SETTLE_S if cfg.settle_s is None else cfg.settle_s
            settled = w.start + jump + int(round(settle_s * self.fs))
            self._settled_at = settled if self._settled_at is None else max(self._settled_at, settled)
            self._reset_reference()
            detail["swing_frac"] = round(swing / dc, 4)
            return True
        if self._settled_at is not None and w.start < self._settled_at:
            detail["settling_s"] = round((self._settled_at - w.start) / self.fs, 3)
            return True
        return False

    def _spread_ok(self, w: Window, spread: float, detail: dict) -> bool:
        """The spread check against the reference of accepted windows, relearned when it latches."""
        cfg = self.cfg
        if not self._spreads:
            return True
        ref = median(self._spreads)
        if ref <= 0 or ref / cfg.motion_ratio <= spread <= ref * cfg.motion_ratio:
            self._rejected.clear()
            self._rejected_since = None
            return True
        if self._rejected_since is None:
            self._rejected_since = w.start
        self._rejected.append(spread)
        if (w.start - self._rejected_since) / self.fs >= cfg.motion_relearn_s:
            # every window for motion_relearn_s disagreed with the reference: it is the stale one
            log.info("motion reference relearned at window %d: median spread %.4g -> %.4g over %d windows",
                     w.index, ref, median(self._rejected), len(self._rejected))
            self.relearned += 1
            self._spreads.clear()
            self._spreads.extend(self._rejected[-cfg.motion_history:])
            self._rejected.clear()
            self._rejected_since = None
            ref = median(self._spreads)
            if ref <= 0 or ref / cfg.motion_ratio <= spread <= ref * cfg.motion_ratio:
                return True
        detail["spread_ratio"] = round(spread / ref, 3)
        return False

    def _hf_ratio(self, raw: np.ndarray) -> float:
        n = raw.size
        if self._hf_n != n:  # the window size is fixed: the ramp and the band masks once
            f = np.fft.rfftfreq(n, 1.0 / self.fs)
            self._hf_n = n
            self._ramp = np.linspace(0.0, 1.0, n)
            self._band = (f >= 0.5) & (f <= 8.0)
            self._high = f >= self.cfg.hf_hz
        v = raw - (raw[0] + (raw[-1] - raw[0]) * self._ramp)  # remove DC and the linear trend
        c = np.fft.rfft(v)
        spec = c.real * c.real + c.imag * c.imag
        band = spec[self._band].sum()
        high = spec[self._high].sum()
        if band <= 0:
            return 0.0 if high <= 0 else float("inf")
        return float(high / band)


def classic_probs(w: Window, fs: float, max_lag_s: float = 0.15, width: int = 2,
                  axis: str = "raw", context: tuple[np.ndarray, np.ndarray] | None = None,
                  lead: int = 0) -> np.ndarray:
    """Peak 'probabilities' from the classic detector: 1 at each systolic peak, fading to 0
    over ``width`` samples on each side, 0 elsewhere.

    Peaks are found on the band-passed window (:func:`ppg_edge.dsp.pulses.find_systolic_peaks`).
    ``axis="filtered"`` leaves them there, where the network's outputs are (its labels are
    the filtered PPG's maxima), so the decoder treats both paths alike (snap, move onto the
    raw axis). ``axis="raw"``: the causal band-pass delays a sharp systolic peak by only a few
    samples (about 2 at 125 Hz for the 0.5-8 Hz band-pass; far less than its ~28-sample group
    delay at the pulse rate, which applies to the fundamental only), so each peak is moved to
    the raw window's maximum up to ``max_lag_s`` before it: beats land on the raw pulse.

    ``context``: the ``(filtered, raw)`` samples just before the window (the previous window's
    tail, when windows do not overlap): the detector runs on them and the window together, so
    a pulse at the window's first samples has the neighbours a local maximum needs. The result
    then covers the window and the ``lead`` samples before it (where the previous window's last
    pulse, cut off at its edge, is found): ``lead + window`` values.
    """
    from ppg_edge.dsp.pulses import find_systolic_peaks

    if axis not in ("raw", "filtered"):
        raise ConfigError(f"classic_probs axis must be 'raw' or 'filtered', got {axis!r}")
    filtered, raw, off = w.filtered, w.raw, 0
    if context is not None and len(context[0]):
        off = len(context[0])
        if not 0 <= lead <= off or len(context[1]) != off:
            raise ConfigError(f"classic_probs: lead {lead} and context of {off}/{len(context[1])} samples")
        filtered = np.concatenate((context[0], filtered))
        raw = np.concatenate((context[1], raw))
    elif lead:
        raise ConfigError("classic_probs: a lead needs the context before the window")
    n = filtered.size
    p = np.zeros(n)
    lag = max(1, int(round(max_lag_s * fs)))
    tri = _triangle(width)  # 1 at the peak, fading to 0 over width samples on each side
    # the window's own lag products (its quality check made them) unless context was added
    for k in find_systolic_peaks(filtered, fs, products=w.pulse_products(fs) if off == 0 else None).tolist():
        if axis == "raw":
            lo = k - lag if k > lag else 0
            k = lo + int(raw[lo:k + 1].argmax())
        a, b = max(0, k - width), min(n, k + width + 1)
        p[a:b] = np.maximum(p[a:b], tri[a - k + width:b - k + width])
    return p[off - lead:]


@functools.lru_cache(maxsize=4)
def _triangle(width: int) -> np.ndarray:
    """``1 - |j| / (width + 1)`` for ``j = -width..width`` (read-only)."""
    j = np.arange(-width, width + 1)
    t = 1.0 - np.abs(j) / (width + 1)
    t.flags.writeable = False
    return t
