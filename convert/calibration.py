"""Reproducible calibration lists: which training-subject windows calibrate int8 models.

A calibration list is a small JSON document (committed beside the model) naming
windows by ``dataset/record`` and start sample, with the seed that drew them and the
split they came from, so an int8 model can be rebuilt exactly (the MLPerf Tiny
practice of committed calibration indices). Two sections:

* ``entries`` -- the calibration windows, drawn from the split's **training** subjects
  only (never validation or test);
* ``holdout_entries`` -- windows from the **validation** subjects for the Keras-vs-TFLite
  self-check (held out from both training and calibration; never test).

:func:`check_calibration_list` refuses a list that names a subject outside its part
(a test subject in particular), or whose split no longer matches.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import DataError, SplitError

log = logging.getLogger(__name__)

VERSION = 1
KINDS = ("peaks", "bp")


@dataclasses.dataclass(frozen=True)
class RecordRef:
    """What a calibration list needs to know about one record (at the model rate)."""

    dataset: str
    record_id: str
    subject_id: str
    n_samples: int

    @property
    def subject_key(self) -> str:
        """The split's key for this record's subject (``"capnobase/0009"``)."""
        return f"{self.dataset}/{self.subject_id}"


def _part(split: Mapping[str, Any], part: str) -> set[str]:
    if part not in split:
        raise SplitError(f"split {split.get('name', '?')!r} has no part {part!r}")
    return set(split[part])


def _draw(refs: list[RecordRef], window: int, hop: int, n_windows: int,
          rng: np.random.Generator) -> list[dict]:
    pool = [(i, s) for i, r in enumerate(refs) for s in range(0, r.n_samples - window + 1, hop)]
    if not pool:
        raise DataError(f"no record is long enough for one window of {window} samples")
    take = min(int(n_windows), len(pool))
    chosen = sorted(pool[j] for j in rng.choice(len(pool), size=take, replace=False))
    entries: dict[int, list[int]] = {}
    for i, s in chosen:
        entries.setdefault(i, []).append(int(s))
    return [
        {"dataset": refs[i].dataset, "record": refs[i].record_id, "subject": refs[i].subject_id,
         "starts": starts}
        for i, starts in sorted(entries.items())
    ]


def build_calibration_list(
    split: Mapping[str, Any],
    records: Iterable[RecordRef],
    *,
    kind: str,
    fs: float,
    window: int,
    hop: int,
    n_windows: int = 200,
    n_holdout: int = 50,
    seed: int = 0,
) -> dict:
    """Draw ``n_windows`` calibration windows from the split's ``train`` subjects and
    ``n_holdout`` self-check windows from its ``val`` subjects (uniformly over all
    window positions every ``hop`` samples, with ``numpy.random.default_rng(seed)``).

    Records of other subjects (test ones included) are not used; records whose
    subject is in no part raise ``SplitError``.
    """
    if kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS}, got {kind!r}")
    if int(window) < 1 or int(hop) < 1 or int(n_windows) < 1 or int(n_holdout) < 0:
        raise DataError("window, hop and n_windows must be positive (n_holdout >= 0)")
    train, val = _part(split, "train"), _part(split, "val")
    known = set(split.get("subjects", [])) or train | val | set(split.get("test", []))
    refs = sorted(records, key=lambda r: (r.dataset, r.record_id))
    stray = sorted({r.subject_key for r in refs} - known)
    if stray:
        raise SplitError(f"record subject(s) not in split {split.get('name', '?')!r}: {stray[:10]}")
    rng = np.random.default_rng(int(seed))
    train_refs = [r for r in refs if r.subject_key in train]
    val_refs = [r for r in refs if r.subject_key in val]
    if not train_refs:
        raise SplitError("no record of a training subject: nothing to calibrate on")
    skipped = len(refs) - len(train_refs) - len(val_refs)
    if skipped:
        log.info("calibration list: %d record(s) of test subjects not used", skipped)
    doc = {
        "version": VERSION, "kind": kind, "split": split.get("name"), "split_sha256": split.get("sha256"),
        "seed": int(seed), "fs": float(fs), "window": int(window), "hop": int(hop),
        "entries": _draw(train_refs, int(window), int(hop), int(n_windows), rng),
        "holdout_entries": (_draw(val_refs, int(window), int(hop), int(n_holdout), rng)
                            if val_refs and n_holdout else []),
    }
    doc["n_windows"] = sum(len(e["starts"]) for e in doc["entries"])
    doc["n_holdout"] = sum(len(e["starts"]) for e in doc["holdout_entries"])
    check_calibration_list(doc, split)
    return doc


def check_calibration_list(doc: Mapping[str, Any], split: Mapping[str, Any]) -> None:
    """``SplitError`` if a calibration window is not from a training subject, a
    self-check window not from a validation subject, or the split changed."""
    for key in ("entries", "holdout_entries", "window", "hop", "seed"):
        if key not in doc:
            raise DataError(f"calibration list lacks {key!r}")
    if doc.get("split_sha256") and split.get("sha256") and doc["split_sha256"] != split["sha256"]:
        raise SplitError(f"calibration list was drawn from another version of split {doc.get('split')!r}")
    test = set(split.get("test", []))
    for section, part in (("entries", "train"), ("holdout_entries", "val")):
        allowed = _part(split, part)
        for e in doc[section]:
            key = f"{e['dataset']}/{e['subject']}"
            if key not in allowed:
                where = "a TEST subject" if key in test else f"not a {part} subject"
                raise SplitError(
                    f"calibration list {section}: {e['dataset']}/{e['record']} belongs to {key}, {where}"
                )


def save_calibration_list(doc: Mapping[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def load_calibration_list(path: str | os.PathLike, split: Mapping[str, Any] | None = None) -> dict:
    """Read a calibration list (and check it against ``split`` when given)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: calibration list not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise DataError(f"{path}: not a version-{VERSION} calibration list")
    if split is not None:
        check_calibration_list(doc, split)
    return doc


