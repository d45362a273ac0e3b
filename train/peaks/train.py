"""Train one peak-detector variant on real data, choose its threshold on the val subjects.

:func:`train_peaks` assembles the windows (:mod:`.dataset`), builds the variant
(:func:`.models.build_peak_model`), trains it (:func:`.fit.fit_peak_model`, Adam, early
stopping on the validation loss), then runs the model over each whole validation record
(windows stitched with :func:`ppg_edge.edge_runtime.peaks_decode.stitch_windows`),
chooses the decision threshold with ``choose_threshold`` on those clean val streams
(never on test subjects), and measures F1 within +-50 ms and +-25 ms and the average
distance error (ADE) of matched peaks, clean and with Gaussian noise at 10 and 5 dB,
beside the DWT baseline (:mod:`ppg_edge.evaluate.dwt_baseline`) on the same streams.

Georgieva-Tsaneva (2025; docs/facts.md): post-processing, threshold on
validation data, F1 / ADE as the reported metrics.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.peaks_decode import DEFAULT_DECODER
from ppg_edge.errors import ConfigError, DataError, ModelError

from . import dataset as _ds
from .variants import VARIANTS, get_variant

log = logging.getLogger(__name__)

TOLERANCES_MS = (50, 25)
NOISE_SNRS_DB = (10.0, 5.0)
TINY_SIZES = (4, 8, 4)


# ----------------------------------------------------------------------------- metrics
def score_detections(refs: Sequence[np.ndarray], dets: Sequence[np.ndarray], fs: float) -> dict:
    """Pooled F1 at each tolerance of ``TOLERANCES_MS`` and ADE (ms) of the +-50 ms matches."""
    from ppg_edge.metrics.peaks import f1_from_counts, match_peaks

    out: dict[str, Any] = {"reference_peaks": int(sum(len(r) for r in refs)),
                           "detected_peaks": int(sum(len(d) for d in dets))}
    dist = []
    for tol_ms in TOLERANCES_MS:
        tol = int(round(tol_ms / 1000 * fs))
        tp = fp = fn = 0
        for r, d in zip(refs, dets):
            m = match_peaks(r, d, fs, tol / fs)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
            if tol_ms == TOLERANCES_MS[0]:
                dist.append(np.abs(m.errors))
        out[f"f1_{tol_ms}ms"] = f1_from_counts(tp, fp, fn)
        out[f"tp_fp_fn_{tol_ms}ms"] = [tp, fp, fn]
    dist = np.concatenate(dist or [[]])
    out["ade_ms"] = float(dist.mean() / fs * 1000) if dist.size else float("nan")
    return out


# ----------------------------------------------------------------------------- streams
def val_streams(records, prep, model, batch_size: int = 256) -> list[dict]:
    """Per val record: the covered length, the filtered PPG, the stitched probabilities and
    the reference peaks inside the covered part (raw axis)."""
    from ppg_edge.edge_runtime.peaks_decode import stitch_windows

    out = []
    for rec in records:
        x = prep.apply(rec.ppg)
        if len(x) == 0:
            log.warning("%s: shorter than one window; left out of validation", rec.key)
            continue
        probs = model.predict(x, batch_size=batch_size, verbose=0)
        n = (len(x) - 1) * prep.hop + prep.window
        out.append({
            "key": rec.key,
            "n": n,
            "raw": rec.ppg[:n],
            "filtered": prep.filter(rec.ppg)[:n],
            "probs": stitch_windows(probs, prep.hop, n),
            "ref": rec.peaks[rec.peaks < n],
        })
    if not out:
        raise DataError("no validation record is long enough for one window")
    return out


def choose_val_threshold(streams: list[dict], fs: float) -> tuple[float, float]:
    """``choose_threshold`` over the val streams (clean and noisy copies; F1 within +-50 ms,
    filtered-PPG snap)."""
    from ppg_edge.edge_runtime.peaks_decode import choose_threshold

    return choose_threshold([s["probs"] for s in streams], [s["ref"] for s in streams], fs,
                            signals=[s["filtered"] for s in streams], tolerance_s=0.05)


def evaluate_val(records, prep, model, threshold: float, shift: int,
                 rng: np.random.Generator, snrs_db: Sequence[float] = NOISE_SNRS_DB,
                 raw_axis: dict | None = None) -> dict:
    """Model and DWT-baseline scores on the val records: clean and with Gaussian noise.

    Noise is added to the whole raw record (``synth.add_noise``) before the causal
    filter, as the device would see it. The model and ``dwt_baseline`` run on the
    filtered PPG the device has; their filtered-axis positions go onto the raw axis with
    ``peaks_decode.to_raw_axis`` (back by ``shift``, snap to the raw maximum).
    ``model_shift_only`` maps the model's detections by the constant shift alone (no raw
    snap: steadier under noise, off by the per-record shift on clean records).
    ``dwt_baseline_on_raw`` is the baseline run on the raw PPG itself, for reference.
    All are scored on the same covered samples. ``raw_axis`` (a model json's ``raw_axis``,
    e.g. ``{"mapping": "snap", "radius_s": 0.03, "smooth_s": 0.04, "refine_s": 0.008}``) maps
    the model's detections with :func:`~ppg_edge.edge_runtime.peaks_decode.snap_to_raw` as the
    deployed model does, instead of the decoder spec's default snap.
    """
    from ppg_edge.edge_runtime.peaks_decode import decode_peaks, snap_to_raw, to_raw_axis
    from ppg_edge.evaluate import dwt_baseline
    from ppg_edge.synth import add_noise

    results = {}
    for snr in (None, *snrs_db):
        name = "clean" if snr is None else f"gaussian_{snr:g}dB"
        recs = records
        if snr is not None:
            from dataclasses import replace

            recs = [replace(r, signals={**r.signals, "ppg": add_noise(r.ppg, r.fs, "gaussian", snr, rng)})
                    for r in records]
        streams = val_streams(recs, prep, model)
        refs, dets, dets_shift, base, base_raw = [], [], [], [], []
        for s in streams:
            det = decode_peaks(s["probs"], prep.fs, threshold=threshold, signal=s["filtered"])
            if raw_axis and raw_axis.get("mapping") == "snap":
                pos = to_raw_axis(det, s["n"], shift)
                radius = float(raw_axis.get("radius_s", DEFAULT_DECODER.raw_snap_radius_s))
                dets.append(snap_to_raw(pos, s["raw"], prep.fs, radius,
                                        float(raw_axis.get("smooth_s", 0.0)),
                                        float(raw_axis.get("refine_s", 0.0))) if pos.size else pos)
            elif raw_axis and raw_axis.get("mapping") == "shift":
                dets.append(to_raw_axis(det, s["n"], shift))
            else:
                dets.append(to_raw_axis(det, s["n"], shift, s["raw"], prep.fs))
            dets_shift.append(to_raw_axis(det, s["n"], shift))
            b = dwt_baseline.detect(s["filtered"], prep.fs)
            base.append(to_raw_axis(b, s["n"], shift, s["raw"], prep.fs))
            base_raw.append(dwt_baseline.detect(s["raw"], prep.fs))
            refs.append(s["ref"])
        results[name] = {"model": score_detections(refs, dets, prep.fs),
                         "model_shift_only": score_detections(refs, dets_shift, prep.fs),
                         "dwt_baseline": score_detections(refs, base, prep.fs),
                         "dwt_baseline_on_raw": score_detections(refs, base_raw, prep.fs)}
        log.info("val %s: model F1@50ms %.3f, baseline %.3f", name,
                 results[name]["model"]["f1_50ms"], results[name]["dwt_baseline"]["f1_50ms"])
    return results


# ----------------------------------------------------------------------------- training
def machine() -> dict:
    """Where a model was trained: :func:`ppg_edge.provenance.machine` plus the GPUs TensorFlow sees."""
    import tensorflow as tf

    from ppg_edge.provenance import machine as _machine

    return _machine(gpus=len(tf.config.list_physical_devices("GPU")))


def train_peaks(variant: str = "Type30", epochs: int = 20, max_windows: int = 10000,
                seed: int = 0, alpha: Sequence[float] = (0.5, 0.5), out=None, data_root=None,
                tiny: bool = False, command: str | None = None, use_cache: bool = True,
                progress: bool = True, datasets: Sequence[str] | None = None,
                extra: Sequence[str] | None = None) -> dict:
    """Train ``variant`` and write weights, config JSON and ``report.json`` into ``out``.

    ``datasets``: the expert-labelled data sets whose train/val subjects are read (default
    both; one of them alone is the leave-one-dataset-out run, the other then held out whole).
    ``extra``: kinds of :mod:`train.peaks.sources` records (default ECG- and pseudo-labelled;
    ``()`` for none). ``tiny`` trains a 4/8/4-unit version of the variant on one train and one
    val subject for one epoch, without extra records (what CI runs). Returns the report.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras

    from .fit import fit_peak_model, save_peak_model
    from .losses import PeakLoss
    from .models import build_peak_model, trainable_params

    t0 = time.time()
    cfg = get_variant(variant)
    if len(alpha) != 2:
        raise ConfigError(f"--alpha takes two weights (BCE, distance), got {list(alpha)}")
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    picks = {}
    if datasets is not None:
        picks["datasets"] = tuple(datasets)
    if extra is not None:
        picks["extra"] = tuple(extra)
    settings = _ds.DatasetSettings(input=cfg.input, fs=cfg.fs, max_train_windows=int(max_windows),
                                   seed=int(seed), **picks)
    if tiny:
        doc = _ds.split_parts(settings.split)
        subjects = (doc["train"][0], doc["val"][0])
        cfg = cfg.replace(sizes=TINY_SIZES)
        settings = _ds.DatasetSettings(input=cfg.input, fs=cfg.fs, max_train_windows=96,
                                       max_val_windows=48, n_synth_records=1,
                                       synth_duration_s=20.0, seed=int(seed), subjects=subjects,
                                       extra=())
        epochs = 1
    out = Path(out) if out is not None else Path("models") / "peaks" / variant
    out.mkdir(parents=True, exist_ok=True)

    data = _ds.assemble(settings, root=data_root, use_cache=use_cache, progress=progress)
    prep = _ds.preprocessing_for(cfg.input, cfg.fs)
    shift = int(data.info["label_shift"]["median_samples"])

    tf_keras.utils.set_random_seed(int(seed))
    model = build_peak_model(cfg, window=prep.window)
    loss = PeakLoss(alpha_bce=float(alpha[0]), alpha_dist=float(alpha[1]), fs=cfg.fs)
    t_fit = time.time()
    history = fit_peak_model(model, data.x_train, data.y_train, data.x_val, data.y_val,
                             epochs=int(epochs), seed=int(seed), loss=loss, fs=cfg.fs)
    fit_s = time.time() - t_fit

    val_recs = _ds.load_part_records("val", settings, data_root)
    streams = val_streams(val_recs, prep, model)
    if settings.noisy_val:  # the threshold must hold under noise too: clean and noisy val records
        streams += val_streams(_ds.noisy_val_records(val_recs, settings, data_root), prep, model)
    threshold, val_f1 = choose_val_threshold(streams, prep.fs)
    rng = np.random.default_rng(int(seed))
    metrics = evaluate_val(val_recs, prep, model, threshold, shift, rng)

    # save from an uncompiled copy: the weights file then holds no optimizer state (3x smaller)
    clean = build_peak_model(cfg, window=prep.window)
    clean.set_weights(model.get_weights())
    meta_path = save_peak_model(clean, cfg, out / variant, window=prep.window)
    meta = json.loads(meta_path.read_text())
    meta.update({
        "preprocessing": prep.to_dict(),
        "threshold": float(threshold),
        "threshold_val_f1_50ms": float(val_f1),
        "raw_axis_shift_samples": shift,
        "decode": {"snap_radius_s": DEFAULT_DECODER.snap_radius_s, "merge_s": DEFAULT_DECODER.merge_s,
                   "refractory_s": DEFAULT_DECODER.refractory_s, "signal": "filtered ppg"},
        "split": settings.split,
        "split_sha256": data.info["split_sha256"],
        "seed": int(seed),
        "tiny": bool(tiny),
    })
    meta_path.write_text(json.dumps(meta, indent=2))

    report = {
        "variant": variant,
        "tiny": bool(tiny),
        "command": command,
        "seed": int(seed),
        "alpha": [float(a) for a in alpha],
        "epochs_requested": int(epochs),
        "epochs_run": len(history.get("loss", [])),
        "trainable_params": trainable_params(model),
        "data": {k: data.info[k] for k in ("settings", "split", "split_sha256", "train_subjects",
                                           "val_subjects", "label_shift", "windows",
                                           "positive_fraction_train", "cache_key")
                 if k in data.info} | {k: data.info.get(k) for k in ("extra_records",
                                                                      "masked_fraction_train",
                                                                      "real_noise")},
        "history": history,
        "threshold": float(threshold),
        "threshold_val_f1_50ms": float(val_f1),
        "val": metrics,
        "fit_wall_s": round(fit_s, 1),
        "wall_s": round(time.time() - t0, 1),
        "machine": machine(),
        "files": {"weights": f"{variant}.weights.h5", "config": meta_path.name},
        "channels": list(prep.channels),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "MODEL_CARD.md").write_text(model_card(report))
    log.info("wrote %s (threshold %.2f, val F1@50ms %.3f, %.0f s)", out, threshold, val_f1,
             report["wall_s"])
    return report


