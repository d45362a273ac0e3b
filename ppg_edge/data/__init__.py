"""Data sets: one registry, one loader module per data set, one ``Record`` type.

Each data set is a module ``ppg_edge.data.<module>`` with ``NAME``, ``FOLDER``
(sub-folder of the data root), ``CITATION``, ``SOURCES`` (public homes for
``ppg-edge data fetch``), ``list_records(folder)`` and ``load_record(folder,
record_id)``. A module may also offer ``subject_of(record_id)`` (cheap subject
lookup) and ``info_extra(folder)`` (extra facts for ``info``).

Modules are imported lazily, on first use, so a data set whose module is not in
this checkout (e.g. ``bidmc`` before its branch is merged) only fails when it is
asked for, with a clear ``ConfigError``.

>>> from ppg_edge import data
>>> recs = data.load("capnobase")            # doctest: +SKIP
>>> data.info("ppg-bp")["subjects"]          # doctest: +SKIP
189
"""
from __future__ import annotations

import importlib
import logging
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .. import config
from ..errors import ConfigError
from .record import Record

log = logging.getLogger(__name__)

# Registry name -> module name inside ppg_edge.data.
_MODULES: dict[str, str] = {
    "ppg-bp": "ppg_bp",
    "capnobase": "capnobase",
    "bidmc": "bidmc",
    "wfdb-samples": "wfdb_samples",
    "welltory": "welltory",
    "but-ppg": "but_ppg",
    "max30102-raw": "max30102_raw",
    "biosppy": "biosppy",
}

DATASETS: tuple[str, ...] = tuple(_MODULES)

__all__ = [
    "DATASETS",
    "Record",
    "dataset_module",
    "dataset_folder",
    "list_records",
    "load_record",
    "load",
    "list_subjects",
    "info",
]


def dataset_module(name: str) -> ModuleType:
    """The loader module of data set ``name``; ``ConfigError`` for an unknown name."""
    if name not in _MODULES:
        raise ConfigError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    modname = f"{__name__}.{_MODULES[name]}"
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name != modname:
            raise
        raise ConfigError(
            f"data set {name!r} is registered but its loader module {modname} is not in this "
            "installation"
        ) from None


def dataset_folder(name: str, root: str | Path | None = None) -> Path:
    """``<data root>/<FOLDER>`` of data set ``name`` (not checked for existence)."""
    mod = dataset_module(name)
    return config.data_root(root) / mod.FOLDER


def list_records(name: str, root: str | Path | None = None) -> list[str]:
    """Record ids of data set ``name``, sorted (numbers in ids compared as numbers)."""
    mod = dataset_module(name)
    return list(mod.list_records(config.data_root(root) / mod.FOLDER))


def load_record(name: str, record_id: str, root: str | Path | None = None) -> Record:
    """One record of data set ``name``."""
    mod = dataset_module(name)
    return mod.load_record(config.data_root(root) / mod.FOLDER, record_id)


def load(name: str, root: str | Path | None = None, progress: bool = False) -> list[Record]:
    """Every record of data set ``name``, in ``list_records`` order."""
    from tqdm.auto import tqdm

    mod = dataset_module(name)
    folder = config.data_root(root) / mod.FOLDER
    ids = mod.list_records(folder)
    return [
        mod.load_record(folder, rid)
        for rid in tqdm(ids, desc=f"load {name}", unit="rec", disable=not progress)
    ]


def list_subjects(name: str, root: str | Path | None = None) -> list[str]:
    """Distinct subject ids of data set ``name``, sorted like record ids."""
    from ._io import natural_key

    mod = dataset_module(name)
    folder = config.data_root(root) / mod.FOLDER
    ids = mod.list_records(folder)
    subject_of = getattr(mod, "subject_of", None)
    if subject_of is not None:
        subjects = {subject_of(rid) for rid in ids}
    else:
        subjects = {mod.load_record(folder, rid).subject_id for rid in ids}
    return sorted(subjects, key=natural_key)


def summarize(name: str, records: list[Record], folder: Path | None = None) -> dict[str, Any]:
    """Facts about a loaded data set: counts, duration, rates, labels present."""
    mod = dataset_module(name)
    rates: dict[str, set[float]] = {}
    label_counts: Counter[str] = Counter()
    quality: Counter[str] = Counter()
    n_peaks = 0
    n_with_peaks = 0
    for rec in records:
        for ch, fs in rec.rates.items():
            rates.setdefault(ch, set()).add(float(fs))
        for key, value in rec.labels.items():
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            label_counts[key] += 1
        if "quality" in rec.labels and rec.labels["quality"] is not None:
            quality[str(rec.labels["quality"])] += 1
        if rec.peaks is not None:
            n_with_peaks += 1
            n_peaks += int(rec.peaks.size)
    out: dict[str, Any] = {
        "name": name,
        "folder": str(folder) if folder is not None else mod.FOLDER,
        "citation": mod.CITATION,
        "records": len(records),
        "subjects": len({r.subject_id for r in records}),
        "duration_s": round(float(sum(r.duration_s for r in records)), 3),
        "rates": {ch: sorted(v) for ch, v in sorted(rates.items())},
        "channels": {ch: sum(ch in r.signals for r in records) for ch in sorted(rates)},
        "peaks": {"records": n_with_peaks, "total": n_peaks},
        "bp_records": sum("sbp" in r.labels and "dbp" in r.labels for r in records),
        "ecg_records": sum("ecg" in r.signals for r in records),
        "hr_records": label_counts.get("hr", 0),
        "quality": dict(sorted(quality.items())),
        "labels": dict(sorted(label_counts.items())),
    }
    if folder is not None and hasattr(mod, "info_extra"):
        out.update(mod.info_extra(folder))
    out.setdefault("subjects_left_out", 0)
    return out


def info(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """Summary of data set ``name`` (loads every record): records, subjects, total
    duration, rates per channel, label counts (peaks, BP, ECG, quality, HR) and
    subjects left out (e.g. PPG-BP subjects in the sheet without signals)."""
    mod = dataset_module(name)
    folder = config.data_root(root) / mod.FOLDER
    return summarize(name, load(name, root), folder)
