"""Loaders on the real data (``data_root`` fixture): exact counts, rates, labels, quirks."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge import data
from ppg_edge.errors import ConfigError, DataNotFoundError


@pytest.fixture(scope="module")
def ppgbp(data_root):
    return data.load("ppg-bp", data_root)


@pytest.fixture(scope="module")
def capno(data_root):
    return data.load("capnobase", data_root)


def test_registry_names():
    assert data.DATASETS == ("ppg-bp", "capnobase", "bidmc", "wfdb-samples", "welltory",
                             "but-ppg", "max30102-raw", "biosppy")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="valid names: ppg-bp, capnobase"):
        data.list_records("no-such-set")


def test_bidmc_registered_lazily():
    try:
        mod = data.dataset_module("bidmc")
    except ConfigError as exc:
        assert "ppg_edge.data.bidmc" in str(exc)
    else:  # merged: the module follows the interface
        for attr in ("NAME", "FOLDER", "CITATION", "SOURCES", "list_records", "load_record"):
            assert hasattr(mod, attr)


def test_ppgbp_counts_and_rate(ppgbp, data_root):
    assert len(ppgbp) == 567
    assert len({r.subject_id for r in ppgbp}) == 189
    assert {r.fs for r in ppgbp} == {1000.0}
    assert data.list_subjects("ppg-bp", data_root)[:2] == ["2", "3"]
    assert len(data.list_subjects("ppg-bp", data_root)) == 189
    for r in ppgbp:
        assert r.record_id.startswith(r.subject_id + "_")


def test_ppgbp_lengths_231_whole(ppgbp):
    lengths = {r.record_id: r.ppg.size for r in ppgbp}
    assert lengths["231_1"] == 4200 and lengths["231_2"] == 4200
    others = {n for k, n in lengths.items() if not k.startswith("231_")}
    assert others == {2100}


def test_ppgbp_labels(ppgbp):
    classes = set()
    for r in ppgbp:
        assert 70 <= r.labels["sbp"] <= 220 and 40 <= r.labels["dbp"] <= 130
        assert r.labels["sbp"] > r.labels["dbp"]
        assert r.labels["sex"] in ("F", "M")
        assert isinstance(r.labels["diabetes"], bool)
        assert np.isfinite(r.labels["skewness_sqi"])  # skewness: any sign, heavy tails
        classes.add(r.labels["ht_class"])
    assert classes == {"normal", "prehypertension", "stage_1_hypertension", "stage_2_hypertension"}
    # one cuff reading per subject: all segments of a subject share the label
    by_subject = {}
    for r in ppgbp:
        by_subject.setdefault(r.subject_id, set()).add((r.labels["sbp"], r.labels["dbp"]))
    assert all(len(v) == 1 for v in by_subject.values())


def test_ppgbp_info_left_out(data_root):
    info = data.info("ppg-bp", data_root)
    assert info["records"] == 567 and info["subjects"] == 189
    assert info["sheet_subjects"] == 219
    assert info["subjects_left_out"] == 30 == len(info["subjects_left_out_ids"])
    assert info["bp_records"] == 567
    assert info["duration_s"] == pytest.approx((565 * 2100 + 2 * 4200) / 1000)


def test_capnobase_counts(capno):
    assert len(capno) == 32
    assert sum(r.peaks.size for r in capno) == 20232
    assert {r.fs for r in capno} == {300.0}
    assert all(r.subject_id == r.record_id for r in capno)
    assert all(r.ppg.size == 144001 for r in capno)


def test_capnobase_peaks_at_local_max_after_shift(capno):
    def frac(shift):
        hit = tot = 0
        for r in capno:
            p = r.peaks + shift
            p = p[(p > 0) & (p < r.ppg.size - 1)]
            x = r.ppg
            hit += int(np.sum((x[p] >= x[p - 1]) & (x[p] >= x[p + 1])))
            tot += p.size
        return hit / tot

    shifted = frac(0)  # loader already subtracted 1
    assert shifted > 0.8
    assert shifted > frac(1) + 0.3  # the unshifted MATLAB indices fit far worse


def test_wfdb_samples(data_root):
    recs = {r.record_id: r for r in data.load("wfdb-samples", data_root)}
    assert sorted(recs) == ["041s", "a103l", "mixedsignals", "v102s"]
    assert recs["a103l"].rates["ppg"] == 250 and recs["a103l"].rates["ecg"] == 250
    assert recs["v102s"].ppg.size == 75000
    m = recs["mixedsignals"]
    assert m.rates["ppg"] == pytest.approx(125, rel=1e-3)
    assert m.rates["abp"] == pytest.approx(125, rel=1e-3)
    assert m.rates["ecg"] == pytest.approx(250, rel=1e-3)
    assert m.signals["ecg"].size == 2 * m.ppg.size
    assert m.meta["invalid_spans"]["ecg"] == [[0, 1024]]
    assert m.meta["invalid_spans"]["abp"] == [[0, 192]]
    s = recs["041s"]
    assert s.rates["ppg"] == 125 and s.rates["abp"] == 125
    assert s.ppg.size == 2000  # two 8-s segments of the multi-segment record
    for r in recs.values():
        assert all(np.isfinite(x).all() for x in r.signals.values())
    assert sum(b - a for a, b in recs["v102s"].meta["invalid_spans"]["ppg"]) == 17


def test_welltory(data_root):
    recs = data.load("welltory", data_root)
    assert len(recs) == 21
    for r in recs:
        assert 29 < r.fs < 31
        t = r.meta["frame_times_ms"]
        assert r.ppg.size == int(np.floor((t[-1] - t[0]) * r.fs / 1000 + 1e-9)) + 1
        assert 68 <= r.duration_s <= 113
        assert r.labels["rr_ms"].size > 50 and 40 < r.labels["hr"] < 130
        assert r.meta["rr_aligned"] is False and "unknown" in r.meta["subject_mapping"]
        assert r.subject_id == r.record_id
        np.testing.assert_array_equal(r.ppg, r.signals[r.meta["ppg_channel"]])
    by_id = {r.record_id: r for r in recs}
    assert by_id["subject_20"].meta["ppg_channel"] == "g"  # red clipped at 255
    assert by_id["subject_01"].meta["ppg_channel"] == "r"


def test_but_ppg(data_root):
    recs = data.load("but-ppg", data_root)
    assert len(recs) == 48
    assert len({r.subject_id for r in recs}) == 12
    assert {r.fs for r in recs} == {30.0} and {r.ppg.size for r in recs} == {300}
    q = [r.labels["quality"] for r in recs]
    assert q.count("good") == 35 and q.count("bad") == 13
    assert all(62 <= r.labels["hr"] <= 122 for r in recs)


def test_max30102_raw(data_root):
    recs = {r.record_id: r for r in data.load("max30102-raw", data_root)}
    assert len(recs) == 11
    for rid in ("vrano714_rpi", "szymanel_rpi", "sergiomagdalenop_rpi", "aromring"):
        assert recs[rid].fs == 25.0
    assert recs["sergiomagdalenop_rpi"].labels["contact"] == "none"
    assert recs["szymanel_rpi"].labels["contact"] == "intermittent"
    assert recs["vrano714_rpi"].labels["contact"] == "on"
    for r in recs.values():
        np.testing.assert_array_equal(r.ppg, r.signals["ir"])
    run1 = recs["jdesbonnet_run1"]
    assert run1.ppg.size == 937 and run1.fs == pytest.approx(137.4, abs=0.5)
    s0, s1 = recs["jdesbonnet_left_hand_100sps_s0"], recs["jdesbonnet_left_hand_100sps_s1"]
    assert s0.ppg.size + s1.ppg.size == 4000
    assert s0.duration_s == pytest.approx(s1.duration_s, abs=0.1)  # same session, two sensors
    assert s0.meta["header_sampling_rate"] == 100


def test_max30102_two_sensors_same_pulse_rate(data_root):
    """Measured per-sensor rates make the two simultaneous sensors agree on the pulse rate."""
    def bpm(r):
        x = r.ppg - r.ppg.mean()
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
        f = np.fft.rfftfreq(x.size, 1 / r.fs)
        band = (f > 0.6) & (f < 3.5)
        return 60 * f[band][np.argmax(spec[band])]

    for stem in ("left_hand_100sps", "left_hand_200sps", "thumb_toe_100sps"):
        a = data.load_record("max30102-raw", f"jdesbonnet_{stem}_s0", data_root)
        b = data.load_record("max30102-raw", f"jdesbonnet_{stem}_s1", data_root)
        assert bpm(a) == pytest.approx(bpm(b), abs=4)


def test_biosppy(data_root):
    (r,) = data.load("biosppy", data_root)
    assert r.fs == 1000.0 and r.ppg.size == 20000


def test_info_all_but_bidmc(data_root):
    expect = {"capnobase": (32, 32), "wfdb-samples": (4, 4), "welltory": (21, 21),
              "but-ppg": (48, 12), "max30102-raw": (11, 5), "biosppy": (1, 1)}
    for name, (n_rec, n_sub) in expect.items():
        info = data.info(name, data_root)
        assert (info["records"], info["subjects"]) == (n_rec, n_sub), name
        assert info["subjects_left_out"] == 0
    assert data.info("capnobase", data_root)["peaks"] == {"records": 32, "total": 20232}


def test_missing_record(data_root):
    with pytest.raises(DataNotFoundError, match="999_1"):
        data.load_record("ppg-bp", "999_1", data_root)
