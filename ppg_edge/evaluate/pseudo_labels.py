"""Pseudo-labels for PPG without beat labels: classic detectors vote on clean stretches.

Rule (:func:`pseudo_label`)
---------------------------
1. **Clean stretches** come from the runtime's own quality index, unchanged: the record
   is framed exactly as the device frames it (:func:`ppg_edge.dsp.peaks_preprocessing`
   at the record's rate: 0.5-8 Hz causal band-pass, 2 s windows every 1 s, through
   :class:`~ppg_edge.edge_runtime.stream.StreamPreprocessor`) and every window is
   assessed by :class:`~ppg_edge.edge_runtime.quality.QualityGate` with the default
   :class:`~ppg_edge.edge_runtime.quality.QualityConfig` (no ADC counts on a medical
   record, so the finger-off, saturation, held and transient checks are off; the motion
   checks are on: spread within ``motion_ratio`` = 4x of the running median, energy above
   ``hf_hz`` = 10 Hz at most ``hf_ratio`` = 0.5 of the 0.5-8 Hz energy). A window is clean
   when the gate accepts it *and* its SQI (:func:`~ppg_edge.edge_runtime.quality.sqi_autocorr`,
   the highest normalised autocorrelation at 0.27-1.5 s lags) is at least
   ``QualityConfig.sqi_classic`` = 0.8: the same bar at which the runtime trusts the classic
   detector over the network. A sample is clean when every window that covers it is clean
   (samples after the last full window are not clean); a clean stretch is a run of clean
   samples.
2. **Votes.** Each detector runs on the whole record (filters and normalisation need the
   context). Detections of every pair of detectors are paired one-to-one within
   ``agree_s`` by the project's matcher (:func:`ppg_edge.metrics.peaks.match_peaks`);
   paired detections are joined into groups (connected components over all pairs). A group
   with detections of at least ``min_votes`` different detectors, none of them twice, is a
   beat at the median of its positions. Beats in a clean stretch are kept. A detector that
   cannot read the record (MSPTDfast on a record under its 6 s window) abstains; with fewer
   than ``min_votes`` detectors left the record gets no pseudo-labels (``DataError``).
3. **Disagreements** are the other detections inside clean stretches: a detection no other
   detector paired, and groups that do not reach ``min_votes`` (or hold one detector twice).
   A disagreement within ``same_beat_s`` (0.15 s, half the 0.3 s shortest beat interval)
   of a kept beat is a dissent about *where* that beat is, not about *whether* there is one:
   it is counted (``counts["dissent"]``) and the beat stays. Any other disagreement masks
   half the local beat interval (median of the stretch's kept intervals) on each side, so
   a true beat that only one detector saw never counts as a negative.
4. **Gaps.** A true beat that no detector saw leaves a long interval: an interval between
   neighbouring kept beats (or between a stretch edge and its first/last beat) longer than
   ``max_gap_rr`` (1.7) times the local beat interval is masked. A stretch without two kept
   beats is masked whole.

``mask`` is True where a loss may use the sample: inside a clean stretch and outside every
masked margin. ``peaks`` are the kept beats inside the mask (``dropped``: kept beats that
a margin covered).

Check (:func:`evaluate_rule`)
-----------------------------
The rule on records with expert labels: kept beats against the labels with the same
matcher at +-50 ms (and +-25 ms), counted only inside the mask: a pair counts when its
label or its beat is inside, an unmatched label inside is a false negative, every kept beat
is inside. Only the span the labels cover counts (from ``tol`` before the first label to
``tol`` after the last): BIDMC's ECG-derived labels start at the first R peak plus the
pulse-arrival lag, so the pulse before it has no label. Also the mask's share of the signal and the share of expert beats inside it.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..dsp.rates import check_rate
from ..errors import ConfigError, DataError
from ..metrics.peaks import PeakMatch, match_peaks, pool, scores_from_match
from . import dwt_baseline  # noqa: F401  (the DWT detector's module; detectors.py registers it)
from .detectors import get_detector

log = logging.getLogger(__name__)

__all__ = ["PseudoLabels", "DEFAULT_DETECTORS", "clean_mask", "pseudo_label", "masked_scores", "evaluate_record",
           "evaluate_rule", "markdown_report"]

#: elgendi, MSPTDfast v2 and the DWT detector, by their registered names.
DEFAULT_DETECTORS = ("nk-elgendi", "nk-msptdfastv2", "dwt-baseline")
DEFAULT_AGREE_S = 0.025
SAME_BEAT_S = 0.15
MAX_GAP_RR = 1.7
FALLBACK_RR_S = 1.0  # local beat interval where a stretch has fewer than two kept beats
EVAL_TOLS_S = (0.050, 0.025)


@dataclass
class PseudoLabels:
    """The result of :func:`pseudo_label` (see the module docstring)."""

    fs: float
    peaks: np.ndarray  # kept beats inside the mask (sample indices)
    mask: np.ndarray  # bool per sample: the loss may use it
    clean: list[tuple[int, int]]  # clean stretches [start, stop)
    dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # kept beats a margin covered
    disagreements: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # positions masked
    counts: dict = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """Share of the samples the loss may use."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def _check_input(ppg, fs) -> tuple[np.ndarray, float]:
    fs = check_rate(fs, "pseudo_label: sampling rate", error=DataError, number=True)
    x = np.asarray(ppg, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"pseudo_label: PPG must be 1-D, got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(f"pseudo_label: PPG has {int(bad.sum())} NaN/infinite samples (first at "
                        f"{int(np.argmax(bad))}); cut the record at them first")
    return x, float(fs)


def clean_mask(ppg, fs: float, quality=None) -> tuple[np.ndarray, dict]:
    """Per-sample clean flags from the runtime's quality gate (module docstring, step 1),
    and the window counts by outcome. ``quality``: a ``QualityConfig`` (default: the runtime's)."""
    from ppg_edge.dsp import peaks_preprocessing
    from ppg_edge.edge_runtime.quality import QualityConfig, QualityGate, settle_time
    from ppg_edge.edge_runtime.stream import StreamPreprocessor

    x, fs = _check_input(ppg, fs)
    spec = peaks_preprocessing(fs)
    if x.size < spec.window:
        raise DataError(f"pseudo_label: {x.size} samples ({x.size / fs:.2f} s) is shorter than one "
                        f"{spec.window / fs:g} s quality window")
    cfg = quality or QualityConfig()
    if cfg.settle_s is None:
        cfg.settle_s = settle_time(spec.sos, spec.fs)
    gate = QualityGate(fs, cfg)
    windows = StreamPreprocessor(spec).push(x)
    bad = np.zeros(x.size + 1, np.int64)  # difference array of windows that are not clean
    covered = np.zeros(x.size + 1, np.int64)
    outcomes: dict[str, int] = {}
    for w in windows:
        q = gate.assess(w)
        ok = q.ok and q.sqi >= cfg.sqi_classic
        why = "clean" if ok else (q.reason or "low_sqi")
        outcomes[why] = outcomes.get(why, 0) + 1
        covered[w.start] += 1
        covered[w.end] -= 1
        if not ok:
            bad[w.start] += 1
            bad[w.end] -= 1
    clean = (np.cumsum(covered)[:-1] > 0) & (np.cumsum(bad)[:-1] == 0)
    return clean, outcomes


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _groups(dets: list[np.ndarray], fs: float, agree_s: float) -> list[list[tuple[int, int]]]:
    """Detections joined by pairwise one-to-one matches: lists of (detector, position)."""
    offs = np.cumsum([0] + [d.size for d in dets])
    parent = np.arange(offs[-1])

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i in range(len(dets)):
        for j in range(i + 1, len(dets)):
            m = match_peaks(dets[i], dets[j], fs, agree_s)
            for a, b in m.pairs:
                ra = find(offs[i] + int(np.searchsorted(dets[i], a)))
                rb = find(offs[j] + int(np.searchsorted(dets[j], b)))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    out: dict[int, list[tuple[int, int]]] = {}
    for k, d in enumerate(dets):
        for n, p in enumerate(d):
            out.setdefault(find(offs[k] + n), []).append((k, int(p)))
    return list(out.values())


def _local_rr(beats: np.ndarray, fs: float) -> float:
    rr = np.diff(beats)
    return float(np.median(rr)) if rr.size else FALLBACK_RR_S * fs


def pseudo_label(ppg, fs: float, *, detectors: Sequence[str] = DEFAULT_DETECTORS,
                 agree_s: float = DEFAULT_AGREE_S, min_votes: int = 2, same_beat_s: float = SAME_BEAT_S,
                 max_gap_rr: float | None = MAX_GAP_RR, quality=None) -> PseudoLabels:
    """Beats where ``min_votes`` of ``detectors`` agree within ``agree_s`` on clean stretches,
    and the mask of samples a loss may use (see the module docstring).

    Raises ``DataError`` for a PPG that is not 1-D, holds NaN/infinity or is shorter than one
    2 s quality window, or for a bad rate; ``ConfigError`` for bad rule parameters or an
    unknown detector.
    """
    x, fs = _check_input(ppg, fs)
    names = list(detectors)
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"pseudo_label: give distinct detector names, got {names}")
    found = [get_detector(n) for n in names]  # ConfigError listing the valid names for an unknown one
    if isinstance(min_votes, bool) or not isinstance(min_votes, (int, np.integer)) \
            or not 1 <= min_votes <= len(names):
        raise ConfigError(f"pseudo_label: min_votes must be 1..{len(names)}, got {min_votes!r}")
    if not (math.isfinite(agree_s) and agree_s > 0):
        raise ConfigError(f"pseudo_label: agree_s must be a positive number of seconds, got {agree_s!r}")
    if not (math.isfinite(same_beat_s) and same_beat_s >= 0):
        raise ConfigError(f"pseudo_label: same_beat_s must be >= 0, got {same_beat_s!r}")
    if max_gap_rr is not None and not max_gap_rr > 1:
        raise ConfigError(f"pseudo_label: max_gap_rr must be > 1 (or None), got {max_gap_rr!r}")

    clean, outcomes = clean_mask(x, fs, quality)
    dets, abstained = [], []
    for name, d in zip(names, found):
        try:
            dets.append(d(x, fs))
        except DataError as exc:  # e.g. MSPTDfast on a record shorter than its 6 s window
            log.debug("pseudo_label: %s abstains (%s)", name, exc)
            abstained.append(name)
            dets.append(np.zeros(0, np.int64))
    if len(names) - len(abstained) < min_votes:
        raise DataError(f"pseudo_label: only {len(names) - len(abstained)} of {len(names)} detectors "
                        f"can read this record ({', '.join(abstained)} abstained); {min_votes} must vote")
    beats, others = [], []
    for g in _groups(dets, fs, agree_s):
        who = [k for k, _ in g]
        pos = [p for _, p in g]
        if len(set(who)) >= min_votes and len(set(who)) == len(who):
            beats.append(int(round(float(np.median(pos)))))
        else:
            others.extend(pos)
    beats = np.unique(np.asarray(beats, np.int64))
    beats = beats[clean[beats]] if beats.size else beats
    others = np.unique(np.asarray(others, np.int64))
    others = others[clean[others]] if others.size else others

    mask = clean.copy()
    stretches = _runs(clean)
    masked_pos, dissent, gaps, empty = [], 0, 0, 0
    for a, b in stretches:
        sb = beats[(beats >= a) & (beats < b)]
        so = others[(others >= a) & (others < b)]
        if sb.size < 2:
            mask[a:b] = False
            empty += 1
            masked_pos.extend(so.tolist())
            continue
        rr = _local_rr(sb, fs)
        half = int(round(rr / 2))
        for p in so:
            k = int(np.searchsorted(sb, p))
            near = min(abs(p - sb[k - 1]) if k else np.inf, abs(sb[k] - p) if k < sb.size else np.inf)
            if near <= same_beat_s * fs:
                dissent += 1
                continue
            masked_pos.append(int(p))
            mask[max(a, p - half):min(b, p + half + 1)] = False
        if max_gap_rr is not None:
            edges = np.concatenate(([a], sb, [b - 1]))
            for lo, hi in zip(edges[:-1], edges[1:]):
                if hi - lo > max_gap_rr * rr:
                    gaps += 1
                    mask[lo + 1:hi] = False
    kept = beats[mask[beats]] if beats.size else beats
    dropped = beats[~mask[beats]] if beats.size else beats
    counts = {
        "detections": {n: int(d.size) for n, d in zip(names, dets) if n not in abstained},
        "abstained": abstained,
        "windows": outcomes,
        "stretches": len(stretches),
        "stretches_without_beats": empty,
        "beats": int(kept.size),
        "beats_dropped": int(dropped.size),
        "disagreements": len(masked_pos),
        "dissent": dissent,
        "gaps": gaps,
    }
    log.debug("pseudo_label: %d beats kept, %d dropped, %d disagreements masked, %.1f%% of samples kept",
              kept.size, dropped.size, len(masked_pos), 100 * mask.mean())
    return PseudoLabels(fs=fs, peaks=kept, mask=mask, clean=stretches, dropped=dropped,
                        disagreements=np.asarray(sorted(masked_pos), np.int64), counts=counts)


