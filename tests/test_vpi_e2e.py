"""End to end: build the virtual Pi, deploy over real ssh, smoke-check one int8 inference
against the host (bit-exact), run the device path there (a real CapnoBase record through the
emulated MAX30102, the driver, the DSP and the int8 and float32 peak models) and compare it with
the same run on the host (int8 bit-exact, float within 1e-5), deploy a broken bundle and check
the rollback, tear down.

Slow (a few minutes from a warm cache; building the userland cold adds several). Skips with
the exact reason when this host cannot run an aarch64 chroot.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).parent))
import runtime_models as rm  # noqa: E402

RECORD = "capnobase/0009"        # a test subject of ppg_edge/data/splits/peaks.json
DEVICE_SECONDS = 6.0             # emulation is 130-430x slower: a short stretch


def _host_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chroot, mount)"
    for tool in ("ssh", "rsync", "ssh-keygen", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install qemu-user-static binfmt-support openssh-client rsync)"
    from ppg_edge.errors import HardwareError
    from ppg_edge.vpi.chroot import ensure_binfmt

    try:
        ensure_binfmt()
    except HardwareError as exc:
        return str(exc)
    return None


def _tiny_int8_model(path: Path, rng: np.random.Generator) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input(shape=(64, 1), batch_size=1)
    x = keras.layers.Conv1D(4, 5, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(3)(x)
    model = keras.Model(inp, out)
    calib = rng.standard_normal((32, 64, 1)).astype(np.float32)

    def rep():
        for w in calib:
            yield [w[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())


def test_vpi_deploy_smoke_device_path_and_rollback(tmp_path, rng, data_root):
    reason = _host_ready()
    if reason:
        pytest.skip(f"this host cannot run the virtual Pi: {reason}")
    pytest.importorskip("tensorflow")
    from ppg_edge.boards.registry import load_board
    from ppg_edge.deploy import Deployer, DeployError, HostKeyError, SSHRunner, build_bundle
    from ppg_edge.deploy.bundle import build_wheel, sha256_file
    from ppg_edge.deploy.smoke import run_model
    from ppg_edge.vpi import VirtualPi, build

    board = load_board("virtual-rpi4")
    vpi_dir = build(board, tmp_path / "vpi")
    wheel = build_wheel(tmp_path / "wheel")
    models = tmp_path / "models"
    models.mkdir()
    model = models / "tiny.tflite"
    _tiny_int8_model(model, rng)
    (models / "tiny.json").write_text(json.dumps({"sha256": sha256_file(model), "task": "smoke"}))
    host = run_model(model)
    assert host["outputs"][0]["dtype"] == "int8"
    # peak models with full manifests for the device path (tiny seeded Conv1D+LSTM, int8 and float32)
    peak = {mode: rm.copy_model(rm.tiny_model("peaks", mode), models) for mode in ("int8", "float32")}
    device_dir = Path(__file__).resolve().parents[1] / "models" / "device"
    for mode in ("int8", "float32"):       # the committed device models too, when they are there
        real = device_dir / f"peaks-Type30-{mode}.tflite"
        if real.is_file() and real.with_suffix(".json").is_file():
            peak[f"Type30-{mode}"] = rm.copy_model(real, models)
    from ppg_edge.hil_tests.device import record_stimulus, run_outputs

    stim = record_stimulus(RECORD, root=data_root, seconds=DEVICE_SECONDS + 1, board=board)
    n = int(DEVICE_SECONDS * stim.fs)
    host_runs = {mode: run_outputs(stim, path, n_samples=n, chunk=30, board=board) for mode, path in peak.items()}
    assert all(r["windows"] > 0 for r in host_runs.values())

    with VirtualPi(vpi_dir) as vpi:
        # Host keys are checked: a known_hosts without this key is refused before anything changes.
        other = tmp_path / "other_known_hosts"
        other.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd5ZAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
        bad = Deployer(SSHRunner(vpi.host, port=vpi.port, identity=vpi.identity, known_hosts=other),
                       service_manager="none")
        with pytest.raises(HostKeyError):
            bad.status()

        runner = SSHRunner(vpi.host, port=vpi.port, identity=vpi.identity, known_hosts=vpi.known_hosts)
        dep = Deployer(runner, service_manager="none")
        b1 = build_bundle(tmp_path / "b1", board, wheel=wheel, models_dir=models, now=1_700_000_000)
        rep = dep.deploy(b1)
        assert rep.ok and rep.previous is None
        assert dep.current_release() == b1.release
        dev = next(m for m in rep.smoke["models"] if m["model"] == "tiny.tflite")
        assert dev["backend"] == "ai_edge_litert"
        # int8 on the pinned Cortex-A72 must equal x86 bit for bit.
        assert dev["outputs"][0]["sha256"] == host["outputs"][0]["sha256"], (dev["outputs"], host["outputs"])
        assert dev["outputs"][0]["values"] == host["outputs"][0]["values"]
        assert {c["check"]: c["status"] for c in rep.smoke["checks"]}["files"] == "pass"

        # The device path in the virtual Pi on a real record, against the same run on the host.
        stim_path = vpi.root / "home/pi/stim.npy"
        np.save(stim_path, stim.samples)
        os.chmod(stim_path, 0o644)
        for mode, path in peak.items():
            out = runner.run(["/opt/ppg-edge/current/venv/bin/python", "-m", "ppg_edge.hil_tests.device",
                              "--model", f"/opt/ppg-edge/current/models/{path.name}", "--stimulus",
                              "/home/pi/stim.npy", "--fs", repr(stim.fs), "--samples", str(n), "--chunk", "30",
                              "--board", board.identifier])
            assert out.rc == 0, out.stderr[-2000:]
            dev_run = json.loads(out.stdout.strip().splitlines()[-1])
            ref = host_runs[mode]
            assert dev_run["machine"] == "aarch64" and dev_run["backend"] == "ai-edge-litert"
            assert dev_run["windows"] == ref["windows"] and dev_run["samples_read"] == ref["samples_read"]
            assert dev_run["driver_lost"] == dev_run["chip_lost"] == 0
            if mode.endswith("int8"):      # bit-exact on the pinned Cortex-A72
                assert dev_run["sha256"] == ref["sha256"] and dev_run["beats"] == ref["beats"]
            else:
                diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                           for a, b in zip(dev_run["outputs"], ref["outputs"]))
                assert diff <= 1e-5, diff

        # A broken model: bundles fine, fails on the device, the rollback keeps b1 current and working.
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "tiny.tflite").write_bytes(b"TFL3 this is not a flatbuffer" * 10)
        (broken / "tiny.json").write_text("{}")
        b2 = build_bundle(tmp_path / "b2", board, wheel=wheel, models_dir=broken, now=1_700_000_100)
        with pytest.raises(DeployError, match="rolled back"):
            dep.deploy(b2)
        assert dep.current_release() == b1.release
        assert dep.list_releases() == [b1.release]
        again = dep.smoke()
        tiny = next(m for m in again["models"] if m["model"] == "tiny.tflite")
        assert again["ok"] and tiny["outputs"][0]["sha256"] == host["outputs"][0]["sha256"]
        assert runner.run(["true"]).rc == 0
    # down: nothing of ours stays mounted
    mounts = Path("/proc/self/mounts").read_text()
    assert str(vpi_dir) not in mounts
    assert not (vpi_dir / "state.json").exists()
