"""Source images: local .img / .img.xz files, their checksums, and downloads.

Raspberry Pi publishes a ``.sha256`` file beside each image (``<hex>  <name>``)
holding the hash of the file as distributed (the ``.img.xz``). That hash is
checked before anything is written; the hash of the *decompressed* stream is
what the read-back of the target is compared with.
"""
from __future__ import annotations

import logging
import lzma
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ppg_edge import manifest
from ppg_edge.errors import ConfigError, DataError, DataNotFoundError, DownloadError

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024
# Redirects to the newest Raspberry Pi OS Lite (64-bit) image; its checksum is
# published at the final URL + ".sha256".
OFFICIAL_IMAGE_URL = "https://downloads.raspberrypi.com/raspios_lite_arm64_latest"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class ChecksumError(DataError):
    """A file's hash differs from the one it was published with."""


def sha256_file(path: Path, desc: str | None = None) -> str:
    """:func:`ppg_edge.manifest.sha256_file` with a progress bar for an image of 256 MiB or more."""
    size = path.stat().st_size
    with tqdm(total=size, unit="B", unit_scale=True, desc=desc or f"sha256 {path.name}",
              leave=False, disable=size < 64 * CHUNK) as bar:
        return manifest.sha256_file(path, CHUNK, bar.update)


def parse_sha256(text: str, name: str | None, where: str) -> str:
    """The hash for ``name`` from a ``sha256sum``-style text (or a bare hash)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    for ln in lines:
        fields = ln.split()
        if not _HEX64.match(fields[0]):
            continue
        if len(fields) == 1 or name is None or fields[-1].lstrip("*").split("/")[-1] == name:
            return fields[0].lower()
    raise DataError(f"{where}: no sha256 for {name or 'the image'} in it")


def expected_sha256(image: Path, sha256: str | None) -> str:
    """The published hash: ``--sha256`` or the ``.sha256`` file beside the image."""
    if sha256:
        if not _HEX64.match(sha256.strip()):
            raise ConfigError(f"--sha256 {sha256!r}: expected 64 hex digits")
        return sha256.strip().lower()
    side = image.with_name(image.name + ".sha256")
    if not side.is_file():
        raise ConfigError(f"{image}: no checksum; pass --sha256 HEX or put {side.name} beside the image "
                          "(the official images publish one)")
    return parse_sha256(side.read_text(errors="replace"), image.name, str(side))


def verify_image(image: Path, sha256: str | None) -> str:
    """Check the image file against its published hash; returns the hash."""
    if not image.is_file():
        raise DataNotFoundError(f"image {image} does not exist")
    want = expected_sha256(image, sha256)
    got = sha256_file(image)
    if got != want:
        raise ChecksumError(f"{image}: sha256 mismatch (file {got}, published {want}); "
                            "the download is corrupt or not the image you meant. Refusing to write it.")
    log.info("%s: sha256 verified (%s)", image.name, got)
    return got


def is_xz(image: Path) -> bool:
    with open(image, "rb") as fh:
        return fh.read(6) == b"\xfd7zXZ\x00"


@contextmanager
def open_image(image: Path) -> Iterator[BinaryIO]:
    """A readable stream of the raw disk image (.img as is, .img.xz decompressed)."""
    if is_xz(image):
        with lzma.open(image, "rb") as fh:
            yield fh
    else:
        with open(image, "rb") as fh:
            yield fh


def raw_image_size(image: Path) -> int:
    """Size of the decompressed disk image in bytes (reads an .xz once)."""
    if not is_xz(image):
        return image.stat().st_size
    n = 0
    try:
        with open_image(image) as fh:
            while chunk := fh.read(CHUNK):
                n += len(chunk)
    except lzma.LZMAError as exc:
        raise DataError(f"{image}: corrupt xz stream: {exc}") from None
    return n


def _fetch(url: str, dest: Path, timeout: float) -> str:
    """Download ``url`` to ``dest``; returns the final URL (after redirects)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (https URL by default)
            total = int(resp.headers.get("Content-Length") or 0) or None
            final = resp.geturl()
            tmp = dest.with_name(dest.name + ".part")
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=f"download {dest.name}") as bar:
                while chunk := resp.read(1024 * 1024):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and tmp.stat().st_size != total:
                raise DownloadError(f"{url}: got {tmp.stat().st_size} of {total} bytes")
            tmp.replace(dest)
            return final
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot download ({reason}); no network? Download the image "
                            "yourself and pass --image FILE") from None


def download_image(dest_dir: Path, url: str = OFFICIAL_IMAGE_URL, timeout: float = 30.0) -> tuple[Path, str]:
    """Fetch an image and its published sha256 into ``dest_dir``; returns (path, sha256).

    Timeouts apply per socket operation, so a dead network fails within
    ``timeout`` seconds instead of hanging.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    probe = dest_dir / "download.img.xz"
    final = _fetch(url, probe, timeout)
    name = final.rstrip("/").split("/")[-1] or probe.name
    image = dest_dir / name
    probe.replace(image)
    sums = dest_dir / (name + ".sha256")
    _fetch(final + ".sha256", sums, timeout)
    return image, parse_sha256(sums.read_text(errors="replace"), name, final + ".sha256")
