"""Download data sets from their public homes into the cache (``ppg-edge data fetch``).

Each loader module lists ``SOURCES``: dicts with ``url``, ``kind``, ``licence``
and kind-specific keys:

- ``file``: one file, saved as ``<dest>/<path>``.
- ``github-archive``: a repository tarball (codeload.github.com); members under
  ``subdir`` are extracted into ``<dest>`` without the archive's top folder.
- ``figshare``: a figshare article API URL; every file of the article is
  downloaded, zips are extracted into ``<dest>``.
- ``physionet``: ``wfdb.dl_database(db, dest)`` (or ``wfdb.dl_files`` for a
  ``files`` list) after a reachability probe with a timeout.
- ``capnobase-zip``: the TBME 2013 benchmark zip from capnobase.org; its
  ``*_8min.mat`` files (MATLAB v7.3 = HDF5) are converted with h5py into the
  four-block ``capnobase_<id>.csv`` layout the loader reads.
- ``reference``: an official home that is listed, not fetched.

Every network call goes through :func:`urlopen` with a timeout; any failure
becomes one ``DownloadError`` saying which host could not be reached and what to
do instead. Files are written as ``*.part`` and renamed when complete.
"""
from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import config
from ..errors import DataError, DownloadError
from . import dataset_module

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_CHUNK = 1 << 16


def default_dest(name: str) -> Path:
    """``cache_dir()/data/<FOLDER>`` of data set ``name``."""
    return config.cache_dir() / "data" / dataset_module(name).FOLDER


def plan(name: str, dest: str | Path | None = None) -> list[dict[str, Any]]:
    """What ``fetch`` would do: one dict per source with ``url``, ``kind``, ``target``, ``action``."""
    mod = dataset_module(name)
    dest = Path(dest) if dest is not None else default_dest(name)
    out = []
    for src in mod.SOURCES:
        kind = src["kind"]
        item = {"url": src["url"], "kind": kind, "licence": src.get("licence", "")}
        if kind == "file":
            item.update(target=str(dest / src["path"]), action="download")
        elif kind == "reference":
            item.update(target=None, action="not fetched (official home, listed for reference)")
        elif kind == "physionet":
            item.update(target=str(dest), action=f"wfdb download of PhysioNet database {src['db']!r}")
        else:
            item.update(target=str(dest), action=f"download and unpack ({kind})")
        if src.get("note"):
            item["note"] = src["note"]
        out.append(item)
    return out


def _help(host: str, reason: Any, dest: Path) -> DownloadError:
    return DownloadError(
        f"could not reach {host}: {reason}; copy the data set into {dest} by hand or set "
        f"{config.ENV_DATA_ROOT}"
    )


def urlopen(url: str, timeout: float):
    """The one network entry point (tests replace it)."""
    req = urllib.request.Request(url, headers={"User-Agent": "ppg-edge-fetch"})
    return urllib.request.urlopen(req, timeout=timeout)


