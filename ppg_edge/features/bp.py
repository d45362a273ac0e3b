"""PPG features for blood-pressure estimation, per pulse and per segment (numpy only).

Two groups, after Ali & Atef (2022, "LSTM Multi-Stage Transfer Learning for Blood
Pressure Estimation Using Photoplethysmography", Electronics 11:3749), who compare a
compact set of physiologically motivated features with a set of commonly used ones:

* ``PULSE_FEATURE_NAMES`` -- waveform features of one pulse (foot to next foot):
  heart rate, a stroke-volume and a cardiac-output proxy, stiffness and reflection
  indices, augmentation index, pulse widths, systolic/diastolic areas and their
  ratio, rise and crest time, and the second-derivative (APG) indices. Each one's
  definition and source is in ``_FEATURE_DOCS`` (shown by :func:`describe`).
* ``COMMON_FEATURE_NAMES`` -- segment statistics (mean, standard deviation,
  skewness, kurtosis, an AC/DC perfusion-index-like ratio) and spectral features
  (dominant frequency, normalised spectral entropy).

Amplitude units of a PPG are arbitrary (sensor gain, LED current), so every
waveform feature is computed on the pulse with its foot-to-foot baseline removed
and its systolic height scaled to 1: areas are then in seconds and heights are
fractions of the systolic height.

Nothing here raises on a bad pulse: a result carries ``values`` (NaN-free, invalid
entries set to 0.0), a boolean ``valid`` mask and the ``issues`` found. Wrong
*arguments* (a 2-D array, a non-positive rate) raise :class:`~ppg_edge.errors.DataError`
or :class:`~ppg_edge.errors.ConfigError`.

Pulses come from the one pulse segmentation, :func:`ppg_edge.dsp.pulses.segment_pulses`
(foot to foot; feet before the steepest upstroke, searched at no more than 100 Hz).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..dsp.pulses import MAX_PULSE_S, MIN_PULSE_S, MIN_PULSE_SAMPLES, _as_1d, _local_maxima, segment_pulses
from ..dsp.rates import check_rate
from ..errors import ConfigError

log = logging.getLogger(__name__)

PULSE_FEATURE_NAMES: tuple[str, ...] = (
    "hr_bpm",
    "sv_proxy_s",
    "co_proxy",
    "delta_t_s",
    "stiffness_index",
    "reflection_index",
    "augmentation_index",
    "width25_s",
    "width50_s",
    "width75_s",
    "sys_area_s",
    "dia_area_s",
    "ipa_ratio",
    "rise_time_s",
    "crest_time_s",
    "apg_b_a",
    "apg_c_a",
    "apg_d_a",
    "apg_e_a",
    "aging_index",
)

COMMON_FEATURE_NAMES: tuple[str, ...] = (
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "ac_dc_ratio",
    "dominant_freq_hz",
    "spectral_entropy",
)

#: The segment feature vector: the median of each pulse feature over the valid
#: pulses (``hr_bpm`` from the median foot-to-foot interval), the pulse count, then
#: the common features.
FEATURE_NAMES: tuple[str, ...] = PULSE_FEATURE_NAMES + ("n_pulses",) + COMMON_FEATURE_NAMES

#: Features in the sensor's own units (its gain, its DC level and sign): a model trained on one
#: sensor's values of these reads another sensor's (a MAX30102's 18-bit counts, negated into blood
#: volume) as far outside its training range. The device's BP models leave them out.
SENSOR_UNIT_FEATURES: tuple[str, ...] = ("mean", "std", "ac_dc_ratio")
PORTABLE_FEATURE_NAMES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in SENSOR_UNIT_FEATURES)
PORTABLE_COLUMNS: tuple[int, ...] = tuple(FEATURE_NAMES.index(n) for n in PORTABLE_FEATURE_NAMES)

_FEATURE_DOCS: dict[str, str] = {
    "hr_bpm": "Heart rate, 60 / foot-to-foot interval (beats/min).",
    "sv_proxy_s": (
        "Stroke-volume proxy: area of the baseline-removed, height-normalised pulse (s). "
        "Pulse contour area tracks stroke volume (Wang L. et al. 2009, 'Noninvasive cardiac "
        "output estimation using a novel photoplethysmogram index', IEEE EMBC)."
    ),
    "co_proxy": (
        "Cardiac-output proxy: hr_bpm x sv_proxy_s (CO = HR x SV; Ali & Atef 2022 use a "
        "PPG-derived CO to approach vascular resistance through MAP = CO x VR). Relative only."
    ),
    "delta_t_s": (
        "Time from systolic peak to diastolic peak (or inflection) (s) (Millasseau S.C. et al. "
        "2002, Clin Sci 103:371-377)."
    ),
    "stiffness_index": (
        "Stiffness index SI = subject height / delta_t (m/s) (Millasseau et al. 2002); with "
        "the default height of 1 m it is 1/delta_t, i.e. SI per metre of height."
    ),
    "reflection_index": (
        "Reflection index RI = diastolic height / systolic height, both above the pulse foot "
        "(Chowienczyk P.J. et al. 1999, J Am Coll Cardiol 34:2007-2014)."
    ),
    "augmentation_index": (
        "Augmentation index of the PPG, (P1 - P2) / P1 with P1 the systolic and P2 the "
        "reflected (diastolic) wave height (Rubins U. et al. 2008, 'Photoplethysmography "
        "analysis of artery properties in patients with cardiovascular diseases', IFMBE "
        "Proc 20). With P2 the diastolic peak it equals 1 - reflection_index."
    ),
    "width25_s": (
        "Pulse width at 25% of the systolic height: from the first rising to the last falling "
        "crossing (s) (Awad A.A. et al. 2007, J Clin Monit Comput 21:365-372; Kurylyak Y. et "
        "al. 2013, IEEE I2MTC)."
    ),
    "width50_s": "Pulse width at 50% of the systolic height (s) (as width25_s).",
    "width75_s": "Pulse width at 75% of the systolic height (s) (as width25_s).",
    "sys_area_s": (
        "Systolic area: normalised pulse area from the foot to the dicrotic notch (s) (Wang "
        "et al. 2009)."
    ),
    "dia_area_s": "Diastolic area: normalised pulse area from the dicrotic notch to the end (s).",
    "ipa_ratio": (
        "Inflection point area ratio, diastolic / systolic area, split at the dicrotic notch "
        "(Wang et al. 2009)."
    ),
    "rise_time_s": "Rise time from 10% to 90% of the systolic height on the upstroke (s).",
    "crest_time_s": (
        "Crest time, foot to systolic peak (s) (Alty S.R. et al. 2007, IEEE Trans Biomed Eng "
        "54:2268-2275)."
    ),
    "apg_b_a": (
        "APG (second derivative) b/a ratio (Takazawa K. et al. 1998, Hypertension 32:365-370; "
        "Elgendi M. 2012, Curr Cardiol Rev 8:14-25)."
    ),
    "apg_c_a": "APG c/a ratio (Takazawa et al. 1998).",
    "apg_d_a": "APG d/a ratio (Takazawa et al. 1998).",
    "apg_e_a": "APG e/a ratio (Takazawa et al. 1998).",
    "aging_index": "APG aging index (b - c - d - e) / a (Takazawa et al. 1998).",
    "n_pulses": "Number of valid pulses whose features were pooled (median) in the segment.",
    "mean": "Mean of the segment (sensor units; gain-dependent).",
    "std": "Standard deviation of the segment (sensor units; gain-dependent).",
    "skewness": (
        "Skewness of the segment; also the PPG quality index of Elgendi M. 2016 (Bioengineering "
        "3:21) used by the PPG-BP data set."
    ),
    "kurtosis": "Excess kurtosis of the segment (Elgendi 2016).",
    "ac_dc_ratio": (
        "Perfusion-index-like ratio: (95th - 5th percentile) / |mean|. Meaningful only on a "
        "signal that still has its DC level (raw, not band-passed); invalid when |mean| is "
        "not clearly above the pulsatile part."
    ),
    "dominant_freq_hz": "Frequency of the largest periodogram peak in 0.5-4 Hz.",
    "spectral_entropy": "Shannon entropy of the normalised periodogram in 0.5-8 Hz, divided by log(bins).",
}


def describe(name: str) -> str:
    """The definition and source of feature ``name``."""
    try:
        return _FEATURE_DOCS[name]
    except KeyError:
        raise ConfigError(f"unknown feature {name!r}; known: {', '.join(FEATURE_NAMES)}") from None


@dataclass
class FeatureResult:
    """Named feature values with a validity mask.

    ``values`` never holds NaN or inf: an invalid feature is 0.0 there and False in
    ``valid``. ``issues`` records why features are missing.
    """

    names: tuple[str, ...]
    values: np.ndarray
    valid: np.ndarray
    issues: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, float]:
        """Valid features only, name -> value."""
        return {n: float(v) for n, v, ok in zip(self.names, self.values, self.valid) if ok}

    def to_vector(self, missing: float = np.nan) -> np.ndarray:
        """Values in ``names`` order, invalid entries set to ``missing``."""
        out = self.values.astype(np.float64).copy()
        out[~self.valid] = missing
        return out

    def __getitem__(self, name: str) -> float:
        i = self.names.index(name)
        return float(self.values[i]) if self.valid[i] else float("nan")


class _Builder:
    """Collects feature values by name, then packs them in a fixed order."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.vals: dict[str, float] = {}
        self.issues: list[str] = []

    def set(self, name: str, value: float) -> None:
        if name not in self.names:
            raise KeyError(name)
        if value is not None and np.isfinite(value):
            self.vals[name] = float(value)

    def issue(self, text: str) -> None:
        self.issues.append(text)

    def result(self) -> FeatureResult:
        values = np.zeros(len(self.names))
        valid = np.zeros(len(self.names), dtype=bool)
        for i, n in enumerate(self.names):
            if n in self.vals:
                values[i] = self.vals[n]
                valid[i] = True
        return FeatureResult(self.names, values, valid, self.issues)


