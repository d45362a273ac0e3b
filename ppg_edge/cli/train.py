"""``ppg-edge train``: train models. ``train peaks`` (one variant), ``train sweep`` (many).

Each job is a sub-subcommand registered by a function of this module, so another model
family (``train bp``) adds one ``_register_<name>`` function and one line in
``_JOBS``. TensorFlow is imported inside the handlers only.
"""
from __future__ import annotations

import json
import shlex
import sys


def _common(p) -> None:
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs (early stopping, patience 5)")
    p.add_argument("--max-windows", type=int, default=10000,
                   help="training windows (clean and noisy real, synthetic, ECG- and pseudo-labelled; "
                        "default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the one random generator (default 0)")
    p.add_argument("--data-root", default=None, help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.add_argument("--no-cache", action="store_true", help="rebuild the dataset instead of reading the cache")


def _register_peaks(sub) -> None:
    p = sub.add_parser("peaks", help="train one peak-detector variant on CapnoBase + BIDMC",
                       description="Train a peak detector (Type1..Type30) on the train subjects of "
                                   "split 'peaks', choose its threshold on the val subjects.")
    p.add_argument("--variant", default="Type30", help="Type1..Type30 (default Type30)")
    _common(p)
    p.add_argument("--alpha", type=float, nargs=2, default=[0.5, 0.5], metavar=("BCE", "DIST"),
                   help="loss weights of BCE and PeakDistanceLoss (default 0.5 0.5)")
    p.add_argument("--out", default=None, help="output folder (default models/peaks/<variant>)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny network, one train and one val subject, one epoch (CI smoke run)")
    p.add_argument("--datasets", default="capnobase,bidmc", metavar="LIST",
                   help="expert-labelled data sets to train on (default capnobase,bidmc; one alone "
                        "is a leave-one-dataset-out run)")
    p.add_argument("--no-extra", action="store_true",
                   help="leave out the ECG- and pseudo-labelled records (train.peaks.sources)")
    p.set_defaults(func=_run_peaks)


def _register_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train many peak variants in turn (the paper's 30-variant sweep)",
                       description="Seeded sweep over peak-detector variants; each goes to "
                                   "OUT/<variant>. In turn on this machine, or with --ray as Ray "
                                   "Tune trials spread over a Ray cluster.")
    p.add_argument("--variants", default="all", help="'all' or a comma list (Type24,Type30)")
    _common(p)
    p.add_argument("--out", default="runs/peaks-sweep", help="output folder (default runs/peaks-sweep)")
    p.add_argument("--ray", action="store_true",
                   help="run the variants as Ray Tune trials (pip install 'ppg-edge[sweep]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join ('auto', 'ray://head:10001'; default: a local Ray)")
    p.add_argument("--cpus-per-trial", type=float, default=2.0, help="CPUs Ray gives each trial")
    p.add_argument("--tiny", action="store_true", help="tiny networks, one epoch (CI smoke run)")
    p.add_argument("--estimate-from", default=None, metavar="REPORT",
                   help="print the estimated duration from one run's report.json and exit")
    p.set_defaults(func=_run_sweep)


def _register_bp(sub) -> None:
    from .train_bp import add_bp_device_parser, add_bp_parser

    add_bp_parser(sub)
    add_bp_device_parser(sub)


_JOBS = (_register_peaks, _register_sweep, _register_bp)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train models (peaks, sweep, bp, bp-device)",
                              description="Train models on the real data sets.")
    sub = p.add_subparsers(dest="train_job", metavar="JOB")
    for reg in _JOBS:
        reg(sub)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _summary(report: dict) -> str:
    val = report["val"]
    lines = [f"{report['variant']}{' (tiny)' if report['tiny'] else ''}: "
             f"{report['epochs_run']} epoch(s), {report['data']['windows']['train']} train / "
             f"{report['data']['windows']['val']} val windows, {report['wall_s']:.0f} s",
             f"threshold {report['threshold']:.2f} (val F1@50ms {report['threshold_val_f1_50ms']:.3f})",
             f"{'condition':<18} {'model F1@50':>11} {'F1@25':>7} {'ADE ms':>7}   "
             f"{'DWT F1@50':>9} {'F1@25':>7} {'ADE ms':>7}"]
    for cond, r in val.items():
        m, b = r["model"], r["dwt_baseline"]
        lines.append(f"{cond:<18} {m['f1_50ms']:>11.3f} {m['f1_25ms']:>7.3f} {m['ade_ms']:>7.1f}   "
                     f"{b['f1_50ms']:>9.3f} {b['f1_25ms']:>7.3f} {b['ade_ms']:>7.1f}")
    return "\n".join(lines)


def _run_peaks(args) -> int:
    from ppg_edge.train.peaks.train import train_peaks

    cmd = (f"ppg-edge train peaks --variant {args.variant} --epochs {args.epochs} "
           f"--max-windows {args.max_windows} --seed {args.seed} --alpha {args.alpha[0]:g} "
           f"{args.alpha[1]:g} --datasets {args.datasets}" + (" --no-extra" if args.no_extra else "")
           + (" --tiny" if args.tiny else "") + (f" --out {shlex.quote(args.out)}" if args.out else ""))
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    report = train_peaks(args.variant, epochs=args.epochs, max_windows=args.max_windows,
                         seed=args.seed, alpha=args.alpha, out=args.out, data_root=args.data_root,
                         tiny=args.tiny, command=cmd, use_cache=not args.no_cache,
                         datasets=datasets, extra=() if args.no_extra else None)
    print(_summary(report))
    return 0


def _run_sweep(args) -> int:
    from ppg_edge.errors import ConfigError
    from ppg_edge.train.peaks.train import resolve_variants, sweep

    names = resolve_variants(args.variants)
    if args.estimate_from:
        try:
            rep = json.loads(open(args.estimate_from, encoding="utf-8").read())
            per = float(rep["wall_s"])
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{args.estimate_from}: not a training report ({exc})") from exc
        print(f"{len(names)} variant(s) x ~{per / 60:.0f} min ({rep['variant']}, the largest) "
              f"= at most ~{len(names) * per / 3600:.1f} h on this machine")
        return 0
    reports = sweep(names, args.out, epochs=args.epochs, max_windows=args.max_windows,
                    seed=args.seed, data_root=args.data_root, use_ray=args.ray,
                    ray_address=args.ray_address, cpus_per_trial=args.cpus_per_trial, tiny=args.tiny)
    for r in reports:
        print(f"{r['variant']:<7} threshold {r['threshold']:.2f}  "
              f"val F1@50ms {r['val']['clean']['model']['f1_50ms']:.3f}  {r['wall_s']:.0f} s")
    return 0
