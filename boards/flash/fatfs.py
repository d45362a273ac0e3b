"""The boot partition's FAT file system, edited through pyfatfs as FAT drivers expect.

Names. A FAT directory entry has an 8.3 short name, stored upper-case, and may
have a long (VFAT) name. Linux and Windows store an all-lower-case name such as
``config.txt`` as a short name only, with two flags in the entry's NT reserved
byte saying "show the base name / the extension in lower case"; mixed case
(``Config.TXT``) or a name that does not fit 8.3 gets a long name. Every FAT
driver compares names case-insensitively, against the long and the short name.
pyfatfs (1.x) compares exactly and ignores the lower-case flags, so on a card
made by ``mkfs.vfat`` + ``mcopy`` it finds no ``/config.txt`` (only
``/CONFIG.TXT``) and would write a second, colliding entry. The functions here
resolve each path component case-insensitively to the name pyfatfs addresses
the existing entry by; an existing file is rewritten under its own name, and
only a component that does not exist yet is created, under the name given
(pyfatfs's ``preserve_case`` keeps its case in a long name). All reads and
writes of the boot partition go through them.

Free space. pyfatfs does not update a FAT32 partition's FSInfo sector (the free
cluster count and next-free hint); ``open_fat`` rewrites it on close from the
FAT itself, so ``fsck.vfat`` finds the partition clean and ``df`` is right.
"""
from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ppg_edge.errors import DataError

log = logging.getLogger(__name__)

NT_LOWER_BASE = 0x08   # NT reserved byte: show the 8-character base name in lower case
NT_LOWER_EXT = 0x10    # ... and the 3-character extension


FSINFO_LEAD_SIG, FSINFO_STRUCT_SIG = 0x41615252, 0x61417272
UNKNOWN = 0xFFFFFFFF


@contextmanager
def open_fat(disk: Path, offset: int, *, read_only: bool = False, what: str = "the partition") -> Iterator[Any]:
    """pyfatfs's ``PyFatFS`` over the FAT at byte ``offset`` of ``disk``; on close a FAT32 FSInfo is updated.

    A partition pyfatfs cannot read raises ``DataError`` naming ``what``.
    """
    from pyfatfs.PyFatFS import PyFatFS

    try:
        fat = PyFatFS(str(disk), offset=offset, preserve_case=True, read_only=read_only)
    except Exception as exc:  # pyfatfs raises its own and builtin errors for a bad FS
        raise DataError(f"{disk}: {what} is not a readable FAT file system: {exc}") from None
    fsinfo = None
    try:
        yield fat
        if not read_only:
            fsinfo = _fsinfo_update(fat.fs)
    finally:
        fat.close()
    if fsinfo is not None:
        where, free, next_free = fsinfo
        with open(disk, "r+b") as fh:
            fh.seek(offset + where)
            lead = fh.read(4)
            fh.seek(offset + where + 484)
            struct_sig = fh.read(4)
            if (struct.unpack("<I", lead)[0], struct.unpack("<I", struct_sig)[0]) != (FSINFO_LEAD_SIG, FSINFO_STRUCT_SIG):
                log.warning("%s: FAT32 FSInfo sector has no valid signature; its free count left as it was", disk)
                return
            fh.write(struct.pack("<II", free, next_free))
        log.debug("%s: FSInfo: %d clusters free, next free %#x", disk, free, next_free)


def _fsinfo_update(pf: Any) -> tuple[int, int, int] | None:
    """(byte offset of the FSInfo sector in the partition, free clusters, first free cluster) for FAT32."""
    if pf.fat_type != pf.FAT_TYPE_FAT32:
        return None
    bpb = pf.bpb_header
    sector = int(bpb["BPB_FSInfo"])
    if sector in (0, 0xFFFF):
        return None
    total = int(bpb["BPB_TotSec32"] or bpb["BPB_TotSec16"])
    clusters = (total - int(pf.first_data_sector)) // int(bpb["BPB_SecPerClus"])
    free = [i for i, value in enumerate(pf.fat[2:2 + clusters], start=2) if value & 0x0FFFFFFF == 0]
    return sector * int(bpb["BPB_BytsPerSec"]), len(free), free[0] if free else UNKNOWN


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s and s != "."]


def pyfatfs_name(entry: Any) -> str:
    """The name pyfatfs finds ``entry`` by: its long name if it has one, else its upper-case short name."""
    return str(entry.lfn_entry) if entry.lfn_entry is not None else entry.get_short_name()


def short_name(entry: Any) -> str:
    """The 8.3 name as Linux and Windows show it (the NT lower-case flags applied)."""
    name = entry.get_short_name()
    base, dot, ext = name.partition(".")
    flags = int(getattr(entry, "ntres", 0) or 0)
    if flags & NT_LOWER_BASE:
        base = base.lower()
    if flags & NT_LOWER_EXT:
        ext = ext.lower()
    return base + dot + ext


