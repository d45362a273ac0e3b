"""Deploy logic with a fake ssh runner: steps, atomic switch, rollback, dry run, host keys, bundle."""
from __future__ import annotations

import hashlib
import io
import json
import shlex
from pathlib import Path

import pytest

from ppg_edge.boards.deploy import (
    Deployer,
    DeployError,
    DryRunner,
    HostKeyError,
    Result,
    SSHRunner,
    build_bundle,
    release_name,
)
from ppg_edge.boards.deploy.bundle import check_models, release_sort_key, sha256_file
from ppg_edge.boards.deploy.remote import check_link
from ppg_edge.boards.deploy.smoke import check_release, smoke_input
from ppg_edge.boards.registry import load_board
from ppg_edge.errors import ConfigError, ModelError

OK_SMOKE = json.dumps({"ok": True, "checks": [], "models": []})


class FakeDevice:
    """Records every argument list; answers from a tiny model of the device's /opt/ppg-edge."""

    def __init__(self, current=None, releases=(), fail_on=None, smoke=OK_SMOKE, base=True):
        self.calls: list[list[str]] = []
        self.current = current
        self.releases = list(releases)
        self.fail_on = fail_on  # substring of a joined command that fails
        self.smoke_out = smoke
        self.base = base
        self.tmp_link = None

    def run(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        joined = " ".join(argv)
        if self.fail_on and self.fail_on in joined:
            return Result(1, "", f"simulated failure of {argv[0]}")
        if argv[0] == "readlink":
            return Result(0, f"releases/{self.current}\n") if self.current else Result(1)
        if argv[0] == "find":
            return Result(0, "".join(r + "\n" for r in self.releases))
        if argv[0] == "mkdir" and "-p" not in argv:
            name = Path(argv[1]).name
            if name in self.releases:
                return Result(1, "", "File exists")
            self.releases.append(name)
        if argv[0] == "ln":
            self.tmp_link = argv[-2].split("/", 1)[1]
        if argv[0] == "mv":
            assert argv[1] == "-T" and argv[2].endswith(".current.tmp")
            self.current = self.tmp_link
        if argv[:2] == ["rm", "-f"]:
            self.current = None
        if argv[:2] == ["rm", "-rf"]:
            self.releases.remove(Path(argv[-1]).name)
        if argv[0] == "test" and "base-venv" in joined:
            return Result(0 if self.base else 1)
        if argv[0] == "test":
            return Result(1)
        if "ppg_edge.boards.deploy.smoke" in joined:
            return Result(0 if json.loads(self.smoke_out)["ok"] else 1, self.smoke_out + "\n")
        return Result(0)

    def push(self, local_dir, remote_dir):
        self.calls.append(["<push>", str(local_dir), remote_dir])
        return Result(1, "", "rsync: simulated") if self.fail_on == "<push>" else Result(0)


@pytest.fixture
def board():
    return load_board("virtual-rpi4")


@pytest.fixture
def wheel(tmp_path):
    w = tmp_path / "ppg_edge-0.1.0-py3-none-any.whl"
    w.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # empty zip: never installed by these tests
    return w


def _bundle(tmp_path, board, wheel, name="b", now=1_700_000_000, models=None):
    return build_bundle(tmp_path / name, board, wheel=wheel, models_dir=models, now=now)


def test_bundle_manifest_hashes_every_file(tmp_path, board, wheel):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.tflite").write_bytes(b"model-bytes")
    (models / "m.json").write_text(json.dumps({"sha256": sha256_file(models / "m.tflite")}))
    b = _bundle(tmp_path, board, wheel, models=models)
    files = b.manifest["files"]
    assert set(files) == {"wheels/ppg_edge-0.1.0-py3-none-any.whl", "models/m.tflite", "models/m.json",
                          "board/virtual-rpi4.toml", "service.json", "systemd/ppg-edge.service"}
    for rel, digest in files.items():
        assert hashlib.sha256((b.path / rel).read_bytes()).hexdigest() == digest
    sums = (b.path / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(files) and all("  " in line for line in sums)
    assert b.release == "0.1.0-20231114T221320Z"
    unit = (b.path / "systemd/ppg-edge.service").read_text()
    assert "ExecStart=/opt/ppg-edge/current/venv/bin/ppg-edge run --board virtual-rpi4 --source max30102" in unit
    assert "Environment=OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1" in unit  # no spinning BLAS threads on the Pi
    assert "User=pi" in unit and "SupplementaryGroups=i2c dialout" in unit and "Restart=on-failure" in unit


def test_one_file_hash_for_bundle_smoke_check_and_manifests():
    from ppg_edge import manifest
    from ppg_edge.boards.deploy import smoke

    assert sha256_file is manifest.sha256_file and smoke.sha256_file is manifest.sha256_file


def test_bundle_refuses_bad_models(tmp_path, board, wheel):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.tflite").write_bytes(b"x")
    with pytest.raises(ModelError, match="no manifest"):
        check_models(models)
    (models / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        check_models(models)
    (models / "m.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(ModelError, match="sha256 differs"):
        check_models(models)
    with pytest.raises(ConfigError, match="not a folder"):
        check_models(tmp_path / "nope")
    bad_wheel = tmp_path / "other-1.0-py3-none-any.whl"
    bad_wheel.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a ppg_edge wheel"):
        _bundle(tmp_path, board, bad_wheel, name="c")


def test_deploy_steps_in_order_with_base_venv(tmp_path, board, wheel):
    dev = FakeDevice(current="0.0.9-20230101T000000Z", releases=["0.0.9-20230101T000000Z"])
    b = _bundle(tmp_path, board, wheel)
    rep = Deployer(dev, service_manager="none").deploy(b)
    assert rep.ok and rep.previous == "0.0.9-20230101T000000Z" and dev.current == b.release
    rel = f"/opt/ppg-edge/releases/{b.release}"
    heads = [c[0] for c in dev.calls]
    # connect, inspect, prepare, push, verify, venv, install, atomic switch, smoke
    assert heads.index("<push>") < heads.index("sh") < heads.index("ln") < heads.index("mv")
    assert ["mkdir", rel] in dev.calls
    assert ["python3.11", "-m", "venv", "--without-pip", f"{rel}/venv"] in dev.calls
    install = next(c for c in dev.calls if "pip" in c)
    assert install[:5] == ["/opt/ppg-edge/base-venv/bin/python", "-m", "pip", "--python", f"{rel}/venv/bin/python"]
    assert "--no-index" in install and install[-1] == f"{rel}/wheels/ppg_edge-0.1.0-py3-none-any.whl[edge]"
    assert ["ln", "-sfn", f"releases/{b.release}", "/opt/ppg-edge/.current.tmp"] in dev.calls
    assert ["mv", "-T", "/opt/ppg-edge/.current.tmp", "/opt/ppg-edge/current"] in dev.calls
    # every remote command survives the remote shell as the same arguments
    for c in dev.calls:
        if c[0] != "<push>":
            assert shlex.split(shlex.join(c)) == c


def test_deploy_without_base_venv_uses_own_pip(tmp_path, board, wheel):
    dev = FakeDevice(base=False)
    b = _bundle(tmp_path, board, wheel)
    Deployer(dev, service_manager="none").deploy(b)
    rel = f"/opt/ppg-edge/releases/{b.release}"
    assert ["python3.11", "-m", "venv", f"{rel}/venv"] in dev.calls
    install = next(c for c in dev.calls if "pip" in c)
    assert install[0] == f"{rel}/venv/bin/python" and "--no-index" not in install


@pytest.mark.parametrize("fail_on, switched", [
    ("<push>", False), ("sha256sum", False), ("pip", False), ("mv -T", False),
])
def test_failure_before_switch_removes_release_keeps_current(tmp_path, board, wheel, fail_on, switched):
    prev = "0.0.9-20230101T000000Z"
    dev = FakeDevice(current=prev, releases=[prev], fail_on=fail_on)
    b = _bundle(tmp_path, board, wheel)
    with pytest.raises(DeployError, match=f"rolled back \\(back on {prev}\\)"):
        Deployer(dev, service_manager="none").deploy(b)
    assert dev.current == prev and dev.releases == [prev]


def test_smoke_failure_switches_back_and_restarts(tmp_path, board, wheel):
    prev = "0.0.9-20230101T000000Z"
    bad = json.dumps({"ok": False, "checks": [{"check": "model m.tflite", "status": "fail",
                                               "detail": "RuntimeError: bad flatbuffer"}]})
    dev = FakeDevice(current=prev, releases=[prev], smoke=bad)
    b = _bundle(tmp_path, board, wheel)
    with pytest.raises(DeployError, match="bad flatbuffer"):
        Deployer(dev, service_manager="systemd", sudo=False).deploy(b)
    assert dev.current == prev and dev.releases == [prev]
    restarts = [i for i, c in enumerate(dev.calls) if c[:2] == ["systemctl", "restart"]]
    switches = [i for i, c in enumerate(dev.calls) if c[0] == "mv"]
    assert len(restarts) == 2 and len(switches) == 2 and switches[1] < restarts[1]


def test_first_deploy_failure_removes_current(tmp_path, board, wheel):
    dev = FakeDevice(smoke=json.dumps({"ok": False, "checks": []}))
    b = _bundle(tmp_path, board, wheel)
    with pytest.raises(DeployError, match="no previous release"):
        Deployer(dev, service_manager="none").deploy(b)
    assert dev.current is None and dev.releases == []


def test_existing_release_name_is_never_overwritten(tmp_path, board, wheel):
    b = _bundle(tmp_path, board, wheel)
    dev = FakeDevice(current=b.release, releases=[b.release])
    with pytest.raises(DeployError, match="prepare"):
        Deployer(dev, service_manager="none").deploy(b)
    assert dev.releases == [b.release] and not any(c[0] == "<push>" for c in dev.calls)


def test_rollback_and_status(tmp_path):
    r1, r2, r3 = "0.1.0-20240101T000000Z", "0.1.0-20240201T000000Z", "0.2.0-20240301T000000Z"
    dev = FakeDevice(current=r3, releases=[r3, r1, r2])
    d = Deployer(dev, service_manager="none")
    assert d.status() == {"root": "/opt/ppg-edge", "current": r3, "releases": [r1, r2, r3]}
    rep = d.rollback()
    assert rep.release == r2 and dev.current == r2
    dev2 = FakeDevice(current=r1, releases=[r1])
    with pytest.raises(DeployError, match="oldest"):
        Deployer(dev2, service_manager="none").rollback()
    with pytest.raises(DeployError, match="does not point"):
        Deployer(FakeDevice(), service_manager="none").rollback()
    bad = FakeDevice(current=r2, releases=[r1, r2], smoke=json.dumps({"ok": False, "checks": []}))
    with pytest.raises(DeployError, match="stayed on"):
        Deployer(bad, service_manager="none").rollback()
    assert bad.current == r2


def test_release_names_sort_by_time():
    a = release_name("0.10.0", now=1_700_000_000)
    b = release_name("0.9.0", now=1_700_000_100)
    assert sorted([b, a], key=release_sort_key) == [a, b]
    assert release_name("1.0/../x", now=0).startswith("1.0_.._x-")


def test_dry_run_prints_steps_and_changes_nothing(tmp_path, board, wheel, capsys):
    key = tmp_path / "id"
    key.write_text("k")
    kh = tmp_path / "kh"
    kh.write_text("")
    out = io.StringIO()
    dry = DryRunner(SSHRunner("pi@10.0.0.5", port=2222, identity=key, known_hosts=kh), out=out)
    b = _bundle(tmp_path, board, wheel)
    rep = Deployer(dry, service_manager="none").deploy(b)
    text = out.getvalue()
    assert rep.ok and rep.smoke == {"ok": None, "dry_run": True}
    assert "StrictHostKeyChecking=yes" in text and f"UserKnownHostsFile={kh}" in text
    assert "would push" in text and "mv -T /opt/ppg-edge/.current.tmp /opt/ppg-edge/current" in text


def test_ssh_runner_argv_and_validation(tmp_path, monkeypatch):
    key = tmp_path / "id"
    key.write_text("k")
    kh = tmp_path / "kh"
    kh.write_text("")
    r = SSHRunner("pi@127.0.0.1", port=2200, identity=key, known_hosts=kh)
    seen = []

    def fake_run(argv, **kw):
        seen.append(argv)
        class P:
            returncode, stdout, stderr = 0, "", ""
        return P()

    monkeypatch.setattr("ppg_edge.boards.deploy.remote.subprocess.run", fake_run)
    r.run(["mkdir", "/opt/x y; rm -rf /"])
    argv = seen[-1]
    assert argv[:3] == ["ssh", "-p", "2200"] and "StrictHostKeyChecking=yes" in argv
    assert argv[-2] == "pi@127.0.0.1" and shlex.split(argv[-1]) == ["mkdir", "/opt/x y; rm -rf /"]
    r.push(tmp_path, "/opt/ppg-edge/releases/r")
    assert seen[-1][0] == "rsync" and shlex.split(seen[-1][seen[-1].index("-e") + 1])[0] == "ssh"
    for bad in ("-oProxyCommand=x", "pi@host;rm", ""):
        with pytest.raises(ConfigError):
            SSHRunner(bad)
    with pytest.raises(ConfigError, match="no such file"):
        SSHRunner("pi@h", known_hosts=tmp_path / "missing")
    with pytest.raises(ConfigError, match="not a TCP port"):
        SSHRunner("pi@h", port=70000)


def test_host_key_refusal():
    with pytest.raises(HostKeyError, match="refusing"):
        check_link(Result(255, "", "No ED25519 host key is known for [127.0.0.1]:2222 and you have "
                                   "requested strict checking.\nHost key verification failed.\n"),
                   "pi@127.0.0.1", Path("/x/known_hosts"))
    with pytest.raises(HostKeyError):
        check_link(Result(12, "", "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n"), "h", None)
    with pytest.raises(DeployError, match="ssh to h failed"):
        check_link(Result(255, "", "Connection refused"), "h", None)
    check_link(Result(1, "", "mkdir: cannot create directory"), "h", None)  # a remote failure, not a link one
    dev = FakeDevice()
    dev.run = lambda argv: (_ for _ in ()).throw(HostKeyError("refusing"))
    with pytest.raises(HostKeyError):
        Deployer(dev).deploy(None)


def test_smoke_check_release_files_and_hook(tmp_path, board, wheel):
    b = _bundle(tmp_path, board, wheel)
    res = check_release(b.path)
    status = {c["check"]: c["status"] for c in res["checks"]}
    assert res["ok"] and status["files"] == "pass" and status["models"] == "skipped"
    # the runtime's hook: a virtual board reads the emulated chip (no model here: no window)
    sensor = next(c for c in res["checks"] if c["check"] == "sensor")
    assert sensor["status"] == "pass" and "none lost" in sensor["detail"] and "no peak model" in sensor["detail"]
    (b.path / "board/virtual-rpi4.toml").write_text("tampered")
    res = check_release(b.path)
    assert not res["ok"] and "board/virtual-rpi4.toml" in res["checks"][0]["detail"]
    (b.path / "models/x.tflite").write_bytes(b"garbage")
    (b.path / "models/x.json").write_text("{}")
    res = check_release(b.path, hook=False)
    assert any(c["check"] == "model x.tflite" and c["status"] == "fail" for c in res["checks"])


def test_smoke_input_is_deterministic_and_in_range():
    import numpy as np

    x = smoke_input([1, 64, 1], np.int8)
    assert x.dtype == np.int8 and x.shape == (1, 64, 1) and x.min() >= -125 and x.max() <= 125
    assert np.array_equal(x, smoke_input((1, 64, 1), np.int8))
    f = smoke_input([2, 3], np.float32)
    assert f.dtype == np.float32 and np.all(np.abs(f) <= 1.0)


def test_cli_deploy_dry_run(tmp_path, wheel, capsys):
    from ppg_edge.cli import main

    kh = tmp_path / "kh"
    kh.write_text("")
    rc = main(["deploy", "--board", "virtual-rpi4", "--host", "pi@127.0.0.1", "--port", "2222",
               "--known-hosts", str(kh), "--wheel", str(wheel), "--service-manager", "none", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and "would push" in out and "dry run: nothing was changed" in out
    rc = main(["deploy", "--board", "virtual-rpi4", "--host", "pi@h", "--known-hosts",
               str(tmp_path / "missing"), "--dry-run"])
    assert rc == 1 and "no such file" in capsys.readouterr().err


def test_interrupted_push_is_rolled_back_on_a_local_target(tmp_path, board, wheel):
    """A push cut off half way (LocalRunner + InterruptedPush): rolled back, current unchanged."""
    from ppg_edge.boards.deploy.remote import InterruptedPush, LocalRunner

    root = tmp_path / "dev"
    (root / "releases" / "0.0.0-20240101T000000Z").mkdir(parents=True)
    (root / "current").symlink_to("releases/0.0.0-20240101T000000Z")
    runner = InterruptedPush(LocalRunner(), fraction=0.5)
    dep = Deployer(runner, root=str(root), service_manager="none")
    b = _bundle(tmp_path, board, wheel)
    with pytest.raises(DeployError, match="rolled back.*connection lost after"):
        dep.deploy(b)
    assert 0 < len(runner.pushed) < sum(1 for p in b.path.rglob("*") if p.is_file())
    assert dep.current_release() == "0.0.0-20240101T000000Z"
    assert dep.list_releases() == ["0.0.0-20240101T000000Z"]


# ------------------------------------------------------------------ the wearer's profile (issue 16)
def _bp_models(tmp_path):
    import shutil

    d = tmp_path / "models"
    d.mkdir(parents=True)
    repo = Path(__file__).resolve().parents[1] / "models" / "device"
    for stem in ("bp-ppg-100hz", "bp-ppg-profile-100hz"):
        for ext in (".trees", ".json"):
            shutil.copy2(repo / f"{stem}{ext}", d / f"{stem}{ext}")
    return d


def test_bundle_carries_a_checked_profile_only_with_a_bp_model(tmp_path, board, wheel):
    from ppg_edge.edge_runtime.user import PROFILE_FILE, Profile

    prof = tmp_path / "me.json"
    prof.write_text(json.dumps({"age": 41, "sex": "F", "height_cm": 168, "weight_kg": 61.5}))
    b = build_bundle(tmp_path / "b", board, wheel=wheel, models_dir=_bp_models(tmp_path), profile=prof)
    assert Profile.load(b.path / PROFILE_FILE) == Profile.load(prof)  # JSON in, the service's TOML out
    assert PROFILE_FILE in b.manifest["files"] and PROFILE_FILE in (b.path / "SHA256SUMS").read_text()
    with pytest.raises(ConfigError, match="runs none"):
        build_bundle(tmp_path / "c", board, wheel=wheel, profile=prof)
    prof.write_text(json.dumps({"age": 41, "sex": "X", "height_cm": 168, "weight_kg": 61.5}))
    with pytest.raises(ConfigError, match="sex"):
        build_bundle(tmp_path / "d", board, wheel=wheel, models_dir=_bp_models(tmp_path / "m2"), profile=prof)


@pytest.mark.parametrize("smoke_ok", [True, False])
def test_deploy_installs_the_profile_and_a_failed_deploy_puts_the_old_one_back(tmp_path, board, wheel, smoke_ok):
    """The profile step runs before the switch and the restart; on a failed smoke check the old
    profile is put back before the previous release restarts. The step's shell commands are then
    run here on a folder standing in for the device, so their effect is checked, not only their text."""
    import subprocess

    from ppg_edge.edge_runtime.user import PROFILE_FILE, Profile

    (tmp_path / "m").mkdir()
    prof = tmp_path / "me.toml"
    prof.write_text('age = 41\nsex = "F"\nheight_cm = 168\nweight_kg = 61.5\n')
    b = build_bundle(tmp_path / "b", board, wheel=wheel, models_dir=_bp_models(tmp_path / "m"), profile=prof)
    root = tmp_path / "dev"
    prev = "0.0.9-20230101T000000Z"
    smoke = OK_SMOKE if smoke_ok else json.dumps({"ok": False, "checks": []})
    dev = FakeDevice(current=prev, releases=[prev], smoke=smoke)
    dep = Deployer(dev, root=str(root), service_manager="systemd", sudo=False)
    if smoke_ok:
        assert dep.deploy(b).ok
    else:
        with pytest.raises(DeployError, match="rolled back"):
            dep.deploy(b)
    steps = [c for c in dev.calls if c[:2] == ["sh", "-c"] and PROFILE_FILE in c]
    install, restore = steps[0], steps[1:]
    heads = [" ".join(c) for c in dev.calls]
    assert heads.index(" ".join(install)) < next(i for i, h in enumerate(heads) if h.startswith("mv -T"))
    assert len(restore) == (0 if smoke_ok else 1)
    if restore:  # put back before the previous release's restart
        restarts = [i for i, h in enumerate(heads) if h.startswith("systemctl restart")]
        assert heads.index(" ".join(restore[0])) < restarts[-1]
    # run the commands on a stand-in device: an old profile there, the release pushed
    state = root / "state"
    state.mkdir(parents=True)
    (state / PROFILE_FILE).write_text('age = 70\nsex = "M"\nheight_cm = 180\nweight_kg = 90\n')
    rel = root / "releases" / b.release
    rel.mkdir(parents=True)
    (rel / PROFILE_FILE).write_text((b.path / PROFILE_FILE).read_text())
    for cmd in [install, *restore]:
        subprocess.run(cmd, check=True)
    want = Profile.load(prof) if smoke_ok else Profile(age=70, sex="M", height_cm=180, weight_kg=90)
    assert Profile.load(state / PROFILE_FILE) == want
    assert sorted(p.name for p in state.iterdir()) == ([f".{PROFILE_FILE}.prev", PROFILE_FILE] if smoke_ok
                                                       else [PROFILE_FILE])


def test_deploy_without_a_profile_leaves_the_devices_alone(tmp_path, board, wheel):
    from ppg_edge.edge_runtime.user import PROFILE_FILE

    dev = FakeDevice()
    Deployer(dev, service_manager="none").deploy(_bundle(tmp_path, board, wheel))
    assert not any(PROFILE_FILE in " ".join(c) for c in dev.calls)
