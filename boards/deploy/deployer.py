"""Install a bundle as a new release on the device, switch to it atomically, roll back on failure.

Device layout (``root``, default ``/opt/ppg-edge``)::

    releases/<version>-<UTC stamp>/   one folder per release: the bundle + its own venv/
    current -> releases/<...>         switched with ``ln -s`` to a temp name, then ``mv -T``
    base-venv/                        optional: numpy, ai-edge-litert, smbus2, pyserial

**Dependencies on the device (decision).** Each release gets its own venv.
When the device has a base venv (``root/base-venv``; the virtual Pi builds
one), the release venv is created without pip and a ``.pth`` file puts the
base venv's site-packages on its path; pip (from the base venv, ``--python``
the release venv) then installs the project wheel with ``--no-index`` from the
bundle's ``wheels/``, so a release never downloads anything and never touches
the base. Without a base venv the release venv gets its own pip and installs
``wheel[edge]`` from the bundle's wheels plus the device's own index settings.
``--system-site-packages`` is not used (Debian's system site-packages are not
ours to depend on).

Every step is one argument list run through a runner (:class:`~.remote.SSHRunner`,
or a fake in tests); any failure after the release folder exists undoes the
release: ``current`` goes back to the previous release (or is removed when
there was none), the service is restarted there, the failed folder is removed.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ppg_edge.edge_runtime.user import PROFILE_FILE
from ppg_edge.errors import ConfigError

from .bundle import Bundle, release_sort_key
from .remote import DeployError, HostKeyError, Result

log = logging.getLogger(__name__)

SERVICE = "ppg-edge.service"
_ROOT_RE = re.compile(r"^/[A-Za-z0-9._/-]+$")
SERVICE_MANAGERS = ("auto", "systemd", "none")


class Runner(Protocol):
    def run(self, argv: Sequence[str]) -> Result: ...
    def push(self, local_dir, remote_dir: str) -> Result: ...


@dataclass
class DeployReport:
    release: str
    previous: str | None
    ok: bool = False
    steps: list[str] = field(default_factory=list)
    smoke: dict | None = None
    rolled_back: bool = False
    error: str | None = None


class Deployer:
    def __init__(self, runner: Runner, *, root: str = "/opt/ppg-edge", python: str = "python3.11",
                 service_manager: str = "auto", sudo: bool = True,
                 say: Callable[[str], None] | None = None):
        if not _ROOT_RE.match(root) or ".." in root.split("/"):
            raise ConfigError(f"--root {root!r}: expected an absolute path of plain characters")
        if service_manager not in SERVICE_MANAGERS:
            raise ConfigError(f"--service-manager {service_manager!r}: one of {', '.join(SERVICE_MANAGERS)}")
        self.runner = runner
        self.root = root.rstrip("/")
        self.python = python
        self.service_manager = service_manager
        self.sudo = ["sudo", "-n"] if sudo else []
        self.say = say or (lambda msg: log.info("%s", msg))

    # ----------------------------------------------------------------- paths
    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def base_venv(self) -> str:
        return f"{self.root}/base-venv"

    def release_dir(self, name: str) -> str:
        return f"{self.releases}/{name}"

    @property
    def state(self) -> str:
        """The wearer's profile and cuff calibration: beside the releases, kept by deploys and rollbacks."""
        return f"{self.root}/state"

    # ----------------------------------------------------------------- primitives
    def _run(self, step: str, argv: Sequence[str], *, ok_codes=(0,)) -> Result:
        self.say(f"[{step}] " + " ".join(argv))
        res = self.runner.run(list(argv))
        if res.rc not in ok_codes:
            detail = (res.stderr or res.stdout).strip().splitlines()[-6:]
            raise DeployError(f"step {step} failed (exit {res.rc}): {' | '.join(detail) or 'no output'}")
        return res

    def current_release(self) -> str | None:
        res = self._run("inspect", ["readlink", self.current], ok_codes=(0, 1))
        target = res.stdout.strip()
        return posixpath.basename(target.rstrip("/")) if res.rc == 0 and target else None

    def list_releases(self) -> list[str]:
        res = self._run("inspect", ["find", self.releases, "-mindepth", "1", "-maxdepth", "1",
                                    "-type", "d", "-printf", "%f\\n"], ok_codes=(0, 1))
        return sorted((n for n in res.stdout.split() if n), key=release_sort_key)

    def switch(self, name: str | None) -> None:
        """Point ``current`` at ``releases/name`` atomically (``None``: remove ``current``)."""
        if name is None:
            self._run("switch", ["rm", "-f", self.current])
            return
        tmp = f"{self.root}/.current.tmp"
        self._run("switch", ["ln", "-sfn", f"releases/{name}", tmp])
        self._run("switch", ["mv", "-T", tmp, self.current])

    def _manager(self) -> str:
        if self.service_manager != "auto":
            return self.service_manager
        res = self._run("detect", ["test", "-d", "/run/systemd/system"], ok_codes=(0, 1))
        self.service_manager = "systemd" if res.rc == 0 else "none"
        return self.service_manager

    def restart_service(self) -> None:
        if self._manager() == "none":
            self.say("[service] no service manager on the device: not restarted (smoke check instead)")
            return
        unit = f"{self.current}/systemd/{SERVICE}"
        self._run("service", [*self.sudo, "ln", "-sfn", unit, f"/etc/systemd/system/{SERVICE}"])
        self._run("service", [*self.sudo, "systemctl", "daemon-reload"])
        self._run("service", [*self.sudo, "systemctl", "enable", SERVICE])
        self._run("service", [*self.sudo, "systemctl", "restart", SERVICE])

    def smoke(self) -> dict:
        if getattr(self.runner, "dry_run", False):
            self._run("smoke", [f"{self.current}/venv/bin/python", "-m", "ppg_edge.boards.deploy.smoke",
                                self.current, "--json"], ok_codes=(0, 1))
            return {"ok": None, "dry_run": True}
        res = self._run("smoke", [f"{self.current}/venv/bin/python", "-m", "ppg_edge.boards.deploy.smoke",
                                  self.current, "--json"], ok_codes=(0, 1))
        try:
            result = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise DeployError(f"step smoke: no result from the device (exit {res.rc}): "
                              f"{(res.stderr or res.stdout).strip()[-400:]}")
        if res.rc != 0 or not result.get("ok"):
            failed = [f"{c['check']}: {c['detail']}" for c in result.get("checks", []) if c.get("status") == "fail"]
            raise DeployError("step smoke failed: " + ("; ".join(failed) or f"exit {res.rc}"))
        if self.service_manager == "systemd":
            self._run("smoke", ["systemctl", "is-active", "--quiet", SERVICE])
        return result

    # ----------------------------------------------------------------- install
    def install(self, bundle: Bundle) -> None:
        rel = self.release_dir(bundle.release)
        venv = f"{rel}/venv"
        site = f"lib/{self.python}/site-packages"
        wheel = f"{rel}/{bundle.wheel}[edge]"
        self._run("verify", ["sh", "-c", 'cd "$1" && sha256sum --check --strict --quiet SHA256SUMS',
                             "sh", rel])
        has_base = self._run("venv", ["test", "-x", f"{self.base_venv}/bin/python"], ok_codes=(0, 1)).rc == 0
        if has_base:
            self._run("venv", [self.python, "-m", "venv", "--without-pip", venv])
            self._run("venv", ["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh",
                               f"{self.base_venv}/{site}", f"{venv}/{site}/ppg_edge_base.pth"])
            self._run("install", [f"{self.base_venv}/bin/python", "-m", "pip", "--python", f"{venv}/bin/python",
                                  "install", "-q", "--no-index", "--find-links", f"{rel}/wheels", wheel])
        else:
            self._run("venv", [self.python, "-m", "venv", venv])
            self._run("install", [f"{venv}/bin/python", "-m", "pip", "install", "-q",
                                  "--find-links", f"{rel}/wheels", wheel])

    def install_profile(self, bundle: Bundle) -> bool:
        """The bundle's profile (``--profile``) into the state folder, atomically, the one it replaces
        kept as ``.profile.toml.prev`` for a rollback; False when the bundle carries none."""
        if not (Path(bundle.path) / PROFILE_FILE).is_file():
            return False
        self._run("profile", ["sh", "-c",
                              'mkdir -p "$1" && if [ -f "$1/$3" ]; then cp -p "$1/$3" "$1/.$3.prev"; '
                              'else rm -f "$1/.$3.prev"; fi && cp "$2/$3" "$1/.$3.tmp" && mv -f "$1/.$3.tmp" "$1/$3"',
                              "sh", self.state, self.release_dir(bundle.release), PROFILE_FILE])
        return True

    def _restore_profile(self) -> None:
        self._run("rollback", ["sh", "-c", 'if [ -f "$1/.$2.prev" ]; then mv -f "$1/.$2.prev" "$1/$2"; '
                                           'else rm -f "$1/$2"; fi', "sh", self.state, PROFILE_FILE])

    def deploy(self, bundle: Bundle) -> DeployReport:
        """Push, install, switch, restart, smoke-check; on any failure roll back and raise."""
        self._run("connect", ["true"])
        previous = self.current_release()
        report = DeployReport(release=bundle.release, previous=previous)
        rel = self.release_dir(bundle.release)
        self._run("prepare", ["mkdir", "-p", self.releases])
        self._run("prepare", ["mkdir", rel])  # fails if this release name exists: never overwrite
        created, switched, profile = True, False, False
        try:
            self.say(f"[push] {bundle.path}/ -> {rel}/")
            res = self.runner.push(bundle.path, rel)
            if res.rc != 0:
                raise DeployError(f"step push failed (exit {res.rc}): {res.stderr.strip()[-400:]}")
            self.install(bundle)
            profile = self.install_profile(bundle)
            self.switch(bundle.release)
            switched = True
            self.restart_service()
            report.smoke = self.smoke()
        except HostKeyError:
            raise
        except DeployError as exc:
            report.error = str(exc)
            self.say(f"[rollback] {exc}")
            problems = self._undo(bundle.release, previous, switched, created, profile)
            report.rolled_back = True
            back = f"back on {previous}" if previous else "no previous release; current removed"
            extra = f"; rollback problems: {'; '.join(problems)}" if problems else ""
            raise DeployError(f"deploy of {bundle.release} failed and was rolled back ({back}): {exc}{extra}") from None
        report.ok = True
        return report

    def _undo(self, name: str, previous: str | None, switched: bool, created: bool,
              profile: bool = False) -> list[str]:
        problems = []
        steps = []
        if profile:  # before the restart below, which reads it
            steps.append(self._restore_profile)
        if switched:
            steps.append(lambda: self.switch(previous))
            if previous is not None:
                steps.append(self.restart_service)
        if created:
            steps.append(lambda: self._run("rollback", ["rm", "-rf", "--", self.release_dir(name)]))
        for step in steps:
            try:
                step()
            except DeployError as exc:
                problems.append(str(exc))
        return problems

    # ----------------------------------------------------------------- status / rollback
    def status(self) -> dict:
        self._run("connect", ["true"])
        return {"root": self.root, "current": self.current_release(), "releases": self.list_releases()}

    def rollback(self) -> DeployReport:
        """Switch ``current`` to the release before it; smoke-check; switch back if that fails."""
        self._run("connect", ["true"])
        cur = self.current_release()
        releases = self.list_releases()
        if cur is None:
            raise DeployError(f"nothing to roll back: {self.current} does not point at a release")
        older = [r for r in releases if release_sort_key(r) < release_sort_key(cur)]
        if not older:
            raise DeployError(f"nothing to roll back to: {cur} is the oldest release in {self.releases}")
        target = older[-1]
        report = DeployReport(release=target, previous=cur)
        self.switch(target)
        try:
            self.restart_service()
            report.smoke = self.smoke()
        except DeployError as exc:
            self.switch(cur)
            self.restart_service()
            raise DeployError(f"rollback to {target} failed its checks; stayed on {cur}: {exc}") from None
        report.ok = True
        return report
