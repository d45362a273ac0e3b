"""Training records beyond the expert-labelled split: ECG-labelled and pseudo-labelled PPG.

Which records, and why
----------------------
``ECG_LABELLED``
    WFDB sample records with ECG and PLETH (``a103l``, ``v102s``): beats derived from the
    ECG with the record's own pulse-arrival lag (:func:`ppg_edge.data.bidmc.derive_ppg_peaks`,
    the BIDMC rule). These are ICU alarm records (asystole, ventricular tachycardia): the
    ECG-derived beats disagree with the PPG wherever the heart beats without a pulse, so the
    labels are kept only on the stretches the runtime's quality gate calls clean
    (:func:`ppg_edge.evaluate.pseudo_labels.clean_mask`) and outside the spans the record
    marks invalid; the rest of the record is masked out of the loss.
``PSEUDO_LABELLED``
    PPG without beat labels: PPG-BP (1000 Hz finger PPG segments), BUT PPG clips its
    annotators called good (smartphone camera, 30 Hz), Welltory camera PPG, and the WFDB
    PLETH of ``041s``. Beats where two of the classic detectors agree, on clean stretches,
    disagreements masked (:func:`ppg_edge.evaluate.pseudo_labels.pseudo_label`).
``TEST_ONLY`` (never read here)
    The real MAX30102 recordings (the device's real-signal checks score on them) and
    ``wfdb-samples/mixedsignals`` (the BP calibration test record): a pseudo-labelled
    subject must not sit in any test set. The bad BUT PPG clips and the no-finger MAX30102
    recording are noise sources (:mod:`ppg_edge.noise_bank`), not training PPG.

None of these data sets holds a subject of the peak split's test part (CapnoBase and
BIDMC); :func:`extra_records` checks it. The BP models do not use the peak network (their
pulses come from :func:`ppg_edge.dsp.pulses.segment_pulses`), so PPG-BP waveforms seen here,
without their BP labels, do not reach a BP test fold.

Each record is resampled to the training rate first; labels and masks are made at that rate.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from ppg_edge import config as _config
from ppg_edge.errors import DataError

log = logging.getLogger(__name__)

ECG_LABELLED = {"wfdb-samples": ("a103l", "v102s")}
PSEUDO_LABELLED = {"ppg-bp": None, "but-ppg": None, "welltory": None, "wfdb-samples": ("041s",)}
TEST_ONLY = {"max30102-raw": None, "wfdb-samples": ("mixedsignals",)}
EXTRA_KINDS = ("ecg", "pseudo")


@dataclass
class ExtraRecord:
    """A record at the training rate with beats and the mask of samples a loss may use."""

    key: str
    kind: str  # "ecg" or "pseudo"
    fs: float
    ppg: np.ndarray
    peaks: np.ndarray
    mask: np.ndarray

    @property
    def coverage(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def _keep(rec) -> bool:
    if rec.dataset == "but-ppg":  # bad clips are a noise source
        return rec.labels.get("quality") == "good"
    return True


def _invalid_mask(rec, n_at_fs: int, fs: float) -> np.ndarray:
    """True where the source record marks any channel invalid (filled spans), at ``fs``."""
    bad = np.zeros(n_at_fs, bool)
    for ch, spans in (rec.meta.get("invalid_spans") or {}).items():
        r = rec.rates.get(ch, rec.fs)
        for a, b in spans:
            bad[int(np.floor(a * fs / r)):int(np.ceil(b * fs / r)) + 1] = True
    return bad


def _ecg_record(rec, fs: float) -> ExtraRecord | None:
    from ppg_edge.data.bidmc import derive_ppg_peaks
    from ppg_edge.data.resample import resample_record
    from ppg_edge.evaluate.pseudo_labels import clean_mask

    if "ecg" not in rec.signals or rec.rates.get("ecg") != rec.rates.get("ppg"):
        log.warning("%s: no ECG at the PPG rate; not an ECG-labelled record", rec.key)
        return None
    peaks, info = derive_ppg_peaks(rec.ppg, rec.signals["ecg"], rec.fs)
    rec = resample_record(replace(rec, peaks=np.asarray(peaks, dtype=np.int64)), fs)
    clean, _ = clean_mask(rec.ppg, fs)
    mask = clean & ~_invalid_mask(rec, rec.ppg.size, fs)
    keep = rec.peaks[mask[rec.peaks]] if rec.peaks.size else rec.peaks
    log.info("%s: %d ECG-derived beats (lag %s ms), %d on clean valid stretches (%.0f%% of samples)",
             rec.key, peaks.size, info.get("lag_ms"), keep.size, 100 * mask.mean())
    return ExtraRecord(rec.key, "ecg", fs, rec.ppg, keep, mask)


def _pseudo_record(rec, fs: float) -> ExtraRecord | None:
    from ppg_edge.data.resample import resample_record
    from ppg_edge.dsp import peaks_preprocessing
    from ppg_edge.evaluate.pseudo_labels import pseudo_label

    rec = resample_record(rec, fs)
    if rec.ppg.size < peaks_preprocessing(fs).window or not np.isfinite(rec.ppg).all():
        return None
    try:
        pl = pseudo_label(rec.ppg, fs)
    except DataError as exc:
        log.debug("%s: no pseudo-labels (%s)", rec.key, exc)
        return None
    if pl.peaks.size == 0:
        return None
    return ExtraRecord(rec.key, "pseudo", fs, rec.ppg, pl.peaks, pl.mask)


def extra_records(kinds=EXTRA_KINDS, fs: float = 125.0, root=None, test_keys=(),
                  progress: bool = True) -> tuple[list[ExtraRecord], dict]:
    """The ECG-labelled and pseudo-labelled records at ``fs`` and a summary per data set.

    ``test_keys``: ``dataset/subject`` keys of the peak test part; a record among them is a
    ``DataError`` (none is, by construction: the test part is CapnoBase and BIDMC).
    """
    from tqdm.auto import tqdm

    from ppg_edge import data as _data

    plan = []
    for kind, table in (("ecg", ECG_LABELLED), ("pseudo", PSEUDO_LABELLED)):
        if kind not in kinds:
            continue
        for ds, only in table.items():
            mod = _data.dataset_module(ds)
            folder = _config.data_root(root) / mod.FOLDER
            try:
                ids = mod.list_records(folder)
            except DataError as exc:
                log.warning("extra training data: %s left out (%s)", ds, exc)
                continue
            banned = TEST_ONLY.get(ds, ())
            for rid in ids:
                if (only is not None and rid not in only) or (banned is None or rid in banned):
                    continue
                plan.append((kind, ds, mod, folder, rid))
    test = set(test_keys)
    out: list[ExtraRecord] = []
    summary: dict[str, dict] = {}
    for kind, ds, mod, folder, rid in tqdm(plan, desc="extra training records", unit="rec",
                                           disable=not progress):
        rec = mod.load_record(folder, rid)
        if f"{rec.dataset}/{rec.subject_id}" in test:
            raise DataError(f"{rec.key} is a test subject of the peak split; not a training record")
        if not _keep(rec):
            continue
        got = _ecg_record(rec, fs) if kind == "ecg" else _pseudo_record(rec, fs)
        s = summary.setdefault(f"{kind}:{ds}", {"records": 0, "used": 0, "beats": 0,
                                                "seconds": 0.0, "masked_in_s": 0.0})
        s["records"] += 1
        if got is None or got.peaks.size == 0:
            continue
        out.append(got)
        s["used"] += 1
        s["beats"] += int(got.peaks.size)
        s["seconds"] += got.ppg.size / fs
        s["masked_in_s"] += float(got.mask.sum()) / fs
    for s in summary.values():
        s["seconds"] = round(s["seconds"], 1)
        s["masked_in_s"] = round(s["masked_in_s"], 1)
    return out, summary
