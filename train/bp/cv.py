"""Subject-wise K-fold cross-validation of every BP model on PPG-BP.

Folds come from a committed split (``ppg_edge.data.splits.load_split("ppg-bp-10fold")``,
whole subjects, stratified by hypertension class). For each fold the model is
trained on the other folds' subjects and predicts every window of the held-out
subjects; :func:`assert_subject_folds` checks that no subject is on both sides
of any fold before anything is trained. Hyperparameters and the stopping epoch
are chosen inside the training folds only: the deep models stop early on an
inner validation split *by subject* of the training subjects
(:func:`inner_split`), and the random search (``cnn-lstm-search``) scores its
trials on that inner split.

The naive predictor is the mean SBP/DBP of each fold's *training* windows; every
model's report carries its MAE, RMSE and the MASE (model MAE / naive MAE).
Reports are per window (``segment``) and per subject (``subject``: the mean of a
subject's window predictions against the subject's cuff reading).

``leaky=True`` assigns *windows* to folds at random, so the three segments of a
subject are split between training and test. Its numbers are shown apart and
labelled leaky: a model can recognise the subject instead of estimating BP
(this is how record-wise studies reach MAEs of a few mmHg on PPG-BP).

Models (:data:`MODELS`):

* ``feature-gbm`` / ``feature-gbm-demo`` -- gradient boosting on segment features
  (:mod:`.feature_baseline`; ``-demo`` adds age, sex, BMI: a separate, labelled
  variant, not calibration-free PPG only).
* ``cnn-lstm`` -- Hayirlioglu & Semiz (2025) Table 2, PPG channel only;
  ``cnn-lstm-search`` -- its Table 1 random search with a small budget.
* ``derivatives`` -- the PPG/VPG/APG/JPG pulse CNN+LSTM (PPG_to_BP notebook):
  a window's prediction is the mean over its pulses.
* ``multistage`` -- Ali & Atef (2022) class -> MAP -> SBP/DBP LSTM cascade on
  per-pulse feature sequences; ``ann`` and ``lstm`` -- its single-stage baselines.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ppg_edge.errors import ConfigError, DataError, SplitError

from .dataset import BPDataset

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    """Training budget shared by the deep models (the CLI's ``--epochs`` etc.)."""

    epochs: int = 30
    batch_size: int = 32
    patience: int = 8
    val_fraction: float = 0.15
    learning_rate: float = 1e-3
    search_trials: int = 3
    search_epochs: int = 8
    verbose: int = 0


# ---------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------
def folds_from_split(split: dict, subjects) -> np.ndarray:
    """Fold index of each row, from a committed split document's ``folds``.

    A subject in no fold, or in two, raises :class:`SplitError`.
    """
    folds = split.get("folds") if isinstance(split, dict) else None
    if not folds:
        raise SplitError(f"split {split.get('name', '?') if isinstance(split, dict) else split!r} has no folds")
    fold_of: dict[str, int] = {}
    for k, part in enumerate(folds):
        for s in part:
            if s in fold_of:
                raise SplitError(f"subject {s} is in folds {fold_of[s]} and {k}")
            fold_of[s] = k
    subjects = np.asarray(subjects)
    missing = sorted(set(subjects.tolist()) - set(fold_of))
    if missing:
        raise SplitError(f"{len(missing)} subject(s) of the data are in no fold of split "
                         f"{split.get('name', '?')}: {missing[:10]}")
    return np.array([fold_of[s] for s in subjects], dtype=np.int64)


def leaky_folds(n_rows: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Record-wise (LEAKY) fold index per row: windows dealt to folds at random."""
    if int(n_folds) < 2 or n_rows < int(n_folds):
        raise SplitError(f"{n_rows} rows cannot make {n_folds} folds")
    out = np.empty(n_rows, dtype=np.int64)
    out[rng.permutation(n_rows)] = np.arange(n_rows) % int(n_folds)
    return out


def assert_subject_folds(fold_of, subjects) -> None:
    """Raise :class:`SplitError` when any fold's test subjects also appear in its training rows."""
    from ppg_edge.data.splits import assert_disjoint

    fold_of, subjects = np.asarray(fold_of), np.asarray(subjects)
    if fold_of.shape != subjects.shape:
        raise SplitError(f"{fold_of.shape} fold labels for {subjects.shape} subjects")
    for k in np.unique(fold_of):
        te = fold_of == k
        try:
            assert_disjoint(subjects[~te], subjects[te])
        except SplitError as exc:
            raise SplitError(f"fold {int(k)} leaks: {exc}") from exc


def inner_split(subjects, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of inner-validation rows: ``fraction`` of the subjects (at least one)."""
    subjects = np.asarray(subjects)
    uniq = np.unique(subjects)
    if uniq.size < 2:
        raise SplitError("an inner validation split needs at least two training subjects")
    n_val = min(uniq.size - 1, max(1, int(round(fraction * uniq.size))))
    val = rng.choice(uniq, size=n_val, replace=False)
    return np.isin(subjects, val)


# ---------------------------------------------------------------------------
# Models: fit on one BPDataset, predict (n_test, 2) for another
# ---------------------------------------------------------------------------
def _callbacks(opts: TrainOptions):
    from ._keras import keras

    k = keras()
    return [k.callbacks.EarlyStopping(monitor="val_loss", patience=int(opts.patience),
                                      restore_best_weights=True)]


def _fit_keras(model, x_tr, y_tr, x_va, y_va, opts: TrainOptions):
    hist = model.fit(x_tr, y_tr.astype(np.float32), validation_data=(x_va, y_va.astype(np.float32)),
                     epochs=int(opts.epochs), batch_size=int(opts.batch_size),
                     callbacks=_callbacks(opts), verbose=opts.verbose)
    vl = hist.history.get("val_loss", [np.nan])
    return {"epochs_run": len(vl), "best_epoch": int(np.nanargmin(vl)) + 1,
            "best_val_rmse": float(np.sqrt(np.nanmin(vl)))}


def _split_train(train: BPDataset, opts, rng):
    va = inner_split(train.subjects, opts.val_fraction, rng)
    return train.subset(~va), train.subset(va)


@dataclass
class FittedModel:
    """A trained model with what prediction needs and how it was trained."""

    name: str
    predict: Callable[[BPDataset], np.ndarray]
    keras_model: object = None
    sklearn_models: object = None
    info: dict = field(default_factory=dict)


def _clear():
    from ._keras import keras

    keras().backend.clear_session()


def _columns(portable: bool):
    from ppg_edge.features.bp import PORTABLE_COLUMNS

    return list(PORTABLE_COLUMNS) if portable else slice(None)


def fit_feature_gbm(train: BPDataset, rng, opts, demographics: bool = False, portable: bool = False) -> FittedModel:
    """``portable``: without the features in sensor units (``features.bp.SENSOR_UNIT_FEATURES``)."""
    from .feature_baseline import FeatureBaseline

    cols = _columns(portable)
    m = FeatureBaseline(use_demographics=demographics, rng=rng)
    m.fit(train.features[:, cols], train.y, train.demographics if demographics else None)

    def predict(ds):
        return m.predict(ds.features[:, cols], ds.demographics if demographics else None)

    name = "feature-gbm" + ("-portable" if portable else "") + ("-demo" if demographics else "")
    return FittedModel(name, predict, sklearn_models=m, info={"variant": m.variant, "params": m.params,
                                                              "portable": portable})


def fit_feature_gbm_nested(train: BPDataset, rng, opts, demographics: bool = False) -> FittedModel:
    """Gradient boosting with each target's parameters chosen by a nested subject-wise CV inside
    the training subjects (:func:`.feature_baseline.nested_search`); never on the test fold."""
    from .feature_baseline import FeatureBaseline, nested_search

    demo = train.demographics if demographics else None
    search = nested_search(train.features, train.y, train.subjects, rng=rng, demographics=demo)
    m = FeatureBaseline(use_demographics=demographics, rng=rng, per_target=search["per_target"])
    m.fit(train.features, train.y, demo)

    def predict(ds):
        return m.predict(ds.features, ds.demographics if demographics else None)

    return FittedModel("feature-gbm-nested-demo" if demographics else "feature-gbm-nested", predict,
                       sklearn_models=m, info={"variant": m.variant, "params": m.target_params,
                                               "search": search})


def _cnn_x(ds: BPDataset) -> np.ndarray:
    return ds.x[..., :1]


def fit_cnn_lstm(train: BPDataset, rng, opts, hparams: dict | None = None) -> FittedModel:
    from .cnn_lstm import build_cnn_lstm_bp

    _clear()
    tr, va = _split_train(train, opts, rng)
    model = build_cnn_lstm_bp(train.input_len, 1, target_mean=tr.y.mean(axis=0),
                              learning_rate=opts.learning_rate, rng=rng, **(hparams or {}))
    info = _fit_keras(model, _cnn_x(tr), tr.y, _cnn_x(va), va.y, opts)
    info["hparams"] = {k: list(v) for k, v in (hparams or {}).items()} or "paper Table 2"

    def predict(ds):
        return model.predict(_cnn_x(ds), batch_size=256, verbose=0).astype(np.float64)

    return FittedModel("cnn-lstm", predict, keras_model=model, info=info)


def fit_cnn_lstm_search(train: BPDataset, rng, opts) -> FittedModel:
    from .cnn_lstm import random_search

    _clear()
    tr, va = _split_train(train, opts, rng)
    res = random_search(_cnn_x(tr), tr.y, _cnn_x(va), va.y, rng=rng,
                        max_trials=opts.search_trials, epochs=opts.search_epochs,
                        batch_size=opts.batch_size, target_mean=tr.y.mean(axis=0),
                        learning_rate=opts.learning_rate)
    fitted = fit_cnn_lstm(train, rng, opts, hparams=res.best_hparams)
    fitted.name = "cnn-lstm-search"
    fitted.info["search"] = {"trials": len(res.trials), "best_val_rmse": res.best_val_rmse}
    return fitted


def _pulse_inputs(ds: BPDataset):
    return [ds.pulses, ds.pulse_dur[:, None]]


def fit_derivatives(train: BPDataset, rng, opts) -> FittedModel:
    from .derivatives_model import build_derivatives_model

    _clear()
    tr, va = _split_train(train, opts, rng)
    if tr.pulses.shape[0] == 0 or va.pulses.shape[0] == 0:
        raise DataError("derivatives model: no usable pulses in the training or validation windows")
    fallback = tr.y.mean(axis=0)
    model = build_derivatives_model(tr.pulses.shape[1], target_mean=fallback,
                                    learning_rate=opts.learning_rate, rng=rng)
    info = _fit_keras(model, _pulse_inputs(tr), tr.y[tr.pulse_row],
                      _pulse_inputs(va), va.y[va.pulse_row], opts)

    def predict(ds):
        out = np.tile(fallback, (len(ds), 1))
        if ds.pulses.shape[0]:
            p = model.predict(_pulse_inputs(ds), batch_size=256, verbose=0).astype(np.float64)
            sums = np.zeros((len(ds), 2))
            np.add.at(sums, ds.pulse_row, p)
            cnt = np.bincount(ds.pulse_row, minlength=len(ds))
            has = cnt > 0
            out[has] = sums[has] / cnt[has, None]
        n_none = int(len(ds) - np.count_nonzero(np.bincount(ds.pulse_row, minlength=len(ds))))
        if n_none:
            log.info("derivatives: %d window(s) without a pulse get the training mean", n_none)
        return out

    info["fallback"] = "training mean for windows without a usable pulse"
    return FittedModel("derivatives", predict, keras_model=model, info=info)


def fit_multistage(train: BPDataset, rng, opts) -> FittedModel:
    from .multistage import MultiStageBP

    _clear()
    tr, va = _split_train(train, opts, rng)
    m = MultiStageBP(tr.pulse_seq.shape[1], tr.pulse_seq.shape[2],
                     learning_rate=opts.learning_rate, rng=rng)
    hist = m.fit(tr.pulse_seq, tr.y, epochs=opts.epochs, batch_size=opts.batch_size,
                 validation_data=(va.pulse_seq, va.y), callbacks=_callbacks(opts),
                 verbose=opts.verbose)
    info = {st: (None if h is None else len(h.history["loss"])) for st, h in hist.items()}

    def predict(ds):
        return m.predict(ds.pulse_seq)["bp"].astype(np.float64)

    return FittedModel("multistage", predict, keras_model=m.cascade, info={"epochs_run": info})


def training_medians(train_X: np.ndarray) -> np.ndarray:
    """Per-feature median of the training rows (0 where a feature is never valid)."""
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(np.where(np.isfinite(train_X), train_X, np.nan), axis=0)
    return np.where(np.isfinite(med), med, 0.0)


def _impute(train_X: np.ndarray, med: np.ndarray | None = None):
    """A function that fills invalid features with the training medians."""
    med = training_medians(train_X) if med is None else np.asarray(med, dtype=np.float64)

    def fill(X):
        X = np.array(X, dtype=np.float64)
        bad = ~np.isfinite(X)
        X[bad] = np.broadcast_to(med, X.shape)[bad]
        return X.astype(np.float32)

    return fill


def fit_ann(train: BPDataset, rng, opts) -> FittedModel:
    from .multistage import build_ann_baseline

    _clear()
    tr, va = _split_train(train, opts, rng)
    fill = _impute(tr.features)
    Xtr = fill(tr.features)
    var = Xtr.var(axis=0)
    var[var == 0] = 1.0
    model = build_ann_baseline(Xtr.shape[1], feature_mean=Xtr.mean(axis=0), feature_var=var,
                               target_mean=tr.y.mean(axis=0), learning_rate=opts.learning_rate,
                               rng=rng)
    info = _fit_keras(model, Xtr, tr.y, fill(va.features), va.y, opts)
    info["impute_medians"] = training_medians(tr.features).tolist()

    def predict(ds):
        return model.predict(fill(ds.features), batch_size=256, verbose=0).astype(np.float64)

    return FittedModel("ann", predict, keras_model=model, info=info)


def fit_lstm(train: BPDataset, rng, opts) -> FittedModel:
    from .multistage import _feature_stats, build_lstm_baseline

    _clear()
    tr, va = _split_train(train, opts, rng)
    mean, var = _feature_stats(tr.pulse_seq)
    model = build_lstm_baseline(tr.pulse_seq.shape[1], tr.pulse_seq.shape[2], feature_mean=mean,
                                feature_var=var, target_mean=tr.y.mean(axis=0),
                                learning_rate=opts.learning_rate, rng=rng)
    info = _fit_keras(model, tr.pulse_seq, tr.y, va.pulse_seq, va.y, opts)

    def predict(ds):
        return model.predict(ds.pulse_seq, batch_size=256, verbose=0).astype(np.float64)

    return FittedModel("lstm", predict, keras_model=model, info=info)


#: name -> (fit function, label, uses TensorFlow)
MODELS: dict[str, tuple[Callable, str, bool]] = {
    "feature-gbm": (fit_feature_gbm, "gradient boosting, segment features (PPG only)", False),
    "feature-gbm-demo": (lambda tr, rng, o: fit_feature_gbm(tr, rng, o, demographics=True),
                         "gradient boosting, features + age/sex/BMI (NOT PPG-only)", False),
    "feature-gbm-portable": (lambda tr, rng, o: fit_feature_gbm(tr, rng, o, portable=True),
                             "gradient boosting, segment features without those in sensor units (PPG only)", False),
    "feature-gbm-portable-demo": (lambda tr, rng, o: fit_feature_gbm(tr, rng, o, demographics=True, portable=True),
                                  "gradient boosting, features without sensor units + age/sex/BMI (NOT PPG-only)",
                                  False),
    "feature-gbm-nested": (fit_feature_gbm_nested, "gradient boosting, segment features, parameters per "
                           "target by nested subject-wise CV (PPG only)", False),
    "feature-gbm-nested-demo": (lambda tr, rng, o: fit_feature_gbm_nested(tr, rng, o, demographics=True),
                                "gradient boosting, features + age/sex/BMI, nested CV (NOT PPG-only)", False),
    "cnn-lstm": (fit_cnn_lstm, "CNN-LSTM, paper 002 Table 2", True),
    "cnn-lstm-search": (fit_cnn_lstm_search, "CNN-LSTM, Table 1 random search in training folds", True),
    "derivatives": (fit_derivatives, "pulse PPG/VPG/APG/JPG CNN+BiLSTM (001)", True),
    "multistage": (fit_multistage, "multi-stage LSTM class->MAP->BP (000)", True),
    "ann": (fit_ann, "single-stage ANN on segment features (000 baseline)", True),
    "lstm": (fit_lstm, "single-stage LSTM on pulse features (000 baseline)", True),
}


def get_model(name: str):
    if name not in MODELS:
        raise ConfigError(f"unknown BP model {name!r}; valid: {sorted(MODELS)}")
    return MODELS[name]


def fit_model(name: str, train: BPDataset, rng: np.random.Generator,
              opts: TrainOptions | None = None) -> FittedModel:
    """Train model ``name`` on ``train`` (an inner subject split inside it for stopping)."""
    fit, _, _ = get_model(name)
    return fit(train, rng, opts or TrainOptions())


# ---------------------------------------------------------------------------
# Cross-validation and reports
# ---------------------------------------------------------------------------
@dataclass
class ModelCV:
    """Out-of-fold result of one model under one fold scheme."""

    model: str
    label: str
    fs: float
    leaky: bool
    pred: np.ndarray
    naive: np.ndarray
    fold_of: np.ndarray
    report: dict
    seconds: float
    fold_info: list = field(default_factory=list)
    max_epochs: int | None = None
    report_y: np.ndarray | None = None      # the targets and subjects of the rows (per-fold reports)
    subjects: np.ndarray | None = None


def _report(y, pred, naive, subjects) -> dict:
    from ppg_edge.metrics.bp import bp_report

    n_sub = int(np.unique(subjects).size)
    rep = bp_report(y[:, 0], pred[:, 0], y[:, 1], pred[:, 1], n_subjects=n_sub)
    for j, t in enumerate(("sbp", "dbp")):
        ne = naive[:, j] - y[:, j]
        nm = float(np.mean(np.abs(ne)))
        rep[t].update(naive_mae=nm, naive_rmse=float(np.sqrt(np.mean(ne ** 2))),
                      naive_me=float(ne.mean()), mase=rep[t]["mae"] / nm if nm > 0 else float("nan"))
    return rep


def subject_level(subjects, *arrays):
    """Mean of each array's rows per subject: (unique subjects, [per-subject arrays])."""
    subjects = np.asarray(subjects)
    uniq, inv = np.unique(subjects, return_inverse=True)
    cnt = np.bincount(inv).astype(np.float64)
    out = []
    for a in arrays:
        s = np.zeros((uniq.size,) + a.shape[1:])
        np.add.at(s, inv, a)
        out.append(s / cnt.reshape((-1,) + (1,) * (a.ndim - 1)))
    return uniq, out


def report_levels(y, pred, naive, subjects) -> dict:
    """``{"segment": report, "subject": report}`` with the naive baseline in each."""
    uniq, (ys, ps, ns) = subject_level(subjects, y, pred, naive)
    return {"segment": _report(y, pred, naive, subjects), "subject": _report(ys, ps, ns, uniq)}


def cross_validate(ds: BPDataset, model: str, fold_of, *, rng: np.random.Generator,
                   opts: TrainOptions | None = None, leaky: bool = False,
                   progress: bool = False, test_ds: BPDataset | None = None) -> ModelCV:
    """Out-of-fold predictions of ``model`` for every window of ``ds``.

    Unless ``leaky``, :func:`assert_subject_folds` must pass first. Every window
    is predicted exactly once (by the model of its own fold). ``test_ds``: the same windows
    (same order) built another way, e.g. through a sensor's lower rate; the held-out windows
    are taken from it, training from ``ds``.
    """
    from tqdm import tqdm

    fit, label, _ = get_model(model)
    opts = opts or TrainOptions()
    fold_of = np.asarray(fold_of)
    if test_ds is not None and not np.array_equal(test_ds.segments, ds.segments):
        raise DataError("test_ds must hold the same windows as ds, in the same order")
    if fold_of.shape != (len(ds),):
        raise SplitError(f"{fold_of.shape} fold labels for {len(ds)} windows")
    if not leaky:
        assert_subject_folds(fold_of, ds.subjects)
    pred = np.full((len(ds), 2), np.nan)
    naive = np.full((len(ds), 2), np.nan)
    infos = []
    t0 = time.perf_counter()
    for k in tqdm(np.unique(fold_of), desc=f"{model}{' LEAKY' if leaky else ''} @ {ds.fs:g} Hz",
                  disable=not progress):
        te = fold_of == k
        train, test = ds.subset(~te), (test_ds or ds).subset(te)
        naive[te] = train.y.mean(axis=0)
        fitted = fit(train, rng, opts)
        p = np.asarray(fitted.predict(test), dtype=np.float64)
        if p.shape != (int(te.sum()), 2) or not np.all(np.isfinite(p)):
            raise DataError(f"{model} fold {int(k)}: predictions of shape {p.shape} "
                            "are not finite (n, 2)")
        pred[te] = p
        infos.append({"fold": int(k), "n_train": len(train), "n_test": len(test), **fitted.info})
        log.info("%s fold %d: test MAE %.2f / %.2f", model, int(k),
                 *np.mean(np.abs(p - test.y), axis=0))
    if np.isnan(pred).any():
        raise DataError(f"{model}: {int(np.isnan(pred).any(axis=1).sum())} window(s) never predicted")
    rep = report_levels(ds.y, pred, naive, ds.subjects)
    return ModelCV(model=model, label=label + (" [LEAKY record-wise split]" if leaky else ""),
                   fs=ds.fs, leaky=leaky, pred=pred, naive=naive, fold_of=fold_of, report=rep,
                   seconds=time.perf_counter() - t0, fold_info=infos,
                   max_epochs=opts.epochs if MODELS[model][2] else None, report_y=ds.y, subjects=ds.subjects)


def _mae_row(y, pred, naive) -> dict:
    out = {}
    for j, t in enumerate(("sbp", "dbp")):
        mae = float(np.mean(np.abs(pred[:, j] - y[:, j])))
        nm = float(np.mean(np.abs(naive[:, j] - y[:, j])))
        out[t] = {"mae": mae, "naive_mae": nm, "mase": mae / nm if nm > 0 else float("nan")}
    return out


def per_fold(y, pred, naive, fold_of, subjects) -> list[dict]:
    """MAE, naive MAE and MASE of every fold's test subjects, per window (``segment``) and per
    subject (``subject``: a subject's mean prediction against its cuff reading)."""
    y, pred, naive, fold_of, subjects = map(np.asarray, (y, pred, naive, fold_of, subjects))
    rows = []
    for k in np.unique(fold_of):
        te = fold_of == k
        uniq, (ys, ps, ns) = subject_level(subjects[te], y[te], pred[te], naive[te])
        rows.append({"fold": int(k), "n_windows": int(te.sum()), "n_subjects": int(uniq.size),
                     "segment": _mae_row(y[te], pred[te], naive[te]), "subject": _mae_row(ys, ps, ns)})
    return rows


def fold_spread(folds: list[dict]) -> dict:
    """Across folds, per level and target: mean, SD, min and max of the MASE, and how many
    folds the model beats the naive predictor on (MASE < 1)."""
    out: dict = {}
    for level in ("segment", "subject"):
        out[level] = {}
        for t in ("sbp", "dbp"):
            m = np.array([f[level][t]["mase"] for f in folds], dtype=np.float64)
            out[level][t] = {"mase_mean": float(m.mean()), "mase_sd": float(m.std(ddof=1)) if m.size > 1 else 0.0,
                             "mase_min": float(m.min()), "mase_max": float(m.max()),
                             "folds_beating_naive": int(np.sum(m < 1.0)), "n_folds": int(m.size)}
    return out


def result_dict(r: ModelCV, with_predictions: bool = False) -> dict:
    folds = per_fold(r.report_y, r.pred, r.naive, r.fold_of, r.subjects) if r.report_y is not None else None
    d = {"model": r.model, "label": r.label, "fs": r.fs, "leaky": r.leaky,
         "split": "record-wise LEAKY" if r.leaky else "subject-wise", "seconds": round(r.seconds, 1),
         "max_epochs": r.max_epochs,
         "n_windows": int(r.pred.shape[0]), "report": r.report, "folds": r.fold_info}
    if folds is not None:
        d["per_fold"] = folds
        d["spread"] = fold_spread(folds)
    if with_predictions:
        d["predictions"] = r.pred.round(2).tolist()
    return d


def _fmt(m: dict) -> str:
    return (f"{m['mae']:.2f} | {m['naive_mae']:.2f} | {m['mase']:.3f} | {m['rmse']:.2f} | "
            f"{m['me']:+.2f} ± {m['sd']:.2f} | {m['bhs_grade']} | {'pass' if m['aami_pass'] else 'fail'} "
            f"| {m['ieee1708_class']}")


def markdown_table(results, level: str = "segment") -> str:
    """One row per model and rate: SBP and DBP MAE beside the naive MAE, MASE, RMSE,
    ME ± SD, BHS, AAMI (errors only), IEEE 1708. Leaky rows go in a separate table.
    ``results``: :class:`ModelCV` objects or their :func:`result_dict`."""
    rows_all = [result_dict(r) if isinstance(r, ModelCV) else r for r in results]
    head = ("| model | fs Hz | split | max epochs | SBP MAE | naive | MASE | RMSE | ME ± SD | BHS | AAMI | IEEE "
            "| DBP MAE | naive | MASE | RMSE | ME ± SD | BHS | AAMI | IEEE |\n|"
            + "---|" * 20)
    blocks = []
    for leaky in (False, True):
        rows = [r for r in rows_all if bool(r["leaky"]) == leaky]
        if not rows:
            continue
        title = ("**LEAKY record-wise split -- NOT comparable: segments of a test subject are in "
                 "training**" if leaky else "Subject-wise folds")
        lines = [f"{title} ({level} level)", "", head]
        for r in rows:
            m = r["report"][level]
            ep = r.get("max_epochs")
            lines.append(f"| {r['model']} | {r['fs']:g} | {'LEAKY' if leaky else 'subject'} | "
                         f"{'-' if ep is None else ep} | "
                         f"{_fmt(m['sbp'])} | {_fmt(m['dbp'])} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def plot_results(results: list[ModelCV], y: dict, out_dir) -> list:
    """Error histogram and Bland-Altman plot (SBP, DBP) per result, PNG. ``y`` maps
    a rate to the targets (n, 2) of the windows of that rate. Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in results:
        yt = y[r.fs]
        tag = f"{r.model}_{r.fs:g}hz{'_LEAKY' if r.leaky else ''}"
        fig, axes = plt.subplots(2, 2, figsize=(10, 7))
        for j, name in enumerate(("SBP", "DBP")):
            err = r.pred[:, j] - yt[:, j]
            nerr = r.naive[:, j] - yt[:, j]
            ax = axes[0, j]
            bins = np.linspace(min(err.min(), nerr.min()), max(err.max(), nerr.max()), 40)
            ax.hist(nerr, bins=bins, alpha=0.5, label=f"naive MAE {np.mean(np.abs(nerr)):.1f}")
            ax.hist(err, bins=bins, alpha=0.6, label=f"{r.model} MAE {np.mean(np.abs(err)):.1f}")
            ax.set_xlabel(f"{name} error (predicted - cuff), mmHg")
            ax.set_ylabel("windows")
            ax.legend(fontsize=8)
            ax = axes[1, j]
            mean = (r.pred[:, j] + yt[:, j]) / 2
            me, sd = err.mean(), err.std(ddof=1)
            ax.scatter(mean, err, s=6, alpha=0.5)
            for v, ls in ((me, "-"), (me + 1.96 * sd, "--"), (me - 1.96 * sd, "--")):
                ax.axhline(v, color="k", ls=ls, lw=0.8)
            ax.set_xlabel(f"mean of predicted and cuff {name}, mmHg")
            ax.set_ylabel("difference, mmHg")
            ax.set_title(f"Bland-Altman {name}: ME {me:+.1f}, LoA ±{1.96 * sd:.1f}", fontsize=9)
        fig.suptitle(f"{r.model} @ {r.fs:g} Hz, {'LEAKY record-wise' if r.leaky else 'subject-wise'} "
                     "10-fold CV (out-of-fold)", fontsize=10)
        fig.tight_layout()
        p = out_dir / f"bp_{tag}.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        paths.append(p)
    return paths
