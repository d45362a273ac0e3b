"""Talking to the device: ssh and rsync as argument lists, host keys always checked.

Every local process gets an argument list (never a shell string). The one
string that crosses the wire is the remote command, built with
:func:`shlex.join` from an argument list so the remote shell sees each
argument exactly once, quoted.
"""
from __future__ import annotations

import logging
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ppg_edge.errors import ConfigError, HardwareError

log = logging.getLogger(__name__)

_HOST_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.-]*@)?[A-Za-z0-9][A-Za-z0-9.:-]*$")
_HOSTKEY_MARKERS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                    "No matching host key", "host key is known", "Host key for")


class DeployError(HardwareError):
    """A deploy step failed on the device or the link to it."""


class HostKeyError(DeployError):
    """The device's host key is not the one in known_hosts: the deploy refuses to go on."""


@dataclass
class Result:
    rc: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class SSHRunner:
    """Runs argument lists on ``host`` over ssh; pushes folders with rsync over the same ssh."""

    host: str
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: int = 15
    timeout: float = 900.0
    log_calls: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _HOST_RE.match(self.host):
            raise ConfigError(f"--host {self.host!r}: expected user@host or host")
        if not 0 < int(self.port) < 65536:
            raise ConfigError(f"--port {self.port}: not a TCP port")
        if self.identity is not None and not Path(self.identity).is_file():
            raise ConfigError(f"--identity {self.identity}: no such key file")
        if self.known_hosts is not None and not Path(self.known_hosts).is_file():
            raise ConfigError(f"--known-hosts {self.known_hosts}: no such file "
                              "(host keys are always checked; there is no blind trust)")

    def ssh_argv(self) -> list[str]:
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "LogLevel=ERROR"]
        if self.known_hosts is not None:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return argv

    def _exec(self, argv: list[str], what: str) -> Result:
        self.log_calls.append(argv)
        log.debug("exec %s", argv)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise DeployError(f"{argv[0]} is not installed on this host (apt-get install openssh-client rsync)") from None
        except subprocess.TimeoutExpired:
            raise DeployError(f"{what} on {self.host} did not finish within {self.timeout:.0f} s") from None
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        check_link(res, self.host, self.known_hosts)
        return res

    def run(self, argv: Sequence[str]) -> Result:
        return self._exec([*self.ssh_argv(), "--", self.host, shlex.join(argv)], argv[0])

    def push(self, local_dir: Path, remote_dir: str) -> Result:
        return self._exec(["rsync", "-a", "--delete", "-e", shlex.join(self.ssh_argv()),
                           f"{local_dir}/", f"{self.host}:{remote_dir}/"], "rsync")


def check_link(res: Result, host: str, known_hosts: Path | None) -> None:
    """Turn ssh's own failures (exit 255) into errors; a host key problem is a refusal."""
    if any(m in res.stderr for m in _HOSTKEY_MARKERS):
        where = known_hosts or "~/.ssh/known_hosts"
        raise HostKeyError(f"refusing to deploy: the host key of {host} is not trusted by {where} "
                           f"({res.stderr.strip().splitlines()[-1] if res.stderr.strip() else 'host key check failed'})")
    if res.rc == 255:
        raise DeployError(f"ssh to {host} failed: {res.stderr.strip()[-400:] or 'exit 255'}")


class DryRunner:
    """Prints what would run; answers every command with success and empty output."""

    dry_run = True

    def __init__(self, real: SSHRunner | None = None, out=None):
        import sys

        self.real = real
        self.out = out or sys.stdout
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str]) -> Result:
        self.calls.append(list(argv))
        shown = [*self.real.ssh_argv(), "--", self.real.host, shlex.join(argv)] if self.real else list(argv)
        print("would run: " + shlex.join(shown), file=self.out)
        return Result(1 if argv[0] in ("readlink", "test") else 0)

    def push(self, local_dir: Path, remote_dir: str) -> Result:
        self.calls.append(["<push>", str(local_dir), remote_dir])
        print(f"would push: rsync -a {local_dir}/ -> {remote_dir}/", file=self.out)
        return Result(0)


class LocalRunner:
    """Runs argument lists on this machine (a folder standing in for the device; HIL drills, tests)."""

    def __init__(self, timeout: float = 120.0):
        self.timeout = timeout
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str]) -> Result:
        self.calls.append(list(argv))
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: not found")
        except subprocess.TimeoutExpired:
            raise DeployError(f"{argv[0]} did not finish within {self.timeout:.0f} s") from None
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def push(self, local_dir: Path, remote_dir: str) -> Result:
        import shutil

        self.calls.append(["<push>", str(local_dir), remote_dir])
        try:
            shutil.copytree(local_dir, remote_dir, dirs_exist_ok=True)
        except OSError as exc:
            return Result(1, "", f"copy failed: {exc}")
        return Result(0)


class InterruptedPush:
    """Wraps a runner; its push transfers only ``fraction`` of the bundle's files, then the link
    is lost (exit 255), as when a cable or Wi-Fi drops half way through a deploy."""

    def __init__(self, runner, fraction: float = 0.5):
        if not 0 <= fraction < 1:
            raise ConfigError(f"fraction {fraction}: must be in [0, 1)")
        self.runner, self.fraction = runner, fraction
        self.pushed: list[str] = []

    def run(self, argv: Sequence[str]) -> Result:
        return self.runner.run(argv)

    def push(self, local_dir: Path, remote_dir: str) -> Result:
        import shutil
        import tempfile

        files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
        keep = files[: int(len(files) * self.fraction)]
        with tempfile.TemporaryDirectory(prefix="ppg-edge-partial-") as tmp:
            for f in keep:
                rel = f.relative_to(local_dir)
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, Path(tmp) / rel)
                self.pushed.append(rel.as_posix())
            res = self.runner.push(Path(tmp), remote_dir)
        if res.rc != 0:
            return res
        log.warning("push to %s cut off after %d of %d files (injected)", remote_dir, len(keep), len(files))
        return Result(255, "", f"connection lost after {len(keep)} of {len(files)} files (injected fault)")
