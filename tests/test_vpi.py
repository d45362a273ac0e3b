"""Virtual Pi pieces that need no chroot: host settings, cpuinfo, sshd config, checks, error paths."""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from ppg_edge.boards.registry import load_board
from ppg_edge.boards.virtual import chroot as ch
from ppg_edge.boards.virtual import machine
from ppg_edge.boards.virtual import userland as ul
from ppg_edge.errors import ConfigError, HardwareError


def test_cpuinfo_names_the_emulated_board():
    text = ch.board_cpuinfo(load_board("virtual-rpi4"))
    assert text.count("processor\t:") == 4 and "CPU part\t: 0xd08" in text
    assert "Model\t\t: Raspberry Pi 4 Model B" in text
    text5 = ch.board_cpuinfo(load_board("virtual-rpi5"))
    assert "CPU part\t: 0xd0b" in text5 and "asimddp" in text5
    with pytest.raises(ConfigError, match="not a virtual board"):
        ch.board_cpuinfo(load_board("rpi4b"))
    with pytest.raises(ConfigError, match="no cpuinfo template"):
        ch.cpuinfo_text("max", 1, "x")


def test_debian_sources_deb822_and_one_line(tmp_path):
    a = tmp_path / "debian.sources"
    a.write_text("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
                 "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                 "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n")
    b = tmp_path / "sources.list"
    b.write_text("# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main contrib\n"
                 "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n")
    got = ul.debian_sources([a, b])
    assert got == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main",
        "deb [arch=amd64] http://mirror.example/debian bookworm main contrib",
    ]
    empty = tmp_path / "none.list"
    empty.write_text("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n")
    with pytest.raises(ConfigError, match="no Debian bookworm mirror"):
        ul.debian_sources([empty])


def test_pip_settings_files_then_env(tmp_path):
    local = tmp_path / "pypi" / "simple"
    local.mkdir(parents=True)
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nindex-url = https://mirror.example/simple\n"
                    f"extra-index-url = file://{local} file:///does/not/exist\nfind-links = {tmp_path}\n")
    s = ul.pip_settings([conf], environ={"PIP_TRUSTED_HOST": "mirror.example"})
    assert s.index_url == "https://mirror.example/simple"
    assert s.local_dirs() == [local.parent.resolve(), tmp_path.resolve()]  # an index's parent holds its files
    env = s.env()
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == f"file://{local}"  # the missing folder is dropped
    assert env["PIP_TRUSTED_HOST"] == "mirror.example"
    s2 = ul.pip_settings([conf], environ={"PIP_INDEX_URL": "https://other/simple"})
    assert s2.index_url == "https://other/simple"
    bad = tmp_path / "bad.conf"
    bad.write_text("no section header\n")
    with pytest.raises(ConfigError, match="pip configuration"):
        ul.pip_settings([bad], environ={})


def test_sshd_config_is_key_only_and_pins_qemu_cpu():
    text = machine.sshd_config(2222, "cortex-a72")
    assert "Port 2222" in text and "ListenAddress 127.0.0.1" in text
    assert "PasswordAuthentication no" in text and "PermitRootLogin no" in text
    assert "SetEnv QEMU_CPU=cortex-a72" in text


def test_chroot_argv_clears_environment():
    argv = ch.chroot_argv(Path("/r"), ["python3.11", "-V"], ch.chroot_env("cortex-a76"), user="pi")
    assert argv[:2] == ["env", "-i"] and "QEMU_CPU=cortex-a76" in argv
    assert argv[argv.index("/r") - 1] == "--userspec=pi" and argv[-2:] == ["python3.11", "-V"]


def test_port_busy_is_detected():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not machine.port_free(port)
    assert machine.port_free(machine.free_port())


def test_binfmt_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(ch, "QEMU_CANDIDATES", (str(tmp_path / "nope"),))
    with pytest.raises(HardwareError, match="qemu-user-static"):
        ch.ensure_binfmt(tmp_path)
    qemu = tmp_path / "qemu"
    qemu.write_text("")
    monkeypatch.setattr(ch, "QEMU_CANDIDATES", (str(qemu),))
    fake = tmp_path / "binfmt"
    fake.mkdir()
    (fake / "register").write_text("")
    (fake / ch.BINFMT_NAME).write_text("disabled\ninterpreter x\n")
    monkeypatch.setattr(ch.shutil, "which", lambda name: None)
    with pytest.raises(HardwareError, match="update-binfmts is not installed"):
        ch.ensure_binfmt(fake)
    (fake / ch.BINFMT_NAME).write_text("enabled\ninterpreter x\n")
    ch.ensure_binfmt(fake)  # enabled entry: accepted


