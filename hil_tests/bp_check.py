"""The BP step (``kind = "bp"``): the device's blood pressure beside the host's, for the same model, and the reference.

Device run (in this process, as a soak step runs: no DUT process): the record's PPG
(``record = "DATASET/ID"``, ``start_s``, ``seconds``; NaN samples take the median) decimated
to :data:`.soak.SOURCE_FS` and mapped to light
(:func:`ppg_edge.edge_runtime.playback.light_from_ppg`), played by the emulated MAX30102
at the board's settings, read by the real driver and streamed through
:class:`ppg_edge.edge_runtime.pipeline.Pipeline` with the BP model ``bp_model`` (and the
suite's peak model, if any): :func:`.soak.open_device_path`. Its ``bp`` events are the
device's estimates.

Host run: :class:`ppg_edge.edge_runtime.bp.BPStage` on ``host_model`` (default: the same
file; the float32 .tflite beside an int8 ``bp_model``) fed the same float PPG at the
record's own rate (no chip, no driver). ``profile = {age, sex, height_cm, weight_kg}``: the
wearer's profile, given to both (a ``ppg+profile`` model needs it; the CLI's ``--profile``).

Times: a device estimate's ``t`` is sensor time from the stream start; sensor sample ``j``
lies :func:`.soak.sensor_lag_s` after ``j / fs`` (the chip's averaging), so device times are
moved by that lag onto the record's time axis (as the soak scores its beats); host times
are record time from ``start_s``. Each device estimate is matched to the nearest host
estimate whose ``t`` lies within one window hop of it.

Recorded:

- ``vs_host``, per quantity: matched pairs, mean and max ``|device - host|`` of the
  uncalibrated stretch means (``stretch_values``; the device's as its ``bp`` event gives
  them, rounded to 0.01 mmHg);
- ``vs_reference`` (records with an ABP channel; skipped with the reason otherwise): the
  mean beat SBP/DBP of :func:`ppg_edge.evaluate.bp_calibration.abp_beats` over each stable
  device estimate's stretch ``t0 .. t1`` (record time): the device's MAE, the matched host
  estimate's MAE against the same reference, the naive MAE (the manifest's ``naive_mean``
  as the estimate, when present), beside the manifest's CV MAE.

Checks (``expect``): ``min_estimates`` (device ``bp`` events), ``max_mean_abs_diff_vs_host_mmhg``,
``max_abs_diff_vs_host_mmhg`` (a number for both quantities, or ``{sbp = .., dbp = ..}``).

Host side (loads records, scipy for decimation).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import ConfigError, DataError, HardwareError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECORD = "wfdb-samples/mixedsignals"
QUANTITIES = ("sbp", "dbp")
STEP_KEYS = ("name", "kind", "record", "start_s", "seconds", "bp_model", "host_model", "model", "gate", "expect", "profile",
             # suite defaults merged into every step (hil_tests/suites.py RUN_KEYS), unused here
             "window_s", "chunk_s", "windows", "warmups", "loops", "settings", "score_margin_s")
EXPECT_KEYS = ("max_mean_abs_diff_vs_host_mmhg", "max_abs_diff_vs_host_mmhg", "min_estimates")
IN_PROCESS_NOTE = ("the emulated MAX30102, the real driver and the edge Pipeline (with the BP stage) ran in "
                   "this (the harness's) process on one virtual clock; no DUT process")


def model_file(path: str | os.PathLike, what: str) -> Path:
    """A model path from a suite: absolute, else relative to the working folder, else to the repository."""
    p = Path(path)
    for cand in ([p] if p.is_absolute() else [Path.cwd() / p, REPO / p]):
        if cand.is_file():
            return cand
    raise ConfigError(f"bp step: {what} {path} not found (relative paths: to the working folder or {REPO})")


def _per_quantity(limit, name: str) -> dict[str, float]:
    if isinstance(limit, Mapping):
        bad = set(limit) - set(QUANTITIES)
        if bad:
            raise ConfigError(f"bp step: {name} has unknown quantities {sorted(bad)} (known: {', '.join(QUANTITIES)})")
        return {q: float(v) for q, v in limit.items()}
    return {q: float(limit) for q in QUANTITIES}


def _check_step(step: Mapping[str, Any]) -> None:
    for k in step:
        if k not in STEP_KEYS:
            raise ConfigError(f"bp step {step.get('name')}: unknown key {k!r} "
                             f"(known: {', '.join(STEP_KEYS[:10])}, and the suite defaults)")
    for k in step.get("expect") or {}:
        if k not in EXPECT_KEYS:
            raise ConfigError(f"bp step {step.get('name')}: unknown expectation {k!r} (known: {', '.join(EXPECT_KEYS)})")
    if not step.get("bp_model"):
        raise ConfigError(f"bp step {step.get('name')}: needs bp_model = \"models/device/....trees|.tflite\"")
    if step.get("seconds") is not None and not float(step["seconds"]) > 0:
        raise ConfigError(f"bp step {step.get('name')}: seconds must be positive")


def _load_ppg(key: str, root, start_s: float, seconds):
    from ppg_edge.data import load_record

    if "/" not in key:
        raise ConfigError(f"bp step: record must be \"DATASET/ID\", got {key!r}")
    dataset, rid = key.split("/", 1)
    rec = load_record(dataset, rid, root)
    fs = float(rec.rates["ppg"])
    a = int(round(start_s * fs))
    b = rec.ppg.size if seconds is None else min(rec.ppg.size, a + int(round(float(seconds) * fs)))
    if b - a < 20 * fs:
        raise DataError(f"bp step: {key} has under 20 s of PPG between {a / fs:g} s and {b / fs:g} s")
    x = np.asarray(rec.ppg[a:b], dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.all():
        raise DataError(f"bp step: {key} has no finite PPG sample in {a / fs:g}..{b / fs:g} s")
    if bad.any():
        x = np.where(bad, float(np.nanmedian(x)), x)
    return rec, x, fs, int(bad.sum())


def _device_run(x: np.ndarray, fs: float, board, bp_model: Path, peak_model: Path | None, gate: str, profile=None):
    from ppg_edge.edge_runtime.playback import light_from_ppg
    from ppg_edge.edge_runtime.sinks import MemorySink

    from .soak import _to_source_fs, open_device_path

    light = light_from_ppg(_to_source_fs(x, fs, smooth=True))
    sink = MemorySink()
    chip, driver, pipe, events, clock, settings = open_device_path(
        np.stack([light, light], axis=1), board, peak_model, sink, gate=gate, bp_model_path=bp_model, profile=profile)
    error = None
    try:
        summary = pipe.run_sensor(driver, events)
    except (HardwareError, DataError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error("bp step stopped: %s", error)
        summary = {}
    return sink.of("bp"), summary, pipe, chip, settings, error


def _stats(d: list[float]) -> dict[str, Any]:
    a = np.abs(np.asarray(d, dtype=np.float64))
    return {"n": int(a.size), "mean_abs": round(float(a.mean()), 4) if a.size else None,
            "max_abs": round(float(a.max()), 4) if a.size else None}


def _mae(est: list[float], ref: list[float]) -> float | None:
    return round(float(np.mean(np.abs(np.subtract(est, ref)))), 3) if ref else None


def run_bp_step(step: Mapping[str, Any], board, *, data_root=None, peak_model: Path | None = None) -> dict:
    """Run one BP step (see the module docstring); the results dict (checks: :func:`bp_checks`).

    ``peak_model``: the beat model the device Pipeline runs beside the BP stage (None: the
    classic detector, quality gate ``classic``)."""
    from ppg_edge import manifest as mf
    from ppg_edge.edge_runtime.bp import BPStage
    from ppg_edge.edge_runtime.user import Profile

    from .soak import sensor_lag_s

    _check_step(step)
    t_wall, t_cpu = time.monotonic(), time.process_time()
    key = str(step.get("record", DEFAULT_RECORD))
    start_s = float(step.get("start_s", 0.0))
    bp_model = model_file(step["bp_model"], "bp_model")
    host_model = model_file(step.get("host_model", step["bp_model"]), "host_model")
    gate = str(step.get("gate", "network" if peak_model is not None else "classic"))
    profile = Profile.from_dict(step["profile"], f"bp step {step.get('name')}: profile") \
        if step.get("profile") is not None else None
    rec, x, fs, n_nan = _load_ppg(key, data_root, start_s, step.get("seconds"))

    dev, summary, pipe, chip, settings, error = _device_run(x, fs, board, bp_model, peak_model, gate, profile)
    t_device = time.monotonic() - t_wall
    lag = sensor_lag_s(settings)

    host_stage = BPStage(host_model, fs, profile=profile)
    host = host_stage.push(x)
    hop_s = host_stage.spec.hop / host_stage.fs
    ht = np.array([e.t for e in host])

    # match: each device estimate -> the nearest host estimate within one hop (record time)
    pairs = []
    for e in dev:
        td = float(e["t"]) + lag
        if ht.size:
            k = int(np.argmin(np.abs(ht - td)))
            if abs(ht[k] - td) <= hop_s + 1e-9:
                pairs.append((e, host[k], round(float(ht[k] - td), 4)))
    matched_host = {id(h) for _, h, _ in pairs}
    diffs = {q: [float(e["uncalibrated"][q]) - h.stretch_values[q] for e, h, _ in pairs] for q in QUANTITIES}
    same_stretch = sum(1 for e, h, _ in pairs if e["stretch"].get("windows") == h.stretch.get("windows")
                       and abs(float(e["stretch"]["t0"]) + lag - h.stretch["t0"]) <= hop_s / 2)
    worst = {}
    for q in QUANTITIES:
        if diffs[q]:
            i = int(np.argmax(np.abs(diffs[q])))
            worst[q] = {"t": pairs[i][0]["t"], "device": pairs[i][0]["uncalibrated"][q],
                        "host": round(pairs[i][1].stretch_values[q], 2), "stretch": pairs[i][0]["stretch"]}
    vs_host = {"matched": len(pairs), "unmatched_device": len(dev) - len(pairs),
               "unmatched_host": len(host) - len(matched_host), "same_stretch": same_stretch,
               "time_offsets_s": sorted({p[2] for p in pairs})[:5],
               **{q: _stats(diffs[q]) for q in QUANTITIES}, "worst": worst}

    man = mf.verify_model(bp_model)
    cv = man.get("cv") or {}
    naive = man.get("naive_mean")
    ref = _reference(rec, pairs, start_s, lag, naive, cv)

    last = dev[-1] if dev else {}
    res = {
        "status": "failed" if error else "ok", "error": error, "record": key,
        "model": bp_model.name, "host_model": host_model.name,
        "profile": None if profile is None else dataclasses.asdict(profile),
        "peak_model": None if peak_model is None else Path(peak_model).name, "gate": gate,
        "bp": {
            "in_process": {"pid": os.getpid(), "note": IN_PROCESS_NOTE},
            "board": board.identifier, "sensor_fs": settings.output_rate, "record_fs": fs,
            "sensor": {"sample_rate": settings.sample_rate, "averaging": settings.averaging},
            "seconds": round(x.size / fs, 2), "start_s": start_s, "nan_samples_filled": n_nan,
            "sensor_lag_s": lag, "hop_s": hop_s,
            "wall_s": round(time.monotonic() - t_wall, 2), "device_wall_s": round(t_device, 2),
            "cpu_s": round(time.process_time() - t_cpu, 2),
            "device": {"estimates": len(dev), "stable": sum(1 for e in dev if e["stretch"].get("quality") == "stable"),
                       "windows_suppressed": pipe.bp.suppressed, "windows_without_pulse": pipe.bp.no_pulse,
                       "samples": summary.get("samples"), "lost": summary.get("lost"),
                       "chip_produced": int(chip.produced), "cv_note": last.get("cv_note"),
                       "shown_last": {q: last.get(q) for q in QUANTITIES} if last else {},
                       "withheld": last.get("withheld", {})},
            "host": {"estimates": len(host), "windows_suppressed": host_stage.suppressed,
                     "windows_without_pulse": host_stage.no_pulse, "cv_note": host_stage.cv_note},
            "vs_host": vs_host,
            "vs_reference": ref,
            "method": (f"device: {key} PPG decimated to the chip's source rate, light_from_ppg, emulated MAX30102 "
                       f"({settings.output_rate:g} Hz out) -> Max30102 driver -> Pipeline(bp_model_path={bp_model.name}); "
                       f"host: BPStage({host_model.name}, {fs:g} Hz) on the float PPG; device t + sensor lag "
                       f"{lag * 1e3:.2f} ms = record time; nearest host estimate within one hop ({hop_s:g} s); "
                       "|device - host| of the uncalibrated stretch means"),
        },
    }
    return res


def _reference(rec, pairs, start_s: float, lag: float, naive, cv: Mapping[str, Any]) -> dict[str, Any]:
    """Device, host and naive MAE against the ABP beats over each stable device stretch."""
    from ppg_edge.evaluate.bp_calibration import _record_abp, abp_beats

    if "abp" not in rec.signals:
        return {"status": "skipped", "reason": f"no ABP channel in {rec.dataset}/{rec.record_id} "
                f"(channels: {', '.join(sorted(rec.signals))})"}
    abp, fs_abp = _record_abp(rec)
    beats = abp_beats(abp, fs_abp)
    bt = beats["t_s"]
    if bt.size == 0:
        return {"status": "skipped", "reason": "no valid ABP beat: " + "; ".join(beats["issues"][:3])}
    rows = {q: {"device": [], "host": [], "naive": [], "ref": []} for q in QUANTITIES}
    n_used, n_no_beats = 0, 0
    for e, h, _ in pairs:
        if e["stretch"].get("quality") != "stable":
            continue
        t0 = start_s + float(e["stretch"]["t0"]) + lag
        t1 = start_s + float(e["stretch"]["t1"]) + lag
        sel = (bt >= t0) & (bt < t1)
        if not sel.any():
            n_no_beats += 1
            continue
        n_used += 1
        for j, q in enumerate(QUANTITIES):
            r = float(beats[q][sel].mean())
            rows[q]["ref"].append(r)
            rows[q]["device"].append(float(e["uncalibrated"][q]))
            rows[q]["host"].append(float(h.stretch_values[q]))
            if naive is not None:
                rows[q]["naive"].append(float(naive[j]))
    out: dict[str, Any] = {"status": "ok", "reason": None, "abp_beats": int(bt.size),
                           "abp_beats_rejected": int(beats["n_rejected"]), "stretches": n_used,
                           "stable_stretches_without_beats": n_no_beats,
                           "naive_mean": None if naive is None else [float(v) for v in naive],
                           "cv": "manifest cv block" if cv else "none in the manifest"}
    for q in QUANTITIES:
        r = rows[q]
        c = cv.get(q) or {}
        out[q] = {"n": len(r["ref"]), "device_mae": _mae(r["device"], r["ref"]), "host_mae": _mae(r["host"], r["ref"]),
                  "naive_mae": _mae(r["naive"], r["ref"]) if naive is not None else None,
                  "ref_mean": round(float(np.mean(r["ref"])), 2) if r["ref"] else None,
                  "ref_sd": round(float(np.std(r["ref"])), 2) if r["ref"] else None,
                  "device_mean": round(float(np.mean(r["device"])), 2) if r["device"] else None,
                  "device_sd": round(float(np.std(r["device"])), 2) if r["device"] else None,
                  "cv_mae": c.get("mae"), "cv_naive_mae": c.get("naive_mae")}
    if n_used == 0:
        out.update(status="skipped", reason="no stable device estimate with an ABP beat in its stretch")
    return out


def bp_checks(step: Mapping[str, Any], res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The step's checks, in the shape :func:`.soak.soak_checks` gives them."""
    out: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        out.append({"check": name, "status": "pass" if ok else "fail", "detail": detail})

    exp = step.get("expect", {}) or {}
    b = res.get("bp") or {}
    check("completed", res.get("status") == "ok", res.get("error") or "the whole record was played")
    d = b.get("device") or {}
    if "min_estimates" in exp:
        n = d.get("estimates")
        check("min_estimates", n is not None and n >= int(exp["min_estimates"]),
              f"{n} device BP estimates ({d.get('stable')} stable; {d.get('windows_suppressed')} windows suppressed, "
              f"{d.get('windows_without_pulse')} without a pulse) (min {exp['min_estimates']})")
    vh = b.get("vs_host") or {}
    for key, stat, what in (("max_mean_abs_diff_vs_host_mmhg", "mean_abs", "mean"),
                            ("max_abs_diff_vs_host_mmhg", "max_abs", "max")):
        if key not in exp:
            continue
        lim = _per_quantity(exp[key], key)
        parts, ok = [], vh.get("matched", 0) > 0
        for q, tol in lim.items():
            s = vh.get(q) or {}
            v = s.get(stat)
            ok = ok and v is not None and s.get("n", 0) > 0 and v <= tol
            parts.append(f"{q.upper()} {v} (max {tol:g})")
        check(key, ok, f"{what} |device - host| of the stretch means over {vh.get('matched', 0)} matched estimates "
              f"({vh.get('unmatched_device')} device, {vh.get('unmatched_host')} host unmatched): " + ", ".join(parts))
    return out


