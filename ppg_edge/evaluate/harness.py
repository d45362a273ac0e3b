"""The common peak-detection benchmark: records x conditions x detectors -> scores.

For every record, every condition (``clean`` or a noise kind at an SNR) and every
detector, the harness runs the detector on the record's PPG, matches its peaks
to the record's reference peaks (:func:`ppg_edge.metrics.peaks.match_peaks`) at
each tolerance, and keeps the scores and the runtime. The noisy signal of a
(record, condition) pair is made once, from a generator seeded by ``rng_seed``,
the record key and the condition name, so every detector sees the *same* noisy
signal and a rerun reproduces it exactly.

Detector failures are recorded, not raised: the row carries ``error`` and is
scored as no detections (every reference peak a false negative), so a detector
that crashes cannot look better than one that tries. Records without reference
peaks are skipped with an event. Both are listed in ``result.events``.
"""
from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.sinks import json_safe

from ..data.record import Record
from ..errors import ConfigError, DataError
from ..metrics.peaks import peak_scores, pool
from ..synth import NOISE_KINDS as _SYNTH_KINDS
from ..synth import REAL_NOISE
from .detectors import Detector, get_detector

log = logging.getLogger(__name__)

__all__ = ["Condition", "PeakEvaluation", "evaluate_peaks", "parse_condition"]

NOISE_KINDS = (*_SYNTH_KINDS, REAL_NOISE)  # ppg_edge.synth's models and noise from real signals
ALL_DATASETS = "all"
DEFAULT_SEED = 20251122

NoiseFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Condition:
    """``kind`` is ``"clean"`` or a noise kind; ``snr_db`` is None for clean."""

    kind: str
    snr_db: float | None = None

    @property
    def name(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind}:{self.snr_db:g}"


def parse_condition(spec: str | Condition | tuple) -> Condition:
    """``"clean"``, ``"gaussian:10"`` (kind:SNR dB), ``("motion", 5)`` or a Condition."""
    if isinstance(spec, Condition):
        return spec
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ConfigError(f"condition {spec!r} must be (kind, snr_db)")
        kind, snr = spec
    else:
        text = str(spec).strip().lower()
        if text == "clean":
            return Condition("clean")
        kind, sep, snr = text.partition(":")
        if not sep:
            raise ConfigError(
                f"condition {spec!r} must be 'clean' or KIND:SNR_DB, e.g. gaussian:10; "
                f"kinds: {', '.join(NOISE_KINDS)}"
            )
    if kind not in NOISE_KINDS:
        raise ConfigError(f"unknown noise kind {kind!r} in {spec!r}; valid: {', '.join(NOISE_KINDS)}")
    try:
        snr_db = float(snr)
    except (TypeError, ValueError):
        raise ConfigError(f"SNR in condition {spec!r} is not a number") from None
    if not math.isfinite(snr_db):
        raise ConfigError(f"SNR in condition {spec!r} must be finite")
    return Condition(kind, snr_db)


def _noise_generator(seed: int, record_key: str, condition: Condition) -> np.random.Generator:
    """One generator per (record, condition): stable across runs, detectors and processes
    (CRC32, not Python's salted ``hash``)."""
    spawn = (zlib.crc32(record_key.encode()), zlib.crc32(condition.name.encode()))
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=spawn))


def _default_noise_fn(data_root=None) -> NoiseFn:
    """``ppg_edge.synth.add_noise``; the ``real`` kind draws on one
    :func:`~ppg_edge.noise_bank.load_real_noise` bank per sampling rate (no-finger
    MAX30102 and bad BUT PPG clips from ``data_root``; no residuals of evaluated records)."""
    try:
        from ..synth import add_noise  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigError(
            "noise conditions need ppg_edge.synth.add_noise, which is not installed in this "
            "checkout; pass noise_fn= or evaluate the clean condition only"
        ) from exc
    banks: dict[float, object] = {}

    def noise(x, fs, kind, snr_db, rng):
        if kind != REAL_NOISE:
            return add_noise(x, fs, kind, snr_db, rng)
        from ..noise_bank import load_real_noise

        if fs not in banks:
            banks[fs] = load_real_noise(fs, data_root)
        return add_noise(x, fs, kind, snr_db, rng, bank=banks[fs])

    return noise


