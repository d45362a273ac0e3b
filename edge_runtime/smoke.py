"""The sensor part of the on-device smoke check of a deployed release.

``ppg_edge.boards.deploy.smoke`` calls :func:`smoke_check` after it has checked the
release's files and inferred one window per model. This check opens the board's
sensor backend the way ``ppg-edge run`` does (the real MAX30102 on the board's
I2C bus and address, paced by its interrupt pin; the emulated chip on a virtual
board, fed a synthetic PPG on a virtual clock), reads enough samples for one
model window plus a second, and streams them through the whole device path
(DSP, framer, the release's peak model, decoder). It passes when samples arrived,
none was lost, and at least one window went through the pipeline (inferred, or
suppressed with a reason: with no finger on the sensor a window is suppressed as
``finger_off``, which the detail says).

``$PPG_EDGE_SENSOR`` overrides the backend (e.g. ``emulated`` on a bench Pi
with no sensor wired). numpy and a TFLite interpreter only.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.errors import PPGEdgeError

from .playback import light_from_ppg, settings_from_board
from .sensors import SENSOR_ENV, VirtualClock, open_sensor
from .sinks import MemorySink

log = logging.getLogger(__name__)

EXTRA_S = 1.0  # seconds read beyond one model window (resampler and filter start-up)
NO_MODEL_S = 2.0  # seconds read when the release has no peak model


SERVICE_FILE = "service.json"   # written by the deploy bundle: what the service runs


def service_model(release_dir: Path) -> tuple[Path | None, str | None]:
    """The peak model the release's service configuration names, or an error text.

    ``(path, None)``; ``(None, None)`` when the service runs no peak model; ``(None, why)``
    when the configuration is missing, unreadable or names a model the release lacks."""
    path = Path(release_dir) / SERVICE_FILE
    try:
        service = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path}: no readable service configuration ({exc})"
    if not isinstance(service, dict) or "model" not in service:
        return None, f"{path}: no 'model' entry"
    if not service["model"]:
        return None, None
    model = (Path(release_dir) / service["model"]).resolve()
    if Path(release_dir).resolve() not in model.parents or not model.is_file():
        return None, f"{path}: the service's model {service['model']} is not in the release"
    return model, None


def _sensor(name: str, board, settings, seconds: float, events: list):
    if name == "emulated":
        from ppg_edge.synth import synth_ppg

        s = synth_ppg(seconds + 2.0, 250.0, np.random.default_rng(0), hr_bpm=72.0)
        return open_sensor("emulated", source=light_from_ppg(s.signal), source_fs=250.0,
                           clock=VirtualClock(), settings=settings, on_event=events.append)
    if name == "max30102":
        return open_sensor("max30102", bus=board.i2c.bus, address=board.max30102.address,
                           int_pin=board.max30102.interrupt_gpio, settings=settings, on_event=events.append)
    raise PPGEdgeError(f"sensor backend {name!r} cannot be smoke-checked (use max30102 or emulated)")


def smoke_check(release_dir: Path, board: str | None, *, source: str | None = None) -> dict[str, Any]:
    """Open the board's sensor, stream one window through the device path; ``{"ok", "detail", ...}``.

    Never raises for a device problem: a missing bus, a wrong part id, I2C errors or a
    pipeline error come back as ``ok: False`` with the reason."""
    from ppg_edge.boards import load_board

    from .pipeline import Pipeline
    from .quality import QualityConfig

    release_dir = Path(release_dir)
    board_file = release_dir / "board" / f"{board}.toml"
    if not board or not board_file.is_file():
        return {"ok": False, "detail": f"no board file {board_file} in the release"}
    try:
        b = load_board(board_file)
    except PPGEdgeError as exc:
        return {"ok": False, "detail": f"board file: {exc}"}
    name = (source or os.environ.get(SENSOR_ENV) or ("emulated" if b.virtual else "max30102")).strip().lower()
    settings = settings_from_board(b)
    model, problem = service_model(release_dir)
    if problem:
        return {"ok": False, "board": b.identifier, "model": None, "detail": problem}
    events: list = []
    out: dict[str, Any] = {"ok": False, "sensor": name, "board": b.identifier,
                           "model": None if model is None else model.name}
    try:
        pipe = None
        if model is not None:
            pipe = Pipeline(settings.output_rate, MemorySink(), model_path=model,
                            full_scale=(1 << settings.resolution_bits) - 1,
                            quality=QualityConfig(gate="network"), preference=b.interpreters)
            seconds = pipe.spec.window / pipe.fs + EXTRA_S
        else:
            seconds = NO_MODEL_S
        sensor = _sensor(name, b, settings, seconds, events)
        if pipe is not None:
            summary = pipe.run_sensor(sensor, events, seconds)
            samples, lost, kinds = summary["samples"], summary["lost"], sorted(summary["sensor_events"])
        else:
            summary, samples = None, 0
            try:
                for block in sensor.blocks(duration_s=seconds):
                    samples += len(block.ir)
            finally:
                sensor.close()
            lost = int(getattr(sensor, "samples_lost", 0))
            kinds = sorted({e.kind for e in events})
    except (PPGEdgeError, OSError, ValueError) as exc:
        out["detail"] = f"{name}: {type(exc).__name__}: {exc}"
        return out
    out.update(samples=samples, lost=lost, sensor_events=kinds, seconds=round(seconds, 2))
    where = (f"I2C bus {b.i2c.bus} @0x{b.max30102.address:02x}" if name == "max30102" else
             "emulated MAX30102, synthetic PPG")
    if samples == 0:
        out["detail"] = f"{name} ({where}): no samples in {seconds:.1f} s"
        return out
    if lost:
        out["detail"] = f"{name} ({where}): {lost} samples lost in {seconds:.1f} s"
        return out
    if summary is None:
        out.update(ok=True, detail=f"{name} ({where}): {samples} samples in {seconds:.1f} s, none lost; "
                                   "no peak model in the release, so no window was inferred")
        return out
    out.update(windows=summary["windows"], suppressed_by=summary["suppressed_by"], backend=summary["backend"])
    if summary["windows"] < 1:
        out["detail"] = f"{name} ({where}): {samples} samples but no window reached the model"
        return out
    inferred = summary["windows"] - summary["suppressed"]
    why = ", ".join(f"{k} {v}" for k, v in summary["suppressed_by"].items() if v)
    out.update(ok=True, detail=(f"{name} ({where}): {samples} samples in {seconds:.1f} s, none lost; "
                                f"{summary['windows']} window(s) through {model.name} ({summary['backend']}): "
                                f"{inferred} inferred" + (f", suppressed: {why}" if why else "")))
    return out
