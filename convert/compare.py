"""Compare a Keras model with its TFLite variants: accuracy, size, latency.

For each variant (Keras float, TFLite float32/float16/dynamic/int8, pruned+int8,
QAT-int8 when built) :func:`compare_variants` records

* the caller's accuracy, ``evaluate(predict_fn) -> dict`` (peaks F1/ADE, BP MAE ... from
  the evaluation harness; ``predict_fn(windows) -> outputs``),
* file size and gzip size (level 9: what pruning's zeros save in transit),
* parameters and non-zero parameters,
* latency per window: median of ``runs`` timed invokes (after ``warmup``), one thread, on
  the backend the interpreter wrapper chose (recorded per row), state reset included (the device must do it too); per sample =
  per window / hop (the compute each new sample costs in a stream with that hop).

``tflite-runtime`` is timed only if it imports and runs with this NumPy; docs/facts.md
measured that it crashes with NumPy 2 (and cannot run TF 2.21 dynamic-range models), so
here it is skipped with that reason recorded.

:func:`write_report` writes ``compare.md``, ``compare.json`` and ``compare.png``
(accuracy against size and against latency; matplotlib Agg).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import ModelError

log = logging.getLogger(__name__)

Evaluate = Callable[[Callable[[np.ndarray], np.ndarray]], dict]


@dataclasses.dataclass
class Variant:
    """One model to compare: ``tflite`` bytes, or ``keras`` for the float reference."""

    name: str
    tflite: bytes | None = None
    keras: Any = None
    params: int | None = None
    nonzero_params: int | None = None
    note: str = ""


def count_params(keras_model) -> tuple[int, int]:
    """(all weights, non-zero weights) of a Keras model."""
    weights = keras_model.get_weights()
    return int(sum(w.size for w in weights)), int(sum(np.count_nonzero(w) for w in weights))


def _keras_bytes(keras_model) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.weights.h5"
        keras_model.save_weights(str(path))
        return path.read_bytes()


def time_tflite(tflite_bytes: bytes, window: np.ndarray, runs: int = 100, warmup: int = 5) -> tuple[float, str]:
    """``(median seconds per window, the interpreter backend that ran)``: reset + set + invoke +
    get, one thread, on the backend the one interpreter wrapper chose (ai_edge_litert first)."""
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    r = TFLiteModel(tflite_bytes, num_threads=1)
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        r.invoke(window)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), r.backend


def time_keras(keras_model, window: np.ndarray, runs: int = 30, warmup: int = 3) -> float:
    x = np.asarray(window, np.float32)[None]
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        keras_model(x, training=False)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tflite_runtime_status() -> str | None:
    """None if tflite-runtime can be used here, else the reason it is skipped."""
    try:
        import tflite_runtime.interpreter  # noqa: F401
    except ImportError:
        return "tflite-runtime not installed: its last release (2.14) needs numpy<2 (docs/facts.md)"
    except Exception as exc:  # e.g. '_ARRAY_API not found' with NumPy 2
        return f"tflite-runtime does not load here ({type(exc).__name__}: {exc})"
    if int(np.__version__.split(".")[0]) >= 2:
        return f"tflite-runtime imports but crashes with NumPy {np.__version__} (docs/facts.md)"
    return None


def compare_variants(
    variants: list[Variant],
    windows: np.ndarray,
    evaluate: Evaluate | None = None,
    *,
    hop: int,
    runs: int = 100,
    warmup: int = 5,
    predict_factory: Callable[[Variant], Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict:
    """Measure every variant; returns ``{"rows": [...], "tflite_runtime": reason|None, ...}``.

    ``predict_factory(variant) -> predict_fn`` supplies the TFLite predict function that
    ``evaluate`` gets (default: :class:`~ppg_edge.edge_runtime.interpreter.TFLiteModel`; ``ppg-edge compare
    --heldout`` passes the device runtime's :class:`EdgeModel`)."""
    from ppg_edge.edge_runtime.interpreter import TFLiteModel

    x = np.asarray(windows, np.float32)
    if x.ndim < 2 or not len(x):
        raise ModelError(f"compare needs at least one window, got shape {x.shape}")
    rows = []
    for v in variants:
        if (v.tflite is None) == (v.keras is None):
            raise ModelError(f"variant {v.name!r}: give exactly one of tflite bytes or a keras model")
        row: dict[str, Any] = {"name": v.name, "note": v.note}
        if v.keras is not None:
            blob = _keras_bytes(v.keras)
            predict = lambda w, m=v.keras: np.asarray(m.predict(np.asarray(w, np.float32), verbose=0))  # noqa: E731
            sec = time_keras(v.keras, x[0], runs=max(5, runs // 3), warmup=warmup)
            row["runtime"] = "tf_keras (TensorFlow)"
        else:
            blob = v.tflite
            predict = (predict_factory(v) if predict_factory is not None
                       else TFLiteModel(v.tflite, num_threads=1).predict)
            sec, backend = time_tflite(v.tflite, x[0], runs=runs, warmup=warmup)
            row["runtime"] = f"{backend}, 1 thread"
        row["size_bytes"] = len(blob)
        row["gzip_bytes"] = len(gzip.compress(blob, 9))
        row["params"], row["nonzero_params"] = v.params, v.nonzero_params
        row["latency_ms_per_window"] = sec * 1e3
        row["latency_us_per_sample"] = sec * 1e6 / hop
        row["metrics"] = dict(evaluate(predict)) if evaluate else {}
        rows.append(row)
        log.info("compare %s: %d bytes, %.3f ms/window, %s", v.name, len(blob), sec * 1e3, row["metrics"])
    return {"rows": rows, "window_shape": list(x.shape[1:]), "hop": int(hop), "runs": int(runs),
            "tflite_runtime": tflite_runtime_status()}


def _metric_order(keys) -> list[str]:
    """F1 columns first (clean, 10 dB, 5 dB), then ADE, then the rest alphabetically."""
    def rank(k: str):
        cond = 0 if k.endswith("clean") else 1 if k.endswith("10dB") else 2 if k.endswith("5dB") else 3
        kind = 0 if k.startswith("f1") else 1 if k.startswith("ade") else 2
        return (kind, cond, k)

    return sorted(set(keys), key=rank)


def to_markdown(result: dict) -> str:
    keys = _metric_order(k for r in result["rows"] for k in r["metrics"])
    head = ["variant", "bytes", "gzip", "params", "non-zero", "ms/window", "us/sample"] + keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["name"], str(r["size_bytes"]), str(r["gzip_bytes"]), str(r["params"] or ""),
                 str(r["nonzero_params"] or ""), f"{r['latency_ms_per_window']:.3f}",
                 f"{r['latency_us_per_sample']:.2f}"]
        cells += [f"{r['metrics'][k]:.4g}" if isinstance(r["metrics"].get(k), (int, float)) else str(r["metrics"].get(k, ""))
                  for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    notes = [f"- {r['name']}: {r['note']}" for r in result["rows"] if r.get("note")]
    if notes:
        lines += ["Variants:"] + notes + [""]
    lines.append(f"Latency: median of {result['runs']} runs per window {result['window_shape']} "
                 f"(state reset included); per sample = per window / hop ({result['hop']}).")
    if result["tflite_runtime"]:
        lines.append(f"tflite-runtime skipped: {result['tflite_runtime']}.")
    for key, label in (("accuracy", "Accuracy"), ("calibration", "Calibration"), ("baseline", "DWT baseline"),
                       ("machine", "Machine"), ("command", "Command")):
        if result.get(key):
            val = result[key]
            text = val if isinstance(val, str) else json.dumps(val, sort_keys=True)
            lines.append(f"{label}: {'`' + text + '`' if key == 'command' else text}")
    return "\n".join(lines) + "\n"


def plot(result: dict, metric: str, path: str | os.PathLike) -> Path:
    """Accuracy ``metric`` against gzip size and against latency, one point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if isinstance(r["metrics"].get(metric), (int, float))]
    if not rows:
        raise ModelError(f"no variant reports metric {metric!r}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "size_bytes", "file size (bytes)"),
                           (axes[1], "latency_ms_per_window", "latency per window (ms, 1 thread)")):
        for r in rows:
            ax.scatter(r[key], r["metrics"][metric])
            ax.annotate(r["name"], (r[key], r["metrics"][metric]), fontsize=8)
        ax.set_xlabel(label)
        if key == "latency_ms_per_window":
            ax.set_xscale("log")  # Keras (TensorFlow call) is ~100x the TFLite latencies
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: dict, out_dir: str | os.PathLike, metric: str | None = None,
                 name: str = "compare") -> dict[str, Path]:
    """Write ``<out_dir>/<name>.md``, ``.json`` and ``.png`` (accuracy ``metric``, default
    the first F1 column, against size and latency)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{name}.md", "json": out / f"{name}.json"}
    paths["markdown"].write_text(to_markdown(result))
    paths["json"].write_text(json.dumps(result, indent=2, sort_keys=True, default=float) + "\n")
    keys = _metric_order(k for r in result["rows"] for k in r["metrics"])
    metric = metric or (keys[0] if keys else None)
    if metric:
        paths["png"] = plot(result, metric, out / f"{name}.png")
    return paths


