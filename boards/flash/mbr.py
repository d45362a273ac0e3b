"""The MBR partition table, parsed with ``struct`` (no root, no loop mount).

Raspberry Pi OS images carry a DOS (MBR) table: partition 1 is the FAT32 boot
partition (``bootfs``), partition 2 the ext4 root. Layout: 446 bytes of boot
code, four 16-byte entries (status, CHS start, type, CHS end, LBA start,
sector count; little-endian), then the signature 0x55 0xAA at offset 510.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from ppg_edge.errors import DataError

SECTOR = 512
FAT_TYPES = {0x01: "FAT12", 0x04: "FAT16 <32M", 0x06: "FAT16", 0x0B: "FAT32 CHS",
             0x0C: "FAT32 LBA", 0x0E: "FAT16 LBA"}
GPT_PROTECTIVE = 0xEE


@dataclass(frozen=True)
class Partition:
    index: int          # 1-based, as in /dev/sdX1
    type_id: int
    bootable: bool
    lba_start: int
    sectors: int

    @property
    def offset(self) -> int:
        return self.lba_start * SECTOR

    @property
    def size(self) -> int:
        return self.sectors * SECTOR

    @property
    def is_fat(self) -> bool:
        return self.type_id in FAT_TYPES


def parse_mbr(sector0: bytes, where: str = "image") -> list[Partition]:
    """The used primary partitions of an MBR sector; ``DataError`` if it is not one."""
    if len(sector0) < SECTOR:
        raise DataError(f"{where}: {len(sector0)} bytes, too short for a partition table")
    if sector0[510:512] != b"\x55\xaa":
        raise DataError(f"{where}: no MBR signature (0x55AA) in sector 0: not a disk image")
    parts = []
    for i in range(4):
        entry = sector0[446 + 16 * i: 446 + 16 * (i + 1)]
        status, type_id, lba, count = struct.unpack("<B3xB3xII", entry)
        if type_id == 0 or count == 0:
            continue
        if status not in (0x00, 0x80):
            raise DataError(f"{where}: partition {i + 1} has an invalid status byte 0x{status:02x}")
        parts.append(Partition(i + 1, type_id, status == 0x80, lba, count))
    if any(p.type_id == GPT_PROTECTIVE for p in parts):
        raise DataError(f"{where}: GPT disk (protective MBR); Raspberry Pi OS images use an MBR table")
    return parts


def boot_partition(fh: BinaryIO, where: str = "image", disk_size: int | None = None) -> Partition:
    """The first FAT partition (Raspberry Pi OS's boot partition)."""
    fh.seek(0)
    parts = parse_mbr(fh.read(SECTOR), where)
    for p in parts:
        if p.is_fat:
            if disk_size is not None and p.offset + p.size > disk_size:
                raise DataError(f"{where}: partition {p.index} ends at byte {p.offset + p.size}, "
                                f"beyond the end of the disk ({disk_size} bytes)")
            return p
    kinds = ", ".join(f"{p.index}: 0x{p.type_id:02x}" for p in parts) or "none"
    raise DataError(f"{where}: no FAT boot partition in the MBR (partitions {kinds})")


def make_mbr(partitions: list[tuple[int, int, int]], disk_signature: int = 0x5EED5EED) -> bytes:
    """An MBR sector for ``[(type_id, lba_start, sectors), ...]`` (used by tests and fixtures)."""
    out = bytearray(SECTOR)
    struct.pack_into("<I", out, 440, disk_signature)
    for i, (type_id, lba, count) in enumerate(partitions):
        struct.pack_into("<B3sB3sII", out, 446 + 16 * i, 0x80 if i == 0 else 0,
                         b"\xfe\xff\xff", type_id, b"\xfe\xff\xff", lba, count)
    out[510:512] = b"\x55\xaa"
    return bytes(out)
