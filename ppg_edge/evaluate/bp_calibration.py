"""Calibrated blood-pressure evaluation against continuous arterial pressure (host side).

A user calibrates the device with one cuff reading: a constant offset added to every
later estimate. PPG-BP has one cuff reading per subject, so a calibrated test on it is
meaningless; this module tests calibration on records with a continuous arterial
pressure (ABP) channel next to the PPG (the WFDB samples ``mixedsignals`` and ``041s``).

* :func:`abp_beats` -- beat-level SBP (the beat's maximum) and DBP (its foot, the
  minimum before the upstroke) from the ABP waveform, with the project's one pulse
  segmentation (:func:`ppg_edge.dsp.pulses.segment_pulses`; ABP has the PPG's shape:
  foot, fast upstroke, peak). Physiologically impossible beats are rejected and counted.
* :func:`evaluate_calibration` -- for a pluggable estimator ``estimate(ppg, fs) ->
  [{"t", "sbp", "dbp", optional "t0", "t1"}]``: the reference of each estimate is the
  mean beat SBP/DBP over its stretch; the offset is mean(reference) - mean(estimate) over
  the estimates whose stretch lies in the first ``calib_s``; the test uses the estimates
  whose whole stretch lies after ``calib_s`` (no overlap with the calibration). Scored:
  uncalibrated, calibrated (estimate + offset), the carry-forward baseline (the mean beat
  value of the first ``calib_s``, i.e. what one cuff reading says, carried forward) and,
  when given, the population mean. Per record and pooled.
* :func:`markdown_report` -- the tables, how little data this is, and the command.
* :func:`host_feature_estimator` -- a host estimator: ``FeatureBaseline`` trained on all
  PPG-BP subjects at 100 Hz, applied to consecutive 2.1 s windows, 5 windows averaged.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..dsp.pulses import segment_pulses
from ..dsp.rates import check_rate
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Physiological limits of a beat (mmHg); beats outside are rejected and counted.
SBP_RANGE = (40.0, 300.0)
DBP_RANGE = (15.0, 200.0)
MIN_PULSE_PRESSURE = 10.0
#: Test time a record needs after the calibration (s).
MIN_TEST_S = 30.0
#: Stretch of an estimate without ``t0``/``t1`` (s before its ``t``).
DEFAULT_STRETCH_S = 10.0
QUANTITIES = ("sbp", "dbp")
#: Estimator interface: PPG samples and their rate -> estimates.
Estimator = Callable[[np.ndarray, float], list]



def _empty_beats(reason: str, n_samples: int = 0) -> dict[str, Any]:
    z = np.zeros(0)
    return {"t_s": z, "t_start_s": z.copy(), "t_end_s": z.copy(), "sbp": z.copy(), "dbp": z.copy(),
            "n_found": 0, "n_rejected": 0, "rejected": {}, "issues": [reason], "n_samples": n_samples}


def _finite_runs(ok: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def abp_beats(abp, fs: float) -> dict[str, Any]:
    """Beats of an arterial-pressure waveform (mmHg): ``t_s`` (systolic peak time, s),
    ``t_start_s``/``t_end_s`` (foot, next foot), ``sbp`` (the beat's maximum) and ``dbp``
    (its foot, the lowest sample before the upstroke), as arrays.

    Beats come from :func:`ppg_edge.dsp.pulses.segment_pulses` (foot to foot). Non-finite
    samples split the signal: each finite run is segmented on its own, so no beat spans a
    gap. Beats with SBP outside ``SBP_RANGE``, DBP outside ``DBP_RANGE`` or a pulse
    pressure below ``MIN_PULSE_PRESSURE`` are rejected; ``rejected`` counts them by reason,
    ``issues`` says why beats are missing (NaN stretch, flat signal, none found).
    A 2-D array or a bad rate raises :class:`DataError`/:class:`ConfigError`; bad samples
    give an empty (or partial) result with the reason, never an exception.
    """
    fs = check_rate(fs)
    x = np.asarray(abp, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"ABP must be a 1-D array, got shape {x.shape}")
    if x.size == 0:
        return _empty_beats("ABP is empty")
    ok = np.isfinite(x)
    issues: list[str] = []
    if not ok.any():
        return _empty_beats(f"ABP has no finite sample ({x.size} NaN/inf)", x.size)
    if not ok.all():
        issues.append(f"{int((~ok).sum())} non-finite ABP sample(s): beats found in the finite stretches only")
    t, t0, t1, sbp, dbp = [], [], [], [], []
    rejected: dict[str, int] = {}
    n_found = 0
    for a, b in _finite_runs(ok):
        seg = x[a:b]
        if seg.size < 2 or np.ptp(seg) < MIN_PULSE_PRESSURE:
            issues.append(f"ABP {a / fs:.2f}-{b / fs:.2f} s is flat (range {np.ptp(seg):.2f} mmHg): no beats")
            continue
        pulses, seg_issues = segment_pulses(seg, fs)
        issues.extend(f"ABP {a / fs:.2f}-{b / fs:.2f} s: {s}" for s in seg_issues)
        for f0, f1 in pulses:
            n_found += 1
            k = f0 + int(np.argmax(seg[f0:f1]))
            s, d = float(seg[k]), float(seg[f0])
            why = None
            if not SBP_RANGE[0] <= s <= SBP_RANGE[1]:
                why = "sbp out of range"
            elif not DBP_RANGE[0] <= d <= DBP_RANGE[1]:
                why = "dbp out of range"
            elif s - d < MIN_PULSE_PRESSURE:
                why = "pulse pressure below 10 mmHg"
            if why:
                rejected[why] = rejected.get(why, 0) + 1
                continue
            t.append((a + k) / fs)
            t0.append((a + f0) / fs)
            t1.append((a + f1) / fs)
            sbp.append(s)
            dbp.append(d)
    if n_found == 0:
        issues.append("no ABP beat found")
    n_rej = int(sum(rejected.values()))
    if n_rej:
        log.info("abp_beats: %d of %d beats rejected (%s)", n_rej, n_found, rejected)
    return {"t_s": np.asarray(t), "t_start_s": np.asarray(t0), "t_end_s": np.asarray(t1),
            "sbp": np.asarray(sbp), "dbp": np.asarray(dbp), "n_found": n_found, "n_rejected": n_rej,
            "rejected": rejected, "issues": issues, "n_samples": int(x.size)}


def _record_abp(rec) -> tuple[np.ndarray, float]:
    """The record's ABP with the loader's filled invalid spans set back to NaN."""
    abp = np.array(rec.signals["abp"], dtype=np.float64)
    for a, b in (rec.meta or {}).get("invalid_spans", {}).get("abp", []):
        abp[a:b] = np.nan
    return abp, float(rec.rates["abp"])


def _check_estimates(raw, key: str) -> list[dict[str, Any]]:
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"{key}: the estimator must return a list of dicts, got {type(raw).__name__}")
    out = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or "t" not in e:
            raise DataError(f"{key}: estimate {i} is not a dict with 't': {e!r}")
        t = float(e["t"])
        t0 = float(e["t0"]) if e.get("t0") is not None else t - DEFAULT_STRETCH_S
        t1 = float(e["t1"]) if e.get("t1") is not None else t
        if not (np.isfinite(t0) and np.isfinite(t1) and t0 < t1):
            raise DataError(f"{key}: estimate {i} has a bad stretch t0={t0}, t1={t1}")
        row = {"t": t, "t0": t0, "t1": t1}
        for q in QUANTITIES:
            v = e.get(q)
            row[q] = float(v) if v is not None and np.isfinite(float(v)) else None
        out.append(row)
    return out


def _metrics(est: np.ndarray, ref: np.ndarray, offset: float, carry: float,
             population: float | None) -> dict[str, Any]:
    m: dict[str, Any] = {"n": int(ref.size)}
    if ref.size == 0:
        for name in ("uncalibrated", "calibrated", "carry_forward", "population"):
            m[f"mae_{name}"] = m[f"me_{name}"] = None
        return m
    preds = {"uncalibrated": est, "calibrated": est + offset, "carry_forward": np.full_like(ref, carry)}
    if population is not None:
        preds["population"] = np.full_like(ref, population)
    for name, p in preds.items():
        err = p - ref
        m[f"mae_{name}"] = float(np.mean(np.abs(err)))
        m[f"me_{name}"] = float(np.mean(err))
    if population is None:
        m["mae_population"] = m["me_population"] = None
    return m


def _skip(row: dict, reason: str) -> dict:
    row.update(status="skipped", reason=reason)
    log.warning("bp calibration: %s skipped: %s", row["record"], reason)
    return row


def evaluate_calibration(records: Sequence, estimate: Estimator, *, calib_s: float = 60.0,
                         population_mean: tuple[float, float] | None = None,
                         min_test_s: float = MIN_TEST_S) -> dict[str, Any]:
    """Calibrated vs uncalibrated vs carry-forward MAE of ``estimate`` on records with ABP.

    ``records``: :class:`ppg_edge.data.record.Record` with ``abp`` and ``ppg`` channels.
    A record without ABP, shorter than ``calib_s + min_test_s``, or without a usable
    calibration or test estimate is reported as skipped with the reason. Errors of the
    test estimates are pooled over the records that were not skipped.
    """
    calib_s, min_test_s = float(calib_s), float(min_test_s)
    if not (np.isfinite(calib_s) and calib_s > 0) or not (np.isfinite(min_test_s) and min_test_s > 0):
        raise ConfigError(f"calib_s and min_test_s must be positive, got {calib_s}, {min_test_s}")
    if population_mean is not None:
        population_mean = tuple(float(v) for v in population_mean)
        if len(population_mean) != 2 or not all(np.isfinite(population_mean)):
            raise ConfigError(f"population_mean must be (sbp, dbp), got {population_mean}")
    rows, pooled_err = [], {q: {"est": [], "ref": [], "off": [], "carry": []} for q in QUANTITIES}
    for rec in records:
        key = getattr(rec, "key", None) or f"{rec.dataset}/{rec.record_id}"
        row: dict[str, Any] = {"record": key, "status": "ok", "reason": None}
        rows.append(row)
        if "abp" not in rec.signals:
            _skip(row, f"no ABP channel (channels: {', '.join(sorted(rec.signals))})")
            continue
        abp, fs_abp = _record_abp(rec)
        fs_ppg = float(rec.rates["ppg"])
        duration = min(abp.size / fs_abp, len(rec.ppg) / fs_ppg)
        beats = abp_beats(abp, fs_abp)
        row.update(duration_s=duration, calib_s=calib_s, test_s=max(0.0, duration - calib_s),
                   n_beats=int(beats["t_s"].size), n_beats_rejected=beats["n_rejected"],
                   beats_rejected=beats["rejected"], beat_issues=beats["issues"][:20])
        if duration < calib_s + min_test_s:
            _skip(row, f"{duration:.1f} s long, needs {calib_s:g} s of calibration + {min_test_s:g} s of test")
            continue
        if beats["t_s"].size == 0:
            _skip(row, "no valid ABP beat: " + "; ".join(beats["issues"][:3]))
            continue
        ests = _check_estimates(estimate(np.asarray(rec.ppg, dtype=np.float64), fs_ppg), key)
        bt = beats["t_s"]
        for e in ests:
            sel = (bt >= e["t0"]) & (bt < e["t1"])
            e["n_beats"] = int(sel.sum())
            for q in QUANTITIES:
                e[f"ref_{q}"] = float(beats[q][sel].mean()) if sel.any() else None
        calib = [e for e in ests if e["t1"] <= calib_s]
        test = [e for e in ests if e["t0"] >= calib_s and e["t1"] <= duration + 1e-6]
        first = bt < calib_s
        row.update(n_estimates=len(ests), n_calib_estimates=len(calib), n_test_estimates=len(test),
                   n_straddling=sum(1 for e in ests if e["t0"] < calib_s < e["t1"]),
                   n_test_beats=int(((bt >= calib_s) & (bt < duration)).sum()),
                   n_calib_beats=int(first.sum()), offset={}, carry_forward={}, metrics={})
        if not first.any():
            _skip(row, f"no valid ABP beat in the first {calib_s:g} s")
            continue
        reason, local = None, {}
        for j, q in enumerate(QUANTITIES):
            c = [(e[q], e[f"ref_{q}"]) for e in calib if e[q] is not None and e[f"ref_{q}"] is not None]
            tst = [(e[q], e[f"ref_{q}"]) for e in test if e[q] is not None and e[f"ref_{q}"] is not None]
            if not c:
                reason = f"no {q.upper()} estimate with a reference in the first {calib_s:g} s"
                break
            if not tst:
                reason = f"no {q.upper()} test estimate with a reference after {calib_s:g} s"
                break
            offset = float(np.mean([r for _, r in c]) - np.mean([v for v, _ in c]))
            carry = float(beats[q][first].mean())
            est, ref = np.array([v for v, _ in tst]), np.array([r for _, r in tst])
            pop = population_mean[j] if population_mean is not None else None
            row["offset"][q], row["carry_forward"][q] = offset, carry
            row["metrics"][q] = _metrics(est, ref, offset, carry, pop)
            row["metrics"][q]["n_missing"] = len(test) - len(tst)
            local[q] = (est, ref, np.full_like(ref, offset), np.full_like(ref, carry))
        if reason:
            row["offset"], row["carry_forward"], row["metrics"] = {}, {}, {}
            _skip(row, reason)
            continue
        for q, (est, ref, off, carry) in local.items():  # pooled: fully scored records only
            pe = pooled_err[q]
            pe["est"].append(est)
            pe["ref"].append(ref)
            pe["off"].append(off)
            pe["carry"].append(carry)
        row["estimates"] = [{k: e[k] for k in ("t0", "t1", "sbp", "dbp", "ref_sbp", "ref_dbp", "n_beats")}
                            for e in ests]
    used = [r for r in rows if r["status"] == "ok"]
    pooled: dict[str, Any] = {"n_records": len(used), "test_s": float(sum(r["test_s"] for r in used)),
                              "n_test_beats": int(sum(r["n_test_beats"] for r in used)),
                              "n_test_estimates": int(sum(r["n_test_estimates"] for r in used)), "metrics": {}}
    for j, q in enumerate(QUANTITIES):
        pe = pooled_err[q]
        if pe["ref"]:
            est, ref = np.concatenate(pe["est"]), np.concatenate(pe["ref"])
            off, carry = np.concatenate(pe["off"]), np.concatenate(pe["carry"])
        else:
            est = ref = off = carry = np.zeros(0)
        pop = population_mean[j] if population_mean is not None else None
        m: dict[str, Any] = {"n": int(ref.size)}
        preds = {"uncalibrated": est, "calibrated": est + off, "carry_forward": carry}
        if pop is not None:
            preds["population"] = np.full_like(ref, pop)
        for name in ("uncalibrated", "calibrated", "carry_forward", "population"):
            p = preds.get(name)
            ok = p is not None and ref.size > 0
            m[f"mae_{name}"] = float(np.mean(np.abs(p - ref))) if ok else None
            m[f"me_{name}"] = float(np.mean(p - ref)) if ok else None
        pooled["metrics"][q] = m
    return {"calib_s": calib_s, "min_test_s": min_test_s,
            "population_mean": list(population_mean) if population_mean is not None else None,
            "test_rule": "test estimates: whole stretch after calib_s; calibration: stretch ends by calib_s",
            "records": rows, "pooled": pooled,
            "skipped": [{"record": r["record"], "reason": r["reason"]} for r in rows if r["status"] != "ok"]}


def _f(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown_report(result: dict[str, Any]) -> str:
    """One table per quantity (record, test s, n, uncalibrated, calibrated, carry-forward
    MAE; population MAE when given), how little data this is, and the command line."""
    pop = result.get("population_mean") is not None
    out = [f"# BP calibration against continuous ABP (calibration: first {result['calib_s']:g} s)", ""]
    for q in QUANTITIES:
        head = ["record", "test s", "n", "uncalibrated MAE", "calibrated MAE", "carry-forward MAE"]
        if pop:
            head.append("population-mean MAE")
        out += [f"## {q.upper()} (mmHg)", "", "| " + " | ".join(head) + " |",
                "|" + "---|" * len(head)]
        for r in result["records"]:
            if r["status"] != "ok":
                cells = [r["record"], "–" if r.get("test_s") is None else f"{r['test_s']:.0f}", "0", f"skipped: {r['reason']}", "", ""]
            else:
                m = r["metrics"][q]
                cells = [r["record"], f"{r['test_s']:.0f}", str(m["n"]), _f(m["mae_uncalibrated"]),
                         _f(m["mae_calibrated"]), _f(m["mae_carry_forward"])]
            if pop:
                cells.append("" if r["status"] != "ok" else _f(r["metrics"][q]["mae_population"]))
            out.append("| " + " | ".join(cells) + " |")
        p = result["pooled"]
        m = p["metrics"][q]
        cells = ["**pooled**", f"{p['test_s']:.0f}", str(m["n"]), _f(m["mae_uncalibrated"]),
                 _f(m["mae_calibrated"]), _f(m["mae_carry_forward"])]
        if pop:
            cells.append(_f(m["mae_population"]))
        out += ["| " + " | ".join(cells) + " |", ""]
    p = result["pooled"]
    n_all, n_sk = len(result["records"]), len(result["skipped"])
    out.append(
        f"This is very little data: {p['n_records']} record(s) scored ({n_sk} of {n_all} skipped), "
        f"{p['test_s'] / 60:.1f} min of test time, {p['n_test_estimates']} test estimates and "
        f"{p['n_test_beats']} ABP beats after calibration -- one subject at most per record, "
        "so these numbers show that the evaluation works, not how well calibration works.")
    out.append("")
    out.append("Reference: mean beat SBP (beat maximum) / DBP (beat foot) of the ABP over each estimate's "
               "stretch; calibrated = estimate + (mean reference - mean estimate) over the calibration "
               "estimates; carry-forward = mean beat value of the calibration period (one cuff reading).")
    if result.get("command"):
        out += ["", f"Command: `{result['command']}`"]
    return "\n".join(out)


def device_estimator(model_path, *, min_windows: int = 3, max_windows: int = 5) -> Estimator:
    """The device's own BP stage (:class:`ppg_edge.edge_runtime.bp.BPStage`) as the estimator: the
    record's PPG at its own rate through the stage's resampler, quality gate and stretch average;
    one estimate per accepted window, its stretch as ``t0``/``t1``, the **uncalibrated** stretch
    mean of both quantities (also of one the device withholds: this evaluates the model; the
    device's calibrated output is ``estimate + offset`` as here, :class:`~ppg_edge.edge_runtime.user.Calibration`).
    ``population_mean``: the manifest's training mean; estimates still settling are left out."""
    from ppg_edge.edge_runtime.bp import MASE_LIMIT, BPStage
    from ppg_edge.manifest import manifest_path_for, read_manifest

    man = read_manifest(manifest_path_for(model_path))

    def estimate(ppg: np.ndarray, fs_in: float) -> list[dict[str, Any]]:
        x = np.asarray(ppg, dtype=np.float64)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise DataError("device estimator: PPG must be a finite 1-D array")
        stage = BPStage(model_path, check_rate(fs_in), min_windows=min_windows, max_windows=max_windows)
        out = []
        for e in stage.push(x):
            if e.stretch["quality"] != "stable":
                continue
            out.append({"t": e.t, "t0": e.stretch["t0"], "t1": e.stretch["t1"],
                        "sbp": e.stretch_values.get("sbp"), "dbp": e.stretch_values.get("dbp")})
        return out

    mean = man.get("naive_mean")
    estimate.population_mean = tuple(float(v) for v in mean) if mean else None  # type: ignore[attr-defined]
    estimate.description = (f"device BP stage: {Path(model_path).name} ({man.get('inputs_kind', 'ppg')}), "  # type: ignore[attr-defined]
                            f"stretch mean of {min_windows}-{max_windows} accepted windows, uncalibrated; "
                            f"withheld on the device: {sorted(q for q, c in (man.get('cv') or {}).items() if isinstance(c, dict) and c.get('mase', 9) >= MASE_LIMIT)}")
    return estimate
