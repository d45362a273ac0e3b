"""Training data beyond the expert labels: real noise, sensor rates, masks, pseudo-labelled records."""
from __future__ import annotations

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, DataError
from ppg_edge.synth import add_noise, band_power, synth_ppg
from ppg_edge.train.peaks import dataset as D
from ppg_edge.train.peaks import sources as S


@pytest.fixture(scope="module")
def bank(data_root):
    from ppg_edge.noise_bank import load_real_noise

    return load_real_noise(125.0, data_root)


def test_real_noise_bank_reads_no_finger_and_bad_clips(bank):
    d = bank.describe()
    assert d["by_kind"]["no_finger"] >= 1 and d["by_kind"]["bad_clip"] >= 5
    assert d["by_kind"]["residual"] == 0  # residuals only of records the caller passes
    assert all(s.startswith(("no_finger:max30102-raw/", "bad_clip:but-ppg/")) for s in bank.sources)
    for seg in bank.segments:
        assert abs(seg.mean()) < 1e-9 and abs(np.sqrt(np.mean(seg ** 2)) - 1) < 1e-9
    a = bank.make(3000, np.random.default_rng(1))
    b = bank.make(3000, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3000,) and np.isfinite(a).all() and a.std() > 0.3


def test_real_noise_pieces_are_cross_faded():
    from ppg_edge.noise_bank import RealNoise

    t = np.arange(2000) / 100.0
    b = RealNoise(100.0, [np.sin(2 * np.pi * 0.5 * t)], ["test"])
    x = b.make(20000, np.random.default_rng(3))
    # a sine piece joined to another without a fade would jump by up to 2 in one sample
    assert x.size == 20000 and np.max(np.abs(np.diff(x))) < 0.2
    with pytest.raises(DataError, match="empty"):
        RealNoise(100.0, [], [])


def test_real_noise_at_an_snr_and_its_errors(bank, rng):
    s = synth_ppg(30.0, 125.0, rng)
    for snr in (0.0, 10.0):
        y = add_noise(s.signal, 125.0, "real", snr, rng, bank=bank)
        noise = y - s.signal
        got = 10 * np.log10(band_power(s.signal, 125.0) / np.mean(noise ** 2))
        assert got == pytest.approx(snr, abs=1e-6)
    with pytest.raises(ConfigError, match="needs a bank"):
        add_noise(s.signal, 125.0, "real", 5.0, rng)
    with pytest.raises(ConfigError, match="bank is at 125 Hz"):
        add_noise(s.signal[:3000], 100.0, "real", 5.0, rng, bank=bank)


def test_residual_noise_comes_from_the_records_passed(data_root):
    from ppg_edge import data
    from ppg_edge.noise_bank import load_real_noise

    rec = data.load_record("wfdb-samples", "041s", root=data_root)
    b = load_real_noise(125.0, data_root, kinds=(), residual_records=[rec])
    assert b.sources == ["residual:wfdb-samples/041s"]
    with pytest.raises(DataError, match="empty"):
        load_real_noise(125.0, data_root, kinds=())
    with pytest.raises(ConfigError, match="unknown real-noise"):
        load_real_noise(125.0, data_root, kinds=("thunder",))


def test_through_rate_keeps_the_peaks_where_they_are(rng):
    s = synth_ppg(30.0, 125.0, rng, hr_bpm=75)
    for rate in (50.0, 100.0):
        y = D.through_rate(s.signal, 125.0, rate)
        assert len(s.signal) - 40 <= len(y) <= len(s.signal)
        inside = s.peaks[(s.peaks > 5) & (s.peaks < len(y) - 5)]
        local = [p - 5 + int(np.argmax(y[p - 5:p + 6])) for p in inside]
        assert np.median(np.abs(np.asarray(local) - inside)) <= 1
    np.testing.assert_array_equal(D.through_rate(s.signal, 125.0, 125.0), s.signal)


def test_masked_samples_do_not_move_the_loss():
    pytest.importorskip("tensorflow")
    from ppg_edge.train.peaks.losses import total_loss

    rng = np.random.default_rng(0)
    y = np.zeros((2, 100), np.float32)
    y[:, [20, 21, 22, 70, 71, 72]] = 1.0
    q = rng.uniform(0.01, 0.3, (2, 100)).astype(np.float32)
    masked = y.copy()
    masked[:, 40:60] = D.MASKED
    q2 = q.copy()
    q2[:, 40:60] = 0.99  # anything on masked samples
    a = np.asarray(total_loss(masked, q))
    b = np.asarray(total_loss(masked, q2))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # unmasked, the same probabilities cost more: the mask really removes them
    assert np.all(np.asarray(total_loss(y, q2)) > np.asarray(total_loss(y, q)))


def test_masked_windows_marks_only_masked_samples():
    y = np.zeros((2, 10), np.float32)
    y[0, 3] = 1.0
    mask = np.ones(20, bool)
    mask[12:15] = False
    out = D.masked_windows(y, mask, np.array([0, 8]), 10)
    assert (out[0] == y[0]).all()
    assert list(np.flatnonzero(out[1] == D.MASKED)) == [4, 5, 6]


@pytest.fixture
def small_tables(monkeypatch):
    monkeypatch.setattr(S, "PSEUDO_LABELLED", {"ppg-bp": ("2_1", "2_2", "3_1"), "welltory": ("subject_01",)})
    monkeypatch.setattr(S, "ECG_LABELLED", {"wfdb-samples": ("a103l",)})


