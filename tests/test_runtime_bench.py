"""The runtime benchmark's parts: fast SQI equal to its definition, the bench command end to end
on a short record, and the benchmark/offline modules importing no TensorFlow or scipy."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ppg_edge.edge_runtime.bench import reference_on_model_axis
from ppg_edge.edge_runtime.quality import sqi_autocorr
from ppg_edge.edge_runtime.sensors import Max30102Settings
from ppg_edge.provenance import cpu_model


def _sqi_loop(x, fs, lo_s=0.27, hi_s=1.5):
    """The definition: the best overlap-normalised correlation, lag by lag."""
    v = np.asarray(x, dtype=np.float64)
    v = v - v.mean()
    n = v.size
    lo, hi = max(1, int(lo_s * fs)), min(n - 2, int(hi_s * fs))
    if hi <= lo or not np.any(v):
        return 0.0
    best = 0.0
    for lag in range(lo, hi + 1):
        a, b = v[:-lag], v[lag:]
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        if den > 0:
            best = max(best, float(np.dot(a, b) / den))
    return float(np.clip(best, 0.0, 1.0))


def test_fft_sqi_equals_the_per_lag_definition(rng):
    for k in range(60):
        n = int(rng.integers(40, 400))
        t = np.arange(n)
        x = (np.sin(2 * np.pi * t / rng.uniform(20, 150)) + rng.uniform(0, 1) * rng.standard_normal(n)
             if k % 2 else np.cumsum(rng.standard_normal(n)))
        assert sqi_autocorr(x, 125.0) == pytest.approx(_sqi_loop(x, 125.0), abs=1e-9)
    assert sqi_autocorr(np.zeros(250), 125.0) == 0.0
    assert sqi_autocorr(np.ones(20), 125.0) == 0.0  # too short for any lag
    x = np.zeros(250)
    x[::100] = 1.0  # 1.25 Hz pulse train: perfectly periodic at lag 100
    assert sqi_autocorr(x, 125.0) == pytest.approx(1.0)


def test_reference_axis_and_machine():
    s = Max30102Settings(sample_rate=400, averaging=4)
    # a peak at 1 s of a 300 Hz record: sensor samples lie 3.75 ms late, so 125 Hz index 124.53 -> 125
    ref = reference_on_model_axis(np.array([300, 900, 10_000]), 300.0, 3000, s, 125.0)
    assert ref.tolist() == [125, 375]
    assert cpu_model()


def test_bench_batch_playback_import_no_tensorflow_scipy_or_neurokit():
    import runtime_models as rm

    r = rm.run_blocked("""
        from ppg_edge.edge_runtime import bench, batch, playback
        print("ok")
    """, ("tensorflow", "scipy", "tf_keras", "neurokit2"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.data
@pytest.mark.slow
def test_bench_runtime_command_on_a_short_record(data_root, tmp_path, capsys):
    import runtime_models as rm

    from ppg_edge.cli import main

    i8, f32 = rm.tiny_model("peaks", "int8"), rm.tiny_model("peaks", "float32")
    out = tmp_path / "rb.json"
    rc = main(["bench", "runtime", "--model", str(i8), "--float-model", str(f32), "--records", "0009",
               "--seconds", "30", "--data-root", str(data_root), "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["records"] == ["capnobase/0009"] and res["machine"]["cpu_model"]
    assert "bench runtime" in res["command"] and res["machine"]["pinned_core"] is not None
    s = res["summary"]
    assert s["signal_seconds"]["clean"] == pytest.approx(30, abs=0.5)
    assert s["frontend"]["float_us_per_sample"] > 0 and s["inference_per_window"]["int8"]["windows"] >= 25
    for key in ("network_int8", "network_float32", "gated_int8", "classic"):
        assert s["pipeline"]["clean"][key]["x_realtime"] > 1
    assert s["peers"]["clean"]["nk-elgendi"]["f1"] > 0.9  # the peers see the same, correctly aligned samples
    assert s["pipeline"]["clean"]["classic"]["f1"] > 0.9  # and so does the runtime's classic path
    assert set(res["targets"]) == {"pipeline_int8_network_x_realtime_min", "gated_over_elgendi_cost_clean_max"}
    assert len(res["models"]["int8_sha256"]) == 64 and "process_time" in res["clock"]
    md = out.with_suffix(".md").read_text()
    assert "| ratio | measured | target | met |" in md and res["machine"]["cpu_model"] in md
    with pytest.raises(Exception, match="not a TEST subject"):
        main(["--debug", "bench", "runtime", "--model", str(i8), "--float-model", str(f32), "--records", "0023",
              "--seconds", "5", "--data-root", str(data_root), "--out", str(tmp_path / "x.json")])


@pytest.mark.parametrize("sub", ["runtime", "hop", "gate"])
def test_bench_out_must_be_a_json_path_before_any_work(tmp_path, sub):
    from ppg_edge.cli import main

    extra = {"runtime": ["--float-model", "f.tflite"], "hop": ["--hop", "225"], "gate": ["--sqi", "0.9"]}[sub]
    for out, msg in ((tmp_path, "is a folder"), (tmp_path / "r.md", "must end in .json")):
        with pytest.raises(Exception, match=msg):  # refused before the model (which does not exist) is read
            main(["--debug", "bench", sub, "--model", "missing.tflite", *extra, "--out", str(out)])


def test_gate_threshold_is_never_chosen_on_test_subjects():
    from ppg_edge.errors import ConfigError
    from ppg_edge.evaluate.runtime_bench import gate_sweep

    with pytest.raises(ConfigError, match="not 'test'"):
        gate_sweep(model="unused.tflite", part="test")
