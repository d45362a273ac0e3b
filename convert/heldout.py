"""Peak-model accuracy on the held-out TEST subjects, for ``ppg-edge compare``.

The scoring is the training code's own: :func:`ppg_edge.train.peaks.train.evaluate_val`
(whole records through the preprocessing, windows stitched, ``decode_peaks`` with the
model's threshold and the filtered-PPG snap, detections put back on the raw axis with the
model's own ``raw_axis`` mapping (``peaks_decode.snap_to_raw``, as its manifest gives the device), pooled
F1 within +-50 ms / +-25 ms and ADE of the +-50 ms matches, clean and with white Gaussian
noise at 10 and 5 dB added to the raw record before the causal filter). It takes
anything with a Keras-like ``predict(x, batch_size=..., verbose=...)``;
:class:`PredictAdapter` gives it one over a ``predict_fn(windows) -> outputs``.

For a TFLite variant the predict function is the device's: :func:`edge_predict_fn`
writes the flatbuffer with a sealed manifest and runs it through
:class:`ppg_edge.edge_runtime.interpreter.EdgeModel` (manifest/sha256 check,
``reset_all_variables()`` before every window, int8 quantize/dequantize from the
manifest's input/output parameters), one window at a time.

``train.peaks.dataset.load_part_records`` reads only train/val subjects by design;
:func:`load_test_records` is the one place here that reads the test part, for scoring
only (nothing is trained, tuned or calibrated on it: thresholds come from the model
json, chosen on the validation subjects; calibration lists hold training subjects).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import DataError

log = logging.getLogger(__name__)

SNRS_DB = (10.0, 5.0)


class PredictAdapter:
    """``predict(x, batch_size=None, verbose=0)`` over ``fn(windows) -> outputs``."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]):
        self.fn = fn

    def predict(self, x, batch_size=None, verbose=0):  # noqa: ARG002 - Keras signature
        return np.asarray(self.fn(np.asarray(x, np.float32)))


def load_test_records(split_name: str, datasets: Sequence[str], fs: float, root=None) -> list:
    """Records of the split's ``test`` subjects (``ppg_edge.evaluate.selection``, the
    evaluation's own selection), resampled to ``fs``; records without reference peaks are
    left out with a warning (scoring only)."""
    from ppg_edge.data.resample import resample_record
    from ppg_edge.evaluate.selection import select_records

    records = []
    for rec in select_records(datasets, "test", split_name, root=root):
        if rec.peaks is None or rec.peaks.size == 0:
            log.warning("%s: no reference peaks; left out of the held-out score", rec.key)
            continue
        records.append(resample_record(rec, fs))
    if not records:
        raise DataError(f"no test record of split {split_name!r} found under the data root")
    return records


def flatten(results: dict, which: str = "model") -> dict[str, float]:
    """``evaluate_val`` output -> flat ``{f1_50ms_clean, ade_ms_clean, f1_50ms_10dB, ...}``."""
    out: dict[str, float] = {}
    for cond, res in results.items():
        tag = "clean" if cond == "clean" else cond.replace("gaussian_", "")
        r = res[which]
        out[f"f1_50ms_{tag}"] = float(r["f1_50ms"])
        out[f"ade_ms_{tag}"] = float(r["ade_ms"])
    return out


def heldout_evaluate(records, prep, threshold: float, shift: int, *, seed: int = 0,
                     snrs_db: Sequence[float] = SNRS_DB, baseline: dict | None = None,
                     raw_axis: dict | None = None):
    """``evaluate(predict_fn) -> metrics`` on ``records`` (the same noise draws for every
    variant: the generator is re-seeded per call). ``baseline`` (a dict) receives the DWT
    baseline's scores of the first call. ``raw_axis``: the model's own mapping onto the raw
    PPG (the model json's, as its manifest gives the device)."""
    from ppg_edge.train.peaks.train import evaluate_val

    def evaluate(predict_fn):
        res = evaluate_val(records, prep, PredictAdapter(predict_fn), float(threshold), int(shift),
                           np.random.default_rng(int(seed)), tuple(snrs_db), raw_axis=raw_axis)
        if baseline is not None and not baseline:
            baseline.update(flatten(res, "dwt_baseline"))
        return flatten(res)

    return evaluate


def edge_predict_fn(tflite_bytes: bytes, prep, name: str, workdir: str | os.PathLike, *,
                    mode: str = "int8", decoder: dict | None = None):
    """Write ``tflite_bytes`` + a sealed manifest into ``workdir`` and return
    ``(predict_fn, EdgeModel)`` running it exactly as the device does."""
    from ppg_edge.edge_runtime.interpreter import EdgeModel

    from .package import save_converted

    path = save_converted(tflite_bytes, workdir, name, kind="peaks", mode=mode if mode in _manifest_modes() else "int8",
                          sample_rate_hz=prep.fs, window=prep.window, hop=prep.hop,
                          preprocessing=prep.to_dict(), decoder=decoder)
    em = EdgeModel(path, kind="peaks", backend="ai-edge-litert")

    def predict(x):
        x = np.asarray(x, np.float32)
        return np.stack([em.predict_window(w) for w in x]) if len(x) else np.zeros((0, prep.window))

    return predict, em


def _manifest_modes():
    from ppg_edge.manifest import MODES

    return MODES


def model_settings(meta_path: str | os.PathLike) -> dict[str, Any]:
    """Threshold, raw-axis shift, split and data sets of a saved peak model (json + report)."""
    meta_path = Path(meta_path)
    meta = json.loads(meta_path.read_text())
    rep_path = meta_path.parent / "report.json"
    datasets: Sequence[str] = ("bidmc", "capnobase")
    if rep_path.is_file():
        rep = json.loads(rep_path.read_text())
        datasets = tuple(rep.get("data", {}).get("settings", {}).get("datasets") or datasets)
    return {"threshold": float(meta.get("threshold", 0.5)), "shift": int(meta.get("raw_axis_shift_samples", 0)),
            "split": meta.get("split", "peaks"), "datasets": tuple(datasets),
            "raw_axis": meta.get("raw_axis")}


def tmpdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="ppg-edge-compare-")
