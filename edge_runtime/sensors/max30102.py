"""MAX30102 pulse-oximeter driver on the smbus2 API.

The driver talks to any object with the smbus2 ``SMBus`` methods it uses
(``read_byte_data``, ``write_byte_data``, ``i2c_rdwr``): the real bus on a Pi, or
:class:`~.emulated.EmulatedMax30102` in tests, where this same code runs unchanged.

What it does, following the MAX30102 datasheet (Maxim Integrated, rev. 1) and the
faults users commonly report (``docs/facts.md``):

- checks PART_ID (0x15) before anything else and raises :class:`HardwareError`
  naming the address and the id read; resets the chip, tolerating the
  ``OSError: [Errno 5]`` a chip often answers while it resets, and waits for the
  RESET bit to clear (bounded);
- writes FIFO, SpO2 (sample rate, pulse width, ADC range) and LED settings from a
  validated :class:`Max30102Settings`, reads them back, clears the FIFO pointers and
  starts SpO2 mode;
- each :meth:`Max30102.read` waits (on the interrupt line when a
  ``wait_for_interrupt(timeout)`` callable is given, else by sleeping until the FIFO
  should be almost full: timed polling, never a busy loop), then makes two bus
  transfers: one 7-byte read of status and FIFO pointers (INT_STATUS_1 ..
  FIFO_RD_PTR) and one burst of n*6 bytes from FIFO_DATA;
- samples available come from WR/RD pointers *and* OVF_COUNTER every time: when
  WR == RD the FIFO is empty unless OVF_COUNTER > 0 or A_FULL is set, in which case it
  holds 32 samples. OVF_COUNTER samples were lost; it saturates at 31, and then the
  driver's clock estimates the true count (event detail ``estimated=True``);
- samples are 18-bit (mask 0x3FFFF), red then IR, left-justified: the driver shifts
  them right to the ADC resolution of the pulse width (15..18 bits); full-scale codes
  (ADC saturation) are flagged in the block and reported as events;
- an I2C ``OSError`` is retried with exponential back-off and counted; after
  ``max_retries`` retries in a row it records an event and raises
  :class:`HardwareError`. A FIFO burst cut off part-way is not retried blindly: the
  pointers are read again and samples popped but not received are counted as lost.
"""
from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError, HardwareError
from . import registers as R
from ._i2c import i2c_msg_type
from .clock import Clock, MonotonicClock

log = logging.getLogger(__name__)

__all__ = ["Block", "Max30102", "Max30102Settings", "SensorEvent"]

_EPS = 1e-6


