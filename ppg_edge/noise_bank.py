"""Noise taken from real signals, for training and for the ``real`` evaluation condition.

The synthetic noise models of :mod:`ppg_edge.synth` (white Gaussian, baseline wander,
Gaussian motion bumps, mains) are clean shapes. A wearable meets other noise: an optical
sensor with nothing on it, a camera clip a person shook, what a medical monitor leaves
outside the pulse band. :func:`load_real_noise` gathers three kinds from the data root,
each a set of segments at the caller's rate with zero mean and unit RMS:

``no_finger``
    MAX30102 recordings made with no finger on the sensor (``max30102-raw`` records whose
    ``contact`` label is ``"none"``): the sensor's own electronic and ambient-light noise.
``bad_clip``
    BUT PPG smartphone clips that its annotators labelled bad quality (``but-ppg``
    ``quality == "bad"``): motion and pressure artefacts of real use, pulse included.
``residual``
    The difference between a record and its zero-phase 0.5-8 Hz band-passed self (4th-order
    Butterworth, ``scipy.signal.sosfiltfilt``) for records the caller passes (training
    passes its own training records, never test subjects): drift, respiration and the
    monitor's high-frequency noise, with the pulse taken out.

:meth:`RealNoise.make` builds noise of any length from random pieces of random segments,
joined with a 0.25 s linear cross-fade so that the joins add no steps.
:func:`ppg_edge.synth.add_noise` with ``kind="real"`` and ``bank=`` scales it to an SNR
like every other kind. Nothing of the data is stored: the bank is rebuilt from the data
root each time (well under a second).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import config as _config
from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["RealNoise", "SOURCES", "load_real_noise", "residual"]

SOURCES = ("no_finger", "bad_clip", "residual")
CROSSFADE_S = 0.25
MIN_SEGMENT_S = 2.0
RESIDUAL_BAND_HZ = (0.5, 8.0)


@dataclass
class RealNoise:
    """Segments of real noise at ``fs`` (zero mean, unit RMS) and where each came from."""

    fs: float
    segments: list[np.ndarray]
    sources: list[str]  # "<kind>:<dataset>/<record>" per segment
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.segments:
            raise DataError("real noise bank is empty: no no-finger recording, bad clip or "
                            "residual record was found under the data root")
        if len(self.segments) != len(self.sources):
            raise ConfigError("real noise bank: one source per segment")

    def make(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples of noise (unit RMS pieces; the caller scales it)."""
        n = int(n)
        if n <= 0:
            return np.zeros(0)
        fade = max(1, int(round(CROSSFADE_S * self.fs)))
        out = np.zeros(0)
        while out.size < n:
            seg = self.segments[int(rng.integers(len(self.segments)))]
            want = n - out.size + (fade if out.size else 0)
            length = min(seg.size, max(want, 2 * fade))
            start = int(rng.integers(seg.size - length + 1))
            piece = seg[start:start + length] - seg[start:start + length].mean()
            if out.size == 0 or piece.size <= fade or out.size <= fade:
                out = np.concatenate([out, piece])
                continue
            w = np.linspace(0.0, 1.0, fade)
            joined = out[-fade:] * (1.0 - w) + piece[:fade] * w
            out = np.concatenate([out[:-fade], joined, piece[fade:]])
        return out[:n]

    def describe(self) -> dict:
        return {"fs": self.fs, "segments": len(self.segments), "by_kind": dict(self.counts),
                "seconds": round(sum(s.size for s in self.segments) / self.fs, 1)}


def _unit(x: np.ndarray) -> np.ndarray | None:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    rms = float(np.sqrt(np.mean(x ** 2)))
    return x / rms if rms > 1e-12 and np.isfinite(rms) else None


def residual(x: np.ndarray, fs: float) -> np.ndarray:
    """``x`` minus its zero-phase band-passed self (``RESIDUAL_BAND_HZ``, order 4)."""
    from scipy import signal

    from .dsp.filters import design_bandpass

    x = np.asarray(x, dtype=np.float64)
    lo, hi = RESIDUAL_BAND_HZ
    sos = design_bandpass(lo, min(hi, 0.45 * fs), fs)
    return x - signal.sosfiltfilt(sos, x)


def _at_rate(x: np.ndarray, fs_in: float, fs: float) -> np.ndarray:
    from .data.resample import rational_factor, resample_signal

    up, down = rational_factor(fs_in, fs)
    x = np.asarray(x, dtype=np.float64)
    return x if up == down else resample_signal(x, up, down)


def load_real_noise(fs: float, root=None, kinds: Sequence[str] = ("no_finger", "bad_clip"),
                    residual_records: Iterable = ()) -> RealNoise:
    """The bank at ``fs`` from the data root (``root``, default ``PPG_EDGE_DATA``).

    ``kinds``: which of ``SOURCES`` to read from the data root; ``residual_records``
    (records with ``.ppg``, ``.fs`` and ``.key``) add ``residual`` segments. A missing data
    set is logged and skipped; an empty bank is a ``DataError``.
    """
    from . import data as _data

    unknown = set(kinds) - set(SOURCES)
    if unknown:
        raise ConfigError(f"unknown real-noise kinds {sorted(unknown)}; valid: {list(SOURCES)}")
    segments, sources = [], []
    counts = {k: 0 for k in SOURCES}

    def add(kind: str, key: str, x: np.ndarray, fs_in: float) -> None:
        y = _unit(_at_rate(x, fs_in, fs)) if np.isfinite(x).all() else None
        if y is None or y.size < MIN_SEGMENT_S * fs:
            log.debug("real noise: %s %s left out (flat, short or not finite)", kind, key)
            return
        segments.append(y)
        sources.append(f"{kind}:{key}")
        counts[kind] += 1

    wanted = {"no_finger": ("max30102-raw", lambda r: r.labels.get("contact") == "none"),
              "bad_clip": ("but-ppg", lambda r: r.labels.get("quality") == "bad")}
    for kind in kinds:
        if kind == "residual":
            continue
        ds, keep = wanted[kind]
        mod = _data.dataset_module(ds)
        folder = _config.data_root(root) / mod.FOLDER
        try:
            ids = mod.list_records(folder)
        except DataError as exc:
            log.warning("real noise: no %s (%s); the bank goes without %s", ds, exc, kind)
            continue
        for rid in ids:
            rec = mod.load_record(folder, rid)
            if keep(rec):
                add(kind, rec.key, rec.ppg, rec.fs)
    for rec in residual_records:
        add("residual", rec.key, residual(rec.ppg, rec.fs), rec.fs)
    bank = RealNoise(float(fs), segments, sources, counts)
    log.info("real noise bank: %s", bank.describe())
    return bank
