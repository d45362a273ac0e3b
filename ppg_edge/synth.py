"""Seeded synthetic PPG with exact peak truth, and the noise models of the peak paper.

Pulse model: each beat is the sum of two Gaussians, a systolic wave and a
smaller, later diastolic (reflected) wave, the base of the Deep-SimPPG generator
described by Georgieva-Tsaneva 2025 (docs/facts.md; "two Gaussian functions
that describe the basic morphology of the PPG pulse wave"). Beat-to-beat
intervals carry respiratory sinus arrhythmia (a sinusoid at the breathing rate)
plus random variability; amplitudes follow breathing (respiratory-induced
amplitude variation) and vary at random per beat, and so do the timing and
width of both waves.

Noise models (same paper, "Simulation and noise addition"): Gaussian white
noise, sinusoidal baseline drift ``A sin(2 pi f t + phi)``, motion artefacts as a
sum of Gaussian bumps ``A_i exp(-(t - t_i)^2 / (2 sigma_i^2))``, plus 50/60 Hz
mains interference. The noise is scaled to a signal-to-noise ratio measured
against the 0.5-8 Hz band-passed clean signal.

Everything random comes from the one ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

NOISE_KINDS = ("gaussian", "baseline", "motion", "mains50", "mains60")
#: Noise from real signals (needs a bank: :mod:`ppg_edge.noise_bank`).
REAL_NOISE = "real"


@dataclass
class SynthPPG:
    """A synthetic record.

    ``peaks``: index of each pulse's systolic maximum in ``signal`` (verified to
    be a local maximum of the sampled signal). ``beat_times_s``: onset time of
    every beat that starts inside the record; ``rr_s``: intervals between all
    generated beats. ``unverified``: beats whose systolic maximum could not be
    confirmed as a local maximum (left out of ``peaks``; 0 for sane settings).
    """

    signal: np.ndarray
    peaks: np.ndarray
    fs: float
    beat_times_s: np.ndarray
    rr_s: np.ndarray
    hr_bpm: float
    unverified: int = 0

    @property
    def duration_s(self) -> float:
        return self.signal.size / self.fs


def _check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be positive and finite, got {value!r}")
    return v


def rr_series(duration_s: float, hr_bpm: float, rng: np.random.Generator, hrv: float = 0.03,
              rsa: float = 0.04, resp_hz: float = 0.25) -> np.ndarray:
    """Beat onset times (s) from ``-1 RR`` to past ``duration_s``.

    ``RR_k = RR0 * (1 + rsa * sin(2 pi resp_hz t_k + phi) + hrv * N(0, 1))``,
    clipped to [0.5, 1.5] * RR0 and to at least 0.25 s.
    """
    rr0 = 60.0 / hr_bpm
    phi = rng.uniform(0, 2 * np.pi)
    t = -rr0 * rng.uniform(0.2, 1.0)
    times = []
    while t < duration_s + 2 * rr0:
        times.append(t)
        rr = rr0 * (1 + rsa * np.sin(2 * np.pi * resp_hz * t + phi) + hrv * rng.standard_normal())
        t += max(0.25, min(1.5 * rr0, max(0.5 * rr0, rr)))
    return np.array(times)


def synth_ppg(duration_s: float, fs: float, rng: np.random.Generator, hr_bpm: float = 70.0,
              hrv: float = 0.03, rsa: float = 0.04, resp_hz: float = 0.25, amp_var: float = 0.1,
              riav: float = 0.1, morph_var: float = 0.05, diastolic_ratio: float = 0.45,
              offset: float = 0.0) -> SynthPPG:
    """Synthetic PPG of ``duration_s`` seconds at ``fs`` Hz with exact systolic peak indices.

    Per beat of interval ``RR`` (s) from onset: systolic Gaussian at ``0.22 RR``
    (width ``0.09 RR``), diastolic at ``0.55 RR`` (width ``0.13 RR``) with
    ``diastolic_ratio`` of the systolic amplitude; ``morph_var`` jitters these
    fractions, ``amp_var`` the amplitude, ``riav`` modulates it with breathing.
    ``hr_bpm`` is the mean rate (30-220 bpm). ``offset`` is added (e.g. a sensor DC level).
    """
    duration_s = _check_positive("duration_s", duration_s)
    fs = _check_positive("fs", fs)
    hr_bpm = _check_positive("hr_bpm", hr_bpm)
    if not 30 <= hr_bpm <= 220:
        raise ConfigError(f"hr_bpm={hr_bpm} is outside the physiological range 30-220")
    if not 0 <= diastolic_ratio <= 0.7:
        raise ConfigError(f"diastolic_ratio={diastolic_ratio} must be in [0, 0.7] (systolic wave dominant)")
    for name, v in (("hrv", hrv), ("rsa", rsa), ("amp_var", amp_var), ("riav", riav),
                    ("morph_var", morph_var)):
        if not (np.isfinite(v) and 0 <= v <= 0.3):
            raise ConfigError(f"{name}={v} must be in [0, 0.3]")
    n = int(round(duration_s * fs))
    if n < 3:
        raise ConfigError(f"{duration_s} s at {fs} Hz gives fewer than 3 samples")
    onsets = rr_series(duration_s, hr_bpm, rng, hrv, rsa, resp_hz)
    rr = np.diff(onsets)
    onsets = onsets[:-1]
    t = np.arange(n) / fs
    x = np.zeros(n)
    resp_phi = rng.uniform(0, 2 * np.pi)
    centres, widths = [], []
    for t0, r in zip(onsets, rr):
        a1 = max(0.2, 1 + amp_var * rng.standard_normal()) * (1 + riav * np.sin(2 * np.pi * resp_hz * t0 + resp_phi))
        jit = 1 + morph_var * rng.standard_normal(4).clip(-2, 2)
        c1, s1 = t0 + 0.22 * r * jit[0], 0.09 * r * jit[1]
        c2, s2 = t0 + 0.55 * r * jit[2], 0.13 * r * jit[3]
        a2 = diastolic_ratio * a1
        lo = max(0, int(np.floor((c1 - 6 * s1) * fs)))
        hi = min(n, int(np.ceil((c2 + 6 * s2) * fs)) + 1)
        if hi > lo:
            tt = t[lo:hi]
            x[lo:hi] += a1 * np.exp(-0.5 * ((tt - c1) / s1) ** 2) + a2 * np.exp(-0.5 * ((tt - c2) / s2) ** 2)
        centres.append(c1)
        widths.append(s1)
    peaks, unverified = [], 0
    for c1, s1 in zip(centres, widths):
        if not 0 <= c1 < duration_s:
            continue
        half = max(s1, 1.5 / fs)
        lo = max(0, int(np.floor((c1 - half) * fs)))
        hi = min(n, int(np.ceil((c1 + half) * fs)) + 1)
        i = lo + int(np.argmax(x[lo:hi]))
        if 1 <= i <= n - 2 and x[i] > x[i - 1] and x[i] >= x[i + 1]:
            if not peaks or i > peaks[-1]:
                peaks.append(i)
                continue
        if 1 <= i <= n - 2:  # interior beat that failed the check
            unverified += 1
    if unverified:
        log.warning("synth_ppg: %d beat(s) without a verifiable systolic maximum were left out", unverified)
    inside = (onsets >= 0) & (onsets < duration_s)
    return SynthPPG(signal=x + offset, peaks=np.array(peaks, dtype=np.int64), fs=fs,
                    beat_times_s=onsets[inside], rr_s=rr, hr_bpm=hr_bpm, unverified=unverified)


# ------------------------------------------------------------------------- noise
def band_power(x, fs: float, band: tuple[float, float] = (0.5, 8.0)) -> float:
    """Mean power of ``x`` after the causal Butterworth band-pass (4th order) over ``band``.

    The high edge is lowered to 0.45 ``fs`` for low rates. The filter starts from
    the steady state of the first sample and the first second is left out of the
    mean when the record is longer than 2 s (start-up transient).
    """
    from .dsp.filters import SOSFilter, design_bandpass

    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"band power needs a non-empty 1-D signal, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError("band power input has NaN or infinite values")
    low, high = band[0], min(band[1], 0.45 * fs)
    f = SOSFilter(design_bandpass(low, high, fs))
    f.prime(arr[0])
    y = f.process(arr)
    skip = int(fs) if arr.size > 2 * fs else 0
    return float(np.mean(y[skip:] ** 2))


def make_noise(n: int, fs: float, kind: str, rng: np.random.Generator, bank=None) -> np.ndarray:
    """Unscaled noise of ``kind`` (see ``NOISE_KINDS``, or ``REAL_NOISE``), ``n`` samples at ``fs``.

    * ``gaussian``: white ``N(0, 1)`` (sensor electronics).
    * ``baseline``: ``sin(2 pi f t + phi)``, ``f`` uniform in 0.05-0.5 Hz (breathing, posture).
    * ``motion``: Gaussian bumps, one per 10 s on average (at least one), centres
      uniform, widths 0.1-0.5 s, amplitudes ``N(0, 1)``.
    * ``mains50`` / ``mains60``: ``cos(2 pi f t + phi)`` at 50 / 60 Hz; at rates
      below twice that it appears aliased, as a sampled sensor would see it.
    * ``real``: pieces of real noise from ``bank`` (a :class:`ppg_edge.noise_bank.RealNoise`
      at ``fs``; see :func:`ppg_edge.noise_bank.load_real_noise`).
    """
    if kind == REAL_NOISE:
        if bank is None:
            raise ConfigError("noise kind 'real' needs a bank: ppg_edge.noise_bank.load_real_noise(fs)")
        if abs(bank.fs - fs) > 1e-6:
            raise ConfigError(f"real noise bank is at {bank.fs:g} Hz, the signal at {fs:g} Hz")
        return bank.make(n, rng)
    t = np.arange(n) / fs
    if kind == "gaussian":
        return rng.standard_normal(n)
    if kind == "baseline":
        return np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    if kind == "motion":
        k = max(1, int(rng.poisson(n / fs / 10.0)))
        out = np.zeros(n)
        for c, s, a in zip(rng.uniform(0, n / fs, k), rng.uniform(0.1, 0.5, k), rng.standard_normal(k)):
            out += a * np.exp(-0.5 * ((t - c) / s) ** 2)
        return out
    if kind in ("mains50", "mains60"):
        f = 50.0 if kind == "mains50" else 60.0
        return np.cos(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    raise ConfigError(f"unknown noise kind {kind!r}; valid: {list(NOISE_KINDS)}")


def add_noise(x, fs: float, kind: str, snr_db: float, rng: np.random.Generator, reference=None,
              bank=None) -> np.ndarray:
    """``x`` plus noise of ``kind`` scaled so that ``10 log10(P_ref / P_noise) = snr_db``.

    ``P_ref`` is :func:`band_power` of the clean signal: ``reference`` when given
    (a clean signal of the same length, or its power as a number; use it when
    ``x`` already carries other noise), else ``x``. ``P_noise`` is the mean square
    of the added noise itself (not band-passed). ``bank``: the real-noise bank for
    ``kind="real"``.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"add_noise needs a non-empty 1-D signal, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError("add_noise input has NaN or infinite values")
    fs = _check_positive("fs", fs)
    if not np.isfinite(snr_db):
        raise ConfigError(f"snr_db must be finite, got {snr_db!r}")
    if kind not in NOISE_KINDS and kind != REAL_NOISE:
        raise ConfigError(f"unknown noise kind {kind!r}; valid: {[*NOISE_KINDS, REAL_NOISE]}")
    if reference is None:
        p_ref = band_power(arr, fs)
    elif np.ndim(reference) == 0:
        p_ref = float(reference)
    else:
        ref = np.asarray(reference, dtype=np.float64)
        if ref.shape != arr.shape:
            raise DataError(f"reference has shape {ref.shape}, signal {arr.shape}")
        p_ref = band_power(ref, fs)
    if not (np.isfinite(p_ref) and p_ref > 0):
        raise DataError(f"reference signal has no power in the 0.5-8 Hz band (P={p_ref}); SNR undefined")
    noise = make_noise(arr.size, fs, kind, rng, bank)
    p_noise = float(np.mean(noise ** 2))
    if p_noise < 1e-20:
        raise DataError(f"{kind} noise at {fs} Hz has no power over {arr.size} samples "
                        "(aliased mains at a multiple of the rate?)")
    return arr + noise * np.sqrt(p_ref / (10 ** (snr_db / 10) * p_noise))
