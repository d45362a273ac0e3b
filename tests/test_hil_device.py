"""The real device path behind the DUT protocol, suites as data, and the faults suite end to end.

Models: the tiny hand-weighted TFLite peak model (tests/runtime_models.py, high near the PPG's peaks) tests the plumbing; the
committed device models (models/device/) are used by the e2e test when present.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.boards import load_board
from ppg_edge.cli import main
from ppg_edge.errors import ConfigError, DataError
from ppg_edge.hil_tests.device import DevicePipeline, reference_beats, to_light
from ppg_edge.hil_tests.pipeline import Stimulus, synthetic_ppg
from ppg_edge.hil_tests.suites import load_suite, suite_names

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def models():
    return {"int8": rm.tiny_model("peaks-fixed", "int8"), "float32": rm.tiny_model("peaks-fixed", "float32")}


@pytest.fixture
def light_stim(rng):
    s = synthetic_ppg(rng, fs=250.0, seconds=20.0, id="syn")
    return Stimulus(id="syn-light", samples=to_light(s.samples), fs=s.fs, peaks=s.peaks)


def _run(pipe, stim, n, chunk):
    beats = []
    for j in range(0, n, chunk):
        beats += [r.index for r in pipe.feed(stim.samples[j:min(j + chunk, n)])]
    return beats


def test_device_pipeline_runs_driver_and_model_and_matches_host_reference(models, light_stim):
    board = load_board("virtual-rpi4")
    pipe = DevicePipeline(models, model="int8", board=board)
    assert pipe.describe()["models"].startswith("float32:") and pipe.settings()["model"] == "int8"
    pipe.bind(light_stim)
    n = 15 * 250
    beats = _run(pipe, light_stim, n, 25)
    st = pipe.take_window_stats()
    assert pipe.driver.samples_read > 0 and pipe.chip.transfers > 0   # the real driver read the chip
    assert st["inference_us"] and all(v > 0 for v in st["inference_us"])
    # every sensor sample up to the last processed window has an arrival -> result latency
    assert 1000 <= len(st["sample_latency_us"]) <= 1500 and min(st["sample_latency_us"]) >= 0
    assert st["chip_lost"] == st["driver_lost"] == 0
    again = reference_beats(light_stim, models["int8"], n_samples=n, chunk=25, board=board)
    assert beats == again and all(0 <= b < n for b in beats)
    with pytest.raises(DataError, match="not the bound stimulus"):
        pipe.feed(light_stim.samples[:10])       # out of order


def test_device_pipeline_faults_are_counted(models, light_stim):
    board = load_board("virtual-rpi4")
    pipe = DevicePipeline(models, board=board)
    pipe.configure("stall", "500:1.5")            # the DUT does not read for 1.5 s of signal
    pipe.bind(light_stim)
    _run(pipe, light_stim, 10 * 250, 25)
    st = pipe.take_window_stats()
    assert st["chip_lost"] > 0 and st["driver_lost"] == st["chip_lost"]
    assert st["events"].get("sensor:overflow", 0) >= 1 and st["events"].get("lost", 0) == st["chip_lost"]
    pipe.configure("stall", "none")
    pipe.configure("i2c_burst", "30:2")
    _run(pipe, light_stim, 5 * 250, 25)
    st = pipe.take_window_stats()
    assert st["i2c_errors"] == 2 and st["events"].get("sensor:i2c_error", 0) >= 1 and st["driver_lost"] == 0
    for key, value in (("stall", "x"), ("i2c_burst", "0:3"), ("gate", "nope"), ("speed", "-1"), ("nope", "1")):
        with pytest.raises(ConfigError):
            pipe.configure(key, value)


def test_corrupt_model_is_refused_and_previous_kept(models, tmp_path):
    from ppg_edge.errors import ModelError
    from ppg_edge.hil_tests.suites import flip_bytes

    bad = rm.copy_model(models["int8"], tmp_path)
    flip_bytes(bad)
    pipe = DevicePipeline(models, model="int8")
    with pytest.raises(ModelError):
        pipe.configure("model", str(bad))
    assert pipe.model_name == "int8"


def test_suites_load_and_validate(tmp_path):
    assert {"smoke", "accuracy", "performance", "faults", "soak"} <= set(suite_names())
    for name in suite_names():
        s = load_suite(name)
        assert s["steps"] and all(st["kind"] in ("measure", "soak", "bp", "link_drop", "corrupt_model",
                                                  "deploy_interrupted") for st in s["steps"])
    small = load_suite("accuracy", virtual=True)["steps"][0]
    assert small["windows"] < load_suite("accuracy")["steps"][0]["windows"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\nrecord = "capnobase/0009"\nexpect = { nope = 1 }\n')
    with pytest.raises(ConfigError, match="unknown expectation"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="no HIL suite"):
        load_suite("nonexistent")


@pytest.mark.slow
def test_faults_suite_local_dut_ends_every_fault_with_an_event(models, data_root, tmp_path, capsys):
    rc = main(["-q", "hil", "run", "--board", "virtual-rpi4", "--local-dut", "--suite", "faults",
               "--model", f"int8={models['int8']}", "--data-root", str(data_root),
               "--runs-dir", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    (folder,) = tmp_path.iterdir()
    res = json.loads((folder / "results.json").read_text())
    assert {"log.txt", "report.md", "latency_hist.png", "accuracy.png"} <= {p.name for p in folder.iterdir()}
    faults = {(e["step"], e["fault"]): e for e in res["events"] if e["kind"] == "fault"}
    want = {("i2c-error-burst", "i2c-error-burst"): "detected", ("i2c-bus-dead", "i2c-bus-dead"): "detected",
            ("fifo-overflow-stalled-dut", "fifo-overflow-stalled-dut"): "detected",
            ("finger-lifted", "finger-lifted"): "detected",
            ("serial-link-dropped", "link_drop"): "detected", ("serial-link-dropped", "link_restored"): "recovered",
            ("model-corrupted-on-device", "corrupt_model"): "detected",
            ("deploy-interrupted", "deploy_interrupted"): "detected",
            ("deploy-interrupted", "deploy_rollback"): "kept"}
    for key, outcome in want.items():
        assert key in faults, (key, sorted(faults))
        if key != ("model-corrupted-on-device", "corrupt_model"):
            assert faults[key]["outcome"] == outcome, faults[key]
    steps = {s["name"]: s for s in res["steps"]}
    over = steps["fifo-overflow-stalled-dut"]
    assert over["lost_samples"] > 0
    assert over["dut_counters"]["driver_lost"] == over["dut_counters"]["chip_lost"]   # nothing lost silently
    assert steps["finger-lifted"]["beats"] == 0
    assert "I2C" in steps["i2c-bus-dead"]["error"]
    assert res["checks_failed"] == 0 and res["status"] == "ok"


@pytest.mark.slow
def test_smoke_suite_json_has_the_headline_figures(models, data_root, tmp_path, capsys):
    rc = main(["-q", "hil", "run", "--board", "virtual-rpi4", "--local-dut", "--suite", "smoke",
               "--model", f"int8={models['int8']}", "--model", f"float32={models['float32']}",
               "--data-root", str(data_root), "--runs-dir", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    head = json.loads(out[out.index("{"):])
    assert set(head["latency_us"]["per_sample"]) >= {"p50", "p95", "p99", "max"}
    assert head["latency_method"].startswith("arrival -> result")
    assert head["energy_per_sample"][0]["method"].startswith("modelled: cpu_time")
    assert head["lost_samples"] == 0
    assert head["accuracy"]["f1"] is not None
    assert head["accuracy_vs_host"]["identical_loops"] == head["accuracy_vs_host"]["loops"] == 5


def test_stimulus_light_is_the_playbacks_light(rng):
    """One light mapping: the HIL stimulus and the runtime playback give the chip the same light."""
    from ppg_edge.edge_runtime.playback import light_from_codes, light_from_ppg

    x = rng.normal(0.0, 2.0, 500) + 7.0
    np.testing.assert_array_equal(to_light(x), light_from_ppg(x))
    assert np.median(to_light(x)) == pytest.approx(250.0) and np.std(to_light(x)) == pytest.approx(3.0)
    codes = np.array([0, 1 << 17, (1 << 18) - 1])
    light = to_light(codes, counts=True, adc_range_na=4096.0, led_ma=8.0)
    np.testing.assert_allclose(light, [0.0, 2048.0 / 8.0, 4096.0 * (1 - 2**-18) / 8.0])
    np.testing.assert_array_equal(light, light_from_codes(codes, 4096.0, 8.0))



def test_a_raw_log_stimulus_plays_through_the_ideal_converter(models, light_stim):
    """A stimulus from a real MAX30102 log (id max30102-raw-...) already carries that chip's noise and
    its stale repeats (the finger-coming-on step of the real-recordings suite counts them as held):
    the emulated chip adds none; every other stimulus gets its conversion noise."""
    from ppg_edge.edge_runtime.sensors import emulated
    from ppg_edge.hil_tests.device import RAW_STIMULUS_PREFIX

    pipe = DevicePipeline(models, model="int8", board=load_board("virtual-rpi4"))
    pipe.bind(light_stim)
    assert pipe.chip.adc_noise == emulated.ADC_NOISE_FS > 0
    raw = Stimulus(id=RAW_STIMULUS_PREFIX + "szymanel_rpi-0s-40s", samples=light_stim.samples, fs=light_stim.fs)
    pipe.bind(raw)
    assert pipe.chip.adc_noise == 0.0
