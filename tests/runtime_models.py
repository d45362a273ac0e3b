"""Tiny .tflite models and manifests for the runtime tests (built with TensorFlow, host only).

Conv1D + LSTM taking ``(1, window, C)``: a peak model giving ``(1, window, 1)``
sigmoid (float32 and full-int8) and a BP regressor giving ``(1, 2)``. Weights
are random, drawn with numpy from the seed (the same in every process): these models test plumbing, not accuracy. Built once per
process and cached in a temporary folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ppg_edge import manifest as mf
from ppg_edge.dsp.pipeline import bp_preprocessing, peaks_preprocessing

_CACHE: dict[tuple, Path] = {}
_KERAS: dict[tuple, object] = {}
_DIR: Path | None = None


_BLOCK = """\
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked")
        return None
sys.meta_path.insert(0, Block())
"""


def run_blocked(code: str, blocked: Iterable[str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) in a fresh Python where importing any of the top-level packages
    ``blocked`` raises ImportError (as on the device); ``args`` become ``sys.argv[1:]``."""
    script = _BLOCK.format(blocked=tuple(blocked)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _dir() -> Path:
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="ppg-edge-rt-models-"))
    return _DIR


def _tf():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras

    return tf, tf_keras


def _keras_model(window: int, channels: int, kind: str, seed: int):
    tf, k = _tf()
    tf.random.set_seed(seed)  # fixture weights only; the runtime itself never seeds anything
    inp = k.Input(shape=(window, channels), batch_size=1)
    if kind == "peaks-fixed":  # hand-set weights: p = sigmoid(5 z - 6), high near the z-scored PPG's peaks
        layer = k.layers.Conv1D(1, 1, activation="sigmoid")
        out = layer(inp)
        layer.set_weights([np.full((1, channels, 1), 5.0, dtype=np.float32) * (np.arange(channels) == 0)[None, :, None],
                           np.array([-6.0], dtype=np.float32)])
        return k.Model(inp, out)
    h = k.layers.Conv1D(4, 5, padding="same", activation="relu")(inp)
    if kind == "peaks":
        h = k.layers.LSTM(4, return_sequences=True)(h)
        out = k.layers.Dense(1, activation="sigmoid")(h)
    else:
        h = k.layers.LSTM(4)(h)
        out = k.layers.Dense(2)(h)
    model = k.Model(inp, out)
    # TensorFlow's initialisers draw from a per-process op-seed counter, so the same seed gave
    # different weights depending on what the worker built before; numpy weights are the same
    # in every process, and so is every figure measured on these models.
    rng = np.random.default_rng(seed)
    for w in model.weights:
        fan = max(1, int(np.prod(w.shape[:-1])))
        w.assign(rng.uniform(-1.0, 1.0, w.shape).astype(np.float32) / np.sqrt(fan))
    return model


def _convert(model, mode: str, window: int, channels: int, seed: int) -> bytes:
    tf, _ = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        rng = np.random.default_rng(seed)

        def rep():
            for _ in range(16):
                yield [rng.standard_normal((1, window, channels)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _specs(tflite_path: Path):
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    inputs, outputs = TFLiteModel(tflite_path).tensor_specs()
    return inputs[:1], outputs[:1]


def write_model_manifest(path: Path, kind: str, mode: str, spec, **extra) -> Path:
    inputs, outputs = _specs(path)
    d = {
        "kind": kind, "name": path.stem, "mode": mode, "model_file": path.name,
        "sha256": mf.sha256_file(path), "size_bytes": path.stat().st_size,
        "inputs": inputs, "outputs": outputs,
        "sample_rate_hz": spec.fs, "window": spec.window, "hop": spec.hop,
        "preprocessing": spec.to_dict(),
    }
    d.update(extra)
    mf.write_manifest(d, mf.manifest_path_for(path))
    return path


def tiny_model(kind: str = "peaks", mode: str = "float32", fs: float = 125.0, dwt_level: int | None = None,
               seed: int = 0) -> Path:
    """Path of a cached tiny model with its manifest; copy it before tampering."""
    key = (kind, mode, fs, dwt_level, seed)
    if key in _CACHE:
        return _CACHE[key]
    spec = peaks_preprocessing(fs, dwt_level=dwt_level) if kind != "bp" else bp_preprocessing(fs)
    channels = len(spec.channels)
    model = _keras_model(spec.window, channels, kind, seed)
    blob = _convert(model, mode, spec.window, channels, seed)
    _KERAS[key] = model
    name = f"tiny-{kind}-{mode}-{fs:g}hz-c{channels}-s{seed}"
    path = _dir() / name / f"{name}.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    extra = {"decoder": {"threshold": 0.5, "merge_s": 0.2, "refractory_s": 0.3}} if kind != "bp" else {
        "targets": ["sbp", "dbp"], "target_scaling": {"mean": [120.0, 80.0], "std": [15.0, 10.0]}}
    write_model_manifest(path, "bp" if kind == "bp" else "peaks", mode, spec, **extra)
    _CACHE[key] = path
    return path


def keras_reference(kind: str = "peaks", mode: str = "float32", fs: float = 125.0,
                    dwt_level: int | None = None, seed: int = 0):
    """The Keras model that :func:`tiny_model` with the same arguments converted."""
    tiny_model(kind, mode, fs, dwt_level, seed)
    return _KERAS[(kind, mode, fs, dwt_level, seed)]


def copy_model(path: Path, dest: Path) -> Path:
    """Copy a model and its manifest into ``dest`` (for tampering tests)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, dest / path.name)
    shutil.copy(mf.manifest_path_for(path), dest / mf.manifest_path_for(path).name)
    return dest / path.name