@dataclass
class PeakEvaluation:
    """Result of :func:`evaluate_peaks`.

    ``rows``: one dict per (record, condition, detector) with ``scores`` keyed by
    tolerance label (``"50ms"``); ``pooled``: one dict per (dataset, condition,
    detector), plus ``dataset == "all"`` over every data set; ``runtime``: per
    detector, seconds spent in ``detect`` and signal seconds processed, and
    their ratio ``x_realtime``; ``events``: skipped records and detector errors.
    """

    tolerances_s: tuple[float, ...]
    conditions: list[str]
    detectors: list[str]
    seed: int
    rows: list[dict] = field(default_factory=list)
    pooled: list[dict] = field(default_factory=list)
    runtime: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)

    @property
    def tol_labels(self) -> list[str]:
        return [_tol_label(t) for t in self.tolerances_s]

    def pooled_row(self, dataset: str, condition: str, detector: str) -> dict:
        for row in self.pooled:
            if (row["dataset"], row["condition"], row["detector"]) == (dataset, condition, detector):
                return row
        raise KeyError((dataset, condition, detector))

    def to_dict(self) -> dict:
        return {
            "tolerances_ms": [t * 1000.0 for t in self.tolerances_s],
            "conditions": self.conditions,
            "detectors": self.detectors,
            "seed": self.seed,
            "pooled": self.pooled,
            "runtime": self.runtime,
            "events": self.events,
            "rows": self.rows,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text; NaN (e.g. ADE without matches) becomes ``null``."""
        return json.dumps(json_safe(self.to_dict()), indent=indent)

    def to_markdown(self, dataset: str | None = None) -> str:
        """One table per data set (only ``dataset`` when given, ``all`` last):
        detector, condition, P, R, F1, ADE at the first tolerance, F1 at the others,
        and the detector's speed (signal seconds per second of detection)."""
        first, *others = self.tol_labels
        head = ["detector", "condition", f"P @{first}", f"R @{first}", f"F1 @{first}",
                f"ADE ms @{first}"] + [f"F1 @{t}" for t in others] + ["records", "x real time"]
        sets = [dataset] if dataset else sorted({r["dataset"] for r in self.pooled} - {ALL_DATASETS}) + [ALL_DATASETS]
        out = []
        for ds in sets:
            rows = [r for r in self.pooled if r["dataset"] == ds]
            if not rows:
                continue
            out.append(f"### {ds}\n")
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "|".join("---" for _ in head) + "|")
            for r in rows:
                s = r["scores"][first]
                cells = [r["detector"], r["condition"], _fmt(s["precision"]), _fmt(s["recall"]),
                         _fmt(s["f1"]), _fmt(s["ade_ms"], 1)]
                cells += [_fmt(r["scores"][t]["f1"]) for t in others]
                cells += [str(s["n_records"]), _fmt(r["x_realtime"], 0)]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _tol_label(tol_s: float) -> str:
    return f"{tol_s * 1000:g}ms"


def _resolve_detectors(detectors) -> list[Detector]:
    if isinstance(detectors, (str, Detector)):
        detectors = [detectors]
    out = []
    for d in detectors:
        out.append(d if isinstance(d, Detector) else get_detector(d))
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"detector listed twice: {names}")
    if not out:
        raise ConfigError("no detector given")
    return out


