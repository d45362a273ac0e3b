"""Model manifests: the JSON file that travels beside every device model.

A manifest says exactly what a ``.tflite`` file is and how to feed it: its sha256
and size, input/output tensors (shape, dtype, quantization), the model sample
rate, window and hop, the exact preprocessing (``Preprocessing.to_dict()``:
filter SOS, normalisation, DWT levels), the decoder settings (threshold ...),
the training data and split, and float vs quantized metrics.

Integrity has two parts, both checked before a model is loaded:

* ``sha256``/``size_bytes`` of the model file — a corrupt or swapped model is refused;
* ``manifest_digest``, the sha256 of the manifest's own canonical JSON (every field
  but the digest) — an edited or truncated manifest is refused.

The digest protects against corruption and accidental edits, not against an
attacker (there is no key). numpy-free: the device reads manifests too.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import ModelError

SCHEMA_VERSION = 1
KINDS = ("peaks", "bp")
MODES = ("float32", "float16", "dynamic", "int8", "pruned-int8", "qat-int8", "keras", "trees")
REQUIRED = (
    "schema", "kind", "name", "mode", "model_file", "sha256", "size_bytes",
    "inputs", "outputs", "sample_rate_hz", "window", "hop", "preprocessing",
)
MANIFEST_SUFFIX = ".json"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20, progress=None) -> str:
    """Hex sha256 of a file: the one file hash of model manifests, deploy bundles, the
    on-device smoke check and flashed images (stdlib only). ``progress(n)``, when given, is
    called with the size of each block read (a progress bar's ``update``)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)
            if progress is not None:
                progress(len(block))


def _canonical(d: dict) -> bytes:
    body = {k: v for k, v in d.items() if k != "manifest_digest"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest(d: dict) -> str:
    """sha256 of the manifest's canonical JSON, without its own digest field."""
    return hashlib.sha256(_canonical(d)).hexdigest()


def tensor_spec(name: str, shape, dtype: str, scale: float | None = None,
                zero_point: int | None = None) -> dict:
    """One input/output tensor as a manifest records it."""
    spec: dict[str, Any] = {"name": name, "shape": [int(s) for s in shape], "dtype": str(dtype)}
    if scale is not None:
        spec["quantization"] = {"scale": float(scale), "zero_point": int(zero_point or 0)}
    return spec


def validate(d: dict, source: str = "manifest") -> dict:
    """Check fields, types and the self digest; returns ``d`` or raises ``ModelError``."""
    if not isinstance(d, dict):
        raise ModelError(f"{source}: not a JSON object")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ModelError(f"{source}: missing field(s) {', '.join(missing)}")
    if d["schema"] != SCHEMA_VERSION:
        raise ModelError(f"{source}: schema {d['schema']!r}, this ppg-edge reads {SCHEMA_VERSION}")
    if d["kind"] not in KINDS:
        raise ModelError(f"{source}: kind {d['kind']!r} is not one of {KINDS}")
    if d["mode"] not in MODES:
        raise ModelError(f"{source}: mode {d['mode']!r} is not one of {MODES}")
    if not (isinstance(d["sha256"], str) and len(d["sha256"]) == 64):
        raise ModelError(f"{source}: sha256 must be 64 hex characters")
    for key in ("sample_rate_hz", "window", "hop", "size_bytes"):
        if not isinstance(d[key], (int, float)) or d[key] <= 0:
            raise ModelError(f"{source}: {key} must be a positive number, got {d[key]!r}")
    for key in ("inputs", "outputs"):
        if not d[key] or not all(isinstance(t, dict) and "shape" in t and "dtype" in t for t in d[key]):
            raise ModelError(f"{source}: {key} must list tensors with shape and dtype")
    if "manifest_digest" not in d:
        raise ModelError(f"{source}: no manifest_digest (unsigned manifest)")
    if d["manifest_digest"] != digest(d):
        raise ModelError(f"{source}: manifest_digest does not match its content (edited or corrupt manifest)")
    return d


def seal(d: dict) -> dict:
    """Return a copy of ``d`` with ``schema`` and ``manifest_digest`` filled in."""
    out = dict(d)
    out.setdefault("schema", SCHEMA_VERSION)
    out["manifest_digest"] = digest(out)
    return out


def write_manifest(d: dict, path: str | os.PathLike) -> Path:
    """Seal, validate and write a manifest (pretty JSON)."""
    sealed = validate(seal(d), str(path))
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(sealed, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and validate a manifest; any problem is a ``ModelError`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelError(f"{path}: manifest not found") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    return validate(d, str(path))


def manifest_path_for(model_path: str | os.PathLike) -> Path:
    """``model.tflite`` -> ``model.json`` (the manifest beside it)."""
    return Path(model_path).with_suffix(MANIFEST_SUFFIX)


def verify_model(model_path: str | os.PathLike, manifest: dict | None = None) -> dict:
    """Check a model file against its manifest before anything loads it.

    Returns the manifest. Raises ``ModelError`` when the manifest is missing,
    invalid or tampered, names another file, or the file's size or sha256 differ.
    """
    model_path = Path(model_path)
    if manifest is None:
        manifest = read_manifest(manifest_path_for(model_path))
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found")
    if Path(manifest["model_file"]).name != model_path.name:
        raise ModelError(
            f"{model_path}: manifest describes {manifest['model_file']!r}, not this file (mismatched model)"
        )
    size = model_path.stat().st_size
    if size != manifest["size_bytes"]:
        raise ModelError(f"{model_path}: {size} bytes, manifest says {manifest['size_bytes']} (corrupt or truncated)")
    actual = sha256_file(model_path)
    if actual != manifest["sha256"]:
        raise ModelError(
            f"{model_path}: sha256 {actual[:12]}… does not match the manifest's {manifest['sha256'][:12]}… "
            "(corrupt or replaced model)"
        )
    return manifest
