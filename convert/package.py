"""Write a converted model and its sealed manifest side by side (``ppg_edge.manifest``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ppg_edge import manifest as mf
from ppg_edge.edge_runtime.interpreter import TFLiteModel
from ppg_edge.errors import ModelError

from .tflite import check_ops, list_ops

log = logging.getLogger(__name__)


def save_converted(
    tflite_bytes: bytes,
    out_dir: str | os.PathLike,
    name: str,
    *,
    kind: str,
    mode: str,
    sample_rate_hz: float,
    window: int,
    hop: int,
    preprocessing: dict,
    decoder: dict | None = None,
    training: dict | None = None,
    calibration: dict | None = None,
    metrics: dict | None = None,
    self_check: dict | None = None,
    extra: dict[str, Any] | None = None,
    allow_ops=(),
) -> Path:
    """Write ``<out_dir>/<name>.tflite`` and ``<name>.json``; returns the model path.

    The manifest holds sha256/size, input/output tensors with quantization, the ops,
    the sample rate, window/hop, the preprocessing dict, decoder settings, training
    data/split, calibration provenance, the self-check result and float vs quantized
    metrics when given. The ops are checked first, the files are written through
    temporary names, and the pair is verified with :func:`ppg_edge.manifest.verify_model`;
    on any failure neither file is left behind.
    """
    ops = check_ops(tflite_bytes, allow=allow_ops)
    runner = TFLiteModel(tflite_bytes)
    inputs, outputs = runner.tensor_specs()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.tflite"
    man_path = mf.manifest_path_for(path)
    d: dict[str, Any] = {
        "kind": kind, "name": name, "mode": mode, "model_file": path.name,
        "sha256": None, "size_bytes": len(tflite_bytes),
        "inputs": inputs, "outputs": outputs,
        "ops": sorted(set(list_ops(tflite_bytes))), "op_count": len(list_ops(tflite_bytes)),
        "tensor_dtypes": sorted(runner.tensor_dtypes()),
        "sample_rate_hz": float(sample_rate_hz), "window": int(window), "hop": int(hop),
        "preprocessing": preprocessing,
        "state_reset": "call reset_all_variables() before every window (fused LSTM keeps state)",
    }
    del ops
    for key, value in (("decoder", decoder), ("training", training), ("calibration", calibration),
                       ("metrics", metrics), ("self_check", self_check)):
        if value is not None:
            d[key] = value
    d.update(extra or {})
    tmp = path.with_suffix(".tflite.tmp")
    try:
        tmp.write_bytes(tflite_bytes)
        d["sha256"] = mf.sha256_file(tmp)
        tmp.replace(path)
        mf.write_manifest(d, man_path)
        mf.verify_model(path)
    except (OSError, ModelError, TypeError, ValueError) as exc:
        for p in (tmp, path, man_path):
            p.unlink(missing_ok=True)
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{path}: could not write model and manifest ({exc})") from exc
    log.info("wrote %s (%d bytes) and %s", path, len(tflite_bytes), man_path.name)
    return path
