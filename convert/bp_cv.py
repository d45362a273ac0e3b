"""Quantized vs float BP accuracy on held-out subjects: subject-wise CV of the CNN-LSTM.

The committed ``models/bp/cnn-lstm-100hz`` was trained on every PPG-BP subject, so
scoring its int8 file on PPG-BP would score it on its training subjects. Instead, for
each fold of the committed split ``ppg-bp-10fold`` this trains the same recipe on the
other folds (``train.bp.cv.fit_model("cnn-lstm")``: inner subject split for early
stopping, training-fold means as the output bias), converts that fold's model to
every variant (float32, dynamic, int8 with mmHg outputs, int8 with the output
scaling of :mod:`.bp`), calibrates int8 on windows of the fold's *training* subjects,
and predicts the fold's held-out subjects with the device runtime's ``EdgeModel``
(manifest check, state reset per window, int8 I/O via the manifest; ``target_scaling``
undone as ``BPStage`` does). The naive predictor is the training-fold mean.
Reported per variant: MAE, ME +- SD, BHS grade (``train.bp.cv.report_levels``: per
window and per subject), ``Delta MAE`` against the fold's own Keras float model, and
the file sizes.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ppg_edge.errors import DataError

log = logging.getLogger(__name__)

VARIANTS = ("float32", "dynamic", "int8-raw", "int8-scaled")


def _edge_predict(flat: bytes, pre, name: str, workdir, mode: str, scaling: dict | None):
    from ppg_edge.edge_runtime.interpreter import EdgeModel

    from .package import save_converted

    extra = {"targets": ["sbp", "dbp"]}
    if scaling:
        extra["target_scaling"] = scaling
    path = save_converted(flat, workdir, name, kind="bp", mode=mode, sample_rate_hz=pre.fs, window=pre.window,
                          hop=pre.hop, preprocessing=pre.to_dict(), extra=extra)
    em = EdgeModel(path, kind="bp", backend="ai-edge-litert")
    mean = np.asarray(scaling["mean"]) if scaling else np.zeros(2)
    std = np.asarray(scaling["std"]) if scaling else np.ones(2)

    def predict(x):
        return np.stack([np.atleast_1d(em.predict_window(w)).reshape(-1) * std + mean for w in x])

    return predict


def run_quantized_cv(fs: float = 100.0, *, folds: Sequence[int] | None = None, epochs: int = 30,
                     patience: int = 6, batch_size: int = 32, seed: int = 20251122, n_calibration: int = 200,
                     variants: Sequence[str] = VARIANTS, data_root=None, progress: bool = True) -> dict:
    """Train per fold, quantize, score on the held-out fold; returns the report dict."""
    import tempfile

    from tqdm import tqdm

    from ppg_edge.data.splits import load_split
    from ppg_edge.train.bp.cv import TrainOptions, assert_subject_folds, fit_model, folds_from_split, report_levels
    from ppg_edge.train.bp.dataset import load_bp_dataset, preprocessing_for

    from .bp import bp_windows, convert_bp_keras, draw_rows, target_stats
    from .bp import device_preprocessing as _devpre

    t0 = time.time()
    ds = load_bp_dataset(float(fs), root=data_root)
    split = load_split("ppg-bp-10fold")
    fold_of = folds_from_split(split, ds.subjects)
    assert_subject_folds(fold_of, ds.subjects)
    all_folds = sorted(int(k) for k in np.unique(fold_of))
    folds = all_folds if folds is None else [int(k) for k in folds]
    if any(k not in all_folds for k in folds):
        raise DataError(f"folds {folds} not in the split's {all_folds}")
    pre = _devpre({"preprocessing": preprocessing_for(float(fs)).to_dict(), "input_len": ds.input_len})
    x = bp_windows(ds)
    rows_used = np.flatnonzero(np.isin(fold_of, folds))
    names = ["keras-float", *variants]
    preds = {n: np.full((len(ds), 2), np.nan) for n in names}
    naive = np.full((len(ds), 2), np.nan)
    sizes: dict[str, list[int]] = {n: [] for n in variants}
    fold_info = []
    rng = np.random.default_rng(int(seed))
    opts = TrainOptions(epochs=int(epochs), patience=int(patience), batch_size=int(batch_size))
    with tempfile.TemporaryDirectory(prefix="ppg-edge-bpcv-") as work:
        for k in tqdm(folds, desc="bp quantized CV", disable=not progress):
            te = fold_of == k
            train, test = ds.subset(~te), ds.subset(te)
            naive[te] = train.y.mean(axis=0)
            tk = time.time()
            fitted = fit_model("cnn-lstm", train, rng, opts)
            model = fitted.keras_model
            preds["keras-float"][te] = fitted.predict(test)
            x_tr = bp_windows(train)
            x_cal = x_tr[draw_rows(len(x_tr), n_calibration, int(seed) + k)]
            mean, std = target_stats(train.y)
            info: dict[str, Any] = {"fold": k, "n_train": len(train), "n_test": len(test),
                                    "n_test_subjects": int(np.unique(test.subjects).size),
                                    "n_calibration": int(len(x_cal)), **fitted.info}
            for v in variants:
                mode = "int8" if v.startswith("int8") else v
                scheme = "scaled" if v == "int8-scaled" else "raw"
                _, flat, scaling = convert_bp_keras(model, mode, x_cal if mode == "int8" else None, scheme, mean, std)
                predict = _edge_predict(flat, pre, f"fold{k}-{v}", work, mode, scaling)
                preds[v][te] = predict(x[te])
                sizes[v].append(len(flat))
            info["train_convert_s"] = round(time.time() - tk, 1)
            fold_info.append(info)
            log.info("fold %d: %s", k, {n: np.round(np.mean(np.abs(preds[n][te] - test.y), axis=0), 2).tolist()
                                        for n in names})
    y, subj = ds.y[rows_used], ds.subjects[rows_used]
    out: dict[str, Any] = {"variants": {}, "folds": fold_info}
    ref = preds["keras-float"][rows_used]
    for n in names:
        p = preds[n][rows_used]
        if not np.all(np.isfinite(p)):
            raise DataError(f"variant {n}: predictions are not finite")
        rep = report_levels(y, p, naive[rows_used], subj)
        row: dict[str, Any] = {"report": rep}
        row["delta_mae_vs_keras"] = {t: float(np.mean(np.abs(p[:, j] - y[:, j])) - np.mean(np.abs(ref[:, j] - y[:, j])))
                                     for j, t in enumerate(("sbp", "dbp"))}
        row["max_abs_diff_vs_keras"] = {t: float(np.max(np.abs(p[:, j] - ref[:, j]))) for j, t in enumerate(("sbp", "dbp"))}
        row["mean_abs_diff_vs_keras"] = {t: float(np.mean(np.abs(p[:, j] - ref[:, j]))) for j, t in enumerate(("sbp", "dbp"))}
        if n in sizes:
            row["size_bytes_median"] = int(np.median(sizes[n]))
        out["variants"][n] = row
    f32 = out["variants"].get("float32", {}).get("size_bytes_median")
    for n in variants:
        if f32 and n != "float32":
            out["variants"][n]["size_vs_float32"] = out["variants"][n]["size_bytes_median"] / f32
    out.update({"fs": float(fs), "split": "ppg-bp-10fold", "folds_run": folds, "n_folds_in_split": len(all_folds),
                "n_windows": int(rows_used.size), "n_subjects": int(np.unique(subj).size),
                "epochs_max": int(epochs), "patience": int(patience), "batch_size": int(batch_size),
                "seed": int(seed), "n_calibration": int(n_calibration), "wall_s": round(time.time() - t0, 1)})
    return out


def to_markdown(res: dict) -> str:
    lines = [f"BP CNN-LSTM at {res['fs']:g} Hz: float vs quantized on held-out subjects "
             f"(subject-wise CV, split `{res['split']}`, folds {res['folds_run']} of {res['n_folds_in_split']}, "
             f"{res['n_windows']} windows of {res['n_subjects']} subjects; at most {res['epochs_max']} epochs, "
             f"patience {res['patience']}).", "",
             "| variant | level | SBP MAE | naive | SBP ME ± SD | BHS | DBP MAE | naive | DBP ME ± SD | BHS "
             "| ΔMAE SBP/DBP vs Keras | bytes (median) | vs float32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, row in res["variants"].items():
        for level in ("segment", "subject"):
            r = row["report"][level]
            s, d = r["sbp"], r["dbp"]
            dm = row["delta_mae_vs_keras"]
            size = row.get("size_bytes_median")
            ratio = row.get("size_vs_float32")
            lines.append(
                f"| {n} | {level} | {s['mae']:.2f} | {s['naive_mae']:.2f} | {s['me']:+.2f} ± {s['sd']:.2f} | "
                f"{s['bhs_grade']} | {d['mae']:.2f} | {d['naive_mae']:.2f} | {d['me']:+.2f} ± {d['sd']:.2f} | "
                f"{d['bhs_grade']} | {dm['sbp']:+.3f} / {dm['dbp']:+.3f} | {size if size else ''} | "
                f"{f'{ratio:.0%}' if ratio else ''} |")
    lines += ["", "Naive: the training-fold mean SBP/DBP (per fold). ΔMAE: variant MAE minus the same fold "
              "models' Keras float MAE (segment level; target |ΔMAE| ≤ 0.2 mmHg). int8-raw: plain post-training "
              "int8 with mmHg outputs; int8-scaled: training-fold mean/std folded into the last Dense layer "
              "(standardised int8 output, undone on the device via the manifest's target_scaling). TFLite "
              "variants run through the device runtime's EdgeModel (ai-edge-litert, state reset per window).",
              f"Machine: {res.get('machine')}", f"Command: `{res.get('command')}` ({res['wall_s']:.0f} s)"]
    return "\n".join(lines) + "\n"
