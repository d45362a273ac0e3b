"""Keras -> TFLite conversion, op checks, the host-only tf.lite backend and the Keras-vs-TFLite self-check.

Conversion facts this module relies on were measured here (``docs/facts.md``):

* models are built with tf_keras, so each LSTM becomes one fused
  ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op; a Keras-3 LSTM (or a QAT-wrapped one) becomes a
  ``WHILE`` loop, which :func:`check_ops` refuses unless explicitly allowed;
* the batch size must be fixed: :func:`fix_batch` clones the model onto a batch-1 input;
* the fused LSTM keeps its state between ``invoke()`` calls, so the one interpreter
  wrapper (:class:`ppg_edge.edge_runtime.interpreter.TFLiteModel`) calls
  ``reset_all_variables()`` before every window;
* full int8 (int8 input/output and weights; the LSTM cell state is int16, chosen by
  the converter's integer LSTM kernel) works; ``16x8`` (int16 activations) does not
  support the fused LSTM op and is refused with a :class:`~ppg_edge.errors.ModelError`.

Modes (:data:`MODES`): ``float32``, ``float16`` (float16 weights, float compute),
``dynamic`` (int8 weights, float activations), ``int8`` (full integer, needs
calibration windows), ``16x8`` (refused for LSTM models).

TensorFlow is imported inside functions only. Importing this module registers the
host-only ``tf.lite`` interpreter backend (tried after ai-edge-litert and tflite-runtime).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.interpreter import TFLiteModel, register_backend
from ppg_edge.errors import DataError, ModelError
from ppg_edge.train.tf_lazy import keras as _keras
from ppg_edge.train.tf_lazy import tf as _tf

log = logging.getLogger(__name__)

MODES = ("float32", "float16", "dynamic", "int8", "16x8")
FUSED_LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
FORBIDDEN_OPS = ("WHILE",)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Allowed Keras-vs-TFLite difference: ``max|d| <= atol + rel * span`` where ``span``
    is the peak-to-peak range of the Keras outputs over the checked windows (so one
    tolerance serves probabilities in [0, 1] and regressions in mmHg alike), and the
    mean ``|d|`` must stay under ``mean_atol + mean_rel * span``."""

    atol: float
    rel: float
    mean_atol: float
    mean_rel: float

    def limits(self, span: float) -> tuple[float, float]:
        span = float(max(span, 0.0))
        return self.atol + self.rel * span, self.mean_atol + self.mean_rel * span


#: Self-check tolerances per mode. float32 is a re-implementation of the same float
#: graph (measured max |d| ~1e-7); float16 rounds weights to 11 significant bits;
#: dynamic quantizes weights (per channel) and activations per batch on the fly;
#: int8 quantizes everything with calibrated ranges, so an output step of 1/256 of the
#: output range is the floor and LSTM error accumulates over the sequence (the limits
#: are relative to the span of the Keras outputs over the checked windows, with an
#: absolute floor: a sigmoid output is quantized in steps of 1/256, so a few steps of
#: mean error -- 0.015 -- are allowed even when an untrained model's outputs span little).
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(atol=1e-5, rel=1e-5, mean_atol=1e-6, mean_rel=1e-6),
    "float16": Tolerance(atol=1e-2, rel=1e-2, mean_atol=2e-3, mean_rel=2e-3),
    "dynamic": Tolerance(atol=5e-2, rel=5e-2, mean_atol=1e-2, mean_rel=1e-2),
    "int8": Tolerance(atol=0.05, rel=0.15, mean_atol=0.015, mean_rel=0.03),
}






# ----------------------------------------------------------------------------- model shape

def has_lstm(keras_model) -> bool:
    """True when any layer (at any depth, wrappers included) is an LSTM."""
    keras = _keras()

    def walk(layer) -> bool:
        if isinstance(layer, keras.layers.LSTM) or type(layer).__name__ == "LSTM":
            return True
        inner = getattr(layer, "layer", None)  # Wrapper (pruning, QAT, Bidirectional...)
        if inner is not None and walk(inner):
            return True
        return any(walk(sub) for sub in getattr(layer, "layers", []) or [])

    return walk(keras_model)


