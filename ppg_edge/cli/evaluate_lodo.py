"""``ppg-edge evaluate lodo``: leave-one-dataset-out scores of the peak models.

``--without bidmc=runs/v3/Type30-no-bidmc`` names the model trained without a data set
(``ppg-edge train peaks --datasets capnobase``); ``--in-distribution`` the model trained on
all of them. See :mod:`ppg_edge.evaluate.lodo`. Wire it with ``register(sub)`` under
``evaluate``.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..errors import ConfigError
from .outputs import write_outputs

log = logging.getLogger(__name__)

PROG = "ppg-edge evaluate lodo"


def register(sub) -> None:
    from ..evaluate.lodo import CONDITIONS

    p = sub.add_parser(
        "lodo",
        help="leave-one-dataset-out: each peak model on the data set it was trained without",
        description=("Score the model trained without a data set on all of that data set's records, "
                     "and beside the in-distribution model on its test subjects, with the classic "
                     "detectors on the same noisy signals."),
    )
    p.add_argument("--without", action="append", required=True, metavar="DATASET=MODEL",
                   help="held-out data set and the model folder trained without it (repeatable; "
                        "any detector name works too)")
    p.add_argument("--in-distribution", required=True, metavar="MODEL",
                   help="model folder (or committed name, e.g. Type30) trained on every data set")
    p.add_argument("--classic", action="append", metavar="NAME",
                   help="classic detectors beside the models (repeatable; default nk-elgendi, "
                        "nk-msptdfastv2, dwt-baseline)")
    p.add_argument("--noise", action="append", metavar="KIND:SNR",
                   help=f"conditions besides clean (default {' '.join(CONDITIONS[1:])})")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the Markdown")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="write the full JSON result here")
    p.add_argument("--markdown", type=Path, metavar="FILE.md", help="write the Markdown report here")
    p.set_defaults(func=run_lodo)


def _spec(text: str) -> str:
    return text if text.startswith("model:") or "/" not in text else f"model:{text}"


def run_lodo(args: argparse.Namespace) -> int:
    from ..evaluate.harness import parse_condition
    from ..evaluate.lodo import CLASSIC, CONDITIONS, evaluate_lodo, markdown
    from ..provenance import machine

    without = {}
    for item in args.without:
        ds, sep, model = item.partition("=")
        if not sep or not ds or not model:
            raise ConfigError(f"--without {item!r}: write DATASET=MODEL_FOLDER")
        if ds in without:
            raise ConfigError(f"--without names {ds} twice")
        without[ds] = _spec(model)
    conditions = ["clean"] + [parse_condition(n).name for n in (args.noise or CONDITIONS[1:])]
    parts = [PROG] + [f"--without {w}" for w in args.without] + [f"--in-distribution {args.in_distribution}"]
    parts += [f"--classic {n}" for n in (args.classic or [])] + [f"--noise {n}" for n in (args.noise or [])]
    parts += [f"--{o} {getattr(args, o)}" for o in ("out", "markdown") if getattr(args, o)]
    start = time.perf_counter()
    doc = evaluate_lodo(without, _spec(args.in_distribution), conditions, args.classic or CLASSIC,
                        root=args.data_root, progress=not getattr(args, "quiet", False))
    doc["command"] = " ".join(parts)
    doc["seconds_total"] = round(time.perf_counter() - start, 1)
    doc["machine"] = machine()
    write_outputs(args, doc, markdown(doc, doc["command"]))
    return 0
