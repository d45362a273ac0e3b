"""``ppg-edge evaluate bp``: subject-wise cross-validation of the BP models on PPG-BP.

Registered under ``evaluate`` by :func:`register_bp` (see ``evaluate.py``). With
``--all-subjects --model-dir DIR`` it scores a saved deployment model on every
subject of a data root in the PPG-BP layout instead (no split, no training).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ppg_edge.provenance import machine

from ..errors import ConfigError
from .outputs import write_outputs

log = logging.getLogger(__name__)

DEFAULT_SEED = 20251122


def register_bp(sub) -> None:
    p = sub.add_parser(
        "bp",
        help="cross-validate BP models on PPG-BP by subject (or score a saved model)",
        description=(
            "Subject-wise K-fold CV of blood-pressure models on PPG-BP from a committed split: "
            "out-of-fold predictions for every window, SBP/DBP MAE, RMSE, ME ± SD, MAPE, BHS, "
            "AAMI, IEEE 1708, each beside the naive predictor (each fold's training mean) and "
            "its MASE. --leaky adds a record-wise split, labelled LEAKY."
        ),
    )
    p.add_argument("--model", action="append", metavar="NAME",
                   help="model (repeatable; default feature-gbm): feature-gbm, feature-gbm-demo, feature-gbm-nested[-demo], "
                        "cnn-lstm, cnn-lstm-search, derivatives, multistage, ann, lstm")
    p.add_argument("--folds", default="ppg-bp-10fold", metavar="NAME|FILE",
                   help="committed split name or a split JSON file (default ppg-bp-10fold)")
    p.add_argument("--fs", action="append", type=float, metavar="HZ",
                   help="model input rate (repeatable; default 1000, the paper's; the device: 100)")
    p.add_argument("--via-fs", type=float, metavar="HZ",
                   help="held-out windows from records first resampled to HZ (a sensor's rate, e.g. the "
                        "Zero 2 W's 50), then to --fs: a --fs model on that device; training as usual")
    p.add_argument("--leaky", action="store_true",
                   help="also run a record-wise (LEAKY) split, shown apart")
    p.add_argument("--epochs", type=int, default=30, help="max epochs of the deep models (default 30)")
    p.add_argument("--patience", type=int, default=8,
                   help="early-stopping patience on the inner subject-wise validation split")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--search-trials", type=int, default=3,
                   help="random-search trials per fold for cnn-lstm-search (paper: 100)")
    p.add_argument("--search-epochs", type=int, default=8, help="epochs per search trial (paper: 30)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the one numpy Generator")
    p.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the full JSON result here")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown tables here")
    p.add_argument("--plots", type=Path, metavar="DIR",
                   help="write error histograms and Bland-Altman plots (PNG) here")
    p.add_argument("--predictions", action="store_true", help="keep per-window predictions in --out")
    p.add_argument("--all-subjects", action="store_true",
                   help="score the saved model of --model-dir on every subject of the data root")
    p.add_argument("--model-dir", type=Path, metavar="DIR", help="saved model folder (models/bp/NAME)")
    p.add_argument("--combine", nargs="+", type=Path, metavar="JSON",
                   help="merge earlier --out results (each keeps its command) into one table")
    p.add_argument("--no-cache", action="store_true", help="rebuild the model inputs")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.set_defaults(func=run_bp)


def _load_split(spec: str) -> dict:
    from ..data.splits import load_split

    path = Path(spec)
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"split file {path} does not exist")
        return load_split(path.stem, path.parent)
    return load_split(spec)


def command_line(args, prog: str = "ppg-edge evaluate bp") -> str:
    parts = [prog]
    parts += [f"--model {m}" for m in (args.model or [])]
    if not args.all_subjects:
        parts.append(f"--folds {args.folds}")
    parts += [f"--fs {f:g}" for f in (args.fs or [])]
    if getattr(args, "via_fs", None):
        parts.append(f"--via-fs {args.via_fs:g}")
    for flag in ("leaky", "all_subjects", "predictions"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    if args.model_dir:
        parts.append(f"--model-dir {args.model_dir}")
    for opt in ("epochs", "patience", "batch_size", "search_trials", "search_epochs", "seed"):
        parts.append(f"--{opt.replace('_', '-')} {getattr(args, opt)}")
    for opt in ("out", "markdown", "plots"):
        if getattr(args, opt):
            parts.append(f"--{opt} {getattr(args, opt)}")
    return " ".join(parts)


def run_bp(args: argparse.Namespace) -> int:
    if args.all_subjects:
        return _run_all_subjects(args)
    if args.combine:
        return _run_combine(args)
    import numpy as np

    from ..train.bp import cv
    from ..train.bp.dataset import load_bp_dataset

    models = args.model or ["feature-gbm"]
    for m in models:
        cv.get_model(m)
    rates = args.fs or [1000.0]
    if any(not (f > 40) for f in rates):
        raise ConfigError(f"--fs must be above 40 Hz (the 0.4-20 Hz band-pass), got {rates}")
    if args.epochs < 1 or args.patience < 1 or args.batch_size < 1:
        raise ConfigError("--epochs, --patience and --batch-size must be at least 1")
    opts = cv.TrainOptions(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                           search_trials=args.search_trials, search_epochs=args.search_epochs)
    split = _load_split(args.folds)
    rng = np.random.default_rng(args.seed)
    progress = not getattr(args, "quiet", False)
    results, targets, datasets, failures = [], {}, {}, []
    for fs in rates:
        ds = load_bp_dataset(fs, root=args.data_root, cache=not args.no_cache, progress=progress)
        for ev in ds.events:
            log.warning("bp dataset @ %g Hz: %s", fs, ev)
        test_ds = None
        if args.via_fs:
            test_ds = load_bp_dataset(fs, root=args.data_root, cache=not args.no_cache, progress=progress,
                                      via_fs=args.via_fs)
            if not np.array_equal(test_ds.segments, ds.segments):
                raise ConfigError(f"--via-fs {args.via_fs:g}: the windows differ from those at {fs:g} Hz "
                                  "(a record too short at the lower rate); cannot compare")
        targets[ds.fs] = ds.y
        fold_of = cv.folds_from_split(split, ds.subjects)
        schemes = [(False, fold_of)]
        if args.leaky:
            schemes.append((True, cv.leaky_folds(len(ds), int(fold_of.max()) + 1, rng)))
        datasets[ds.fs] = {"n_windows": len(ds), "n_subjects": int(np.unique(ds.subjects).size),
                           "input_len": ds.input_len, "events": ds.events,
                           "preprocessing": {k: v for k, v in ds.preprocessing.items() if k != "sos"}}
        for leaky, folds in schemes:
            for m in models:
                try:
                    r = cv.cross_validate(ds, m, folds, rng=rng, opts=opts, leaky=leaky,
                                          progress=progress, test_ds=test_ds)
                    if args.via_fs:
                        r.label += f" [held-out windows via {args.via_fs:g} Hz]"
                except Exception as exc:  # one model failing must not lose the others' results
                    if len(models) == 1 and not args.leaky and len(rates) == 1:
                        raise
                    log.error("%s @ %g Hz%s failed: %s: %s", m, fs, " LEAKY" if leaky else "",
                              type(exc).__name__, exc)
                    failures.append({"model": m, "fs": fs, "leaky": leaky,
                                     "error": f"{type(exc).__name__}: {exc}"})
                    continue
                results.append(r)
                if args.out:  # partial results survive an interrupted run
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.with_suffix(".partial.json").write_text(json.dumps(
                        [cv.result_dict(x) for x in results], indent=1) + "\n")
                s, d = r.report["segment"]["sbp"], r.report["segment"]["dbp"]
                log.info("%s @ %g Hz%s: SBP MAE %.2f (naive %.2f), DBP MAE %.2f (naive %.2f), %.0f s",
                         m, fs, " LEAKY" if leaky else "", s["mae"], s["naive_mae"], d["mae"],
                         d["naive_mae"], r.seconds)
    table = "\n\n".join([cv.markdown_table(results, "segment"), cv.markdown_table(results, "subject")])
    doc = {
        "benchmark": "bp",
        "dataset": "ppg-bp (Liang et al., Sci Data 5:180020, 2018)",
        "split": {"name": split.get("name"), "k": split.get("k"), "method": split.get("method"),
                  "seed": split.get("seed"), "sha256": split.get("sha256")},
        "seed": args.seed,
        "options": vars(opts),
        "data": {f"{k:g}": v for k, v in datasets.items()},
        "results": [cv.result_dict(r, args.predictions) for r in results],
        "failures": failures,
        "command": command_line(args),
        "machine": machine(),
        "notes": [
            "naive = mean SBP/DBP of each fold's training windows; MASE = MAE / naive MAE",
            "segment level: one row per 2.1 s window; subject level: mean prediction per subject",
            "AAMI pass judges the errors only (|ME| <= 5, SD <= 8); the standard also needs >= 85 subjects",
            "LEAKY rows put segments of a test subject in training; not comparable with subject-wise rows",
        ],
    }
    if args.plots:
        paths = cv.plot_results(results, targets, args.plots)
        doc["plots"] = [str(p) for p in paths]
    write_outputs(args, doc, table)
    if args.out and args.out.with_suffix(".partial.json").is_file():
        args.out.with_suffix(".partial.json").unlink()
    return 1 if failures else 0


COMBINED_PREAMBLE = """# Blood pressure on PPG-BP: 10-fold cross-validation by subject