def test_extra_records_are_labelled_and_masked(data_root, small_tables):
    recs, summary = S.extra_records(fs=125.0, root=data_root, progress=False)
    kinds = {r.key: r.kind for r in recs}
    assert kinds.get("wfdb-samples/a103l") == "ecg"
    assert any(k.startswith("ppg-bp/") for k in kinds) and "welltory/subject_01" in kinds
    for r in recs:
        assert r.fs == 125.0 and r.mask.shape == r.ppg.shape and r.peaks.size
        assert r.mask[r.peaks].all()  # every kept beat lies where the loss may look
        assert 0 < r.coverage <= 1
    a103l = next(r for r in recs if r.key == "wfdb-samples/a103l")
    assert a103l.coverage < 0.9  # the alarm record's pulseless stretches are masked out
    assert summary["ecg:wfdb-samples"]["used"] == 1
    with pytest.raises(DataError, match="test subject"):
        S.extra_records(("pseudo",), 125.0, data_root, test_keys=("ppg-bp/2",), progress=False)


def test_test_only_records_are_never_read(data_root, monkeypatch):
    monkeypatch.setattr(S, "PSEUDO_LABELLED", {"wfdb-samples": None, "max30102-raw": None})
    monkeypatch.setattr(S, "ECG_LABELLED", {})
    recs, _ = S.extra_records(("pseudo",), 125.0, data_root, progress=False)
    keys = {r.key for r in recs}
    assert "wfdb-samples/mixedsignals" not in keys
    assert not any(k.startswith("max30102-raw/") for k in keys)


def test_assemble_mixes_in_masked_extra_windows(data_root, tmp_path, monkeypatch, small_tables):
    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path))
    doc = D.split_parts("peaks")
    train_key = next(k for k in doc["train"] if k.startswith("capnobase/"))
    val_key = next(k for k in doc["val"] if k.startswith("capnobase/"))
    settings = D.DatasetSettings(subjects=(train_key, val_key), max_train_windows=300,
                                 max_val_windows=2000, n_synth_records=1, synth_duration_s=30.0,
                                 extra_fraction=0.2)
    ds = D.assemble(settings, root=data_root, progress=False)
    by = ds.info["windows"]["train_by_source"]
    assert by["extra_clean"] + by["extra_noisy"] == 60
    assert set(ds.info["windows"]["sensor_rates_used"]) <= {"50", "100", "125"}
    assert (ds.y_train == D.MASKED).any() and 0 < ds.info["masked_fraction_train"] < 0.5
    assert not (ds.y_val == D.MASKED).any()
    assert ds.info["real_noise"]["by_kind"]["residual"] == 1  # the one training record
    # val: the clean windows and as many from the noisy copy
    assert len(ds.x_val) > 1.8 * len(D.record_windows(
        D.load_part_records("val", settings, data_root)[0].ppg, np.zeros(0, np.int64),
        D.preprocessing_for(settings.input, settings.fs), 0)[0])


def test_noisy_val_records_are_reproducible(data_root):
    settings = D.DatasetSettings()
    doc = D.split_parts("peaks")
    val = D.load_part_records("val", D.DatasetSettings(subjects=(doc["val"][0],)), data_root)
    a = D.noisy_val_records(val, settings, data_root)
    b = D.noisy_val_records(val, settings, data_root)
    np.testing.assert_array_equal(a[0].ppg, b[0].ppg)
    assert a[0].record_id.endswith("+noise") and a[0].meta["sensor_rate"] in settings.sensor_rates
    assert not np.array_equal(a[0].ppg, val[0].ppg[: len(a[0].ppg)])


@pytest.mark.parametrize("kwargs, match", [
    ({"extra": ("crowd",)}, "unknown extra"),
    ({"noise_kinds": ("thunder",)}, "noise_kinds"),
    ({"sensor_rates": (200.0,)}, "sensor_rates"),
    ({"extra_fraction": 1.5}, "extra_fraction"),
])
def test_new_settings_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        D.DatasetSettings(**kwargs)


def test_pseudo_label_on_a_short_record_lets_msptdfast_abstain(rng):
    from ppg_edge.evaluate.pseudo_labels import pseudo_label

    s = synth_ppg(3.0, 125.0, rng, hr_bpm=70)
    pl = pseudo_label(s.signal, 125.0)
    assert pl.counts["abstained"] == ["nk-msptdfastv2"]
    with pytest.raises(DataError, match="must vote"):
        pseudo_label(s.signal, 125.0, detectors=("nk-msptdfastv2", "nk-elgendi"), min_votes=2)


def test_harness_real_noise_condition(data_root, rng):
    from ppg_edge.data.record import Record
    from ppg_edge.evaluate.harness import evaluate_peaks, parse_condition

    assert parse_condition("real:5").kind == "real"
    s = synth_ppg(40.0, 125.0, rng, hr_bpm=70)
    rec = Record("synth", "r1", "r1", {"ppg": s.signal}, {"ppg": 125.0}, peaks=s.peaks)
    res = evaluate_peaks([rec], ["dwt-baseline"], ["clean", "real:10"], progress=False,
                         data_root=data_root)
    doc = res.to_dict()
    assert "real:10" in doc["conditions"]


def test_msptdfast_refuses_a_record_shorter_than_its_window(rng):
    from ppg_edge.evaluate.detectors import get_detector

    s = synth_ppg(3.0, 125.0, rng, hr_bpm=70)
    with pytest.raises(DataError, match="shorter than its 6 s window"):
        get_detector("nk-msptdfastv2")(s.signal, 125.0)


def test_harness_takes_every_synthetic_kind_and_real_noise():
    from ppg_edge import synth
    from ppg_edge.evaluate.harness import parse_condition

    for kind in (*synth.NOISE_KINDS, synth.REAL_NOISE):
        assert parse_condition(f"{kind}:5").kind == kind
    with pytest.raises(ConfigError, match="unknown noise kind"):
        parse_condition("thunder:5")
