"""Play a recorded PPG through the emulated MAX30102 and the real driver.

Used by ``ppg-edge run --source emulated --record``, the streaming-equals-batch
test and ``ppg-edge bench runtime``: the record becomes photodiode light, the
register-level chip (:class:`~.sensors.EmulatedMax30102`) digitises it with the
board's settings (rate, averaging, pulse width, ADC range, LED currents) and the
unchanged driver reads it in FIFO bursts. numpy only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ppg_edge.errors import DataError

from .sensors import Max30102Settings, SensorEvent, VirtualClock, open_sensor

log = logging.getLogger(__name__)

# Emulated light level (nA of photodiode current per mA of LED current): a DC level near 40% of
# the 4096 nA range at 7 mA and a pulsatile part of about 1% of it, as on a fingertip.
EMU_DC = 250.0
EMU_AC = 3.0


def light_from_ppg(ppg, dc: float = EMU_DC, ac: float = EMU_AC) -> np.ndarray:
    """A blood-volume PPG (any units) as the light a finger reflects into the emulated chip:
    ``dc - ac * z``, ``z`` the record standardised by its median and standard deviation (the
    reflected light falls as the blood volume rises, as on the real chip); NaN samples take
    the median."""
    x = np.asarray(ppg, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise DataError(f"PPG record must be 1-D with at least 2 samples, got shape {x.shape}")
    finite = np.isfinite(x)
    if not finite.any():
        raise DataError("PPG record has no finite sample")
    med = float(np.median(x[finite]))
    x = np.where(finite, x, med)
    sd = float(np.std(x)) or 1.0
    return dc - ac * (x - med) / sd


def light_from_codes(codes, adc_range_na: float, led_ma: float, bits: int = 18) -> np.ndarray:
    """Raw MAX30102 ADC codes (``bits`` wide) as the light (nA/mA) that the emulated chip, at
    ``adc_range_na`` and ``led_ma``, converts back into the same codes (so a no-finger log
    stays a no-finger level)."""
    if not (adc_range_na > 0 and led_ma > 0):
        raise DataError(f"ADC range and LED current must be positive, got {adc_range_na!r} nA, {led_ma!r} mA")
    return np.asarray(codes, dtype=np.float64) / float(1 << int(bits)) * adc_range_na / led_ma


def settings_from_board(board) -> Max30102Settings:
    """The driver settings of a board definition's ``[max30102]`` table."""
    s = board.max30102
    return Max30102Settings(sample_rate=s.sample_rate_hz, averaging=s.averaging,
                            pulse_width_us=s.pulse_width_us, adc_range_na=s.adc_range_na,
                            red_current_ma=s.led_red_ma, ir_current_ma=s.led_ir_ma,
                            almost_full=getattr(s, "fifo_almost_full", 17))


@dataclass
class Playback:
    """What :func:`play_record` delivered: the IR codes in order, the same as the blood-volume
    waveform the pipeline computes from them (``blood_volume``: reflected light negated), and the
    driver's events."""

    ir: np.ndarray
    blood_volume: np.ndarray
    fs: float
    full_scale: int
    lost: int
    events: list = field(default_factory=list)
    summary: dict | None = None


def play_record(ppg, fs: float, settings: Max30102Settings, pipeline=None, *, clock=None,
                duration_s: float | None = None) -> Playback:
    """Stream ``ppg`` (at ``fs`` Hz) through the emulated chip and the driver.

    With a :class:`~.pipeline.Pipeline` every block goes to it (and the driver's
    events as ``sensor`` events), then it is finished. Returns the delivered IR codes
    (sensor rate) so the same samples can be processed offline. ``clock``: default a
    :class:`~.sensors.VirtualClock` (as fast as possible, exact).
    """
    events: list[SensorEvent] = []
    sensor = open_sensor("emulated", source=light_from_ppg(ppg), source_fs=float(fs),
                         clock=clock if clock is not None else VirtualClock(), settings=settings,
                         on_event=events.append)
    parts, volume, lost, n = [], [], 0, 0
    seen = []
    try:
        for block in sensor.blocks(duration_s=duration_s):
            if block.first_index != n:
                lost += block.first_index - n
            n = block.first_index + len(block.ir)
            parts.append(np.asarray(block.ir))
            volume.append(block.blood_volume)
            if pipeline is not None:
                for ev in events:
                    pipeline.sensor_event(ev)
                seen.extend(events)
                events.clear()
                pipeline.process_block(block)
        summary = None
        if pipeline is not None:
            for ev in events:
                pipeline.sensor_event(ev)
            summary = pipeline.finish()
        seen.extend(events)
    finally:
        sensor.close()
    ir = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    bv = np.concatenate(volume) if volume else np.zeros(0)
    return Playback(ir=ir, blood_volume=bv, fs=settings.output_rate, full_scale=(1 << settings.resolution_bits) - 1,
                    lost=lost, events=seen, summary=summary)
