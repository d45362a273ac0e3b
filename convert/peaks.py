"""Convert a saved peak detector (``save_peak_model`` format) to TFLite files with manifests.

Used by ``ppg-edge convert``. Every written model passed its Keras-vs-TFLite self-check
on held-out windows (validation subjects of the calibration list, or synthetic PPG when
no list is given); a model that fails is not written.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ppg_edge.errors import ModelError

log = logging.getLogger(__name__)


def find_saved_model(path: str | os.PathLike) -> Path:
    """The ``<stem>.json`` of a saved peak model: ``path`` itself, its stem, or the one
    ``*.json`` with a sibling ``*.weights.h5`` inside directory ``path``."""
    p = Path(path)
    if p.is_dir():
        found = sorted(j for j in p.glob("*.json") if j.with_name(j.name[:-5] + ".weights.h5").is_file())
        if len(found) != 1:
            raise ModelError(
                f"{p}: expected one saved peak model (<name>.json + <name>.weights.h5), found {len(found)}"
                + (f": {[f.name for f in found]}" if found else "")
            )
        return found[0]
    stem = p.name[:-5] if p.name.endswith(".json") else p.name.replace(".weights.h5", "")
    meta = p.with_name(stem + ".json")
    if not meta.is_file():
        raise ModelError(f"{p}: no saved peak model there (looked for {meta.name})")
    return meta


def peak_preprocessing(config, window: int):
    """The preprocessing a peak model of ``config`` takes: the peaks band-pass, z-score,
    and the one db4 detail level named by its input (``ppg+dwt3`` -> d3) as channel 2."""
    from ppg_edge.dsp.pipeline import peaks_preprocessing

    levels = (config.dwt_level,) if config.dwt_level else ()
    pre = peaks_preprocessing(config.fs, window=int(window), hop=int(window) // 2, dwt_levels=levels)
    if len(pre.channels) != config.n_channels:
        raise ModelError(f"{config.name}: preprocessing makes {len(pre.channels)} channels, model takes {config.n_channels}")
    return pre


def synthetic_windows(pre, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` windows of synthetic PPG (``ppg_edge.synth``, 45-150 bpm) through ``pre``."""
    from ppg_edge.synth import synth_ppg

    out: list[np.ndarray] = []
    while len(out) < n:
        dur = (pre.window * 6) / pre.fs
        s = synth_ppg(dur, pre.fs, rng, hr_bpm=float(rng.uniform(45, 150)), offset=float(rng.uniform(0, 5)))
        out.extend(pre.apply(s.signal)[1:])  # skip the first window (filter settling)
    return np.asarray(out[:n], dtype=np.float32)


@dataclass
class Converted:
    mode: str
    path: Path
    size_bytes: int
    check: dict


def convert_saved_peak_model(
    model_path: str | os.PathLike,
    modes: Sequence[str],
    out_dir: str | os.PathLike | None = None,
    *,
    calibration_list: str | os.PathLike | None = None,
    synthetic_calibration: int | None = None,
    n_check: int = 32,
    threshold: float = 0.5,
    seed: int = 0,
    data_root=None,
    metrics: dict | None = None,
) -> list[Converted]:
    """Convert, self-check and write each of ``modes``; returns what was written."""
    from ppg_edge.train.peaks.fit import load_peak_model

    from . import calibration as cal
    from .package import save_converted
    from .tflite import MODES, convert_model, self_check

    for m in modes:
        if m not in MODES:
            raise ModelError(f"unknown conversion mode {m!r}; valid modes: {', '.join(MODES)}")
    meta = find_saved_model(model_path)
    model, config = load_peak_model(meta)
    window = int(model.input_shape[1])
    pre = peak_preprocessing(config, window)
    out_dir = Path(out_dir) if out_dir else meta.parent / "tflite"
    rng = np.random.default_rng(int(seed))
    x_cal = None
    cal_info: dict[str, Any]
    if calibration_list:
        from ppg_edge.data.splits import load_split

        doc = cal.load_calibration_list(calibration_list)
        cal.check_calibration_list(doc, load_split(doc["split"]))
        x_cal, balance = cal.load_windows(doc, pre, "entries", data_root)
        if doc["holdout_entries"]:
            x_check, _ = cal.load_windows(doc, pre, "holdout_entries", data_root)
        else:
            x_check = synthetic_windows(pre, n_check, rng)
        log.info("%s", cal.describe(doc, balance))
        cal_info = {"source": str(calibration_list), "split": doc["split"], "seed": doc["seed"],
                    "n_windows": doc["n_windows"], "n_holdout": doc["n_holdout"], "balance": balance}
    else:
        if synthetic_calibration:
            x_cal = synthetic_windows(pre, int(synthetic_calibration), rng)
        x_check = synthetic_windows(pre, n_check, rng)
        cal_info = {"source": "synthetic PPG (ppg_edge.synth)", "seed": int(seed),
                    "n_windows": int(synthetic_calibration or 0), "n_holdout": int(n_check)}
    if any(m in ("int8", "16x8") for m in modes) and x_cal is None:
        raise ModelError("int8 conversion needs calibration windows: give --calibration LIST "
                         "(training-subject windows) or --synthetic-calibration N")
    written = []
    for mode in modes:
        flat = convert_model(model, mode, calibration=x_cal)
        check = self_check(model, flat, x_check, mode)
        path = save_converted(
            flat, out_dir, f"{meta.stem}-{mode}", kind="peaks", mode=mode,
            sample_rate_hz=pre.fs, window=pre.window, hop=pre.hop, preprocessing=pre.to_dict(),
            decoder={"threshold": float(threshold)},
            training={"model_config": config.to_dict(), "keras_model": meta.name,
                      "split": cal_info.get("split")},
            calibration=cal_info if mode in ("int8", "16x8") else None,
            metrics=metrics, self_check=check.to_dict(),
        )
        written.append(Converted(mode, path, len(flat), check.to_dict()))
    return written


