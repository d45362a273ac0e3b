"""A saved peak model as a detector of the evaluation harness: ``detect(signal, fs) -> indices``.

:class:`PeakModelDetector` runs a trained model folder (``<name>.weights.h5`` and
``<name>.json`` written by ``ppg-edge train peaks``) over a whole record exactly as
training validated it (``ppg_edge.train.peaks.train.val_streams`` and ``evaluate_val``):

1. the record is resampled to the model's rate (``scipy.signal.resample_poly``,
   :mod:`ppg_edge.data.resample`) when it has another one;
2. the end of the record is completed to a whole number of windows by mirroring its
   last samples, so the windows cover every sample (detections in the mirrored part are
   dropped); a record shorter than one window is refused with ``DataError``;
3. the device preprocessing of the model's JSON (causal band-pass, 2 s windows every
   1 s, z-score per window, DWT detail channel: :class:`ppg_edge.dsp.pipeline.Preprocessing`),
   the Keras model, window stitching (:func:`ppg_edge.edge_runtime.peaks_decode.stitch_windows`);
4. the decoder (:func:`ppg_edge.edge_runtime.peaks_decode.decode_peaks`) with the model's
   validation threshold and decoder settings, snapping to the filtered PPG maximum;
5. the mapping onto the raw PPG axis (:func:`ppg_edge.edge_runtime.peaks_decode.to_raw_axis`):
   back by the measured median filter shift (``raw_axis_shift_samples``), then back to the
   record's own rate (``round(i * fs / model_fs)``), then, for ``raw_axis.mapping == "snap"``,
   to the raw PPG maximum within ``raw_axis.radius_s`` at the record's own rate.

The model JSON's decoder settings are read as one
:class:`~ppg_edge.edge_runtime.peaks_decode.DecoderSpec` (``DecoderSpec.from_model_meta``, as
the converter writes them into the device manifest). Its ``raw_axis`` decides step 5 (when
absent: the spec's default snap, what training validated and the model card reports). ``"shift"`` skips
the raw snap; ``smooth_s`` > 0 snaps to the maximum of the raw PPG smoothed by a centred
moving average of that width (white noise moves the raw maximum less then). The choice
is made on validation subjects only (``python -m ppg_edge.train.peaks.detector
--choose-mapping``; see docs/peak_training.md).

Rebuilding the Keras network from its saved config is the training code's
(``ppg_edge.train.peaks.fit.load_peak_model``): this module does not import it but takes
it as ``load_model``; :func:`ppg_edge.evaluate.detectors.load_peak_model_detector` hands over
:func:`~ppg_edge.evaluate.detectors.load_keras_peak_model`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.peaks_decode import DEFAULT_DECODER, RAW_AXIS_MAPPINGS, DecoderSpec
from ppg_edge.errors import ConfigError, DataError, ModelError

from ..dsp.rates import check_rate

log = logging.getLogger(__name__)

#: ``load_model(path_stem) -> (keras_model, config)``
ModelLoader = Callable[[Path], "tuple[Any, Any]"]

MAPPINGS = RAW_AXIS_MAPPINGS


def model_files(path) -> tuple[Path, str]:
    """``(folder, stem)`` of a saved model given its folder or its ``<stem>`` path."""
    p = Path(path)
    if p.is_dir():
        metas = sorted(q for q in p.glob("*.json")
                       if q.name != "report.json" and q.with_name(q.stem + ".weights.h5").is_file())
        if not metas:
            raise ConfigError(f"{p}: no peak model here (want <name>.json beside <name>.weights.h5)")
        if len(metas) > 1:
            names = [m.stem for m in metas]
            raise ConfigError(f"{p}: several peak models {names}; name one as {p}/<name>")
        return p, metas[0].stem
    stem = p.name
    for suffix in (".weights.h5", ".json"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if not (p.parent / f"{stem}.json").is_file():
        raise ConfigError(f"{path}: peak model not found (no folder {p}, no {p.parent / (stem + '.json')})")
    return p.parent, stem


class PeakModelDetector:
    """A trained peak model folder as a detector (see the module docstring).

    ``path`` is the model folder (``models/peaks/Type30``) or its file stem
    (``models/peaks/Type30/Type30``); ``load_model`` rebuilds the Keras model from that
    stem (see the module docstring). Raises ``ConfigError`` when there is no model there
    and ``ModelError`` when its JSON or weights are corrupt or do not fit.
    """

    def __init__(self, path, load_model: ModelLoader, batch_size: int = 256):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        from ppg_edge.dsp.pipeline import Preprocessing

        folder, stem = model_files(path)
        meta_path = folder / f"{stem}.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta_path}: not a readable peak model description ({exc})") from exc
        missing = [k for k in ("preprocessing", "threshold", "raw_axis_shift_samples")
                   if k not in (meta if isinstance(meta, dict) else {})]
        if missing:
            raise ModelError(f"{meta_path}: lacks {missing} (not a trained model folder of "
                             "`ppg-edge train peaks`)")
        try:
            self.prep = Preprocessing.from_dict(meta["preprocessing"])
        except ConfigError as exc:
            raise ModelError(f"{meta_path}: bad preprocessing spec: {exc}") from exc
        self.model, self.config = load_model(folder / stem)
        if tuple(self.model.input_shape[1:]) != (self.prep.window, len(self.prep.channels)):
            raise ModelError(f"{meta_path}: model input {self.model.input_shape[1:]} does not fit "
                             f"the preprocessing ({self.prep.window}, {len(self.prep.channels)})")
        if len(self.model.output_shape) != 2 or self.model.output_shape[1] != self.prep.window:
            raise ModelError(f"{meta_path}: model gives {self.model.output_shape[1:]}, not one "
                             "probability per sample (a paper-head model cannot localise peaks)")
        self.name = stem
        self.path = folder / stem
        self.meta = meta
        self.fs = float(self.prep.fs)
        try:
            self.decoder = DecoderSpec.from_model_meta(meta)
        except ConfigError as exc:
            raise ModelError(f"{meta_path}: {exc}") from exc
        self.threshold = self.decoder.threshold
        self.shift = int(meta["raw_axis_shift_samples"])
        # as the model JSON says it (with its provenance), the default snap when it says nothing;
        # the same keys the spec's raw_snap_* fields were read from
        self.raw_axis = {"mapping": "snap", "radius_s": DEFAULT_DECODER.raw_snap_radius_s,
                         **(meta.get("raw_axis") or {})}
        self.batch_size = int(batch_size)
        self._last: tuple[tuple, dict] | None = None  # streams of the last signal (mapping studies)
        self._resampled: tuple[tuple, np.ndarray] | None = None

    # ------------------------------------------------------------------ pieces
    def streams(self, x: np.ndarray) -> dict:
        """Probabilities and filtered PPG of a record already at the model's rate.

        Returns ``{"n": samples of x, "probs", "filtered"}`` over the padded length
        (a whole number of windows covering ``x``).
        """
        from ppg_edge.edge_runtime.peaks_decode import stitch_windows

        x = np.asarray(x, dtype=np.float64)
        key = (x.size, hashlib.sha1(x.tobytes()).hexdigest())
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        n = x.size
        win, hop = self.prep.window, self.prep.hop
        if n < win:
            raise DataError(f"{self.name}: signal of {n} samples at {self.fs:g} Hz is shorter than "
                            f"one {win}-sample window ({win / self.fs:g} s)")
        covered = (n - win) // hop * hop + win
        padded = x if covered == n else np.pad(x, (0, covered + hop - n), mode="reflect")
        windows = self.prep.apply(padded)
        total = (len(windows) - 1) * hop + win
        probs = self.model.predict(windows, batch_size=self.batch_size, verbose=0)
        out = {"n": n, "probs": stitch_windows(probs, hop, total),
               "filtered": self.prep.filter(padded)[:total]}
        self._last = (key, out)
        return out

    def detect_at_model_rate(self, x: np.ndarray, mapping: str | None = None,
                             radius_s: float | None = None,
                             smooth_s: float | None = None,
                             refine_s: float | None = None,
                             threshold: float | None = None) -> np.ndarray:
        """Peaks of ``x`` (at the model's rate) on its raw axis, mapped per ``mapping``."""
        from ppg_edge.edge_runtime.peaks_decode import decode_peaks, to_raw_axis

        s = self.streams(x)
        kw = self.decoder.decode_kwargs()
        if threshold is not None:
            kw["threshold"] = float(threshold)
        det = decode_peaks(s["probs"], self.fs, signal=s["filtered"] if self.decoder.snap else None, **kw)
        det = det[det - self.shift < s["n"]]
        pos = to_raw_axis(det, s["n"], self.shift) if det.size else det
        if (mapping or self.raw_axis["mapping"]) == "snap" and pos.size:
            pos = self._snap(pos, np.asarray(x, dtype=np.float64), self.fs, radius_s, smooth_s,
                             refine_s)
        return pos

    def _snap(self, pos, x, fs, radius_s=None, smooth_s=None, refine_s=None) -> np.ndarray:
        """``pos`` moved to the maximum of the raw PPG (moving-average smoothed over
        ``smooth_s``, centred, when > 0) within ``radius_s``; then, when ``refine_s`` > 0,
        to the maximum of the raw PPG itself within ``refine_s`` (undoes the small
        displacement smoothing gives an asymmetric pulse)."""
        from ppg_edge.edge_runtime.peaks_decode import snap_to_raw

        radius_s = float(radius_s if radius_s is not None else self.raw_axis["radius_s"])
        smooth_s = float(smooth_s if smooth_s is not None else self.raw_axis.get("smooth_s", 0.0))
        refine_s = float(refine_s if refine_s is not None else self.raw_axis.get("refine_s", 0.0))
        return snap_to_raw(np.clip(pos, 0, x.size - 1), x, fs, radius_s, smooth_s, refine_s)

    # ------------------------------------------------------------------ detector
    def detect(self, signal, fs: float, mapping: str | None = None,
               radius_s: float | None = None, smooth_s: float | None = None,
               refine_s: float | None = None, threshold: float | None = None) -> np.ndarray:
        """Sorted peak indices of ``signal`` (sampled at ``fs`` Hz) on its own raw axis.

        ``mapping`` / ``radius_s`` / ``smooth_s`` / ``refine_s`` override the model's ``raw_axis`` setting,
        ``threshold`` its decision threshold (studies on validation subjects)."""
        from ppg_edge.data.resample import map_indices, rational_factor, resample_signal

        x = np.asarray(signal, dtype=np.float64)
        if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
            raise DataError(f"{self.name}: signal must be a non-empty 1-D finite array")
        fs = check_rate(fs, f"{self.name}: sampling rate", error=DataError, number=True)
        mapping = mapping or self.raw_axis["mapping"]
        if mapping not in MAPPINGS:
            raise ConfigError(f"mapping {mapping!r}; valid: {list(MAPPINGS)}")
        up, down = rational_factor(fs, self.fs)
        if up == down:
            return self.detect_at_model_rate(x, mapping, radius_s, smooth_s, refine_s, threshold)
        key = (x.size, fs, hashlib.sha1(x.tobytes()).hexdigest())
        if self._resampled is not None and self._resampled[0] == key:
            y = self._resampled[1]
        else:
            y = resample_signal(x, up, down)
            self._resampled = (key, y)
        pos = self.detect_at_model_rate(y, "shift", threshold=threshold)
        pos, _ = map_indices(pos, down, up, x.size)
        if mapping == "snap" and pos.size:
            pos = self._snap(pos, x, fs, radius_s, smooth_s, refine_s)
        return pos
