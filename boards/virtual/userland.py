"""Build an arm64 Debian bookworm userland without touching the host's dpkg.

The fast path measured in ``docs/facts.md`` ("The virtual Raspberry Pi"):
a private apt configuration (``APT::Architecture "arm64"``, an empty dpkg status
file, its own lists and archive folders, the mirror the host's apt already uses)
downloads the packages, and ``dpkg -x`` unpacks each one into the root. No
maintainer script runs, so the few things they would do (users, ``/bin/sh``,
the CA bundle, merged-/usr links) are done here by hand.

Two cached stages live under ``ppg_edge.config.cache_dir()/"vpi"``, each in a
folder named by a hash of what went into it, built under a lock into a private
folder and published by an atomic rename (``ppg_edge.cache.build_stage``):

* ``userland-<hash>``: the unpacked packages (hash of the package list and the
  mirror lines);
* ``base-<hash>``: that userland plus ``/opt/ppg-edge/base-venv`` with the pip
  packages the edge install needs (hash of the first stage and the pip list).

A second build copies the finished stage, which takes seconds.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ppg_edge import config
from ppg_edge.cache import build_stage, remove_tree
from ppg_edge.errors import ConfigError, HardwareError

from .chroot import run_tool

log = logging.getLogger(__name__)

# Debian packages of the userland (their dependencies come in through apt).
# python3.11 is Raspberry Pi OS bookworm's Python; dash/coreutils give the
# login shell and the tools the deploy runs (mkdir, ln, mv, readlink, sha256sum).
DEB_PACKAGES: tuple[str, ...] = (
    "python3.11", "python3.11-venv", "libstdc++6", "ca-certificates",
    "openssh-server", "rsync", "dash", "coreutils", "findutils", "sed", "grep",
)
# What the edge extra of pyproject.toml needs on the device, plus the base
# dependencies (numpy, tqdm). Installed in the base venv of the virtual Pi.
PIP_PACKAGES: tuple[str, ...] = (
    "numpy>=1.26,<3", "tqdm>=4.66", "ai-edge-litert==2.3.0", "smbus2>=0.5", "pyserial>=3.5",
)
PYTHON = "python3.11"
BASE_VENV = "/opt/ppg-edge/base-venv"
DEBIAN_SUITE = "bookworm"

PI_UID = 1000
I2C_GID = 998
DIALOUT_GID = 20


# --------------------------------------------------------------------------- host settings


def debian_sources(paths: Iterable[Path] | None = None) -> list[str]:
    """One-line ``deb`` entries for the bookworm mirror(s) the host's apt uses.

    Reads ``/etc/apt/sources.list`` and ``sources.list.d/*.list`` / ``*.sources``
    (deb822) and keeps the Debian bookworm suites with a ``Signed-By`` keyring
    where one is given. Raises :class:`ConfigError` when none is found.
    """
    if paths is None:
        etc = Path("/etc/apt")
        paths = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list")),
                 *sorted((etc / "sources.list.d").glob("*.sources"))]
    out: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if str(path).endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        if suite.startswith(DEBIAN_SUITE):
                            opts = f"[signed-by={fields['signed-by']}] " if fields.get("signed-by") else ""
                            out.append(f"deb {opts}{uri} {suite} {fields.get('components', 'main')}")
        else:
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 4 and parts[0] == "deb":
                    # deb [opts] uri suite comps...
                    i = 1
                    while i < len(parts) and parts[i].startswith("["):
                        while not parts[i].endswith("]"):
                            i += 1
                        i += 1
                    if i + 1 < len(parts) and parts[i + 1].startswith(DEBIAN_SUITE) and "debian" in parts[i]:
                        out.append(line.split("#", 1)[0].strip())
    if not out:
        raise ConfigError("no Debian bookworm mirror in /etc/apt/sources.list or sources.list.d: "
                          "the virtual Pi's userland is downloaded from the mirror the host's apt uses")
    return out


@dataclass
class PipSettings:
    """Index settings of the host's pip, to pass into the chroot (which runs under ``env -i``)."""

    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)

    def local_dirs(self) -> list[Path]:
        """Host folders named by ``file://`` URLs or plain paths (bind-mounted into the chroot)."""
        out = []
        for loc in [self.index_url or "", *self.extra_index_urls, *self.find_links]:
            path = loc[len("file://"):] if loc.startswith("file://") else loc if loc.startswith("/") else ""
            if path and Path(path).is_dir():
                # A local PEP 503 index (".../simple") links to files beside it: mount the parent.
                p = Path(path).resolve()
                mount = p.parent if p.name == "simple" else p
                if mount not in out:
                    out.append(mount)
        return out

    def env(self) -> dict[str, str]:
        """``PIP_*`` variables carrying these settings (only locations that exist or are remote)."""
        def ok(loc: str) -> bool:
            path = loc[len("file://"):] if loc.startswith("file://") else loc if loc.startswith("/") else ""
            return not path or Path(path).is_dir()

        env = {}
        if self.index_url and ok(self.index_url):
            env["PIP_INDEX_URL"] = self.index_url
        extra = [u for u in self.extra_index_urls if ok(u)]
        if extra:
            env["PIP_EXTRA_INDEX_URL"] = " ".join(extra)
        links = [u for u in self.find_links if ok(u)]
        if links:
            env["PIP_FIND_LINKS"] = " ".join(links)
        if self.trusted_hosts:
            env["PIP_TRUSTED_HOST"] = " ".join(self.trusted_hosts)
        return env


def pip_settings(files: Sequence[Path] | None = None, environ: dict[str, str] | None = None) -> PipSettings:
    """The host's pip index settings: config files (global, then user), then ``PIP_*`` variables."""
    if files is None:
        home = Path.home()
        files = [Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"),
                 home / ".pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, str] = {}
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError) as exc:
            raise ConfigError(f"{path}: cannot read pip configuration: {exc}") from None
        for section in ("global", "install", "download"):
            if parser.has_section(section):
                for key in ("index-url", "extra-index-url", "find-links", "trusted-host"):
                    if parser.has_option(section, key):
                        values[key] = parser.get(section, key)
    for key in ("index-url", "extra-index-url", "find-links", "trusted-host"):
        env_key = "PIP_" + key.upper().replace("-", "_")
        if environ.get(env_key):
            values[key] = environ[env_key]
    return PipSettings(index_url=values.get("index-url") or None,
                       extra_index_urls=values.get("extra-index-url", "").split(),
                       find_links=values.get("find-links", "").split(),
                       trusted_hosts=values.get("trusted-host", "").split())


# --------------------------------------------------------------------------- helpers


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def stage_dir(kind: str, key: str) -> Path:
    return config.cache_dir() / "vpi" / f"{kind}-{key}"


# --------------------------------------------------------------------------- stage 1: packages


def download_debs(work: Path, packages: Sequence[str], sources: Sequence[str]) -> list[Path]:
    """Download the arm64 ``.deb`` files of ``packages`` and their dependencies with a private apt."""
    for sub in ("state", "lists/partial", "cache/archives/partial", "etc/sources.list.d",
                "etc/preferences.d", "etc/apt.conf.d"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "state" / "status").write_text("")
    (work / "etc" / "sources.list").write_text("\n".join(sources) + "\n")
    conf = work / "apt.conf"
    conf.write_text("\n".join([
        'APT::Architecture "arm64";',
        'APT::Architectures { "arm64"; };',
        'APT::Install-Recommends "false";',
        'APT::Install-Suggests "false";',
        f'Dir::State "{work}/state";',
        f'Dir::State::status "{work}/state/status";',
        f'Dir::State::Lists "{work}/lists";',
        f'Dir::Cache "{work}/cache";',
        f'Dir::Cache::Archives "{work}/cache/archives";',
        f'Dir::Etc::SourceList "{work}/etc/sources.list";',
        f'Dir::Etc::SourceParts "{work}/etc/sources.list.d";',
        f'Dir::Etc::Preferences "{work}/etc/preferences";',
        f'Dir::Etc::PreferencesParts "{work}/etc/preferences.d";',
        f'Dir::Etc::Parts "{work}/etc/apt.conf.d";',
        'Debug::NoLocking "true";',
        'Acquire::Languages "none";',
    ]) + "\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "APT_CONFIG": str(conf),
           "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy"):
        if key in os.environ:
            env[key] = os.environ[key]
    if shutil.which("apt-get") is None:
        raise HardwareError("apt-get not found: building the virtual Pi needs a Debian-family host")
    log.info("apt-get update (arm64, private state in %s)", work)
    run_tool(["apt-get", "update", "-q"], env=env, what="apt-get update for arm64 "
         "(is the Debian mirror of /etc/apt/sources.list reachable?)")
    log.info("downloading %d packages and their dependencies", len(packages))
    run_tool(["apt-get", "install", "-y", "-q", "--download-only", *packages], env=env,
         what="apt-get install --download-only (arm64)")
    debs = sorted((work / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise HardwareError(f"apt downloaded no .deb files into {work}/cache/archives")
    return debs


def unpack(debs: Sequence[Path], root: Path) -> None:
    """``dpkg -x`` each package into ``root`` (bookworm packages still ship /bin and /lib: the
    tree stays unmerged, which the loader path ``/lib/ld-linux-aarch64.so.1`` is fine with)."""
    if shutil.which("dpkg-deb") is None:
        raise HardwareError("dpkg-deb not found: building the virtual Pi needs a Debian-family host")
    root.mkdir(parents=True, exist_ok=True)
    try:
        from tqdm import tqdm
        it = tqdm(debs, desc="dpkg -x", unit="deb", disable=None)
    except ImportError:  # pragma: no cover
        it = debs
    for deb in it:
        run_tool(["dpkg-deb", "-x", str(deb), str(root)], what=f"dpkg -x {deb.name}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def configure(root: Path) -> None:
    """What maintainer scripts would have done: users and groups, ``/bin/sh``, CA bundle, resolver."""
    _write(root / "etc/passwd", "\n".join([
        "root:x:0:0:root:/root:/bin/sh",
        "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin",
        f"pi:x:{PI_UID}:{PI_UID}:pi:/home/pi:/bin/sh",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    ]) + "\n")
    _write(root / "etc/group", "\n".join([
        "root:x:0:", f"dialout:x:{DIALOUT_GID}:pi", f"i2c:x:{I2C_GID}:pi",
        f"pi:x:{PI_UID}:", "nogroup:x:65534:",
    ]) + "\n")
    # '*' : no password login for anyone; ssh keys only.
    _write(root / "etc/shadow", "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n"
           "pi:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0o640)
    sh = root / "bin/sh"
    if not sh.exists() and not sh.is_symlink():
        sh.parent.mkdir(parents=True, exist_ok=True)
        sh.symlink_to("dash")
    for sub in ("tmp", "var/tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub).chmod(0o1777)
    for sub in ("proc", "sys", "dev", "run/sshd", "root", "etc/ssh"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "run/sshd").chmod(0o755)
    home = root / "home/pi"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    os.chown(home, PI_UID, PI_UID)
    os.chown(home / ".ssh", PI_UID, PI_UID)
    (home / ".ssh").chmod(0o700)
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_ca.is_file():
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(host_ca, root / "etc/ssl/certs/ca-certificates.crt")
    if Path("/etc/resolv.conf").is_file():
        shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n")
    # The deploy target: owned by pi so the deploy user can write releases.
    opt = root / "opt/ppg-edge"
    (opt / "releases").mkdir(parents=True, exist_ok=True)
    os.chown(opt, PI_UID, PI_UID)
    os.chown(opt / "releases", PI_UID, PI_UID)


def build_userland(packages: Sequence[str] = DEB_PACKAGES, *, sources: Sequence[str] | None = None,
                   rebuild: bool = False) -> Path:
    """Stage 1 (cached, built under the stage's lock): the unpacked arm64 userland. Returns its folder."""
    sources = list(sources) if sources is not None else debian_sources()
    key = _digest(sorted(packages), sources)

    def fill(tmp: Path) -> None:
        # apt's private state lives inside the build folder: one builder at a time uses it
        debs = download_debs(tmp / "apt", packages, sources)
        log.info("unpacking %d .deb files into %s", len(debs), tmp)
        unpack(debs, tmp / "root")
        configure(tmp / "root")
        (tmp / "packages.json").write_text(json.dumps({"packages": list(packages), "sources": sources,
                                                       "debs": [d.name for d in debs]}, indent=1))
        remove_tree(tmp / "apt")

    return build_stage(stage_dir("userland", key), fill, rebuild=rebuild, what="virtual-Pi userland")


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a root keeping owners, modes and links (``cp -a``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    run_tool(["cp", "-a", "--", str(src), str(dst)], what=f"copy {src} to {dst}")
