"""PPG-BP segments -> model inputs for every BP model, at the paper's or the device's rate.

PPG-BP (Liang et al., "A new, short-recorded photoplethysmogram dataset for blood
pressure monitoring in China", Sci Data 5:180020, 2018): 2.1 s segments at 1000 Hz,
three per subject, one cuff reading (SBP, DBP) per subject. Every segment of a
subject therefore carries that subject's targets.

:func:`build_bp_dataset` turns records into one :class:`BPDataset` holding, per
2.1 s window (a segment; subject 231's 4.2 s segments give two windows):

* ``x`` -- the shared device preprocessing (:func:`ppg_edge.dsp.pipeline.
  bp_preprocessing`: causal 0.4-20 Hz band-pass, z-score per window, PPG and its
  VPG/APG/JPG) with the window set to 2.1 s, ``(n, input_len, 4)`` float32. The
  CNN-LSTM of Hayirlioglu & Semiz (2025) reads channel 0 (PPG) only.
* ``y`` -- SBP, DBP (mmHg); ``subjects`` -- split keys ``"ppg-bp/<id>"``;
  ``segments`` -- record ids; ``demographics`` -- age, sex (1 = male), BMI.
* ``features`` -- segment features (``ppg_edge.features.bp.segment_features``,
  NaN where invalid) of the raw segment at the model rate (the features remove
  each pulse's own baseline; the band-pass would distort a 2.1 s segment's start).
* ``pulse_seq`` -- per-pulse feature sequences for the multi-stage LSTM
  (``pulse_feature_sequence``, front-padded with zeros).
* ``pulses`` / ``pulse_dur`` / ``pulse_row`` -- pulses (foot to foot) resampled
  to a fixed length with their derivatives for the derivatives CNN+LSTM, each
  pointing at its window row.

The device rate: the MAX30102 gives 50-100 Hz, so ``fs=100`` resamples every
record first (``ppg_edge.data.resample.resample_record``, polyphase) and builds
everything at that rate (2.1 s -> 210 samples).

Arrays are cached as ``.npz`` under ``ppg_edge.config.cache_dir() / "bp-dataset"``,
keyed by the settings and the records' ids and lengths.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppg_edge.errors import DataError

log = logging.getLogger(__name__)

SEGMENT_S = 2.1
DATASET = "ppg-bp"
DEMOGRAPHIC_NAMES = ("age", "sex", "bmi")
DEFAULT_MAX_PULSES = 5
CACHE_VERSION = 2  # 2: pulse feet searched at <= 100 Hz (dsp.pulses.find_pulse_feet)


@dataclass
class BPDataset:
    """Every model input of a set of PPG-BP windows (see the module docstring)."""

    fs: float
    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray
    segments: np.ndarray
    demographics: np.ndarray
    features: np.ndarray
    pulse_seq: np.ndarray
    pulses: np.ndarray
    pulse_dur: np.ndarray
    pulse_row: np.ndarray
    channels: tuple[str, ...] = ("ppg", "vpg", "apg", "jpg")
    preprocessing: dict = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_len(self) -> int:
        return int(self.x.shape[1])

    def subset(self, rows) -> BPDataset:
        """The windows at ``rows`` (indices or a boolean mask), their pulses re-indexed."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        new_of_old = np.full(len(self), -1, dtype=np.int64)
        new_of_old[rows] = np.arange(rows.size)
        keep = new_of_old[self.pulse_row] >= 0
        return BPDataset(
            fs=self.fs, x=self.x[rows], y=self.y[rows], subjects=self.subjects[rows],
            segments=self.segments[rows], demographics=self.demographics[rows],
            features=self.features[rows], pulse_seq=self.pulse_seq[rows],
            pulses=self.pulses[keep], pulse_dur=self.pulse_dur[keep],
            pulse_row=new_of_old[self.pulse_row[keep]], channels=self.channels,
            preprocessing=self.preprocessing, events=list(self.events))

    _ARRAYS = ("x", "y", "subjects", "segments", "demographics", "features", "pulse_seq",
               "pulses", "pulse_dur", "pulse_row")

    def save(self, path: Path) -> None:
        from ppg_edge.cache import atomic_path

        meta = json.dumps({"fs": self.fs, "channels": list(self.channels),
                           "preprocessing": self.preprocessing, "events": self.events})
        with atomic_path(Path(path)) as tmp:   # a private file, renamed: concurrent builders never mix
            np.savez_compressed(tmp, meta=np.array(meta), **{k: getattr(self, k) for k in self._ARRAYS})

    @classmethod
    def load(cls, path: Path) -> BPDataset:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in cls._ARRAYS}
        return cls(fs=float(meta["fs"]), channels=tuple(meta["channels"]),
                   preprocessing=meta["preprocessing"], events=meta["events"], **arrays)


