"""``ppg-edge demo``: the main job on the embedded default, end to end on real data.

Today it loads a held-out CapnoBase record (a test subject of the committed
``peaks`` split, never used for training or threshold choice), runs every peer
detector and the committed models on it, clean and with the peak paper's noise
models at 5 dB, and prints a short report. A session folder keeps the JSON.
It grows into the end-to-end virtual-Pi run as the runtime and HIL pieces land.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_DETECTORS = ("nk-elgendi", "nk-msptdfastv2", "dwt-baseline")
DEFAULT_CONDITIONS = ("clean", "gaussian:5", "baseline:5", "motion:5")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job on real data: detectors and models on a held-out record",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="data root (default: $PPG_EDGE_DATA, then ../shared/data)")
    p.add_argument("--record", metavar="DATASET/ID", default=None,
                   help="record to use (default: the first CapnoBase test subject of the peaks split)")
    p.add_argument("--out", metavar="DIR", default="runs",
                   help="parent folder of the session folder (default: runs)")
    p.set_defaults(func=cmd_demo)


def _default_record() -> str:
    from ..data.splits import load_split

    test = load_split("peaks")["test"]
    return sorted(k for k in test if k.startswith("capnobase/"))[0]


def cmd_demo(args) -> int:
    from .. import config, data
    from ..evaluate.harness import evaluate_peaks

    root = config.data_root(args.data_root)
    key = args.record or _default_record()
    dataset, _, rid = key.partition("/")
    t0 = time.perf_counter()
    record = data.load_record(dataset, rid, root)
    print(f"ppg-edge demo — data root {root}")
    print(f"record {record.key}: {record.duration_s / 60:.1f} min at {record.fs:g} Hz, "
          f"{len(record.peaks)} reference peaks ({record.meta.get('peaks_source', 'expert labels')})")

    result = evaluate_peaks([record], list(DEFAULT_DETECTORS), DEFAULT_CONDITIONS, progress=False)
    print()
    print(result.to_markdown(dataset))

    session = Path(args.out) / time.strftime("demo-%Y%m%d-%H%M%S")
    session.mkdir(parents=True, exist_ok=True)
    (session / "results.json").write_text(result.to_json())
    (session / "report.md").write_text(result.to_markdown(dataset) + "\n")
    main_tol = result.tol_labels[0]
    worst = {}
    for r in result.pooled:
        if r["dataset"] == dataset:
            f1 = r["scores"][main_tol]["f1"]
            worst[r["detector"]] = min(worst.get(r["detector"], 1.0), f1)
    ranking = ", ".join(f"{d} {f1:.3f}" for d, f1 in sorted(worst.items(), key=lambda kv: -kv[1]))
    print()
    print(f"worst-condition F1 @{main_tol}: {ranking}")
    print(f"{len(result.events)} harness events; "
          f"{time.perf_counter() - t0:.1f} s; session folder {session}")
    return 0
