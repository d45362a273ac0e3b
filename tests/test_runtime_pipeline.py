"""End to end: `ppg-edge run` over the real driver on the emulated chip; bad input; BP stage;
the runtime importing and running with TensorFlow and scipy blocked."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import runtime_models as rm

from ppg_edge.cli import main
from ppg_edge.dsp.pipeline import peaks_preprocessing
from ppg_edge.edge_runtime.bp import BPStage
from ppg_edge.edge_runtime.pipeline import ArrayReplay, FloatBlock, Pipeline, StatusLine
from ppg_edge.edge_runtime.sensors import Block
from ppg_edge.edge_runtime.sinks import CallbackSink, JsonLinesSink, MemorySink
from ppg_edge.errors import ConfigError, ModelError
from ppg_edge.synth import synth_ppg


def _events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def fixed_model():
    return rm.tiny_model("peaks-fixed", "float32")


@pytest.mark.parametrize("gate", ["network", "auto"])
def test_run_emulated_end_to_end(gate, fixed_model, tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    bp = rm.tiny_model("bp", "float32")
    rc = main(["run", "--board", "virtual-rpi4", "--source", "emulated", "--duration", "30",
               "--speed", "0", "--hr", "80", "--model", str(fixed_model), "--bp-model", str(bp),
               "--gate", gate, "--out", str(out)])
    assert rc == 0
    ev = _events(out)
    summary = ev[-1]
    assert summary["type"] == "summary" and summary["backend"] == "ai-edge-litert"
    assert summary["beats_refused"] == 0  # a clean synthetic pulse: nothing comes too close to a beat
    assert summary["samples"] == pytest.approx(3000, abs=20) and summary["lost"] == 0
    beats = [e for e in ev if e["type"] == "beat"]
    idx = np.array([b["index"] for b in beats])
    assert np.all(np.diff(idx) >= 0.3 * 125)  # one beat each, never duplicated across windows
    assert len(beats) == pytest.approx(30 * 80 / 60, abs=3)
    assert summary["hr_bpm"] == pytest.approx(80, abs=4)
    if gate == "network":
        assert summary["paths"] == {"network": summary["windows"] - summary["suppressed"]}
    else:
        assert set(summary["paths"]) <= {"network", "classic"} and summary["paths"].get("classic", 0) > 0
    bps = [e for e in ev if e["type"] == "bp"]
    # the tiny model's manifest has no CV block: nobody measured its worth, so nothing is shown,
    # and each event says why; the model's own (uncalibrated) stretch mean is still recorded
    assert bps and all(e["sbp"] is None and e["dbp"] is None for e in bps)
    assert all("no cross-validation" in e["withheld"]["sbp"] for e in bps)
    assert all(np.isfinite([e["uncalibrated"]["sbp"], e["uncalibrated"]["dbp"]]).all() for e in bps)
    assert bps[-1]["stretch"]["quality"] == "stable" and bps[-1]["calibrated"] is False
    assert capsys.readouterr().err.count("beats") >= 1  # the live status line


def test_run_replay_record_with_nan(tmp_path, fixed_model, rng):
    # a float record with NaN: an event and suppressed windows, never a crash
    s = synth_ppg(20, 125.0, rng, hr_bpm=70).signal
    s[1000:1003] = np.nan
    s[1800] = np.inf
    sink = MemorySink()
    pipe = Pipeline(125.0, sink, model_path=fixed_model)
    summary = pipe.run(ArrayReplay(s, 125.0, block_size=30).blocks())
    nonfinite = sink.of("nonfinite")
    assert [e["index"] for e in nonfinite] == [1000, 1800] and summary["nonfinite"] == 4
    bad = [e for e in sink.of("quality") if not e["ok"]]
    assert {e["reason"] for e in bad} == {"nonfinite"}
    assert all(e["start"] <= 1000 + 10 < e["start"] + 250 or e["start"] <= 1800 + 10 < e["start"] + 250
               for e in bad)  # only windows covering the bad samples (resampler reach: a few samples)
    assert not any(990 <= e["index"] <= 1010 for e in sink.of("beat"))
    assert summary["beats"] > 10


def test_lost_samples_and_sensor_events_are_counted(fixed_model):
    sink = MemorySink()
    pipe = Pipeline(100.0, sink, model_path=fixed_model, full_scale=(1 << 18) - 1)
    sig = 100000 + 2000 * synth_ppg(12, 100.0, np.random.default_rng(1)).signal

    def block(first, n, sat=None):
        ir = np.round(sig[first:first + n]).astype(np.int32)
        s = np.zeros(n, dtype=bool) if sat is None else sat
        return Block(red=ir, ir=ir, first_index=first, lost=0, t=first / 100, fs=100.0,
                     resolution_bits=18, saturated=s)

    pipe.process_block(block(0, 300))
    pipe.process_block(block(340, 300))  # 40 samples lost (overflow)
    from ppg_edge.edge_runtime.sensors import SensorEvent
    pipe.sensor_event(SensorEvent("overflow", 3.4, {"lost": 40, "estimated": False}))
    pipe.process_block(block(640, 500))
    summary = pipe.finish()
    assert summary["lost"] == 40 and sink.of("lost")[0] == {"type": "lost", "t": 3.0, "index": 300, "samples": 40}
    assert summary["sensor_events"] == {"overflow": 1} and sink.of("sensor")[0]["lost"] == 40
    assert summary["suppressed_by"].get("lost", 0) >= 2
    with pytest.raises(Exception, match="before"):
        pipe.process_block(block(100, 10))


def test_replay_max30102_finger_off(data_root, tmp_path):
    out = tmp_path / "off.jsonl"
    rc = main(["run", "--board", "virtual-rpi4", "--source", "replay", "--record",
               "max30102-raw/sergiomagdalenop_rpi", "--speed", "0", "--no-status",
               "--data-root", str(data_root), "--out", str(out)])
    assert rc == 0
    ev = _events(out)
    q = [e for e in ev if e["type"] == "quality"]
    assert q and all(not e["ok"] and e["reason"] == "finger_off" for e in q)
    assert ev[-1]["beats"] == 0


def test_cli_errors(fixed_model, tmp_path, capsys):
    assert main(["run", "--board", "virtual-rpi4", "--source", "replay", "--no-status"]) == 1
    assert "--record" in capsys.readouterr().err
    assert main(["run", "--board", "nope", "--no-status"]) == 1
    bp = rm.tiny_model("bp", "float32")
    assert main(["run", "--board", "virtual-rpi4", "--speed", "0", "--duration", "3", "--no-status",
                 "--model", str(bp), "--out", str(tmp_path / "x")]) == 1
    assert "'bp' model where a 'peaks' model is needed" in capsys.readouterr().err


def test_bp_stage_resamples_and_scales(rng):
    bp = rm.tiny_model("bp", "float32")
    stage = BPStage(bp, sensor_fs=100.0)
    assert stage.resampler.step == 100.0 / 125.0  # input samples per model-rate sample
    x = 2000 * synth_ppg(12, 100.0, rng).signal
    est = stage.push(x)
    assert len(est) == 10  # ~11.9 s at 125 Hz after the resampler's latency: 10 windows of 2 s, hop 1 s
    keras = rm.keras_reference("bp")
    w = stage.stream  # the raw output is the manifest's scaling applied to the model output
    assert all(set(e.values) == {"sbp", "dbp"} for e in est)
    spec = stage.spec
    from ppg_edge.edge_runtime.resample import StreamResampler
    y, _ = StreamResampler(100.0, 125.0).push(x)
    X = spec.apply(y)
    ref = keras.predict(X[:len(est)], verbose=0) * [15.0, 10.0] + [120.0, 80.0]
    got = np.array([[e.window_values["sbp"], e.window_values["dbp"]] for e in est])
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert w.next_window == len(est)


def test_sinks(tmp_path):
    buf = io.StringIO()
    s = JsonLinesSink(buf)
    s.emit({"type": "hr", "hr_bpm": float("nan"), "v": np.float32(1.5)})
    assert json.loads(buf.getvalue()) == {"type": "hr", "hr_bpm": None, "v": 1.5}
    got = []
    c = CallbackSink(got.append, types={"beat"})
    c.emit({"type": "beat"})
    c.emit({"type": "hr"})
    assert got == [{"type": "beat"}]
    with pytest.raises(ConfigError):
        JsonLinesSink(tmp_path / "no" / "such" / "dir.jsonl")
    st = io.StringIO()
    line = StatusLine(st, every_s=0)
    line.update("beats 3")
    line.close()
    assert st.getvalue().startswith("\rbeats 3") and st.getvalue().endswith("\n")


def test_classic_only_without_model():
    sink = MemorySink()
    x = synth_ppg(20, 100.0, np.random.default_rng(5), hr_bpm=60).signal
    summary = Pipeline(100.0, sink).run(ArrayReplay(x, 100.0).blocks())
    assert summary["paths"] == {"classic": summary["windows"]}
    assert summary["hr_bpm"] == pytest.approx(60, abs=3)
    with pytest.raises(ConfigError, match="needs a peak model"):
        from ppg_edge.edge_runtime.quality import QualityConfig
        Pipeline(100.0, sink, quality=QualityConfig(gate="network"))
    with pytest.raises(ModelError):
        Pipeline(100.0, sink, model_path="/nonexistent/model.tflite")
    assert peaks_preprocessing(100.0).window == 200
    # decoder settings laid over the path's own (what `ppg-edge bench hop --rr-refractory` sweeps)
    pipe = Pipeline(100.0, MemorySink(), decoder={"rr_refractory": 0.4})
    assert pipe.decoder.spec.rr_refractory == 0.4 and pipe.decoder.spec.snap  # the classic path's snap kept
    with pytest.raises(ConfigError, match="unknown decoder setting"):
        Pipeline(100.0, sink, decoder={"rr_refractoy": 0.4})
    with pytest.raises(ConfigError, match="fraction"):
        Pipeline(100.0, sink, decoder={"rr_refractory": 2})


ON_DEVICE = """
    import json, sys
    import numpy as np
    import ppg_edge.edge_runtime as er
    from ppg_edge.edge_runtime import pipeline, stream, interpreter, decoder, quality, bp, sinks, resample, smoke
    from ppg_edge.edge_runtime.sensors import open_sensor, VirtualClock
    from ppg_edge.boards import load_board
    sink = sinks.MemorySink()
    pipe = pipeline.Pipeline(100.0, sink, model_path=sys.argv[1], bp_model_path=sys.argv[2],
                             full_scale=(1 << 18) - 1)
    t = np.arange(3000) / 100.0
    light = 250 + 3 * np.sin(2 * np.pi * 1.2 * t) ** 8
    sensor = open_sensor("emulated", source=light, source_fs=100.0, clock=VirtualClock())
    summary = pipe.run(sensor.blocks(duration_s=20))
    bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "scipy")]
    print(json.dumps({"summary": summary["windows"], "beats": summary["beats"], "bad": bad,
                      "bp": len(sink.of("bp")), "backend": summary["backend"]}))
