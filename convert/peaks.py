"""Convert a saved peak detector (``save_peak_model`` format) to TFLite files with manifests.

Used by ``ppg-edge convert``. Every written model passed its Keras-vs-TFLite self-check
on held-out windows (validation subjects of the calibration list, or synthetic PPG when
no list is given); a model that fails is not written.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


QUANTIZERS = ("best", "legacy", "mlir", "auto")


def integer_note(flat: bytes) -> str:
    """``"full int8"``, or which ops still compute in float (see :func:`.tflite.float_ops`)."""
    from .tflite import float_ops

    fl = float_ops(flat)
    return f"NOT full int8: float {', '.join(fl)}" if fl else "full int8"


def convert_checked(model, mode: str, x_cal, x_check, *, quantizer: str = "best", tolerance=None,
                    require_pass: bool = True):
    """Convert ``model`` to ``mode`` and self-check it on ``x_check``; returns
    ``(flatbuffer, CheckResult, manifest extra)``.

    For int8, ``quantizer`` picks the converter's quantizer: ``"legacy"``, ``"mlir"``,
    ``"auto"`` (:func:`~.tflite.convert_model`'s default: legacy unless QAT) or ``"best"``:
    convert with both and keep the one whose self-check (held-out validation windows,
    never test) passes with the smaller max error. Measured on the trained Type30
    (TF 2.21): legacy 0.13 mean / 0.97 max |d|, MLIR 0.0025 / 0.34 -- the reverse of the
    untrained model docs/conversion.md first measured, hence the choice per model.
    Raises ``ModelError`` (with the failing report) when no candidate passes, unless
    ``require_pass`` is false (``ppg-edge compare`` measures failing variants too)."""
    from ppg_edge.errors import ModelError as _ME

    from .tflite import convert_model, self_check

    if quantizer not in QUANTIZERS:
        raise _ME(f"unknown quantizer {quantizer!r}; valid: {', '.join(QUANTIZERS)}")
    if mode not in ("int8", "16x8"):
        flat = convert_model(model, mode, calibration=x_cal)
        return flat, self_check(model, flat, x_check, mode, raise_on_fail=require_pass), {}
    choices = {"legacy": (False,), "mlir": (True,), "auto": (None,), "best": (False, True)}[quantizer]
    cands = []
    for nq in choices:
        try:
            flat = convert_model(model, mode, calibration=x_cal, new_quantizer=nq)
        except _ME as exc:
            log.warning("%s with the %s quantizer failed: %s", mode, {None: "default", False: "legacy",
                                                                      True: "MLIR"}[nq], exc)
            continue
        chk = self_check(model, flat, x_check, mode, tolerance=tolerance, raise_on_fail=False)
        name = {None: "default", False: "legacy", True: "mlir"}[nq]
        log.info("%s %s quantizer: self-check max |d| %.3g, mean %.3g (%s)", mode, name, chk.max_abs,
                 chk.mean_abs, "pass" if chk.passed else "FAIL")
        cands.append((not chk.passed, chk.max_abs, chk.mean_abs, name, flat, chk))
    if not cands:
        raise _ME(f"{mode}: no quantizer converted the model")
    cands.sort(key=lambda c: c[:3])
    failed, _, _, name, flat, chk = cands[0]
    if failed and require_pass:
        raise _ME(chk.detail)
    extra = {"quantizer": {"used": name, "rule": quantizer,
                           "candidates": {c[3]: {"max_abs": c[1], "mean_abs": c[2], "passed": not c[0]}
                                          for c in cands}}}
    return flat, chk, extra


def _tol_doc(tolerance) -> Any:
    import dataclasses

    if tolerance is None:
        return "the mode's default (convert/tflite.py TOLERANCES)"
    return {"override": dataclasses.asdict(tolerance)}


def _meta(meta_path: Path) -> dict:
    import json

    return json.loads(Path(meta_path).read_text())


def decoder_settings(meta_path: str | os.PathLike, threshold: float | None = None) -> dict:
    """The manifest's ``decoder`` for a saved peak model: its
    :class:`~ppg_edge.edge_runtime.peaks_decode.DecoderSpec` (``DecoderSpec.from_model_meta``:
    the decision ``threshold`` chosen on the validation subjects, its decode parameters, its
    raw-axis shift and ``raw_axis`` mapping) as a dict, plus ``threshold_source`` when the
    threshold is the json's. ``threshold`` overrides the json's."""
    from ppg_edge.edge_runtime.peaks_decode import DecoderSpec

    d = _meta(Path(meta_path))
    out: dict[str, Any] = DecoderSpec.from_model_meta(d, threshold).to_dict()
    if threshold is None and "threshold" in d:
        out["threshold_source"] = "model json (chosen on the validation subjects)"
    return out


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
    threshold: float | None = None,
    seed: int = 0,
    data_root=None,
    metrics: dict | None = None,
    stem: str | None = None,
    quantizer: str = "best",
    tolerance=None,
) -> list[Converted]:
    """Convert, self-check and write each of ``modes``; returns what was written.

    Files are named ``<stem>-<mode>.tflite`` + ``.json`` (default stem: the model's
    name, e.g. ``Type30``; ``models/device/`` uses ``peaks-Type30``). The decoder
    settings in the manifest are the model json's own (:func:`decoder_settings`:
    the validation-chosen ``threshold`` and its decode parameters) unless
    ``threshold`` overrides the threshold. ``quantizer`` (int8): see :func:`convert_checked`;
    ``tolerance`` overrides the int8 self-check :class:`~.tflite.Tolerance` (other modes keep theirs)."""
    from ppg_edge.train.peaks.fit import load_peak_model

    from . import calibration as cal
    from .package import save_converted
    from .tflite import MODES

    for m in modes:
        if m not in MODES:
            raise ModelError(f"unknown conversion mode {m!r}; valid modes: {', '.join(MODES)}")
    meta = find_saved_model(model_path)
    model, config = load_peak_model(meta)
    window = int(model.input_shape[1])
    pre = peak_preprocessing(config, window)
    decoder = decoder_settings(meta, threshold)
    stem = stem or meta.stem
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
        flat, check, qinfo = convert_checked(model, mode, x_cal, x_check, quantizer=quantizer,
                                             tolerance=tolerance)
        path = save_converted(
            flat, out_dir, f"{stem}-{mode}", kind="peaks", mode=mode,
            sample_rate_hz=pre.fs, window=pre.window, hop=pre.hop, preprocessing=pre.to_dict(),
            decoder=decoder,
            training={"model_config": config.to_dict(), "keras_model": meta.name,
                      "split": cal_info.get("split") or _meta(meta).get("split"),
                      "split_sha256": _meta(meta).get("split_sha256"),
                      "raw_axis_shift_samples": _meta(meta).get("raw_axis_shift_samples")},
            calibration=cal_info if mode in ("int8", "16x8") else None,
            metrics=metrics, self_check={**check.to_dict(),
                                         "tolerance": _tol_doc(tolerance if mode in ("int8", "16x8") else None),
                                         "windows": "validation-subject windows of the calibration list"
                                         if calibration_list else "synthetic PPG windows"}, extra=qinfo,
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
    qat_epochs: int | None = None,
    runs: int = 100,
    seed: int = 0,
    evaluate=None,
    heldout: bool = False,
    calibration_list: str | os.PathLike | None = None,
    data_root=None,
    test_records=None,
    name: str = "compare",
    command: str | None = None,
    quantizer: str = "best",
) -> tuple[dict, dict]:
    """Keras float vs each TFLite mode (and pruned+int8 when ``prune_sparsity``, QAT int8
    when ``qat_epochs``): accuracy, sizes, parameters, latency. Returns ``(result, written paths)``.

    Accuracy: with ``heldout``, F1 (+-50 ms) and ADE on the split's TEST subjects, clean
    and at 10/5 dB (:mod:`.heldout`; TFLite variants run through the device's
    ``EdgeModel``); otherwise ``evaluate`` or agreement with Keras on synthetic windows.
    Calibration: the committed ``calibration_list`` (training subjects) when given, else
    synthetic windows. Pruning and QAT fine-tune towards the float model's own outputs
    (self-distillation: no labels) on the calibration windows plus 256 synthetic ones. QAT
    annotates Conv1D, Dense and the attention but not the LSTMs (a QAT-wrapped LSTM becomes
    a WHILE loop the device refuses); the fused LSTMs take calibrated ranges.
    ``test_records`` replaces the test records (tests use a tiny fake held-out set)."""
    import time

    from ppg_edge.provenance import machine
    from ppg_edge.train.peaks.fit import load_peak_model
    from ppg_edge.train.peaks.models import custom_objects

    from . import heldout as ho
    from .compare import Variant, compare_variants, count_params, write_report
    from .optimize import prune_model

    t0 = time.time()
    meta = find_saved_model(model_path)
    model, config = load_peak_model(meta)
    pre = peak_preprocessing(config, int(model.input_shape[1]))
    rng = np.random.default_rng(int(seed))
    if calibration_list:
        from ppg_edge.data.splits import load_split

        from . import calibration as cal

        doc = cal.load_calibration_list(calibration_list)
        cal.check_calibration_list(doc, load_split(doc["split"]))
        x_cal, balance = cal.load_windows(doc, pre, "entries", data_root)
        cal_text = cal.describe(doc, balance) + f" ({calibration_list})"
    else:
        x_cal = synthetic_windows(pre, int(synthetic_calibration), rng)
        cal_text = f"{len(x_cal)} synthetic windows (seed {seed})"
    x_check = synthetic_windows(pre, int(n_check), rng)
    x_select = x_check
    if calibration_list and doc["holdout_entries"]:
        x_select, _ = cal.load_windows(doc, pre, "holdout_entries", data_root)
    settings = ho.model_settings(meta)
    baseline: dict = {}
    work = ho.tmpdir()
    factory = None
    accuracy_text = "agreement with the Keras float outputs on synthetic windows (not accuracy)"
    if heldout:
        if test_records is None:
            from ppg_edge.data.splits import load_split

            test_records = ho.load_test_records(settings["split"], load_split(settings["split"])["datasets"],
                                                pre.fs, data_root)
        evaluate = ho.heldout_evaluate(test_records, pre, settings["threshold"], settings["shift"],
                                       seed=seed, baseline=baseline, raw_axis=settings["raw_axis"])
        decoder = decoder_settings(meta)

        def factory(v):
            fn, _ = ho.edge_predict_fn(v.tflite, pre, v.name, work.name, mode=v.name, decoder=decoder)
            return fn

        keys = sorted({f"{r.dataset}/{r.subject_id}" for r in test_records})
        accuracy_text = (f"held-out test subjects of split {settings['split']!r} ({', '.join(keys)}): "
                         f"pooled F1 within +-50 ms and ADE (ms) of the matches, clean and with white "
                         f"Gaussian noise at 10 and 5 dB (seed {seed}); threshold {settings['threshold']:g} "
                         "from the model json (chosen on the validation subjects); beats mapped onto "
                         f"the raw PPG by the model's raw_axis {settings['raw_axis'] or 'default (65 ms snap)'}; "
                         "TFLite through the "
                         "device runtime's EdgeModel (state reset per window, int8 I/O via the manifest)")
    evaluate = evaluate or agreement_evaluate(model, x_check)
    p, nz = count_params(model)
    variants = [Variant("keras-float", keras=model, params=p, nonzero_params=nz)]
    checks = {}
    for mode in modes:
        flat, chk, qinfo = convert_checked(model, mode, x_cal, x_select, quantizer=quantizer, require_pass=False)
        checks[mode] = {**chk.to_dict(), **qinfo}
        variants.append(Variant(mode, tflite=flat, params=p, nonzero_params=nz,
                                note=f"{qinfo['quantizer']['used']} quantizer; {integer_note(flat)}" if qinfo else ""))
    if prune_sparsity:
        x_tune = np.concatenate([x_cal, synthetic_windows(pre, 256, rng)])
        pruned = prune_model(model, x_tune, model.predict(x_tune, verbose=0), target_sparsity=prune_sparsity,
                             epochs=prune_epochs, seed=seed, custom_objects=custom_objects())
        pp, pnz = count_params(pruned)
        flat, chk, qinfo = convert_checked(pruned, "int8", x_cal, x_select, quantizer=quantizer,
                                           require_pass=False)
        checks["pruned-int8"] = {**chk.to_dict(), **qinfo}
        variants.append(Variant(f"pruned{int(prune_sparsity * 100)}-int8", tflite=flat, params=pp,
                                nonzero_params=pnz,
                                note=f"pruned to {prune_sparsity:g} sparsity, {prune_epochs} epochs self-distilled "
                                     f"on the calibration + synthetic windows; {qinfo['quantizer']['used']} quantizer; "
                                     f"{integer_note(flat)}"))
    if qat_epochs:
        from .optimize import qat_model

        x_tune = np.concatenate([x_cal, synthetic_windows(pre, 256, rng)])
        qat = qat_model(model, x_tune, model.predict(x_tune, verbose=0), epochs=qat_epochs, annotate_lstm=False,
                        seed=seed, custom_objects=custom_objects())
        # the legacy quantizer refuses the fake-quant nodes of a QAT model
        flat, chk, qinfo = convert_checked(qat, "int8", x_cal, x_select, quantizer="mlir", require_pass=False)
        checks["qat-int8"] = {**chk.to_dict(), **qinfo}
        variants.append(Variant("qat-int8", tflite=flat, params=p, nonzero_params=nz,
                                note=f"QAT (Conv1D, Dense, attention annotated; LSTMs fused, calibrated), "
                                     f"{qat_epochs} epochs self-distilled on the calibration + synthetic "
                                     f"windows; {qinfo['quantizer']['used']} quantizer; {integer_note(flat)}"))
    try:
        result = compare_variants(variants, x_check, evaluate, hop=pre.hop, runs=runs, predict_factory=factory)
    finally:
        work.cleanup()
    result.update({"model": meta.name, "calibration": cal_text, "accuracy": accuracy_text, "self_checks": checks,
                   "threshold": settings["threshold"], "machine": machine(), "command": command,
                   "wall_s": round(time.time() - t0, 1)})
    if baseline:
        result["baseline"] = {"dwt_baseline (same records, same noise)": baseline}
    return result, write_report(result, out_dir, name=name)
