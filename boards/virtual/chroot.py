"""Running an aarch64 chroot through qemu-user: host checks, mounts, the emulated CPU.

Facts this relies on (``docs/facts.md``, "The virtual Raspberry Pi"):

* binfmt_misc must be mounted and ``qemu-aarch64`` enabled; then the kernel
  hands every aarch64 ELF to ``qemu-aarch64-static`` (registered with the ``F``
  flag, so the interpreter need not be inside the root);
* ai-edge-litert segfaults under qemu unless an aarch64 ``/proc/cpuinfo`` is
  bind-mounted over the root's and ``/sys`` is mounted;
* ``QEMU_CPU`` must pin the board's core (``cortex-a72`` for a Pi 4): qemu's
  default ``max`` CPU gave wrong int8 results.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from ppg_edge.cache import mount_points
from ppg_edge.errors import ConfigError, HardwareError

log = logging.getLogger(__name__)

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_NAME = "qemu-aarch64"
QEMU_CANDIDATES = ("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/usr/bin/qemu-aarch64-static")
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# MIDR fields of the cores a board file may name (Arm technical reference manuals).
_CORES = {
    "cortex-a53": {"part": "0xd03", "variant": "0x0", "revision": 4,
                   "features": "fp asimd evtstrm crc32 cpuid"},
    "cortex-a72": {"part": "0xd08", "variant": "0x0", "revision": 3,
                   "features": "fp asimd evtstrm crc32 cpuid"},
    "cortex-a76": {"part": "0xd0b", "variant": "0x4", "revision": 1,
                   "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
                               "cpuid asimdrdm lrcpc dcpop asimddp"},
}
# Revision codes of the emulated boards (new-style codes from the Raspberry Pi documentation).
_HARDWARE = {
    "cortex-a53": ("BCM2835", "902120"),   # Pi Zero 2 W
    "cortex-a72": ("BCM2835", "c03114"),   # Pi 4 Model B Rev 1.4, 4 GB
    "cortex-a76": ("BCM2835", "d04170"),   # Pi 5, 4 GB
}


def cpuinfo_text(qemu_cpu: str, cores: int, model_name: str) -> str:
    """An aarch64 ``/proc/cpuinfo`` as a Raspberry Pi with this core shows it."""
    core = _CORES.get(qemu_cpu)
    if core is None:
        raise ConfigError(f"no cpuinfo template for qemu CPU {qemu_cpu!r}; known: {', '.join(_CORES)}")
    blocks = []
    for i in range(cores):
        blocks.append("\n".join([
            f"processor\t: {i}",
            "BogoMIPS\t: 108.00",
            f"Features\t: {core['features']}",
            "CPU implementer\t: 0x41",
            "CPU architecture: 8",
            f"CPU variant\t: {core['variant']}",
            f"CPU part\t: {core['part']}",
            f"CPU revision\t: {core['revision']}",
        ]))
    hardware, revision = _HARDWARE[qemu_cpu]
    blocks.append("\n".join([
        f"Hardware\t: {hardware}",
        f"Revision\t: {revision}",
        "Serial\t\t: 00000000c0ffee00",
        f"Model\t\t: {model_name}",
    ]))
    return "\n\n".join(blocks) + "\n"


def board_cpuinfo(board) -> str:
    """The cpuinfo text of a virtual board, named after the board it emulates."""
    from ppg_edge.boards.registry import load_board

    if not board.virtual or not board.cpu.qemu_cpu:
        raise ConfigError(f"{board.identifier}: not a virtual board (no cpu.qemu_cpu)")
    model = board.name
    if board.emulates:
        try:
            model = load_board(board.emulates).name
        except ConfigError:
            pass
    return cpuinfo_text(board.cpu.qemu_cpu, board.cpu.cores, model)


# --------------------------------------------------------------------------- host checks


def qemu_binary() -> Path:
    for cand in QEMU_CANDIDATES:
        if Path(cand).is_file():
            return Path(cand)
    raise HardwareError("qemu-user for aarch64 is not installed (no " + " or ".join(QEMU_CANDIDATES)
                        + "); install it with `apt-get install qemu-user-static binfmt-support`")


def ensure_binfmt(binfmt_dir: Path = BINFMT_DIR) -> None:
    """Make the kernel run aarch64 ELF files through qemu; clear errors when the host cannot."""
    qemu_binary()
    entry = binfmt_dir / BINFMT_NAME
    if not (binfmt_dir / "register").exists():
        if os.geteuid() != 0:
            raise HardwareError(f"binfmt_misc is not mounted at {binfmt_dir} and mounting it needs root")
        log.info("mounting binfmt_misc at %s", binfmt_dir)
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise HardwareError(f"cannot mount binfmt_misc at {binfmt_dir}: {proc.stderr.strip()} "
                                "(a container without binfmt support cannot run the virtual Pi)")
    if not entry.exists() or "enabled" not in entry.read_text():
        if shutil.which("update-binfmts") is None:
            raise HardwareError(f"binfmt entry {entry} is missing and update-binfmts is not installed "
                                "(apt-get install binfmt-support)")
        proc = subprocess.run(["update-binfmts", "--enable", BINFMT_NAME], capture_output=True, text=True)
        if proc.returncode != 0 or not entry.exists():
            raise HardwareError(f"cannot enable the {BINFMT_NAME} binfmt entry: "
                                f"{(proc.stderr or proc.stdout).strip() or 'entry still missing'}")
    text = entry.read_text()
    if "enabled" not in text.splitlines()[0]:
        raise HardwareError(f"binfmt entry {entry} is disabled")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise HardwareError(f"{what} needs root (chroot and mount); run it as root")


# --------------------------------------------------------------------------- mounts


def _mounted(path: Path) -> bool:
    return os.path.realpath(path) in mount_points()


class Mounts:
    """Mounts made under a root, undone in reverse order (also after partial failure)."""

    def __init__(self, done: Iterable[str] = ()):
        self.done: list[str] = list(done)

    def mount(self, argv_tail: Sequence[str], target: Path) -> None:
        target = Path(target)
        proc = subprocess.run(["mount", *argv_tail, str(target)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise HardwareError(f"mount {' '.join(argv_tail)} {target} failed: {proc.stderr.strip()}")
        self.done.append(str(target))

    def bind(self, source: Path, target: Path, *, readonly: bool = False) -> None:
        self.mount(["--bind", str(source)], target)
        if readonly:
            self.mount(["-o", "remount,ro,bind"], target)
            self.done.pop()  # one mount point, unmounted once

    def unmount_all(self) -> list[str]:
        """Unmount everything, newest first; returns the problems (never raises)."""
        problems = []
        while self.done:
            target = self.done.pop()
            if not _mounted(Path(target)):
                continue
            proc = subprocess.run(["umount", target], capture_output=True, text=True)
            if proc.returncode != 0:
                lazy = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
                if lazy.returncode != 0:
                    problems.append(f"umount {target}: {proc.stderr.strip()}")
                    log.error("cannot unmount %s: %s", target, proc.stderr.strip())
                else:
                    log.warning("unmounted %s lazily (busy)", target)
        return problems


def mount_system(root: Path, cpuinfo: Path, mounts: Mounts, extra_ro: Sequence[Path] = ()) -> None:
    """proc, sysfs, /dev, /dev/pts, the aarch64 cpuinfo, and read-only host folders (pip mirrors)."""
    root = Path(root)
    for sub in ("proc", "sys", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    mounts.mount(["-t", "proc", "proc"], root / "proc")
    mounts.mount(["-t", "sysfs", "sysfs"], root / "sys")
    mounts.bind(Path("/dev"), root / "dev")
    if Path("/dev/pts").is_dir():
        mounts.bind(Path("/dev/pts"), root / "dev/pts")
    mounts.bind(cpuinfo, root / "proc/cpuinfo")
    for host_dir in extra_ro:
        target = root / str(host_dir).lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        mounts.bind(host_dir, target, readonly=True)


def chroot_env(qemu_cpu: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a process in the chroot (it runs under ``env -i``)."""
    from ppg_edge.edge_runtime import SINGLE_THREAD_ENV

    env = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "QEMU_CPU": qemu_cpu, **SINGLE_THREAD_ENV}  # one core, as the service unit runs it
    env.update(extra or {})
    return env