def masked_scores(ref, labels: PseudoLabels, tol_s: float) -> dict:
    """Scores of ``labels.peaks`` against ``ref`` counted inside ``labels.mask`` only (module docstring)."""
    ref = np.asarray(ref, dtype=np.int64)
    m = match_peaks(ref, labels.peaks, labels.fs, tol_s)
    mask = labels.mask.copy()
    if ref.size:  # the labels cover their own span only (BIDMC's start at the first R peak + lag)
        tol = int(math.ceil(tol_s * labels.fs))
        mask[:max(0, ref[0] - tol)] = False
        mask[ref[-1] + tol + 1:] = False
    inside = mask[m.pairs[:, 0]] | mask[m.pairs[:, 1]] if m.pairs.size else np.zeros(0, bool)
    pairs = m.pairs[inside]
    kept = PeakMatch(fs=m.fs, tol_s=m.tol_s, pairs=pairs, errors=pairs[:, 1] - pairs[:, 0],
                     unmatched_ref=m.unmatched_ref[mask[m.unmatched_ref]],
                     unmatched_det=m.unmatched_det[mask[m.unmatched_det]])
    return scores_from_match(kept)


def _tol_label(t: float) -> str:
    return f"{t * 1000:g}ms"


def evaluate_record(rec, **rule) -> dict:
    """The rule on one labelled record: scores inside the mask at each of ``EVAL_TOLS_S``,
    coverage, the share of expert beats inside the mask, counts and time."""
    if rec.peaks is None:
        raise DataError(f"{rec.key}: no reference peaks to check the pseudo-labels against")
    t0 = time.perf_counter()
    pl = pseudo_label(rec.ppg, rec.fs, **rule)
    ref = rec.peaks
    return {
        "dataset": rec.dataset,
        "record": rec.record_id,
        "subject": rec.subject_id,
        "fs": rec.fs,
        "duration_s": round(rec.duration_s, 3),
        "peaks_source": rec.meta.get("peaks_source", "expert"),
        "scores": {_tol_label(t): masked_scores(ref, pl, t) for t in EVAL_TOLS_S},
        "coverage": pl.coverage,
        "clean_fraction": float(np.mean([b - a for a, b in pl.clean]) * len(pl.clean) / pl.mask.size)
        if pl.clean else 0.0,
        "ref_in_mask": float(pl.mask[ref].mean()) if ref.size else float("nan"),
        "n_ref": int(ref.size),
        "counts": pl.counts,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _summary(rows: list[dict]) -> dict:
    samples = sum(r["duration_s"] * r["fs"] for r in rows)
    return {
        "scores": {lab: pool(r["scores"][lab] for r in rows) for lab in rows[0]["scores"]},
        "coverage": sum(r["coverage"] * r["duration_s"] * r["fs"] for r in rows) / samples,
        "ref_in_mask": sum(r["ref_in_mask"] * r["n_ref"] for r in rows) / max(1, sum(r["n_ref"] for r in rows)),
        "n_records": len(rows),
        "hours": sum(r["duration_s"] for r in rows) / 3600,
        "f1_min_record": min(r["scores"]["50ms"]["f1"] for r in rows),
    }


def evaluate_rule(records: Iterable, progress: bool = False, **rule) -> dict:
    """:func:`evaluate_record` on each labelled record; pooled per data set and over all.

    ``records``: ``Record`` objects (an iterable, loaded lazily is fine); ``rule``: keyword
    arguments of :func:`pseudo_label`. Raises ``DataError`` when no record has labels.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    rows = []
    for rec in tqdm(records, desc="pseudo-labels", unit="rec", disable=not progress):
        if rec.peaks is None:
            log.warning("%s: no reference peaks, skipped", rec.key)
            continue
        rows.append(evaluate_record(rec, **rule))
    if not rows:
        raise DataError("evaluate_rule: no record with reference peaks")
    by_ds: dict[str, list[dict]] = {}
    for r in rows:
        by_ds.setdefault(r["dataset"], []).append(r)
    params = {"detectors": list(rule.get("detectors", DEFAULT_DETECTORS)),
              "agree_s": rule.get("agree_s", DEFAULT_AGREE_S), "min_votes": rule.get("min_votes", 2),
              "same_beat_s": rule.get("same_beat_s", SAME_BEAT_S), "max_gap_rr": rule.get("max_gap_rr", MAX_GAP_RR),
              "clean": "edge_runtime QualityGate defaults on 2 s windows every 1 s, accepted and "
                       "SQI >= QualityConfig.sqi_classic (0.8)"}
    return {
        "benchmark": "pseudo-labels",
        "rule": params,
        "records": rows,
        "datasets": {ds: _summary(rs) for ds, rs in by_ds.items()},
        "pooled": _summary(rows),
        "target_f1": 0.995,
        "seconds_total": round(time.perf_counter() - t0, 2),
    }


def markdown_report(res: dict) -> str:
    """Per data set and pooled: P/R/F1 at +-50 ms, F1 at +-25 ms, coverage, expert beats in the mask."""
    rule = res["rule"]
    lines = [
        "# Pseudo-label rule against expert labels\n",
        f"Rule: beats where >= {rule['min_votes']} of {', '.join(rule['detectors'])} agree within "
        f"{rule['agree_s'] * 1000:g} ms on clean stretches (runtime QualityGate, SQI >= 0.8); scored "
        f"inside the mask and the labels' own span only (BIDMC labels are ECG-derived). "
        f"Target F1 >= {res['target_f1']}. Coverage: share of samples in the mask.\n",
        "| set | records | hours | P 50 ms | R 50 ms | F1 50 ms | F1 25 ms | worst record F1 | coverage "
        "| expert beats in mask |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in list(res["datasets"].items()) + [("pooled", res["pooled"])]:
        a, b = s["scores"]["50ms"], s["scores"]["25ms"]
        lines.append(f"| {name} | {s['n_records']} | {s['hours']:.2f} | {a['precision']:.4f} | {a['recall']:.4f} "
                     f"| {a['f1']:.4f} | {b['f1']:.4f} | {s['f1_min_record']:.4f} | {s['coverage']:.3f} "
                     f"| {s['ref_in_mask']:.3f} |")
    lines += ["", "| record | F1 50 ms | F1 25 ms | FP | FN | coverage | expert in mask |", "|---|---|---|---|---|---|---|"]
    for r in res["records"]:
        a = r["scores"]["50ms"]
        lines.append(f"| {r['dataset']}/{r['record']} | {a['f1']:.4f} | {r['scores']['25ms']['f1']:.4f} | {a['fp']} "
                     f"| {a['fn']} | {r['coverage']:.3f} | {r['ref_in_mask']:.3f} |")
    if res.get("command"):
        lines += ["", f"Command: `{res['command']}` ({res.get('seconds_total', 0):.0f} s)"]
    return "\n".join(lines)