# ----------------------------------------------------------------------------- real data

def record_refs(split: Mapping[str, Any], fs: float, root=None) -> list[RecordRef]:
    """RecordRefs for every record of the split's data sets (lengths at rate ``fs``)."""
    from ppg_edge import data

    refs = []
    for dataset in split["datasets"]:
        for rid in data.list_records(dataset, root):
            rec = data.load_record(dataset, rid, root)
            n = int(round(len(rec.ppg) * fs / rec.fs))
            refs.append(RecordRef(dataset, rec.record_id, rec.subject_id, n))
    return refs


def load_windows(doc: Mapping[str, Any], preprocessing, section: str = "entries", root=None,
                 progress: bool = True) -> tuple[np.ndarray, dict]:
    """Materialise a section's windows ``(n, window, channels)`` with ``preprocessing``
    (records resampled to its rate first), plus the class balance
    (:func:`class_balance`)."""
    from tqdm import tqdm

    from ppg_edge import data
    from ppg_edge.data.resample import resample_record

    if int(preprocessing.window) != int(doc["window"]):
        raise DataError(f"calibration windows are {doc['window']} samples, preprocessing makes {preprocessing.window}")
    pre = dataclasses.replace(preprocessing, hop=int(doc["hop"]))
    xs, peaks_per, labels = [], [], []
    for e in tqdm(doc[section], desc=f"calibration {section}", disable=not progress):
        rec = data.load_record(e["dataset"], e["record"], root)
        if abs(rec.fs - pre.fs) > 1e-9:
            rec = resample_record(rec, pre.fs)
        win = pre.apply(rec.ppg)
        starts = list(pre.window_starts(len(rec.ppg)))
        for s in e["starts"]:
            if s not in starts:
                raise DataError(f"{rec.key}: no window starts at sample {s} (record has {len(rec.ppg)} samples)")
            xs.append(win[starts.index(s)])
            peaks_per.append(None if rec.peaks is None else rec.peaks[(rec.peaks >= s) & (rec.peaks < s + pre.window)] - s)
            labels.append(dict(rec.labels))
    x = np.stack(xs).astype(np.float32)
    return x, class_balance(doc["kind"], peaks_per, labels, pre.window, pre.fs)


def class_balance(kind: str, peaks_per_window, labels_per_window, window: int, fs: float) -> dict:
    """Peaks: fraction of windows with a peak and of samples labelled positive
    (+-25 ms, as training labels them). BP: SBP/DBP distribution of the windows."""
    n = len(labels_per_window)
    if kind == "peaks":
        from ppg_edge.train.peaks.labels import peak_labels

        have = [p for p in peaks_per_window if p is not None]
        if not have:
            return {"n_windows": n, "note": "records carry no reference peaks"}
        pos = [float(peak_labels(p, window, fs).mean()) for p in have]
        return {"n_windows": n, "windows_with_peak": float(np.mean([len(p) > 0 for p in have])),
                "positive_sample_fraction": float(np.mean(pos)),
                "peaks_per_window_mean": float(np.mean([len(p) for p in have]))}
    out: dict[str, Any] = {"n_windows": n}
    for key in ("sbp", "dbp"):
        v = np.array([float(lab[key]) for lab in labels_per_window if key in lab], dtype=float)
        if v.size:
            q = np.percentile(v, [5, 50, 95])
            out[key] = {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                        "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(v.max())}
    return out


def describe(doc: Mapping[str, Any], balance: Mapping[str, Any] | None = None) -> str:
    """One paragraph: size, records, subjects and class balance of a calibration list."""
    subj = {f"{e['dataset']}/{e['subject']}" for e in doc["entries"]}
    text = (f"calibration list ({doc['kind']}, split {doc.get('split')!r}, seed {doc['seed']}): "
            f"{doc['n_windows']} windows of {doc['window']} samples from {len(doc['entries'])} records "
            f"of {len(subj)} training subjects; {doc['n_holdout']} self-check windows from validation subjects")
    if balance:
        text += "; balance: " + json.dumps(balance, sort_keys=True)
    return text