def _extra_text(d: dict) -> str:
    """The card's sentence on ECG- and pseudo-labelled windows (train.peaks.sources)."""
    extra = d.get("extra_records") or {}
    if not extra:
        return ""
    parts = [f"{k.split(':')[1]} ({k.split(':')[0]}: {v['used']} records, {v['beats']} beats, "
             f"{v['masked_in_s']:g} s usable)" for k, v in extra.items()]
    return (" ECG- and pseudo-labelled windows (`train.peaks.sources`; samples outside the clean, agreed "
            f"stretches masked out of the loss, {100 * (d.get('masked_fraction_train') or 0):.1f}% of all "
            "training samples) from " + ", ".join(parts) + ".")


def model_card(report: dict) -> str:
    """``MODEL_CARD.md`` text for a training report (data, split, command, validation table)."""
    d = report["data"]
    st = d["settings"]
    w = d["windows"]
    m = report["machine"]
    sh = d["label_shift"]
    rows = []
    for cond, r in report["val"].items():
        cells = []
        for who in ("model", "model_shift_only", "dwt_baseline", "dwt_baseline_on_raw"):
            x = r.get(who)
            cells.append("n/a | n/a | n/a" if x is None else
                         f"{x['f1_50ms']:.3f} | {x['f1_25ms']:.3f} | {x['ade_ms']:.1f}")
        rows.append(f"| {cond} | " + " | ".join(cells) + " |")
    hist = report["history"]
    best = int(np.argmin(hist["val_loss"])) + 1 if hist.get("val_loss") else None
    return f"""# Peak detector {report['variant']}{' (tiny smoke run, not a reference model)' if report['tiny'] else ''}

Per-sample systolic-peak probabilities from 2 s PPG windows at 125 Hz: the {report['variant']}
configuration of Georgieva-Tsaneva (2025), "Improved PPG Peak Detection Using a Hybrid
DWT-CNN-LSTM Architecture with a Temporal Attention Mechanism", Computation 13(12):273
(`ppg_edge.train.peaks.variants`), with this project's per-sample head;
{report['trainable_params']:,} trainable parameters. Files: `{report['files']['weights']}` (tf_keras
weights), `{report['files']['config']}` (network configuration, preprocessing spec, decision
threshold, decoder settings), `report.json` (everything below, and the loss history). The
weights file holds no optimizer state; rebuild with `ppg_edge.train.peaks.fit.load_peak_model`.

## Data
- CapnoBase (Karlen et al., IEEE TBME 60(7):1946-1953, 2013; expert-labelled peaks) and BIDMC
  (Pimentel et al., IEEE TBME 64(8), 2017; PPG peaks derived from ECG R peaks), resampled to 125 Hz.
- Split `{d['split']}` (subject-wise hold-out 70/15/15 per data set), subject list sha256
  `{d['split_sha256']}`: trained on {len(d['train_subjects'])} train subjects, early stopping and
  threshold on {len(d['val_subjects'])} val subjects ({', '.join(d['val_subjects'])}). Test subjects
  were never loaded.
- Input: the device preprocessing (causal 0.5-8 Hz Butterworth band-pass, 250-sample windows
  every 125, z-score per window) with channels {report.get('channels', 'see config JSON')}.
- Training windows: {w['train']} ({', '.join(f"{v} {k.replace('_', ' ')}" for k, v in w['train_by_source'].items())}),
  sampled without replacement, equally per record, from {w['available']['clean']} clean real windows
  and as many noisy ones (noise per 20 s chunk of the raw record, one of {', '.join(st.get('noise_kinds', ['gaussian', 'baseline', 'motion', 'mains50', 'mains60']))}
  at SNR uniform in {st['snr_db'][0]:g}-{st['snr_db'][1]:g} dB{'; then sampled at a sensor rate of ' + '/'.join(f"{r:g}" for r in st['sensor_rates']) + ' Hz and taken back to 125 Hz by the device resampler' if st.get('sensor_rates') else ''});
  {st['n_synth_records']} synthetic records of {st['synth_duration_s']:g} s with the same noise.{_extra_text(d)}
  Validation: {w['val']} windows{' (clean, and a noisy copy of each val record at 0-20 dB)' if st.get('noisy_val') else ' (clean)'}.
- Labels: +-25 ms around each reference peak, moved to the largest local maximum of the filtered
  PPG within 80 ms (the causal filter puts the systolic maximum a median {sh['median_samples']} samples,
  IQR {sh['q1_samples']:g}..{sh['q3_samples']:g}, after the reference peak on the training records,
  although its group delay at 1 Hz is {sh['group_delay_1hz_samples']:.1f} samples).

## Training
- Seed {report['seed']}; loss {report['alpha'][0]:g} BCE + {report['alpha'][1]:g} PeakDistanceLoss; Adam 1e-3,
  batch 64, early stopping on val loss (patience 5, best weights restored): {report['epochs_run']} of
  {report['epochs_requested']} epochs run, best epoch {best}.
- Reproduce: `{report['command'] or 'ppg-edge train peaks --variant ' + report['variant']}`
- Wall time {report['wall_s'] / 60:.1f} min (fitting {report['fit_wall_s'] / 60:.1f} min) on {m['cpu_model']},
  {m['cpus']} CPUs, {m['gpus']} GPU, Python {m['python']}, TensorFlow {m['tensorflow']}
  (a machine shared with other work, so times vary by about 1.5x).

## Validation (val subjects, whole records)
Decision threshold {report['threshold']:.2f}, chosen with `choose_threshold` on the val streams
{'(clean and noisy copies) ' if st.get('noisy_val') else '(clean) '}(F1 within +-50 ms: {report['threshold_val_f1_50ms']:.3f}). The deployed threshold and
raw-axis mapping are then chosen together on the same val subjects by
`python -m ppg_edge.train.peaks.detector --choose-mapping DIR --with-thresholds --write` (the model
JSON's `threshold`, `threshold_source` and `raw_axis`; docs/peak_training.md). Detections are snapped to the filtered PPG
maximum by the decoder, then moved onto the raw PPG axis (back by {sh['median_samples']} samples, snap
to the raw maximum within 65 ms). Noise: white Gaussian added to the raw record at the given
SNR before filtering. "Shift only" skips the raw snap (detections moved back by the constant
shift alone). "DWT baseline" is `dwt_baseline.detect` on the same filtered PPG with
the same mapping to the raw axis; "DWT on raw" runs it on the raw PPG. ADE: mean absolute
distance of the +-50 ms matches, in ms. These are validation numbers (the threshold was chosen
on the clean rows); the held-out test table is added by the evaluation command.

| condition | model F1 50 ms | F1 25 ms | ADE ms | model, shift only: F1 50 ms | F1 25 ms | ADE ms | DWT baseline F1 50 ms | F1 25 ms | ADE ms | DWT on raw F1 50 ms | F1 25 ms | ADE ms |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Limits
- Expert labels from {', '.join(st.get('datasets', ['capnobase', 'bidmc']))} only (ICU and anaesthesia finger PPG; BIDMC
  references come from the ECG); the other records carry ECG-derived or pseudo-labels. Nothing here
  shows how it does on a MAX30102 at the fingertip of a moving person.
- Validation only; test subjects are untouched until the evaluation command reports them.
"""


