"""The one TFLite interpreter wrapper: backends chosen like gpiozero pin factories.

**Backends.** The device's two are built in and tried in order: ``ai-edge-litert``,
then ``tflite-runtime``. A host may register more with :func:`register_backend`
(``ppg_edge.convert.tflite`` registers ``tf.lite``, full TensorFlow, for the
conversion self-checks on a host without either package); registered ones are
tried after the built-in ones. This package never imports TensorFlow itself.
Each fallback logs a warning and issues an :class:`InterpreterFallback` warning.
A name (argument, or the ``PPG_EDGE_INTERPRETER`` environment variable) picks one
backend and never falls back: a named backend that cannot be imported is a
``ModelError``.

**Models.** :class:`TFLiteModel` is one flatbuffer (file or bytes) on the chosen
backend, fed one float window at a time: ``reset_all_variables()`` runs before
every window (the fused LSTM op keeps state between ``invoke()`` calls: docs/facts.md),
int8 tensors are quantized and dequantized with their affine parameters.
The converter, the smoke check and the runtime all use it.
:class:`EdgeModel` adds what the runtime needs before it trusts a model: it refuses
a model before loading it unless the manifest beside it is valid and sealed and the
file's size and sha256 match (:func:`ppg_edge.manifest.verify_model`); it also
checks that the manifest fits the pipeline (sample rate, window, input shape,
kind) and the interpreter's own tensors, and then quantizes through the
manifest's parameters.
"""
from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ppg_edge import manifest as _mf
from ppg_edge.dsp.pipeline import Preprocessing
from ppg_edge.errors import ConfigError, DataError, ModelError, PPGEdgeError

from .peaks_decode import DecoderSpec

log = logging.getLogger(__name__)

INTERPRETER_ENV = "PPG_EDGE_INTERPRETER"
#: The device's backends, built in, in order of preference.
BACKENDS = ("ai-edge-litert", "tflite-runtime")


class InterpreterFallback(RuntimeWarning):
    """A preferred interpreter backend was not available and the next one is used."""


def _litert():
    return importlib.import_module("ai_edge_litert.interpreter").Interpreter


def _tflite_runtime():
    return importlib.import_module("tflite_runtime.interpreter").Interpreter


#: name -> loader returning the backend's ``Interpreter`` class; built-in ones first.
_LOADERS: dict[str, Callable[[], type]] = {"ai-edge-litert": _litert, "tflite-runtime": _tflite_runtime}


def register_backend(name: str, loader: Callable[[], type]) -> None:
    """Make ``loader`` (``() -> Interpreter class``, importing what it needs only when
    called) the backend ``name``, tried after the built-in ones. Registering a name
    again replaces its loader (idempotent for the same loader); a built-in one cannot
    be replaced."""
    key = name.strip().lower()
    if key in BACKENDS:
        raise ConfigError(f"interpreter backend {key!r} is built in and cannot be replaced")
    _LOADERS[key] = loader


def backends() -> tuple[str, ...]:
    """Every backend name known here, in fallback order (built-in, then registered)."""
    return tuple(_LOADERS)


def interpreter_class(name: str | None = None, preference: Sequence[str] | None = None) -> tuple[str, type]:
    """``(backend name, Interpreter class)``.

    ``name`` (or ``$PPG_EDGE_INTERPRETER``) selects exactly one backend. Otherwise
    ``preference`` (e.g. a board's ``interpreters``) is tried in order, followed by
    the remaining :func:`backends`, with a warning on each fallback.
    """
    chosen = name or os.environ.get(INTERPRETER_ENV)
    if chosen:
        key = chosen.strip().lower()
        if key not in _LOADERS:
            origin = "" if name else f" (from {INTERPRETER_ENV})"
            raise ConfigError(f"unknown interpreter backend {chosen!r}{origin}; choose one of "
                              f"{', '.join(_LOADERS)} (host backends such as tf.lite are registered "
                              "by ppg_edge.convert)")
        try:
            return key, _LOADERS[key]()
        except Exception as exc:  # ImportError, or a broken install raising something else
            raise ModelError(f"interpreter backend {key!r} is not usable here: {exc}") from exc
    order = [b for b in (preference or ()) if b in _LOADERS]
    order += [b for b in _LOADERS if b not in order]
    failures = []
    for key in order:
        try:
            cls = _LOADERS[key]()
        except Exception as exc:
            failures.append(f"{key}: {exc}")
            msg = f"interpreter backend {key} unavailable ({exc}); trying the next one"
            log.warning(msg)
            warnings.warn(msg, InterpreterFallback, stacklevel=2)
            continue
        return key, cls
    raise ModelError("no TFLite interpreter available; install ai-edge-litert "
                     "(pip install 'ppg-edge[edge]'). Tried: " + "; ".join(failures))


def _quant(spec: dict) -> tuple[float, int] | None:
    q = spec.get("quantization")
    if not q:
        return None
    return float(q["scale"]), int(q["zero_point"])


def _tensor_quant(detail: dict) -> tuple[float, int] | None:
    """A tensor's affine ``(scale, zero_point)``; None for a float tensor (scale 0)."""
    scale, zp = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zp)) if scale else None


