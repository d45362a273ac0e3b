"""Peak-detector training: dataset assembly, the ``train peaks`` command, committed models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, DataError, SplitError
from ppg_edge.synth import synth_ppg
from ppg_edge.train.peaks import dataset as D
from ppg_edge.train.peaks.train import resolve_variants, score_detections

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models" / "peaks"


def _split():
    return D.split_parts("peaks")


def _label_runs(y: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate(([0], (y > 0.5).astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


# ----------------------------------------------------------------------------- no data needed
def test_labels_sit_on_filtered_maxima_of_synthetic_ppg(rng):
    prep = D.preprocessing_for("ppg+dwt3")
    s = synth_ppg(30.0, 125.0, rng, hr_bpm=75)
    filt = prep.filter(s.signal)
    shifted = D.shift_peaks(filt, s.peaks, 125.0, median_shift=0)
    # every label peak is a local maximum of the filtered signal, close to the true peak
    inner = shifted[(shifted > 0) & (shifted < filt.size - 1)]
    assert np.all(filt[inner] >= filt[inner - 1]) and np.all(filt[inner] >= filt[inner + 1])
    offs = D.filtered_peak_offsets(filt, s.peaks, 125.0)
    assert np.nanmax(np.abs(offs)) <= 6  # the causal band-pass moves the systolic max little
    x, y, starts = D.record_windows(s.signal, s.peaks, prep, 0)
    assert x.shape == (len(starts), 250, 2) and y.shape == (len(starts), 250)
    assert x.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    # each full label run is 2*3+1 samples wide (+-25 ms at 125 Hz)
    widths = {b - a for row in y for a, b in _label_runs(row) if a > 0 and b < 250}
    assert widths == {7}


def test_noisy_copy_is_seeded_and_changes_every_chunk():
    x = synth_ppg(60.0, 125.0, np.random.default_rng(1)).signal
    a, used_a = D.noisy_copy(x, 125.0, np.random.default_rng(5), (0.0, 30.0))
    b, used_b = D.noisy_copy(x, 125.0, np.random.default_rng(5), (0.0, 30.0))
    np.testing.assert_array_equal(a, b)
    assert used_a == used_b and len(used_a) == 3
    assert all(kind in D.NOISE_KINDS_TRAIN for _, kind, _ in used_a)
    assert not np.allclose(a, x)
    c, _ = D.noisy_copy(x, 125.0, np.random.default_rng(6), (0.0, 30.0))
    assert not np.allclose(a, c)


def test_noisy_copy_records_flat_chunks_instead_of_crashing():
    x = np.zeros(125 * 25)  # no band power: SNR undefined
    out, used = D.noisy_copy(x, 125.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)
    assert [k for _, k, _ in used] == ["none", "none"]


def test_label_shift_needs_maxima_near_peaks():
    class Flat:
        ppg = np.ones(1000)
        peaks = np.array([100, 300])
        fs = 125.0

    with pytest.raises(DataError, match="no filtered-signal maxima"):
        D.measure_label_shift([Flat()], D.preprocessing_for("ppg"))


def test_val_streams_skip_short_records_and_fail_when_none_left(rng):
    from ppg_edge.train.peaks.train import val_streams

    class FakeModel:
        def predict(self, x, batch_size=None, verbose=0):
            return np.full(x.shape[:2], 0.1, dtype=np.float32)

    class Rec:
        def __init__(self, n):
            s = synth_ppg(n / 125.0, 125.0, rng)
            self.ppg, self.peaks, self.fs, self.key = s.signal, s.peaks, 125.0, f"synth/{n}"

    prep = D.preprocessing_for("ppg")
    streams = val_streams([Rec(100), Rec(1000)], prep, FakeModel())
    assert [s["key"] for s in streams] == ["synth/1000"]
    assert streams[0]["probs"].shape == (streams[0]["n"],) and streams[0]["n"] == 1000
    assert np.all(streams[0]["ref"] < 1000)
    with pytest.raises(DataError, match="long enough"):
        val_streams([Rec(100)], prep, FakeModel())


def test_metrics_helpers_count_and_measure_distance():
    ref = np.array([100, 200, 300, 400])
    det = np.array([102, 195, 330, 500])
    m = score_detections([ref], [det], 125.0)  # 50 ms = 6 samples, 25 ms = 3
    assert m["tp_fp_fn_50ms"] == [2, 2, 2]
    assert m["tp_fp_fn_25ms"] == [1, 3, 3]
    assert m["f1_50ms"] == pytest.approx(0.5)
    assert m["ade_ms"] == pytest.approx(3.5 / 125 * 1000)
    assert np.isnan(score_detections([ref], [np.array([], dtype=int)], 125.0)["ade_ms"])


@pytest.mark.parametrize("kwargs, match", [
    ({"input": "ppg+dwt9"}, "unknown model input"),
    ({"max_train_windows": 0}, "max_train_windows"),
    ({"real_fraction": 1.5}, "real_fraction"),
    ({"snr_db": (30.0, 0.0)}, "snr_db"),
    ({"datasets": ("ppg-bp",)}, "unknown peak data sets"),
])
def test_dataset_settings_reject_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        D.DatasetSettings(**kwargs)


def test_variant_lists_and_bad_names():
    assert resolve_variants("all")[0] == "Type1" and len(resolve_variants("all")) == 30
    assert resolve_variants("Type24, Type30") == ["Type24", "Type30"]
    with pytest.raises(ConfigError, match="Type31"):
        resolve_variants("Type30,Type31")
    with pytest.raises(ConfigError):
        resolve_variants(" , ")


def test_cache_key_depends_on_settings_and_split():
    a = D.DatasetSettings()
    assert a.cache_key("x") == D.DatasetSettings().cache_key("x")
    assert a.cache_key("x") != D.DatasetSettings(seed=1).cache_key("x")
    assert a.cache_key("x") != a.cache_key("y")


# ----------------------------------------------------------------------------- real data
def test_test_subjects_are_refused(data_root):
    doc = _split()
    with pytest.raises(SplitError):
        D.load_part_records("test", D.DatasetSettings(), data_root)
    bad = D.DatasetSettings(subjects=(doc["train"][0], doc["test"][0]))
    with pytest.raises(SplitError, match="both training and test"):
        D.load_part_records("train", bad, data_root)


def test_assemble_two_real_records(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path))
    doc = _split()
    train_key = next(k for k in doc["train"] if k.startswith("capnobase/"))
    val_key = next(k for k in doc["val"] if k.startswith("bidmc/"))
    settings = D.DatasetSettings(subjects=(train_key, val_key), max_train_windows=200,
                                 max_val_windows=60, n_synth_records=1, synth_duration_s=60.0,
                                 extra=(), noisy_val=False)
    ds = D.assemble(settings, root=data_root, progress=False)
    assert ds.x_train.shape == (200, 250, 2) and ds.y_train.shape == (200, 250)
    assert not (ds.y_train == D.MASKED).any()  # only pseudo-labelled records carry a mask
    assert ds.x_val.shape == (60, 250, 2) and ds.y_val.shape == (60, 250)
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_val).all()
    by = ds.info["windows"]["train_by_source"]
    assert by["clean"] == 80 and by["noisy"] == 80 and by["synthetic"] == 40
    # no test subject, only the requested ones, on the right side
    assert ds.info["train_subjects"] == [train_key] and ds.info["val_subjects"] == [val_key]
    used = set(ds.info["train_subjects"]) | set(ds.info["val_subjects"])
    assert not used & set(doc["test"])
    assert ds.info["split_sha256"] == doc["sha256"]
    # labels align with the peaks in the model's input: each label run is centred on a
    # local maximum of the (filtered, normalised) PPG channel the model sees
    shift = ds.info["label_shift"]
    assert -3 <= shift["median_samples"] <= 6 and shift["found_fraction"] > 0.95
    offsets = []
    for x, y in zip(ds.x_val, ds.y_val):
        for a, b in _label_runs(y):
            if a == 0 or b == 250:
                continue
            c = (a + b - 1) // 2
            lo, hi = max(0, c - 5), min(250, c + 6)
            offsets.append(lo + int(np.argmax(x[lo:hi, 0])) - c)
    assert len(offsets) > 60
    assert np.mean(np.abs(offsets) <= 1) > 0.9
    # the cache returns the same arrays; a corrupt cache file is rebuilt, not trusted
    again = D.assemble(settings, root=data_root, progress=False)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    (cached,) = list((tmp_path / "peaks_dataset").glob("*.npz"))
    cached.write_bytes(b"not an npz")
    rebuilt = D.assemble(settings, root=data_root, progress=False)
    np.testing.assert_array_equal(rebuilt.y_train, ds.y_train)


def test_record_without_reference_peaks_is_an_error(data_root, monkeypatch):
    from ppg_edge.data import capnobase

    real = capnobase.load_record

    def no_peaks(folder, rid):
        rec = real(folder, rid)
        rec.peaks = None
        return rec

    monkeypatch.setattr(capnobase, "load_record", no_peaks)
    doc = _split()
    key = next(k for k in doc["train"] if k.startswith("capnobase/"))
    with pytest.raises(DataError, match="no reference peaks"):
        D.load_part_records("train", D.DatasetSettings(subjects=(key,)), data_root)


# ----------------------------------------------------------------------------- TensorFlow
@pytest.mark.tf
def test_tiny_cli_run_end_to_end(data_root, tmp_path, monkeypatch, capsys):
    from ppg_edge.cli import main

    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tiny"
    rc = main(["-q", "train", "peaks", "--variant", "Type30", "--tiny", "--out", str(out),
               "--data-root", str(data_root)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Type30 (tiny)" in text and "threshold" in text
    report = json.loads((out / "report.json").read_text())
    meta = json.loads((out / "Type30.json").read_text())
    assert (out / "Type30.weights.h5").stat().st_size > 0
    assert report["tiny"] and report["epochs_run"] == 1 and len(report["history"]["loss"]) == 1
    assert report["data"]["split"] == "peaks"
    assert set(report["val"]) == {"clean", "gaussian_10dB", "gaussian_5dB"}
    assert not set(report["data"]["val_subjects"]) & set(_split()["test"])
    assert meta["threshold"] == report["threshold"] and 0 < meta["threshold"] < 1
    assert meta["config"]["sizes"] == [4, 8, 4]
    card = (out / "MODEL_CARD.md").read_text()
    assert "tiny smoke run" in card and meta["split_sha256"] in card
    assert f"{report['threshold']:.2f}" in card


@pytest.mark.tf
@pytest.mark.slow
def test_sweep_as_ray_tune_trials(data_root, tmp_path, monkeypatch, capsys):
    """Two tiny variants as Ray Tune trials on a local Ray (one CPU each): both reports land
    in OUT/<variant> and the CLI lists them."""
    pytest.importorskip("ray")
    from ppg_edge.cli import main

    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    out = tmp_path / "sweep"
    rc = main(["-q", "train", "sweep", "--variants", "Type16,Type28", "--tiny", "--ray",
               "--cpus-per-trial", "1", "--out", str(out), "--data-root", str(data_root)])
    assert rc == 0
    text = capsys.readouterr().out
    for name in ("Type16", "Type28"):
        report = json.loads((out / name / "report.json").read_text())
        assert report["variant"] == name and report["tiny"] and name in text
    assert (out / "ray" / "peaks-sweep").is_dir()  # Ray Tune's own experiment folder


@pytest.mark.tf
def test_cli_rejects_bad_arguments(capsys):
    from ppg_edge.cli import main

    assert main(["train", "peaks", "--variant", "Type99", "--tiny"]) == 1
    assert "Type99" in capsys.readouterr().err
    assert main(["train", "peaks", "--epochs", "0"]) == 1
    assert "epochs must be >= 1" in capsys.readouterr().err
    assert main(["train", "sweep", "--variants", "Type1", "--estimate-from", "/nonexistent.json"]) == 1
    assert "not a training report" in capsys.readouterr().err
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        assert main(["train", "sweep", "--variants", "Type1", "--ray"]) == 1
        assert "Ray Tune" in capsys.readouterr().err


def _committed():
    return sorted(p.parent.name for p in MODELS.glob("*/report.json"))


def test_type30_reference_model_is_committed():
    assert "Type30" in _committed()
    for name in _committed():
        d = MODELS / name
        for f in (f"{name}.weights.h5", f"{name}.json", "report.json", "MODEL_CARD.md"):
            assert (d / f).is_file(), f"{d / f} missing"
        assert (d / f"{name}.weights.h5").stat().st_size < 2_000_000


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("name", _committed())
def test_committed_model_reproduces_its_validation_threshold(name, data_root):
    from ppg_edge.train.peaks.fit import load_peak_model
    from ppg_edge.train.peaks.train import choose_val_threshold, val_streams

    meta = json.loads((MODELS / name / f"{name}.json").read_text())
    report = json.loads((MODELS / name / "report.json").read_text())
    model, cfg = load_peak_model(MODELS / name / name)
    # the training's own settings (a model trained before noisy val copies existed has none)
    st = {k: tuple(v) if isinstance(v, list) else v for k, v in report["data"]["settings"].items()}
    st.setdefault("noisy_val", False)
    settings = D.DatasetSettings(**st)
    assert settings.input == cfg.input and settings.split == meta["split"]
    assert meta["split_sha256"] == _split()["sha256"]
    prep = D.preprocessing_for(cfg.input, cfg.fs)
    assert prep.to_dict() == meta["preprocessing"]
    recs = D.load_part_records("val", settings, data_root)
    streams = val_streams(recs, prep, model)
    if settings.noisy_val:
        streams += val_streams(D.noisy_val_records(recs, settings, data_root), prep, model)
    threshold, f1 = choose_val_threshold(streams, prep.fs)
    # a later study on the val subjects may have replaced it (threshold_source says how)
    assert threshold == pytest.approx(meta.get("threshold_training", meta["threshold"]))
    assert f1 == pytest.approx(meta["threshold_val_f1_50ms"], abs=1e-4)
    if "threshold_training" in meta:
        from ppg_edge.train.peaks.detector import THRESHOLD_CANDIDATES

        assert meta["threshold"] in THRESHOLD_CANDIDATES and "val subjects" in meta["threshold_source"]
