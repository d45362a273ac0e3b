"""The offline (batch) reference of the streaming pipeline, numpy only.

What an offline evaluation of a peak model does with a whole recording, written
once so that the streaming path can be checked against it and benchmarked
beside it:

1. resample the sensor samples to the model rate in one call
   (:class:`~.resample.StreamResampler` with a single block: the same polyphase
   filter, no block boundaries);
2. the batch preprocessing ``spec.apply`` (filter, frame, normalise, DWT) and
   ``spec.filter`` for the band-passed PPG;
3. every window through the same :class:`~.interpreter.EdgeModel` (state reset
   before each window, batch 1);
4. :func:`~.peaks_decode.stitch_windows` (mean over overlapping windows) and
   :func:`~.peaks_decode.decode_peaks` with the device runtime's decoder (the model
   manifest's settings with :data:`~.peaks_decode.RUNTIME_DECODER` laid over them,
   :func:`~.peaks_decode.runtime_decoder`) over the whole stream.

The stream decoder (:class:`~.decoder.StreamDecoder`, ``stitch="mean"``) is
built to give the same beats.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ppg_edge.dsp.pipeline import Preprocessing
from ppg_edge.errors import DataError

from . import peaks_decode
from .peaks_decode import DecoderSpec
from .resample import StreamResampler

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """Offline result on one record at the model rate."""

    x: np.ndarray  # the record at the model rate
    filtered: np.ndarray  # band-passed PPG (``spec.filter``)
    windows: np.ndarray  # model inputs (n_windows, window, channels)
    window_probs: np.ndarray  # (n_windows, window)
    probs: np.ndarray  # stitched per-sample probabilities over the covered samples
    beats: np.ndarray  # decoded peak indices (model rate)


def to_model_rate(x, fs_in: float, fs_model: float) -> np.ndarray:
    """Resample a whole record in one call (the streaming resampler, one block)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise DataError("offline path needs a 1-D record of finite samples")
    return StreamResampler(fs_in, fs_model).push(arr)[0]


def windows_probs(model, windows: np.ndarray) -> np.ndarray:
    """Run every window through ``model.predict_window`` (batch 1): ``(n, window)``."""
    out = np.zeros((len(windows), windows.shape[1]))
    for k, w in enumerate(windows):
        out[k] = model.predict_window(w)
    return out


def decode_stream(probs: np.ndarray, filtered: np.ndarray | None, fs: float,
                  decoder: DecoderSpec | dict | None, raw: np.ndarray | None = None) -> np.ndarray:
    """``decode_peaks`` with a manifest's decoder settings (snap to ``filtered`` when they say so,
    then onto the ``raw`` PPG's axis when they give ``raw_axis_shift_samples``)."""
    d = decoder if isinstance(decoder, DecoderSpec) else DecoderSpec.from_dict(decoder)
    det = peaks_decode.decode_peaks(probs, fs, signal=filtered if d.snap else None, **d.decode_kwargs())
    if d.raw_axis_shift_samples is None or raw is None or det.size == 0:
        return det
    x = np.asarray(raw, dtype=np.float64)
    pos = np.clip(det - d.raw_axis_shift_samples, 0, x.size - 1)
    return peaks_decode.snap_to_raw(pos, x, fs, *d.raw_snap())


def offline_peaks(model, x, fs_in: float | None = None, spec: Preprocessing | None = None) -> BatchResult:
    """The offline evaluation of ``model`` (an :class:`~.interpreter.EdgeModel`) on ``x``.

    ``fs_in``: the rate of ``x`` (default: the model's); ``spec``: preprocessing
    (default: the model's). Beats are model-rate indices over the samples the
    windows cover.
    """
    spec = spec or model.spec
    fs_in = spec.fs if fs_in is None else float(fs_in)
    y = to_model_rate(x, fs_in, spec.fs) if abs(fs_in - spec.fs) > 1e-9 else np.asarray(x, dtype=np.float64)
    X = spec.apply(y)
    if len(X) == 0:
        raise DataError(f"record of {y.size} samples is shorter than one {spec.window}-sample window")
    wp = windows_probs(model, X)
    n = (len(X) - 1) * spec.hop + spec.window
    probs = peaks_decode.stitch_windows(wp, spec.hop, n)
    filtered = spec.filter(y)[:n]
    beats = decode_stream(probs, filtered, spec.fs, peaks_decode.runtime_decoder(getattr(model, "decoder", None)),
                          raw=y[:n])
    return BatchResult(x=y, filtered=filtered, windows=X, window_probs=wp, probs=probs, beats=beats)
