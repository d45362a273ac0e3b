"""Bad input through the whole runtime (emulated chip + real driver + pipeline): each case ends
in a clear error or recorded events, never a crash, a hang or an uncounted lost sample.

The unit-level cases live beside their modules (test_max30102.py: PART_ID, I2C storms, FIFO
overflow, saturation flags; test_runtime_interpreter.py: tampered manifest, hash, rate;
test_runtime_stream.py / test_runtime_pipeline.py: NaN/inf, lost samples;
test_runtime_decoder_quality.py: finger off on real recordings). Here they run end to end."""
from __future__ import annotations

import numpy as np
import pytest
import runtime_models as rm

from ppg_edge.cli import main
from ppg_edge.edge_runtime.pipeline import Pipeline
from ppg_edge.edge_runtime.playback import light_from_ppg
from ppg_edge.edge_runtime.sensors import FaultPlan, Max30102Settings, VirtualClock, open_sensor
from ppg_edge.edge_runtime.sinks import MemorySink
from ppg_edge.errors import ConfigError, HardwareError
from ppg_edge.synth import synth_ppg

SETTINGS = Max30102Settings(sample_rate=400, averaging=4)  # 100 Hz out, 18 bit
FULL = (1 << 18) - 1


@pytest.fixture(scope="module")
def fixed_model():
    return rm.tiny_model("peaks-fixed", "float32")


def _run(light, fixed_model, faults=None, duration=40.0):
    events = []
    sensor = open_sensor("emulated", source=light, source_fs=100.0, clock=VirtualClock(), settings=SETTINGS,
                         faults=faults, on_event=events.append)
    sink = MemorySink()
    pipe = Pipeline(100.0, sink, model_path=fixed_model, full_scale=FULL)
    return pipe.run_sensor(sensor, events, duration), sink


def _light(seconds=45, hr=72, seed=3):
    s = synth_ppg(seconds, 100.0, np.random.default_rng(seed), hr_bpm=hr)
    return light_from_ppg(s.signal), s


def _windows_with(sink, reason):
    return [e for e in sink.of("quality") if not e["ok"] and e["reason"] == reason]


def test_ambient_light_saturation_is_suppressed_with_a_reason(fixed_model):
    light, _ = _light()
    summary, sink = _run(light, fixed_model, FaultPlan(saturate_between_s=(20.0, 22.0)))
    sat = _windows_with(sink, "saturation")
    assert sat and summary["suppressed_by"]["saturation"] == len(sat)
    starts_s = np.array([e["start"] for e in sat]) / 125.0
    assert np.all((starts_s > 20.0 - 2.1) & (starts_s < 22.0 + 0.1))  # only windows touching the flood
    assert summary["sensor_events"].get("saturation", 0) >= 1  # the driver says so too
    beats = np.array([e["t"] for e in sink.of("beat")])
    assert not np.any((beats > 20.05) & (beats < 21.95))  # no beat made from full-scale samples
    assert summary["beats"] > 30 and summary["lost"] == 0


def test_finger_lifted_mid_stream_then_put_back(fixed_model):
    light, _ = _light()
    light = light.copy()
    light[1500:2300] = 1.5  # 15-23 s: no finger (0.6% of full scale, as the no-finger recording)
    summary, sink = _run(light, fixed_model)
    off = _windows_with(sink, "finger_off")
    assert off and summary["suppressed_by"]["finger_off"] == len(off)
    beats = np.array([e["t"] for e in sink.of("beat")])
    assert not np.any((beats > 15.2) & (beats < 22.8))
    assert np.sum(beats > 26) >= 10  # beats come back after the finger does
    after = [e for e in sink.of("beat") if e["t"] > 26]
    assert after[0]["rr_s"] is None  # no RR interval across the gap


def test_i2c_error_storm_is_counted_and_loses_no_sample(fixed_model):
    light, _ = _light()
    summary, sink = _run(light, fixed_model, FaultPlan(fail_transfers=FaultPlan.burst(200, 4)))
    assert summary["sensor_events"].get("i2c_error", 0) >= 1
    assert summary["lost"] == 0 and summary["samples"] == pytest.approx(4000, abs=20)


def test_dead_bus_ends_in_a_hardware_error_not_a_hang(fixed_model):
    light, _ = _light()
    with pytest.raises(HardwareError):
        _run(light, fixed_model, FaultPlan(fail_from=300))


def test_wrong_part_id_refused_before_streaming():
    light, _ = _light(5)
    with pytest.raises(HardwareError, match="PART_ID|part"):
        open_sensor("emulated", source=light, source_fs=100.0, clock=VirtualClock(), settings=SETTINGS,
                    part_id=0x11)


def test_fifo_overflow_is_counted_as_lost_samples(fixed_model):
    """A reader that stalls for 2 s: the chip overflows, the driver counts the samples from
    OVF_COUNTER, the pipeline reports them as 'lost' and suppresses the windows over the gap."""
    light, _ = _light()
    events = []
    clock = VirtualClock()
    sensor = open_sensor("emulated", source=light, source_fs=100.0, clock=clock, settings=SETTINGS,
                         on_event=events.append)
    sink = MemorySink()
    pipe = Pipeline(100.0, sink, model_path=fixed_model, full_scale=FULL)
    try:
        for k, block in enumerate(sensor.blocks(duration_s=30)):
            if k == 40:
                clock.sleep(2.0)  # the reader is late: 200 samples arrive into a 32-sample FIFO
            for ev in events:
                pipe.sensor_event(ev)
            events.clear()
            pipe.process_block(block)
    finally:
        sensor.close()
    summary = pipe.finish()
    assert summary["lost"] >= 150 and summary["sensor_events"].get("overflow", 0) >= 1
    assert summary["samples"] + summary["lost"] == pytest.approx(3000, abs=20)  # every sample accounted for
    assert summary["suppressed_by"].get("lost", 0) >= 2


def test_sample_rates_the_model_was_not_built_for(fixed_model):
    with pytest.raises(ConfigError, match="Hz"):
        Pipeline(10.0, MemorySink(), model_path=fixed_model)  # below the model's 8 Hz band: aliasing
    Pipeline(np.pi * 100, MemorySink(), model_path=fixed_model)  # any ratio resamples
    with pytest.raises(ConfigError, match="outside the 25-1000 Hz"):
        Pipeline(1600.0, MemorySink(), model_path=fixed_model)
    bp = rm.tiny_model("bp", "float32")  # band-pass up to 20 Hz: 30 Hz samples cannot carry it
    with pytest.raises(ConfigError, match="BP model"):
        Pipeline(30.0, MemorySink(), bp_model_path=bp, model_path=fixed_model)


def test_run_refuses_a_tampered_model_with_one_line(fixed_model, tmp_path, capsys):
    bad = rm.copy_model(fixed_model, tmp_path / "m")
    blob = bytearray(bad.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    rc = main(["run", "--board", "virtual-rpi4", "--speed", "0", "--duration", "3", "--no-status",
               "--model", str(bad), "--out", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert rc == 1 and "ppg-edge: error:" in err and "sha256" in err.lower()
