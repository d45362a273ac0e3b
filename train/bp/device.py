"""The device's BP model: chosen by subject-wise CV, trained on every subject, exported for numpy.

:func:`choose` reads ``ppg-edge evaluate bp`` results (out-of-fold, subject-wise, at the
device's rate) and picks, for each kind of input (``ppg``; ``ppg+profile``), one model
among those the device runs (:data:`DEVICE_RUNNABLE`). The rule, fixed before the
results were read:

1. per quantity (SBP, DBP) the model *outputs* it only when its CV MASE is below
   :data:`ppg_edge.edge_runtime.bp.MASE_LIMIT` (0.95) and it beats the naive mean on at least
   ``MIN_FOLD_SHARE`` (80%) of the folds (the runtime's :func:`~ppg_edge.edge_runtime.bp.withheld_reason`);
   more quantities output wins;
2. then a model whose DBP beats the naive mean on every fold wins over one that does not
   (stability across subjects);
3. then the lower mean MASE over the quantities it outputs.

MASE is read at the **subject level** (a subject's mean prediction over its three 2.1 s
segments against its cuff reading): the device, too, averages its window outputs over a
stable stretch of 3-5 windows before it shows a number (``edge_runtime.bp``).

:func:`build_device_model` trains the chosen feature model on every subject (a nested
model's parameters searched on every subject the same way as inside each CV fold),
exports its trees (:func:`ppg_edge.convert.trees.export_hgb`, checked against
scikit-learn's own predictions to 1e-9) and writes the device file ``*.trees`` with a
sealed manifest that carries the CV figures the runtime shows beside each number.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ppg_edge.edge_runtime.bp import MASE_LIMIT, withheld_reason
from ppg_edge.errors import ConfigError

log = logging.getLogger(__name__)

#: model -> how the device runs it ("trees": numpy tree ensemble; "window-tflite": the runtime's TFLite BP path)
#: The feature models on every feature (``feature-gbm``, ``-nested``) are not: three of their features are
#: in PPG-BP's sensor units (``features.bp.SENSOR_UNIT_FEATURES``), meaningless for the device's sensor.
DEVICE_RUNNABLE = {"feature-gbm-portable": "trees", "feature-gbm-portable-demo": "trees",
                   "cnn-lstm": "window-tflite", "cnn-lstm-search": "window-tflite"}
NOT_RUNNABLE_WHY = {"feature-gbm": "no: features in sensor units", "feature-gbm-demo": "no: features in sensor units",
                    "feature-gbm-nested": "no: features in sensor units",
                    "feature-gbm-nested-demo": "no: features in sensor units"}
LEVEL = "subject"
QUANTITIES = ("sbp", "dbp")


def inputs_of(model: str) -> str:
    return "ppg+profile" if model.endswith("-demo") else "ppg"


def _rows(docs: list[dict], fs: float) -> list[dict]:
    rows = []
    for doc in docs:
        for r in doc.get("results", []):
            if r.get("leaky") or abs(float(r["fs"]) - fs) > 1e-9:
                continue
            if "spread" not in r:
                log.warning("%s: no per-fold results (an older `evaluate bp` file); not a candidate", r["model"])
                continue
            rows.append({**r, "command": doc.get("command")})
    return rows


def candidate_row(r: dict) -> dict:
    rep, spread = r["report"][LEVEL], r["spread"][LEVEL]
    out = {"model": r["model"], "inputs": inputs_of(r["model"]), "device": DEVICE_RUNNABLE.get(r["model"]),
           "command": r.get("command")}
    for q in QUANTITIES:
        out[q] = {"mae": rep[q]["mae"], "naive_mae": rep[q]["naive_mae"], "mase": rep[q]["mase"],
                  "mase_sd_folds": spread[q]["mase_sd"], "mase_max_fold": spread[q]["mase_max"],
                  "folds_beating_naive": spread[q]["folds_beating_naive"], "n_folds": spread[q]["n_folds"],
                  "segment_mae": r["report"]["segment"][q]["mae"],
                  "segment_mase": r["report"]["segment"][q]["mase"]}
    out["outputs"] = [q for q in QUANTITIES if withheld_reason(out[q]) is None]  # the runtime's own rule
    d = out["dbp"]
    out["dbp_beats_naive_every_fold"] = d["folds_beating_naive"] == d["n_folds"]
    out["rank_key"] = [-len(out["outputs"]), 0 if out["dbp_beats_naive_every_fold"] else 1,
                       float(np.mean([out[q]["mase"] for q in out["outputs"]])) if out["outputs"] else 9.0]
    return out


def choose(docs: list[dict], fs: float = 100.0) -> dict:
    """``{"candidates": [...], "chosen": {inputs: row}, "rule": ...}`` (see the module docstring)."""
    rows = [candidate_row(r) for r in _rows(docs, fs)]
    if not rows:
        raise ConfigError(f"no subject-wise results at {fs:g} Hz with per-fold figures to choose from")
    chosen = {}
    for inputs in ("ppg", "ppg+profile"):
        runnable = [r for r in rows if r["inputs"] == inputs and r["device"] is not None]
        if runnable:
            chosen[inputs] = min(runnable, key=lambda r: r["rank_key"])["model"]
    return {"fs": fs, "level": LEVEL, "mase_limit": MASE_LIMIT, "candidates": rows, "chosen": chosen,
            "rule": "outputs a quantity only with CV MASE < 0.95 and better than the naive mean on >= 80% of the "
                    "folds; more quantities output, then DBP beating the naive mean on every fold, then the lower "
                    "mean MASE of the quantities output; subject level"}


def choice_markdown(choice: dict) -> str:
    head = ("| model | inputs | device | SBP MAE | naive | MASE | folds < naive | DBP MAE | naive | MASE | "
            "folds < naive | outputs |\n|" + "---|" * 12)
    lines = [f"Subject-wise 10-fold CV at {choice['fs']:g} Hz, subject level (a subject's mean over its "
             "2.1 s segments, as the device averages a stretch); MAE in mmHg, naive = each fold's "
             "training mean. Rule: " + choice["rule"] + ".", "", head]
    for r in sorted(choice["candidates"], key=lambda r: (r["inputs"], r["rank_key"])):
        star = " **(chosen)**" if choice["chosen"].get(r["inputs"]) == r["model"] else ""
        cells = [f"{r['model']}{star}", r["inputs"],
                 r["device"] or NOT_RUNNABLE_WHY.get(r["model"], "no: inputs the runtime does not frame")]
        for q in QUANTITIES:
            m = r[q]
            cells += [f"{m['mae']:.2f}", f"{m['naive_mae']:.2f}", f"{m['mase']:.3f}",
                      f"{m['folds_beating_naive']}/{m['n_folds']}"]
        cells.append(", ".join(q.upper() for q in r["outputs"]) or "nothing (all withheld)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cv_block(row: dict) -> dict:
    """The manifest's ``cv``: what the runtime shows beside each number."""
    return {q: {"mae": round(row[q]["mae"], 3), "naive_mae": round(row[q]["naive_mae"], 3),
                "mase": round(row[q]["mase"], 4), "level": LEVEL,
                "folds_beating_naive": row[q]["folds_beating_naive"], "n_folds": row[q]["n_folds"],
                "mase_sd_folds": round(row[q]["mase_sd_folds"], 4)} for q in QUANTITIES} | {
        "command": row.get("command"), "split": "ppg-bp-10fold (subject-wise)"}


