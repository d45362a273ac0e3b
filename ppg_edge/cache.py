"""The shared cache: builds under a lock, published by an atomic rename, removed mount-safely.

Everything the project derives and keeps under :func:`ppg_edge.config.cache_dir` (the
virtual Pi's userland and base stages, dataset arrays, demo models) can be asked for by
several processes at once: two pytest-xdist workers, a demo beside a test run. The rules:

* a stage is built under an exclusive ``fcntl.flock`` on ``<stage>.lock`` beside it; a
  second builder blocks on the lock and then reuses the finished stage;
* it is built in a private temporary folder (``<stage>.partial-XXXX``) and published by
  one ``rename``: a stage folder that exists is complete;
* a ``.partial-*`` folder found while holding the lock was left by a killed build (every
  live builder holds the lock) and is removed before building again;
* nothing is removed while anything is mounted under it. ``rm --one-file-system`` does not
  protect against a bind mount of a folder on the same device (the virtual Pi binds
  ``/dev`` and the host's pip mirror into its root), so :func:`remove_tree` reads
  ``/proc/self/mountinfo``, unmounts what lies under the tree deepest first, reads it
  again, and refuses with the mount's name if one is left.

Standard library only: the device may import it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import HardwareError

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
PARTIAL = ".partial-"


class UnsafeRemovalError(HardwareError):
    """A tree still has something mounted under it: it is not removed."""


# --------------------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: Path = MOUNTINFO) -> list[str]:
    """Every mount point of this process's mount namespace (field 5 of mountinfo)."""
    try:
        text = Path(mountinfo).read_text()
    except OSError as exc:
        raise UnsafeRemovalError(f"cannot read {mountinfo} to check for mounts: {exc}") from None
    return [_unescape(line.split()[4]) for line in text.splitlines() if len(line.split()) > 4]


def mounts_under(path: os.PathLike | str, mountinfo: Path = MOUNTINFO) -> list[str]:
    """Mount points at or below ``path`` (resolved), deepest first."""
    top = os.path.realpath(path)
    prefix = top.rstrip("/") + "/"
    found = {m for m in mount_points(mountinfo) if m == top or m.startswith(prefix)}
    return sorted(found, key=lambda m: (m.count("/"), m), reverse=True)


def _umount(target: str) -> str | None:
    """Unmount ``target`` (lazily when busy); the error text, or None."""
    for argv in (["umount", target], ["umount", "-l", target]):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if proc.returncode == 0:
            return None
        err = (proc.stderr or proc.stdout).strip()
    return err


def remove_tree(path: os.PathLike | str, *, unmount: bool = True, mountinfo: Path = MOUNTINFO) -> None:
    """Remove ``path`` (a folder or file) unless something is mounted under it.

    With ``unmount`` (the default), mounts found under the tree are unmounted first,
    deepest first (a killed virtual-Pi build leaves proc, sys, dev and read-only host
    folders mounted in its root); then mountinfo is read again and, if any mount is
    left, :class:`UnsafeRemovalError` names it and nothing is removed. Symbolic links
    are removed, never followed.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    left = mounts_under(path, mountinfo)
    if left and unmount:
        for target in left:
            err = _umount(target)
            if err:
                log.warning("cannot unmount %s: %s", target, err)
            else:
                log.info("unmounted %s (left under %s)", target, path)
        left = mounts_under(path, mountinfo)
    if left:
        raise UnsafeRemovalError(f"refusing to remove {path}: {left[0]} is mounted under it"
                                 + (f" (and {len(left) - 1} more)" if len(left) > 1 else "")
                                 + "; unmount it first")
    shutil.rmtree(path)


# --------------------------------------------------------------------------- locks and stages


@contextlib.contextmanager
def locked(target: os.PathLike | str, *, what: str | None = None) -> Iterator[Path]:
    """Hold an exclusive inter-process lock on ``<target>.lock`` (blocking)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            log.info("waiting for another process building %s", what or target)
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            log.info("lock on %s after %.1f s", what or target, time.monotonic() - t0)
        try:
            yield lock_path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stale_partials(final: os.PathLike | str) -> list[Path]:
    """Temporary build folders of ``final`` (``<name>.partial-*``, and the older ``<name>.partial``)."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    return sorted(p for p in final.parent.iterdir()
                  if p.name.startswith(final.name + PARTIAL) or p.name == final.name + ".partial")


def build_stage(final: os.PathLike | str, builder: Callable[[Path], None], *, rebuild: bool = False,
                what: str | None = None) -> Path:
    """Build the folder ``final`` once, whoever asks for it first.

    ``builder(tmp)`` fills an empty private folder; on success it is renamed to
    ``final`` in one step. Under the lock, an existing ``final`` is returned as it is
    (unless ``rebuild``) and partial folders of killed builds are removed first.
    """
    final = Path(final)
    what = what or final.name
    with locked(final, what=what):
        if final.is_dir() and not rebuild:
            log.info("%s cached at %s", what, final)
            return final
        for stale in stale_partials(final):
            log.warning("removing %s, left by a build that did not finish", stale)
            remove_tree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=final.name + PARTIAL, dir=final.parent))
        tmp.chmod(0o755)
        try:
            builder(tmp)
        except BaseException:
            try:
                remove_tree(tmp)
            except (OSError, HardwareError) as exc:  # the original error matters more
                log.error("could not remove the failed build %s: %s", tmp, exc)
            raise
        if final.exists():
            old = final.with_name(final.name + PARTIAL + "old")
            remove_tree(old)
            final.rename(old)
            tmp.rename(final)
            remove_tree(old)
        else:
            tmp.rename(final)
        log.info("%s built at %s", what, final)
        return final


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """A private temporary path beside ``path``, moved onto it by ``os.replace`` when the
    block ends without an error (removed otherwise). The suffix is kept (``np.savez`` needs it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.stem + ".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
