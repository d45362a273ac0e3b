"""Quantization and TFLite conversion with manifests (installed as ``ppg_edge.convert``).

Importing this package registers the host-only ``tf.lite`` interpreter backend with the
device's interpreter wrapper (:func:`ppg_edge.edge_runtime.interpreter.register_backend`),
so the conversion self-checks run even where neither ai-edge-litert nor tflite-runtime is
installed. TensorFlow itself is imported only when that backend is used.
"""
from . import tflite as _tflite  # noqa: F401  (registers the tf.lite backend)
