"""Which records a benchmark runs on: a part of a committed subject-wise split, or all.

``part="test"`` of split ``peaks`` (``ppg_edge/data/splits/peaks.json``) gives the
held-out subjects no peak model saw in training or threshold choice; ``"val"`` the
subjects the threshold was chosen on; ``"train"`` the training subjects; ``"all"``
every record of the data sets under the data root, whatever split they belong to (a
data root with recordings no model has seen).

Only the records of the wanted subjects are read (the subject comes from the loader's
``subject_of(record_id)`` when it has one, else from the loaded record).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")
ALL = "all"
DEFAULT_SPLIT = "peaks"


def split_subjects(part: str, split_name: str = DEFAULT_SPLIT) -> set[str]:
    """``dataset/subject`` keys of one part of a committed split (checked disjoint)."""
    from ..data.splits import assert_disjoint, load_split

    if part not in PARTS:
        raise ConfigError(f"unknown split part {part!r}; valid: {', '.join(PARTS + (ALL,))}")
    doc = load_split(split_name)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert_disjoint(doc[a], doc[b])
    return set(doc[part])


def select_records(datasets: Sequence[str], part: str = ALL, split_name: str = DEFAULT_SPLIT,
                   root=None, ids: Sequence[str] | None = None, progress: bool = False) -> list:
    """Records of ``datasets`` (or only the ``DATASET/ID`` records ``ids``) in ``part``.

    Raises ``ConfigError`` for an unknown part, a data set the split does not cover, or
    a named record outside the part; ``DataError`` when nothing is left.
    """
    from tqdm.auto import tqdm

    from .. import data as _data

    if part != ALL:
        wanted = split_subjects(part, split_name)
        covered = {k.split("/", 1)[0] for k in wanted}
        outside = [d for d in datasets if d not in covered]
        if outside:
            raise ConfigError(f"data set(s) {outside} are not in split {split_name!r} "
                              f"(it covers {sorted(covered)}); use --split all")
    if part == ALL and not ids:
        records = []
        for name in datasets:
            records.extend(_data.load(name, root=root, progress=progress))
        if not records:
            raise DataError(f"no records of {', '.join(datasets)} under the data root")
        return records
    todo: list[tuple[str, str]] = []
    if ids:
        for spec in ids:
            name, sep, rid = spec.partition("/")
            if not sep:
                if len(datasets) != 1:
                    raise ConfigError(f"record {spec!r} is ambiguous with several data sets; "
                                      f"write it as DATASET/{spec}")
                name, rid = datasets[0], spec
            elif name not in datasets:
                raise ConfigError(f"record {spec!r} names data set {name!r}, which is not among "
                                  f"--dataset {list(datasets)}")
            todo.append((name, rid))
    else:
        for name in datasets:
            todo.extend((name, rid) for rid in _data.list_records(name, root=root))

    records = []
    for name, rid in tqdm(todo, desc="load records", unit="rec", disable=not progress):
        if part != ALL:
            mod = _data.dataset_module(name)
            subject_of = getattr(mod, "subject_of", None)
            if subject_of is not None and f"{name}/{subject_of(rid)}" not in wanted:
                if ids:
                    raise ConfigError(f"record {name}/{rid} is not in the {part} part of split {split_name!r}")
                continue
        rec = _data.load_record(name, rid, root=root)
        if part != ALL and f"{rec.dataset}/{rec.subject_id}" not in wanted:
            if ids:
                raise ConfigError(f"record {rec.key} is not in the {part} part of split {split_name!r}")
            continue
        records.append(rec)
    if not records:
        raise DataError(f"no records of {', '.join(datasets)} in part {part!r}"
                        + ("" if part == ALL else f" of split {split_name!r}") + " under the data root")
    if part != ALL:
        got = {f"{r.dataset}/{r.subject_id}" for r in records}
        missing = sorted(k for k in wanted - got if k.split("/", 1)[0] in datasets)
        if missing and not ids:
            log.warning("%d %s subject(s) of split %r not found under the data root: %s",
                        len(missing), part, split_name, missing)
    return records
