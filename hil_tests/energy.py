"""Energy per sample: meters behind one interface, and the board power model.

Every figure carries ``method``: ``"measured: ..."`` when a meter saw the
current, ``"modelled: ..."`` when it comes from CPU time and published board
power. Readers must never confuse the two.

Meters (``start()`` ... ``stop() -> EnergyFigure``):

* :class:`INA219` / :class:`INA226` on I2C (smbus2; register-level, after TI's
  data sheets SBOS448 and SBOS547), sampled by :class:`PollingMeter`;
* :class:`JoulescopeMeter` (the ``joulescope`` package, imported lazily);
* :class:`SerialLineMeter`, a USB meter printing ``volts,amps`` (or
  ``seconds,volts,amps``) lines on a serial port;
* :class:`RaplMeter`, Linux powercap (``/sys/class/powercap``); absent on the
  project machines and on a Pi, so it reports itself unavailable there.

:func:`board_energy` is the model: CPU seconds x (active - idle) W / cores, with
the figures and their sources from the board file. The published "active"
figures are all-core stress loads, so one busy core is charged a core's share.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ppg_edge.errors import ConfigError, HardwareError

log = logging.getLogger(__name__)


class MeterUnavailable(HardwareError):
    """The meter's hardware, driver or kernel interface is not present."""


@dataclass(frozen=True)
class EnergyFigure:
    joules: float
    seconds: float
    method: str
    source: str

    @property
    def mean_w(self) -> float | None:
        return self.joules / self.seconds if self.seconds > 0 else None

    def per_sample(self, samples: int) -> dict[str, Any]:
        return {"method": self.method, "source": self.source, "joules": self.joules,
                "seconds": self.seconds, "samples": samples, "mean_w": self.mean_w,
                "joules_per_sample": self.joules / samples if samples else None}


def board_energy(cpu_seconds: float, board: Any) -> EnergyFigure:
    """Modelled energy of ``cpu_seconds`` of CPU time on ``board`` (a :class:`~ppg_edge.boards.Board`)."""
    if not cpu_seconds >= 0:
        raise ConfigError(f"cpu time {cpu_seconds} s must be >= 0")
    p = board.power
    per_core_w = (p.active_w - p.idle_w) / board.cpu.cores
    method = (f"modelled: cpu_time x (active-idle)/cores = cpu_time x ({p.active_w:g}-{p.idle_w:g})"
              f"/{board.cpu.cores} W from board file {board.identifier} "
              f"(active: {p.active_source}; idle: {p.idle_source})")
    return EnergyFigure(joules=cpu_seconds * per_core_w, seconds=cpu_seconds, method=method,
                        source=f"board:{board.identifier}")


def integrate(times_s: list[float], watts: list[float]) -> float:
    """Trapezoidal energy (J) of power samples taken at ``times_s``."""
    if len(times_s) != len(watts):
        raise ValueError("times and watts differ in length")
    return sum(0.5 * (watts[i] + watts[i - 1]) * (times_s[i] - times_s[i - 1])
               for i in range(1, len(times_s)))


# --------------------------------------------------------------------------- INA219 / INA226


@dataclass(frozen=True)
class PowerReading:
    bus_v: float
    shunt_v: float
    current_a: float
    power_w: float


