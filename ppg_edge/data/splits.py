"""Subject-wise splits, built deterministically and committed as data.

Every split assigns whole subjects, never records or windows, so no subject's
data is on both sides. Keys in the committed files are ``"<dataset>/<subject>"``
(``"capnobase/0009"``, ``"bidmc/bidmc_01"``, ``"ppg-bp/100"``).

Committed files (package data, ``ppg_edge/data/splits/``):

* ``peaks.json`` -- CapnoBase (Karlen et al., IEEE TBME 60(7):1946-1953, 2013)
  and BIDMC (Pimentel et al., IEEE TBME 64(8), 2017) subjects, hold-out
  70/15/15 drawn separately per data set, for the peak detector.
* ``ppg-bp-10fold.json``, ``ppg-bp-5fold.json`` -- PPG-BP (Liang et al., Sci.
  Data 5:180020, 2018) subjects with signals, k-fold stratified by the
  hypertension class of ``PPG-BP dataset.xlsx``.

Each file holds the method, seed, data set names, parameters, the sorted subject
list with its sha256, and the parts. ``python -m ppg_edge.data.splits
[--data-root DIR] [--out DIR]`` rebuilds them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataNotFoundError, SplitError

log = logging.getLogger(__name__)

SEED = 20251122
HOLDOUT_FRACTIONS = (0.70, 0.15, 0.15)
PARTS = ("train", "val", "test")
SPLITS_DIR = Path(__file__).resolve().parent / "splits"
PPG_BP_LABELS = Path("Data File") / "PPG-BP dataset.xlsx"
PPG_BP_SIGNALS = Path("Data File") / "0_subject"


# ---------------------------------------------------------------------------
# Split functions
# ---------------------------------------------------------------------------
def _unique_sorted(subjects: Iterable[str]) -> list[str]:
    out = sorted({str(s) for s in subjects})
    if not out:
        raise SplitError("no subjects to split")
    return out


def holdout(subjects: Iterable[str], fractions: Sequence[float] = HOLDOUT_FRACTIONS,
            seed: int = SEED) -> dict[str, list[str]]:
    """Train/val/test parts of the subjects, deterministic for a seed.

    Subjects are de-duplicated and sorted, permuted with
    ``numpy.random.default_rng(seed)``, and cut by largest-remainder counts; with
    three or more subjects every part gets at least one. Each part is sorted.
    """
    subs = _unique_sorted(subjects)
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise SplitError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    n = len(subs)
    raw = f * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            if counts[i] == 0 and f[i] > 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum(counts)[:-1]
    return {name: sorted(subs[j] for j in part) for name, part in zip(PARTS, np.split(perm, bounds))}


def kfold(subjects: Iterable[str], k: int, seed: int = SEED,
          strata: Mapping[str, Any] | None = None) -> list[list[str]]:
    """``k`` disjoint folds covering every subject, deterministic for a seed.

    Without ``strata``: one permutation dealt round-robin. With ``strata`` (a
    label per subject, e.g. the hypertension class) each stratum is permuted and
    dealt in turn, continuing where the previous one stopped, so classes and fold
    sizes are both balanced. A subject missing from ``strata`` is its own
    stratum ``None``. Each fold is sorted.
    """
    subs = _unique_sorted(subjects)
    if not isinstance(k, (int, np.integer)) or k < 2 or k > len(subs):
        raise SplitError(f"k must be an integer in 2..{len(subs)} (number of subjects), got {k!r}")
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [subs]
    else:
        by = defaultdict(list)
        for s in subs:
            by[str(strata.get(s))].append(s)
        groups = [by[key] for key in sorted(by)]
    folds: list[list[str]] = [[] for _ in range(k)]
    pos = 0
    for group in groups:
        for j in rng.permutation(len(group)):
            folds[pos % k].append(group[j])
            pos += 1
    return [sorted(f) for f in folds]


def subjects_sha256(subjects: Iterable[str]) -> str:
    """sha256 of the sorted subject list, one per line (UTF-8)."""
    return hashlib.sha256("\n".join(sorted(subjects)).encode("utf-8")).hexdigest()


def _parts_of(split: Mapping[str, Any] | Sequence[Sequence[str]]) -> dict[str, list[str]]:
    if isinstance(split, Mapping):
        if "folds" in split:
            return {f"fold {i}": list(f) for i, f in enumerate(split["folds"])}
        parts = {p: list(split[p]) for p in PARTS if p in split}
        if not parts:
            raise SplitError(f"split has neither parts {PARTS} nor 'folds' (keys: {sorted(split)})")
        return parts
    return {f"fold {i}": list(f) for i, f in enumerate(split)}


def check_split(split: Mapping[str, Any] | Sequence[Sequence[str]]) -> None:
    """Raise ``SplitError`` if a subject is in two parts/folds (or twice in one),
    or, for a committed document, if the parts do not cover exactly its
    ``subjects`` list or its ``sha256`` does not match."""
    parts = _parts_of(split)
    seen: dict[str, str] = {}
    for name, members in parts.items():
        for s in members:
            if s in seen:
                where = name if seen[s] == name else f"{seen[s]} and {name}"
                raise SplitError(f"subject {s!r} appears in {where}")
            seen[s] = name
    if isinstance(split, Mapping) and "subjects" in split:
        listed = set(split["subjects"])
        if listed != set(seen):
            missing, extra = sorted(listed - set(seen)), sorted(set(seen) - listed)
            raise SplitError(f"parts do not cover the subject list: missing {missing[:5]}, extra {extra[:5]}")
        if "sha256" in split and split["sha256"] != subjects_sha256(split["subjects"]):
            raise SplitError("subject list does not match its sha256 (edited or corrupt split file)")


def assert_disjoint(train_ids: Iterable[str], test_ids: Iterable[str]) -> None:
    """Raise ``SplitError`` naming the shared subjects if the two sets overlap."""
    shared = sorted(set(train_ids) & set(test_ids))
    if shared:
        raise SplitError(f"{len(shared)} subject(s) in both training and test data: {shared[:10]}")


# ---------------------------------------------------------------------------
# Subjects from the data folders (independent of the loader registry)
# ---------------------------------------------------------------------------
def capnobase_subjects(root: Path) -> list[str]:
    """``"XXXX"`` for every ``capnobase/capnobase_XXXX.csv``."""
    folder = Path(root) / "capnobase"
    if not folder.is_dir():
        raise DataNotFoundError(f"CapnoBase folder {folder} does not exist")
    pat = re.compile(r"^capnobase_(\w+)\.csv$")
    return sorted(m.group(1) for p in folder.iterdir() if (m := pat.match(p.name)))


def bidmc_subjects(root: Path) -> list[str]:
    """BIDMC record ids with a signals file (one record per subject)."""
    from . import bidmc

    return bidmc.list_records(Path(root) / bidmc.FOLDER)


def ppg_bp_subjects(root: Path) -> list[str]:
    """PPG-BP subject ids with at least one ``<subject>_<n>.txt`` signal file."""
    folder = Path(root) / "ppg-bp" / PPG_BP_SIGNALS
    if not folder.is_dir():
        raise DataNotFoundError(f"PPG-BP signal folder {folder} does not exist")
    pat = re.compile(r"^(\d+)_\d+\.txt$")
    return sorted({m.group(1) for p in folder.iterdir() if (m := pat.match(p.name))}, key=int)


def ppg_bp_hypertension(root: Path) -> dict[str, str]:
    """Hypertension class per PPG-BP subject id from ``PPG-BP dataset.xlsx``
    (header on the sheet's second row)."""
    from openpyxl import load_workbook

    path = Path(root) / "ppg-bp" / PPG_BP_LABELS
    if not path.is_file():
        raise DataNotFoundError(f"PPG-BP label sheet {path} does not exist")
    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
    finally:
        wb.close()
    header = [str(h).strip() if h is not None else "" for h in rows[1]]
    try:
        i_sub, i_ht = header.index("subject_ID"), header.index("Hypertension")
    except ValueError as exc:
        raise SplitError(f"{path}: second row lacks 'subject_ID'/'Hypertension' ({header})") from exc
    return {str(int(r[i_sub])): str(r[i_ht]).strip() for r in rows[2:] if r[i_sub] is not None and r[i_ht]}


# ---------------------------------------------------------------------------
# Committed split documents
# ---------------------------------------------------------------------------
def _doc(name: str, method: str, datasets: list[str], subjects: list[str], **rest: Any) -> dict[str, Any]:
    subjects = sorted(subjects)
    doc = {"name": name, "method": method, "seed": SEED, "datasets": datasets,
           "n_subjects": len(subjects), "subjects": subjects, "sha256": subjects_sha256(subjects)}
    doc.update(rest)
    check_split(doc)
    return doc


def build_committed_splits(root: Path) -> dict[str, dict[str, Any]]:
    """The committed split documents, built from the data folders under ``root``."""
    root = Path(root)
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    subjects: list[str] = []
    per_dataset = {}
    for dataset, subs in (("capnobase", capnobase_subjects(root)), ("bidmc", bidmc_subjects(root))):
        keys = [f"{dataset}/{s}" for s in subs]
        split = holdout(keys, HOLDOUT_FRACTIONS, SEED)
        per_dataset[dataset] = {p: len(split[p]) for p in PARTS}
        subjects += keys
        for p in PARTS:
            parts[p] += split[p]
    out = {"peaks": _doc("peaks", "holdout per dataset", ["capnobase", "bidmc"], subjects,
                         fractions=list(HOLDOUT_FRACTIONS), counts=per_dataset,
                         **{p: sorted(parts[p]) for p in PARTS})}
    bp = ppg_bp_subjects(root)
    classes = ppg_bp_hypertension(root)
    unlabelled = [s for s in bp if s not in classes]
    if unlabelled:
        log.warning("PPG-BP: %d subject(s) with signals have no hypertension class: %s", len(unlabelled), unlabelled)
    keys = [f"ppg-bp/{s}" for s in bp]
    strata = {f"ppg-bp/{s}": classes.get(s) for s in bp}
    for k in (10, 5):
        folds = kfold(keys, k, SEED, strata=strata)
        out[f"ppg-bp-{k}fold"] = _doc(
            f"ppg-bp-{k}fold", "kfold stratified by hypertension class", ["ppg-bp"], keys, k=k,
            stratify="Hypertension (PPG-BP dataset.xlsx)",
            n_labelled_subjects_left_out=len(classes) - (len(bp) - len(unlabelled)),
            folds=folds,
        )
    return out


def dumps(doc: Mapping[str, Any]) -> str:
    """The exact text a split document is committed as."""
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def write_committed_splits(root: Path, out_dir: Path = SPLITS_DIR) -> list[Path]:
    """Build the splits from ``root`` and write ``<name>.json`` files to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in build_committed_splits(root).items():
        path = out_dir / f"{name}.json"
        path.write_text(dumps(doc), encoding="utf-8")
        paths.append(path)
    return paths


def load_split(name: str, directory: Path = SPLITS_DIR) -> dict[str, Any]:
    """A committed split document by name (``"peaks"``, ``"ppg-bp-10fold"`` ...), checked."""
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in Path(directory).glob("*.json"))
        raise DataNotFoundError(f"no split {name!r} at {path}; known: {known}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SplitError(f"{path}: not valid JSON ({exc})") from exc
    check_split(doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    """Rebuild the committed split files from the data root."""
    import argparse

    from .. import config

    parser = argparse.ArgumentParser(prog="python -m ppg_edge.data.splits", description=main.__doc__)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", default=str(SPLITS_DIR))
    args = parser.parse_args(argv)
    for path in write_committed_splits(config.data_root(args.data_root), Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