def _local_minima(x: np.ndarray) -> np.ndarray:
    return _local_maxima(-x)


def _interp_cross(y: np.ndarray, i: int, level: float) -> float:
    """Fractional index where y crosses ``level`` between samples i and i+1."""
    y0, y1 = y[i], y[i + 1]
    if y1 == y0:
        return float(i)
    return i + (level - y0) / (y1 - y0)


def _width_at(yn: np.ndarray, i_sys: int, level: float) -> tuple[float, float] | None:
    """First rising and last falling crossing of ``level`` (fractional indices)."""
    above = yn >= level
    if not above[i_sys]:
        return None
    first = int(np.argmax(above))  # first sample at/above level
    last = int(yn.size - 1 - np.argmax(above[::-1]))
    if first == 0 or last == yn.size - 1:
        return None  # never below the level at an end: not a whole pulse
    t_up = _interp_cross(yn, first - 1, level)
    t_down = _interp_cross(yn, last, level)
    return t_up, t_down


def _trapz(y: np.ndarray, dx: float) -> float:
    if y.size < 2:
        return 0.0
    return float(np.sum((y[1:] + y[:-1]) * 0.5) * dx)


def _diastolic_point(yn: np.ndarray, vpg: np.ndarray, apg: np.ndarray, i_sys: int,
                     fs: float) -> tuple[int, int, bool] | None:
    """(notch, diastolic point, is_inflection) after the systolic peak, or None.

    The diastolic peak is the highest local maximum after the systolic peak that
    rises at least 0.5% of the systolic height above the minimum before it (the
    dicrotic notch). When the diastolic wave shows no peak, its position is taken
    at the first local maximum of the first derivative after the systolic peak
    where the pulse is still falling (the inflection; Millasseau et al. 2002), and
    the notch at the largest second-derivative value between (Elgendi 2012).
    """
    n = yn.size
    # ignore the last 5% of the pulse (the next upstroke's foot region)
    stop = max(i_sys + 2, int(n - max(1, round(0.05 * n))))
    seg = yn[i_sys:stop]
    best = None
    for p in _local_maxima(seg):
        if p == 0:
            continue
        notch_rel = int(np.argmin(seg[: p + 1]))
        if seg[p] - seg[notch_rel] >= 0.005 and (best is None or seg[p] > seg[best[1]]):
            best = (notch_rel, int(p))
    if best is not None:
        return i_sys + best[0], i_sys + best[1], False
    vseg = vpg[i_sys:stop]
    for p in _local_maxima(vseg):
        if p > 0 and vseg[p] < 0:
            i_dia = i_sys + int(p)
            if i_dia - i_sys < 2:
                continue
            i_notch = i_sys + int(np.argmax(apg[i_sys:i_dia + 1]))
            return i_notch, i_dia, True
    return None


