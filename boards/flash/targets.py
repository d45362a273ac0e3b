"""Is it safe to write an image to this target? Checks against /sys and /proc.

A target is either an image file (written freely, confirmed if it would
replace an existing file) or a whole-disk block device, which is refused when

- it is a partition rather than a whole disk,
- it or any of its partitions is mounted or used as swap
  (``/proc/self/mountinfo`` by device number, ``/proc/mounts`` by name,
  ``/proc/swaps``),
- it holds the root file system (the disk behind ``/``, through device-mapper
  slaves too),
- it is not removable (``/sys/block/<dev>/removable``) unless ``force``,
- it is smaller than the image.

The /sys, /proc and /dev roots are parameters so tests can fake them; with a
``dev_root`` other than ``/dev`` a regular file stands in for the device node.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ppg_edge.errors import ConfigError

log = logging.getLogger(__name__)


class UnsafeTargetError(ConfigError):
    """Writing to this target could destroy data the user did not mean to give up."""


@dataclass(frozen=True)
class SystemRoots:
    sys: Path = Path("/sys")
    proc: Path = Path("/proc")
    dev: Path = Path("/dev")

    @property
    def real(self) -> bool:
        return self.dev == Path("/dev")


HOST_ROOTS = SystemRoots()  # this machine's /sys, /proc and /dev


@dataclass(frozen=True)
class Target:
    path: Path
    is_device: bool
    name: str                    # kernel name (sdb, mmcblk0) or the file name
    model: str = ""
    size: int | None = None      # bytes; None for a file that does not exist yet
    removable: bool | None = None

    def describe(self) -> str:
        if not self.is_device:
            return f"image file {self.path}" + (f" ({human_size(self.size)}, will be replaced)" if self.size else "")
        model = self.model or "unknown model"
        kind = "removable" if self.removable else "NOT removable"
        return f"{self.path} ({model}, {human_size(self.size or 0)}, {kind})"


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def _disk_devnums(roots: SystemRoots) -> dict[str, str]:
    """major:minor -> whole-disk name, for every disk and partition in /sys/block."""
    out: dict[str, str] = {}
    block = roots.sys / "block"
    if not block.is_dir():
        return out
    for disk in block.iterdir():
        num = _read(disk / "dev")
        if num:
            out[num] = disk.name
        for part in disk.iterdir() if disk.is_dir() else ():
            if part.name.startswith(disk.name) and (part / "partition").exists():
                pnum = _read(part / "dev")
                if pnum:
                    out[pnum] = disk.name
    return out


def _partitions(roots: SystemRoots, disk: str) -> list[str]:
    d = roots.sys / "block" / disk
    return sorted(p.name for p in d.iterdir() if (p / "partition").exists()) if d.is_dir() else []


def _mount_table(roots: SystemRoots) -> list[tuple[str, str, str]]:
    """(major:minor or '', source, mount point) for every mount."""
    rows: list[tuple[str, str, str]] = []
    info = _read(roots.proc / "self" / "mountinfo")
    if info:
        for line in info.splitlines():
            fields = line.split()
            if " - " not in line or len(fields) < 5:
                continue
            post = line.split(" - ", 1)[1].split()
            rows.append((fields[2], _unescape(post[1]) if len(post) > 1 else "", _unescape(fields[4])))
    mounts = _read(roots.proc / "mounts") or _read(roots.proc / "self" / "mounts")
    if mounts:
        for line in mounts.splitlines():
            fields = line.split()
            if len(fields) >= 2:
                rows.append(("", _unescape(fields[0]), _unescape(fields[1])))
    if not rows:
        raise UnsafeTargetError(f"cannot read the mount table under {roots.proc} "
                                "(self/mountinfo, mounts): refusing to write to a device blind")
    return rows


def _source_disk(source: str, roots: SystemRoots, devnums: dict[str, str]) -> str | None:
    """Whole-disk name behind a mount source like /dev/sdb1 or /dev/disk/by-uuid/..."""
    if not source.startswith("/dev/"):
        return None
    rel = source[len("/dev/"):]
    path = roots.dev / rel
    name = Path(os.path.realpath(path)).name if path.is_symlink() else Path(rel).name
    block = roots.sys / "block"
    if (block / name).is_dir():
        return name
    num = _read(roots.sys / "class" / "block" / name / "dev")
    if num and num in devnums:
        return devnums[num]
    for disk in devnums.values():
        if name.startswith(disk) and name in _partitions(roots, disk):
            return disk
    return None


def _with_slaves(roots: SystemRoots, disk: str) -> set[str]:
    """A disk and, for device-mapper/md devices, the disks beneath it."""
    out = {disk}
    slaves = roots.sys / "block" / disk / "slaves"
    if slaves.is_dir():
        for s in slaves.iterdir():
            parent = next((d.name for d in (roots.sys / "block").iterdir()
                           if d.name == s.name or (d / s.name).is_dir()), s.name)
            out |= _with_slaves(roots, parent)
    return out


def _device_name(path: Path, roots: SystemRoots) -> str:
    real = Path(os.path.realpath(path))
    try:
        rel = real.relative_to(Path(os.path.realpath(roots.dev)))
    except ValueError:
        raise UnsafeTargetError(f"{path}: not a device under {roots.dev}") from None
    return rel.name


def inspect_target(path: str | os.PathLike, roots: SystemRoots = SystemRoots()) -> Target:
    """Classify ``path`` and read what /sys says about it (no safety decision yet)."""
    p = Path(path)
    under_dev = str(Path(os.path.abspath(p))).startswith(str(roots.dev) + os.sep)
    if not under_dev:
        if p.exists() and not p.is_file():
            mode = p.stat().st_mode
            what = "a block device outside /dev" if stat.S_ISBLK(mode) else "not a regular file"
            raise UnsafeTargetError(f"{p}: {what}; pass a /dev disk or an image file path")
        return Target(path=p, is_device=False, name=p.name, size=p.stat().st_size if p.exists() else None)
    if not p.exists():
        raise UnsafeTargetError(f"{p}: no such device")
    if roots.real and not stat.S_ISBLK(p.stat().st_mode):
        raise UnsafeTargetError(f"{p}: not a block device")
    name = _device_name(p, roots)
    disk_dir = roots.sys / "block" / name
    if not disk_dir.is_dir():
        if (roots.sys / "class" / "block" / name / "partition").exists():
            raise UnsafeTargetError(f"{p} is a partition; write the whole disk (e.g. /dev/sdX, not /dev/sdX1)")
        raise UnsafeTargetError(f"{p}: {disk_dir} not found; is {name} a disk?")
    sectors = _read(disk_dir / "size")
    model = " ".join(x for x in (_read(disk_dir / "device" / "vendor"), _read(disk_dir / "device" / "model")) if x)
    return Target(path=p, is_device=True, name=name, model=model,
                  size=int(sectors) * 512 if sectors and sectors.isdigit() else None,
                  removable=_read(disk_dir / "removable") == "1")


def check_target(target: Target, image_size: int | None, roots: SystemRoots = SystemRoots(),
                 force: bool = False) -> None:
    """Raise :class:`UnsafeTargetError` when writing ``target`` is not safe."""
    if not target.is_device:
        return
    devnums = _disk_devnums(roots)
    rows = _mount_table(roots)
    parts = _partitions(roots, target.name)
    for num, source, mountpoint in rows:
        disk = devnums.get(num) if num else None
        disk = disk or _source_disk(source, roots, devnums)
        if disk is None:
            continue
        holds_root = mountpoint == "/"
        if holds_root and target.name in _with_slaves(roots, disk):
            raise UnsafeTargetError(f"{target.path} holds the running system's root file system "
                                    f"(/ is mounted from {source}); refusing to overwrite it")
        if disk == target.name:
            raise UnsafeTargetError(f"{target.path} is in use: {source} is mounted on {mountpoint}; "
                                    "unmount it first (e.g. `udisksctl unmount -b DEVICE`)")
    swaps = _read(roots.proc / "swaps") or ""
    for line in swaps.splitlines()[1:]:
        src = line.split()[0] if line.split() else ""
        if Path(src).name in (target.name, *parts):
            raise UnsafeTargetError(f"{target.path} is in use as swap ({src})")
    if not target.removable and not force:
        raise UnsafeTargetError(f"{target.path} ({target.model or 'unknown model'}) is not a removable disk; "
                                "pass --force if it really is the card reader you mean")
    if target.size is not None and image_size is not None and image_size > target.size:
        raise UnsafeTargetError(f"{target.path} holds {human_size(target.size)}, the image needs "
                                f"{human_size(image_size)}")
    log.debug("target %s passed the safety checks", target.path)