Out-of-fold predictions for every 2.1 s window (569 windows, 189 subjects; committed folds
`ppg-bp-10fold`). MAE etc. in mmHg; *naive* = each fold's training-mean predictor, MASE = MAE /
naive MAE (< 1 beats the naive predictor). AAMI judged on the errors only (|ME| <= 5, SD <= 8).
`max epochs`: deep-model budget (early stopping on an inner subject-wise validation split of the
training folds). Literature on the same data and protocol: naive ~16.4 / 8.85, benchmark best
13.07 (LightGBM) / 8.04 (SVR) (Gonzalez et al., Sci Data 10:149, 2023), paper 002 (CNN-LSTM)
14.13 / 8.80. Rows marked LEAKY split a subject's segments between training and test and are
not comparable."""


def _run_combine(args) -> int:
    """Merge result files of several runs (e.g. one per rate) into one document and table."""
    from ..train.bp import cv

    results, runs = [], []
    for path in args.combine:
        if not path.is_file():
            raise ConfigError(f"--combine: {path} does not exist")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--combine: {path} is not JSON ({exc})") from exc
        if doc.get("benchmark") != "bp":
            raise ConfigError(f"--combine: {path} is not an `evaluate bp` result")
        runs.append({k: doc.get(k) for k in ("command", "machine", "split", "seed", "options",
                                             "data", "failures", "plots", "notes")}
                    | {"file": str(path)})
        for r in doc["results"]:
            if "max_epochs" not in r:  # files written before the field existed
                r["max_epochs"] = (doc.get("options") or {}).get("epochs") if cv.MODELS.get(
                    r["model"], (None, None, False))[2] else None
            results.append(r)
    key = {}
    for r in results:  # one row per (model, rate, split kind, budget): the first file wins
        key.setdefault((r["model"], r["fs"], r["leaky"], r.get("max_epochs")), r)
    results = sorted(key.values(), key=lambda r: (r["leaky"], -r["fs"], r["model"],
                                                  r.get("max_epochs") or 0))
    table = "\n\n".join([COMBINED_PREAMBLE, cv.markdown_table(results, "segment"),
                          cv.markdown_table(results, "subject"),
                          "Runs:\n" + "\n".join(f"- `{r['command']}`" for r in runs)])
    out = {"benchmark": "bp", "dataset": "ppg-bp (Liang et al., Sci Data 5:180020, 2018)",
           "results": results, "runs": runs, "machine": machine(),
           "command": " ".join(["ppg-edge evaluate bp --combine", *map(str, args.combine)]
                               + [f"--{o} {getattr(args, o)}" for o in ("out", "markdown")
                                  if getattr(args, o)])}
    write_outputs(args, out, table)
    return 0


def _run_all_subjects(args) -> int:
    import numpy as np

    from ..train.bp.cv import report_levels
    from ..train.bp.dataset import load_bp_dataset
    from ..train.bp.deploy import DeployedModel

    if not args.model_dir:
        raise ConfigError("--all-subjects needs --model-dir DIR (a saved models/bp/NAME folder)")
    if args.model or args.fs or args.leaky:
        raise ConfigError("--all-subjects scores the saved model at its own rate: "
                          "leave out --model, --fs and --leaky")
    model = DeployedModel(args.model_dir)
    ds = load_bp_dataset(model.fs, root=args.data_root, cache=not args.no_cache,
                         progress=not getattr(args, "quiet", False))
    pred = model.predict(ds)
    naive = np.tile(model.fallback, (len(ds), 1))
    rep = report_levels(ds.y, pred, naive, ds.subjects)
    trained_on = set(model.config.get("train_subjects", []))
    seen = sorted(set(ds.subjects.tolist()) & trained_on)
    lines = [f"{model.name} ({args.model_dir}) @ {model.fs:g} Hz on {len(ds)} windows of "
             f"{np.unique(ds.subjects).size} subjects; {len(seen)} of them were in its training data"
             + (" -- those numbers are NOT held-out" if seen else "")]
    for level in ("segment", "subject"):
        for t in ("sbp", "dbp"):
            m = rep[level][t]
            lines.append(f"{level:>7} {t.upper()}: MAE {m['mae']:.2f} (naive training-mean "
                         f"{m['naive_mae']:.2f}, MASE {m['mase']:.3f}), ME {m['me']:+.2f} ± "
                         f"{m['sd']:.2f}, BHS {m['bhs_grade']}, IEEE {m['ieee1708_class']}")
    doc = {"benchmark": "bp-all-subjects", "model_dir": str(args.model_dir), "model": model.name,
           "fs": model.fs, "n_windows": len(ds), "n_subjects_in_training": len(seen),
           "report": rep, "command": command_line(args), "machine": machine()}
    write_outputs(args, doc, "\n".join(lines))
    return 0
