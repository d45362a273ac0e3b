"""``ppg-edge train bp``: train a BP model on all PPG-BP subjects for deployment and
save it to ``models/bp/<name>/``.

:func:`add_bp_parser` adds the ``bp`` job to the ``train`` command. Stopping uses an inner validation split by subject of the
training subjects, as in the cross-validation (:mod:`ppg_edge.train.bp.cv`).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SEED = 20251122


def _add_arguments(p) -> None:
    p.add_argument("--model", required=True, metavar="NAME",
                   help="feature-gbm, feature-gbm-demo, cnn-lstm, cnn-lstm-search, derivatives, "
                        "multistage, ann, lstm")
    p.add_argument("--all-subjects", action="store_true", required=True,
                   help="train on every subject of the data root (deployment; no held-out test)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="model folder, e.g. models/bp/NAME")
    p.add_argument("--fs", type=float, default=100.0, help="model input rate (default 100, the device's)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--search-trials", type=int, default=3)
    p.add_argument("--search-epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--cv-json", type=Path, metavar="FILE",
                   help="CV result (evaluate bp --out) whose figures for this model go in the card")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.set_defaults(func=run_train_bp)


def add_bp_parser(train_subparsers) -> None:
    """``train bp`` under an existing ``train`` command."""
    p = train_subparsers.add_parser("bp", help="train a BP model on all PPG-BP subjects",
                                    description=__doc__)
    _add_arguments(p)


def _command(args) -> str:
    parts = ["ppg-edge train bp", f"--model {args.model}", "--all-subjects", f"--fs {args.fs:g}",
             f"--epochs {args.epochs}", f"--patience {args.patience}",
             f"--batch-size {args.batch_size}", f"--seed {args.seed}", f"--out {args.out}"]
    if args.model == "cnn-lstm-search":
        parts += [f"--search-trials {args.search_trials}", f"--search-epochs {args.search_epochs}"]
    if args.cv_json:
        parts.append(f"--cv-json {args.cv_json}")
    return " ".join(parts)


def _cv_rows(cv_json: Path | None, model: str, fs: float) -> list[dict]:
    if not cv_json:
        return []
    if not cv_json.is_file():
        raise ConfigError(f"--cv-json {cv_json} does not exist")
    doc = json.loads(cv_json.read_text())
    rows = [r for r in doc.get("results", []) if r["model"] == model and abs(r["fs"] - fs) < 1e-9]
    for r in rows:
        r["command"] = doc.get("command")
    return rows


def model_card(cfg: dict, cv_rows: list[dict]) -> str:
    lines = [
        f"# BP model `{cfg['model']}` at {cfg['fs']:g} Hz",
        "",
        "Estimates SBP and DBP (mmHg) from one 2.1 s PPG window. **Research model, not a medical "
        "device.** Trained on all PPG-BP subjects: the figures below are from the subject-wise "
        "10-fold cross-validation of the same recipe, not from this exact model.",
        "",
        "## Data",
        "PPG-BP (Liang et al., Sci Data 5:180020, 2018; CC BY 4.0): "
        f"{cfg['n_train_windows']} windows of {cfg['n_train_subjects']} subjects, one cuff reading "
        "per subject. Input: the shared device preprocessing (causal 0.4-20 Hz band-pass, z-score per "
        f"window), {cfg['input_len']} samples at {cfg['fs']:g} Hz (records resampled with "
        "scipy.signal.resample_poly when the rate differs from 1000 Hz). Spec with filter "
        "coefficients: `config.json` -> `preprocessing`.",
        "",
        "## Training",
        f"- seed {cfg['seed']} (one numpy Generator); "
        + ("fixed boosting parameters, no early stopping" if cfg.get("weights", "").endswith(".pkl")
           else f"stopping on an inner validation split of {cfg.get('val_fraction', 0.15):.0%} of "
                f"the subjects (patience {cfg.get('patience')}, at most {cfg.get('epochs_max')} epochs)"),
        f"- training means (the naive predictor): SBP {cfg['train_mean']['sbp']:.2f}, DBP "
        f"{cfg['train_mean']['dbp']:.2f} mmHg",
        f"- details: `{json.dumps(cfg.get('info', {}), default=str)[:400]}`",
        f"- command: `{cfg['command']}`",
        "",
        "## Cross-validation (subject-wise, committed folds `ppg-bp-10fold`)",
    ]
    if not cv_rows:
        lines.append("No CV figures were given (--cv-json).")
    for r in cv_rows:
        lines.append(f"- {'LEAKY record-wise' if r['leaky'] else 'subject-wise'} CV, `{r['command']}`")
        for level in ("segment", "subject"):
            for t in ("sbp", "dbp"):
                m = r["report"][level][t]
                lines.append(
                    f"  - {level} {t.upper()}: MAE {m['mae']:.2f} vs naive {m['naive_mae']:.2f} "
                    f"(MASE {m['mase']:.3f}), RMSE {m['rmse']:.2f}, ME {m['me']:+.2f} ± {m['sd']:.2f}, "
                    f"BHS {m['bhs_grade']}, AAMI {'pass' if m['aami_pass'] else 'fail'}, "
                    f"IEEE 1708 {m['ieee1708_class']}")
    lines += ["", "## Limits",
              "- PPG-BP subjects are Chinese hospital patients at rest; one cuff reading per subject.",
              "- Close to the naive predictor: errors of 10-15 mmHg are expected for a new person.",
              "- Every PPG-BP subject was used for training: score it on new subjects only "
              "(`ppg-edge evaluate bp --all-subjects --model-dir DIR --data-root OTHER`)."]
    return "\n".join(lines) + "\n"


def run_train_bp(args: argparse.Namespace) -> int:
    import numpy as np

    from ..train.bp import cv
    from ..train.bp.dataset import load_bp_dataset
    from ..train.bp.deploy import save_model

    cv.get_model(args.model)
    if not args.fs > 40:
        raise ConfigError(f"--fs must be above 40 Hz, got {args.fs}")
    opts = cv.TrainOptions(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                           search_trials=args.search_trials, search_epochs=args.search_epochs)
    cv_rows = _cv_rows(args.cv_json, args.model, args.fs)
    rng = np.random.default_rng(args.seed)
    ds = load_bp_dataset(args.fs, root=args.data_root, progress=not getattr(args, "quiet", False))
    fitted = cv.fit_model(args.model, ds, rng, opts)
    extra = {"seed": args.seed, "command": _command(args), "patience": args.patience,
             "val_fraction": opts.val_fraction, "epochs_max": args.epochs,
             "dataset": "ppg-bp", "train_subjects": sorted(set(ds.subjects.tolist())),
             "cv": [{k: r[k] for k in ("fs", "leaky", "report", "command")} for r in cv_rows]}
    out = save_model(fitted, args.out, ds=ds, extra=extra)
    from ..train.bp.deploy import read_config

    (out / "MODEL_CARD.md").write_text(model_card(read_config(out), cv_rows))
    p = fitted.predict(ds)
    fit_mae = np.mean(np.abs(p - ds.y), axis=0)
    print(f"saved {args.model} @ {args.fs:g} Hz to {out}; training-data MAE (not held-out) "
          f"SBP {fit_mae[0]:.2f}, DBP {fit_mae[1]:.2f}")
    return 0


def add_bp_device_parser(train_subparsers) -> None:
    """``train bp-device``: choose the device's BP model by CV, train it on every subject, export it."""
    p = train_subparsers.add_parser(
        "bp-device", help="choose the device's BP models by subject-wise CV MASE, train and export them",
        description=("Read `ppg-edge evaluate bp` results (with per-fold figures), choose one device-runnable "
                     "model per input kind (PPG only; PPG + the wearer's profile) by the rule of "
                     "ppg_edge.train.bp.device, train each on every PPG-BP subject and write its numpy tree "
                     "file (*.trees) with a manifest carrying its CV figures."))
    p.add_argument("--cv", type=Path, action="append", required=True, metavar="FILE",
                   help="an `evaluate bp --out` result (repeatable)")
    p.add_argument("--fs", type=float, default=100.0, help="the device's model rate (default 100)")
    p.add_argument("--out", type=Path, default=Path("models/device"), metavar="DIR")
    p.add_argument("--choice", type=Path, metavar="STEM",
                   help="write the choice as STEM.json and STEM.md (e.g. docs/results/bp-device-choice)")
    p.add_argument("--choose-only", action="store_true", help="print the choice, train nothing")
    p.add_argument("--json", action="store_true", help="print the choice as JSON (the only thing on stdout)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.set_defaults(func=run_train_bp_device)


def run_train_bp_device(args: argparse.Namespace) -> int:
    import numpy as np

    from ..provenance import machine
    from ..train.bp import device
    from ..train.bp.dataset import load_bp_dataset

    docs = []
    for path in args.cv:
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--cv {path}: not a readable `evaluate bp` JSON ({exc})") from None
    choice = device.choose(docs, fs=args.fs)
    command = " ".join(["ppg-edge train bp-device", *[f"--cv {p}" for p in args.cv], f"--fs {args.fs:g}",
                        f"--out {args.out}", f"--seed {args.seed}"]
                       + ([f"--choice {args.choice}"] if args.choice else []))
    choice |= {"command": command, "machine": machine(), "files": {}}
    if not args.choose_only:
        rows = {r["model"]: r for r in choice["candidates"]}
        ds = load_bp_dataset(args.fs, root=args.data_root, progress=not getattr(args, "quiet", False))
        files = {}
        for inputs in ("ppg+profile", "ppg"):  # the profile model first: the PPG model's manifest names it
            name = choice["chosen"].get(inputs)
            if name is None or device.DEVICE_RUNNABLE[name] != "trees":
                log.warning("%s: the chosen model %s is not a feature model; nothing exported", inputs, name)
                continue
            rng = np.random.default_rng(args.seed)
            path = device.build_device_model(ds, rows[name], args.out, rng=rng, command=command,
                                             profile_model=files.get("ppg+profile") if inputs == "ppg" else None)
            files[inputs] = path.name
        choice["files"] = files
    for row in choice["candidates"]:  # the TFLite files the device can run carry their CV too
        if row["device"] == "window-tflite":
            stamped = device.stamp_tflite_cv(args.out, row, args.fs)
            choice["files"] |= {f"{row['model']} (cv block)": [p.name for p in stamped]}
    table = device.choice_markdown(choice) + f"\n\nCommand: `{command}`\n"
    if args.choice:
        args.choice.parent.mkdir(parents=True, exist_ok=True)
        args.choice.with_suffix(".json").write_text(json.dumps(choice, indent=1) + "\n")
        args.choice.with_suffix(".md").write_text(table)
    print(json.dumps(choice, indent=1) if args.json else table)
    return 0
