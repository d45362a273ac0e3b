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
import sys
from pathlib import Path

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
    from ppg_edge.boards.virtual.chroot import ensure_binfmt
    from ppg_edge.errors import HardwareError

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


def _prepare(tmp_path, rng, data_root, board):
    """Wheel, models (tiny smoke model, tiny peak models, the committed Type30 device files)
    and the host's reference runs of the device path on a real record."""
    from ppg_edge.boards.deploy.bundle import build_wheel, sha256_file
    from ppg_edge.boards.deploy.smoke import run_model

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

    return {"wheel": wheel, "models": models, "host": host, "peak": peak, "stim": stim, "n": n,
            "host_runs": host_runs}


def _deploy_and_compare(runner, board, tmp_path, ctx, stim_dir: str, fresh: bool) -> None:
    """Deploy, smoke-check (int8 bit-exact), run the device path on the target and compare it
    with the host's run, then deploy a broken bundle and check the rollback. ``fresh``: the
    target has never been deployed to (the virtual Pi), so its release history is known."""
    from ppg_edge.boards.deploy import Deployer, DeployError, build_bundle

    wheel, models, host, peak = ctx["wheel"], ctx["models"], ctx["host"], ctx["peak"]
    stim, n, host_runs = ctx["stim"], ctx["n"], ctx["host_runs"]
    dep = Deployer(runner, service_manager="none")
    b1 = build_bundle(tmp_path / "b1", board, wheel=wheel, models_dir=models, now=1_700_000_000)
    before = [] if fresh else dep.list_releases()
    rep = dep.deploy(b1)
    assert rep.ok and (rep.previous is None or not fresh)
    assert dep.current_release() == b1.release
    dev = next(m for m in rep.smoke["models"] if m["model"] == "tiny.tflite")
    assert dev["backend"] == "ai-edge-litert"
    # int8 on the pinned Cortex-A72 must equal x86 bit for bit.
    assert dev["outputs"][0]["sha256"] == host["outputs"][0]["sha256"], (dev["outputs"], host["outputs"])
    assert dev["outputs"][0]["values"] == host["outputs"][0]["values"]
    checks = {c["check"]: c for c in rep.smoke["checks"]}
    assert checks["files"]["status"] == "pass"
    # the board's sensor backend (emulated chip on a virtual board, the MAX30102 on a real one)
    # streamed one window through the release's int8 peak model on the target
    assert checks["sensor"]["status"] == "pass" and "none lost" in checks["sensor"]["detail"], checks["sensor"]
    assert "int8" in checks["sensor"]["detail"] and "window(s) through" in checks["sensor"]["detail"]

    # The device path on the target on a real record, against the same run on the host.
    stage = tmp_path / "stim"
    stage.mkdir()
    np.save(stage / "stim.npy", stim.samples)
    os.chmod(stage / "stim.npy", 0o644)
    assert runner.push(stage, stim_dir).rc == 0
    for mode, path in peak.items():
        out = runner.run(["/opt/ppg-edge/current/venv/bin/python", "-m", "ppg_edge.hil_tests.device",
                          "--model", f"/opt/ppg-edge/current/models/{path.name}", "--stimulus",
                          f"{stim_dir}/stim.npy", "--fs", repr(stim.fs), "--samples", str(n), "--chunk", "30",
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
    assert sorted(dep.list_releases()) == sorted({*before, b1.release})
    again = dep.smoke()
    tiny = next(m for m in again["models"] if m["model"] == "tiny.tflite")
    assert again["ok"] and tiny["outputs"][0]["sha256"] == host["outputs"][0]["sha256"]
    assert runner.run(["true"]).rc == 0


def test_vpi_deploy_smoke_device_path_and_rollback(tmp_path, rng, data_root):
    reason = _host_ready()
    if reason:
        pytest.skip(f"this host cannot run the virtual Pi: {reason}")
    pytest.importorskip("tensorflow")
    from ppg_edge.boards.deploy import Deployer, HostKeyError, SSHRunner
    from ppg_edge.boards.registry import load_board
    from ppg_edge.boards.virtual import VirtualPi, build

    board = load_board("virtual-rpi4")
    vpi_dir = build(board, tmp_path / "vpi")
    ctx = _prepare(tmp_path, rng, data_root, board)
    with VirtualPi(vpi_dir) as vpi:
        # Host keys are checked: a known_hosts without this key is refused before anything changes.
        other = tmp_path / "other_known_hosts"
        other.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd5ZAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
        bad = Deployer(SSHRunner(vpi.host, port=vpi.port, identity=vpi.identity, known_hosts=other),
                       service_manager="none")
        with pytest.raises(HostKeyError):
            bad.status()

        runner = SSHRunner(vpi.host, port=vpi.port, identity=vpi.identity, known_hosts=vpi.known_hosts)
        _deploy_and_compare(runner, board, tmp_path, ctx, "/home/pi/ppg-edge-stim", fresh=True)
    # down: nothing of ours stays mounted
    mounts = Path("/proc/self/mounts").read_text()
    assert str(vpi_dir) not in mounts
    assert not (vpi_dir / "state.json").exists()


@pytest.mark.hardware
def test_real_pi_deploy_smoke_device_path_and_rollback(hil_unit, tmp_path, rng, data_root):
    """The same checks on a real Pi named in the local hardware map (``pytest --board rpi4b``;
    skipped with the reason when none is attached, failing instead with
    PPG_EDGE_REQUIRE_HARDWARE=1). The unit's host key must already be in ~/.ssh/known_hosts
    and its ssh key loaded: nothing is trusted blindly."""
    pytest.importorskip("tensorflow")
    from ppg_edge.boards.deploy import SSHRunner
    from ppg_edge.boards.registry import load_board

    if not hil_unit.host:
        pytest.skip(f"unit {hil_unit.name} ({hil_unit.board}) has no ssh host: the virtual Pi test covers it")
    host, _, port = hil_unit.host.partition(":")
    board = load_board(hil_unit.board)
    ctx = _prepare(tmp_path, rng, data_root, board)
    runner = SSHRunner(host, port=int(port or 22))
    user = host.split("@", 1)[0] if "@" in host else "pi"
    _deploy_and_compare(runner, board, tmp_path, ctx, f"/home/{user}/ppg-edge-stim", fresh=False)
