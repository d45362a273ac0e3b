"""``ppg-edge evaluate``: benchmarks. ``evaluate peaks`` scores peak detectors on data sets.

Each benchmark is a subcommand under ``evaluate`` with its own ``_register_<name>``:
``peaks`` and ``bp`` (subject-wise cross-validation of the BP models on PPG-BP,
:mod:`ppg_edge.cli.evaluate_bp`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ppg_edge.provenance import machine

from ..errors import ConfigError
from .outputs import write_outputs

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="benchmark detectors and models on data sets",
        description="Benchmark detectors and models on data sets (splits by subject).",
    )
    sub = parser.add_subparsers(dest="evaluate_command", metavar="BENCHMARK")
    _register_peaks(sub)
    _register_bp(sub)

    def no_benchmark(args) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=no_benchmark)


def _register_peaks(sub) -> None:
    p = sub.add_parser(
        "peaks",
        help="score PPG peak detectors against reference peaks",
        description=(
            "Run each detector on each record, clean and with added noise, match its peaks to "
            "the reference one-to-one within a tolerance and report pooled precision, recall, "
            "F1 and ADE per data set, condition and detector."
        ),
    )
    p.add_argument("--dataset", action="append", required=True, metavar="NAME",
                   help="data set to load (repeatable), e.g. capnobase")
    p.add_argument("--detector", action="append", metavar="NAME",
                   help="detector name (repeatable; default nk-elgendi). "
                        "Built in: nk-elgendi, nk-msptd, nk-msptdfastv1, nk-msptdfastv2, "
                        "dwt-baseline; the committed peak models Type30, Type28, Type24, Type16; "
                        "model:PATH for any model folder of `ppg-edge train peaks`")
    p.add_argument("--split", default="all", metavar="PART",
                   help="records of this part of the subject-wise split: test (held out from "
                        "training and threshold choice), val, train, or all (default: every "
                        "record of the data sets under the data root)")
    p.add_argument("--split-name", default="peaks", metavar="NAME",
                   help="committed split (ppg_edge/data/splits/NAME.json; default peaks)")
    p.add_argument("--noise", action="append", default=[], metavar="KIND:SNR_DB",
                   help="also evaluate with this noise added (repeatable), e.g. gaussian:10; "
                        "kinds: gaussian, baseline, motion, mains50, mains60")
    p.add_argument("--no-clean", action="store_true", help="skip the clean condition")
    p.add_argument("--records", nargs="+", metavar="ID",
                   help="only these records (DATASET/ID, or ID when one data set is given)")
    p.add_argument("--tolerance-ms", action="append", type=float, metavar="MS",
                   help="matching tolerance in ms (repeatable; the first is the main one; "
                        "default 50 and 25)")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default fixed)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the full JSON result here")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown table here")
    p.add_argument("--plot", type=Path, metavar="FILE",
                   help="write a PNG of pooled F1 versus SNR per detector (one panel per noise kind)")
    p.add_argument("--model-cards", action="store_true",
                   help="with --split test: write the held-out table of each model detector into "
                        "its MODEL_CARD.md")
    p.add_argument("--summary", action="store_true",
                   help="leave the per-record rows out of --out (pooled rows, runtime, events and "
                        "the command line only)")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.set_defaults(func=run_peaks)


def _data_module():
    try:
        from .. import data
    except ImportError as exc:  # pragma: no cover - ppg_edge.data is part of the package
        raise ConfigError(f"the data registry ppg_edge.data cannot be imported: {exc}") from exc
    if not hasattr(data, "load") or not hasattr(data, "load_record"):
        raise ConfigError("the data registry ppg_edge.data has no load()/load_record() in this install")
    return data


def _load_records(datasets: list[str], ids: list[str] | None, root, progress: bool,
                  split: str = "all", split_name: str = "peaks") -> list:
    data = _data_module()
    if split != "all":
        from ..evaluate.selection import select_records

        return select_records(datasets, split, split_name, root=root, ids=ids, progress=progress)
    if not ids:
        records = []
        for name in datasets:
            records.extend(data.load(name, root=root, progress=progress))
        return records
    records = []
    for spec in ids:
        name, sep, rid = spec.partition("/")
        if not sep:
            if len(datasets) != 1:
                raise ConfigError(
                    f"record {spec!r} is ambiguous with several data sets; write it as DATASET/{spec}"
                )
            name, rid = datasets[0], spec
        elif name not in datasets:
            raise ConfigError(f"record {spec!r} names data set {name!r}, which is not among --dataset {datasets}")
        records.append(data.load_record(name, rid, root=root))
    return records


def run_peaks(args: argparse.Namespace) -> int:
    t0 = time.time()
    from ..evaluate.detectors import get_detector
    from ..evaluate.harness import DEFAULT_SEED, evaluate_peaks, parse_condition

    detectors = [get_detector(n) for n in (args.detector or ["nk-elgendi"])]
    conditions = ([] if args.no_clean else ["clean"]) + [parse_condition(n).name for n in args.noise]
    if not conditions:
        raise ConfigError("--no-clean without --noise leaves nothing to evaluate")
    tolerances = args.tolerance_ms or [50.0, 25.0]
    if any(not t > 0 for t in tolerances):
        raise ConfigError(f"--tolerance-ms must be positive, got {tolerances}")
    progress = not getattr(args, "quiet", False)
    split = getattr(args, "split", "all")
    split_name = getattr(args, "split_name", "peaks")
    from ..evaluate.selection import ALL, PARTS

    if split not in PARTS + (ALL,):
        raise ConfigError(f"unknown --split {split!r}; valid: {', '.join(PARTS + (ALL,))}")

    if getattr(args, "model_cards", False) and split != "test":
        raise ConfigError("--model-cards writes held-out test tables: use it with --split test")

    records = _load_records(args.dataset, args.records, args.data_root, progress, split, split_name)
    if not records:
        raise ConfigError(f"no records loaded from {', '.join(args.dataset)}")
    result = evaluate_peaks(
        records,
        detectors,
        conditions,
        tol_s=[t / 1000.0 for t in tolerances],
        rng_seed=DEFAULT_SEED if args.seed is None else args.seed,
        progress=progress,
        data_root=args.data_root,
    )
    table = result.to_markdown()
    text = result.to_json()
    doc = json.loads(text)
    doc["command"] = _command_line(args)
    doc["machine"] = machine()
    doc["split"] = {"name": split_name, "part": split,
                    "records": sorted({f"{r['dataset']}/{r['record_id']}" for r in doc["rows"]})}
    doc["wall_s"] = round(time.time() - t0, 1)
    models = {d.name: getattr(d.fn, "__self__", None) for d in detectors}
    models = {k: m for k, m in models.items() if m is not None and hasattr(m, "raw_axis")}
    if models:
        doc["models"] = {k: {"path": _rel(m.path), "threshold": m.threshold, "raw_axis": m.raw_axis,
                             "raw_axis_shift_samples": m.shift, "fs": m.fs}
                         for k, m in models.items()}
    if getattr(args, "plot", None):
        from ..evaluate.plot import plot_f1_vs_snr

        what = "all records" if split == "all" else f"{split} subjects of split {split_name}"
        plot_f1_vs_snr(doc, args.plot, title=f"Peak detection F1 versus SNR: {what}\n"
                                             f"pooled over {', '.join(args.dataset)}")
    if split != "all":
        m = doc["machine"]
        table = (f"Peak detection on the {split} subjects of split {split_name} "
                 f"({', '.join(doc['split']['records'])}), whole records at their own rate. "
                 f"Pooled one-to-one matching (P, R, F1, ADE at the first tolerance). Command: "
                 f"`{doc['command']}`; {doc['wall_s'] / 60:.1f} min on {m['platform']} "
                 f"({m['cpus']} CPUs). Noise seed {doc['seed']}.\n\n" + table)
    if getattr(args, "model_cards", False):
        _write_model_cards(detectors, doc)
    if args.summary:
        doc.pop("rows", None)
    write_outputs(args, doc, table)
    for ev in result.events:
        log.warning("%s", ", ".join(f"{k}={v}" for k, v in ev.items()))
    return 0


def _rel(path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _write_model_cards(detectors, doc: dict) -> None:
    """The held-out section of each model detector's MODEL_CARD.md (see train/peaks/cards.py)."""
    models = [(d, getattr(d.fn, "__self__", None)) for d in detectors]
    models = [(d, m) for d, m in models if m is not None and hasattr(m, "raw_axis")]
    if not models:
        raise ConfigError("--model-cards: no model detector in this run")
    from ..train.peaks.cards import test_section, write_test_section

    for det, m in models:
        card = m.path.parent / "MODEL_CARD.md"
        if not card.is_file():
            log.warning("%s: no model card at %s; table not written", det.name, card)
            continue
        write_test_section(card, test_section(doc, det.name, m.raw_axis))


def _command_line(args) -> str:
    """The options that produced a result, as a command anyone can rerun."""
    parts = ["ppg-edge evaluate peaks"]
    parts += [f"--dataset {d}" for d in args.dataset]
    parts += [f"--detector {d}" for d in (args.detector or [])]
    if getattr(args, "split", "all") != "all":
        parts.append(f"--split {args.split}")
    if getattr(args, "split_name", "peaks") != "peaks":
        parts.append(f"--split-name {args.split_name}")
    parts += [f"--noise {n}" for n in (args.noise or [])]
    if args.no_clean:
        parts.append("--no-clean")
    if args.records:
        parts.append("--records " + " ".join(args.records))
    parts += [f"--tolerance-ms {t:g}" for t in (args.tolerance_ms or [])]
    if args.seed is not None:
        parts.append(f"--seed {args.seed}")
    return " ".join(parts)


def _register_bp(sub) -> None:
    from .evaluate_bp import register_bp
    from .evaluate_bp_calibration import register as register_bp_calibration
    from .evaluate_lodo import register as register_lodo
    from .evaluate_pseudo_labels import register as register_pseudo_labels

    register_bp(sub)
    register_bp_calibration(sub)
    register_pseudo_labels(sub)
    register_lodo(sub)
