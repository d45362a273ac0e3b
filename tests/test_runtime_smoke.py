"""The deploy smoke check's sensor part (edge_runtime.smoke): the real driver and the device
path on the release's own files; every device problem is a failed check with its reason."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ppg_edge.boards import load_board
from ppg_edge.boards.deploy.bundle import build_bundle
from ppg_edge.boards.deploy.smoke import check_release
from ppg_edge.edge_runtime import smoke
from ppg_edge.edge_runtime.sensors import FaultPlan, VirtualClock, open_sensor

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    for mode in ("float32", "int8"):
        rm.copy_model(rm.tiny_model("peaks-fixed", mode), d)
    return d


def _bundle(tmp_path, board: str, models=None, **kw):
    w = tmp_path / "ppg_edge-0.1.0-py3-none-any.whl"
    w.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return build_bundle(tmp_path / "bundle", load_board(board), wheel=w, models_dir=models, now=1_700_000_000,
                        **kw)


def _sensor_check(res):
    return next(c for c in res["checks"] if c["check"] == "sensor")


def test_virtual_board_streams_a_window_through_the_int8_model(tmp_path, models_dir):
    b = _bundle(tmp_path, "virtual-rpi4", models_dir)
    res = check_release(b.path)
    assert res["ok"], res["checks"]
    chk = _sensor_check(res)
    assert chk["status"] == "pass" and "none lost" in chk["detail"] and "1 inferred" in chk["detail"]
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert out["model"].startswith("tiny-peaks-fixed-int8")  # int8 preferred
    assert out["sensor"] == "emulated" and out["lost"] == 0 and out["windows"] >= 1
    # one model window (2 s at 125 Hz) + 1 s at the board's 100 Hz, in whole FIFO bursts
    assert 300 <= out["samples"] <= 340


def test_the_sensor_check_runs_the_model_the_service_runs(tmp_path, models_dir):
    """Not the first int8 model by name: the one service.json (and so the unit's ExecStart) names."""
    import json

    b = _bundle(tmp_path, "virtual-rpi4", models_dir, peak_model="tiny-peaks-fixed-float32-125hz-c1-s0")
    service = json.loads((b.path / "service.json").read_text())
    assert service["model"] == "models/tiny-peaks-fixed-float32-125hz-c1-s0.tflite"
    unit = (b.path / "systemd/ppg-edge.service").read_text()
    assert "--model /opt/ppg-edge/current/models/tiny-peaks-fixed-float32-125hz-c1-s0.tflite" in unit
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert out["ok"], out
    assert out["model"] == "tiny-peaks-fixed-float32-125hz-c1-s0.tflite"
    # a service that names a model the release lacks fails the check, with the reason
    (b.path / "service.json").write_text(json.dumps({**service, "model": "models/gone.tflite"}))
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert not out["ok"] and "models/gone.tflite is not in the release" in out["detail"]
    (b.path / "service.json").unlink()
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert not out["ok"] and "no readable service configuration" in out["detail"]


def test_the_service_model_is_chosen_in_the_bundle_and_checked(tmp_path, models_dir):
    from ppg_edge.boards.deploy.bundle import check_models, service_config
    from ppg_edge.errors import ConfigError

    pairs = check_models(models_dir)
    assert service_config("rpi4b", pairs)["model"] == "models/tiny-peaks-fixed-int8-125hz-c1-s0.tflite"
    assert service_config("rpi4b", [])["model"] is None
    # the board's own choice (runtime.peak_model) is taken when the bundle has it, and says why
    boards_pick = [(tmp_path / "peaks-Type30-float32.tflite", pairs[0][1])] + pairs
    chosen = service_config("rpi-zero-2w", boards_pick)
    assert chosen["model"] == "models/peaks-Type30-float32.tflite", chosen
    assert "bench arm" in chosen["model_chosen_by"], chosen
    fallback = service_config("rpi-zero-2w", pairs)
    assert "not in the bundle" in fallback["model_chosen_by"], fallback
    with pytest.raises(ConfigError, match="not in the bundle"):
        service_config("rpi4b", pairs, peak_model="peaks-Type30-int8")
    with pytest.raises(ConfigError, match="not 'bp'"):
        service_config("rpi4b", pairs, bp_model="tiny-peaks-fixed-int8-125hz-c1-s0")


def test_real_board_without_i2c_fails_with_the_reason(tmp_path, models_dir, monkeypatch):
    b = _bundle(tmp_path, "rpi4b", models_dir)
    monkeypatch.setattr("ppg_edge.edge_runtime.sensors.os.path.exists", lambda p: False)
    res = check_release(b.path)
    chk = _sensor_check(res)
    assert not res["ok"] and chk["status"] == "fail" and "no I2C bus /dev/i2c-1" in chk["detail"]
    # a bench Pi without the sensor wired can say so
    monkeypatch.setenv("PPG_EDGE_SENSOR", "emulated")
    assert _sensor_check(check_release(b.path))["status"] == "pass"
    monkeypatch.setenv("PPG_EDGE_SENSOR", "replay")
    out = smoke.smoke_check(b.path, "rpi4b")
    assert not out["ok"] and "cannot be smoke-checked" in out["detail"]


def _emulated_with(**kw):
    def opener(name, board, settings, seconds, events):
        import numpy as np

        light = 250.0 - 3.0 * np.sin(2 * np.pi * 1.2 * np.arange(int((seconds + 2) * 250)) / 250.0)
        return open_sensor("emulated", source=light, source_fs=250.0, clock=VirtualClock(), settings=settings,
                           on_event=events.append, **kw)
    return opener


@pytest.mark.parametrize("kw, needle", [
    ({"part_id": 0x11}, "PART_ID"),                               # another chip at 0x57
    ({"faults": FaultPlan(fail_from=1)}, "HardwareError"),        # a dead bus: retries end in an error
    ({"faults": FaultPlan(stuck_fifo_after_s=0.5)}, "FIFO not advancing"),  # the FIFO stops filling
])
def test_chip_faults_fail_the_check_without_raising(tmp_path, models_dir, monkeypatch, kw, needle):
    b = _bundle(tmp_path, "virtual-rpi4", models_dir)
    monkeypatch.setattr(smoke, "_sensor", _emulated_with(**kw))
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert out["ok"] is False and needle in out["detail"], out


def test_missing_board_file_fails(tmp_path, models_dir):
    b = _bundle(tmp_path, "virtual-rpi4", models_dir)
    (b.path / "board" / "virtual-rpi4.toml").unlink()
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert not out["ok"] and "no board file" in out["detail"]
    assert not smoke.smoke_check(b.path, None)["ok"]
    (b.path / "board" / "virtual-rpi4.toml").write_text("identifier = [")  # not TOML
    out = smoke.smoke_check(b.path, "virtual-rpi4")
    assert not out["ok"] and out["detail"].startswith("board file:")
