"""The peak benchmark harness on synthetic records, with injected noise and detectors."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from evaluate_helpers import local_max_detector, make_record, white_noise

from ppg_edge.errors import ConfigError, DataError
from ppg_edge.evaluate.detectors import Detector
from ppg_edge.evaluate.harness import Condition, evaluate_peaks, parse_condition

FS = 100.0


def _records(seed=1):
    rng = np.random.default_rng(seed)
    return [
        make_record("setA", "a1", FS, 20.0, 65.0, rng),
        make_record("setA", "a2", FS, 20.0, 90.0, rng),
        make_record("setB", "b1", FS, 20.0, 120.0, rng),
    ]


def _det(name, fn):
    return Detector(name=name, description="test", fn=fn)


LOCALMAX = _det("localmax", local_max_detector)


def test_clean_scores_pool_per_dataset_and_overall():
    recs = _records()
    res = evaluate_peaks(recs, [LOCALMAX], ["clean"], progress=False)
    assert len(res.rows) == 3
    for row in res.rows:
        assert row["scores"]["50ms"]["f1"] == 1.0  # clean two-Gaussian pulses: exact peaks
        assert row["scores"]["50ms"]["ade_ms"] == 0.0
    a = res.pooled_row("setA", "clean", "localmax")["scores"]["50ms"]
    b = res.pooled_row("setB", "clean", "localmax")["scores"]["50ms"]
    al = res.pooled_row("all", "clean", "localmax")["scores"]["50ms"]
    assert a["n_records"] == 2 and b["n_records"] == 1 and al["n_records"] == 3
    assert al["tp"] == a["tp"] + b["tp"] == sum(len(r.peaks) for r in recs)
    assert set(res.tol_labels) == {"50ms", "25ms"}


def test_noise_made_once_per_record_and_condition_and_shared_by_detectors():
    recs = _records()
    calls = []

    def spy_noise(x, fs, kind, snr_db, rng):
        calls.append((len(x), kind, snr_db))
        return white_noise(x, fs, kind, snr_db, rng)

    seen: dict[str, list] = {"d1": [], "d2": []}

    def recorder(name):
        def fn(x, fs):
            seen[name].append(x.copy())
            return local_max_detector(x, fs)
        return _det(name, fn)

    conds = ["clean", "gaussian:10", "gaussian:0"]
    res = evaluate_peaks(recs, [recorder("d1"), recorder("d2")], conds, noise_fn=spy_noise, progress=False)
    assert len(calls) == len(recs) * 2  # not multiplied by the detectors
    assert len(seen["d1"]) == len(seen["d2"]) == len(recs) * 3
    for x1, x2 in zip(seen["d1"], seen["d2"]):
        assert np.array_equal(x1, x2)
    # different conditions and different records got different noise
    assert not np.array_equal(seen["d1"][1], seen["d1"][2])
    # noise hurts: 0 dB is worse than clean
    f1 = {c: res.pooled_row("all", c, "d1")["scores"]["50ms"]["f1"] for c in conds}
    assert f1["clean"] == 1.0 and f1["gaussian:0"] < f1["clean"]


def test_noise_is_reproducible_and_seeded():
    recs = _records()
    seen = []

    def keep(x, fs):
        seen.append(x.copy())
        return local_max_detector(x, fs)

    det = _det("keep", keep)
    evaluate_peaks(recs[:1], [det], ["gaussian:5"], rng_seed=1, noise_fn=white_noise, progress=False)
    evaluate_peaks(recs[:1], [det], ["gaussian:5"], rng_seed=1, noise_fn=white_noise, progress=False)
    evaluate_peaks(recs[:1], [det], ["gaussian:5"], rng_seed=2, noise_fn=white_noise, progress=False)
    assert np.array_equal(seen[0], seen[1])
    assert not np.array_equal(seen[0], seen[2])
    # the snr the noise function was asked for is what it delivered (against the clean signal)
    clean = recs[0].ppg
    noise = seen[0] - clean
    snr = 10 * np.log10(np.var(clean) / np.mean(noise ** 2))
    assert snr == pytest.approx(5.0, abs=0.5)


def test_detector_failure_is_recorded_and_counted_as_missed():
    def boom(x, fs):
        raise RuntimeError("kaput")

    recs = _records()
    res = evaluate_peaks(recs, [_det("boom", boom), LOCALMAX], ["clean"], progress=False)
    errs = [e for e in res.events if e["event"] == "error"]
    assert len(errs) == 3 and "kaput" in errs[0]["reason"]
    p = res.pooled_row("all", "clean", "boom")
    assert p["n_errors"] == 3
    assert p["scores"]["50ms"]["recall"] == 0.0 and p["scores"]["50ms"]["fn"] > 0
    assert res.pooled_row("all", "clean", "localmax")["scores"]["50ms"]["f1"] == 1.0


def test_record_without_reference_peaks_is_skipped_with_event():
    rng = np.random.default_rng(2)
    recs = [make_record("setA", "x", FS, 10.0, 70.0, rng, with_peaks=False)] + _records()
    res = evaluate_peaks(recs, [LOCALMAX], ["clean"], progress=False)
    assert len(res.rows) == 3
    assert res.events == [{"record": "setA/x", "event": "skipped", "reason": "no reference peaks"}]


def test_runtime_reported_per_detector():
    res = evaluate_peaks(_records(), [LOCALMAX], ["clean"], progress=False)
    rt = res.runtime["localmax"]
    assert rt["signal_seconds"] == pytest.approx(60.0)
    assert rt["seconds"] > 0 and rt["x_realtime"] == pytest.approx(60.0 / rt["seconds"])


def test_json_and_markdown_outputs():
    recs = _records()
    res = evaluate_peaks(recs, [LOCALMAX, _det("none", lambda x, fs: np.empty(0, int))],
                         ["clean", "gaussian:10"], noise_fn=white_noise, progress=False)
    data = json.loads(res.to_json())  # NaN (ADE with no matches) must become null
    assert data["tolerances_ms"] == [50.0, 25.0]
    none_all = [p for p in data["pooled"] if p["dataset"] == "all" and p["detector"] == "none"]
    assert none_all and none_all[0]["scores"]["50ms"]["ade_ms"] is None
    assert len(data["rows"]) == 3 * 2 * 2
    md = res.to_markdown()
    assert "| detector | condition | P @50ms | R @50ms | F1 @50ms | ADE ms @50ms | F1 @25ms |" in md
    assert "### setA" in md and "### setB" in md and md.index("### setB") < md.index("### all")
    assert "| localmax | clean | 1.000 | 1.000 | 1.000 | 0.0 | 1.000 | 3 |" in md
    assert "| none | gaussian:10 | 1.000 | 0.000 | 0.000 | - |" in md


def test_one_json_cleaner_for_results_and_runtime_events():
    from ppg_edge.edge_runtime import sinks
    from ppg_edge.evaluate import harness

    assert harness.json_safe is sinks.json_safe
    doc = {"a": float("nan"), "b": [np.float32(1.5), (np.int64(2), float("-inf"))],
           "c": {"d": np.array([1.0, np.nan])}, "e": "x"}
    assert sinks.json_safe(doc) == {"a": None, "b": [1.5, [2, None]], "c": {"d": [1.0, None]}, "e": "x"}
    assert json.dumps(sinks.json_safe(doc), allow_nan=False)


def test_single_tolerance():
    res = evaluate_peaks(_records(), [LOCALMAX], ["clean"], tol_s=0.02, progress=False)
    assert res.tol_labels == ["20ms"]
    assert "F1 @20ms" in res.to_markdown()


@pytest.mark.parametrize(
    "spec, expect",
    [("clean", Condition("clean")), ("gaussian:10", Condition("gaussian", 10.0)),
     (" Motion:-3 ", Condition("motion", -3.0)), (("mains50", 20), Condition("mains50", 20.0))],
)
def test_parse_condition(spec, expect):
    assert parse_condition(spec) == expect


@pytest.mark.parametrize("spec, msg", [("gaussian", "KIND:SNR_DB"), ("pink:10", "unknown noise kind"),
                                        ("gaussian:ten", "not a number"), ("gaussian:inf", "finite")])
def test_bad_condition_raises(spec, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_condition(spec)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(conditions=[]), "no condition"),
        (dict(conditions=["clean", "clean"]), "twice"),
        (dict(tol_s=(0.05, -0.01)), "positive"),
        (dict(tol_s=()), "positive"),
        (dict(detectors=[]), "no detector"),
        (dict(detectors=["nk-unknown"]), "unknown detector"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, msg):
    args = dict(records=_records()[:1], detectors=[LOCALMAX], conditions=["clean"], progress=False)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=msg):
        evaluate_peaks(**args)


def test_duplicate_records_rejected():
    r = _records()[0]
    with pytest.raises(DataError, match="twice"):
        evaluate_peaks([r, r], [LOCALMAX], progress=False)


def test_noise_without_synth_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ppg_edge.synth", None)  # import fails
    with pytest.raises(ConfigError, match="add_noise"):
        evaluate_peaks(_records()[:1], [LOCALMAX], ["gaussian:10"], progress=False)


def test_noise_function_with_wrong_length_is_rejected():
    with pytest.raises(DataError, match="noise function returned"):
        evaluate_peaks(_records()[:1], [LOCALMAX], ["gaussian:10"],
                       noise_fn=lambda x, fs, k, s, rng: x[:-1], progress=False)


def test_real_nk_detector_in_the_harness():
    rng = np.random.default_rng(9)
    recs = [make_record("setA", "n1", 125.0, 30.0, 75.0, rng)]
    res = evaluate_peaks(recs, ["nk-elgendi"], ["clean", "gaussian:10"], noise_fn=white_noise,
                         progress=False)
    assert res.pooled_row("all", "clean", "nk-elgendi")["scores"]["50ms"]["f1"] >= 0.95
    assert res.pooled_row("all", "gaussian:10", "nk-elgendi")["scores"]["50ms"]["f1"] >= 0.8