def _apg_waves(apg: np.ndarray, vpg: np.ndarray, i_sys: int) -> dict[str, int]:
    """Indices of the APG a, b, c, d, e waves (Takazawa et al. 1998).

    a: the largest APG value before the steepest upstroke; then b, c, d, e are the
    alternating local minimum, maximum, minimum, maximum that follow, each at
    least 1% of a away from the wave before it. Missing waves are left out.
    """
    waves: dict[str, int] = {}
    if i_sys < 2:
        return waves
    i_vmax = int(np.argmax(vpg[: i_sys + 1]))
    a = int(np.argmax(apg[: i_vmax + 1]))
    if apg[a] <= 0:
        return waves
    waves["a"] = a
    maxima = set(_local_maxima(apg).tolist())
    minima = set(_local_minima(apg).tolist())
    want = [("b", minima), ("c", maxima), ("d", minima), ("e", maxima)]
    k = 0
    prev = a
    for i in range(a + 1, apg.size - 1):
        name, pool = want[k]
        # a wave must differ from the previous one by 1% of a (not numerical noise)
        if i in pool and abs(apg[i] - apg[prev]) >= 0.01 * apg[a]:
            waves[name] = i
            prev = i
            k += 1
            if k == len(want):
                break
    return waves


def pulse_features(pulse, fs: float, *, height_m: float = 1.0) -> FeatureResult:
    """Waveform features of one pulse, in ``PULSE_FEATURE_NAMES`` order.

    ``pulse`` runs from one foot to the next, both feet included (its duration is
    ``(len(pulse) - 1) / fs``). ``height_m`` is the subject's height for the
    stiffness index (default 1 m: SI per metre of height). Never raises on a bad
    pulse: see :class:`FeatureResult`.
    """
    fs = check_rate(fs)
    x = _as_1d(pulse, "pulse")
    b = _Builder(PULSE_FEATURE_NAMES)
    n = x.size
    if n < MIN_PULSE_SAMPLES:
        b.issue(f"pulse has {n} samples, fewer than {MIN_PULSE_SAMPLES}")
        return b.result()
    if not np.all(np.isfinite(x)):
        b.issue("pulse holds non-finite samples")
        return b.result()
    duration = (n - 1) / fs
    if not MIN_PULSE_S <= duration <= MAX_PULSE_S:
        b.issue(f"pulse lasts {duration:.3f} s, outside {MIN_PULSE_S}-{MAX_PULSE_S} s")
        return b.result()
    y = x - np.linspace(x[0], x[-1], n)
    i_sys = int(np.argmax(y))
    amp = y[i_sys]
    scale = max(np.max(np.abs(x)), 1e-300)
    if not amp > 1e-9 * scale or i_sys == 0 or i_sys == n - 1:
        b.issue("pulse has no systolic peak above its foot-to-foot baseline")
        return b.result()
    yn = y / amp
    dt = 1.0 / fs
    t_sys = i_sys * dt

    hr = 60.0 / duration
    area = _trapz(yn, dt)
    b.set("hr_bpm", hr)
    b.set("sv_proxy_s", area)
    b.set("co_proxy", hr * area)
    b.set("crest_time_s", t_sys)

    for frac, name in ((0.25, "width25_s"), (0.5, "width50_s"), (0.75, "width75_s")):
        w = _width_at(yn, i_sys, frac)
        if w is None:
            b.issue(f"{name}: pulse does not cross {frac:.0%} on both sides")
        else:
            b.set(name, (w[1] - w[0]) * dt)

    up = yn[: i_sys + 1]
    i10 = int(np.argmax(up >= 0.1))
    i90 = int(np.argmax(up >= 0.9))
    if i10 > 0 and i90 > 0:
        b.set("rise_time_s", (_interp_cross(yn, i90 - 1, 0.9) - _interp_cross(yn, i10 - 1, 0.1)) * dt)
    else:
        b.issue("rise_time_s: upstroke starts above 10% of the systolic height")

    vpg = np.gradient(yn, dt)
    apg = np.gradient(vpg, dt)
    dia = _diastolic_point(yn, vpg, apg, i_sys, fs)
    if dia is None:
        b.issue("no diastolic peak or inflection after the systolic peak")
    else:
        i_notch, i_dia, inflection = dia
        if inflection:
            b.issue("diastolic wave has no peak; inflection point used")
        d_t = (i_dia - i_sys) * dt
        ri = yn[i_dia]
        b.set("delta_t_s", d_t)
        b.set("stiffness_index", height_m / d_t)
        b.set("reflection_index", ri)
        b.set("augmentation_index", 1.0 - ri)
        a_sys = _trapz(yn[: i_notch + 1], dt)
        a_dia = _trapz(yn[i_notch:], dt)
        b.set("sys_area_s", a_sys)
        b.set("dia_area_s", a_dia)
        if a_sys > 0:
            b.set("ipa_ratio", a_dia / a_sys)

    waves = _apg_waves(apg, vpg, i_sys)
    if "a" not in waves:
        b.issue("APG a wave not found")
    else:
        a = apg[waves["a"]]
        for w in "bcde":
            if w in waves:
                b.set(f"apg_{w}_a", apg[waves[w]] / a)
        if all(w in waves for w in "bcde"):
            b.set("aging_index", (apg[waves["b"]] - apg[waves["c"]] - apg[waves["d"]]
                                  - apg[waves["e"]]) / a)
        else:
            missing = "".join(w for w in "bcde" if w not in waves)
            b.issue(f"APG waves {missing} not found")
    return b.result()