"""


def test_runtime_runs_with_tensorflow_and_scipy_blocked(fixed_model):
    bp = rm.tiny_model("bp", "float32")
    r = rm.run_blocked(ON_DEVICE, ("tensorflow", "scipy", "tf_keras", "keras"), fixed_model, bp, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["bad"] == [] and res["backend"] == "ai-edge-litert"
    assert res["summary"] >= 15 and res["beats"] >= 15 and res["bp"] >= 15


def test_windows_come_out_with_the_burst_that_completes_them(fixed_model):
    """The pipeline holds FIFO bursts until a window can be completed: no added latency."""
    from ppg_edge.edge_runtime.resample import StreamResampler

    sink = MemorySink()
    pipe = Pipeline(100.0, sink, model_path=fixed_model)
    x = 1000 + 50 * synth_ppg(30, 100.0, np.random.default_rng(2)).signal
    ref = StreamResampler(100.0, 125.0)
    n = 0
    for first in range(0, x.size, 17):
        blk = x[first:first + 17]
        pipe.process_block(FloatBlock(ir=blk, first_index=first, lost=0, t=0.0, fs=100.0,
                                      saturated=np.zeros(blk.size, dtype=bool)))
        n += blk.size
        possible = 0
        while ref.inputs_needed(possible * 125 + 250) <= n:
            possible += 1
        assert len(sink.of("quality")) == possible, f"after {n} samples"
    assert possible >= 25
