"""``ppg-edge evaluate pseudo-labels``: the pseudo-label rule checked against expert labels.

Runs :func:`ppg_edge.evaluate.pseudo_labels.evaluate_rule` on labelled data sets (default
CapnoBase and BIDMC): beats where ``--min-votes`` of the classic detectors agree within
``--agree-ms`` on the runtime quality gate's clean stretches, scored against the labels inside
the loss mask only. Wire it with ``register(sub)`` under ``evaluate``.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..errors import ConfigError
from .outputs import write_outputs

log = logging.getLogger(__name__)

DEFAULT_DATASETS = ("capnobase", "bidmc")
PROG = "ppg-edge evaluate pseudo-labels"


def register(sub) -> None:
    p = sub.add_parser(
        "pseudo-labels",
        help="check the pseudo-label rule (classic detectors voting on clean stretches) against expert labels",
        description=(
            "Pseudo-label every labelled record (beats where --min-votes of elgendi, MSPTDfast v2 and "
            "the DWT detector agree within --agree-ms, on stretches the runtime quality gate calls clean; "
            "disagreements masked out of the loss) and score the kept beats against the expert labels "
            "inside the mask at +-50 ms and +-25 ms, per record, per data set and pooled."
        ),
    )
    p.add_argument("--dataset", action="append", metavar="NAME",
                   help="labelled data set (repeatable; default capnobase and bidmc)")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.add_argument("--agree-ms", type=float, default=25.0, metavar="MS",
                   help="detections of two detectors agree within this (default 25)")
    p.add_argument("--min-votes", type=int, default=2, metavar="N",
                   help="detectors that must agree on a beat (default 2)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the Markdown")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="write the full JSON result here")
    p.add_argument("--markdown", type=Path, metavar="FILE.md", help="write the Markdown report here")
    p.set_defaults(func=run_pseudo_labels)


def command_line(args, prog: str = PROG) -> str:
    parts = [prog]
    parts += [f"--dataset {d}" for d in (args.dataset or [])]
    if args.data_root:
        parts.append(f"--data-root {args.data_root}")
    parts += [f"--agree-ms {args.agree_ms:g}", f"--min-votes {args.min_votes}"]
    for opt in ("out", "markdown"):
        if getattr(args, opt):
            parts.append(f"--{opt} {getattr(args, opt)}")
    if args.json:
        parts.append("--json")
    return " ".join(parts)


def run_pseudo_labels(args: argparse.Namespace) -> int:
    from .. import data
    from ..evaluate.pseudo_labels import evaluate_rule, markdown_report
    from ..provenance import machine

    if not args.agree_ms > 0:
        raise ConfigError(f"--agree-ms must be positive, got {args.agree_ms}")
    datasets = list(dict.fromkeys(args.dataset or DEFAULT_DATASETS))
    ids = [(ds, rid) for ds in datasets for rid in data.list_records(ds, root=args.data_root)]
    if not ids:
        raise ConfigError(f"no records in {', '.join(datasets)} under the data root")
    start = time.perf_counter()
    records = (data.load_record(ds, rid, root=args.data_root) for ds, rid in ids)

    class _Sized:  # a lazy iterable with a length, so the progress bar shows the total
        def __iter__(self):
            return iter(records)

        def __len__(self):
            return len(ids)

    result = evaluate_rule(_Sized(), progress=True, agree_s=args.agree_ms / 1000.0, min_votes=args.min_votes)
    result["command"] = command_line(args)
    result["seconds_total"] = round(time.perf_counter() - start, 2)
    result["machine"] = machine()
    log.info("pseudo-labels: %d records in %.1f s", len(result["records"]), result["seconds_total"])
    write_outputs(args, result, markdown_report(result))
    return 0
