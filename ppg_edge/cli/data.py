"""``ppg-edge data``: what data is there (``info``) and where to get it (``fetch``)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import PPGEdgeError


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="data sets: summary and download",
                              description="Inspect and fetch the PPG data sets.")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="data root (default: $PPG_EDGE_DATA, then ../shared/data, then the cache)")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    pi = sub.add_parser("info", help="records, subjects, duration, rates and labels per data set")
    pi.add_argument("names", nargs="*", metavar="NAME", help="data sets (default: all registered)")
    pi.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pi.add_argument("--data-root", metavar="DIR", default=argparse.SUPPRESS,
                    help="data root (same as on `ppg-edge data`)")
    pi.set_defaults(func=cmd_info)

    pf = sub.add_parser("fetch", help="download a data set from its public home into the cache")
    pf.add_argument("name", metavar="NAME")
    pf.add_argument("--dest", metavar="DIR", default=None,
                    help="target folder (default: <cache>/data/<folder>)")
    pf.add_argument("--dry-run", action="store_true", help="print what would be fetched, fetch nothing")
    pf.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    pf.set_defaults(func=cmd_fetch)

    ps = sub.add_parser("splits", help="check (default) or rebuild the committed subject-wise splits")
    ps.add_argument("--write", action="store_true",
                    help="rebuild the split files from the data root and write them")
    ps.add_argument("--out", metavar="DIR", default=None, help="where --write puts them (default: the package)")
    ps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ps.add_argument("--data-root", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ps.set_defaults(func=cmd_splits)

    pb = sub.add_parser("check-beats",
                        help="BIDMC: agreement of the ECG-derived PPG beat rate with the monitor's PULSE")
    pb.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pb.add_argument("--max-mad-bpm", type=float, default=2.0,
                    help="bound on the per-record median absolute difference (default 2 bpm)")
    pb.add_argument("--data-root", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    pb.set_defaults(func=cmd_check_beats)


def _fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _fmt_rates(rates: dict[str, list[float]]) -> str:
    ppg = rates.get("ppg", [])
    if not ppg:
        return "-"
    if len(ppg) <= 3:
        return ",".join(f"{r:.4g}" for r in ppg)
    return f"{min(ppg):.4g}-{max(ppg):.4g} ({len(ppg)})"


def _fmt_labels(row: dict[str, Any]) -> str:
    parts = []
    if row["peaks"]["total"]:
        parts.append(f"peaks {row['peaks']['total']} in {row['peaks']['records']}")
    if row["bp_records"]:
        parts.append(f"BP {row['bp_records']}")
    if row["ecg_records"]:
        parts.append(f"ECG {row['ecg_records']}")
    if row["quality"]:
        parts.append("quality " + "/".join(f"{k} {v}" for k, v in row["quality"].items()))
    if row["hr_records"]:
        parts.append(f"HR {row['hr_records']}")
    if "abp" in row.get("channels", {}):
        parts.append(f"ABP {row['channels']['abp']}")
    return "; ".join(parts) or "-"


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["data set", "records", "subjects", "duration", "PPG Hz", "labels", "left out"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["name"], "-", "-", "-", "-", f"unavailable: {r['error']}", "-"])
            continue
        body.append([r["name"], str(r["records"]), str(r["subjects"]), _fmt_duration(r["duration_s"]),
                     _fmt_rates(r["rates"]), _fmt_labels(r), str(r["subjects_left_out"])])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in body]
    return "\n".join(lines)


def cmd_info(args) -> int:
    from .. import config, data

    names = args.names or list(data.DATASETS)
    for n in names:
        if n not in data.DATASETS:
            data.dataset_module(n)  # raises ConfigError listing the valid names
    root = config.data_root(args.data_root)
    rows: list[dict[str, Any]] = []
    failed = 0
    for n in names:
        try:
            rows.append(data.info(n, root))
        except PPGEdgeError as exc:
            if args.names:  # asked for by name: a plain error
                raise
            failed += 1
            rows.append({"name": n, "error": str(exc)})
    if args.json:
        json.dump(rows, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(f"data root: {root}")
        print(_table(rows))
    return 1 if failed else 0


def cmd_fetch(args) -> int:
    from ..data import fetch

    items = fetch.plan(args.name, args.dest)
    dest = args.dest or fetch.default_dest(args.name)
    if args.dry_run:
        print(f"would fetch {args.name} into {dest}:")
        for it in items:
            print(f"  {it['action']}: {it['url']}" + (f" -> {it['target']}" if it["target"] else ""))
            if it.get("licence"):
                print(f"    licence: {it['licence']}")
        return 0
    out = fetch.fetch(args.name, args.dest, timeout=args.timeout, progress=True)
    print(f"fetched {args.name} into {out}")
    return 0


def cmd_splits(args) -> int:
    """Check every committed split (no subject in two parts) and that the data still matches it."""
    from pathlib import Path

    from .. import config
    from ..data import splits

    root = config.data_root(args.data_root)
    if args.write:
        out = Path(args.out) if args.out else splits.SPLITS_DIR
        for path in splits.write_committed_splits(root, out):
            print(f"wrote {path}")
        return 0
    rebuilt = splits.build_committed_splits(root)
    rows, stale = [], 0
    for name, doc in sorted(rebuilt.items()):
        committed = splits.load_split(name)  # raises SplitError on any overlap
        same = splits.dumps(committed) == splits.dumps(doc)
        stale += not same
        parts = splits._parts_of(committed)
        rows.append({"split": name, "method": committed.get("method"),
                     "parts": {k: len(v) for k, v in parts.items()},
                     "subjects": sum(len(v) for v in parts.values()),
                     "matches_data": same})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in rows:
            sizes = ", ".join(f"{k} {v}" for k, v in r["parts"].items())
            print(f"{r['split']:<16} {r['subjects']:>4} subjects  {sizes}  "
                  f"{'ok' if r['matches_data'] else 'STALE: rebuild with --write'}")
    return 1 if stale else 0


def cmd_check_beats(args) -> int:
    """BIDMC: per-record median |derived beat rate - PULSE|; exit 1 if any record misses the bound."""
    from .. import config
    from ..data import bidmc

    folder = config.data_root(args.data_root) / bidmc.FOLDER
    rows = bidmc.agreement_table(folder)
    bad = [r["record_id"] for r in rows if not r["median_abs_diff_bpm"] <= args.max_mad_bpm]
    if args.json:
        json.dump({"bound_bpm": args.max_mad_bpm, "records": rows, "over_bound": bad},
                  sys.stdout, indent=2, default=float)
        sys.stdout.write("\n")
    else:
        print(bidmc.format_table(rows))
        print(f"bound {args.max_mad_bpm} bpm: " + ("all records within" if not bad else f"over: {', '.join(bad)}"))
    return 1 if bad else 0