def test_mounts_unmount_in_reverse_and_report(monkeypatch):
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        rc = 1 if argv[0] == "mount" and argv[-1] == "/r/sys" else 0
        return subprocess.CompletedProcess(argv, rc, "", "simulated" if rc else "")

    monkeypatch.setattr(ch.subprocess, "run", fake_run)
    monkeypatch.setattr(ch, "_mounted", lambda p: True)
    m = ch.Mounts()
    m.mount(["-t", "proc", "proc"], Path("/r/proc"))
    with pytest.raises(HardwareError, match="simulated"):
        m.mount(["-t", "sysfs", "sysfs"], Path("/r/sys"))
    assert m.done == ["/r/proc"]
    m.bind(Path("/dev"), Path("/r/dev"), readonly=True)
    assert m.done == ["/r/proc", "/r/dev"]
    assert m.unmount_all() == []
    assert [c for c in calls if c[0] == "umount"] == [["umount", "/r/dev"], ["umount", "/r/proc"]]


def test_one_tool_runner_for_host_tools_and_the_chroot(monkeypatch):
    assert ul.run_tool is ch.run_tool
    assert ch.run_tool(["sh", "-c", "echo out"], what="echo") == "out\n"
    with pytest.raises(HardwareError, match=r"^probe: no-such-tool-x not found on this host$"):
        ch.run_tool(["no-such-tool-x"], what="probe")
    with pytest.raises(HardwareError, match=r"^fail failed \(sh exit 3\): l1\nl2$"):
        ch.run_tool(["sh", "-c", "printf 'l0\\nl1\\nl2\\n' >&2; exit 3"], what="fail", tail_lines=2)
    with pytest.raises(HardwareError, match=r"^slow: sh did not finish within 0 s$"):
        ch.run_tool(["sh", "-c", "sleep 5"], what="slow", timeout=0.2)
    seen = {}

    def fake_run(argv, **kw):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 1, "", "\n".join(f"e{i}" for i in range(12)))

    monkeypatch.setattr(ch.subprocess, "run", fake_run)
    with pytest.raises(HardwareError, match=r"(?s)^pip failed \(chroot exit 1\): e2\ne3.*e11$"):
        ch.run_in_chroot(Path("/r"), ["pip", "-V"], {"A": "1"}, what="pip")
    assert seen["argv"][:3] == ["env", "-i", "A=1"] and seen["argv"][-3:] == ["/r", "pip", "-V"]


def test_virtualpi_error_paths(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not a virtual Pi folder"):
        machine.VirtualPi(tmp_path)
    with pytest.raises(ConfigError, match="real board"):
        machine.VirtualPi(tmp_path, board="rpi4b")
    vpi = machine.VirtualPi(tmp_path, board="virtual-rpi4")
    monkeypatch.setattr(ch, "require_root", lambda what: None)
    with pytest.raises(HardwareError, match="no built userland"):
        vpi.up()
    (tmp_path / "root/usr/sbin").mkdir(parents=True)
    (tmp_path / "root/usr/sbin/sshd").write_text("")
    (tmp_path / "state.json").write_text(json.dumps({"port": 1, "pids": [], "mounts": []}))
    with pytest.raises(HardwareError, match="already up"):
        vpi.up()
    (tmp_path / "state.json").unlink()
    monkeypatch.setattr(ch, "ensure_binfmt", lambda: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        vpi.requested_port = s.getsockname()[1]
        with pytest.raises(HardwareError, match="busy"):
            vpi.up()
    assert not (tmp_path / "state.json").exists()
    (tmp_path / "state.json").write_text("{broken")
    with pytest.raises(HardwareError, match="unreadable state"):
        vpi.status()


def test_failed_up_cleans_up(tmp_path, monkeypatch):
    """A mount failure half-way: down() runs, undoes the mounts made, and removes the state file."""
    (tmp_path / "root/usr/sbin").mkdir(parents=True)
    (tmp_path / "root/usr/sbin/sshd").write_text("")
    vpi = machine.VirtualPi(tmp_path, board="virtual-rpi4")
    monkeypatch.setattr(ch, "require_root", lambda what: None)
    monkeypatch.setattr(ch, "ensure_binfmt", lambda: None)
    undone = []

    def fake_mount_system(root, cpuinfo, mounts, extra_ro=()):
        mounts.done.append(str(root / "proc"))
        raise HardwareError("mount -t sysfs failed: simulated")

    monkeypatch.setattr(ch, "mount_system", fake_mount_system)
    monkeypatch.setattr(ch.Mounts, "unmount_all", lambda self: undone.extend(self.done) or [])
    with pytest.raises(HardwareError, match="simulated"):
        vpi.up()
    assert undone == [str(tmp_path / "root/proc")]
    assert not (tmp_path / "state.json").exists()


def test_cli_vpi_status_and_errors(tmp_path, capsys):
    from ppg_edge.cli import main

    assert main(["vpi", "status", "--dir", str(tmp_path)]) == 0
    assert "not built" in capsys.readouterr().out
    assert main(["vpi", "up", "--board", "rpi4b", "--dir", str(tmp_path)]) == 1
    assert "real board" in capsys.readouterr().err
