"""Blood-pressure stage: SBP/DBP per window from a BP model (manifest kind ``"bp"``).

The board's samples (50-100 Hz) are resampled to the model's rate with the
numpy polyphase :class:`~.resample.StreamResampler`, preprocessed by a
:class:`~.stream.StreamPreprocessor` built from the manifest's spec (band-pass,
derivative channels, per-window z-score; Hayirlioglu & Semiz 2025,
docs/facts.md) and fed to the model one window at a time.

The model's output vector is read through the manifest: ``targets`` names its
entries (default ``["sbp", "dbp"]``) and an optional ``target_scaling``
``{"mean": [...], "std": [...]}`` undoes a standardisation applied in training
(``value = output * std + mean``). Windows that the quality check suppresses
give no estimate. Estimates are per window; they are only as good as the model
and must be reported beside its naive (training-mean) baseline.
numpy only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ppg_edge.errors import ModelError

from .interpreter import EdgeModel
from .quality import QualityConfig, QualityGate
from .resample import StreamResampler, check_rate_for
from .stream import StreamPreprocessor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BPEstimate:
    window: int
    start: int  # first sample of the window at the model rate
    t: float  # seconds from the stream start to the window's end
    values: dict[str, float]


class BPStage:
    """Sensor-rate samples in, :class:`BPEstimate` per accepted window out."""

    def __init__(self, model_path, sensor_fs: float, quality: QualityConfig | None = None,
                 backend: str | None = None):
        self.model = EdgeModel(model_path, kind="bp", backend=backend)
        m = self.model.manifest
        check_rate_for(float(sensor_fs), self.model.spec, "BP model")
        self.resampler = StreamResampler(sensor_fs, self.model.fs)
        self.stream = StreamPreprocessor(self.model.spec)
        self.gate = QualityGate(self.model.fs, quality)
        self.targets = list(m.get("targets") or ["sbp", "dbp"])
        out_shape = m["outputs"][0]["shape"]
        n_out = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        if n_out != len(self.targets):
            raise ModelError(f"{self.model.path}: {n_out} outputs but targets {self.targets}")
        scal = m.get("target_scaling")
        if scal is not None:
            try:
                self.mean = np.asarray(scal["mean"], dtype=np.float64).reshape(n_out)
                self.std = np.asarray(scal["std"], dtype=np.float64).reshape(n_out)
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{self.model.path}: bad target_scaling in the manifest: {exc}") from exc
        else:
            self.mean, self.std = np.zeros(n_out), np.ones(n_out)
        self.suppressed = 0

    def push(self, x, flags=None) -> list[BPEstimate]:
        y, f = self.resampler.push(x, flags)
        out = []
        for w in self.stream.push(y, f):
            q = self.gate.assess(w)
            if not q.ok:
                self.suppressed += 1
                continue
            raw = np.atleast_1d(self.model.predict_window(w.x)).reshape(-1)
            vals = raw * self.std + self.mean
            out.append(BPEstimate(window=w.index, start=w.start, t=w.end / self.model.fs,
                                  values={k: float(v) for k, v in zip(self.targets, vals)}))
        return out