class _INA:
    """Shared register access: 16-bit big-endian registers behind a pointer byte."""

    chip = "INA"
    REG_CONFIG, REG_SHUNT, REG_BUS, REG_POWER, REG_CURRENT, REG_CAL = 0, 1, 2, 3, 4, 5
    CAL_NUMERATOR = 0.0
    POWER_LSB_FACTOR = 0
    SHUNT_LSB_V = 0.0
    CAL_MAX = 0x7FFF

    def __init__(self, bus: Any, address: int = 0x40, *, shunt_ohm: float = 0.1,
                 max_current_a: float = 2.0, bus_number: int | None = None):
        if not 0x40 <= address <= 0x4F:
            raise ConfigError(f"{self.chip}: address 0x{address:02x} outside 0x40-0x4F")
        if not shunt_ohm > 0 or not max_current_a > 0:
            raise ConfigError(f"{self.chip}: shunt_ohm and max_current_a must be positive")
        self.bus = bus
        self.address = address
        self.shunt_ohm = shunt_ohm
        self.max_current_a = max_current_a
        self.where = f"{self.chip} at 0x{address:02x}" + (f" on /dev/i2c-{bus_number}" if bus_number is not None else "")
        lsb = max_current_a / 32768
        self.cal = self._cal_register(lsb)
        # The chip divides by the integer CAL: use the LSB it really applies.
        self.current_lsb = self.CAL_NUMERATOR / (self.cal * shunt_ohm)
        self.power_lsb = self.POWER_LSB_FACTOR * self.current_lsb

    def _cal_register(self, lsb: float) -> int:
        cal = int(self.CAL_NUMERATOR / (lsb * self.shunt_ohm))
        if not 1 <= cal <= self.CAL_MAX:
            raise ConfigError(f"{self.where}: calibration {cal} out of range for shunt {self.shunt_ohm} ohm "
                              f"and {self.max_current_a} A; choose another shunt or range")
        return cal

    def read_register(self, reg: int) -> int:
        try:
            msb, lsb = self.bus.read_i2c_block_data(self.address, reg, 2)
        except OSError as exc:
            raise HardwareError(f"{self.where}: reading register 0x{reg:02x} failed: {exc}") from None
        return (msb << 8) | lsb

    def write_register(self, reg: int, value: int) -> None:
        try:
            self.bus.write_i2c_block_data(self.address, reg, [(value >> 8) & 0xFF, value & 0xFF])
        except OSError as exc:
            raise HardwareError(f"{self.where}: writing register 0x{reg:02x} failed: {exc}") from None

    @staticmethod
    def _signed(v: int) -> int:
        return v - 0x10000 if v & 0x8000 else v

    def read(self) -> PowerReading:
        shunt = self._signed(self.read_register(self.REG_SHUNT)) * self.SHUNT_LSB_V
        bus = self._bus_volts(self.read_register(self.REG_BUS))
        current = self._signed(self.read_register(self.REG_CURRENT)) * self.current_lsb
        power = self.read_register(self.REG_POWER) * self.power_lsb
        return PowerReading(bus_v=bus, shunt_v=shunt, current_a=current, power_w=power)

    def _bus_volts(self, raw: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def method(self) -> str:
        return (f"measured: {self.where}, shunt {self.shunt_ohm:g} ohm, "
                f"current LSB {self.current_lsb * 1e6:.1f} uA")


class INA219(_INA):
    """TI INA219 (SBOS448): shunt LSB 10 uV, bus LSB 4 mV, CAL = 0.04096/(I_lsb R), P_lsb = 20 I_lsb."""

    chip = "INA219"
    CAL_NUMERATOR = 0.04096
    POWER_LSB_FACTOR = 20
    SHUNT_LSB_V = 10e-6
    CAL_MAX = 0xFFFE                  # CAL field is bits 15:1
    BUS_LSB_V = 4e-3
    PGA_RANGES_V = (0.04, 0.08, 0.16, 0.32)

    def configure(self, *, bus_32v: bool = True) -> None:
        need = self.max_current_a * self.shunt_ohm
        for gain, rng in enumerate(self.PGA_RANGES_V):  # noqa: B007 - gain is used after the break
            if need <= rng:
                break
        else:
            raise ConfigError(f"{self.where}: {need * 1e3:.0f} mV across the shunt exceeds the 320 mV range")
        # BRNG, PG, 12-bit ADCs (0b0011) for bus and shunt, continuous shunt+bus mode (7)
        config = (int(bus_32v) << 13) | (gain << 11) | (0b0011 << 7) | (0b0011 << 3) | 0b111
        self.write_register(self.REG_CONFIG, config)
        self.write_register(self.REG_CAL, self.cal)

    def _cal_register(self, lsb: float) -> int:
        return super()._cal_register(lsb) & 0xFFFE          # bit 0 of CAL is not writable

    def _bus_volts(self, raw: int) -> float:
        if raw & 0x1:
            raise HardwareError(f"{self.where}: math overflow (OVF): current or power out of range")
        return (raw >> 3) * self.BUS_LSB_V


class INA226(_INA):
    """TI INA226 (SBOS547): shunt LSB 2.5 uV, bus LSB 1.25 mV, CAL = 0.00512/(I_lsb R), P_lsb = 25 I_lsb."""

    chip = "INA226"
    CAL_NUMERATOR = 0.00512
    POWER_LSB_FACTOR = 25
    SHUNT_LSB_V = 2.5e-6
    BUS_LSB_V = 1.25e-3
    REG_MANUFACTURER, REG_DIE = 0xFE, 0xFF
    MANUFACTURER_ID = 0x5449          # "TI"
    DIE_ID = 0x2260

    def configure(self, *, averages_code: int = 0b001) -> None:
        man = self.read_register(self.REG_MANUFACTURER)
        die = self.read_register(self.REG_DIE)
        if man != self.MANUFACTURER_ID or die != self.DIE_ID:
            raise HardwareError(f"{self.where}: not an INA226 (manufacturer 0x{man:04x}, die 0x{die:04x}; "
                                f"expected 0x{self.MANUFACTURER_ID:04x}/0x{self.DIE_ID:04x})")
        if self.max_current_a * self.shunt_ohm > 0.08192:
            raise ConfigError(f"{self.where}: {self.max_current_a * self.shunt_ohm * 1e3:.0f} mV across "
                              "the shunt exceeds the 81.92 mV range")
        # AVG, 1.1 ms conversion times (0b100) for bus and shunt, continuous shunt+bus mode (7)
        config = (averages_code << 9) | (0b100 << 6) | (0b100 << 3) | 0b111
        self.write_register(self.REG_CONFIG, config)
        self.write_register(self.REG_CAL, self.cal)

    def _bus_volts(self, raw: int) -> float:
        return (raw & 0x7FFF) * self.BUS_LSB_V


class PowerSensor(Protocol):
    method: str

    def read(self) -> PowerReading | None: ...


class PollingMeter:
    """Sample a :class:`PowerSensor` in a thread between ``start`` and ``stop``; integrate."""

    def __init__(self, sensor: PowerSensor, *, interval_s: float = 0.002,
                 clock: Callable[[], float] = time.monotonic, source: str | None = None):
        self.sensor = sensor
        self.interval_s = interval_s
        self.clock = clock
        self.source = source or type(sensor).__name__.lower()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._times: list[float] = []
        self._watts: list[float] = []
        self._error: BaseException | None = None

    @property
    def method(self) -> str:
        return self.sensor.method

    def _sample(self) -> None:
        r = self.sensor.read()
        if r is not None:
            self._times.append(self.clock())
            self._watts.append(r.power_w)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._sample()
                if self.interval_s:
                    self._stop.wait(self.interval_s)
        except BaseException as exc:  # reported by stop()
            self._error = exc

    def start(self) -> None:
        if self._thread is not None:
            raise HardwareError(f"{self.source}: meter already running")
        self._times, self._watts, self._error = [], [], None
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name=f"meter-{self.source}", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyFigure:
        if self._thread is None:
            raise HardwareError(f"{self.source}: meter was not started")
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        if self._error is not None:
            raise HardwareError(f"{self.source}: meter failed while sampling: {self._error}") from self._error
        if len(self._times) < 2:
            raise HardwareError(f"{self.source}: fewer than two power samples; the run was too short "
                                "for this meter")
        return EnergyFigure(joules=integrate(self._times, self._watts),
                            seconds=self._times[-1] - self._times[0],
                            method=f"{self.method}; {len(self._times)} samples, trapezoid",
                            source=self.source)


def open_ina(chip: str, bus_number: int = 1, **kwargs: Any) -> _INA:
    """Open ``/dev/i2c-<bus_number>`` with smbus2 and configure an INA219 or INA226."""
    try:
        from smbus2 import SMBus
    except ImportError:  # pragma: no cover
        raise MeterUnavailable("INA meters need smbus2 (pip install 'ppg-edge[edge]')") from None
    device = Path(f"/dev/i2c-{bus_number}")
    if not device.exists():
        raise MeterUnavailable(f"{chip}: {device} does not exist (no kernel I2C on this machine)")
    cls = {"ina219": INA219, "ina226": INA226}[chip]
    try:
        bus = SMBus(bus_number)
    except OSError as exc:
        raise MeterUnavailable(f"{chip}: cannot open {device}: {exc}") from None
    ina = cls(bus, bus_number=bus_number, **kwargs)
    ina.configure()
    return ina


# --------------------------------------------------------------------------- other meters


class SerialLineMeter:
    """A USB power meter that prints one reading per line on a serial port.

    Line format: ``volts,amps`` or ``seconds,volts,amps`` (decimal numbers,
    comma-separated, ``#`` starts a comment line). Lines that do not parse are
    counted in ``bad_lines`` and logged, never silently skipped.
    """

    def __init__(self, port: Any, *, name: str = "usb-meter"):
        self.port = port
        self.name = name
        self.bad_lines = 0

    @property
    def method(self) -> str:
        return f"measured: USB meter {self.name} (volts,amps lines)"

    def read(self) -> PowerReading | None:
        raw = self.port.readline(256)
        if not raw:
            return None
        text = raw.decode("ascii", "replace").strip()
        if not text or text.startswith("#"):
            return None
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
            if len(values) not in (2, 3) or not all(math.isfinite(v) for v in values):
                raise ValueError("expected 2 or 3 finite numbers")
        except ValueError as exc:
            self.bad_lines += 1
            log.warning("%s: bad line %r (%s); %d bad so far", self.name, text[:60], exc, self.bad_lines)
            return None
        volts, amps = values[-2], values[-1]
        return PowerReading(bus_v=volts, shunt_v=math.nan, current_a=amps, power_w=volts * amps)


class RaplMeter:
    """Intel RAPL package energy from ``/sys/class/powercap/<zone>/energy_uj`` (host CPU only)."""

    def __init__(self, root: str | Path = "/sys/class/powercap", zone: str = "intel-rapl:0",
                 clock: Callable[[], float] = time.monotonic):
        self.dir = Path(root) / zone
        self.zone = zone
        self.clock = clock
        if not (self.dir / "energy_uj").is_file():
            raise MeterUnavailable(f"RAPL: {self.dir / 'energy_uj'} not present "
                                   "(no powercap RAPL on this machine; energy can only be modelled)")
        self._start: tuple[float, int] | None = None

    def _read_uj(self) -> int:
        try:
            return int((self.dir / "energy_uj").read_text().strip())
        except (OSError, ValueError) as exc:
            raise HardwareError(f"RAPL: cannot read {self.dir / 'energy_uj'}: {exc}") from None

    def start(self) -> None:
        self._start = (self.clock(), self._read_uj())

    def stop(self) -> EnergyFigure:
        if self._start is None:
            raise HardwareError("RAPL: meter was not started")
        t0, e0 = self._start
        e1, t1 = self._read_uj(), self.clock()
        self._start = None
        delta = e1 - e0
        if delta < 0:  # counter wrapped
            try:
                delta += int((self.dir / "max_energy_range_uj").read_text().strip())
            except (OSError, ValueError) as exc:
                raise HardwareError(f"RAPL: counter wrapped and max_energy_range_uj unreadable: {exc}") from None
        return EnergyFigure(joules=delta / 1e6, seconds=t1 - t0,
                            method=f"measured: RAPL {self.zone} (host CPU package, not the board)",
                            source=f"rapl:{self.zone}")


class JoulescopeMeter:
    """A Joulescope (``pip install joulescope``): reads blocks of (current, voltage) while running.

    Uses the package's documented ``scan_require_one(config="auto")`` and
    ``read(contiguous_duration=...)``. Not yet run against a device.
    """

    def __init__(self, block_s: float = 0.05):
        try:
            import joulescope  # noqa: F401
        except ImportError:
            raise MeterUnavailable("Joulescope support needs the `joulescope` package "
                                   "(pip install joulescope) and a connected Joulescope") from None
        self.block_s = block_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._joules = 0.0
        self._seconds = 0.0
        self._error: BaseException | None = None

    method = "measured: Joulescope (mean current x voltage per block)"

    def _run(self) -> None:
        import joulescope
        import numpy as np

        try:
            with joulescope.scan_require_one(config="auto") as js:
                while not self._stop.is_set():
                    data = js.read(contiguous_duration=self.block_s)
                    self._joules += float(np.mean(data[:, 0] * data[:, 1])) * self.block_s
                    self._seconds += self.block_s
        except BaseException as exc:
            self._error = exc

    def start(self) -> None:
        self._joules = self._seconds = 0.0
        self._error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="meter-joulescope", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyFigure:
        if self._thread is None:
            raise HardwareError("Joulescope: meter was not started")
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        if self._error is not None:
            raise HardwareError(f"Joulescope: {self._error}") from self._error
        return EnergyFigure(self._joules, self._seconds, self.method, "joulescope")


METER_KINDS = ("ina219", "ina226", "usb", "joulescope", "rapl")


def open_meter(spec: str) -> Any:
    """A meter from a spec: ``ina219[:bus=1,address=0x40,shunt_ohm=0.1,max_current_a=2]``,
    ``ina226[:...]``, ``usb:<serial url>[,baud=N]``, ``joulescope``, ``rapl[:zone=...]``."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in METER_KINDS:
        raise ConfigError(f"unknown meter {kind!r}; valid: {', '.join(METER_KINDS)}")
    if kind == "usb":
        url, *opts = rest.split(",")
        if not url:
            raise ConfigError("usb meter: give the serial port, e.g. usb:/dev/ttyUSB1")
        baud = 115200
        for o in opts:
            k, _, v = o.partition("=")
            if k != "baud":
                raise ConfigError(f"usb meter: unknown option {k!r} (known: baud)")
            baud = int(v)
        try:
            import serial
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.2)
        except Exception as exc:
            raise MeterUnavailable(f"usb meter: cannot open {url}: {exc}") from None
        return PollingMeter(SerialLineMeter(port, name=url), interval_s=0.0, source=f"usb:{url}")
    opts: dict[str, str] = {}
    for o in filter(None, rest.split(",")):
        k, eq, v = o.partition("=")
        if not eq:
            raise ConfigError(f"{kind} meter: option {o!r} is not key=value")
        opts[k.strip()] = v.strip()
    if kind == "joulescope":
        return JoulescopeMeter()
    if kind == "rapl":
        return RaplMeter(zone=opts.pop("zone", "intel-rapl:0"))
    try:
        bus_number = int(opts.pop("bus", "1"))
        address = int(opts.pop("address", "0x40"), 0)
        shunt = float(opts.pop("shunt_ohm", "0.1"))
        imax = float(opts.pop("max_current_a", "2.0" if kind == "ina219" else "0.8"))
    except ValueError as exc:
        raise ConfigError(f"{kind} meter: bad option value: {exc}") from None
    if opts:
        raise ConfigError(f"{kind} meter: unknown options {sorted(opts)} "
                          "(known: bus, address, shunt_ohm, max_current_a)")
    ina = open_ina(kind, bus_number, address=address, shunt_ohm=shunt, max_current_a=imax)
    return PollingMeter(ina, source=f"{kind}:0x{address:02x}")
