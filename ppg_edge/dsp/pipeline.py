"""The preprocessing spec that training, conversion and the device runtime all call.

A :class:`Preprocessing` holds every choice that shapes a model's input (rate,
band-pass ``sos``, float or Q31 arithmetic, normalisation, derivative and DWT
channels, window and hop) and goes into the model manifest with
:meth:`Preprocessing.to_dict` (plain JSON types). The device rebuilds it with
:meth:`Preprocessing.from_dict` and needs numpy only, because the filter
coefficients travel in the dict; scipy is needed only when a spec is created
without ``sos`` (host-side design).

:meth:`Preprocessing.apply` turns one whole record into model input
``(n_windows, window, n_channels)`` float32:

1. causal band-pass over the whole record (float DF2T or CMSIS-style Q31 DF1).
   ``initial="steady"`` subtracts the first sample and starts from a zero state:
   because the band-pass blocks DC this equals starting from the steady state of
   the first sample (no start-up transient), and it keeps a raw sensor's DC
   level out of the fixed-point range. ``initial="zero"`` filters ``x`` as is
   from a zero state;
2. derivative channels VPG/APG/JPG over the filtered record (causal backward
   differences), if ``derivatives``;
3. framing into windows of ``window`` samples every ``hop``;
4. per-window normalisation of each of those channels;
5. DWT detail channels (``dwt_levels``) of each window's *normalised* PPG,
   brought back to the window length (each coefficient held for ``2**j``
   samples, centred; see :func:`ppg_edge.dsp.dwt.detail_to_length`). These are
   already scale-free and are not normalised again.

Channel order: ``ppg``, then ``vpg apg jpg`` if derivatives, then ``d1 .. dL``.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError
from . import derivatives as _deriv
from . import dwt as _dwt
from . import filters as _filters
from . import normalize as _norm
from . import windows as _win

log = logging.getLogger(__name__)

ARITHMETIC = ("float", "q31")
INITIAL = ("steady", "zero")
NORMALISATIONS = ("zscore", "minmax", "none")
SPEC_VERSION = 1


@dataclass
class Preprocessing:
    """Everything between a raw record and the model input. See the module docstring."""

    fs: float
    band: tuple[float, float]
    order: int = 4
    sos: list[list[float]] | None = None
    arithmetic: str = "float"
    q31_frac_bits: int = 24
    initial: str = "steady"
    normalisation: str = "zscore"
    derivatives: bool = False
    dwt_levels: tuple[int, ...] = ()
    wavelet: str = "db4"
    dwt_mode: str = "symmetric"
    dwt_align: str = "center"
    window: int = 250
    hop: int = 125
    version: int = field(default=SPEC_VERSION)

    def __post_init__(self) -> None:
        try:
            self.fs = float(self.fs)
            self.band = (float(self.band[0]), float(self.band[1]))
            self.dwt_levels = tuple(int(j) for j in self.dwt_levels)
        except (TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"preprocessing spec: bad fs/band/dwt_levels: {exc}") from exc
        _filters.check_band(*self.band, self.fs)
        if self.version != SPEC_VERSION:
            raise ConfigError(f"preprocessing spec version {self.version} is not {SPEC_VERSION}")
        for name, value, valid in (("arithmetic", self.arithmetic, ARITHMETIC),
                                   ("initial", self.initial, INITIAL),
                                   ("normalisation", self.normalisation, NORMALISATIONS),
                                   ("dwt_mode", self.dwt_mode, _dwt.MODES),
                                   ("dwt_align", self.dwt_align, ("center", "start")),
                                   ("wavelet", self.wavelet, tuple(_dwt.WAVELETS))):
            if value not in valid:
                raise ConfigError(f"preprocessing spec: {name}={value!r}; valid: {list(valid)}")
        if not (isinstance(self.q31_frac_bits, int) and 0 <= self.q31_frac_bits <= 31):
            raise ConfigError(f"q31_frac_bits must be an integer in 0..31, got {self.q31_frac_bits!r}")
        _win.n_windows(0, self.window, self.hop)  # validates window/hop
        if self.dwt_levels:
            taps = _dwt.WAVELETS[self.wavelet][0].size
            max_level = int(np.floor(np.log2(self.window / (taps - 1))))
            if min(self.dwt_levels) < 1 or max(self.dwt_levels) > max_level:
                raise ConfigError(f"dwt_levels {self.dwt_levels} out of 1..{max_level} for "
                                  f"{self.window}-sample windows")
            if len(set(self.dwt_levels)) != len(self.dwt_levels):
                raise ConfigError(f"dwt_levels {self.dwt_levels} repeat a level")
        if self.sos is None:
            try:
                sos = _filters.design_bandpass(*self.band, self.fs, self.order)
            except ImportError as exc:  # on the device: the manifest must carry sos
                raise ConfigError("preprocessing spec has no sos and scipy is not available "
                                  "to design it; take sos from the model manifest") from exc
        else:
            sos = _filters.validate_sos(self.sos)
        if sos.shape[0] != self.order:
            raise ConfigError(f"sos has {sos.shape[0]} sections but a band-pass of order "
                              f"{self.order} has {self.order}")
        self.sos = sos.tolist()

    # ---------------------------------------------------------------- facts
    @property
    def channels(self) -> tuple[str, ...]:
        ch = ["ppg"]
        if self.derivatives:
            ch += ["vpg", "apg", "jpg"]
        ch += [f"d{j}" for j in self.dwt_levels]
        return tuple(ch)

    def delay_samples(self, freq_hz: float = 1.0) -> float:
        """Group delay of the band-pass at ``freq_hz``, in samples (the pulse lags by this)."""
        return _filters.group_delay(self.sos, self.fs, freq_hz)

    def window_starts(self, n: int) -> np.ndarray:
        """Absolute start sample of each window of an ``n``-sample record."""
        return _win.window_starts(n, self.window, self.hop)

    # ---------------------------------------------------------------- dict
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["band"] = list(self.band)
        d["dwt_levels"] = list(self.dwt_levels)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        if not isinstance(d, dict):
            raise ConfigError(f"preprocessing spec must be a mapping, got {type(d).__name__}")
        d = dict(d)
        channels = d.pop("channels", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"preprocessing spec has unknown keys {unknown}")
        missing = [k for k in ("fs", "band") if k not in d]
        if missing:
            raise ConfigError(f"preprocessing spec lacks {missing}")
        spec = cls(**d)
        if channels is not None and tuple(channels) != spec.channels:
            raise ConfigError(f"preprocessing spec lists channels {list(channels)} but its settings "
                              f"give {list(spec.channels)}")
        return spec

    # ---------------------------------------------------------------- run
    def _check_record(self, x) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 1:
            raise DataError(f"preprocessing takes one 1-D record, got shape {arr.shape}")
        if arr.size == 0:
            raise DataError("preprocessing got an empty record")
        if not np.isfinite(arr).all():
            bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise DataError(f"record has {bad} NaN or infinite sample(s); clean or cut them first")
        return arr

    def filter(self, x) -> np.ndarray:
        """Causal band-pass over a whole record (float64 out, float units)."""
        arr = self._check_record(x)
        if self.initial == "steady":
            arr = arr - arr[0]
        if self.arithmetic == "float":
            return _filters.SOSFilter(self.sos).process(arr)
        q, sat_in = _filters.to_q31(arr, self.q31_frac_bits)
        c = _filters.Q31BiquadCascade.from_sos(self.sos)
        yq = c.process(q)
        if sat_in or c.saturations:
            log.warning("Q31 band-pass saturated %d input and %d filter sample(s); lower q31_frac_bits",
                        sat_in, c.saturations)
        return _filters.from_q31(yq, self.q31_frac_bits)

    def apply(self, x) -> np.ndarray:
        """Record -> model input ``(n_windows, window, len(channels))`` float32.

        A record shorter than one window gives zero windows.
        """
        y = self.filter(x)
        rec = _deriv.derivative_stack(y, self.fs) if self.derivatives else y[:, None]
        frames = _win.frame(rec, self.window, self.hop)  # (nw, win, c)
        nw = frames.shape[0]
        if nw == 0:
            return np.zeros((0, self.window, len(self.channels)), dtype=np.float32)
        per_win = np.moveaxis(frames, 1, -1)  # (nw, c, win)
        normed = _norm.normalise(per_win, self.normalisation)
        parts = [np.moveaxis(normed, 1, -1)]  # (nw, win, c)
        if self.dwt_levels:
            det = _dwt.dwt_details(normed[:, 0, :], self.wavelet, self.dwt_levels, self.dwt_mode)
            parts.append(_dwt.details_to_length(det, self.window, self.dwt_align, self.wavelet))
        return np.concatenate(parts, axis=-1).astype(np.float32)


def peaks_preprocessing(fs: float = 125.0, dwt_level: int | None = None, **overrides) -> Preprocessing:
    """Peak-detection input: 0.5-8 Hz band-pass, 2 s windows, 50% overlap, z-score;
    with ``dwt_level`` L the db4 details d1..dL are added (the peak paper's best
    model uses 3 levels; Georgieva-Tsaneva 2025, docs/facts.md)."""
    if dwt_level not in (None, 1, 2, 3, 4):
        raise ConfigError(f"dwt_level must be None or 1..4, got {dwt_level!r}")
    win, hop = _win.default_window(fs)
    kw = dict(fs=fs, band=_filters.BANDS["peaks"], window=win, hop=hop,
              dwt_levels=tuple(range(1, dwt_level + 1)) if dwt_level else ())
    kw.update(overrides)
    return Preprocessing(**kw)


def bp_preprocessing(fs: float = 125.0, **overrides) -> Preprocessing:
    """Blood-pressure input: 0.4-20 Hz band-pass (needs fs > 40 Hz), PPG plus VPG, APG,
    JPG (band-pass and 1st-3rd derivatives as in Hayirlioglu & Semiz
    2025, docs/facts.md), 2 s windows, 50% overlap, z-score per window."""
    win, hop = _win.default_window(fs)
    kw = dict(fs=fs, band=_filters.BANDS["bp"], window=win, hop=hop, derivatives=True)
    kw.update(overrides)
    return Preprocessing(**kw)