def input_length(fs: float) -> int:
    """Samples in the 2.1 s model input at ``fs`` (2100 at 1000 Hz, 210 at 100 Hz)."""
    return int(round(float(fs) * SEGMENT_S))


def preprocessing_for(fs: float):
    """The shared BP preprocessing with one non-overlapping 2.1 s window."""
    from ppg_edge.dsp.pipeline import bp_preprocessing

    n = input_length(fs)
    return bp_preprocessing(fs, window=n, hop=n)


def _demographics(labels: dict, key: str) -> np.ndarray:
    sex = labels.get("sex")
    sex_v = 1.0 if sex == "M" else 0.0 if sex == "F" else np.nan
    out = np.array([labels.get("age", np.nan), sex_v, labels.get("bmi", np.nan)], dtype=np.float64)
    if not np.all(np.isfinite(out)):
        log.warning("%s: demographics incomplete (%s)", key, out.tolist())
    return out


def _targets(rec) -> np.ndarray:
    try:
        y = np.array([float(rec.labels["sbp"]), float(rec.labels["dbp"])])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{rec.key}: no usable sbp/dbp label ({exc})") from exc
    if not np.all(np.isfinite(y)):
        raise DataError(f"{rec.key}: sbp/dbp label not finite: {y.tolist()}")
    return y


