"""Blood-pressure stage: an estimate over a stable stretch, and what it is worth (manifest kind ``"bp"``).

The board's samples (50-100 Hz) are resampled to the model's rate with the numpy polyphase
:class:`~.resample.StreamResampler` and framed by a :class:`~.stream.StreamPreprocessor`
built from the manifest's spec. Two kinds of BP model run here:

* **feature models** (manifest ``mode = "trees"``): the segment features of each window's
  raw PPG (:func:`ppg_edge.features.bp.segment_features`, the one implementation training
  used; without those in sensor units, ``PORTABLE_FEATURE_NAMES``) plus, for ``inputs = "ppg+profile"``, the wearer's age, sex and BMI
  (:class:`~.user.Profile`), into a gradient-boosted tree ensemble evaluated in numpy
  (:class:`~.trees.TreeEnsemble`);
* **window models** (TFLite): the preprocessed window into the network; an optional
  ``target_scaling`` ``{"mean": [...], "std": [...]}`` undoes a standardisation.

**A stretch, not a window.** Windows the quality gate accepts (and, for a feature model,
that hold a usable pulse) join the current stretch; a suppressed window ends it. The
estimate is the mean of the model's window outputs over the stretch's last
``max_windows`` windows, once it holds ``min_windows`` (the default 3 x 2.1 s is what the
cross-validation's subject level averages: a PPG-BP subject's three segments). Each
estimate reports its stretch (``t0``, ``t1``, windows, pulses).

**What it is worth.** The manifest's ``cv`` block holds the subject-wise CV MAE, the
naive (training-mean) MAE and the MASE of each quantity. A quantity whose CV MASE is
>= :data:`MASE_LIMIT` carries no information beyond the population mean, and one that beats
the mean on fewer than :data:`MIN_FOLD_SHARE` of the folds is not stable across wearers: neither
is output (value None, ``withheld`` says why, :func:`withheld_reason`). A model without a ``cv`` block
withholds everything (nobody measured what it is worth). A :class:`~.user.Calibration`
made for this model file (its sha256) maps the estimate through the wearer's cuff
readings; the output then says ``calibrated = True``.

numpy only.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ppg_edge import manifest as _mf
from ppg_edge.dsp.pipeline import Preprocessing
from ppg_edge.errors import ConfigError, ModelError, PPGEdgeError

from .interpreter import EdgeModel
from .quality import QualityConfig, QualityGate
from .resample import StreamResampler, check_rate_for
from .stream import StreamPreprocessor
from .trees import TreeEnsemble
from .user import PROFILE_NAMES, Calibration, Profile

log = logging.getLogger(__name__)

#: a quantity whose CV MASE is at least this is withheld (issue 16: no better than the mean)
MASE_LIMIT = 0.95
#: ... and one that beats the mean on fewer than this share of the CV folds is withheld too: a
#: pooled MASE below the limit made of a few good folds is not a model that works on most wearers
MIN_FOLD_SHARE = 0.8
INPUTS = ("ppg", "ppg+profile")


def withheld_reason(c: dict) -> str | None:
    """Why a quantity with CV figures ``c`` (the manifest's ``cv[q]``) is not shown, or None."""
    mase = c.get("mase", float("inf"))
    if not mase < MASE_LIMIT:
        return (f"CV MASE {mase:.2f} >= {MASE_LIMIT}: no better than the population mean "
                f"(CV MAE {c.get('mae', float('nan')):.1f} mmHg, the mean's {c.get('naive_mae', float('nan')):.1f})")
    k, n = c.get("folds_beating_naive"), c.get("n_folds")
    if k is None or not n or k < MIN_FOLD_SHARE * n:
        return (f"CV MASE {mase:.2f}, but better than the population mean on only {k} of {n} folds "
                f"(needs {MIN_FOLD_SHARE:.0%}): not stable across subjects")
    return None


@dataclass(frozen=True)
class BPEstimate:
    window: int
    start: int  # first sample of the window at the model rate
    t: float  # seconds from the stream start to the window's end
    values: dict[str, float | None]  # what the device shows (calibrated when calibrated; None: withheld)
    window_values: dict[str, float] = field(default_factory=dict)  # this window's model output
    stretch_values: dict[str, float] = field(default_factory=dict)  # uncalibrated mean over the stretch
    stretch: dict = field(default_factory=dict)
    withheld: dict[str, str] = field(default_factory=dict)
    calibrated: bool = False

    def event(self, stage: BPStage) -> dict:
        """The sink's ``bp`` event fields (without ``type``)."""
        return {"t": round(self.t, 3), "window": self.window, **self.values,
                "uncalibrated": {k: round(v, 2) for k, v in self.stretch_values.items()},
                "calibrated": self.calibrated, "inputs": stage.inputs, "quality": self.stretch.get("quality"),
                "stretch": self.stretch, "cv": stage.cv, "withheld": self.withheld, "model": stage.path.name,
                **({"cv_note": stage.cv_note} if stage.cv_note else {})}


class _FeatureTrees:
    """A manifest-verified tree ensemble on :data:`ppg_edge.features.bp.PORTABLE_FEATURE_NAMES` (+ profile)."""

    def __init__(self, path: Path, manifest: dict):
        from ppg_edge.features.bp import PORTABLE_COLUMNS, PORTABLE_FEATURE_NAMES

        self.path = path
        self.trees = TreeEnsemble.load(path)
        src = str(_mf.manifest_path_for(path))
        inputs = manifest.get("inputs_kind", "ppg")
        want = list(PORTABLE_FEATURE_NAMES) + (list(PROFILE_NAMES) if inputs == "ppg+profile" else [])
        self.columns = np.asarray(PORTABLE_COLUMNS)
        names = list(self.trees.feature_names)
        if names != want:
            raise ModelError(f"{src}: the model's features {names[:4]}… ({len(names)}) are not this ppg-edge's "
                             f"{len(want)} ({inputs}): a model for another version of the features")
        if list(self.trees.targets) != list(manifest.get("targets") or ["sbp", "dbp"]):
            raise ModelError(f"{src}: targets {list(self.trees.targets)} disagree with the manifest's")

    def window_output(self, w, fs: float, profile: list[float] | None):
        from ppg_edge.features.bp import segment_features

        f = segment_features(w.raw, fs)
        n_pulses = int(f["n_pulses"]) if np.isfinite(f["n_pulses"]) else 0
        if n_pulses == 0:
            return None, 0
        x = f.to_vector()[self.columns]
        if profile is not None:
            x = np.concatenate([x, profile])
        return self.trees.predict_one(x), n_pulses


class _WindowNet:
    """A TFLite BP model on the preprocessed window."""

    def __init__(self, path: Path, backend: str | None):
        self.model = EdgeModel(path, kind="bp", backend=backend)
        m = self.model.manifest
        out_shape = m["outputs"][0]["shape"]
        n_out = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        targets = list(m.get("targets") or ["sbp", "dbp"])
        if n_out != len(targets):
            raise ModelError(f"{path}: {n_out} outputs but targets {targets}")
        scal = m.get("target_scaling")
        if scal is not None:
            try:
                self.mean = np.asarray(scal["mean"], dtype=np.float64).reshape(n_out)
                self.std = np.asarray(scal["std"], dtype=np.float64).reshape(n_out)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{path}: bad target_scaling in the manifest: {exc}") from exc
        else:
            self.mean, self.std = np.zeros(n_out), np.ones(n_out)

    def window_output(self, w, fs: float, profile):
        raw = np.atleast_1d(self.model.predict_window(w.x)).reshape(-1)
        return raw * self.std + self.mean, -1  # pulses are not counted by a window model


class BPStage:
    """Sensor-rate samples in, :class:`BPEstimate` per accepted window out (see the module docstring)."""

    def __init__(self, model_path, sensor_fs: float, quality: QualityConfig | None = None,
                 backend: str | None = None, *, profile: Profile | None = None,
                 calibration: Calibration | str | Path | None = None,
                 min_windows: int = 3, max_windows: int = 5):
        self.path = Path(model_path)
        if min_windows < 1 or max_windows < min_windows:
            raise ConfigError(f"BP stretch: need 1 <= min_windows <= max_windows, got {min_windows}, {max_windows}")
        m = _mf.verify_model(self.path)
        if m["kind"] != "bp":
            raise ModelError(f"{self.path}: a {m['kind']!r} model where a 'bp' model is needed")
        self.manifest = m
        self.inputs = m.get("inputs_kind", "ppg")
        if self.inputs not in INPUTS:
            raise ModelError(f"{self.path}: inputs_kind {self.inputs!r} is not one of {INPUTS}")
        if m["mode"] == "trees":
            try:
                self.spec = Preprocessing.from_dict(m["preprocessing"])
            except PPGEdgeError as exc:
                raise ModelError(f"{self.path}: preprocessing spec unusable here: {exc}") from exc
            self.fs = float(m["sample_rate_hz"])
            self.model = _FeatureTrees(self.path, m)
        else:
            self.model = _WindowNet(self.path, backend)
            self.spec, self.fs = self.model.model.spec, self.model.model.fs
        if self.inputs == "ppg+profile" and profile is None:
            raise ConfigError(f"{self.path.name} takes the wearer's profile (age, sex, height, weight): "
                              "give --profile FILE, or use the PPG-only model")
        if self.inputs == "ppg" and profile is not None:
            raise ConfigError(f"{self.path.name} is a PPG-only model: it cannot use --profile "
                              f"(its manifest names the profile model: {m.get('profile_model')})")
        self.profile = None if profile is None else np.asarray(profile.vector(), dtype=np.float64)
        self.targets = list(m.get("targets") or ["sbp", "dbp"])
        self.cv = m.get("cv")
        self.withheld = {}
        for q in self.targets:
            c = (self.cv or {}).get(q)
            if c is None:
                self.withheld[q] = "no cross-validation in the model's manifest: its worth is unknown"
            else:
                why = withheld_reason(c)
                if why:
                    self.withheld[q] = why
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration, model_sha256=m["sha256"])
        elif calibration is not None and calibration.model_sha256 != m["sha256"]:
            raise ConfigError(f"the calibration was made for another BP model than {self.path.name}: calibrate again")
        self.calibration = calibration
        check_rate_for(float(sensor_fs), self.spec, "BP model")
        # the CV figures hold for signals sampled at the model's rate; a slower sensor upsampled to it
        # loses detail the model was trained with (PPG-BP via 50 Hz into the 100 Hz model: SBP MAE +1.1)
        self.cv_note = None
        if float(sensor_fs) < 0.99 * self.fs:
            self.cv_note = (f"CV measured on {self.fs:g} Hz signals; this sensor gives {float(sensor_fs):g} Hz "
                            f"(a model made for {float(sensor_fs):g} Hz is worth more here)")
            log.warning("BP model %s: %s", self.path.name, self.cv_note)
        self.resampler = StreamResampler(sensor_fs, self.fs)
        # the trees read features of the raw window (and the gate its filtered PPG): the derivative
        # channels a window network takes would be computed for nothing (12% of the stage on x86)
        stream_spec = replace(self.spec, derivatives=False) if m["mode"] == "trees" else self.spec
        self.stream = StreamPreprocessor(stream_spec)
        self.gate = QualityGate(self.fs, quality)
        self.min_windows, self.max_windows = int(min_windows), int(max_windows)
        self._stretch: deque = deque(maxlen=self.max_windows)  # (window index, start, outputs, pulses)
        self.suppressed = 0
        self.no_pulse = 0

    def _end_stretch(self) -> None:
        self._stretch.clear()

    def push(self, x, flags=None) -> list[BPEstimate]:
        y, f = self.resampler.push(x, flags)
        out = []
        for w in self.stream.push(y, f):
            q = self.gate.assess(w)
            if not q.ok:
                self.suppressed += 1
                self._end_stretch()
                continue
            vals, pulses = self.model.window_output(w, self.fs, self.profile)
            if vals is None:  # accepted by the gate but no usable pulse in it
                self.no_pulse += 1
                self._end_stretch()
                continue
            if self._stretch and self._stretch[-1][0] != w.index - 1:
                self._end_stretch()
            self._stretch.append((w.index, w.start, np.asarray(vals, dtype=np.float64), pulses))
            out.append(self._estimate(w))
        return out

    def _estimate(self, w) -> BPEstimate:
        mean = np.mean(np.stack([s[2] for s in self._stretch]), axis=0)
        n = len(self._stretch)
        t1 = w.end / self.fs
        ready = n >= self.min_windows
        stretch = {"t0": round(self._stretch[0][1] / self.fs, 3), "t1": round(t1, 3), "windows": n,
                   "quality": "stable" if ready else "settling"}
        if self._stretch[-1][3] >= 0:  # a feature model counts the pulses it averaged
            stretch["pulses"] = int(sum(s[3] for s in self._stretch))
        withheld = dict(self.withheld)
        shown: dict[str, float | None] = {}
        for k, q in enumerate(self.targets):
            if q in withheld:
                shown[q] = None
            elif not ready:
                shown[q] = None
                withheld[q] = f"settling: a stable stretch of {self.min_windows} windows is needed, {n} so far"
            else:
                v = float(mean[k])
                c = None if self.calibration is None else self.calibration.apply(q, v)
                shown[q] = round(v if c is None else c, 1)
        calibrated = self.calibration is not None and any(
            shown[q] is not None and self.calibration.fit(q) is not None for q in self.targets)
        return BPEstimate(window=w.index, start=w.start, t=t1, values=shown,
                          window_values={q: float(v) for q, v in zip(self.targets, self._stretch[-1][2])},
                          stretch_values={q: float(v) for q, v in zip(self.targets, mean)},
                          stretch=stretch, withheld=withheld, calibrated=calibrated)

    def status(self, est: BPEstimate | None) -> str:
        """The status line's BP part: the number and what it is worth, or why there is none."""
        if est is None:
            return "BP --"
        parts = []
        for q in self.targets:
            v = est.values.get(q)
            if v is None:
                parts.append(f"{q.upper()} --")
            else:
                c = (self.cv or {}).get(q, {})
                kind = "calibrated" if est.calibrated else "uncalibrated estimate"
                parts.append(f"{q.upper()} {v:.0f} ({kind}, CV MAE {c.get('mae', float('nan')):.0f} mmHg)")
        return "  ".join(parts)