class TFLiteModel:
    """One TFLite flatbuffer (``model``: a path or the bytes) on the chosen backend.

    ``backend``: a backend name (else ``$PPG_EDGE_INTERPRETER``, else ``preference``
    then :func:`backends`). Attributes: ``interpreter``, ``backend``, ``input`` and
    ``output`` (the first input/output tensor details), ``input_shape``, ``in_q`` /
    ``out_q`` (``(scale, zero_point)`` or None), ``in_dtype`` / ``out_dtype``,
    ``invocations``. Outputs come back as float64 without the batch axis.
    A model the interpreter cannot load is a ``ModelError``.
    """

    def __init__(self, model: bytes | str | os.PathLike, *, backend: str | None = None,
                 preference: Sequence[str] | None = None, num_threads: int = 1):
        self.backend, cls = interpreter_class(backend, preference)
        what = "the model" if isinstance(model, (bytes, bytearray)) else os.fspath(model)
        try:
            if isinstance(model, (bytes, bytearray)):
                self.interpreter = cls(model_content=bytes(model), num_threads=num_threads)
            else:
                self.interpreter = cls(model_path=os.fspath(model), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # a corrupt flatbuffer raises ValueError/RuntimeError
            raise ModelError(f"{what}: the {self.backend} interpreter cannot load it: {exc}") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.in_dtype = np.dtype(self.input["dtype"])
        self.out_dtype = np.dtype(self.output["dtype"])
        self.in_q = _tensor_quant(self.input)
        self.out_q = _tensor_quant(self.output)
        self.invocations = 0

    def quantize(self, x: np.ndarray) -> np.ndarray:
        if self.in_q is None:
            return np.asarray(x).astype(self.in_dtype)
        scale, zp = self.in_q
        info = np.iinfo(self.in_dtype)
        return np.clip(np.rint(np.asarray(x) / scale) + zp, info.min, info.max).astype(self.in_dtype)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        if self.out_q is None:
            return y.astype(np.float64)
        scale, zp = self.out_q
        return (y.astype(np.float64) - zp) * scale

    def invoke_raw(self, inputs: Sequence[np.ndarray], reset: bool = True) -> list[np.ndarray]:
        """Every input tensor set as given (already in its dtype and shape, batch axis
        included), one ``invoke()``; every output tensor as the interpreter returns it."""
        if reset:
            self.interpreter.reset_all_variables()
        for det, x in zip(self.interpreter.get_input_details(), inputs):
            self.interpreter.set_tensor(det["index"], x)
        self.interpreter.invoke()
        self.invocations += 1
        return [self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()]

    def invoke(self, window, reset: bool = True) -> np.ndarray:
        """Output for one float window of shape ``input_shape[1:]``, dequantized, without the
        batch axis. ``reset=False`` keeps the LSTM state of the previous window (only to show
        the drift that causes)."""
        w = np.asarray(window, dtype=np.float32).reshape(self.input_shape)
        if reset:
            self.interpreter.reset_all_variables()  # fused LSTM state must not leak across windows
        self.interpreter.set_tensor(self.input["index"], self.quantize(w))
        self.interpreter.invoke()
        self.invocations += 1
        return self.dequantize(self.interpreter.get_tensor(self.output["index"])[0])

    def predict(self, windows, reset: bool = True) -> np.ndarray:
        """Outputs for windows ``(n, *input_shape[1:])`` stacked to ``(n, *output_shape[1:])``."""
        x = np.asarray(windows, dtype=np.float32)
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            raise DataError(f"windows have shape {x.shape}; the model takes (n, *{self.input_shape[1:]})")
        if not len(x):
            return np.zeros((0, *(int(d) for d in self.output["shape"][1:])), np.float64)
        return np.stack([self.invoke(w, reset=reset) for w in x])

    def tensor_specs(self) -> tuple[list[dict], list[dict]]:
        """Input and output tensors as :func:`ppg_edge.manifest.tensor_spec` dicts."""
        def spec(d):
            q = _tensor_quant(d)
            return _mf.tensor_spec(d["name"], d["shape"], np.dtype(d["dtype"]).name,
                                   q[0] if q else None, q[1] if q else None)

        return ([spec(d) for d in self.interpreter.get_input_details()],
                [spec(d) for d in self.interpreter.get_output_details()])

    def tensor_dtypes(self) -> set[str]:
        """dtypes of every tensor in the graph (e.g. to see the int16 LSTM cell state)."""
        return {np.dtype(d["dtype"]).name for d in self.interpreter.get_tensor_details()}


class EdgeModel(TFLiteModel):
    """A verified TFLite model ready for one window at a time.

    ``expected_fs``: the rate the pipeline feeds (Hz); a manifest for another rate
    is refused. ``kind``: ``"peaks"`` or ``"bp"`` to require one. ``backend``:
    interpreter name (else env/preference order). Attributes: ``manifest``,
    ``spec`` (the :class:`Preprocessing` the model was trained on), ``backend``,
    ``window``, ``n_channels``, ``fs``, ``decoder`` (:class:`~.peaks_decode.DecoderSpec`).
    """

    def __init__(self, model_path: str | os.PathLike, *, expected_fs: float | None = None,
                 kind: str | None = None, backend: str | None = None,
                 preference: Sequence[str] | None = None, num_threads: int = 1):
        self.path = Path(model_path)
        # 1. integrity, before anything parses the model file
        self.manifest = m = _mf.verify_model(self.path)
        src = str(_mf.manifest_path_for(self.path))
        if kind is not None and m["kind"] != kind:
            raise ModelError(f"{self.path}: a {m['kind']!r} model where a {kind!r} model is needed")
        self.kind = m["kind"]
        # 2. fit to the pipeline
        try:
            self.spec = Preprocessing.from_dict(m["preprocessing"])
        except PPGEdgeError as exc:
            raise ModelError(f"{src}: preprocessing spec unusable here: {exc}") from exc
        self.fs = float(m["sample_rate_hz"])
        if abs(self.spec.fs - self.fs) > 1e-9:
            raise ModelError(f"{src}: sample_rate_hz {self.fs:g} disagrees with its preprocessing fs "
                             f"{self.spec.fs:g}")
        if expected_fs is not None and abs(float(expected_fs) - self.fs) > 1e-6 * self.fs:
            raise ModelError(f"{self.path}: model expects {self.fs:g} Hz samples but the pipeline "
                             f"delivers {float(expected_fs):g} Hz (wrong sample rate; resample or use "
                             f"a model for this rate)")
        if int(m["window"]) != self.spec.window or int(m["hop"]) != self.spec.hop:
            raise ModelError(f"{src}: window/hop {m['window']}/{m['hop']} disagree with the "
                             f"preprocessing's {self.spec.window}/{self.spec.hop}")
        self.window = self.spec.window
        self.n_channels = len(self.spec.channels)
        if len(m["inputs"]) != 1 or len(m["outputs"]) != 1:
            raise ModelError(f"{src}: expected one input and one output tensor, got "
                             f"{len(m['inputs'])} and {len(m['outputs'])}")
        self.in_spec, self.out_spec = m["inputs"][0], m["outputs"][0]
        want = [1, self.window, self.n_channels]
        if list(self.in_spec["shape"]) != want:
            raise ModelError(f"{src}: input shape {self.in_spec['shape']} does not fit the pipeline's "
                             f"{want} (window {self.window}, channels {list(self.spec.channels)})")
        # the decoder's parameters, one DecoderSpec (older manifests keep the shift under "training")
        try:
            self.decoder = DecoderSpec.from_dict(m.get("decoder"), m.get("training"))
        except ConfigError as exc:
            raise ModelError(f"{src}: {exc}") from None
        # 3. load, then check the interpreter's tensors against the manifest
        super().__init__(self.path, backend=backend, preference=preference, num_threads=num_threads)
        self._check_tensor(self.input, self.in_spec, "input", src)
        self._check_tensor(self.output, self.out_spec, "output", src)
        self.in_q = _quant(self.in_spec)
        self.out_q = _quant(self.out_spec)
        if self.in_dtype.kind == "i" and self.in_q is None:
            raise ModelError(f"{src}: integer input without quantization parameters")
        if self.out_dtype.kind == "i" and self.out_q is None:
            raise ModelError(f"{src}: integer output without quantization parameters")
        log.info("loaded %s (%s, %s) with %s", self.path.name, m["kind"], m["mode"], self.backend)

    def _check_tensor(self, detail: dict, spec: dict, what: str, src: str) -> None:
        shape = [int(s) for s in detail["shape"]]
        if shape != [int(s) for s in spec["shape"]]:
            raise ModelError(f"{self.path}: {what} tensor shape {shape} differs from the manifest's "
                             f"{spec['shape']} ({src})")
        dtype = np.dtype(detail["dtype"]).name
        if dtype != spec["dtype"]:
            raise ModelError(f"{self.path}: {what} dtype {dtype} differs from the manifest's {spec['dtype']}")
        q = _quant(spec)
        scale, zp = detail.get("quantization", (0.0, 0))
        if q is not None and (abs(scale - q[0]) > 1e-6 * abs(q[0]) or zp != q[1]):
            raise ModelError(f"{self.path}: {what} quantization ({scale:g}, {zp}) differs from the "
                             f"manifest's ({q[0]:g}, {q[1]})")

    def predict_window(self, x) -> np.ndarray:
        """One window ``(window, n_channels)`` -> output without the batch axis, float64.

        A peak model gives ``(window,)`` probabilities; a BP model its output vector.
        """
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim == 1 and self.n_channels == 1:
            arr = arr[:, None]
        if arr.shape != (self.window, self.n_channels):
            raise ModelError(f"{self.path.name}: window shape {arr.shape}, model takes "
                             f"{(self.window, self.n_channels)}")
        if not np.isfinite(arr).all():
            raise ModelError(f"{self.path.name}: window has NaN or infinite values")
        y = self.invoke(arr)
        return y[..., 0] if (y.ndim == 2 and y.shape[-1] == 1) else y