def refresh_report(out, data_root=None) -> dict:
    """Re-run the validation measurements of a trained model folder with the current code
    and rewrite its ``report.json`` (``val``) and ``MODEL_CARD.md``; the threshold is kept."""
    from .fit import load_peak_model

    out = Path(out)
    report = json.loads((out / "report.json").read_text())
    model, cfg = load_peak_model(out / report["variant"])
    st = dict(report["data"]["settings"])
    st["datasets"] = tuple(st["datasets"])
    st["snr_db"] = tuple(st["snr_db"])
    st["subjects"] = None if st["subjects"] is None else tuple(st["subjects"])
    settings = _ds.DatasetSettings(**st)
    prep = _ds.preprocessing_for(cfg.input, cfg.fs)
    recs = _ds.load_part_records("val", settings, data_root)
    rng = np.random.default_rng(int(report["seed"]))
    report["val"] = evaluate_val(recs, prep, model, report["threshold"],
                                 int(report["data"]["label_shift"]["median_samples"]), rng)
    report["channels"] = list(prep.channels)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "MODEL_CARD.md").write_text(model_card(report))
    return report


def resolve_variants(spec: str) -> list[str]:
    """``"all"`` or a comma list of variant names -> names, in Type1..Type30 order."""
    if spec == "all":
        return list(VARIANTS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError("no variants named; use 'all' or e.g. 'Type24,Type30'")
    for n in names:
        get_variant(n)
    return names


def sweep(variants: Sequence[str], out, epochs: int = 20, max_windows: int = 10000, seed: int = 0,
          data_root=None, use_ray: bool = False, ray_address: str | None = None,
          cpus_per_trial: float = 2.0, tiny: bool = False, progress: bool = True) -> list[dict]:
    """Train each variant (one seed for all) into ``out/<variant>``; returns the reports.

    Without ``use_ray``: one after the other with a progress bar (2 cores gain nothing from
    parallel trials). With ``use_ray``: one Ray Tune trial per variant (a grid search over
    the variant name), ``cpus_per_trial`` CPUs each, on the local machine or on the cluster
    at ``ray_address`` ("auto", "ray://head:10001"): Ray schedules the trials, retries
    nothing and reports failures, which are raised here together. On a cluster ``out`` must
    be a path every node can write (shared storage) and every node needs the data root.
    """
    if use_ray:
        return _sweep_ray(variants, out, epochs=epochs, max_windows=max_windows, seed=seed,
                          data_root=data_root, ray_address=ray_address,
                          cpus_per_trial=cpus_per_trial, tiny=tiny)
    from tqdm.auto import tqdm

    reports = []
    for name in tqdm(list(variants), desc="sweep", unit="variant", disable=not progress):
        reports.append(train_peaks(name, epochs=epochs, max_windows=max_windows, seed=seed,
                                   out=Path(out) / name, data_root=data_root, progress=False,
                                   tiny=tiny, command=f"sweep {name}"))
    return reports


def _sweep_ray(variants, out, *, epochs, max_windows, seed, data_root, ray_address,
               cpus_per_trial, tiny) -> list[dict]:
    """The sweep as a Ray Tune grid search (see :func:`sweep`)."""
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise ConfigError("--ray needs Ray Tune: pip install 'ppg-edge[sweep]' "
                          f"(ray[tune]); {exc}") from exc
    out = Path(out).resolve()
    names = list(variants)
    root = None if data_root is None else str(Path(data_root).resolve())

    def trial(config):
        name = config["variant"]
        rep = train_peaks(name, epochs=epochs, max_windows=max_windows, seed=seed,
                          out=out / name, data_root=root, progress=False, tiny=tiny,
                          command=f"sweep --ray {name}")
        tune.report({"val_f1_50ms": rep["val"]["clean"]["model"]["f1_50ms"],
                     "wall_s": rep["wall_s"]})

    started = False
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        started = True
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": float(cpus_per_trial)}),
            param_space={"variant": tune.grid_search(names)},
            tune_config=tune.TuneConfig(metric="val_f1_50ms", mode="max"),
            run_config=tune.RunConfig(name="peaks-sweep", storage_path=str(out / "ray"),
                                      verbose=0),
        )
        grid = tuner.fit()
        if grid.errors:
            raise ModelError(f"{len(grid.errors)} of {len(names)} sweep trial(s) failed: "
                             + "; ".join(str(e).splitlines()[0] for e in grid.errors))
    finally:
        if started:
            ray.shutdown()
    reports = []
    for name in names:
        path = out / name / "report.json"
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise ModelError(f"sweep trial {name} finished without a readable {path}: {exc}") from exc
    return reports
