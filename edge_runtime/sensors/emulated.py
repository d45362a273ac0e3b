"""A MAX30102 emulated at register level, behind the smbus2 API.

:class:`EmulatedMax30102` answers the same calls the real bus does
(``read_byte_data``, ``write_byte_data``, ``read_i2c_block_data``,
``write_i2c_block_data``, ``i2c_rdwr`` with ``smbus2.i2c_msg`` messages), so the real
driver in :mod:`.max30102` runs unchanged against it. The chip is modelled from the
MAX30102 datasheet (register map in :mod:`.registers`):

- a 256-byte register file, PART_ID 0x15 (configurable, to test a wrong part), REV_ID;
- reset: writing MODE_CONFIG bit 6 restores power-on values and the bit self-clears;
- a 32-sample FIFO with 5-bit write/read pointers that wrap; OVF_COUNTER counts lost
  samples and saturates at 0x1F; with ROLLOVER_EN the newest samples overwrite the
  oldest, without it new samples are dropped while the FIFO is full; reading a whole
  sample from FIFO_DATA advances RD_PTR and clears OVF_COUNTER; the register pointer
  auto-increments on multi-byte reads except at FIFO_DATA;
- 18-bit left-justified samples at the resolution set by the pulse width; the input
  light is scaled by the LED current and the ADC full-scale range; SMP_AVE averages
  consecutive conversions, dividing the output rate;
- INT_STATUS_1 A_FULL / PPG_RDY (cleared on read; A_FULL also by a FIFO_DATA read) and
  an active interrupt line that :meth:`EmulatedMax30102.wait_for_interrupt` waits on;
- a :class:`FaultPlan`: I/O errors on chosen transfers or from one on, a FIFO_DATA burst
  that pops its samples and then fails, a reset NACKed with ``OSError(EIO)``, a busy
  window after reset, a FIFO that stops advancing, forced ADC saturation, an
  interrupt line that is not wired.

The light comes from a source array (a recording or a synthetic signal) in
photodiode current per LED current (nA/mA) at its own rate ``source_fs``; it starts
playing when the chip first enters a measuring mode. Samples appear as the shared
:class:`~.clock.Clock` moves: with a :class:`~.clock.VirtualClock` the driver's own
sleeps make time pass, so tests are instant and exact.
"""
from __future__ import annotations

import errno
import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from ...dsp.rates import check_rate
from ...errors import ConfigError, DataError
from . import registers as R
from ._i2c import I2C_M_RD, fill_read_msg
from .clock import AcceleratedClock, Clock, MonotonicClock, VirtualClock

__all__ = [
    "AcceleratedClock",
    "Clock",
    "EmulatedMax30102",
    "FaultPlan",
    "MonotonicClock",
    "VirtualClock",
]

log = logging.getLogger(__name__)

# The conversion noise of one ADC conversion, a fraction of full scale (modelled): 16 codes of 18 bits.
# Measured on the real chip's logs (max30102-raw): the IR codes of aromring (finger on, 100 sps averaged
# 4 to 25 Hz) scatter by 8.0 codes about their local trend (MAD of the third difference / sqrt(20)),
# i.e. 16 per conversion before the 4-sample average; with it a flat input repeats a code in about
# 3% of steps, as live logs do (vrano714_rpi: 2%), where a noiseless fake repeated medical records'
# quantised plateaus for most of a window. ``adc_noise=0``: the ideal converter (a real log's codes,
# which carry the chip's own noise, replayed through :func:`~..playback.light_from_codes`).
ADC_NOISE_FS = 16.0 / (1 << 18)
_IRWIN_HALL_SD = math.sqrt(4 * (65536.0 ** 2 - 1) / 12)  # of the sum of four uniform 16-bit integers