def chroot_argv(root: Path, argv: Sequence[str], env: dict[str, str], user: str | None = None) -> list[str]:
    """``env -i K=V... chroot [--userspec=U] ROOT argv...`` as an argument list."""
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), chroot]
    if user:
        cmd.append(f"--userspec={user}")
    return [*cmd, str(root), *argv]


def run_tool(argv: Sequence[str], *, what: str, env: dict[str, str] | None = None, timeout: float = 900,
             label: str | None = None, tail_lines: int = 8) -> str:
    """Run a host tool and return its stdout; :class:`HardwareError` naming ``what`` (and
    ``label``, by default the tool) when it is missing, times out or exits non-zero, with
    the last ``tail_lines`` lines of its output. Logs the command line unless ``label`` is
    given (the chroot's carries its environment: the caller logs what it runs)."""
    if label is None:
        label = argv[0]
        log.debug("run %s", " ".join(argv))
    try:
        proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise HardwareError(f"{what}: {label} not found on this host") from None
    except subprocess.TimeoutExpired:
        raise HardwareError(f"{what}: {label} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-tail_lines:])
        raise HardwareError(f"{what} failed ({label} exit {proc.returncode}): {tail}")
    return proc.stdout


def run_in_chroot(root: Path, argv: Sequence[str], env: dict[str, str], *, what: str,
                  user: str | None = None, timeout: float = 900) -> str:
    log.debug("chroot run %s", " ".join(argv))
    return run_tool(chroot_argv(root, argv, env, user), what=what, timeout=timeout, label="chroot",
                    tail_lines=10)