def _open(url: str, timeout: float, dest: Path):
    host = urlparse(url).netloc or url
    try:
        return urlopen(url, timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _help(host, exc.reason, dest) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, bad URLs
        raise _help(host, exc, dest) from None


def download(url: str, target: Path, *, timeout: float = DEFAULT_TIMEOUT, progress: bool = True,
             dest: Path | None = None) -> Path:
    """Stream ``url`` into ``target`` (via ``target.part``) with a progress bar."""
    from tqdm.auto import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    host = urlparse(url).netloc or url
    with _open(url, timeout, dest or target.parent) as resp:
        total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
        try:
            with open(part, "wb") as fh, tqdm(
                total=int(total) if total else None, unit="B", unit_scale=True,
                desc=target.name, disable=not progress,
            ) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        except (OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            raise _help(host, f"transfer of {url} broke off ({exc})", dest or target.parent) from None
    part.replace(target)
    return target


def _write_member(archive: Path, name: str, rel: Path, src, dest: Path) -> None:
    """Copy one archive member (open as ``src``) to ``dest / rel``, refusing a path that
    leaves ``dest``."""
    if rel.is_absolute() or ".." in rel.parts:
        raise DataError(f"{archive}: member {name!r} escapes the destination")
    out = dest / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        shutil.copyfileobj(src, fh)


def _extract_tar(archive: Path, dest: Path, subdir: str) -> int:
    n = 0
    prefix = subdir.strip("/")
    with tarfile.open(archive, "r:*") as tf:
        for m in tf.getmembers():
            parts = Path(m.name).parts[1:]  # drop "<repo>-<commit>/"
            rel = Path(*parts) if parts else None
            if rel is None or not m.isfile():
                continue
            if prefix:
                try:
                    rel = rel.relative_to(prefix)
                except ValueError:
                    continue
            with tf.extractfile(m) as src:
                _write_member(archive, m.name, rel, src, dest)
            n += 1
    return n


def _extract_zip(archive: Path, dest: Path) -> int:
    n = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            rel = Path(info.filename)
            with zf.open(info) as src:
                _write_member(archive, info.filename, rel, src, dest)
            n += 1
    return n


def capnobase_mat_to_csv(mat: Path, out: Path) -> Path:
    """Write the four-block text layout from one TBME-benchmark ``*_8min.mat`` (HDF5).

    Reads ``param/samplingrate/pleth``, ``labels/pleth/peak/x`` (1-based, kept as
    published: the loader shifts them) and ``signal/pleth/y``.
    """
    import h5py
    import numpy as np

    try:
        with h5py.File(mat, "r") as f:
            fs = float(np.asarray(f["param/samplingrate/pleth"]).ravel()[0])
            peaks = np.asarray(f["labels/pleth/peak/x"]).ravel()
            y = np.asarray(f["signal/pleth/y"]).ravel()
    except (OSError, KeyError) as exc:
        raise DataError(f"{mat}: not a CapnoBase benchmark .mat (HDF5) file ({exc})") from None
    lines = [
        "File Name", f"mat/{mat.name}", "",
        "PPG_fs", f"{fs:g}", "",
        "PPG Peaks", ",".join(str(int(round(p))) for p in peaks), "",
        "PPG Signal", ",".join(repr(float(v)) for v in y),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\r\n".join(lines) + "\r\n")
    return out


def _fetch_one(src: dict[str, Any], dest: Path, timeout: float, progress: bool) -> None:
    kind = src["kind"]
    url = src["url"]
    if kind == "reference":
        log.info("not fetched (reference only): %s", url)
        return
    if kind == "file":
        download(url, dest / src["path"], timeout=timeout, progress=progress, dest=dest)
        return
    if kind == "physionet":
        _open("https://physionet.org/", timeout, dest).close()  # fail fast, with a timeout
        import wfdb

        try:
            if src.get("files"):
                wfdb.dl_files(src["db"], str(dest), list(src["files"]))
            else:
                wfdb.dl_database(src["db"], str(dest))
        except Exception as exc:  # wfdb wraps requests errors in several types
            raise _help("physionet.org", f"{type(exc).__name__}: {exc}", dest) from None
        return
    with tempfile.TemporaryDirectory(prefix="ppg-edge-fetch-") as tmp:
        tmp = Path(tmp)
        if kind == "github-archive":
            arc = download(url, tmp / "archive.tar.gz", timeout=timeout, progress=progress, dest=dest)
            n = _extract_tar(arc, dest, src.get("subdir", ""))
            log.info("extracted %d file(s) into %s", n, dest)
        elif kind == "figshare":
            with _open(url, timeout, dest) as resp:
                try:
                    meta = json.load(io.TextIOWrapper(resp, encoding="utf-8"))
                except (ValueError, OSError) as exc:
                    raise DownloadError(f"{url}: figshare answer is not JSON ({exc})") from None
            files = meta.get("files") or []
            if not files:
                raise DownloadError(f"{url}: figshare article lists no files")
            for f in files:
                got = download(f["download_url"], tmp / f["name"], timeout=timeout,
                               progress=progress, dest=dest)
                if got.suffix.lower() == ".zip":
                    _extract_zip(got, dest)
                else:
                    shutil.copy2(got, dest / got.name)
        elif kind == "capnobase-zip":
            arc = download(url, tmp / "benchmark.zip", timeout=timeout, progress=progress, dest=dest)
            _extract_zip(arc, tmp / "x")
            mats = sorted((tmp / "x").rglob("*_8min.mat"))
            if not mats:
                raise DataError(f"{url}: the archive holds no *_8min.mat files")
            for m in mats:
                capnobase_mat_to_csv(m, dest / f"capnobase_{m.name.split('_')[0]}.csv")
        else:
            raise DataError(f"unknown source kind {kind!r} for {url}")


def fetch(name: str, dest: str | Path | None = None, *, timeout: float = DEFAULT_TIMEOUT,
          progress: bool = True) -> Path:
    """Fetch data set ``name`` from its public home(s) into ``dest`` (default: the cache).

    Returns the folder. Raises ``DownloadError`` when a host cannot be reached.
    """
    mod = dataset_module(name)
    dest = Path(dest) if dest is not None else default_dest(name)
    dest.mkdir(parents=True, exist_ok=True)
    for src in mod.SOURCES:
        log.info("fetching %s from %s", name, src["url"])
        _fetch_one(src, dest, timeout, progress)
    return dest
