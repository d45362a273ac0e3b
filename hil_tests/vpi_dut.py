"""The DUT inside the virtual Pi: build/up, deploy over ssh, then `ppg-edge hil dut` in the chroot.

:class:`VirtualPiDut` is a DUT handle for :class:`~.suites.SuiteRunner`: ``start``
brings the virtual Pi up (``ppg_edge.boards.virtual``), deploys a bundle with the host's
device models exactly as ``ppg-edge deploy`` does to a real Pi (ssh, atomic
switch, smoke check), then runs the deployed release's
``python -m ppg_edge hil dut --pipeline device`` inside the aarch64 chroot, as the
unprivileged ``pi`` user, on the slave end of a pty pair whose master the host
harness holds. ``close`` stops the DUT and takes the virtual Pi down.

Emulated timings are not Pi timings (qemu user mode is 130-430x slower); the
suites use their ``[virtual]`` sizes here. Host side; needs root.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ppg_edge.errors import HardwareError

from .harness import Harness
from .link import Link, open_pty_pair

log = logging.getLogger(__name__)

REMOTE_ROOT = "/opt/ppg-edge"


def _uid_in(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            return int(parts[2]), int(parts[3])
    raise HardwareError(f"{root}: no user {user!r} in etc/passwd")


class VirtualPiDut:
    emulated = True
    kind = "vpi"

    def __init__(self, board, models: Mapping[str, Path], workdir: Path, *, timeout_s: float = 120.0,
                 vpi_dir: Path | None = None, ready_s: float = 300.0):
        self.board, self.models, self.workdir = board, {k: Path(v) for k, v in models.items()}, Path(workdir)
        self.timeout_s, self.ready_s, self.vpi_dir = timeout_s, ready_s, vpi_dir
        self.where = (f"virtual Pi {board.identifier}: aarch64 chroot under qemu-user "
                      f"(QEMU_CPU={board.cpu.qemu_cpu}), deployed over ssh, HIL link on a pty")
        self.vpi = None
        self.deployer = None
        self.deploy_report = None
        self.proc: subprocess.Popen | None = None
        self.pair = None
        self.link: Link | None = None

    # ------------------------------------------------------------------ bring-up

    def bring_up(self) -> None:
        from ppg_edge import manifest as mf
        from ppg_edge.boards.deploy import Deployer, SSHRunner, build_bundle
        from ppg_edge.boards.deploy.bundle import build_wheel
        from ppg_edge.boards.virtual import VirtualPi, build

        vpi_dir = build(self.board, self.vpi_dir)
        self.vpi = VirtualPi(vpi_dir).up()
        try:
            wheel = build_wheel(self.workdir / "wheel")
            mdir = self.workdir / "models"
            mdir.mkdir(parents=True, exist_ok=True)
            for path in self.models.values():
                shutil.copy(path, mdir / path.name)
                shutil.copy(mf.manifest_path_for(path), mdir / mf.manifest_path_for(path).name)
            bundle = build_bundle(self.workdir / "bundle", self.board, wheel=wheel, models_dir=mdir)
            self.runner = SSHRunner(self.vpi.host, port=self.vpi.port, identity=self.vpi.identity,
                                    known_hosts=self.vpi.known_hosts)
            self.deployer = Deployer(self.runner, root=REMOTE_ROOT, service_manager="none")
            self.deploy_report = self.deployer.deploy(bundle)
            log.info("deployed %s to the virtual Pi", bundle.release)
        except BaseException:
            self.vpi.down()
            self.vpi = None
            raise

    def argv(self, port: str) -> list[str]:
        cur = f"{REMOTE_ROOT}/current"
        argv = [f"{cur}/venv/bin/python", "-m", "ppg_edge", "-q", "hil", "dut", "--port", port,
                "--board", self.board.identifier, "--pipeline", "device"]
        for name, path in self.models.items():
            argv += ["--model", f"{name}={cur}/models/{path.name}"]
        return argv

    def start(self) -> Link:
        from ppg_edge.boards.virtual import chroot as ch

        if self.vpi is None:
            self.bring_up()
        self.pair = open_pty_pair()
        uid, gid = _uid_in(self.vpi.root, "pi")
        os.chown(self.pair.path, uid, -1)          # the DUT runs as pi and opens the pty slave
        env = ch.chroot_env(self.board.cpu.qemu_cpu, {"HOME": "/home/pi"})
        cmd = ch.chroot_argv(self.vpi.root, self.argv(self.pair.path), env, user="pi")
        log_path = self.workdir / "dut.log"
        with open(log_path, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        self.link = Link(self.pair.master, timeout_s=self.timeout_s, name=f"vpi:{self.pair.path}")
        try:
            Harness(self.link).wait_ready(self.ready_s, poll_s=5.0)
        except HardwareError as exc:
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
            self.stop()
            raise HardwareError(f"the DUT in the virtual Pi did not start: {exc} ({tail})") from None
        self.pair.release_slave()
        return self.link

    # ------------------------------------------------------------------ faults

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def corrupt_copy(self, name: str) -> str:
        from ppg_edge import manifest as mf

        from .suites import flip_bytes

        src = self.models[name]
        inside = Path("/tmp/ppg-hil-corrupt")
        dst = self.vpi.root / inside.relative_to("/") / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        shutil.copy(mf.manifest_path_for(src), mf.manifest_path_for(dst))
        flip_bytes(dst)
        uid, gid = _uid_in(self.vpi.root, "pi")
        for p in (dst.parent, dst, mf.manifest_path_for(dst)):
            os.chown(p, uid, gid)
        return str(inside / src.name)

    def deploy_target(self):
        return self.runner, REMOTE_ROOT

    def prepare_previous_release(self, dep) -> str | None:
        return dep.current_release()          # the release deployed by bring_up

    # ------------------------------------------------------------------ teardown

    def stop(self) -> None:
        from .suites import stop_pty_dut

        # the ssh client and the chroot's DUT run in their own process group
        stop_pty_dut(self, wait_s=10.0, kill=lambda proc: os.killpg(proc.pid, signal.SIGKILL))

    def close(self) -> None:
        self.stop()
        if self.vpi is not None:
            problems = self.vpi.down()
            self.vpi = None
            if problems:
                raise HardwareError("virtual Pi down left problems: " + "; ".join(problems))