@dataclass(frozen=True)
class Max30102Settings:
    """Acquisition settings, validated against what the chip can do.

    sample_rate: conversions per second (50, 100, 200, 400, 800, 1000, 1600, 3200).
    averaging: conversions averaged per FIFO sample (1, 2, 4, 8, 16, 32); the output
        rate is ``sample_rate / averaging``.
    pulse_width_us: LED pulse width, 69/118/215/411 us = 15/16/17/18-bit ADC.
    adc_range_na: ADC full scale, 2048/4096/8192/16384 nA.
    red_current_ma, ir_current_ma: LED currents, 0..51 mA in 0.2 mA steps.
    almost_full: unread samples at which the FIFO raises A_FULL (17..32); the driver
        reads about this many samples per block.
    rollover: FIFO_ROLLOVER_EN; when the reader is late the newest samples are kept
        (True) or the oldest (False).
    """

    sample_rate: int = 100
    averaging: int = 1
    pulse_width_us: int = 411
    adc_range_na: int = 4096
    red_current_ma: float = 7.0
    ir_current_ma: float = 7.0
    almost_full: int = 17
    rollover: bool = True

    def __post_init__(self) -> None:
        def check(name: str, value: Any, allowed) -> None:
            if value not in allowed:
                raise ConfigError(
                    f"Max30102Settings.{name}={value!r} is not supported; "
                    f"choose one of {sorted(set(allowed))}"
                )

        check("sample_rate", self.sample_rate, R.SAMPLE_RATES.values())
        check("averaging", self.averaging, R.AVERAGING.values())
        check("pulse_width_us", self.pulse_width_us, [pw for pw, _ in R.PULSE_WIDTHS.values()])
        check("adc_range_na", self.adc_range_na, R.ADC_RANGES.values())
        for name in ("red_current_ma", "ir_current_ma"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"Max30102Settings.{name}={value!r} must be a number of mA")
            steps = value / R.LED_STEP_MA
            if not 0 <= value <= R.LED_MAX_CODE * R.LED_STEP_MA + 1e-9 or abs(steps - round(steps)) > 1e-6:
                raise ConfigError(
                    f"Max30102Settings.{name}={value!r} mA is not a LED current the chip can "
                    f"set: 0 to 51 mA in 0.2 mA steps"
                )
        if not isinstance(self.almost_full, int) or not 17 <= self.almost_full <= 32:
            raise ConfigError(
                f"Max30102Settings.almost_full={self.almost_full!r}: the FIFO can signal "
                f"almost-full at 17..32 unread samples"
            )

    @property
    def resolution_bits(self) -> int:
        return dict(R.PULSE_WIDTHS.values())[self.pulse_width_us]

    @property
    def output_rate(self) -> float:
        """FIFO samples per second (after on-chip averaging)."""
        return self.sample_rate / self.averaging

    def register_values(self) -> dict[int, int]:
        """Register address -> value for FIFO_CONFIG, SPO2_CONFIG and the LED amplitudes."""
        fifo = (R.code_for(R.AVERAGING, self.averaging) << R.FIFO_SMP_AVE_SHIFT) | (
            R.FIFO_DEPTH - self.almost_full
        )
        if self.rollover:
            fifo |= R.FIFO_ROLLOVER_EN
        spo2 = (
            (R.code_for(R.ADC_RANGES, self.adc_range_na) << 5)
            | (R.code_for(R.SAMPLE_RATES, self.sample_rate) << 2)
            | R.code_for(R.PULSE_WIDTHS, self.pulse_width_us)
        )
        return {
            R.FIFO_CONFIG: fifo,
            R.SPO2_CONFIG: spo2,
            R.LED1_PA: int(round(self.red_current_ma / R.LED_STEP_MA)),
            R.LED2_PA: int(round(self.ir_current_ma / R.LED_STEP_MA)),
        }


@dataclass(frozen=True)
class SensorEvent:
    """Something the acquisition noticed: ``kind`` is one of ``overflow``,
    ``i2c_error``, ``saturation``, ``part_id``, ``stall``, ``interrupt_missing``."""

    kind: str
    t: float
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """Samples from one FIFO read.

    ``red`` and ``ir`` are int32 ADC counts at ``resolution_bits``. ``first_index``
    numbers the first sample on the sensor's own sample clock, counting lost samples,
    so gaps are explicit: with rollover (the default) the ``lost`` samples come just
    before this block (``first_index`` jumps by ``lost``); without rollover they come
    right after it (the next block's ``first_index`` jumps). ``saturated`` marks samples
    where either channel is at full scale. ``t`` is the clock time of the read.
    ``reflected``: the counts are reflected light, which falls as the blood volume
    rises: always so for the MAX30102 under a finger (the pipeline negates them into
    the blood-volume waveform); a replayed array of blood-volume PPG says false.
    """

    red: np.ndarray
    ir: np.ndarray
    first_index: int
    lost: int
    t: float
    fs: float
    resolution_bits: int
    saturated: np.ndarray
    reflected: bool = True

    @property
    def blood_volume(self) -> np.ndarray:
        """The IR counts as the blood-volume waveform (float): negated when they are reflected light."""
        ir = np.asarray(self.ir, dtype=np.float64)
        return -ir if self.reflected else ir

    def __len__(self) -> int:
        return int(self.red.shape[0])

    @property
    def index(self) -> np.ndarray:
        """Sample index of every sample in the block."""
        return self.first_index + np.arange(len(self), dtype=np.int64)

    @property
    def full_scale(self) -> int:
        return (1 << self.resolution_bits) - 1