def display_name(entry: Any) -> str:
    """The name a FAT driver shows: the long name, else the short name with its case flags."""
    return str(entry.lfn_entry) if entry.lfn_entry is not None else short_name(entry)


def _child(directory: Any, name: str) -> Any | None:
    """The entry in ``directory`` named ``name`` in any case (long name first, then short name)."""
    want = name.casefold()
    dirs, files, _ = directory.get_entries()
    entries = dirs + files
    for entry in entries:
        if entry.lfn_entry is not None and str(entry.lfn_entry).casefold() == want:
            return entry
    for entry in entries:
        if entry.get_short_name().casefold() == want:
            return entry
    return None


def _walk(fat: Any, path: str) -> tuple[str, Any | None, list[str]]:
    """Resolve ``path`` as far as it exists: (pyfatfs path of that part, its entry or None, the rest)."""
    entry = fat.fs.root_dir
    stored = ""
    parts = _segments(path)
    for i, seg in enumerate(parts):
        if not entry.is_directory():
            raise DataError(f"FAT path {'/' + '/'.join(parts[:i])}: a file, not a folder")
        found = _child(entry, seg)
        if found is None:
            return stored or "/", None, parts[i:]
        entry = found
        stored += "/" + pyfatfs_name(found)
    return stored or "/", entry, []


def resolve(fat: Any, path: str) -> str | None:
    """The pyfatfs path of the existing entry ``path`` names in any case, or None."""
    stored, entry, rest = _walk(fat, path)
    return None if rest or entry is None else stored


def exists(fat: Any, path: str) -> bool:
    return resolve(fat, path) is not None


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def makedirs(fat: Any, path: str) -> str:
    """Folders along ``path``, reusing any that exist in another case; returns the pyfatfs path."""
    stored, entry, rest = _walk(fat, path)
    if entry is not None and not rest and not entry.is_directory():
        raise DataError(f"FAT path {path}: a file, not a folder")
    for seg in rest:
        stored = _join(stored, seg)
        fat.makedir(stored)
    return stored


def _file_path(fat: Any, path: str) -> str:
    """pyfatfs path to write ``path`` at: the existing file (emptied) in its case, or a new name as given."""
    parts = _segments(path)
    if not parts:
        raise DataError("FAT path /: a folder, not a file")
    parent = makedirs(fat, "/".join(parts[:-1]))
    stored, entry, rest = _walk(fat, path)
    if not rest and entry is not None:
        if entry.is_directory():
            raise DataError(f"FAT path {path}: a folder, not a file")
        # Empty it first (its clusters freed, the entry and its name kept): pyfatfs 1.x's truncate on
        # "wb" keeps the first cluster still linked to the freed rest, so rewriting a file longer than
        # one cluster breaks its chain.
        fat.create(stored, wipe=True)
        return stored
    return _join(parent, parts[-1])


def read_bytes(fat: Any, path: str) -> bytes:
    stored = resolve(fat, path)
    if stored is None:
        raise DataError(f"FAT path {path}: no such file")
    return fat.readbytes(stored)


def write_bytes(fat: Any, path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` (replacing a file of that name in any case); returns the pyfatfs path."""
    stored = _file_path(fat, path)
    fat.writebytes(stored, data)
    return stored


def upload(fat: Any, path: str, src: BinaryIO) -> str:
    stored = _file_path(fat, path)
    fat.upload(stored, src)
    return stored


def copy_tree(fat: Any, src: Path, dest: str) -> None:
    """Copy the local folder ``src`` (its contents) into the FAT folder ``dest``."""
    makedirs(fat, dest)
    for root, dirs, files in os.walk(src, followlinks=True):
        dirs.sort()
        rel = Path(root).relative_to(src).as_posix()
        here = dest if rel == "." else _join(dest, rel)
        for d in dirs:
            makedirs(fat, _join(here, d))
        for f in sorted(files):
            with open(Path(root) / f, "rb") as fh:
                upload(fat, _join(here, f), fh)


def walk_files(fat: Any, path: str = "/") -> Iterator[tuple[str, str]]:
    """(shown path, pyfatfs path) of every file under ``path``; shown names as a FAT driver shows them."""
    stored, entry, rest = _walk(fat, path)
    if rest or entry is None:
        raise DataError(f"FAT path {path}: no such folder")

    def walk(directory: Any, shown: str, stored: str) -> Iterator[tuple[str, str]]:
        dirs, files, _ = directory.get_entries()
        for f in files:
            yield _join(shown, display_name(f)), _join(stored, pyfatfs_name(f))
        for d in dirs:
            yield from walk(d, _join(shown, display_name(d)), _join(stored, pyfatfs_name(d)))

    shown = "/" + "/".join(_segments(path))
    yield from walk(entry, shown, stored)
