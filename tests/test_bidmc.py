"""BIDMC loader, ECG-derived reference peaks and their check against the monitor."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.data import bidmc
from ppg_edge.errors import DataError, DataNotFoundError, PPGEdgeError

FS = 125.0
N = int(30 * FS)


def _beats(rng, n_samples, fs=FS, hr_bpm=75.0, jitter=0.03):
    """Beat onsets (s) with a little R-R variability."""
    t, out = 0.5, []
    while t < n_samples / fs - 1.0:
        out.append(t)
        t += 60.0 / hr_bpm * (1 + jitter * rng.standard_normal())
    return np.asarray(out)


def _synthetic(rng, lag_s=0.35, missing=(), n=N, fs=FS):
    """ECG with sharp R waves at the beats; PPG with a smooth pulse peaking
    ``lag_s`` after each R wave (except the beats in ``missing``)."""
    t = np.arange(n) / fs
    beats = _beats(rng, n, fs)
    ecg = 0.02 * rng.standard_normal(n)
    ppg = np.zeros(n)
    for i, b in enumerate(beats):
        ecg += 1.0 * np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 0.2 * np.exp(-0.5 * ((t - b - 0.2) / 0.04) ** 2)
        if i not in missing:
            ppg += np.exp(-0.5 * ((t - b - lag_s) / 0.09) ** 2)
    ppg += 0.002 * rng.standard_normal(n)
    true_peaks = np.array([int(round((b + lag_s) * fs)) for i, b in enumerate(beats) if i not in missing])
    return ppg, ecg, true_peaks


# --------------------------------------------------------------------------- files
SIG_HEADER = "Time [s], RESP, II, V, AVR, PLETH"


def _write_record(folder, rid="bidmc_90", n=N, header=SIG_HEADER, rows=None, numerics=True, rng=None):
    rng = rng or np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    if rows is None:
        ppg, ecg, _ = _synthetic(rng, n=n)
        cols = {"RESP": np.zeros(n), "II": ecg, "V": np.zeros(n), "AVR": np.zeros(n), "PLETH": ppg}
        names = [h.strip() for h in header.split(",")][1:]
        rows = [
            ",".join([f"{i / FS:.3f}"] + [f"{cols.get(c, np.zeros(n))[i]:.5f}" for c in names])
            for i in range(n)
        ]
    (folder / f"{rid}_Signals.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    if numerics:
        secs = n // int(FS) + 1
        lines = ["Time [s], HR, PULSE, RESP, SpO2"] + [f"{s},75,75,16,97" for s in range(secs)]
        (folder / f"{rid}_Numerics.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_crafted_record_loads_with_columns_by_name(tmp_path, rng):
    folder = _write_record(tmp_path / "bidmc_csv", rng=rng)
    (tmp_path / "bidmc_csv" / "bidmc_91_Numerics.csv").write_text("Time [s], HR, PULSE, RESP, SpO2\n0,1,2,3,4\n")
    assert bidmc.list_records(tmp_path) == ["bidmc_90"]
    assert bidmc.numerics_only_records(tmp_path) == ["bidmc_91"]
    rec = bidmc.load_record(tmp_path, "bidmc_90")
    assert rec.dataset == "bidmc" and rec.subject_id == rec.record_id == "bidmc_90"
    assert rec.fs == 125.0 and rec.rates["ecg"] == 125.0
    assert len(rec.ppg) == N and rec.meta["peaks_source"] == "ecg-derived"
    # PLETH came from the last column, II from the second: the PPG is the smooth pulse train
    assert rec.ppg.max() > 0.9 and rec.signals["ecg"].max() > 0.9
    assert np.all(rec.labels["pulse_1hz"] == 75)
    assert rec.peaks.size > 30
    # also works when the folder itself holds the files
    assert bidmc.list_records(folder) == ["bidmc_90"]


@pytest.mark.parametrize(
    "mutate, exc, words",
    [
        (lambda rows: rows, None, None),
        (lambda rows: rows[:5] + [rows[5] + ",1.0"] + rows[6:], DataError, "line 7 has 7 fields"),
        (lambda rows: rows[:5] + ["0.04,0.1,abc,0,0,0.3"] + rows[6:], DataError, "unparsable"),
        (lambda rows: rows[:9] + ["0.07,0.1,0.2,0,0,NaN"] + rows[10:], DataError, "'PLETH' has 1 non-finite"),
        (lambda rows: rows[:9] + ["0.07,0.1,inf,0,0,0.2"] + rows[10:], DataError, "'II' has 1 non-finite"),
        (lambda rows: rows[:3] + ["0.02,,0.2,0,0,0.2"] + rows[4:], DataError, "unparsable"),
    ],
)
def test_bad_signal_rows(tmp_path, rng, mutate, exc, words):
    ppg, ecg, _ = _synthetic(rng, n=N)
    rows = [f"{i / FS:.3f},0,{ecg[i]:.5f},0,0,{ppg[i]:.5f}" for i in range(N)]
    _write_record(tmp_path, rows=mutate(rows))
    if exc is None:
        assert bidmc.load_record(tmp_path, "bidmc_90").peaks.size > 30
        return
    with pytest.raises(exc, match=words) as info:
        bidmc.load_record(tmp_path, "bidmc_90")
    assert "bidmc_90_Signals.csv" in str(info.value)


def test_missing_columns_and_files(tmp_path):
    _write_record(tmp_path, header="Time [s], RESP, II, V, AVR, PLET")
    with pytest.raises(DataError, match="no 'PLETH' column"):
        bidmc.load_record(tmp_path, "bidmc_90")
    _write_record(tmp_path, header="Time [s], RESP, I, V, AVR, PLETH")
    with pytest.raises(DataError, match="no 'II' column"):
        bidmc.load_record(tmp_path, "bidmc_90")
    with pytest.raises(DataNotFoundError, match="bidmc_07_Signals.csv"):
        bidmc.load_record(tmp_path, "bidmc_07")
    _write_record(tmp_path / "b", numerics=False)
    with pytest.raises(DataNotFoundError, match="numerics file .*bidmc_90_Numerics.csv"):
        bidmc.load_record(tmp_path / "b", "bidmc_90")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        bidmc.list_records(tmp_path / "nowhere")
    with pytest.raises(PPGEdgeError, match="not a BIDMC record id"):
        bidmc.load_record(tmp_path, "../etc")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bidmc_90_Signals.csv").write_text(SIG_HEADER + "\n")
    with pytest.raises(DataError, match="no data rows"):
        bidmc.load_record(tmp_path / "c", "bidmc_90")


def test_numerics_nan_kept_inf_rejected(tmp_path, rng):
    _write_record(tmp_path, rng=rng)
    path = tmp_path / "bidmc_90_Numerics.csv"
    lines = path.read_text().splitlines()
    lines[3] = "2,75,NaN,16,NaN"
    path.write_text("\n".join(lines) + "\n")
    rec = bidmc.load_record(tmp_path, "bidmc_90")
    assert np.isnan(rec.labels["pulse_1hz"][2]) and rec.meta["numerics_nan"]["pulse_1hz"] == 1
    lines[3] = "2,75,inf,16,97"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="'PULSE' has infinite"):
        bidmc.load_record(tmp_path, "bidmc_90")


# --------------------------------------------------------------------------- derivation
@pytest.mark.parametrize("lag_s", [0.25, 0.4, 0.7])
def test_derived_peaks_match_known_pulses(rng, lag_s):
    ppg, ecg, truth = _synthetic(rng, lag_s=lag_s)
    peaks, info = bidmc.derive_ppg_peaks(ppg, ecg, FS)
    assert abs(info["lag_ms"] - 1000 * lag_s) <= 24
    assert peaks.size == truth.size and info["n_dropped"] == 0
    assert np.max(np.abs(peaks - truth)) <= 1


def test_inverted_ecg_and_missing_pulses_are_counted(rng):
    ppg, ecg, truth = _synthetic(rng, lag_s=0.3, missing=(5, 12, 20))
    peaks, info = bidmc.derive_ppg_peaks(ppg, -ecg, FS)
    assert info["ecg_inverted"] is True
    assert info["dropped"]["no_peak"] == 3
    assert peaks.size == truth.size and np.max(np.abs(peaks - truth)) <= 1


def _with_premature(rng, weak_amp, lag_s=0.4, fs=FS, n=N):
    """Regular 75-bpm beats with premature beats (coupling 0.45 s, compensatory
    pause) whose pulse is only ``weak_amp`` of a normal one -- the pattern of
    the ventricular ectopics in BIDMC record 26. Returns ppg, ecg, all true
    peak indices and those of the premature beats."""
    t = np.arange(n) / fs
    beats, premature, b = [], [], 0.5
    while b < n / fs - 1.2:
        beats.append(b)
        if len(beats) % 6 == 0:  # every 6th beat is followed by an early one
            premature.append(len(beats))
            beats.append(b + 0.45)
            b += 1.6
        else:
            b += 0.8
    ecg = 0.02 * rng.standard_normal(n)
    ppg = 0.002 * rng.standard_normal(n)
    truth = []
    for i, b in enumerate(beats):
        ecg += np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 0.2 * np.exp(-0.5 * ((t - b - 0.2) / 0.04) ** 2)
        amp = weak_amp if i in premature else 1.0
        ppg += amp * np.exp(-0.5 * ((t - b - lag_s) / 0.09) ** 2)
        truth.append(int(round((b + lag_s) * fs)))
    truth = np.asarray(truth)
    return ppg, ecg, truth, truth[premature]


def test_weak_premature_pulse_is_found(rng):
    # 3 % of a normal pulse: below the "clear" prominence (5 %), well above the noise
    ppg, ecg, truth, weak = _with_premature(rng, weak_amp=0.03)
    peaks, info = bidmc.derive_ppg_peaks(ppg, ecg, FS)
    assert info["n_r_peaks"] == truth.size and weak.size >= 3
    assert info["n_weak"] == weak.size and info["n_dropped"] == 0
    assert peaks.size == truth.size
    normal = ~np.isin(truth, weak)
    assert np.max(np.abs(peaks[normal] - truth[normal])) <= 1
    # a weak pulse's top is flat against the noise: placed within 24 ms
    assert np.array_equal(peaks[~normal], info["weak_peaks"])
    assert np.max(np.abs(info["weak_peaks"] - weak)) <= 3


def test_absent_premature_pulse_is_still_dropped(rng):
    # no pulse at all after the premature beats: nothing to accept, only noise there
    ppg, ecg, truth, weak = _with_premature(rng, weak_amp=0.0)
    peaks, info = bidmc.derive_ppg_peaks(ppg, ecg, FS)
    assert info["n_weak"] == 0 and info["dropped"]["no_peak"] >= weak.size
    assert peaks.size == truth.size - weak.size
    assert np.min(np.abs(weak[:, None] - peaks[None, :])) > 0.2 * FS  # nothing taken near them


def test_derivation_bad_input(rng):
    ppg, ecg, _ = _synthetic(rng)
    bad = ppg.copy()
    bad[100] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        bidmc.derive_ppg_peaks(bad, ecg, FS)
    with pytest.raises(DataError, match="equal length"):
        bidmc.derive_ppg_peaks(ppg[:-1], ecg, FS)
    with pytest.raises(DataError, match="too short"):
        bidmc.derive_ppg_peaks(ppg[:200], ecg[:200], FS)
    flat, info = bidmc.derive_ppg_peaks(np.zeros_like(ppg), 0.01 * rng.standard_normal(ppg.size), FS)
    assert flat.size == 0 and info["n_dropped"] >= 0


def test_sliding_rate_counts_beats():
    peaks = np.arange(0, 60 * 125, 100)  # 75 bpm at 125 Hz
    rate = bidmc.sliding_rate(peaks, 125.0, np.array([2.0, 10.0, 30.0, 59.0]), 10.0, 60.0)
    assert np.isnan(rate[0]) and np.isnan(rate[3])
    assert rate[1] == pytest.approx(75.0) and rate[2] == pytest.approx(75.0)
    # one missed beat inside the window lowers the count-based rate
    gappy = np.delete(peaks, 37)  # the beat at 29.6 s
    assert bidmc.sliding_rate(gappy, 125.0, np.array([30.0]), 10.0, 60.0)[0] < 70


def test_monitor_rate_averages_the_past_only():
    fs = 125.0
    slow = np.arange(0, 30 * 125, 125)  # 60 bpm for 30 s ...
    fast = np.arange(30 * 125, 60 * 125, 62.5).astype(int)  # ... then 120 bpm
    peaks = np.concatenate([slow, fast])
    t = np.array([9.0, 10.0, 29.5, 31.0, 45.0, 60.0, 61.0])
    rate = bidmc.monitor_rate(peaks, fs, t, 10.0, 60.0)
    assert np.isnan(rate[0]) and np.isnan(rate[6])  # window before the start / after the end
    assert rate[1] == pytest.approx(60.0) and rate[2] == pytest.approx(60.0)
    # one second into the fast stretch the 10-s average has barely moved (a centred
    # window would already be half-way); 15 s in it is the new rate
    assert 60.0 < rate[3] < 70.0
    assert rate[4] == pytest.approx(120.0) and rate[5] == pytest.approx(120.0, abs=0.5)
    # a missed beat inside the last 10 s lowers the rate
    gappy = np.delete(peaks, np.flatnonzero(peaks == 40 * 125))
    assert bidmc.monitor_rate(gappy, fs, np.array([45.0]), 10.0, 60.0)[0] < 115
    with pytest.raises(DataError, match="averaging time"):
        bidmc.monitor_rate(peaks, fs, t, 0.0)


# --------------------------------------------------------------------------- real data
#: Records where the 2-bpm bound is known not to hold (strict: they fail the
#: test if they start to pass, so the note gets revisited).
KNOWN_GAPS = {
    "bidmc_26": "ventricular ectopics (mostly couplets): 11 weak pulses are now found, but 49 "
                "ectopic beats have no pulse in the PPG at all (pulse deficit), so the PPG beat "
                "rate misses PULSE by 4.66 bpm (ECG R-rate: 1.91); the monitor's PULSE evidently "
                "does not count beats (Philips FAST-SpO2 works in the frequency domain)",
    "bidmc_28": "irregular rhythm: even the ECG R-peak rate misses the bound (2.13 bpm with the "
                "monitor's trailing 10-s average; PPG peaks 2.22); PULSE cannot be matched closer",
}


@pytest.fixture(scope="module")
def real_records(data_root):
    folder = data_root / bidmc.FOLDER
    return {rid: bidmc.load_record(folder, rid) for rid in bidmc.list_records(folder)}


def test_real_folder_contents(data_root):
    folder = data_root / bidmc.FOLDER
    ids = bidmc.list_records(folder)
    assert len(ids) == 8 and ids[0] == "bidmc_01"
    assert len(bidmc.numerics_only_records(folder)) >= 30
    assert not set(ids) & set(bidmc.numerics_only_records(folder))


@pytest.mark.parametrize("rid", ["bidmc_01", "bidmc_14", "bidmc_26", "bidmc_28",
                                 "bidmc_33", "bidmc_35", "bidmc_37", "bidmc_38"])
def test_real_rate_agreement_within_2bpm(real_records, rid, request):
    if rid in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_GAPS[rid], strict=True))
    rec = real_records[rid]
    row = bidmc.rate_agreement(rec)
    assert row["n_compared"] > 400
    assert row["n_beats"] > 0.9 * row["n_r_peaks"]
    assert row["median_abs_diff_bpm"] <= 2.0, row


def test_real_peaks_sit_on_raw_ppg_local_maxima(real_records):
    for rec in real_records.values():
        p = rec.peaks
        assert p.size > 600
        assert np.all(rec.ppg[p] >= rec.ppg[p - 1]) and np.all(rec.ppg[p] >= rec.ppg[p + 1]), rec.record_id
        # and they are systolic maxima, not small bumps: above the PPG's median over +-1 s
        half = int(rec.fs)
        local = np.array([np.median(rec.ppg[max(0, k - half): k + half]) for k in p])
        assert np.mean(rec.ppg[p] > local) > 0.97, rec.record_id
        assert rec.meta["peaks_source"] == "ecg-derived"
        weak = rec.meta["weak_peaks"]
        assert np.isin(weak, p).all() and weak.size == rec.meta["peaks_derivation"]["n_weak"] < 0.05 * p.size
        assert rec.meta["peaks_derivation"]["n_dropped"] == rec.meta["peaks_derivation"]["n_r_peaks"] - p.size


def test_real_derivation_is_deterministic(real_records):
    rec = real_records["bidmc_01"]
    again, _ = bidmc.derive_ppg_peaks(rec.ppg, rec.signals["ecg"], rec.fs)
    assert np.array_equal(again, rec.peaks)