def agreement_evaluate(keras_model, windows: np.ndarray):
    """``evaluate(predict_fn)`` measuring agreement with the Keras float outputs on
    ``windows`` (max/mean |d|). A stand-in until the evaluation harness supplies
    peak F1/ADE; it says how much a variant changes the outputs, not how accurate it is."""
    ref = np.asarray(keras_model.predict(windows, verbose=0), np.float64)

    def evaluate(predict):
        d = np.abs(np.asarray(predict(windows), np.float64) - ref)
        return {"max_abs_vs_keras": float(d.max()), "mean_abs_vs_keras": float(d.mean())}

    return evaluate


def compare_saved_peak_model(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    modes: Sequence[str] = ("float32", "float16", "dynamic", "int8"),
    *,
    synthetic_calibration: int = 64,
    n_check: int = 32,
    prune_sparsity: float | None = None,
    prune_epochs: int = 2,
    runs: int = 100,
    seed: int = 0,
    evaluate=None,
) -> tuple[dict, dict]:
    """Keras float vs each TFLite mode (and pruned+int8 when ``prune_sparsity``):
    accuracy (``evaluate`` or :func:`agreement_evaluate`), sizes, parameters, latency.
    Pruning fine-tunes on synthetic windows towards the float model's own outputs
    (self-distillation: no labels needed). Returns ``(result, written paths)``."""
    from ppg_edge.train.peaks.fit import load_peak_model
    from ppg_edge.train.peaks.models import custom_objects

    from .compare import Variant, compare_variants, count_params, write_report
    from .optimize import prune_model
    from .tflite import convert_model

    meta = find_saved_model(model_path)
    model, config = load_peak_model(meta)
    pre = peak_preprocessing(config, int(model.input_shape[1]))
    rng = np.random.default_rng(int(seed))
    x_cal = synthetic_windows(pre, int(synthetic_calibration), rng)
    x_check = synthetic_windows(pre, int(n_check), rng)
    evaluate = evaluate or agreement_evaluate(model, x_check)
    p, nz = count_params(model)
    variants = [Variant("keras-float", keras=model, params=p, nonzero_params=nz)]
    for mode in modes:
        variants.append(Variant(mode, tflite=convert_model(model, mode, calibration=x_cal), params=p,
                                nonzero_params=nz))
    if prune_sparsity:
        x_tune = synthetic_windows(pre, 256, rng)
        pruned = prune_model(model, x_tune, model.predict(x_tune, verbose=0), target_sparsity=prune_sparsity,
                             epochs=prune_epochs, seed=seed, custom_objects=custom_objects())
        pp, pnz = count_params(pruned)
        variants.append(Variant(f"pruned{int(prune_sparsity * 100)}-int8",
                                tflite=convert_model(pruned, "int8", calibration=x_cal), params=pp,
                                nonzero_params=pnz, note="self-distilled on synthetic windows"))
    result = compare_variants(variants, x_check, evaluate, hop=pre.hop, runs=runs)
    result["model"] = meta.name
    result["calibration"] = f"{len(x_cal)} synthetic windows (seed {seed})"
    return result, write_report(result, out_dir)
