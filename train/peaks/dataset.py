"""Training and validation windows for the peak detectors, from real and synthetic PPG.

Data: CapnoBase (Karlen et al., IEEE TBME 60(7):1946-1953, 2013; expert-labelled
pulse peaks) and BIDMC (Pimentel et al., IEEE TBME 64(8), 2017; PPG peaks derived from
the ECG R peaks), both resampled to 125 Hz. Only the ``train`` and ``val`` subjects of
the committed subject-wise split ``peaks`` are ever loaded here; the test subjects are
refused (:func:`load_part_records` checks disjointness with
:func:`ppg_edge.data.splits.assert_disjoint`).

Input: the shared device preprocessing :func:`ppg_edge.dsp.pipeline.peaks_preprocessing`
(causal 0.5-8 Hz band-pass, 2 s windows every 1 s, z-score per window). The variant's
input decides the channels: ``"ppg"`` is the PPG alone; ``"ppg+dwt2"`` / ``"ppg+dwt3"``
add the db4 detail of that one level as a second channel (``dwt_levels=(L,)``), as in
Georgieva-Tsaneva (2025), Table 3 (Type30 input ``(250, 2)``).

Labels: +-25 ms around each reference peak (the paper's "Training Procedure"), placed
where the peak is **in the filtered signal the model sees**. The causal band-pass delays
the pulse wave as a whole (about 37 samples of group delay at 1 Hz), but the sharp
systolic maximum is carried by the higher harmonics, where the delay is small: measured
on the training records, the nearest local maximum of the filtered PPG lies a few
samples after the reference peak. Measured on the 28 training subjects of split
``peaks`` (CapnoBase 13,959 peaks: median +3 samples, IQR 0..5, 5-95% -3..6; BIDMC 4,184
peaks: median +1, IQR -1..3), pooled median +2 samples (16 ms) at 125 Hz, against a
group delay of 37.3 samples at 1 Hz; the reference peaks sit on the raw PPG maximum
(offset 0..3 samples). The ``label_shift`` block of the dataset info records it per run. The shift differs by
record (validation record bidmc_38: mostly -5..-1 samples), so each reference peak is moved
to the largest filtered-PPG local maximum within ``LABEL_SEARCH_S`` (80 ms) of it; a
peak without one keeps the pooled median shift. The decoder then snaps its
detections to the filtered PPG maximum and
:func:`ppg_edge.edge_runtime.peaks_decode.to_raw_axis` moves those back by the measured
median shift and snaps them to the raw PPG maximum (the decoder spec's raw snap radius), so reported
positions lie on the raw PPG time axis.

Augmentation (one ``numpy.random.Generator`` drives all of it): each training record
also contributes a noisy copy, in which every ``NOISE_CHUNK_S`` chunk of the *raw*
record gets one of the noise models of :mod:`ppg_edge.synth` (gaussian, baseline,
motion, mains 50/60 Hz) at an SNR drawn uniformly from ``snr_db`` before filtering, as
the device would see it; and synthetic records (:func:`ppg_edge.synth.synth_ppg`, heart
rate 45-150 bpm) with the same noise give extra windows with exact peaks.

Sampling: a Type30 epoch costs roughly 2-5 ms per window on 2 cores, so training
windows are capped (``max_train_windows``, default 8000): the pool of clean real,
noisy real and synthetic windows is sampled without replacement in the proportions
``real_fraction`` (of which ``noisy_fraction`` noisy) and the rest synthetic, equally
from every training record. Validation windows are the clean windows of the val subjects
(capped by ``max_val_windows``, evenly spaced when capped).

Assembled arrays are cached as ``.npz`` under ``ppg_edge.config.cache_dir()/peaks_dataset``,
keyed by a hash of the settings, the split's sha256 and ``DATASET_VERSION``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppg_edge import config as _config
from ppg_edge.errors import ConfigError, DataError, SplitError

from .labels import DEFAULT_HALF_WIDTH_S, window_labels

log = logging.getLogger(__name__)

DATASET_VERSION = 3
DATASETS = ("capnobase", "bidmc")
NOISE_KINDS_TRAIN = ("gaussian", "baseline", "motion", "mains50", "mains60", "real")
#: Label value of a sample the loss must not use (pseudo-label disagreements, unclean stretches).
MASKED = -1.0
#: Sensor rates a noisy copy is sampled at before the device's resampler takes it to ``fs``.
SENSOR_RATES = (50.0, 100.0, 125.0)
NOISE_CHUNK_S = 20.0
LABEL_SEARCH_S = 0.08  # search radius for the filtered-signal maximum around each reference peak
SHIFT_MAX_S = 0.3  # the filtered maximum is looked for within [-0.1 s, +SHIFT_MAX_S] of a peak


def preprocessing_for(input_kind: str, fs: float = 125.0):
    """The shared device preprocessing for a variant's ``input`` (``ppg``, ``ppg+dwt2``, ``ppg+dwt3``)."""
    from ppg_edge.dsp.pipeline import peaks_preprocessing

    if input_kind == "ppg":
        return peaks_preprocessing(fs=fs)
    if input_kind in ("ppg+dwt2", "ppg+dwt3"):
        return peaks_preprocessing(fs=fs, dwt_levels=(int(input_kind[-1]),))
    raise ConfigError(f"unknown model input {input_kind!r}; valid: ppg, ppg+dwt2, ppg+dwt3")