def conversion_noise(k: np.ndarray) -> np.ndarray:
    """Unit-variance noise ``(len(k), 2)`` (red, IR) of conversions number ``k``: a function of ``k``
    alone, so the chip's codes do not depend on how its FIFO is read and the same stimulus gives the
    same codes on every run, and integer arithmetic to the last step, so an aarch64 host (the
    virtual Pi, ``ppg-edge bench arm``) gives the same codes as x86 (``log`` and ``cos`` may not).
    The sum of the four 16-bit parts of a splitmix64 hash of the conversion and channel (nearly
    Gaussian, an Irwin-Hall sum of four), centred and scaled to unit variance."""
    with np.errstate(over="ignore"):
        z = (np.asarray(k, dtype=np.uint64)[:, None] * np.uint64(2)
             + np.arange(2, dtype=np.uint64)[None, :] + np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    m = np.uint64(0xFFFF)
    total = (z & m) + ((z >> np.uint64(16)) & m) + ((z >> np.uint64(32)) & m) + (z >> np.uint64(48))
    return (total.astype(np.float64) - 4 * 65535 / 2) / _IRWIN_HALL_SD

# Conversions counted from clock times: a time t after the segment start makes floor(t * sr + _EPS)
# conversions. The tolerance must exceed the clock's rounding in conversions: a float clock near
# 65,000 s (18 h of a soak) carries ~1e-11 s of rounding, 6e-9 conversions at 400 sps, so 1e-9
# left a conversion due at t for the next read (the 24 h soak: one sample the driver counted lost
# that the chip never lost, and a false missing-interrupt event). 1e-6 conversions is 2.5 ns at
# 400 sps, far below any real read's timing.
_EPS = 1e-6


def _eio() -> OSError:
    return OSError(errno.EIO, os.strerror(errno.EIO))


@dataclass(frozen=True)
class FaultPlan:
    """Faults the emulated chip injects. Transfer numbers count every bus call from 1.

    fail_transfers: transfers that raise ``OSError(EIO)`` before doing anything.
    fail_from: every transfer from this number on fails (a dead bus or chip).
    partial_bursts: FIFO_DATA reads (by transfer number) that pop their samples and
        then raise ``OSError(EIO)``, as when a long read is cut off part-way.
    reset_errno5: the reset write takes effect but is answered with ``EIO``.
    reset_busy_s: after a reset the chip NACKs (``EIO``) for this many seconds.
    stuck_fifo_after_s: seconds after the source started, the FIFO stops being written.
    saturate_between_s: (start, end) seconds after the source started during which
        the ADC reads full scale (e.g. ambient light flooding the photodiode).
    int_not_wired: the interrupt line never asserts (INT pin not connected).
    fifo_reads_fail: every FIFO_DATA read fails with ``EIO`` before popping anything
        (a bus that breaks on long transfers) while short transfers still work.
    rate_error: the chip's oscillator runs this fraction fast (+) or slow (-), so it
        converts at ``sample_rate * (1 + rate_error)`` per second of the host clock.
    """

    fail_transfers: frozenset[int] = frozenset()
    fail_from: int | None = None
    partial_bursts: frozenset[int] = frozenset()
    reset_errno5: bool = False
    reset_busy_s: float = 0.0
    stuck_fifo_after_s: float | None = None
    saturate_between_s: tuple[float, float] | None = None
    int_not_wired: bool = False
    fifo_reads_fail: bool = False
    rate_error: float = 0.0

    @staticmethod
    def burst(start: int, count: int) -> frozenset[int]:
        """Transfer numbers ``start .. start+count-1``: a burst of consecutive errors."""
        return frozenset(range(int(start), int(start) + int(count)))


class EmulatedMax30102:
    """A register-level MAX30102 on an emulated I2C bus (see the module docstring).

    ``source`` is an array of shape (n,) (the same light for red and IR) or (n, 2)
    (red, IR columns) in nA of photodiode current per mA of LED current, sampled at
    ``source_fs`` Hz. Without ``loop`` the chip stops producing samples when the source
    ends and :attr:`exhausted` becomes true.

    Polarity: the chip is monotone (more light, more counts), like the real one, and its
    source is the light reflected by a finger, which falls as the blood volume rises:
    ``playback.light_from_ppg`` turns a blood-volume PPG into such light and
    ``playback.light_from_codes`` a real log's codes. The driver cannot tell a fake from
    the chip, and needs not: its counts are reflected light either way.
    """

    def __init__(
        self,
        source,
        source_fs: float,
        *,
        clock: Clock | None = None,
        address: int = R.ADDRESS,
        part_id: int = R.PART_ID_VALUE,
        rev_id: int = 0x03,
        faults: FaultPlan | None = None,
        loop: bool = False,
        adc_noise: float | None = None,
    ) -> None:
        arr = np.asarray(source, dtype=float)
        if arr.ndim == 1:
            arr = np.stack([arr, arr], axis=1)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DataError(
                f"emulated MAX30102 source must have shape (n,) or (n, 2) (red, IR), got {arr.shape}"
            )
        if arr.shape[0] < 2:
            raise DataError(f"emulated MAX30102 source needs at least 2 samples, got {arr.shape[0]}")
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            raise DataError(f"emulated MAX30102 source has a non-finite value at sample {first}")
        source_fs = check_rate(source_fs, "emulated MAX30102 source_fs", number=True)
        self._src = arr
        self.source_fs = float(source_fs)
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.address = int(address)
        self.part_id = int(part_id) & 0xFF
        self.rev_id = int(rev_id) & 0xFF
        self.faults = faults or FaultPlan()
        self.loop = bool(loop)
        self.adc_noise = ADC_NOISE_FS if adc_noise is None else float(adc_noise)
        if not (math.isfinite(self.adc_noise) and 0.0 <= self.adc_noise < 0.01):
            raise ConfigError(f"adc_noise is a fraction of full scale in [0, 0.01), got {adc_noise!r}")
        # Statistics a test can check the driver against.
        self.transfers = 0
        self.failed_transfers = 0
        self.underflow_reads = 0
        self.produced = 0  # output samples the chip produced (kept or lost)
        self.lost = 0  # true number of samples lost to overflow (not saturated at 31)
        self.resets = 0
        self.register_writes: list[tuple[int, int]] = []
        self._source_origin: float | None = None
        self._busy_until = -math.inf
        self._power_on_reset()

    # ------------------------------------------------------------------ state
    def _power_on_reset(self) -> None:
        self.regs = bytearray(256)
        self.regs[R.PART_ID] = self.part_id
        self.regs[R.REV_ID] = self.rev_id
        self._fifo = np.zeros((R.FIFO_DEPTH, 2), dtype=np.int64)
        self._wr = 0
        self._rd = 0
        self._full = False
        self._ovf = 0
        self._status1 = R.INT_PWR_RDY
        self._byte_in_sample = 0
        self._seg_start: float | None = None
        self._seg_done = 0
        self._acc = np.zeros(2, dtype=np.int64)
        self._acc_n = 0
        self._exhausted = False

    @property
    def unread(self) -> int:
        """Samples in the FIFO not yet read (0..32)."""
        diff = (self._wr - self._rd) & R.POINTER_MASK
        if diff == 0 and self._full:
            return R.FIFO_DEPTH
        return diff

    @property
    def measuring(self) -> bool:
        mode = self.regs[R.MODE_CONFIG]
        return not (mode & R.MODE_SHDN) and (mode & R.MODE_MASK) in (R.MODE_HR, R.MODE_SPO2)

    @property
    def exhausted(self) -> bool:
        """True once the (non-looping) source has been played to its end."""
        self._update()
        return self._exhausted

    @property
    def int_asserted(self) -> bool:
        """The active-low INT line is asserted (an enabled status bit is set)."""
        self._update()
        enabled = self.regs[R.INT_ENABLE_1] | R.INT_PWR_RDY
        return bool(self._status1 & enabled) and not self.faults.int_not_wired

    # config decoded from the registers
    def _sr(self) -> float:
        nominal = R.SAMPLE_RATES[(self.regs[R.SPO2_CONFIG] >> 2) & 0x7]
        return nominal * (1.0 + self.faults.rate_error) if self.faults.rate_error else nominal

    def _bits(self) -> int:
        return R.PULSE_WIDTHS[self.regs[R.SPO2_CONFIG] & 0x3][1]

    def _range_na(self) -> int:
        return R.ADC_RANGES[(self.regs[R.SPO2_CONFIG] >> 5) & 0x3]

    def _avg(self) -> int:
        return R.AVERAGING[self.regs[R.FIFO_CONFIG] >> R.FIFO_SMP_AVE_SHIFT]

    def _channels(self) -> int:
        return 2 if (self.regs[R.MODE_CONFIG] & R.MODE_MASK) == R.MODE_SPO2 else 1

    def _threshold(self) -> int:
        return R.FIFO_DEPTH - (self.regs[R.FIFO_CONFIG] & R.FIFO_A_FULL_MASK)

    # ------------------------------------------------------------ production
    def _restart_segment(self) -> None:
        """Start counting conversions afresh (after a mode or configuration change)."""
        self._seg_done = 0
        self._acc[:] = 0
        self._acc_n = 0
        if self.measuring:
            now = self.clock.now()
            if self._source_origin is None:
                self._source_origin = now
            self._seg_start = now
        else:
            self._seg_start = None

    def _limits(self) -> tuple[float, float]:
        """(source end, stuck FIFO) limits on this segment's conversion count."""
        assert self._seg_start is not None and self._source_origin is not None
        sr = self._sr()
        seg_src_t0 = self._seg_start - self._source_origin
        source_limit = math.inf
        if not self.loop:
            last_t = (self._src.shape[0] - 1) / self.source_fs
            source_limit = max(0, math.floor((last_t - seg_src_t0) * sr + _EPS) + 1)
        stuck_limit = math.inf
        if self.faults.stuck_fifo_after_s is not None:
            stuck_limit = max(0, math.floor((self.faults.stuck_fifo_after_s - seg_src_t0) * sr + _EPS))
        return source_limit, stuck_limit

    def _internal_limit(self) -> float:
        return min(self._limits())

    def _internal_codes(self, k: np.ndarray) -> np.ndarray:
        """Native ADC codes (n, 2) of this segment's conversions number ``k``."""
        sr = self._sr()
        bits = self._bits()
        seg_src_t0 = self._seg_start - self._source_origin
        pos = seg_src_t0 * self.source_fs + k.astype(float) * self.source_fs / sr
        n = self._src.shape[0]
        at = pos % n if self.loop else pos  # interp(period=n) takes the position modulo n too
        if at.size == 0:
            light = np.zeros((0, 2))
        elif self.loop and not (at[-1] >= at[0] and at[-1] < n - 1):  # wraps round the source
            idx = np.arange(n)
            light = np.stack([np.interp(at, idx, self._src[:, c], period=n) for c in (0, 1)], axis=1)
        else:
            # only the source samples around these conversions (the same interpolation and edge
            # clamping as over the whole source, without a pass over it per call)
            lo = min(max(0, int(math.floor(at.min()))), n - 2)
            hi = max(min(n, int(math.ceil(at.max())) + 2), lo + 2)
            idx = np.arange(lo, hi)
            light = np.stack([np.interp(at, idx, self._src[lo:hi, c]) for c in (0, 1)], axis=1)
        current_ma = np.array(
            [self.regs[R.LED1_PA] * R.LED_STEP_MA, self.regs[R.LED2_PA] * R.LED_STEP_MA]
        )
        photo_na = light * current_ma
        full = (1 << bits) - 1
        ideal = photo_na / self._range_na() * (1 << bits)
        if self.adc_noise > 0:
            ideal = ideal + self.adc_noise * (1 << bits) * conversion_noise(k)
        codes = np.clip(np.rint(ideal), 0, full).astype(np.int64)
        sat = self.faults.saturate_between_s
        if sat is not None:
            t_src = pos / self.source_fs
            codes[(t_src >= sat[0]) & (t_src < sat[1])] = full
        return codes

    def _update(self) -> None:
        """Make every conversion that the clock says has happened since the last call."""
        if self._seg_start is None or not self.measuring:
            return
        sr = self._sr()
        total = math.floor((self.clock.now() - self._seg_start) * sr + _EPS)
        source_limit, stuck_limit = self._limits()
        if total >= source_limit:
            self._exhausted = True
        total = int(min(total, source_limit, stuck_limit))
        new = total - self._seg_done
        if new <= 0:
            return
        avg = self._avg()
        n_out = (self._acc_n + new) // avg
        k0 = self._seg_done  # first new conversion
        if n_out:
            before = self.unread
            free = R.FIFO_DEPTH - before
            if self.regs[R.FIFO_CONFIG] & R.FIFO_ROLLOVER_EN:
                keep = range(max(0, n_out - R.FIFO_DEPTH), n_out)
                advance = n_out
                lost = max(0, before + n_out - R.FIFO_DEPTH)
            else:
                keep = range(min(n_out, free))
                advance = len(keep)
                lost = n_out - len(keep)
            if len(keep):
                slots = (self._wr + np.arange(keep.start, keep.stop)) & R.POINTER_MASK
                self._fifo[slots] = self._outputs(keep, k0, avg)
            self._wr = (self._wr + advance) & R.POINTER_MASK
            if before + n_out >= R.FIFO_DEPTH:
                self._full = True
                self._rd = self._wr
            self.produced += n_out
            self.lost += lost
            self._ovf = min(R.OVF_MAX, self._ovf + lost)
            self._status1 |= R.INT_PPG_RDY
            if self.unread >= self._threshold():
                self._status1 |= R.INT_A_FULL
        # carry the incomplete averaging group
        rem = (self._acc_n + new) % avg
        if rem:
            start = total - rem
            first = max(start, k0)
            tail = self._internal_codes(np.arange(first, total))
            if n_out:
                self._acc = tail.sum(axis=0)
            else:
                self._acc = self._acc + tail.sum(axis=0)
            self._acc_n = rem
        else:
            self._acc[:] = 0
            self._acc_n = 0
        self._seg_done = total

    def _outputs(self, which: range, k0: int, avg: int) -> np.ndarray:
        """18-bit left-justified codes (len(which), 2) of output samples ``which`` (a range,
        numbered from this update), all conversions in one pass over the source."""
        bits = self._bits()
        starts = np.arange(which.start, which.stop) * avg - self._acc_n  # relative to k0
        lo = max(int(starts[0]), 0)
        codes = self._internal_codes(np.arange(k0 + lo, k0 + int(starts[-1]) + avg))
        total = np.add.reduceat(codes, np.maximum(starts, 0) - lo, axis=0)
        if starts[0] < 0:  # the first output completes the carried averaging group
            total[0] += self._acc
        return (total // avg) << (R.SAMPLE_BITS - bits)

    def next_interrupt_time(self) -> float | None:
        """When the INT line will next assert, or None if it never will as things stand."""
        self._update()
        if self.int_asserted:
            return self.clock.now()
        if self._seg_start is None or not self.measuring or self.faults.int_not_wired:
            return None
        enabled = self.regs[R.INT_ENABLE_1]
        needed = None
        if enabled & R.INT_A_FULL:
            needed = max(1, self._threshold() - self.unread)
        if enabled & R.INT_PPG_RDY:
            needed = 1
        if needed is None:
            return None
        avg = self._avg()
        conversions = self._seg_done + (avg - self._acc_n) + (needed - 1) * avg
        if conversions > self._internal_limit():
            return None
        return self._seg_start + conversions / self._sr()

    def wait_for_interrupt(self, timeout: float) -> bool:
        """Wait (on the shared clock) until INT asserts or ``timeout`` s pass.

        Returns whether the line is asserted, like gpiozero's ``wait_for_active``.
        """
        now = self.clock.now()
        t = self.next_interrupt_time()
        if t is None or t > now + timeout:
            self.clock.sleep(max(0.0, timeout))
            return self.int_asserted
        if t > now:
            self.clock.sleep(t - now)
        return self.int_asserted

    # ------------------------------------------------------------- registers
    def _read_reg(self, reg: int, update: bool = True) -> int:
        if update:
            self._update()
        if reg == R.INT_STATUS_1:
            value = self._status1
            self._status1 = 0
            return value
        if reg == R.FIFO_WR_PTR:
            return self._wr
        if reg == R.OVF_COUNTER:
            return self._ovf
        if reg == R.FIFO_RD_PTR:
            return self._rd
        if reg == R.FIFO_DATA:
            return self._read_fifo_byte()
        return self.regs[reg]

    def _read_fifo_byte(self) -> int:
        channels = self._channels()
        if self._byte_in_sample == 0 and self.unread == 0:
            self.underflow_reads += 1
        sample = self._fifo[self._rd]
        ch, byte = divmod(self._byte_in_sample, R.BYTES_PER_CHANNEL)
        value = (int(sample[ch]) >> (8 * (2 - byte))) & 0xFF
        self._byte_in_sample += 1
        if self._byte_in_sample == R.BYTES_PER_CHANNEL * channels:
            self._byte_in_sample = 0
            if self.unread:
                self._rd = (self._rd + 1) & R.POINTER_MASK
                self._full = False
                self._ovf = 0
                self._status1 &= ~R.INT_A_FULL
        return value

    def _write_reg(self, reg: int, value: int) -> None:
        value &= 0xFF
        self._update()
        self.register_writes.append((reg, value))
        if reg == R.MODE_CONFIG and value & R.MODE_RESET:
            self.resets += 1
            self._power_on_reset()
            self._busy_until = self.clock.now() + self.faults.reset_busy_s
            log.debug("emulated MAX30102 reset")
            if self.faults.reset_errno5:
                raise _eio()
            return
        if reg in (R.INT_STATUS_1, R.INT_STATUS_2, R.PART_ID, R.REV_ID):
            return  # read-only
        if reg == R.FIFO_WR_PTR:
            self._wr = value & R.POINTER_MASK
            self._full = False
            return
        if reg == R.FIFO_RD_PTR:
            self._rd = value & R.POINTER_MASK
            self._full = False
            self._byte_in_sample = 0
            return
        if reg == R.OVF_COUNTER:
            self._ovf = value & R.OVF_MAX
            return
        self.regs[reg] = value
        if reg in (R.MODE_CONFIG, R.FIFO_CONFIG, R.SPO2_CONFIG, R.LED1_PA, R.LED2_PA):
            self._restart_segment()

    # -------------------------------------------------------- bus interface
    def _begin(self, address: int) -> int:
        self.transfers += 1
        n = self.transfers
        f = self.faults
        failing = (
            n in f.fail_transfers
            or (f.fail_from is not None and n >= f.fail_from)
            or self.clock.now() < self._busy_until
        )
        if failing:
            self.failed_transfers += 1
            raise _eio()
        if address != self.address:
            self.failed_transfers += 1
            raise OSError(errno.EREMOTEIO, f"no device answers at address 0x{address:02X}")
        self._byte_in_sample = 0
        return n

    def read_byte_data(self, i2c_addr: int, register: int, force=None) -> int:
        self._begin(i2c_addr)
        return self._read_reg(register & 0xFF)

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        self._begin(i2c_addr)
        self._write_reg(register & 0xFF, value)

    def _read_block(self, register: int, length: int) -> bytes:
        """``length`` bytes from ``register`` on: the conversions are brought up to the clock
        once per transfer, a FIFO_DATA burst is served whole (:meth:`_read_fifo_burst`)."""
        reg = register & 0xFF
        self._update()
        if reg == R.FIFO_DATA:
            return self._read_fifo_burst(length)
        out = bytearray(length)
        for i in range(length):
            out[i] = self._read_reg(reg, update=False)
            reg = (reg + 1) & 0xFF
            if reg == R.FIFO_DATA:  # the pointer stops at FIFO_DATA
                out[i + 1:] = self._read_fifo_burst(length - i - 1)
                break
        return bytes(out)

    def _read_fifo_burst(self, length: int) -> bytes:
        """``length`` bytes of FIFO_DATA, byte for byte what reading them one at a time gives:
        whole samples pop RD_PTR (clearing OVF_COUNTER, the full flag and A_FULL); reading
        past the last unread sample repeats the sample at RD_PTR (counted in
        ``underflow_reads``); a sample read in part is popped when its last byte is read."""
        bps = R.BYTES_PER_CHANNEL * self._channels()
        out = bytearray()
        if self._byte_in_sample:  # finish a sample begun by an earlier transfer
            n = min(length, bps - self._byte_in_sample)
            out += b"".join(bytes([self._read_fifo_byte()]) for _ in range(n))
            length -= n
        whole, rest = divmod(length, bps)
        if whole:
            k = min(whole, self.unread)
            slots = np.concatenate([(self._rd + np.arange(k)) & R.POINTER_MASK,
                                    np.full(whole - k, (self._rd + k) & R.POINTER_MASK)])
            if whole > k:
                self.underflow_reads += whole - k
            vals = self._fifo[slots, :bps // R.BYTES_PER_CHANNEL]
            shifts = np.array([16, 8, 0])
            out += ((vals[:, :, None] >> shifts) & 0xFF).astype(np.uint8).tobytes()
            if k:
                self._rd = (self._rd + k) & R.POINTER_MASK
                self._full = False
                self._ovf = 0
                self._status1 &= ~R.INT_A_FULL
        for _ in range(rest):
            out.append(self._read_fifo_byte())
        return bytes(out)

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force=None) -> list[int]:
        if length > 32:
            raise ValueError("Desired block length over 32 bytes")
        self._begin(i2c_addr)
        return list(self._read_block(register, length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data, force=None) -> None:
        self._begin(i2c_addr)
        reg = register & 0xFF
        for value in data:
            self._write_reg(reg, value)
            if reg != R.FIFO_DATA:
                reg = (reg + 1) & 0xFF

    def i2c_rdwr(self, *msgs) -> None:
        if not msgs:
            return
        n = self._begin(msgs[0].addr)
        pointer = 0
        for msg in msgs:
            if msg.addr != self.address:
                self.failed_transfers += 1
                raise OSError(errno.EREMOTEIO, f"no device answers at address 0x{msg.addr:02X}")
            if msg.flags & I2C_M_RD:
                if pointer == R.FIFO_DATA and self.faults.fifo_reads_fail:
                    self.failed_transfers += 1
                    raise _eio()
                fill_read_msg(msg, self._read_block(pointer, msg.len))
                if pointer == R.FIFO_DATA and n in self.faults.partial_bursts:
                    self.failed_transfers += 1
                    raise _eio()
            else:
                payload = bytes(msg)
                if not payload:
                    continue
                pointer = payload[0]
                reg = pointer
                for value in payload[1:]:
                    self._write_reg(reg, value)
                    if reg != R.FIFO_DATA:
                        reg = (reg + 1) & 0xFF

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
