"""Subject-wise BP cross-validation: folds, out-of-fold coverage, naive baseline, CLI, plots.

A tiny synthetic data root in the PPG-BP layout (12 subjects, 3 segments each, BP
tied to the pulse rate so a model can learn something) keeps these fast; TF tests
use one or two epochs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.errors import ConfigError, SplitError
from ppg_edge.train.bp import cv
from ppg_edge.train.bp.dataset import BPDataset, build_bp_dataset, input_length

FS = 1000.0
N_SUBJECTS = 12


def _pulse_train(rng, fs, seconds, hr_bpm):
    t = np.arange(int(round(seconds * fs))) / fs
    phase = (t * hr_bpm / 60.0 + rng.uniform()) % 1.0
    wave = np.exp(-((phase - 0.2) / 0.07) ** 2) + 0.4 * np.exp(-((phase - 0.55) / 0.1) ** 2)
    return 2000.0 + 300.0 * wave + rng.normal(0, 2.0, t.size) + 20 * np.sin(2 * np.pi * 0.1 * t)


def make_ppg_bp_root(tmp: Path, rng, n_subjects: int = N_SUBJECTS) -> tuple[Path, list[str]]:
    """A data root with ``ppg-bp/Data File/0_subject/<sid>_<n>.txt`` and the label sheet."""
    import openpyxl

    folder = tmp / "ppg-bp" / "Data File"
    (folder / "0_subject").mkdir(parents=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["PPG-BP synthetic"])
    ws.append(["Num.", "subject_ID", "Sex(M/F)", "Age(year)", "Height(cm)", "Weight(kg)",
               "Systolic Blood Pressure(mmHg)", "Diastolic Blood Pressure(mmHg)",
               "Heart Rate(b/m)", "BMI(kg/m^2)", "Hypertension"])
    sids = []
    for i in range(n_subjects):
        sid = str(100 + i)
        sids.append(sid)
        hr = 55.0 + 5.0 * i
        sbp, dbp = 100.0 + 1.5 * (hr - 55.0), 65.0 + 0.8 * (hr - 55.0)
        ws.append([i + 1, int(sid), "Male" if i % 2 else "Female", 30 + i, 170, 70, sbp, dbp, hr,
                   24.2, "Normal"])
        for n in (1, 2, 3):
            x = _pulse_train(rng, FS, 2.1, hr)
            (folder / "0_subject" / f"{sid}_{n}.txt").write_text(
                "\t".join(f"{v:.0f}" for v in x) + "\t")
    wb.save(folder / "PPG-BP dataset.xlsx")
    return tmp, sids


def write_folds(path: Path, sids: list[str], k: int = 3) -> Path:
    from ppg_edge.data.splits import subjects_sha256

    keys = sorted(f"ppg-bp/{s}" for s in sids)
    folds = [keys[i::k] for i in range(k)]
    doc = {"name": path.stem, "k": k, "method": "test", "subjects": keys,
           "sha256": subjects_sha256(keys), "folds": folds}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ppg_edge import data

    rng = np.random.default_rng(7)
    root, sids = make_ppg_bp_root(tmp_path_factory.mktemp("bpdata"), rng)
    folds = write_folds(root / "tiny-3fold.json", sids)
    records = data.load("ppg-bp", root=root)
    return {"root": root, "sids": sids, "folds": folds, "records": records}


@pytest.fixture(scope="module")
def ds100(tiny):
    return build_bp_dataset(tiny["records"], 100.0)


# ---------------------------------------------------------------- dataset
def test_dataset_shapes_and_targets(tiny, ds100):
    assert ds100.x.shape == (3 * N_SUBJECTS, input_length(100.0), 4)
    assert np.allclose(ds100.x[:, :, 0].mean(axis=1), 0, atol=1e-4)  # z-scored per window
    assert ds100.channels == ("ppg", "vpg", "apg", "jpg")
    # every window of a subject carries that subject's cuff reading
    for s in np.unique(ds100.subjects):
        assert np.unique(ds100.y[ds100.subjects == s], axis=0).shape == (1, 2)
    assert ds100.pulses.shape[1:] == (128, 4) and ds100.pulse_row.max() < len(ds100)
    sub = ds100.subset(ds100.subjects == ds100.subjects[0])
    assert len(sub) == 3 and np.all(sub.pulse_row < 3) and sub.pulses.shape[0] > 0


def test_dataset_cache_roundtrip(tmp_path, ds100):
    p = tmp_path / "c.npz"
    ds100.save(p)
    back = BPDataset.load(p)
    assert np.array_equal(back.x, ds100.x) and np.array_equal(back.subjects, ds100.subjects)
    assert back.preprocessing == ds100.preprocessing


def test_dataset_skips_short_record_with_event(tiny):
    from dataclasses import replace

    rec = tiny["records"][0]
    short = replace(rec, signals={"ppg": rec.ppg[:500]})
    ds = build_bp_dataset([short, tiny["records"][1]], 100.0)
    assert len(ds) == 1 and any("skipped" in e for e in ds.events)


# ---------------------------------------------------------------- folds
def test_folds_from_committed_split_cover_every_subject(ds100, tiny):
    from ppg_edge.data.splits import load_split

    doc = load_split("tiny-3fold", tiny["folds"].parent)
    fold_of = cv.folds_from_split(doc, ds100.subjects)
    cv.assert_subject_folds(fold_of, ds100.subjects)
    for s in np.unique(ds100.subjects):
        assert np.unique(fold_of[ds100.subjects == s]).size == 1


def test_leaking_fold_raises(ds100):
    leaky = cv.leaky_folds(len(ds100), 3, np.random.default_rng(0))
    with pytest.raises(SplitError, match="leaks"):
        cv.assert_subject_folds(leaky, ds100.subjects)
    # and cross_validate refuses it unless it is declared leaky
    with pytest.raises(SplitError):
        cv.cross_validate(ds100, "feature-gbm", leaky, rng=np.random.default_rng(0))


def test_subject_missing_from_split_raises(ds100):
    doc = {"name": "x", "folds": [["ppg-bp/100"], ["ppg-bp/101"]]}
    with pytest.raises(SplitError, match="in no fold"):
        cv.folds_from_split(doc, ds100.subjects)


def test_inner_split_is_by_subject(ds100, rng):
    va = cv.inner_split(ds100.subjects, 0.25, rng)
    assert set(ds100.subjects[va]).isdisjoint(ds100.subjects[~va]) and va.any() and (~va).any()


# ---------------------------------------------------------------- CV
def test_oof_covers_each_window_once_and_naive_uses_training_folds(ds100, tiny):
    from ppg_edge.data.splits import load_split

    fold_of = cv.folds_from_split(load_split("tiny-3fold", tiny["folds"].parent), ds100.subjects)
    r = cv.cross_validate(ds100, "feature-gbm", fold_of, rng=np.random.default_rng(1))
    assert r.pred.shape == (len(ds100), 2) and np.all(np.isfinite(r.pred))
    assert sum(i["n_test"] for i in r.fold_info) == len(ds100)
    for k in range(3):
        te = fold_of == k
        assert np.allclose(r.naive[te], ds100.y[~te].mean(axis=0))  # training folds' mean
    # fold 0 holds the lower-BP subjects: its training mean is neither its own nor the overall mean
    te0 = fold_of == 0
    assert not np.allclose(r.naive[te0][0], ds100.y[te0].mean(axis=0))
    assert not np.allclose(r.naive[te0][0], ds100.y.mean(axis=0))
    rep = r.report["segment"]["sbp"]
    assert rep["naive_mae"] == pytest.approx(np.mean(np.abs(r.naive[:, 0] - ds100.y[:, 0])))
    assert rep["mase"] == pytest.approx(rep["mae"] / rep["naive_mae"])
    assert r.report["subject"]["sbp"]["n"] == N_SUBJECTS


def test_every_window_predicted_exactly_once(ds100, monkeypatch):
    seen: list[str] = []

    def fit_counting(train, rng, opts):
        def predict(ds):
            assert set(ds.subjects).isdisjoint(train.subjects)
            seen.extend(ds.segments.tolist())
            return np.tile(train.y.mean(axis=0), (len(ds), 1))
        return cv.FittedModel("counting", predict)

    monkeypatch.setitem(cv.MODELS, "counting", (fit_counting, "test", False))
    subj = np.unique(ds100.subjects)
    fold_of = np.searchsorted(subj, ds100.subjects) % 4
    r = cv.cross_validate(ds100, "counting", fold_of, rng=np.random.default_rng(0))
    assert sorted(seen) == sorted(ds100.segments.tolist())
    assert np.allclose(r.pred, r.naive)  # the counting model predicts the naive mean
    assert r.report["segment"]["sbp"]["mase"] == pytest.approx(1.0)


def test_subject_level_is_mean_per_subject():
    subj = np.array(["a", "a", "b"])
    uniq, (m,) = cv.subject_level(subj, np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    assert uniq.tolist() == ["a", "b"] and m.tolist() == [[2.0, 3.0], [5.0, 6.0]]


def test_unknown_model_is_config_error():
    with pytest.raises(ConfigError, match="valid"):
        cv.get_model("nope")


def test_plots_written(tmp_path, ds100):
    fold_of = cv.leaky_folds(len(ds100), 3, np.random.default_rng(0))
    r = cv.cross_validate(ds100, "feature-gbm", fold_of, rng=np.random.default_rng(0), leaky=True)
    paths = cv.plot_results([r], {ds100.fs: ds100.y}, tmp_path / "plots")
    assert len(paths) == 1 and paths[0].stat().st_size > 5000 and "LEAKY" in paths[0].name
    assert "LEAKY" in cv.markdown_table([r])


# ---------------------------------------------------------------- CLI
def test_cli_evaluate_bp_end_to_end(tmp_path, tiny, capsys, monkeypatch):
    from ppg_edge.cli import main

    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path / "cache"))
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    rc = main(["-q", "evaluate", "bp", "--model", "feature-gbm", "--fs", "100",
               "--folds", str(tiny["folds"]), "--data-root", str(tiny["root"]), "--leaky",
               "--out", str(out), "--markdown", str(md), "--plots", str(tmp_path / "p")])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("ppg-edge evaluate bp --model feature-gbm")
    assert doc["machine"]["cpus"] >= 1
    kinds = [(r["model"], r["leaky"]) for r in doc["results"]]
    assert kinds == [("feature-gbm", False), ("feature-gbm", True)]
    assert "naive_mae" in doc["results"][0]["report"]["segment"]["dbp"]
    assert "LEAKY" in md.read_text() and len(list((tmp_path / "p").glob("*.png"))) == 2
    assert "Subject-wise" in capsys.readouterr().out


def test_cli_bad_rate_and_missing_split(tmp_path, tiny, capsys):
    from ppg_edge.cli import main

    assert main(["evaluate", "bp", "--fs", "30", "--data-root", str(tiny["root"])]) == 1
    assert "--fs" in capsys.readouterr().err
    assert main(["evaluate", "bp", "--folds", str(tmp_path / "none.json"),
                 "--data-root", str(tiny["root"])]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "bp", "--all-subjects", "--data-root", str(tiny["root"])]) == 1
    assert "--model-dir" in capsys.readouterr().err


# ---------------------------------------------------------------- TF models
@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn-lstm", "derivatives", "multistage", "ann", "lstm"])
def test_deep_models_one_fold_each(ds100, model):
    fold_of = np.array([0 if s in ("ppg-bp/100", "ppg-bp/101") else 1 for s in ds100.subjects])
    opts = cv.TrainOptions(epochs=1, patience=1, val_fraction=0.2)
    r = cv.cross_validate(ds100, model, fold_of, rng=np.random.default_rng(3), opts=opts)
    assert r.pred.shape == (len(ds100), 2) and np.all(np.isfinite(r.pred))
    assert [i["n_test"] for i in r.fold_info] == [6, 30]
    assert r.report["segment"]["sbp"]["naive_mae"] > 0


@pytest.mark.tf
@pytest.mark.slow
def test_random_search_runs_inside_training_folds(ds100, monkeypatch):
    from ppg_edge.train.bp import cnn_lstm

    seen_val = []
    real = cnn_lstm.random_search

    def spy(x_tr, y_tr, x_va, y_va, **kw):
        seen_val.append(set(np.round(y_va[:, 0], 3)) | set(np.round(y_tr[:, 0], 3)))
        return real(x_tr, y_tr, x_va, y_va, **kw)

    monkeypatch.setattr(cnn_lstm, "random_search", spy)
    fold_of = np.array([0 if s in ("ppg-bp/100", "ppg-bp/101") else 1 for s in ds100.subjects])
    opts = cv.TrainOptions(epochs=1, patience=1, val_fraction=0.2, search_trials=1, search_epochs=1)
    r = cv.cross_validate(ds100, "cnn-lstm-search", fold_of, rng=np.random.default_rng(4), opts=opts)
    assert np.all(np.isfinite(r.pred)) and r.fold_info[0]["search"]["trials"] == 1
    # the search saw windows of the training folds only (every subject has its own SBP here)
    for k, seen in enumerate(seen_val):
        test_sbp = set(np.round(ds100.y[fold_of == k, 0], 3))
        assert seen and seen.isdisjoint(test_sbp)


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn-lstm", "ann"])
def test_train_bp_then_evaluate_all_subjects(tmp_path, tiny, capsys, monkeypatch, model):
    from ppg_edge.cli import main

    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path / "cache"))
    mdir = tmp_path / "models" / "tiny"
    rc = main(["-q", "train", "bp", "--model", model, "--all-subjects", "--fs", "100",
               "--epochs", "1", "--data-root", str(tiny["root"]), "--out", str(mdir)])
    assert rc == 0
    cfg = json.loads((mdir / "config.json").read_text())
    assert cfg["model"] == model and cfg["fs"] == 100.0 and cfg["n_train_subjects"] == N_SUBJECTS
    assert (mdir / "model.keras").is_file() and (mdir / "MODEL_CARD.md").is_file()
    capsys.readouterr()
    out = tmp_path / "all.json"
    rc = main(["-q", "evaluate", "bp", "--all-subjects", "--model-dir", str(mdir),
               "--data-root", str(tiny["root"]), "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["n_subjects_in_training"] == N_SUBJECTS  # flagged: not held-out
    assert doc["report"]["segment"]["sbp"]["n"] == 3 * N_SUBJECTS
    assert "NOT held-out" in capsys.readouterr().out


def test_cli_combine_merges_runs(tmp_path, tiny, monkeypatch, capsys):
    from ppg_edge.cli import main

    monkeypatch.setenv("PPG_EDGE_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    base = ["-q", "evaluate", "bp", "--model", "feature-gbm", "--folds", str(tiny["folds"]),
            "--data-root", str(tiny["root"])]
    assert main(base + ["--fs", "100", "--out", str(a)]) == 0
    assert main(base + ["--fs", "125", "--out", str(b)]) == 0
    out, md = tmp_path / "all.json", tmp_path / "all.md"
    assert main(["-q", "evaluate", "bp", "--combine", str(a), str(b), "--out", str(out),
                 "--markdown", str(md)]) == 0
    doc = json.loads(out.read_text())
    assert [r["fs"] for r in doc["results"]] == [125.0, 100.0]
    assert [r["command"] for r in doc["runs"]][0].endswith(f"--out {a}")
    assert "| feature-gbm | 125 |" in md.read_text()
    capsys.readouterr()
    assert main(["evaluate", "bp", "--combine", str(md)]) == 1
    assert "not JSON" in capsys.readouterr().err


# ---------------------------------------------------------------- committed deployment models
COMMITTED_BP = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "models" / "bp").glob("*/config.json"))


def test_every_model_kind_has_a_committed_deployment_model():
    kinds = {json.loads((d / "config.json").read_text())["model"] for d in COMMITTED_BP}
    # the three seed papers' models and the feature baseline
    assert {"cnn-lstm", "derivatives", "multistage", "ann", "feature-gbm"} <= kinds, kinds


@pytest.mark.tf
@pytest.mark.parametrize("model_dir", COMMITTED_BP, ids=lambda d: d.name)
def test_committed_bp_model_loads_and_predicts(model_dir, ds100):
    """Each committed model loads, takes the device-rate dataset, predicts finite mmHg, and its
    card carries the subject-wise CV figures beside the naive baseline."""
    from ppg_edge.train.bp.deploy import DeployedModel

    m = DeployedModel(model_dir)
    assert m.fs == ds100.fs == 100.0
    pred = m.predict(ds100)
    assert pred.shape == (len(ds100), 2) and np.all(np.isfinite(pred))
    assert np.all((pred[:, 0] > 60) & (pred[:, 0] < 250) & (pred[:, 1] > 30) & (pred[:, 1] < 150)), pred
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "naive" in card and "subject-wise" in card and "ppg-edge train bp" in card


def test_deployed_model_refuses_wrong_rate(ds100, tiny):
    from ppg_edge.train.bp.deploy import DeployedModel

    gbm = next(d for d in COMMITTED_BP if json.loads((d / "config.json").read_text())["model"] == "feature-gbm")
    ds1000 = build_bp_dataset(tiny["records"][:3], 1000.0)
    with pytest.raises(ConfigError, match="100 Hz"):
        DeployedModel(gbm).predict(ds1000)
