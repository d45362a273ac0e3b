"""Can this host run the virtual Pi? Its system packages, root, binfmt_misc: one answer.

The Debian packages are data (``system-packages.txt`` beside this file), read by the
Makefile's ``system-deps`` target and by :func:`readiness`, which ``ppg-edge demo``
calls before its device part: it installs what is missing when it can (root and
apt-get), and otherwise says why the virtual Pi cannot run and the one command that
fixes it.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ppg_edge.errors import HardwareError

log = logging.getLogger(__name__)

PACKAGES_FILE = Path(__file__).with_name("system-packages.txt")


def system_packages(path: Path = PACKAGES_FILE) -> list[str]:
    """The Debian package names of ``system-packages.txt`` (comments and blank lines skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            out.append(name)
    return out


def missing_packages(packages: list[str]) -> list[str]:
    """The packages dpkg does not list as installed (all of them on a host without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return list(packages)
    missing = []
    for name in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(name)
    return missing


def install_packages(packages: list[str]) -> None:
    """``apt-get install`` as root; :class:`HardwareError` with apt's last lines when it fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        log.info("%s", " ".join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise HardwareError(f"{' '.join(argv[:2])} failed (exit {proc.returncode}): {tail}")


@dataclass
class Readiness:
    """``ok``, or why not (``reason``) and the one command that fixes it (``fix``)."""

    ok: bool
    reason: str = ""
    fix: str = ""
    installed: tuple[str, ...] = ()


def readiness(*, install: bool = True) -> Readiness:
    """Whether the virtual Pi can run here, installing missing system packages when allowed
    and possible (root and apt-get)."""
    from . import chroot as ch

    root = os.geteuid() == 0
    packages = system_packages()
    missing = missing_packages(packages)
    installed: tuple[str, ...] = ()
    if missing:
        if install and root and shutil.which("apt-get"):
            try:
                install_packages(missing)
                installed = tuple(missing)
            except HardwareError as exc:
                return Readiness(False, f"installing the system packages {' '.join(missing)} failed: {exc}",
                                 f"apt-get install {' '.join(missing)}")
            missing = missing_packages(missing)
        if missing:
            fix = "sudo make system-deps" if shutil.which("apt-get") else \
                f"install the Debian packages {' '.join(missing)}"
            return Readiness(False, f"missing system packages: {' '.join(missing)}", fix)
    if not root:
        return Readiness(False, "the virtual Pi needs root (chroot and mount)", "sudo make demo", installed)
    try:
        ch.ensure_binfmt()
    except HardwareError as exc:
        return Readiness(False, str(exc), "sudo update-binfmts --enable qemu-aarch64", installed)
    return Readiness(True, installed=installed)