def _is_qat(keras_model) -> bool:
    return any(type(layer).__name__.startswith("Quantize") for layer in keras_model.layers)


def fix_batch(keras_model, custom_objects: dict | None = None):
    """``keras_model`` on a fixed batch of 1 (weights copied); the model itself when its
    batch size is already 1. The converter needs a fixed batch for the fused LSTM."""
    keras = _keras()
    shapes = keras_model.inputs
    if all(t.shape[0] == 1 for t in shapes):
        return keras_model
    try:
        inputs = [
            keras.Input(shape=tuple(t.shape[1:]), batch_size=1, dtype=t.dtype, name=t.name.split(":")[0])
            for t in shapes
        ]
        scope = dict(custom_objects or {})
        if _is_qat(keras_model):
            from tensorflow_model_optimization.quantization.keras import quantize_scope

            from .optimize import qat_scope_objects

            scope.update(qat_scope_objects())
            with quantize_scope(scope):
                clone = keras.models.clone_model(
                    keras_model, input_tensors=inputs if len(inputs) > 1 else inputs[0]
                )
        else:
            with keras.utils.custom_object_scope(scope):
                clone = keras.models.clone_model(
                    keras_model, input_tensors=inputs if len(inputs) > 1 else inputs[0]
                )
        clone.set_weights(keras_model.get_weights())
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot clone model {keras_model.name!r} onto a batch of 1: {exc}") from exc
    return clone


# ----------------------------------------------------------------------------- conversion

def _as_windows(calibration, keras_model, what: str) -> np.ndarray:
    if calibration is None:
        raise ModelError(f"{what} needs calibration windows (representative data); none given")
    x = np.asarray(calibration, dtype=np.float32)
    want = tuple(int(d) for d in keras_model.input_shape[1:])
    if x.ndim != 1 + len(want) or tuple(x.shape[1:]) != want:
        raise DataError(f"calibration windows have shape {x.shape}; the model takes (n, *{want})")
    if x.shape[0] == 0:
        raise DataError("calibration set is empty")
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise DataError(f"calibration windows contain {bad} NaN/inf values")
    return x