def stamp_tflite_cv(out_dir, row: dict, fs: float) -> list[Path]:
    """Write ``row``'s CV block into the manifests of its converted TFLite files in ``out_dir``
    (``bp-<model>-<fs>hz-*.json``, e.g. the CNN-LSTM's float32 and int8): the runtime shows it
    beside every number, and withholds a quantity whose MASE says it is the mean. The CV is of
    the Keras recipe (the file was trained on every subject with it); the file's own distance
    from Keras is its manifest's ``self_check``."""
    from ppg_edge import manifest as mf

    out = []
    for path in sorted(Path(out_dir).glob(f"bp-{row['model']}-{fs:g}hz-*.json")):
        man = mf.read_manifest(path)
        man["cv"] = cv_block(row) | {"of": "the Keras recipe's subject-wise CV; this file's distance from "
                                           "the Keras model: self_check"}
        mf.write_manifest(man, path)
        out.append(path)
        log.info("%s: CV block of %s written", path.name, row["model"])
    return out


def build_device_model(ds, row: dict, out_dir, *, rng: np.random.Generator, command: str,
                       profile_model: str | None = None) -> Path:
    """Train ``row``'s feature model on every subject of ``ds``, export it, write ``*.trees`` + manifest."""
    from ppg_edge import manifest as mf
    from ppg_edge.convert.trees import check_export, export_hgb
    from ppg_edge.edge_runtime.user import PROFILE_NAMES
    from ppg_edge.features.bp import PORTABLE_COLUMNS, PORTABLE_FEATURE_NAMES

    from .dataset import preprocessing_for
    from .feature_baseline import FeatureBaseline, nested_search

    name = row["model"]
    if DEVICE_RUNNABLE.get(name) != "trees":
        raise ConfigError(f"{name} is not a feature model; convert it with `ppg-edge convert` instead")
    demo = row["inputs"] == "ppg+profile"
    D = ds.demographics if demo else None
    X = ds.features[:, list(PORTABLE_COLUMNS)]   # every device feature model: no features in sensor units
    params = None
    if "nested" in name:
        params = nested_search(X, ds.y, ds.subjects, rng=rng, demographics=D)["per_target"]
    m = FeatureBaseline(use_demographics=demo, rng=rng, per_target=params).fit(X, ds.y, D)
    names = list(PORTABLE_FEATURE_NAMES) + (list(PROFILE_NAMES) if demo else [])
    doc = export_hgb(m.models, names, list(QUANTITIES))
    Z = np.hstack([X, ds.demographics]) if demo else X
    diff = check_export(m.models, doc, Z)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bp-{'ppg-profile' if demo else 'ppg'}-{ds.fs:g}hz"  # the name the device config uses
    model_file = out / f"{stem}.trees"
    model_file.write_text(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")
    spec = preprocessing_for(ds.fs)
    n_feat = len(names)
    man = {
        "kind": "bp", "name": name, "mode": "trees", "model_file": model_file.name,
        "sha256": mf.sha256_file(model_file), "size_bytes": model_file.stat().st_size,
        "inputs": [mf.tensor_spec("features", [1, n_feat], "float64")],
        "outputs": [mf.tensor_spec("bp", [1, 2], "float64")],
        "sample_rate_hz": ds.fs, "window": spec.window, "hop": spec.hop, "preprocessing": spec.to_dict(),
        "targets": list(QUANTITIES), "inputs_kind": row["inputs"], "feature_names": names,
        "cv": cv_block(row), "training": {
            "data": "ppg-bp, every subject", "n_windows": len(ds), "n_subjects": int(np.unique(ds.subjects).size),
            "params": m.target_params, "export_max_abs_diff_vs_sklearn": diff, "command": command,
            "features_from": "raw window at the model rate (ppg_edge.features.bp.segment_features), "
                             "without the features in sensor units (SENSOR_UNIT_FEATURES)"},
        "naive_mean": [round(float(v), 3) for v in ds.y.mean(axis=0)],
    }
    if profile_model:
        man["profile_model"] = profile_model
    mf.write_manifest(man, mf.manifest_path_for(model_file))
    log.info("wrote %s (%d trees, export diff %.1e)", model_file, sum(len(e["trees"]) for e in doc["ensembles"]),
             diff)
    return model_file