def _common_features(x: np.ndarray, fs: float, b: _Builder) -> None:
    mu = float(np.mean(x))
    sd = float(np.std(x))
    b.set("mean", mu)
    b.set("std", sd)
    if sd > 0:
        z = (x - mu) / sd
        b.set("skewness", float(np.mean(z ** 3)))
        b.set("kurtosis", float(np.mean(z ** 4) - 3.0))
    else:
        b.issue("flat segment: no skewness/kurtosis")
    ac = float(np.percentile(x, 95) - np.percentile(x, 5))
    if abs(mu) > 2.0 * ac and ac > 0:
        b.set("ac_dc_ratio", ac / abs(mu))
    else:
        b.issue("ac_dc_ratio: segment has no clear DC level (band-passed?)")
    n = x.size
    if n >= 16 and sd > 0:
        win = np.hanning(n)
        spec = np.abs(np.fft.rfft((x - mu) * win)) ** 2
        freqs = np.fft.rfftfreq(n, 1.0 / fs)
        band = (freqs >= 0.5) & (freqs <= 4.0)
        if np.any(band) and spec[band].max() > 0:
            b.set("dominant_freq_hz", float(freqs[band][np.argmax(spec[band])]))
        wide = (freqs >= 0.5) & (freqs <= min(8.0, fs / 2))
        p = spec[wide]
        if p.size >= 2 and p.sum() > 0:
            p = p / p.sum()
            nz = p[p > 0]
            b.set("spectral_entropy", float(-(nz * np.log(nz)).sum() / np.log(p.size)))
    else:
        b.issue("segment too short or flat for spectral features")