def convert_model(
    keras_model,
    mode: str,
    calibration: np.ndarray | None = None,
    *,
    custom_objects: dict | None = None,
    allow_ops: Sequence[str] = (),
    check: bool = True,
    new_quantizer: bool | None = None,
) -> bytes:
    """Convert a tf_keras model to TFLite flatbuffer bytes in ``mode`` (see :data:`MODES`).

    ``calibration``: windows ``(n, *input_shape)`` for ``int8`` (representative
    dataset, fed one window at a time). The model is first cloned onto a batch of 1.
    With ``check`` (default) the result must pass :func:`check_ops` (builtin ops only,
    no ``WHILE`` unless listed in ``allow_ops``). Raises ``ModelError`` for an unknown
    mode, a refused mode (``16x8`` with an LSTM) or a converter failure; nothing is
    written anywhere, so a failed conversion leaves no broken file.

    ``new_quantizer`` (int8/16x8 only) selects the converter's MLIR quantizer. By default
    (None) it is on for QAT models only (the legacy quantizer refuses their fake-quant
    ops: "Quantization not yet supported for op: 'DEQUANTIZE'") and off otherwise: measured here (TF 2.21) the MLIR quantizer mis-quantizes an LSTM whose output
    has two consumers (the attention layer reads ``h`` twice; the converter logs "output 0
    should have only one use, which should be quant.stats") and the int8 peak model was
    off by 0.14 mean / 0.21 max in probability; the legacy quantizer gave 0.002 / 0.011 on
    the same model and windows, still full int8 with the fused LSTM and int16 cell state.
    """
    if mode not in MODES:
        raise ModelError(f"unknown conversion mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode == "16x8" and has_lstm(keras_model):
        raise ModelError(
            f"mode 16x8 (int16 activations, int8 weights) cannot convert {keras_model.name!r}: "
            f"TFLite's 16x8 quantizer does not support the fused LSTM op ({FUSED_LSTM}); "
            "use int8 (int8 activations, int16 LSTM cell state) or dynamic instead"
        )
    x_cal = None
    if mode in ("int8", "16x8"):
        x_cal = _as_windows(calibration, keras_model, f"mode {mode}")
    tf = _tf()
    model = fix_batch(keras_model, custom_objects)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "16x8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative():
            for w in x_cal:
                yield [w[None, ...]]

        conv.representative_dataset = representative
        conv.experimental_new_quantizer = _is_qat(keras_model) if new_quantizer is None else bool(new_quantizer)
        if mode == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        else:
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            conv.inference_input_type = tf.int16
            conv.inference_output_type = tf.int16
    try:
        flat = conv.convert()
    except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError...
        msg = str(exc).strip().splitlines()
        detail = next((m for m in msg if "error" in m.lower()), msg[0] if msg else type(exc).__name__)
        if FUSED_LSTM in str(exc) and "not yet supported" in str(exc):
            detail = f"the quantizer does not support the fused LSTM op in mode {mode}: {detail}"
        raise ModelError(f"TFLite conversion of {keras_model.name!r} to {mode} failed: {detail}") from exc
    if check:
        check_ops(flat, allow=allow_ops)
    log.info("converted %s to %s: %d bytes", keras_model.name, mode, len(flat))
    return bytes(flat)


# ----------------------------------------------------------------------------- op inspection

def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - depends on the TF build
        from tflite_support import schema_py_generated as schema  # type: ignore
    return schema


def list_ops(tflite_bytes: bytes) -> list[str]:
    """Operator names used by a flatbuffer, in subgraph order with repeats (``CUSTOM``
    ops and Select-TF ops appear by their custom code, e.g. ``FlexTensorListReserve``).

    Read from the flatbuffer schema, so models an interpreter cannot load (Flex ops)
    can still be inspected. Raises ``ModelError`` for bytes that are not a TFLite model.
    """
    schema = _schema()
    data = bytes(tflite_bytes)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as exc:
        raise ModelError(f"cannot parse the TFLite flatbuffer: {exc}") from exc
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for oc in model.operatorCodes or []:
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
            name = custom or "CUSTOM"
        codes.append(name)
    ops = []
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            ops.append(codes[op.opcodeIndex])
    return ops


def float_ops(tflite_bytes: bytes) -> list[str]:
    """Ops (in order, with repeats) that compute on float32 inputs, QUANTIZE/DEQUANTIZE left
    out: empty for a full-integer model. The MLIR quantizer leaves an LSTM whose output
    feeds two layers in float (docs/conversion.md), which this makes visible."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(tflite_bytes), 0))
    names = list_ops(tflite_bytes)
    out, k = [], 0
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            name = names[k]
            k += 1
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            ins = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]
            if any(sg.tensors[i].type == schema.TensorType.FLOAT32 for i in ins):
                out.append(name)
    return out


def check_ops(tflite_bytes: bytes, allow: Iterable[str] = ()) -> list[str]:
    """The sorted set of ops, or ``ModelError`` if a ``WHILE`` loop, a Flex (Select-TF)
    op or any custom op appears that is not listed in ``allow``.

    A ``WHILE`` op is what an unfused LSTM (Keras 3, QAT-wrapped) becomes: larger and
    slower, and not what the device runtime was measured with. Flex ops need the
    TensorFlow runtime, which the device does not have.
    """
    allow = set(allow)
    ops = sorted(set(list_ops(tflite_bytes)))
    bad = []
    builtin = set(vars(_schema().BuiltinOperator))
    for op in ops:
        if op in allow:
            continue
        if op in FORBIDDEN_OPS:
            bad.append(f"{op} (an unfused recurrent loop; build the LSTM with tf_keras, unwrapped)")
        elif op.startswith("Flex"):
            bad.append(f"{op} (Select-TF op: needs the TensorFlow runtime)")
        elif op not in builtin:
            bad.append(f"{op} (custom op)")
    if bad:
        raise ModelError("model uses ops the device runtime must not run: " + "; ".join(bad))
    return ops


# ----------------------------------------------------------------------------- running

def _tf_lite_interpreter() -> type:
    """The ``tf.lite`` backend: full TensorFlow's interpreter, a host's last resort."""
    return _tf().lite.Interpreter


# Host-side only: the device package never imports TensorFlow, so its wrapper
# (ppg_edge.edge_runtime.interpreter) learns of this backend here, after its own two.
register_backend("tf.lite", _tf_lite_interpreter)


# ----------------------------------------------------------------------------- self-check

@dataclasses.dataclass
class CheckResult:
    """Outcome of :func:`self_check`: differences between Keras and TFLite outputs."""

    mode: str
    n_windows: int
    max_abs: float
    mean_abs: float
    where: tuple[int, ...]
    span: float
    limit_max: float
    limit_mean: float
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "n_windows": self.n_windows, "max_abs": self.max_abs,
            "mean_abs": self.mean_abs, "where": list(self.where), "output_span": self.span,
            "limit_max_abs": self.limit_max, "limit_mean_abs": self.limit_mean, "passed": self.passed,
        }


def _fmt(a: np.ndarray, n: int = 8) -> str:
    flat = np.asarray(a).ravel()
    body = np.array2string(flat[:n], precision=5, separator=", ")
    return body + (f" ... ({flat.size} values)" if flat.size > n else "")


def self_check(
    keras_model,
    tflite_bytes: bytes,
    windows,
    mode: str,
    tolerance: Tolerance | None = None,
    raise_on_fail: bool = True,
) -> CheckResult:
    """Run Keras and TFLite (state reset before every window) on the same held-out
    ``windows`` and compare with the mode's :data:`TOLERANCES` (or ``tolerance``).

    On failure the report names the worst window and position and prints its input,
    both outputs and their difference; it raises ``ModelError`` with that report
    unless ``raise_on_fail`` is false.
    """
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"self-check needs at least one window, got shape {x.shape}")
    tol = tolerance or TOLERANCES.get("int8" if mode.endswith("int8") else mode)
    if tol is None:
        raise ModelError(f"no self-check tolerance for mode {mode!r}")
    ref = np.asarray(keras_model.predict(x, batch_size=min(len(x), 64), verbose=0), dtype=np.float64)
    lite = TFLiteModel(tflite_bytes).predict(x).astype(np.float64)
    if lite.shape != ref.shape:
        raise ModelError(f"self-check: TFLite output shape {lite.shape} differs from Keras {ref.shape}")
    diff = np.abs(lite - ref)
    if not np.all(np.isfinite(lite)):
        diff = np.where(np.isfinite(lite), diff, np.inf)
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    span = float(np.ptp(ref)) if ref.size else 0.0
    lim_max, lim_mean = tol.limits(span)
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    passed = bool(max_abs <= lim_max and mean_abs <= lim_mean)
    res = CheckResult(mode, len(x), max_abs, mean_abs, where, span, lim_max, lim_mean, passed)
    if not passed:
        i = where[0]
        res.detail = (
            f"self-check failed for mode {mode}: max |keras - tflite| = {max_abs:.3g} at {where} "
            f"(limit {lim_max:.3g}), mean {mean_abs:.3g} (limit {lim_mean:.3g}), output span {span:.3g}\n"
            f"  window {i} input:   {_fmt(x[i])}\n"
            f"  keras output:     {_fmt(ref[i])}\n"
            f"  tflite output:    {_fmt(lite[i])}\n"
            f"  |difference|:     {_fmt(diff[i])}"
        )
        log.error("%s", res.detail)
        if raise_on_fail:
            raise ModelError(res.detail)
    else:
        log.info("self-check %s: %d windows, max |d| %.3g (limit %.3g), mean %.3g", mode, len(x),
                 max_abs, lim_max, mean_abs)
    return res


def predict_fn(model: bytes | str | os.PathLike | Any) -> Callable[[np.ndarray], np.ndarray]:
    """``f(windows) -> outputs`` for a TFLite model (bytes/path) or a Keras model."""
    if isinstance(model, (bytes, bytearray, str, os.PathLike)):
        runner = TFLiteModel(model)
        return runner.predict
    return lambda x: np.asarray(model.predict(np.asarray(x, np.float32), verbose=0))
