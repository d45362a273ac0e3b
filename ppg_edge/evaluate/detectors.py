"""Peak detectors by name, all behind one interface: ``detect(signal, fs) -> sample indices``.

Built in are NeuroKit2's PPG beat detectors (Makowski et al., 2021, Behav. Res.
Methods 53:1689), each run on the signal cleaned by ``nk.ppg_clean``:

``nk-elgendi``
    ``ppg_findpeaks(method="elgendi")``: Elgendi et al. (2013) PLoS ONE 8:e76585,
    two moving averages on the squared clipped signal. Cleaning
    ``ppg_clean(method="elgendi")`` (0.5-8 Hz Butterworth, zero phase), the
    cleaning that method was designed with.
``nk-msptd``
    ``ppg_findpeaks(method="bishop")``: MSPTD, Bishop & Ercole (2018),
    doi:10.1007/978-3-319-65798-1_39. See "Guarding MSPTD" below.
``nk-msptdfastv1`` / ``nk-msptdfastv2``
    ``ppg_findpeaks(method="msptdfastv1")`` (8 s windows, Charlton et al., CinC
    2024) and ``method="msptdfastv2"`` (6 s windows, Charlton et al., 2025,
    Physiol. Meas. 46:035002). Both window, detrend and downsample to 20 Hz
    internally.

NeuroKit2 (0.2.13 here) has no MSPTD-specific ``ppg_clean`` method, and the
MSPTD family detrends each window itself; we give them the same
``ppg_clean(method="elgendi")`` signal as ``nk-elgendi`` so the detectors differ
only in the peak-finding step. Zero-phase cleaning keeps peaks in place (a
causal filter would delay them; see docs/facts.md).

Guarding MSPTD
--------------
NeuroKit2's MSPTD builds two boolean scalograms of size (N/2) x N in a pure
Python double loop: memory and time grow with N^2 (an 8-minute record at 300 Hz
did not finish in 18 minutes with 20 GB). ``nk-msptd`` therefore never runs it
on a whole record: the cleaned signal is decimated to at most
``MSPTD_MAX_FS`` Hz (it is already low-passed at 8 Hz), cut into
``MSPTD_WINDOW_S`` windows overlapping by ``MSPTD_OVERLAP_S``, MSPTD runs on
each window, each window keeps only the peaks of its middle part (half the
overlap is trimmed from each inner edge, so every sample belongs to exactly one
window's kept part and no peak is counted twice), and every peak is moved to
the maximum of the full-rate cleaned signal within one decimated sample. Cost
is then linear in the record length (about 0.2 s per window here).

Every nk-* detector refuses signals shorter than 1 s (``DataError``) and
returns no peaks for a flat signal.

Other modules add detectors with :func:`register_detector`, e.g. a model-based
detector: ``register_detector("model-cnn", lambda: MyDetector(path).detect)``.

Trained peak models
-------------------
``Type30``, ``Type28``, ``Type24`` and ``Type16`` are the committed models in
``models/peaks/<name>`` of the checkout (:data:`PEAK_MODELS_DIR`), and ``model:PATH``
any folder written by ``ppg-edge train peaks``. Each runs the device preprocessing,
the Keras model, the decoder with the model's validation threshold and the mapping
back to the raw axis at the record's own rate
(:class:`ppg_edge.evaluate.peak_model.PeakModelDetector`; needs TensorFlow).
:func:`load_peak_model_detector` is the one place where evaluation reaches into the
training code: to rebuild the Keras network of a saved model
(``ppg_edge.train.peaks.fit.load_peak_model``).

``dwt-baseline`` is the classic wavelet detector the paper compares its networks against
(:mod:`ppg_edge.evaluate.dwt_baseline`; needs PyWavelets).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dsp.rates import check_rate
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "Detector",
    "PEAK_MODELS_DIR",
    "MODEL_PREFIX",
    "register_detector",
    "get_detector",
    "available_detectors",
    "chunked",
    "load_keras_peak_model",
    "load_peak_model_detector",
    "MSPTD_MAX_FS",
    "MSPTD_WINDOW_S",
    "MSPTD_OVERLAP_S",
]

DetectFn = Callable[[np.ndarray, float], np.ndarray]
Factory = Callable[[], DetectFn]

MSPTD_MAX_FS = 100.0
MSPTD_WINDOW_S = 6.0
MSPTD_OVERLAP_S = 2.0

_REGISTRY: dict[str, tuple[Factory, str]] = {}

MODEL_PREFIX = "model:"
PEAK_MODELS_DIR = Path(__file__).resolve().parents[2] / "models" / "peaks"
COMMITTED_PEAK_MODELS = ("Type30", "Type28", "Type24", "Type16")


@dataclass(frozen=True)
class Detector:
    """A named detector; :meth:`detect` validates the input and the output."""

    name: str
    description: str
    fn: DetectFn

    def detect(self, signal, fs: float) -> np.ndarray:
        """Sorted, unique 0-based sample indices of pulse peaks in ``signal``.

        Raises ``DataError`` for a signal that is not 1-D, is empty or holds
        NaN/infinity, or for a non-positive rate; a detector that returns
        indices outside the signal is reported the same way.
        """
        x = _check_signal(signal, fs, self.name)
        peaks = np.asarray(self.fn(x, float(fs)))
        if peaks.size and not np.issubdtype(peaks.dtype, np.integer):
            if not np.all(np.isfinite(peaks)) or np.any(peaks != np.round(peaks)):
                raise DataError(f"detector {self.name} returned non-integer peak indices")
        peaks = np.unique(peaks.astype(np.int64))
        if peaks.size and (peaks[0] < 0 or peaks[-1] >= x.size):
            raise DataError(
                f"detector {self.name} returned indices outside 0..{x.size - 1} "
                f"({peaks[0]}..{peaks[-1]})"
            )
        return peaks

    __call__ = detect


def _check_signal(signal, fs, name: str) -> np.ndarray:
    check_rate(fs, f"{name}: sampling rate", error=DataError, number=True)
    x = np.asarray(signal, dtype=float)
    if x.ndim != 1:
        raise DataError(f"{name}: signal must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise DataError(f"{name}: signal is empty")
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(
            f"{name}: signal has {int(bad.sum())} NaN/infinite samples "
            f"(first at {int(np.argmax(bad))}); fill or cut them before detection"
        )
    return x


def register_detector(name: str, factory: Factory, description: str = "",
                      replace: bool = False) -> None:
    """Make ``factory`` available as ``name``.

    ``factory()`` is called when the detector is requested (so heavy imports
    happen then) and must return a callable ``(signal, fs) -> indices``, or an
    object with such a ``detect`` method. Registering a taken name raises
    ``ConfigError`` unless ``replace`` is true.
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ConfigError(f"detector name must be a non-empty word, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"detector {name}: factory must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not replace:
        raise ConfigError(f"detector {name!r} is already registered")
    _REGISTRY[name] = (factory, description)


def unregister_detector(name: str) -> None:
    """Remove ``name`` (for tests and plugins that clean up); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def available_detectors() -> list[str]:
    """Registered detector names, sorted."""
    return sorted(_REGISTRY)


def get_detector(name: str) -> Detector:
    """The detector registered as ``name``, or ``model:PATH`` (a trained peak model folder);
    unknown names raise ``ConfigError`` listing valid ones."""
    if isinstance(name, str) and name.startswith(MODEL_PREFIX):
        path = name[len(MODEL_PREFIX):]
        if not path:
            raise ConfigError(f"{name!r}: give the model folder after {MODEL_PREFIX!r}")
        factory, description = _model_factory(Path(path)), f"peak model {path}"
        return _make(name, factory, description)
    try:
        factory, description = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown detector {name!r}; valid names: {', '.join(available_detectors())}, or model:PATH"
        ) from None
    return _make(name, factory, description)


def _make(name: str, factory: Factory, description: str) -> Detector:
    made = factory()
    fn = getattr(made, "detect", made)
    if not callable(fn):
        raise ConfigError(f"detector {name}: factory returned {type(made).__name__}, not a detector")
    return Detector(name=name, description=description, fn=fn)


def chunked(detect: DetectFn, window_s: float, overlap_s: float) -> DetectFn:
    """Run ``detect`` on overlapping windows and stitch the peaks without duplicates.

    Window k covers ``[k * step, k * step + window)`` with ``step = window -
    overlap`` (the last one is moved back to end at the signal's end). Each
    window keeps the peaks in its own part: from half an overlap after its start
    (from 0 for the first) to the point where the next window's part begins.
    """
    if not (window_s > 0 and 0 <= overlap_s < window_s):
        raise ConfigError(f"chunking needs window > overlap >= 0, got {window_s} s and {overlap_s} s")

    def run(x: np.ndarray, fs: float) -> np.ndarray:
        n = x.size
        win = max(1, int(round(window_s * fs)))
        if n <= win:
            return np.asarray(detect(x, fs), dtype=np.int64)
        step = max(1, win - int(round(overlap_s * fs)))
        starts = list(range(0, n - win, step)) + [n - win]
        # boundary between window k and k+1: the middle of their overlap
        bounds = [0] + [(starts[k] + win + starts[k + 1]) // 2 for k in range(len(starts) - 1)] + [n]
        out = []
        for k, s in enumerate(starts):
            p = np.asarray(detect(x[s:s + win], fs), dtype=np.int64) + s
            out.append(p[(p >= bounds[k]) & (p < bounds[k + 1])])
        return np.concatenate(out) if out else np.empty(0, np.int64)

    return run


# --------------------------------------------------------------------------- NeuroKit2


NK_MIN_DURATION_S = 1.0
#: NeuroKit2's MSPTDfast (``_ppg_findpeaks_charlton``, 6 s windows) fails with a TypeError
#: on a signal shorter than one window (measured with NeuroKit2 0.2.x on 2.1 s PPG-BP
#: segments), so the msptdfast detectors refuse it with a clear error first.
MSPTDFAST_MIN_DURATION_S = 6.0


def _nk_input_ok(x: np.ndarray, fs: float, name: str) -> bool:
    """Shared guard of the nk-* detectors: a too-short signal is an error
    (NeuroKit2's filters need padding), a flat one has no pulses (MSPTDfast would
    report its filter transients as peaks), so it gets none."""
    if x.size < NK_MIN_DURATION_S * fs or x.size < 16:
        raise DataError(
            f"{name}: signal of {x.size} samples ({x.size / fs:.2f} s) is shorter than "
            f"the {NK_MIN_DURATION_S:g} s these detectors need"
        )
    if np.ptp(x) == 0:
        log.debug("%s: flat signal, no peaks", name)
        return False
    return True


def _nk():
    try:
        import neurokit2 as nk
    except ImportError as exc:  # pragma: no cover - the data extra brings it
        raise ConfigError(
            "the nk-* detectors need NeuroKit2: pip install 'ppg-edge[data]'"
        ) from exc
    return nk


def _nk_rate(fs: float, method: str) -> float | int:
    """The rate to hand NeuroKit2: MSPTDfast (0.2.13) builds ``range`` from
    ``window_s * sampling_rate`` and fails on a float, so it gets the rate rounded
    to a whole number (at 62.5 Hz that stretches its windows by 0.8 %)."""
    if not method.startswith("msptdfast"):
        return fs
    r = int(round(fs))
    if r != fs:
        log.debug("%s: passing sampling rate %d Hz for %g Hz", method, r, fs)
    return max(r, 1)


def _nk_factory(method: str, clean: str = "elgendi") -> Factory:
    def factory() -> DetectFn:
        nk = _nk()

        def detect(x: np.ndarray, fs: float) -> np.ndarray:
            if not _nk_input_ok(x, fs, f"nk-{method}"):
                return np.empty(0, np.int64)
            if method.startswith("msptdfast") and x.size < MSPTDFAST_MIN_DURATION_S * fs:
                raise DataError(f"nk-{method}: signal of {x.size / fs:.2f} s is shorter than its "
                                f"{MSPTDFAST_MIN_DURATION_S:g} s window")
            cleaned = nk.ppg_clean(x, sampling_rate=fs, method=clean)
            info = nk.ppg_findpeaks(cleaned, sampling_rate=_nk_rate(fs, method), method=method)
            return np.asarray(info["PPG_Peaks"], dtype=np.int64)

        return detect

    return factory


def _msptd_factory() -> DetectFn:
    nk = _nk()

    def msptd_window(y: np.ndarray, fs: float) -> np.ndarray:
        if y.size < 5:  # MSPTD needs at least two scales
            return np.empty(0, np.int64)
        peaks = nk.ppg_findpeaks(y, sampling_rate=fs, method="bishop")["PPG_Peaks"]
        return np.asarray(peaks, dtype=np.int64)

    windowed = chunked(msptd_window, MSPTD_WINDOW_S, MSPTD_OVERLAP_S)

    def detect(x: np.ndarray, fs: float) -> np.ndarray:
        if not _nk_input_ok(x, fs, "nk-msptd"):
            return np.empty(0, np.int64)
        cleaned = nk.ppg_clean(x, sampling_rate=fs, method="elgendi")
        ds = max(1, int(math.floor(fs / MSPTD_MAX_FS)))
        low = cleaned[::ds]
        p = windowed(low, fs / ds)
        if ds == 1 or p.size == 0:
            return p
        # back to full rate: the maximum within one decimated sample either side
        out = np.empty(p.size, np.int64)
        for i, c in enumerate(p * ds):
            lo, hi = max(0, c - ds), min(cleaned.size, c + ds + 1)
            out[i] = lo + int(np.argmax(cleaned[lo:hi]))
        return np.unique(out)

    return detect


register_detector("nk-elgendi", _nk_factory("elgendi"),
                  "NeuroKit2 Elgendi 2013 on ppg_clean(elgendi)")
register_detector("nk-msptd", _msptd_factory,
                  f"NeuroKit2 MSPTD (Bishop 2018) in {MSPTD_WINDOW_S:g} s windows at <= {MSPTD_MAX_FS:g} Hz")
register_detector("nk-msptdfastv1", _nk_factory("msptdfastv1"),
                  "NeuroKit2 MSPTDfast v1 (Charlton 2024), 8 s windows")
register_detector("nk-msptdfastv2", _nk_factory("msptdfastv2"),
                  "NeuroKit2 MSPTDfast v2 (Charlton 2025), 6 s windows")


def _dwt_baseline_factory() -> DetectFn:
    from .dwt_baseline import detect

    return detect


register_detector("dwt-baseline", _dwt_baseline_factory,
                  "classic db4 level-4 DWT detector of Georgieva-Tsaneva 2025 (0.3-2 s, 50% of mean amplitude)")


# --------------------------------------------------------------------------- trained models


def _model_factory(path: Path, committed: str | None = None) -> Factory:
    def factory():
        if committed is not None and not path.is_dir():
            raise ConfigError(
                f"detector {committed}: no committed model at {path} (train it with "
                f"`ppg-edge train peaks --variant {committed} --out {path}`, or use model:PATH)"
            )
        if committed is None and not path.exists() and not path.with_name(path.name + ".json").exists():
            raise ConfigError(f"model:{path}: no such model folder")
        return load_peak_model_detector(path)

    return factory


def load_keras_peak_model(path):
    """``(keras_model, config)`` of a saved peak model (``<stem>`` path, ``.json`` or
    ``.weights.h5``), rebuilt by the training code's loader: the one import of
    ``ppg_edge.train`` on the evaluation side."""
    from ppg_edge.train.peaks.fit import load_peak_model

    return load_peak_model(path)


def load_peak_model_detector(path, batch_size: int = 256):
    """:class:`~ppg_edge.evaluate.peak_model.PeakModelDetector` of a saved model folder
    (``model:PATH`` and the committed models), its network from :func:`load_keras_peak_model`."""
    from .peak_model import PeakModelDetector

    return PeakModelDetector(path, load_keras_peak_model, batch_size=batch_size)


for _name in COMMITTED_PEAK_MODELS:
    register_detector(_name, _model_factory(PEAK_MODELS_DIR / _name, _name),
                      f"trained peak model models/peaks/{_name} (device preprocessing, Keras, decoder)")
