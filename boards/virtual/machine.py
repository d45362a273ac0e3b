"""The virtual Raspberry Pi: build it, bring it up (mounts + sshd), take it down.

A virtual Pi lives in one folder (``--dir``; by default
``cache_dir()/"vpi"/<board>``)::

    root/                 the arm64 userland (chroot), with /opt/ppg-edge/base-venv
    keys/ssh_host_ed25519_key[.pub]   its host key
    keys/id_ed25519[.pub]             the client key that may log in as ``pi``
    known_hosts           the host key for ``[127.0.0.1]:PORT`` (written by ``up``)
    cpuinfo               aarch64 /proc/cpuinfo text of the emulated board
    state.json            what ``up`` mounted and started (PIDs), for ``down``

``sshd`` runs as root inside the chroot (it must, to switch users); logins are
key-only, as the unprivileged ``pi`` user (groups ``i2c`` and ``dialout``), and
every login gets ``QEMU_CPU`` through sshd's ``SetEnv`` so that each program it
starts runs on the pinned core.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from ppg_edge import config
from ppg_edge.cache import PARTIAL, build_stage, locked, remove_tree, stale_partials
from ppg_edge.errors import ConfigError, HardwareError

from . import chroot as ch
from . import userland as ul

log = logging.getLogger(__name__)

USER = "pi"
STATE_FILE = "state.json"


def default_dir(board_id: str) -> Path:
    return config.cache_dir() / "vpi" / board_id


def _load_virtual_board(board):
    from ppg_edge.boards.registry import load_board

    b = load_board(board) if isinstance(board, (str, os.PathLike)) else board
    if not b.virtual:
        raise ConfigError(f"{b.identifier} is a real board; `ppg-edge vpi` needs a virtual one "
                          "(virtual-rpi4, virtual-rpi5)")
    return b


# --------------------------------------------------------------------------- build


def build_base(userland: Path, board, pip: ul.PipSettings | None = None,
               packages=ul.PIP_PACKAGES, rebuild: bool = False) -> Path:
    """Stage 2 (cached): the userland plus the base venv with the edge pip packages."""
    ch.require_root("building the virtual Pi")
    ch.ensure_binfmt()
    pip = pip if pip is not None else ul.pip_settings()
    key = ul._digest(userland.name, list(packages), board.cpu.qemu_cpu)

    def fill(tmp: Path) -> None:
        ul.copy_tree(userland / "root", tmp / "root")
        root = tmp / "root"
        cpuinfo = tmp / "cpuinfo"
        cpuinfo.write_text(ch.board_cpuinfo(board))
        mounts = ch.Mounts()
        try:
            # host folders (local pip mirrors) are bound read-only
            ch.mount_system(root, cpuinfo, mounts, extra_ro=pip.local_dirs())
            env = ch.chroot_env(board.cpu.qemu_cpu, pip.env())
            log.info("creating %s in the chroot", ul.BASE_VENV)
            ch.run_in_chroot(root, [ul.PYTHON, "-m", "venv", ul.BASE_VENV], env, what="python3.11 -m venv")
            log.info("pip install %s (aarch64 wheels, under qemu)", " ".join(packages))
            ch.run_in_chroot(root, [f"{ul.BASE_VENV}/bin/python", "-m", "pip", "install", "-q",
                                    "--disable-pip-version-check", "--only-binary=:all:", *packages],
                             env, what="pip install in the base venv (is the pip index reachable?)")
            ch.run_in_chroot(root, [f"{ul.BASE_VENV}/bin/python", "-c",
                                    "import numpy, ai_edge_litert.interpreter, smbus2, serial, tqdm"],
                             env, what="importing the edge packages in the base venv")
        finally:
            problems = mounts.unmount_all()
        if problems:
            raise HardwareError("could not unmount after the build: " + "; ".join(problems))
        (tmp / "pip.json").write_text(json.dumps({"packages": list(packages)}))

    return build_stage(ul.stage_dir("base", key), fill, rebuild=rebuild, what="virtual-Pi base venv")


def build(board, vpi_dir: Path | None = None, *, rebuild: bool = False) -> Path:
    """Build (or reuse) the virtual Pi folder for ``board``; returns the folder."""
    board = _load_virtual_board(board)
    vpi_dir = Path(vpi_dir) if vpi_dir else default_dir(board.identifier)
    ch.require_root("building the virtual Pi")
    ch.ensure_binfmt()
    if (vpi_dir / STATE_FILE).exists():
        raise HardwareError(f"{vpi_dir} is up (state file present): run `ppg-edge vpi down` first")
    t0 = time.monotonic()
    base = build_base(ul.build_userland(rebuild=rebuild), board, rebuild=rebuild)
    with locked(vpi_dir / "root", what=f"virtual Pi {vpi_dir}"):
        if (vpi_dir / STATE_FILE).exists():
            raise HardwareError(f"{vpi_dir} is up (state file present): run `ppg-edge vpi down` first")
        root = vpi_dir / "root"
        marker = vpi_dir / "base.txt"
        for stale in stale_partials(root):
            log.warning("removing %s, left by a copy that did not finish", stale)
            remove_tree(stale)
        if root.exists() and (rebuild or not marker.is_file() or marker.read_text().strip() != base.name):
            remove_tree(root)
        if not root.exists():
            tmp = vpi_dir / f"root{PARTIAL}{os.getpid()}"
            ul.copy_tree(base / "root", tmp)
            tmp.rename(root)
            marker.write_text(base.name + "\n")
        (vpi_dir / "board.txt").write_text(board.identifier + "\n")
        (vpi_dir / "cpuinfo").write_text(ch.board_cpuinfo(board))
        _make_keys(vpi_dir, root)
    log.info("virtual Pi %s ready in %s (%.1f s)", board.identifier, vpi_dir, time.monotonic() - t0)
    return vpi_dir


def _make_keys(vpi_dir: Path, root: Path) -> None:
    keys = vpi_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    keys.chmod(0o700)
    for name, comment in (("ssh_host_ed25519_key", "ppg-edge-vpi-host"), ("id_ed25519", "ppg-edge-deploy")):
        if not (keys / name).is_file():
            ch.run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(keys / name)],
                    what="ssh-keygen (apt-get install openssh-client)")
    etc_ssh = root / "etc/ssh"
    etc_ssh.mkdir(parents=True, exist_ok=True)
    for suffix, mode in (("", 0o600), (".pub", 0o644)):
        dst = etc_ssh / f"ssh_host_ed25519_key{suffix}"
        dst.write_bytes((keys / f"ssh_host_ed25519_key{suffix}").read_bytes())
        dst.chmod(mode)
    auth = root / "home/pi/.ssh/authorized_keys"
    auth.write_bytes((keys / "id_ed25519.pub").read_bytes())
    auth.chmod(0o600)
    os.chown(auth, ul.PI_UID, ul.PI_UID)


# --------------------------------------------------------------------------- up / down


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_config(port: int, qemu_cpu: str) -> str:
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        f"AllowUsers {USER}",
        "UsePAM no",
        "PrintMotd no",
        "StrictModes yes",
        "Subsystem sftp internal-sftp",
        # sshd gives sessions a clean environment; qemu reads the CPU model from it.
        f"SetEnv QEMU_CPU={qemu_cpu} LANG=C.UTF-8",
        "",
    ])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


class VirtualPi:
    """Context manager: ``with VirtualPi(dir) as vpi: vpi.port ...`` brings it up and down.

    ``up`` records each mount and PID in ``state.json`` as it goes; ``down``
    reads it back, stops the processes it started (by PID) and unmounts in
    reverse, also after a failed ``up``.
    """

    def __init__(self, vpi_dir: Path, board=None, port: int = 0):
        self.dir = Path(vpi_dir)
        if board is None:
            marker = self.dir / "board.txt"
            if not marker.is_file():
                raise ConfigError(f"{self.dir}: not a virtual Pi folder (no board.txt); run `ppg-edge vpi build`")
            board = marker.read_text().strip()
        self.board = _load_virtual_board(board)
        self.root = self.dir / "root"
        self.requested_port = port
        self.port: int | None = None
        self.state_path = self.dir / STATE_FILE

    # paths a deploy needs
    @property
    def identity(self) -> Path:
        return self.dir / "keys" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def host(self) -> str:
        return f"{USER}@127.0.0.1"

    def _state(self) -> dict:
        if not self.state_path.is_file():
            return {}
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise HardwareError(f"{self.state_path}: unreadable state file ({exc}); "
                                "check `mount | grep {self.root}` by hand") from None

    def _save(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)

    def up(self, timeout: float = 60.0) -> VirtualPi:
        ch.require_root("starting the virtual Pi")
        if not (self.root / "usr/sbin/sshd").is_file():
            raise HardwareError(f"{self.root}: no built userland; run `ppg-edge vpi build --board "
                                f"{self.board.identifier} --dir {self.dir}`")
        if self._state():
            raise HardwareError(f"{self.dir} is already up (state file {self.state_path}); "
                                "run `ppg-edge vpi down` first")
        ch.ensure_binfmt()
        port = self.requested_port or free_port()
        if not port_free(port):
            raise HardwareError(f"port {port} on 127.0.0.1 is busy; pick another with --port")
        state = {"board": self.board.identifier, "port": port, "mounts": [], "pids": [],
                 "started": time.time()}
        self._save(state)
        mounts = ch.Mounts()
        try:
            cpuinfo = self.dir / "cpuinfo"
            cpuinfo.write_text(ch.board_cpuinfo(self.board))
            try:
                ch.mount_system(self.root, cpuinfo, mounts)
            finally:
                state["mounts"] = list(mounts.done)
                self._save(state)
            (self.root / "etc/ssh/sshd_config.ppg").write_text(sshd_config(port, self.board.cpu.qemu_cpu))
            env = ch.chroot_env(self.board.cpu.qemu_cpu)
            argv = ch.chroot_argv(self.root, ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config.ppg",
                                              "-p", str(port), "-o", "ListenAddress=127.0.0.1"], env)
            log_path = self.dir / "sshd.log"
            with open(log_path, "ab") as logf:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                        start_new_session=True)
            state["pids"].append(proc.pid)
            self._save(state)
            self._wait_listening(proc, port, timeout, log_path)
            pub = (self.dir / "keys/ssh_host_ed25519_key.pub").read_text().split()
            self.known_hosts.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
        except BaseException:
            self.port = port
            self.down()
            raise
        self.port = port
        log.info("virtual Pi %s up: ssh -p %d -i %s %s", self.board.identifier, port, self.identity, self.host)
        return self

    @staticmethod
    def _wait_listening(proc: subprocess.Popen, port: int, timeout: float, log_path: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise HardwareError(f"sshd in the chroot exited with {proc.returncode}: " + " | ".join(tail))
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise HardwareError(f"sshd in the chroot did not listen on 127.0.0.1:{port} within {timeout:.0f} s")

    def down(self) -> list[str]:
        """Stop what ``up`` started and unmount what it mounted; returns the problems left."""
        state = self._state()
        problems: list[str] = []
        for pid in reversed(state.get("pids", [])):
            if not _alive(pid):
                continue
            try:
                os.killpg(pid, signal.SIGTERM)  # its own session: sshd and its sessions
            except ProcessLookupError:
                continue
            except PermissionError as exc:
                problems.append(f"cannot stop PID {pid}: {exc}")
                continue
            for _ in range(50):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        problems += ch.Mounts(state.get("mounts", [])).unmount_all()
        if problems:
            log.error("virtual Pi down left problems: %s", "; ".join(problems))
        elif self.state_path.exists():
            self.state_path.unlink()
        self.port = None
        return problems

    def status(self) -> dict:
        state = self._state()
        pids = {pid: _alive(pid) for pid in state.get("pids", [])}
        mounts = {m: ch._mounted(Path(m)) for m in state.get("mounts", [])}
        port = state.get("port")
        listening = False
        if port:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                listening = s.connect_ex(("127.0.0.1", port)) == 0
        return {"dir": str(self.dir), "board": self.board.identifier, "built": (self.root / "usr/sbin/sshd").is_file(),
                "up": bool(state) and all(pids.values()) and listening, "port": port,
                "pids": pids, "mounts": mounts, "listening": listening,
                "identity": str(self.identity), "known_hosts": str(self.known_hosts), "host": self.host}

    def run(self, argv, *, user: str | None = USER, timeout: float = 300) -> str:
        """Run one command in the chroot directly (no ssh), as ``pi`` by default."""
        env = ch.chroot_env(self.board.cpu.qemu_cpu, {"HOME": "/home/pi" if user == USER else "/root"})
        return ch.run_in_chroot(self.root, argv, env, what=" ".join(argv[:2]), user=user, timeout=timeout)

    def __enter__(self) -> VirtualPi:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()