def build_bp_dataset(records, fs: float = 1000.0, *, max_pulses: int = DEFAULT_MAX_PULSES,
                     pulse_len: int | None = None, progress: bool = False) -> BPDataset:
    """Records (PPG-BP layout, labels ``sbp``/``dbp``) -> :class:`BPDataset` at ``fs``.

    A record without usable labels raises :class:`DataError`; one too short for a
    window is skipped with an event (kept in ``events`` and logged), never dropped
    silently. Pulses that fail (too short, flat) are left out and counted in events.
    """
    from tqdm import tqdm

    from ppg_edge.data.resample import resample_record
    from ppg_edge.dsp.pulses import segment_pulses
    from ppg_edge.features.bp import FEATURE_NAMES, PULSE_FEATURE_NAMES, features_matrix, pulse_feature_sequence

    from .derivatives_model import DEFAULT_PULSE_LEN, prepare_pulses

    pulse_len = int(pulse_len or DEFAULT_PULSE_LEN)
    pre = preprocessing_for(fs)
    n = input_length(fs)
    xs, ys, subs, segs, demo, raws = [], [], [], [], [], []
    events: list[str] = []
    for rec in tqdm(list(records), desc=f"bp dataset @ {fs:g} Hz", disable=not progress):
        y = _targets(rec)
        r = rec if abs(rec.fs - fs) < 1e-9 else resample_record(rec, fs)
        win = pre.apply(r.ppg)
        if win.shape[0] == 0:
            events.append(f"{rec.key}: {len(r.ppg)} samples at {fs:g} Hz < one {n}-sample window; skipped")
            log.warning("%s", events[-1])
            continue
        d = _demographics(rec.labels, rec.key)
        for w in range(win.shape[0]):
            xs.append(win[w])
            ys.append(y)
            subs.append(f"{DATASET}/{rec.subject_id}")
            segs.append(rec.record_id if win.shape[0] == 1 else f"{rec.record_id}#{w}")
            demo.append(d)
            raws.append(np.asarray(r.ppg[w * n:(w + 1) * n], dtype=np.float64))
    if not xs:
        raise DataError("no PPG-BP window could be built from the records given")
    feats, _ = features_matrix(raws, fs)
    seq = np.stack([pulse_feature_sequence(s, fs, max_pulses).values for s in raws]).astype(np.float32)
    pulses, rows = [], []
    for i, s in enumerate(raws):
        for f0, f1 in segment_pulses(s, fs)[0]:
            pulses.append(s[f0:f1 + 1])
            rows.append(i)
    P, dur, ok = prepare_pulses(pulses, fs, pulse_len)
    if (~ok).sum():
        events.append(f"{int((~ok).sum())} of {len(pulses)} pulses unusable for the derivatives model")
    no_pulse = len(raws) - np.unique(np.asarray(rows, dtype=np.int64)[ok]).size
    if no_pulse:
        events.append(f"{no_pulse} of {len(raws)} windows have no usable pulse")
    assert len(FEATURE_NAMES) == feats.shape[1] and len(PULSE_FEATURE_NAMES) == seq.shape[2]
    return BPDataset(
        fs=float(fs), x=np.stack(xs).astype(np.float32), y=np.stack(ys), subjects=np.array(subs),
        segments=np.array(segs), demographics=np.stack(demo), features=feats, pulse_seq=seq,
        pulses=P[ok], pulse_dur=dur[ok].astype(np.float32),
        pulse_row=np.asarray(rows, dtype=np.int64)[ok], channels=pre.channels,
        preprocessing=pre.to_dict(), events=events)


def _cache_key(records, fs: float, max_pulses: int, pulse_len: int | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "fs": float(fs), "max_pulses": int(max_pulses),
                         "pulse_len": pulse_len}).encode())
    for r in records:
        h.update(f"{r.key}:{len(r.ppg)}:{r.fs}:{float(np.sum(r.ppg)):.6g}\n".encode())
    return h.hexdigest()[:16]


def load_bp_dataset(fs: float = 1000.0, *, root=None, records=None, cache: bool = True,
                    max_pulses: int = DEFAULT_MAX_PULSES, pulse_len: int | None = None,
                    progress: bool = False, via_fs: float | None = None) -> BPDataset:
    """:func:`build_bp_dataset` of PPG-BP (``ppg_edge.data.load("ppg-bp", root)``, or
    ``records``), cached under ``cache_dir()/bp-dataset``. ``via_fs``: the records are first
    resampled to this rate (a sensor's, e.g. the Zero 2 W's 50 Hz), then to ``fs``: what a
    model at ``fs`` sees on that device."""
    from ppg_edge import config

    if records is None:
        from ppg_edge import data

        records = data.load(DATASET, root=root, progress=progress)
    records = list(records)
    if via_fs is not None:
        from ppg_edge.data.resample import resample_record

        records = [resample_record(r, float(via_fs)) for r in records]
    path = config.cache_dir() / "bp-dataset" / f"{_cache_key(records, fs, max_pulses, pulse_len)}.npz"
    if cache and path.is_file():
        try:
            ds = BPDataset.load(path)
            log.info("bp dataset from cache %s", path)
            return ds
        except (OSError, ValueError, KeyError) as exc:
            log.warning("bp dataset cache %s unreadable (%s); rebuilding", path, exc)
    ds = build_bp_dataset(records, fs, max_pulses=max_pulses, pulse_len=pulse_len, progress=progress)
    if cache:
        try:
            ds.save(path)
        except OSError as exc:
            log.warning("could not write bp dataset cache %s: %s", path, exc)
    return ds
