"""Committed peak models as harness detectors, split selection, the F1-vs-SNR plot."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from evaluate_helpers import local_max_detector, make_record, white_noise

import ppg_edge.data
from ppg_edge.cli import main
from ppg_edge.errors import ConfigError, DataError, ModelError, PPGEdgeError
from ppg_edge.evaluate import selection
from ppg_edge.evaluate.detectors import PEAK_MODELS_DIR, Detector, get_detector, register_detector, unregister_detector
from ppg_edge.evaluate.harness import evaluate_peaks
from ppg_edge.evaluate.plot import f1_curves, plot_f1_vs_snr
from ppg_edge.metrics.peaks import peak_scores

TYPE30 = PEAK_MODELS_DIR / "Type30"


def _synth(fs: float, seconds: float = 40.0, seed: int = 3):
    from ppg_edge.synth import synth_ppg

    s = synth_ppg(seconds, fs, np.random.default_rng(seed), hr_bpm=72.0)
    return np.asarray(s.signal, dtype=float), np.asarray(s.peaks, dtype=np.int64)


# ----------------------------------------------------------------------------- model detector
@pytest.fixture(scope="module")
def type30():
    pytest.importorskip("tf_keras")
    return get_detector("Type30")


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("fs", [125.0, 300.0, 64.0])
def test_committed_model_finds_known_peaks_at_any_rate(type30, fs):
    x, peaks = _synth(fs)
    found = type30.detect(x, fs)
    s = peak_scores(peaks, found, fs, 0.05)
    assert s["f1"] >= 0.97, s
    assert s["ade_ms"] <= 20.0, s
    assert found.max() < x.size


@pytest.mark.tf
def test_model_detector_covers_the_record_end(type30):
    """The last partial window is covered: a peak in the final second is found."""
    fs = 125.0
    x, peaks = _synth(fs, seconds=10.7, seed=5)
    found = type30.detect(x, fs)
    tail = peaks[peaks > x.size - fs]
    assert tail.size
    assert peak_scores(tail, found[found > x.size - 1.3 * fs], fs, 0.05)["recall"] == 1.0


@pytest.mark.tf
def test_model_detector_bad_input(type30):
    with pytest.raises(DataError, match="shorter than one"):
        type30.detect(np.ones(100), 125.0)
    with pytest.raises(DataError):
        type30.detect(np.r_[np.ones(500), np.nan], 125.0)
    with pytest.raises(DataError):
        type30.detect(np.ones(500), 0.0)


def test_model_path_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such model"):
        get_detector(f"model:{tmp_path / 'nothing'}")
    with pytest.raises(ConfigError):
        get_detector("model:")
    with pytest.raises(ConfigError, match="no peak model here"):
        get_detector(f"model:{tmp_path}")


def test_cli_reports_a_missing_model_cleanly(tmp_path, capsys):
    rc = main(["-q", "evaluate", "peaks", "--dataset", "capnobase",
               "--detector", f"model:{tmp_path / 'gone'}", "--data-root", str(tmp_path)])
    assert rc == 1
    assert "ppg-edge: error:" in capsys.readouterr().err


@pytest.mark.tf
def test_corrupt_weights_and_json_are_model_errors(tmp_path):
    pytest.importorskip("tf_keras")
    bad = tmp_path / "Type30"
    shutil.copytree(TYPE30, bad)
    (bad / "Type30.weights.h5").write_bytes(b"not an hdf5 file" * 64)
    with pytest.raises(ModelError):
        get_detector(f"model:{bad}")
    (bad / "Type30.json").write_text("{ broken")
    with pytest.raises(ModelError):
        get_detector(f"model:{bad}")
    meta = json.loads((TYPE30 / "Type30.json").read_text())
    del meta["threshold"]
    (bad / "Type30.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="threshold"):
        get_detector(f"model:{bad}")


# ----------------------------------------------------------------------------- split selection
@pytest.fixture
def fake_split_data(monkeypatch):
    """capnobase/bidmc stand-ins: two test subjects (capnobase 0009, bidmc_14), two others."""
    rng = np.random.default_rng(8)
    sets = {"capnobase": ["0009", "0023"], "bidmc": ["bidmc_14", "bidmc_01"]}
    recs = {}
    for ds, ids in sets.items():
        for rid in ids:
            r = make_record(ds, rid, 125.0, 12.0, 70.0, rng)
            r.subject_id = rid
            recs[(ds, rid)] = r
    loaded = []

    def list_records(name, root=None):
        return list(sets[name])

    def load_record(name, rid, root=None):
        loaded.append(f"{name}/{rid}")
        return recs[(name, rid)]

    monkeypatch.setattr(ppg_edge.data, "list_records", list_records)
    monkeypatch.setattr(ppg_edge.data, "load_record", load_record)
    return loaded


def test_split_test_selects_only_test_subjects(fake_split_data):
    recs = selection.select_records(["capnobase", "bidmc"], "test")
    assert sorted(r.key for r in recs) == ["bidmc/bidmc_14", "capnobase/0009"]
    # capnobase knows its subject from the id: the training record is never read
    assert "capnobase/0023" not in fake_split_data
    test = selection.split_subjects("test")
    assert {"bidmc/bidmc_14", "capnobase/0009"} <= test
    assert not test & selection.split_subjects("train")


def test_split_errors(fake_split_data):
    with pytest.raises(ConfigError, match="unknown split part"):
        selection.select_records(["capnobase"], "tests")
    with pytest.raises(ConfigError, match="not in split"):
        selection.select_records(["ppg-bp"], "test")
    with pytest.raises(ConfigError, match="not in the test part"):
        selection.select_records(["capnobase"], "test", ids=["0023"])


def test_cli_split_test_and_unknown_split(fake_split_data, capsys, tmp_path, monkeypatch):
    register_detector("test-localmax", lambda: local_max_detector, replace=True)
    try:
        out = tmp_path / "r.json"
        rc = main(["-q", "evaluate", "peaks", "--dataset", "capnobase", "--dataset", "bidmc",
                   "--split", "test", "--detector", "test-localmax", "--out", str(out)])
        assert rc == 0
        doc = json.loads(out.read_text())
        assert doc["split"] == {"name": "peaks", "part": "test",
                                "records": ["bidmc/bidmc_14", "capnobase/0009"]}
        assert "--split test" in doc["command"]
        assert {r["record_id"] for r in doc["rows"]} == {"bidmc_14", "0009"}
        capsys.readouterr()
        rc = main(["-q", "evaluate", "peaks", "--dataset", "capnobase", "--split", "holdout",
                   "--detector", "test-localmax"])
        assert rc == 1
        assert "unknown --split 'holdout'" in capsys.readouterr().err
    finally:
        unregister_detector("test-localmax")


# ----------------------------------------------------------------------------- pooling and plot
def _two_set_result():
    rng = np.random.default_rng(11)
    recs = [make_record("alpha", "a0", 100.0, 20.0, 70.0, rng),
            make_record("alpha", "a1", 100.0, 20.0, 90.0, rng),
            make_record("beta", "b0", 125.0, 20.0, 60.0, rng)]
    det = Detector("localmax", "test", local_max_detector)
    half = Detector("every-other", "test", lambda x, fs: local_max_detector(x, fs)[::2])
    return evaluate_peaks(recs, [det, half], ["clean", "gaussian:10", "gaussian:0"],
                          noise_fn=white_noise, progress=False)


def test_pooled_rows_sum_the_per_dataset_rows():
    res = _two_set_result()
    for cond in res.conditions:
        for det in res.detectors:
            parts = [res.pooled_row(ds, cond, det)["scores"]["50ms"] for ds in ("alpha", "beta")]
            every = res.pooled_row("all", cond, det)["scores"]["50ms"]
            for k in ("tp", "fp", "fn"):
                assert every[k] == sum(p[k] for p in parts)
            assert every["n_records"] == 3
    # the detector that drops every other peak must score worse
    assert res.pooled_row("all", "clean", "every-other")["scores"]["50ms"]["recall"] < 0.6


def test_plot_writes_a_png(tmp_path):
    res = _two_set_result()
    curves = f1_curves(res)
    assert set(curves) == {"localmax", "every-other"}
    assert [s for s, _ in curves["localmax"]["gaussian"]] == [0.0, 10.0]
    path = plot_f1_vs_snr(json.loads(res.to_json()), tmp_path / "sub" / "f1.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_refuses_nothing_to_plot(tmp_path):
    with pytest.raises(DataError):
        plot_f1_vs_snr({"pooled": [], "tolerances_ms": [50.0]}, tmp_path / "x.png")
    with pytest.raises(ConfigError):
        plot_f1_vs_snr(object(), tmp_path / "x.png")
    assert issubclass(ModelError, PPGEdgeError)


# ----------------------------------------------------------------------------- model cards
def test_model_card_gets_one_held_out_section(tmp_path):
    from ppg_edge.train.peaks.cards import HEADING, test_section, write_test_section

    res = _two_set_result()
    doc = json.loads(res.to_json())
    doc["detectors"] = ["localmax", "nk-fake"]
    for r in doc["pooled"]:
        if r["detector"] == "every-other":
            r["detector"] = "nk-fake"
    doc["split"] = {"name": "peaks", "part": "test", "records": ["alpha/a0", "alpha/a1", "beta/b0"]}
    doc["command"] = "ppg-edge evaluate peaks --split test"
    section = test_section(doc, "localmax", {"mapping": "shift", "radius_s": 0.065})
    assert "| clean |" in section and "| gaussian:0 |" in section
    assert "(nk-fake)" in section and "raw-axis mapping shift." in section
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# card\n\n## Validation\nx\n\n## Limits\n- Validation only; test subjects are "
                    "untouched until the evaluation command reports them.\n")
    write_test_section(card, section)
    write_test_section(card, section)  # a rerun replaces, never duplicates
    text = card.read_text()
    assert text.count(HEADING) == 1
    assert text.index(HEADING) < text.index("## Limits") and "## Validation" in text
    assert "untouched until" not in text
    with pytest.raises(ConfigError):
        test_section(doc, "absent", None)


def test_model_cards_need_the_test_split(tmp_path, capsys):
    rc = main(["-q", "evaluate", "peaks", "--dataset", "capnobase", "--detector", "nk-elgendi",
               "--model-cards", "--data-root", str(tmp_path)])
    assert rc == 1
    assert "--split test" in capsys.readouterr().err


def test_smoothing_for_the_raw_snap_keeps_peaks_in_place():
    from ppg_edge.edge_runtime.peaks_decode import centred_moving_average as smooth

    fs = 300.0
    t = np.arange(900) / fs
    x = np.exp(-0.5 * ((t - 1.5) / 0.05) ** 2)
    for width in (0.016, 0.024, 0.04):
        y = smooth(x, fs, width)
        assert y.shape == x.shape
        assert int(np.argmax(y)) == int(np.argmax(x))  # centred: no delay
    noisy = x + np.random.default_rng(1).normal(0, 0.2, x.size)
    assert np.std(smooth(noisy, fs, 0.04) - x) < 0.5 * np.std(noisy - x)
    assert smooth(x, fs, 0.0) is x


def test_evaluation_reaches_training_only_to_load_a_saved_model():
    """The detectors, the harness and the model detector import ppg_edge.train in one place:
    detectors.load_keras_peak_model, the Keras loader (no evaluate <-> train cycle)."""
    import ast
    from pathlib import Path

    import ppg_edge.evaluate

    uses = []
    here = Path(ppg_edge.evaluate.__file__).parent
    for name in ("detectors", "dwt_baseline", "harness", "peak_model", "plot", "selection"):
        path = here / f"{name}.py"
        tree = ast.parse(path.read_text())
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Module))]:
            for node in ast.walk(fn) if isinstance(fn, ast.FunctionDef) else ast.iter_child_nodes(fn):
                if isinstance(node, ast.ImportFrom) and "train" in (node.module or "").split("."):
                    uses.append((path.name, getattr(fn, "name", "<module>"), node.module))
    assert uses == [("detectors.py", "load_keras_peak_model", "ppg_edge.train.peaks.fit")]
