"""Leave-one-dataset-out: does a peak model work on a data set it never saw?

For each expert-labelled data set ``D`` with a model trained without it
(``ppg-edge train peaks --datasets <the others>``):

* **held out whole**: that model and the classic detectors on every record of ``D``;
* **against the in-distribution model**: on ``D``'s test subjects of the committed split
  (the only records of ``D`` the in-distribution model did not train or validate on), the
  model without ``D``, the in-distribution model and the classic detectors on the same
  noisy signals. ``drop`` is the in-distribution F1 minus the leave-out F1 per condition
  (positive: the model lost by not seeing ``D``).

Both use the evaluation harness (:func:`~ppg_edge.evaluate.harness.evaluate_peaks`) with its
seeded noise, so every detector meets the same signal. Nothing is chosen here.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from ..errors import ConfigError
from .detectors import get_detector
from .harness import evaluate_peaks

log = logging.getLogger(__name__)

CLASSIC = ("nk-elgendi", "nk-msptdfastv2", "dwt-baseline")
CONDITIONS = ("clean", "gaussian:10", "gaussian:5", "gaussian:0", "motion:0", "real:5", "real:0")
IN_DISTRIBUTION = "in-distribution"
DROP_LIMIT = 0.02  # the bound at 5 dB


def _named(spec: str, name: str):
    return dataclasses.replace(get_detector(spec), name=name)


def _rows(res, dataset: str) -> dict:
    """``{condition: {detector: {f1, ade_ms, n_ref}}}`` at the main tolerance, pooled over ``dataset``."""
    out: dict[str, dict] = {}
    for cond in res.conditions:
        out[cond] = {}
        for det in res.detectors:
            row = res.pooled_row(dataset, cond, det)
            sc = row["scores"][res.tol_labels[0]]
            out[cond][det] = {"f1": sc.get("f1"), "ade_ms": sc.get("ade_ms"), "n_ref": sc.get("n_ref"),
                              "n_errors": row["n_errors"]}
    return out


def evaluate_lodo(without: Mapping[str, str], in_distribution: str,
                  conditions: Sequence[str] = CONDITIONS, classic: Sequence[str] = CLASSIC,
                  root=None, split_name: str = "peaks", progress: bool = True) -> dict:
    """``without``: held-out data set -> detector spec of the model trained without it
    (``model:PATH``); ``in_distribution``: the spec of the model trained on all of them."""
    from .. import data as _data
    from .selection import select_records

    if not without:
        raise ConfigError("leave-one-dataset-out needs at least one DATASET=MODEL")
    doc: dict = {"conditions": list(conditions), "classic": list(classic),
                 "in_distribution": in_distribution, "datasets": {}}
    for ds, spec in without.items():
        name = f"without-{ds}"
        everything = list(_data.load(ds, root=root, progress=progress))
        test = select_records([ds], "test", split_name, root=root, progress=progress)
        whole = evaluate_peaks(everything, [_named(spec, name), *classic], list(conditions),
                               progress=progress, data_root=root)
        paired = evaluate_peaks(test, [_named(spec, name), _named(in_distribution, IN_DISTRIBUTION),
                                       *classic], list(conditions), progress=progress, data_root=root)
        p = _rows(paired, ds)
        drop = {c: (None if p[c][IN_DISTRIBUTION]["f1"] is None or p[c][name]["f1"] is None
                    else p[c][IN_DISTRIBUTION]["f1"] - p[c][name]["f1"]) for c in conditions}
        doc["datasets"][ds] = {
            "model": spec,
            "records_whole": [r.key for r in everything],
            "records_test": [r.key for r in test],
            "whole": _rows(whole, ds),
            "test_subjects": p,
            "drop": drop,
            "drop_at_gaussian_5_within_limit": (None if drop.get("gaussian:5") is None
                                                else bool(drop["gaussian:5"] <= DROP_LIMIT)),
        }
        log.info("%s held out: F1 %s, drop %s", ds,
                 {c: doc["datasets"][ds]["whole"][c][name]["f1"] for c in conditions}, drop)
    from ppg_edge.edge_runtime.sinks import json_safe

    return json_safe(doc)


def _f(v, d=3):
    return "-" if v is None or v != v else f"{v:.{d}f}"


def markdown(doc: dict, command: str | None = None) -> str:
    lines = ["# Leave-one-dataset-out: peak models on a data set they never saw", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["F1 within 50 ms (ADE ms), pooled over the records. Noise: the harness's seeded models "
              "(`real`: no-finger MAX30102 and bad BUT PPG clips, `ppg_edge.noise_bank`).", ""]
    for ds, r in doc["datasets"].items():
        name = f"without-{ds}"
        dets = [name, *doc["classic"]]
        lines += [f"## {ds}: held out whole ({len(r['records_whole'])} records)", "",
                  "| condition | " + " | ".join(dets) + " |", "|---" * (len(dets) + 1) + "|"]
        for c in doc["conditions"]:
            cells = [f"{_f(r['whole'][c][d]['f1'])} ({_f(r['whole'][c][d]['ade_ms'], 1)})" for d in dets]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        dets = [name, IN_DISTRIBUTION, *doc["classic"]]
        lines += ["", f"### {ds}: its test subjects ({', '.join(r['records_test'])}), against the "
                  f"in-distribution model", "",
                  "| condition | " + " | ".join(dets) + " | drop |", "|---" * (len(dets) + 2) + "|"]
        for c in doc["conditions"]:
            cells = [f"{_f(r['test_subjects'][c][d]['f1'])}" for d in dets]
            lines.append(f"| {c} | " + " | ".join(cells) + f" | {_f(r['drop'][c])} |")
        ok = r["drop_at_gaussian_5_within_limit"]
        lines += ["", f"Drop at Gaussian 5 dB within {DROP_LIMIT}: "
                  f"{'yes' if ok else 'no' if ok is not None else 'n/a'}.", ""]
    return "\n".join(lines) + "\n"