def column_medians(vals: np.ndarray) -> np.ndarray:
    """The median of each column's finite values (NaN for a column without any), as
    ``np.median`` gives it, in one sort for all columns: on the device the per-column
    ``np.median`` calls cost more interpreted instructions than the arithmetic."""
    v = np.asarray(vals, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError(f"column_medians takes a 2-D array with rows, got shape {v.shape}")
    v = np.where(np.isfinite(v), v, np.nan)  # +-inf count as missing, like NaN
    n = np.sum(np.isfinite(v), axis=0)
    s = np.sort(v, axis=0)  # NaN sort last
    cols = np.arange(v.shape[1])
    lo = s[np.maximum((n - 1) // 2, 0), cols]
    hi = s[n // 2 - (n == 0), cols]
    out = (lo + hi) / 2.0
    out[n == 0] = np.nan
    return out


def segment_features(segment, fs: float, *, height_m: float = 1.0) -> FeatureResult:
    """Features of a PPG segment, in ``FEATURE_NAMES`` order.

    Each pulse feature is the median over the segment's valid pulses (a feature
    is valid when at least one pulse gave it); ``hr_bpm`` is 60 over the median
    foot-to-foot interval. A segment with non-finite samples gives no features
    (recorded in ``issues``). Never raises on bad data.
    """
    fs = check_rate(fs)
    x = _as_1d(segment, "segment")
    b = _Builder(FEATURE_NAMES)
    if x.size < MIN_PULSE_SAMPLES:
        b.issue(f"segment has {x.size} samples")
        return b.result()
    if not np.all(np.isfinite(x)):
        b.issue(f"segment holds {int(np.sum(~np.isfinite(x)))} non-finite samples: no features")
        return b.result()
    _common_features(x, fs, b)
    pulses, issues = segment_pulses(x, fs)
    for text in issues:
        b.issue(text)
    if not pulses:
        b.issue("no complete pulse found")
        b.set("n_pulses", 0.0)
        return b.result()
    per = [pulse_features(x[f0:f1 + 1], fs, height_m=height_m) for f0, f1 in pulses]
    vals = np.array([p.to_vector() for p in per])
    n_ok = int(np.sum(np.any(np.isfinite(vals), axis=1)))
    b.set("n_pulses", float(n_ok))
    for name, med in zip(PULSE_FEATURE_NAMES, column_medians(vals)):
        if np.isfinite(med):
            b.set(name, float(med))
    intervals = np.array([f1 - f0 for f0, f1 in pulses], dtype=np.float64) / fs
    b.set("hr_bpm", 60.0 / float(np.median(intervals)))
    return b.result()


@dataclass
class PulseSequence:
    """Per-pulse feature vectors of a segment, padded at the front to ``max_pulses``.

    ``values``: (max_pulses, n_features) NaN-free; ``valid``: same shape, per
    feature; ``step_mask``: (max_pulses,) True where a real pulse sits. The most
    recent pulses are kept and sit at the end (an LSTM reads them last).
    """

    names: tuple[str, ...]
    values: np.ndarray
    valid: np.ndarray
    step_mask: np.ndarray
    issues: list[str] = field(default_factory=list)


def pulse_feature_sequence(segment, fs: float, max_pulses: int, *,
                           height_m: float = 1.0) -> PulseSequence:
    """Per-pulse features of a segment as a fixed-size sequence (see :class:`PulseSequence`)."""
    fs = check_rate(fs)
    if int(max_pulses) < 1:
        raise ConfigError(f"max_pulses must be at least 1, got {max_pulses}")
    max_pulses = int(max_pulses)
    x = _as_1d(segment, "segment")
    nf = len(PULSE_FEATURE_NAMES)
    values = np.zeros((max_pulses, nf))
    valid = np.zeros((max_pulses, nf), dtype=bool)
    step = np.zeros(max_pulses, dtype=bool)
    issues: list[str] = []
    if x.size < MIN_PULSE_SAMPLES or not np.all(np.isfinite(x)):
        issues.append("segment too short or holds non-finite samples: no pulses")
        return PulseSequence(PULSE_FEATURE_NAMES, values, valid, step, issues)
    pulses, seg_issues = segment_pulses(x, fs)
    issues.extend(seg_issues)
    if len(pulses) > max_pulses:
        issues.append(f"{len(pulses) - max_pulses} earliest pulses dropped (max_pulses={max_pulses})")
        pulses = pulses[-max_pulses:]
    start = max_pulses - len(pulses)
    for k, (f0, f1) in enumerate(pulses):
        r = pulse_features(x[f0:f1 + 1], fs, height_m=height_m)
        values[start + k] = r.values
        valid[start + k] = r.valid
        step[start + k] = bool(r.valid.any())
    return PulseSequence(PULSE_FEATURE_NAMES, values, valid, step, issues)


def features_matrix(segments, fs: float, *, height_m=None) -> tuple[np.ndarray, np.ndarray]:
    """Segment features of many segments: (X with NaN where invalid, valid mask).

    ``height_m`` is None (1 m for all), a number, or one height per segment.
    """
    fs = check_rate(fs)
    segs = list(segments)
    if height_m is None:
        heights = np.ones(len(segs))
    else:
        heights = np.broadcast_to(np.asarray(height_m, dtype=np.float64), (len(segs),))
    X = np.full((len(segs), len(FEATURE_NAMES)), np.nan)
    M = np.zeros_like(X, dtype=bool)
    for i, s in enumerate(segs):
        r = segment_features(s, fs, height_m=float(heights[i]))
        X[i] = r.to_vector()
        M[i] = r.valid
    return X, M