def _or(v, none: str = "-") -> str:
    return none if v is None else f"{v:g}"


def bp_events(res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Lines for the report's Events section: where it ran, device vs host, vs the ABP reference."""
    b = res.get("bp") or {}
    if not b:
        return []
    ip, d, h, vh, ref = b.get("in_process", {}), b.get("device", {}), b.get("host", {}), b.get("vs_host", {}), \
        b.get("vs_reference", {})
    out = [{"kind": "bp", "message": f"{ip.get('note')} (pid {ip.get('pid')}): {res.get('record')} "
            f"({b.get('seconds')} s) on {b.get('board')} at {b.get('sensor_fs')} Hz, BP model {res.get('model')} "
            f"(host: {res.get('host_model')} at {b.get('record_fs')} Hz); {d.get('estimates')} device estimates, "
            f"{h.get('estimates')} host; {b.get('wall_s')} s wall"},
           {"kind": "bp", "message": f"device vs host over {vh.get('matched')} matched estimates "
            f"({vh.get('same_stretch')} with the same stretch): " + "; ".join(
                f"{q.upper()} mean |diff| {(vh.get(q) or {}).get('mean_abs')}, max {(vh.get(q) or {}).get('max_abs')} mmHg"
                for q in QUANTITIES)}]
    if ref.get("status") == "ok":
        out.append({"kind": "bp", "message": f"against the ABP beats over {ref.get('stretches')} stable stretches: " +
                    "; ".join(f"{q.upper()} MAE device {ref[q]['device_mae']}, host {ref[q]['host_mae']}, naive "
                              f"{_or(ref[q]['naive_mae'], 'none: no naive_mean')} (CV MAE "
                              f"{_or(ref[q]['cv_mae'], 'none: no cv block')}, CV naive {_or(ref[q]['cv_naive_mae'])}; "
                              f"device {ref[q]['device_mean']} +- {ref[q]['device_sd']}, ABP {ref[q]['ref_mean']} +- "
                              f"{ref[q]['ref_sd']})" for q in QUANTITIES) + " mmHg, uncalibrated"})
    else:
        out.append({"kind": "bp", "message": f"no reference comparison: {ref.get('reason')}"})
    if d.get("withheld"):
        out.append({"kind": "bp", "message": "withheld on the device: " + "; ".join(
            f"{q}: {w}" for q, w in d["withheld"].items())})
    out.append({"kind": "bp", "message": b.get("method", "")})
    return out