def evaluate_peaks(
    records: Iterable[Record],
    detectors: Sequence[str | Detector] | str,
    conditions: Sequence[str | Condition] = ("clean",),
    tol_s: float | Sequence[float] = (0.050, 0.025),
    rng_seed: int = DEFAULT_SEED,
    noise_fn: NoiseFn | None = None,
    progress: bool = True,
    data_root=None,
) -> PeakEvaluation:
    """Score every detector on every record under every condition.

    ``detectors`` are registry names or :class:`Detector` objects;
    ``conditions`` are ``"clean"`` or ``"KIND:SNR_DB"`` strings (or
    :class:`Condition`); ``tol_s`` one or more matching tolerances in seconds,
    the first being the main one. ``noise_fn(x, fs, kind, snr_db, rng)`` makes
    the noisy signal (default ``ppg_edge.synth.add_noise``, imported only when a
    noise condition is asked for; ``data_root`` holds the sources of the ``real`` kind).
    """
    from tqdm.auto import tqdm

    dets = _resolve_detectors(detectors)
    conds = [parse_condition(c) for c in conditions]
    if not conds:
        raise ConfigError("no condition given (use 'clean')")
    if len({c.name for c in conds}) != len(conds):
        raise ConfigError(f"condition listed twice: {[c.name for c in conds]}")
    tols = (float(tol_s),) if np.isscalar(tol_s) else tuple(float(t) for t in tol_s)
    if not tols or any(not (math.isfinite(t) and t > 0) for t in tols):
        raise ConfigError(f"tolerances must be positive seconds, got {tol_s!r}")
    if len(set(tols)) != len(tols):
        raise ConfigError(f"tolerance listed twice: {tols}")
    if any(c.kind != "clean" for c in conds) and noise_fn is None:
        noise_fn = _default_noise_fn(data_root)

    result = PeakEvaluation(tols, [c.name for c in conds], [d.name for d in dets], int(rng_seed))
    spent = {d.name: 0.0 for d in dets}
    signal_s = {d.name: 0.0 for d in dets}
    records = list(records)
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        raise DataError(f"record listed twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}")

    for rec in tqdm(records, desc="evaluate peaks", unit="record", disable=not progress):
        if rec.peaks is None:
            msg = f"{rec.key}: no reference peaks, skipped"
            log.warning(msg)
            result.events.append({"record": rec.key, "event": "skipped", "reason": "no reference peaks"})
            continue
        for cond in conds:
            x = np.asarray(rec.ppg, dtype=float)
            if cond.kind != "clean":
                rng = _noise_generator(result.seed, rec.key, cond)
                x = np.asarray(noise_fn(x, rec.fs, cond.kind, cond.snr_db, rng), dtype=float)
                if x.shape != rec.ppg.shape:
                    raise DataError(
                        f"noise function returned {x.shape} samples for {rec.key} ({rec.ppg.shape})"
                    )
            for det in dets:
                t0 = time.perf_counter()
                error = None
                try:
                    found = det.detect(x, rec.fs)
                except Exception as exc:  # recorded and scored as nothing found
                    error = f"{type(exc).__name__}: {exc}"
                    found = np.empty(0, np.int64)
                    log.warning("%s on %s (%s) failed: %s", det.name, rec.key, cond.name, error)
                    result.events.append({"record": rec.key, "condition": cond.name,
                                          "detector": det.name, "event": "error", "reason": error})
                dt = time.perf_counter() - t0
                spent[det.name] += dt
                signal_s[det.name] += rec.duration_s
                result.rows.append({
                    "dataset": rec.dataset,
                    "record_id": rec.record_id,
                    "subject_id": rec.subject_id,
                    "condition": cond.name,
                    "detector": det.name,
                    "fs": rec.fs,
                    "duration_s": rec.duration_s,
                    "runtime_s": dt,
                    "error": error,
                    "scores": {_tol_label(t): peak_scores(rec.peaks, found, rec.fs, t) for t in tols},
                })

    result.pooled = _pool_rows(result.rows, result)
    for name in spent:
        result.runtime[name] = {
            "seconds": spent[name],
            "signal_seconds": signal_s[name],
            "x_realtime": _ratio(signal_s[name], spent[name]),
        }
    return result


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _pool_rows(rows: list[dict], result: PeakEvaluation) -> list[dict]:
    out = []
    datasets = sorted({r["dataset"] for r in rows})
    for ds in datasets + [ALL_DATASETS]:
        for cond in result.conditions:
            for det in result.detectors:
                sel = [r for r in rows if r["condition"] == cond and r["detector"] == det
                       and (ds == ALL_DATASETS or r["dataset"] == ds)]
                if not sel:
                    continue
                out.append({
                    "dataset": ds,
                    "condition": cond,
                    "detector": det,
                    "n_errors": sum(r["error"] is not None for r in sel),
                    "runtime_s": sum(r["runtime_s"] for r in sel),
                    "signal_s": sum(r["duration_s"] for r in sel),
                    "x_realtime": _ratio(sum(r["duration_s"] for r in sel), sum(r["runtime_s"] for r in sel)),
                    "scores": {t: pool([r["scores"][t] for r in sel]) for t in result.tol_labels},
                })
    return out