class Max30102:
    """MAX30102 on an smbus2-like ``bus`` (see the module docstring).

    ``wait_for_interrupt(timeout) -> bool`` waits on the INT line (e.g. gpiozero's
    ``DigitalInputDevice(pin, pull_up=True).wait_for_active``); without it the driver
    paces itself by the clock. ``on_event`` is called with each :class:`SensorEvent`.
    Counters: ``samples_read``, ``samples_lost``, ``samples_saturated``,
    ``i2c_errors``, ``i2c_retries``, ``reset_nacks``.
    """

    def __init__(
        self,
        bus,
        *,
        address: int = R.ADDRESS,
        settings: Max30102Settings | None = None,
        clock: Clock | None = None,
        wait_for_interrupt: Callable[[float], bool] | None = None,
        on_event: Callable[[SensorEvent], None] | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.001,
        max_backoff_s: float = 0.05,
        read_timeout_s: float | None = None,
        max_stalls: int = 3,
        reset_timeout_s: float = 0.1,
        max_events: int = 1000,
        owns_bus: bool = False,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        self.bus = bus
        self.address = int(address)
        self.settings = settings or Max30102Settings()
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._wait_irq = wait_for_interrupt
        self.on_event = on_event
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        period = self.settings.almost_full / self.settings.output_rate
        self.read_timeout_s = float(read_timeout_s) if read_timeout_s else max(1.0, 4 * period)
        self.max_stalls = int(max_stalls)
        self.reset_timeout_s = float(reset_timeout_s)
        self.owns_bus = owns_bus
        self.events: collections.deque[SensorEvent] = collections.deque(maxlen=max_events)
        self.event_counts: collections.Counter[str] = collections.Counter()
        self.samples_read = 0
        self.samples_lost = 0
        self.samples_saturated = 0
        self.i2c_errors = 0
        self.i2c_retries = 0
        self.reset_nacks = 0
        self.transfers = 0
        self._msg = i2c_msg_type()
        self._msgs: dict[tuple[int, int], tuple] = {}
        # what every read cycle needs from the settings (a frozen dataclass)
        self._bits = self.settings.resolution_bits
        self._fs = self.settings.output_rate
        self._full_scale = (1 << self._bits) - 1
        self._weights = np.array([1 << 16, 1 << 8, 1], dtype=np.int32)  # 3 big-endian bytes
        self._started = False
        self._closed = False
        self._t0: float | None = None
        self._next_index = 0  # samples accounted for (read + lost)
        self._stalls = 0
        self._last_empty = False
        self._irq_ok = wait_for_interrupt is not None
        self._consecutive_failures = 0

    # ------------------------------------------------------------ events
    def _event(self, kind: str, **detail) -> SensorEvent:
        ev = SensorEvent(kind, self.clock.now(), detail)
        self.events.append(ev)
        self.event_counts[kind] += 1
        level = logging.INFO if kind == "saturation" else logging.WARNING
        log.log(level, "MAX30102 0x%02X %s: %s", self.address, kind, detail)
        if self.on_event is not None:
            self.on_event(ev)
        return ev

    # ------------------------------------------------------- bus access
    def _where(self, register: int) -> str:
        return f"register 0x{register:02X} of the MAX30102 at I2C address 0x{self.address:02X}"

    def _failed(self, exc: OSError, what: str, register: int) -> None:
        """Count an I2C failure; back off, or give up after ``max_retries`` retries in a row."""
        self.i2c_errors += 1
        self._consecutive_failures += 1
        attempts = self._consecutive_failures
        if attempts > self.max_retries:
            self._event("i2c_error", register=register, op=what, attempts=attempts,
                        recovered=False, error=str(exc))
            raise HardwareError(
                f"I2C {what} of {self._where(register)} failed {attempts} times in a "
                f"row ({exc}); check wiring, power and pull-ups"
            ) from exc
        self.i2c_retries += 1
        self.clock.sleep(min(self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s))

    def _succeeded(self, what: str, register: int, first_error: OSError | None) -> None:
        if first_error is not None:
            self._event("i2c_error", register=register, op=what,
                        attempts=self._consecutive_failures + 1, recovered=True,
                        error=str(first_error))
        self._consecutive_failures = 0

    def _with_retry(self, what: str, register: int, fn: Callable, *args):
        first_error: OSError | None = None
        while True:
            self.transfers += 1
            try:
                result = fn(*args)
            except OSError as exc:
                first_error = first_error or exc
                self._failed(exc, what, register)
                continue
            self._succeeded(what, register, first_error)
            return result

    def _read(self, register: int) -> int:
        return self._with_retry("read", register, self.bus.read_byte_data, self.address, register)

    def _write(self, register: int, value: int) -> None:
        self._with_retry("write", register, self.bus.write_byte_data, self.address, register, value)

    def _read_block_once(self, register: int, length: int) -> bytes:
        """One combined transfer: write the register address, read ``length`` bytes.

        The two messages are made once per (register, length) and reused: the read buffer is
        copied out after every transfer, and a FIFO burst has one of 33 lengths."""
        key = (register, length)
        msgs = self._msgs.get(key)
        if msgs is None:
            msgs = self._msgs[key] = (self._msg.write(self.address, [register]), self._msg.read(self.address, length))
        self.bus.i2c_rdwr(*msgs)
        return bytes(msgs[1])

    # ---------------------------------------------------------- set-up
    def check_part_id(self) -> int:
        part = self._read(R.PART_ID)
        if part != R.PART_ID_VALUE:
            self._event("part_id", part_id=part, expected=R.PART_ID_VALUE)
            raise HardwareError(
                f"the device at I2C address 0x{self.address:02X} is not a MAX30102: PART_ID "
                f"(register 0xFF) reads 0x{part:02X}, expected 0x{R.PART_ID_VALUE:02X}"
            )
        return part

    def reset(self) -> None:
        """Soft reset; an ``OSError`` while the chip resets is expected and tolerated."""
        try:
            self.transfers += 1
            self.bus.write_byte_data(self.address, R.MODE_CONFIG, R.MODE_RESET)
        except OSError as exc:
            self.reset_nacks += 1
            log.debug("MAX30102 0x%02X NACKed the reset write (%s); tolerated", self.address, exc)
        deadline = self.clock.now() + self.reset_timeout_s
        step = max(self.backoff_s, 0.001)
        last_error: OSError | None = None
        while True:
            try:
                self.transfers += 1
                mode = self.bus.read_byte_data(self.address, R.MODE_CONFIG)
                if not mode & R.MODE_RESET:
                    return
            except OSError as exc:
                self.reset_nacks += 1
                last_error = exc
            if self.clock.now() >= deadline:
                raise HardwareError(
                    f"the MAX30102 at I2C address 0x{self.address:02X} did not come out of reset "
                    f"within {self.reset_timeout_s:g} s"
                    + (f" (last error: {last_error})" if last_error else " (RESET bit stays set)")
                )
            self.clock.sleep(step)

    def start(self) -> None:
        """Check the part, reset, configure and start sampling in SpO2 mode."""
        if self._closed:
            raise HardwareError(f"the MAX30102 at I2C address 0x{self.address:02X} was closed")
        self.check_part_id()
        self.reset()
        # A_FULL is always enabled: its status bit tells a full FIFO from an empty one.
        self._write(R.INT_ENABLE_1, R.INT_A_FULL)
        self._write(R.INT_ENABLE_2, 0)
        values = self.settings.register_values()
        for register, value in values.items():
            self._write(register, value)
        for register, value in values.items():
            got = self._read(register)
            if got != value:
                raise HardwareError(
                    f"{self._where(register)} reads back 0x{got:02X} after writing 0x{value:02X}"
                )
        for register in (R.FIFO_WR_PTR, R.OVF_COUNTER, R.FIFO_RD_PTR):
            self._write(register, 0)
        self._read(R.INT_STATUS_1)  # clears the power-ready flag
        self._write(R.MODE_CONFIG, R.MODE_SPO2)
        self._t0 = self.clock.now()
        self._t0_bounds = None
        self._first_obs = self._last_obs = None
        self._next_index = 0
        self._stalls = 0
        self._started = True
        log.info("MAX30102 0x%02X started: %s", self.address, self.settings)

    def close(self) -> None:
        """Shut the chip down (best effort) and close the bus if this driver opened it."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            try:
                self.bus.write_byte_data(self.address, R.MODE_CONFIG, R.MODE_SHDN | R.MODE_SPO2)
            except OSError as exc:
                log.warning("MAX30102 0x%02X: shutdown write failed: %s", self.address, exc)
        if self.owns_bus:
            self.bus.close()

    def __enter__(self) -> Max30102:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ reading
    def _expected_total(self, now: float) -> int | None:
        """Samples the chip should have produced by ``now`` according to the clock.

        Exact for a chip on its nominal rate (phase anchored by :meth:`_observe`); when
        exact observations over 10 s or more show the chip's crystal off its nominal
        rate by more than 0.2 %, the measured rate is used instead (within a sample).
        """
        if self._t0 is None:
            return None
        rate = self.settings.output_rate
        first, last = self._first_obs, self._last_obs
        if first is not None and last is not None and last[0] - first[0] >= 10.0:
            measured = (last[1] - first[1]) / (last[0] - first[0])
            if abs(measured / rate - 1) > 0.002:
                return last[1] + int(round((now - last[0]) * measured))
        return int(math.floor((now - self._t0) * rate + _EPS))

    _first_obs: tuple[float, int] | None = None
    _last_obs: tuple[float, int] | None = None

    def _observe(self, now: float, count: int) -> None:
        """Re-anchor the sample clock: the chip had made exactly ``count`` samples at ``now``.

        Every exact observation bounds the chip's start time; the bounds are intersected
        so the estimate converges, and restarted when the chip's crystal has drifted
        away from them. The estimate paces timed polling and counts losses once
        OVF_COUNTER has saturated.
        """
        rate = self.settings.output_rate
        lo, hi = now - (count + 1) / rate, now - count / rate
        if self._t0_bounds is not None:
            lo2, hi2 = max(lo, self._t0_bounds[0]), min(hi, self._t0_bounds[1])
            if lo2 <= hi2 + _EPS / rate:
                lo, hi = lo2, hi2
        self._t0_bounds = (lo, hi)
        self._t0 = hi
        if self._first_obs is None:
            self._first_obs = (now, count)
        self._last_obs = (now, count)

    _t0_bounds: tuple[float, float] | None = None

    def _read_pointers(self) -> tuple[int, int, int, int]:
        """(INT_STATUS_1, WR_PTR, OVF_COUNTER, RD_PTR) in one 7-byte transfer."""
        raw = self._with_retry("status/pointer read", R.INT_STATUS_1, self._read_block_once,
                               R.INT_STATUS_1, R.FIFO_RD_PTR - R.INT_STATUS_1 + 1)
        return raw[0], raw[4] & R.POINTER_MASK, raw[5] & R.OVF_MAX, raw[6] & R.POINTER_MASK

    def _pace(self, deadline: float) -> None:
        now = self.clock.now()
        period = self.settings.almost_full / self.settings.output_rate
        if self._irq_ok:
            wait = max(0.0, min(deadline - now, 1.5 * period))
            if self._wait_irq(wait):
                return
            # No edge: read anyway; if the FIFO has data the line is probably not wired.
            self._irq_missed = True
            return
        target = self._next_index + self.settings.almost_full
        wake = self._t0 + target / self.settings.output_rate
        sleep = wake - now
        if sleep <= 0 and self._last_empty:
            sleep = period  # late and still nothing: wait one FIFO period, never spin
        sleep = min(sleep, deadline - now)
        if sleep > 0:
            self.clock.sleep(sleep)

    _irq_missed = False
    _peak = 0  # highest code of the last decoded burst

    def _decode(self, raw: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(red, IR) counts of ``n`` FIFO samples: 3 big-endian bytes per channel, 18 bits
        left-justified, shifted down to the resolution."""
        b = np.frombuffer(raw, dtype=np.uint8).reshape(n, 2, 3)
        v = ((b @ self._weights) & R.SAMPLE_MASK) >> (R.SAMPLE_BITS - self._bits)
        self._peak = int(v.max())  # both channels' highest code: the saturation check reads it
        return v[:, 0], v[:, 1]

    def _read_cycle(self) -> Block:
        now = self.clock.now()
        status, wr, ovf, rd = self._read_pointers()
        diff = (wr - rd) & R.POINTER_MASK
        full = diff == 0 and (ovf > 0 or bool(status & R.INT_A_FULL))
        n = R.FIFO_DEPTH if full else diff
        lost = ovf
        estimated = False
        if ovf == R.OVF_MAX:
            expected = self._expected_total(now)
            if expected is not None:
                lost = max(ovf, expected - self._next_index - R.FIFO_DEPTH)
                estimated = True
        if self._irq_missed:
            self._irq_missed = False
            if n >= self.settings.almost_full and self._irq_ok:
                self._irq_ok = False
                self._event("interrupt_missing", available=n,
                            detail="no INT edge although the FIFO is almost full; "
                                   "falling back to timed polling")
        # one burst of n*6 bytes; a burst cut off part-way is accounted for, not re-sent blindly
        raw = b""
        popped_lost = 0  # taken from the FIFO by a failed burst: before this block's samples
        first_error: OSError | None = None
        while n:
            self.transfers += 1
            try:
                raw = self._read_block_once(R.FIFO_DATA, 6 * n)
            except OSError as exc:
                first_error = first_error or exc
                self._failed(exc, "FIFO burst read", R.FIFO_DATA)
                failures = self._consecutive_failures
                _, _, _, rd2 = self._read_pointers()
                # a good pointer read does not end a run of failed bursts
                self._consecutive_failures = max(self._consecutive_failures, failures)
                popped = (rd2 - rd) & R.POINTER_MASK
                if popped:
                    popped_lost += popped
                    n -= popped
                    rd = rd2
                    self._event("i2c_error", register=R.FIFO_DATA, op="FIFO burst read",
                                recovered=None, popped_and_lost=popped, error=str(exc))
                continue
            self._succeeded("FIFO burst read", R.FIFO_DATA, first_error)
            break
        if n:
            red, ir = self._decode(raw, n)
        else:
            red = ir = np.zeros(0, dtype=np.int32)
        if lost:
            self.samples_lost += lost
            self._event("overflow", lost=lost, estimated=estimated, index=self._next_index)
        self.samples_lost += popped_lost
        # with rollover the overflowed samples are older than those kept; without it, newer
        first = self._next_index + popped_lost + (lost if self.settings.rollover else 0)
        lost += popped_lost
        self._next_index += n + lost
        self.samples_read += n
        if not estimated:
            self._observe(now, self._next_index)
        full_scale = self._full_scale
        if n and self._peak >= full_scale:
            saturated = (red >= full_scale) | (ir >= full_scale)
            n_sat = int(saturated.sum())
            self.samples_saturated += n_sat
            self._event("saturation", samples=n_sat, red=int((red >= full_scale).sum()),
                        ir=int((ir >= full_scale).sum()), first_index=first)
        else:
            saturated = np.zeros(n, dtype=bool)
        return Block(red=red, ir=ir, first_index=first, lost=lost, t=now, fs=self._fs,
                     resolution_bits=self._bits, saturated=saturated)

    def read(self, timeout: float | None = None) -> Block:
        """Wait for the FIFO to fill (interrupt or timed sleep) and read it in one burst.

        Returns an empty block, with a ``stall`` event, when nothing arrives within
        ``timeout`` (default ``read_timeout_s``); after ``max_stalls`` such reads in a
        row raises :class:`HardwareError`. Never blocks longer than ``timeout`` plus the
        bounded I2C retry back-off.
        """
        if self._closed:
            raise HardwareError(f"the MAX30102 at I2C address 0x{self.address:02X} was closed")
        if not self._started:
            self.start()
        timeout = self.read_timeout_s if timeout is None else float(timeout)
        deadline = self.clock.now() + timeout
        while True:
            self._pace(deadline)
            block = self._read_cycle()
            self._last_empty = len(block) == 0 and block.lost == 0
            if not self._last_empty:
                self._stalls = 0
                return block
            if self.clock.now() >= deadline:
                self._stalls += 1
                self._event("stall", waited_s=timeout, consecutive=self._stalls)
                if self._stalls >= self.max_stalls:
                    raise HardwareError(
                        f"the MAX30102 at I2C address 0x{self.address:02X} produced no samples in "
                        f"{self._stalls} reads of {timeout:g} s (FIFO not advancing)"
                    )
                return block

    def blocks(self, *, n_samples: int | None = None, duration_s: float | None = None,
               ) -> Iterator[Block]:
        """Yield blocks until ``n_samples`` sample indices are covered, ``duration_s``
        has passed, or the bus reports its source ``exhausted`` (emulated chips)."""
        start = self.clock.now()
        while True:
            if n_samples is not None and self._next_index >= n_samples:
                return
            if duration_s is not None and self.clock.now() - start >= duration_s:
                return
            if getattr(self.bus, "exhausted", False) and self._started:
                block = self._read_cycle()
                if len(block) or block.lost:
                    yield block
                    continue
                return
            yield self.read()

    @property
    def counters(self) -> dict[str, int]:
        return {
            "samples_read": self.samples_read,
            "samples_lost": self.samples_lost,
            "samples_saturated": self.samples_saturated,
            "i2c_errors": self.i2c_errors,
            "i2c_retries": self.i2c_retries,
            "reset_nacks": self.reset_nacks,
        }
