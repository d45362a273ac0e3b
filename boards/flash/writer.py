"""Write a disk image to a target with a progress bar, then read it back and compare."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from tqdm import tqdm

from ppg_edge.errors import DataError, HardwareError

from .image import CHUNK, open_image

log = logging.getLogger(__name__)


def write_image(image: Path, target: Path, size: int, is_device: bool) -> str:
    """Copy the raw image onto ``target``; returns the sha256 of what was written."""
    h = hashlib.sha256()
    written = 0
    mode = "r+b" if is_device else "wb"
    with open_image(image) as src, open(target, mode) as dst, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"write {target.name}") as bar:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            h.update(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())
    if written != size:
        raise DataError(f"{image}: read {written} bytes, expected {size}: the image changed while writing")
    return h.hexdigest()


def read_back(target: Path, size: int) -> str:
    """sha256 of the first ``size`` bytes of ``target``, read past the page cache where possible."""
    h = hashlib.sha256()
    left = size
    with open(target, "rb") as fh, tqdm(total=size, unit="B", unit_scale=True, desc=f"verify {target.name}") as bar:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
            bar.update(len(chunk))
    if left:
        raise HardwareError(f"{target}: ended {left} bytes short of the image while reading back")
    return h.hexdigest()


def write_and_verify(image: Path, target: Path, size: int, is_device: bool) -> str:
    wrote = write_image(image, target, size, is_device)
    got = read_back(target, size)
    if got != wrote:
        raise HardwareError(f"{target}: read-back sha256 {got} differs from the image's {wrote}; "
                            "the card or reader is faulty, do not use this card")
    log.info("%s: %d bytes written and read back (sha256 %s)", target, size, got)
    return got