@dataclass(frozen=True)
class DatasetSettings:
    """Everything that decides the assembled arrays (hashed for the cache key)."""

    input: str = "ppg+dwt3"
    fs: float = 125.0
    split: str = "peaks"
    datasets: tuple[str, ...] = DATASETS
    max_train_windows: int = 10000
    max_val_windows: int = 3000
    real_fraction: float = 0.8
    noisy_fraction: float = 0.5
    snr_db: tuple[float, float] = (0.0, 30.0)
    n_synth_records: int = 28
    synth_duration_s: float = 60.0
    half_width_s: float = DEFAULT_HALF_WIDTH_S
    seed: int = 0
    subjects: tuple[str, ...] | None = None  # restrict to these split keys (tests, tiny runs)
    extra: tuple[str, ...] = ("ecg", "pseudo")  # train.peaks.sources kinds; () for none
    extra_fraction: float = 0.2  # share of the training windows from the extra records
    noise_kinds: tuple[str, ...] = NOISE_KINDS_TRAIN
    sensor_rates: tuple[float, ...] = SENSOR_RATES
    noisy_val: bool = True  # val windows also from a noisy copy of each val record

    def __post_init__(self) -> None:
        preprocessing_for(self.input, self.fs)  # validates input
        if self.max_train_windows < 1 or self.max_val_windows < 1:
            raise ConfigError("max_train_windows and max_val_windows must be >= 1")
        for name in ("real_fraction", "noisy_fraction", "extra_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {v}")
        lo, hi = self.snr_db
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise ConfigError(f"snr_db must be a finite (low, high) pair, got {self.snr_db}")
        unknown = set(self.datasets) - set(DATASETS)
        if unknown:
            raise ConfigError(f"unknown peak data sets {sorted(unknown)}; valid: {list(DATASETS)}")
        if self.n_synth_records < 0 or self.synth_duration_s < 4:
            raise ConfigError("n_synth_records must be >= 0 and synth_duration_s >= 4")
        from ppg_edge.synth import NOISE_KINDS, REAL_NOISE

        from .sources import EXTRA_KINDS

        bad = set(self.extra) - set(EXTRA_KINDS)
        if bad:
            raise ConfigError(f"unknown extra record kinds {sorted(bad)}; valid: {list(EXTRA_KINDS)}")
        bad = set(self.noise_kinds) - {*NOISE_KINDS, REAL_NOISE}
        if bad or not self.noise_kinds:
            raise ConfigError(f"noise_kinds {list(self.noise_kinds)}: give some of "
                              f"{[*NOISE_KINDS, REAL_NOISE]}")
        if not self.sensor_rates or any(not (np.isfinite(r) and 0 < r <= self.fs) for r in self.sensor_rates):
            raise ConfigError(f"sensor_rates must be rates in (0, fs={self.fs:g}], got {self.sensor_rates}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["datasets"] = list(self.datasets)
        d["snr_db"] = list(self.snr_db)
        d["subjects"] = None if self.subjects is None else list(self.subjects)
        for k in ("extra", "noise_kinds", "sensor_rates"):
            d[k] = list(d[k])
        return d

    def cache_key(self, split_sha: str) -> str:
        blob = json.dumps({"v": DATASET_VERSION, "split_sha": split_sha, "chunk_s": NOISE_CHUNK_S,
                           "label_search_s": LABEL_SEARCH_S, "shift_max_s": SHIFT_MAX_S,
                           **self.to_dict()},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class PeakDataset:
    """Assembled arrays: inputs ``(n, window, channels)`` float32, labels ``(n, window)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- records
def split_parts(split_name: str = "peaks") -> dict[str, Any]:
    """The committed split document, checked (train/val/test disjoint)."""
    from ppg_edge.data.splits import assert_disjoint, load_split

    doc = load_split(split_name)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert_disjoint(doc[a], doc[b])
    return doc


def load_part_records(part: str, settings: DatasetSettings, root=None) -> list:
    """Records of the ``train`` or ``val`` subjects, resampled to ``settings.fs``.

    Raises ``SplitError`` for ``part="test"`` or if a requested subject is a test subject.
    """
    from ppg_edge import data as _data
    from ppg_edge.data.resample import resample_record
    from ppg_edge.data.splits import assert_disjoint

    if part not in ("train", "val"):
        raise SplitError(f"peak training reads only train/val subjects, not {part!r}")
    doc = split_parts(settings.split)
    wanted = set(doc[part])
    if settings.subjects is not None:
        assert_disjoint(settings.subjects, doc["test"])
        wanted &= set(settings.subjects)
    assert_disjoint(wanted, doc["test"])
    records = []
    for ds in settings.datasets:
        mod = _data.dataset_module(ds)
        folder = _config.data_root(root) / mod.FOLDER
        for rid in mod.list_records(folder):
            sub = mod.subject_of(rid) if hasattr(mod, "subject_of") else rid
            if f"{ds}/{sub}" not in wanted:
                continue
            rec = mod.load_record(folder, rid)
            key = f"{rec.dataset}/{rec.subject_id}"
            if key not in wanted:  # subject_of disagreed with the record itself
                continue
            if rec.peaks is None or rec.peaks.size == 0:
                raise DataError(f"{rec.key}: no reference peaks; cannot train a peak detector on it")
            records.append(resample_record(rec, settings.fs))
    got = {f"{r.dataset}/{r.subject_id}" for r in records}
    assert_disjoint(got, doc["test"])
    missing = sorted(wanted - got)
    if missing:
        log.warning("%d %s subject(s) of split %r not found in the data root: %s",
                    len(missing), part, settings.split, missing[:5])
    if not records:
        raise DataError(f"no {part} records of split {settings.split!r} found under the data root")
    return records


# ----------------------------------------------------------------------------- labels
def _interior_maxima(y: np.ndarray) -> np.ndarray:
    """Indices ``i`` with ``y[i-1] < y[i] >= y[i+1]`` (plateaus count once, at their start)."""
    if y.size < 3:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:])) + 1


def filtered_peak_offsets(filtered: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Offset (samples) from each reference peak to the nearest filtered-signal local maximum
    within ``[-0.1 s, +SHIFT_MAX_S]``; NaN where there is none."""
    y = np.asarray(filtered, dtype=np.float64)
    maxima = _interior_maxima(y)
    back, ahead = int(round(0.1 * fs)), int(round(SHIFT_MAX_S * fs))
    out = np.full(peaks.size, np.nan)
    for k, p in enumerate(np.asarray(peaks, dtype=np.int64)):
        lo, hi = np.searchsorted(maxima, p - back), np.searchsorted(maxima, p + ahead, side="right")
        cand = maxima[lo:hi]
        if cand.size:
            # the largest filtered maximum in the range: the systolic wave, not a ripple
            out[k] = cand[np.argmax(y[cand])] - p
    return out


def shift_peaks(filtered: np.ndarray, peaks: np.ndarray, fs: float, median_shift: int) -> np.ndarray:
    """Reference peaks moved onto the filtered signal.

    Each peak goes to the largest interior local maximum of ``filtered`` within
    ``LABEL_SEARCH_S`` of the reference peak itself (the shift differs per record and
    morphology: -5..+5 samples), or to ``peak + median_shift`` when there is none.
    Clipped to the record and de-duplicated.
    """
    y = np.asarray(filtered, dtype=np.float64)
    maxima = _interior_maxima(y)
    r = max(1, int(round(LABEL_SEARCH_S * fs)))
    out = []
    for p in np.asarray(peaks, dtype=np.int64):
        lo, hi = np.searchsorted(maxima, p - r), np.searchsorted(maxima, p + r, side="right")
        cand = maxima[lo:hi]
        q = int(cand[np.argmax(y[cand])]) if cand.size else int(p + median_shift)
        if 0 <= q < y.size:
            out.append(q)
    return np.unique(np.asarray(out, dtype=np.int64))


def measure_label_shift(records: Sequence, prep) -> dict[str, Any]:
    """Where the causal band-pass puts the systolic maxima, measured over ``records``.

    Returns the median offset in samples (filtered maximum minus reference peak), its
    quartiles, the share of peaks with a maximum in range, and the filter's group delay
    at 1 Hz for comparison.
    """
    offs = []
    for rec in records:
        offs.append(filtered_peak_offsets(prep.filter(rec.ppg), rec.peaks, rec.fs))
    allo = np.concatenate(offs) if offs else np.zeros(0)
    found = allo[np.isfinite(allo)]
    if found.size == 0:
        raise DataError("no filtered-signal maxima near any reference peak; cannot place labels")
    q1, med, q3 = np.percentile(found, [25, 50, 75])
    return {
        "median_samples": int(round(med)),
        "q1_samples": float(q1),
        "q3_samples": float(q3),
        "median_ms": float(med / prep.fs * 1000),
        "peaks": int(allo.size),
        "found_fraction": float(found.size / max(1, allo.size)),
        "group_delay_1hz_samples": float(prep.delay_samples(1.0)),
    }


def record_windows(ppg: np.ndarray, peaks: np.ndarray, prep, median_shift: int,
                   half_width_s: float = DEFAULT_HALF_WIDTH_S, clean_for_labels=None):
    """Model input, labels and window starts of one record.

    Labels come from the peaks shifted onto the filtered ``clean_for_labels`` signal
    (the clean record when ``ppg`` carries added noise; default ``ppg``).
    """
    x = prep.apply(ppg)
    starts = prep.window_starts(len(ppg))
    ref = ppg if clean_for_labels is None else clean_for_labels
    shifted = shift_peaks(prep.filter(ref), peaks, prep.fs, median_shift)
    y = window_labels(shifted, starts, prep.window, prep.fs, half_width_s)
    return x, y, starts


def noisy_copy(x: np.ndarray, fs: float, rng: np.random.Generator, snr_db=(0.0, 30.0),
               chunk_s: float = NOISE_CHUNK_S, kinds=NOISE_KINDS_TRAIN,
               bank=None) -> tuple[np.ndarray, list]:
    """``x`` with a different noise kind and SNR (uniform in ``snr_db``) in every chunk.

    ``bank``: the :class:`ppg_edge.noise_bank.RealNoise` for the ``real`` kind (without
    one, ``real`` is left out of ``kinds``). Returns the noisy signal and the list of
    ``(start, kind, snr_db)`` chunks.
    """
    from ppg_edge.synth import add_noise

    kinds = [k for k in kinds if bank is not None or k != "real"]
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    chunk = max(int(round(chunk_s * fs)), 1)
    used = []
    for s in range(0, x.size, chunk):
        seg = x[s:s + chunk]
        if seg.size < int(fs):  # a tail under 1 s joins the clean signal, noted
            used.append((s, "none", None))
            continue
        kind = str(rng.choice(kinds))
        snr = float(rng.uniform(*snr_db))
        try:
            out[s:s + chunk] = add_noise(seg, fs, kind, snr, rng, bank=bank)
        except DataError as exc:  # flat chunk (no band power): leave clean, record why
            log.debug("chunk at %d left clean: %s", s, exc)
            used.append((s, "none", None))
            continue
        used.append((s, kind, snr))
    return out, used


def through_rate(x: np.ndarray, fs: float, rate: float) -> np.ndarray:
    """``x`` (at ``fs``) as a sensor sampling at ``rate`` would deliver it to the model: down to
    ``rate`` with an anti-aliasing polyphase filter (the sensor's own averaging), then back to
    ``fs`` with the device's resampler (:func:`ppg_edge.edge_runtime.batch.to_model_rate`). Time
    positions are kept; the device resampler's latency shortens the end by a few samples."""
    from ppg_edge.data.resample import rational_factor, resample_signal
    from ppg_edge.edge_runtime.batch import to_model_rate

    up, down = rational_factor(fs, rate)
    if up == down:
        return np.asarray(x, dtype=np.float64)
    low = resample_signal(np.asarray(x, dtype=np.float64), up, down)
    return to_model_rate(low, rate, fs)[: len(x)]


def masked_windows(y: np.ndarray, mask: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """``y`` (``(n, window)`` labels) with ``MASKED`` where the per-sample ``mask`` is False."""
    idx = np.asarray(starts)[:, None] + np.arange(window)[None, :]
    out = np.array(y, dtype=np.float32)
    out[~mask[idx]] = MASKED
    return out


def _take(rng: np.random.Generator, n_have: int, n_want: int) -> np.ndarray:
    if n_want >= n_have:
        return np.arange(n_have)
    return np.sort(rng.choice(n_have, size=n_want, replace=False))


VAL_NOISE_SNR_DB = (0.0, 20.0)


def noisy_val_records(records: Sequence, settings: DatasetSettings, root=None) -> list:
    """A noisy copy of each val record, the same on every call for the same settings.

    Every 20 s chunk gets one of ``settings.noise_kinds`` at an SNR uniform in
    ``VAL_NOISE_SNR_DB`` (0-20 dB: the noise the model must meet, not the training's easy
    end), then the copy passes through a sensor rate drawn from ``settings.sensor_rates``. The
    ``real`` kind draws on the no-finger and bad-clip bank only (no residuals of training
    records). The clean signal through the same rate is in ``meta["clean_ppg"]`` (labels are
    placed on it). Early stopping and the threshold choice see these beside the clean records.
    """
    from dataclasses import replace

    bank = None
    if "real" in settings.noise_kinds:
        from ppg_edge.noise_bank import load_real_noise

        bank = load_real_noise(settings.fs, root)
    rng = np.random.default_rng([int(settings.seed), 1])
    out = []
    for rec in records:
        x, chunks = noisy_copy(rec.ppg, rec.fs, rng, VAL_NOISE_SNR_DB, kinds=settings.noise_kinds, bank=bank)
        rate = float(rng.choice(settings.sensor_rates))
        x, clean = through_rate(x, rec.fs, rate), through_rate(rec.ppg, rec.fs, rate)
        out.append(replace(rec, record_id=f"{rec.record_id}+noise", signals={"ppg": x},
                           rates={"ppg": rec.fs}, peaks=rec.peaks[rec.peaks < len(x)],
                           meta={**rec.meta, "clean_ppg": clean, "sensor_rate": rate,
                                 "noise_chunks": chunks}))
    return out


# ----------------------------------------------------------------------------- assembly
def assemble(settings: DatasetSettings, root=None, use_cache: bool = True,
             progress: bool = True) -> PeakDataset:
    """Build (or read from the cache) the training and validation arrays for ``settings``."""
    from tqdm.auto import tqdm

    from ppg_edge.synth import synth_ppg

    doc = split_parts(settings.split)
    key = settings.cache_key(doc["sha256"])
    cache = _config.cache_dir() / "peaks_dataset" / f"{key}.npz"
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                info = json.loads(str(z["info"]))
                ds = PeakDataset(z["x_train"], z["y_train"], z["x_val"], z["y_val"], info)
            log.info("dataset from cache %s", cache)
            return ds
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable dataset cache %s (%s)", cache, exc)

    rng = np.random.default_rng(settings.seed)
    prep = preprocessing_for(settings.input, settings.fs)
    train_recs = load_part_records("train", settings, root)
    val_recs = load_part_records("val", settings, root)
    from ppg_edge.data.splits import assert_disjoint

    assert_disjoint({f"{r.dataset}/{r.subject_id}" for r in train_recs},
                    {f"{r.dataset}/{r.subject_id}" for r in val_recs})
    shift = measure_label_shift(train_recs, prep)
    med = shift["median_samples"]
    log.info("label shift: filtered maxima lie %d samples (%.1f ms) after the reference peaks "
             "(IQR %.1f..%.1f; group delay at 1 Hz %.1f samples)", med, shift["median_ms"],
             shift["q1_samples"], shift["q3_samples"], shift["group_delay_1hz_samples"])

    bank = None
    if "real" in settings.noise_kinds:
        from ppg_edge.noise_bank import load_real_noise

        bank = load_real_noise(settings.fs, root, kinds=("no_finger", "bad_clip", "residual"),
                               residual_records=train_recs)
    extras, extra_summary = [], {}
    if settings.extra:
        from .sources import extra_records

        extras, extra_summary = extra_records(settings.extra, settings.fs, root,
                                              test_keys=doc["test"], progress=progress)

    # how many windows of each kind
    n_extra = int(round(settings.max_train_windows * settings.extra_fraction)) if extras else 0
    n_base = settings.max_train_windows - n_extra
    n_real = int(round(n_base * settings.real_fraction))
    n_noisy = int(round(n_real * settings.noisy_fraction))
    n_clean = n_real - n_noisy
    n_synth = n_base - n_real if settings.n_synth_records else 0
    per_rec_clean = int(np.ceil(n_clean / len(train_recs)))
    per_rec_noisy = int(np.ceil(n_noisy / len(train_recs)))

    xs, ys, sources = [], [], []
    kinds = ("clean", "noisy", "synthetic", "extra_clean", "extra_noisy")
    available = {k: 0 for k in kinds}
    rates_used: dict[str, int] = {}

    def keep(kind: str, x: np.ndarray, y: np.ndarray, k: int) -> None:
        """Count the windows a source offers and keep ``k`` of them, drawn without replacement."""
        available[kind] += len(x)
        idx = _take(rng, len(x), k)
        xs.append(x[idx])
        ys.append(y[idx])
        sources.extend([kind] * idx.size)

    def noisy(ppg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A noisy copy as a sensor at a random rate delivers it, and the clean signal alike."""
        x, _ = noisy_copy(ppg, settings.fs, rng, settings.snr_db, kinds=settings.noise_kinds, bank=bank)
        rate = float(rng.choice(settings.sensor_rates))
        rates_used[f"{rate:g}"] = rates_used.get(f"{rate:g}", 0) + 1
        return through_rate(x, settings.fs, rate), through_rate(ppg, settings.fs, rate)

    for rec in tqdm(train_recs, desc="train records", unit="rec", disable=not progress):
        x, y, _ = record_windows(rec.ppg, rec.peaks, prep, med, settings.half_width_s)
        keep("clean", x, y, per_rec_clean)
        if per_rec_noisy:
            xn_sig, clean_sig = noisy(rec.ppg)
            xn, yn, _ = record_windows(xn_sig, rec.peaks[rec.peaks < len(xn_sig)], prep, med,
                                       settings.half_width_s, clean_for_labels=clean_sig)
            keep("noisy", xn, yn, per_rec_noisy)
    if n_synth:
        per_synth = int(np.ceil(n_synth / settings.n_synth_records))
        for _ in tqdm(range(settings.n_synth_records), desc="synthetic records", unit="rec",
                      disable=not progress):
            s = synth_ppg(settings.synth_duration_s, settings.fs, rng,
                          hr_bpm=float(rng.uniform(40, 180)))
            xn_sig, clean_sig = noisy(s.signal)
            x, y, _ = record_windows(xn_sig, s.peaks[s.peaks < len(xn_sig)], prep, med,
                                     settings.half_width_s, clean_for_labels=clean_sig)
            keep("synthetic", x, y, per_synth)
    if n_extra:
        pools: dict[str, tuple[list, list]] = {"extra_clean": ([], []), "extra_noisy": ([], [])}
        for rec in extras:
            copies = [("extra_clean", rec.ppg, rec.ppg)]
            if settings.noisy_fraction > 0:
                copies.append(("extra_noisy", *noisy(rec.ppg)))
            for kind, sig, clean_sig in copies:
                n = len(sig)
                if n < prep.window:
                    continue
                x, y, starts = record_windows(sig, rec.peaks[rec.peaks < n], prep, med,
                                              settings.half_width_s, clean_for_labels=clean_sig)
                y = masked_windows(y, rec.mask[:n], starts, prep.window)
                ok = (y != MASKED).mean(axis=1) >= 0.5
                pools[kind][0].append(x[ok])
                pools[kind][1].append(y[ok])
        n_extra_noisy = int(round(n_extra * settings.noisy_fraction))
        for kind, k in (("extra_clean", n_extra - n_extra_noisy), ("extra_noisy", n_extra_noisy)):
            if pools[kind][0]:
                keep(kind, np.concatenate(pools[kind][0]), np.concatenate(pools[kind][1]), k)
    x_train = np.concatenate(xs).astype(np.float32)
    y_train = np.concatenate(ys).astype(np.float32)
    src = np.asarray(sources)
    if len(x_train) > settings.max_train_windows:
        keep = _take(rng, len(x_train), settings.max_train_windows)
        x_train, y_train, src = x_train[keep], y_train[keep], src[keep]
    order = rng.permutation(len(x_train))
    x_train, y_train, src = x_train[order], y_train[order], src[order]

    val_sets = [val_recs] + ([noisy_val_records(val_recs, settings, root)] if settings.noisy_val else [])
    xv, yv = [], []
    for recs in val_sets:
        for rec in recs:
            x, y, _ = record_windows(rec.ppg, rec.peaks, prep, med, settings.half_width_s,
                                     clean_for_labels=rec.meta.get("clean_ppg"))
            xv.append(x)
            yv.append(y)
    x_val, y_val = np.concatenate(xv), np.concatenate(yv)
    if len(x_val) > settings.max_val_windows:
        keep = np.unique(np.linspace(0, len(x_val) - 1, settings.max_val_windows).round().astype(int))
        x_val, y_val = x_val[keep], y_val[keep]

    info = {
        "settings": settings.to_dict(),
        "split": settings.split,
        "split_sha256": doc["sha256"],
        "train_subjects": sorted({f"{r.dataset}/{r.subject_id}" for r in train_recs}),
        "val_subjects": sorted({f"{r.dataset}/{r.subject_id}" for r in val_recs}),
        "label_shift": shift,
        "preprocessing": prep.to_dict(),
        "windows": {
            "train": int(len(x_train)),
            "val": int(len(x_val)),
            "train_by_source": {k: int(np.sum(src == k)) for k in kinds},
            "available": available,
            "sensor_rates_used": rates_used,
        },
        "extra_records": extra_summary,
        "masked_fraction_train": float(np.mean(y_train == MASKED)),
        "real_noise": bank.describe() if bank is not None else None,
        "positive_fraction_train": float(np.mean(y_train[y_train != MASKED])),
        "cache_key": key,
        "dataset_version": DATASET_VERSION,
    }
    ds = PeakDataset(x_train, y_train.astype(np.float32), x_val.astype(np.float32),
                     y_val.astype(np.float32), info)
    if use_cache:
        from ppg_edge.cache import atomic_path

        with atomic_path(cache) as tmp:   # a private file, renamed: concurrent builders never mix
            np.savez_compressed(tmp, x_train=ds.x_train, y_train=ds.y_train, x_val=ds.x_val,
                                y_val=ds.y_val, info=np.array(json.dumps(info)))
        log.info("cached dataset at %s", cache)
    return ds
