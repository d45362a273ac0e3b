"""Board descriptions as data: one TOML file per board, validated on load.

A board file (``boards/<identifier>.toml``, installed as package data of
``ppg_edge.boards``) says what the runtime and the provisioning tools need to
know about one kind of board: CPU and memory, the OS and Python it runs, the
I2C bus and the MAX30102 wired to it (address, interrupt pin, sensor settings),
the serial port of the hardware-in-the-loop link, the interpreter backends to
try, a power profile with the source of each figure, and the ``config.txt``
lines that are specific to the model. Virtual boards (an aarch64 userland run
through qemu-user) carry the qemu CPU model instead of ``config.txt`` lines.

Everything is checked when a file is loaded; a wrong file raises
:class:`~ppg_edge.errors.ConfigError` naming the file and the field.

MAX30102 limits are those of the Maxim MAX30102 data sheet (19-7740): I2C up to
400 kHz, sample rates 50-3200 sps, averaging 1-32, pulse widths 69-411 us, ADC
full scale 2048-16384 nA, LED current 0-51 mA in 0.2 mA steps; in SpO2 mode the
longer pulse widths cap the sample rate (data sheet table "SpO2 mode").

This module needs only the standard library (``tomllib``, Python 3.11), so it
runs on the Pi.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ppg_edge.errors import ConfigError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

MAX30102_SAMPLE_RATES_HZ = (50, 100, 200, 400, 800, 1000, 1600, 3200)
MAX30102_AVERAGING = (1, 2, 4, 8, 16, 32)
MAX30102_PULSE_WIDTHS_US = (69, 118, 215, 411)
MAX30102_ADC_RANGES_NA = (2048, 4096, 8192, 16384)
MAX30102_LED_MAX_MA = 51.0
MAX30102_LED_STEP_MA = 0.2
MAX30102_MAX_I2C_HZ = 400_000
# Highest sample rate the data sheet allows in SpO2 mode for each pulse width.
MAX30102_SPO2_MAX_RATE_HZ = {69: 1600, 118: 1000, 215: 800, 411: 400}
MAX30102_MODES = ("spo2", "hr")

INTERPRETERS = ("ai-edge-litert", "tflite-runtime")
QEMU_CPUS = ("cortex-a53", "cortex-a72", "cortex-a76")
CONFIG_TXT_SECTIONS = ("all", "pi02", "pi3", "pi4", "pi5")
BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
# BCM GPIOs on the 40-pin header; 2/3 are I2C-1 and 14/15 the UART.
HEADER_GPIOS = range(0, 28)
RESERVED_GPIOS = {2: "I2C-1 SDA", 3: "I2C-1 SCL", 14: "UART TXD", 15: "UART RXD"}
BT_UART_OVERLAYS = ("dtoverlay=disable-bt", "dtoverlay=miniuart-bt")

_IDENT = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CONFIG_LINE = re.compile(r"^[a-z][a-z0-9_]*(?:=[^\s#]+)?$")


@dataclass(frozen=True)
class CPU:
    architecture: str
    model: str
    cores: int
    clock_mhz: int
    ram_mb: int
    qemu_cpu: str | None = None
    ipc: float | None = None  # modelled instructions per cycle (ppg-edge bench arm), with its source
    ipc_source: str | None = None


@dataclass(frozen=True)
class OSInfo:
    name: str
    release: str
    bits: int
    python: str
    boot_mount: str | None = None


@dataclass(frozen=True)
class I2C:
    bus: int
    speed_hz: int

    @property
    def device(self) -> str:
        return f"/dev/i2c-{self.bus}"


@dataclass(frozen=True)
class MAX30102:
    address: int
    interrupt_gpio: int
    mode: str
    sample_rate_hz: int
    averaging: int
    pulse_width_us: int
    adc_range_na: int
    led_red_ma: float
    led_ir_ma: float
    fifo_almost_full: int = 17  # unread samples per A_FULL interrupt: the driver's burst

    @property
    def output_rate_hz(self) -> float:
        """Samples per second leaving the FIFO (sample rate over on-chip averaging)."""
        return self.sample_rate_hz / self.averaging


@dataclass(frozen=True)
class Runtime:
    """What the board's service runs, chosen per core by measured counts (``ppg-edge bench arm``):
    the peak model file (``models/device/<peak_model>``) and the framer hop in seconds."""

    interpreters: tuple[str, ...]
    peak_model: str | None = None
    peak_model_source: str | None = None
    hop_s: float | None = None
    hop_source: str | None = None

    def hop_samples(self, fs: float) -> int | None:
        """The hop in samples at the model rate ``fs`` (None: the model manifest's)."""
        return None if self.hop_s is None else int(round(self.hop_s * fs))


@dataclass(frozen=True)
class UART:
    serial_port: str
    baudrate: int
    shared_with_bluetooth: bool
    disable_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Power:
    idle_w: float
    active_w: float
    idle_source: str
    active_source: str
    idle_w_range: tuple[float, float] | None = None
    active_w_range: tuple[float, float] | None = None
    core_active_w: float | None = None  # one core busy, above idle (modelled energy of bench arm)
    core_active_source: str | None = None


@dataclass(frozen=True)
class ConfigTxt:
    section: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Board:
    identifier: str
    name: str
    virtual: bool
    cpu: CPU
    os: OSInfo
    i2c: I2C
    max30102: MAX30102
    uart: UART
    interpreters: tuple[str, ...]
    power: Power
    runtime: Runtime | None = None
    config_txt: ConfigTxt | None = None
    emulates: str | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``): nested dicts, tuples as lists."""
        def conv(v: Any) -> Any:
            if isinstance(v, tuple):
                return [conv(x) for x in v]
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v
        return conv(dataclasses.asdict(self))


# --------------------------------------------------------------------------- reading


class _Table:
    """One TOML table of one file; every accessor names file and field on error."""

    def __init__(self, path: str, prefix: str, data: Any):
        self.path = path
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{prefix}] must be a table, got {type(data).__name__}")
        self.data = data
        self.used: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: field {self.field(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple[type, ...], *, required: bool = True,
            default: Any = None, check: Callable[[Any], str | None] | None = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.fail(key, "missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; never accept one for the other.
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"expected {names}, got {type(value).__name__} {value!r}")
        if check is not None:
            problem = check(value)
            if problem:
                raise self.fail(key, problem)
        return value

    def table(self, key: str, *, required: bool = True) -> _Table | None:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"{self.path}: table [{self.field(key)}] missing")
            return None
        return _Table(self.path, self.field(key), self.data[key])

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown field (typo?); known: " + ", ".join(sorted(self.used)))


def _in_range(lo: float, hi: float, unit: str = "") -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"{v}{unit} outside {lo}-{hi}{unit}"
    return check


def _one_of(allowed: tuple | range, unit: str = "") -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in allowed else f"{v!r}{unit} not one of {', '.join(map(str, allowed))}"
    return check


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _read_toml(path: Path) -> dict[str, Any]:
    if tomllib is None:  # pragma: no cover
        raise ConfigError(f"{path}: reading board files needs Python 3.11+ (tomllib)")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _led(t: _Table, key: str) -> float:
    def check(v: float) -> str | None:
        if not 0.0 <= v <= MAX30102_LED_MAX_MA:
            return f"{v} mA outside 0-{MAX30102_LED_MAX_MA:g} mA"
        steps = v / MAX30102_LED_STEP_MA
        if abs(steps - round(steps)) > 1e-6:
            return f"{v} mA is not a multiple of the {MAX30102_LED_STEP_MA} mA register step"
        return None
    return t.get(key, float, check=check)


def _range_pair(t: _Table, key: str) -> tuple[float, float] | None:
    pair = t.get(key, list, required=False)
    if pair is None:
        return None
    if len(pair) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pair):
        raise t.fail(key, f"expected [low, high] in W, got {pair!r}")
    lo, hi = float(pair[0]), float(pair[1])
    if not 0 < lo <= hi:
        raise t.fail(key, f"need 0 < low <= high, got {pair!r}")
    return (lo, hi)


def parse_board(data: dict[str, Any], path: str = "<board>") -> Board:
    """Validate the parsed TOML of one board file and build the :class:`Board`."""
    top = _Table(path, "", data)
    top.get("schema", int, check=lambda v: None if v == SCHEMA_VERSION
            else f"schema {v} not supported (this ppg-edge reads {SCHEMA_VERSION})")
    ident = top.get("identifier", str, check=lambda v: None if _IDENT.match(v)
                    else "use lower-case letters, digits and '-'")
    stem = Path(path).stem
    if path.endswith(".toml") and stem != ident:
        raise top.fail("identifier", f"{ident!r} differs from the file name {stem!r}")
    name = top.get("name", str, check=_nonempty)
    virtual = top.get("virtual", bool)
    emulates = top.get("emulates", str, required=False)
    if virtual and emulates is None:
        raise top.fail("emulates", "missing: a virtual board names the board it emulates")
    if not virtual and emulates is not None:
        raise top.fail("emulates", "only virtual boards emulate another board")

    t = top.table("cpu")
    cpu = CPU(
        architecture=t.get("architecture", str, check=lambda v: None if v == "aarch64"
                           else f"{v!r}: ppg-edge needs aarch64 (ai-edge-litert has no armv7 wheels)"),
        model=t.get("model", str, check=_nonempty),
        cores=t.get("cores", int, check=_in_range(1, 64)),
        clock_mhz=t.get("clock_mhz", int, check=_in_range(100, 5000, " MHz")),
        ram_mb=t.get("ram_mb", int, check=_in_range(64, 65536, " MB")),
        qemu_cpu=t.get("qemu_cpu", str, required=False, check=_one_of(QEMU_CPUS)),
        ipc=t.get("ipc", float, required=False, check=_in_range(0.1, 8.0)),
        ipc_source=t.get("ipc_source", str, required=False, check=_nonempty),
    )
    if (cpu.ipc is None) != (cpu.ipc_source is None):
        raise t.fail("ipc", "ipc and ipc_source go together (a modelled figure names its source)")
    if not virtual and cpu.model.lower() not in QEMU_CPUS:
        raise t.fail("model", f"{cpu.model!r}: name the core as qemu does ({', '.join(QEMU_CPUS)}, any case); "
                     "`ppg-edge bench arm` counts instructions on it")
    if virtual and cpu.qemu_cpu is None:
        raise t.fail("qemu_cpu", "missing: a virtual board must pin the qemu CPU model "
                     "(qemu's default `max` CPU gives wrong int8 results)")
    if not virtual and cpu.qemu_cpu is not None:
        raise t.fail("qemu_cpu", "only virtual boards have a qemu CPU model")
    if cpu.qemu_cpu is not None and cpu.qemu_cpu != cpu.model.lower():
        raise t.fail("qemu_cpu", f"{cpu.qemu_cpu!r} does not match cpu.model {cpu.model!r}")
    t.finish()

    t = top.table("os")
    os_info = OSInfo(
        name=t.get("name", str, check=_nonempty),
        release=t.get("release", str, check=_nonempty),
        bits=t.get("bits", int, check=lambda v: None if v == 64
                   else f"{v}: a 64-bit OS is required (ai-edge-litert ships aarch64 wheels only)"),
        python=t.get("python", str, check=lambda v: None if re.fullmatch(r"3\.\d+", v)
                     else f"{v!r} is not a Python version like '3.11'"),
        boot_mount=t.get("boot_mount", str, required=False,
                         check=lambda v: None if v.startswith("/") else "must be an absolute path"),
    )
    t.finish()

    t = top.table("i2c")
    i2c = I2C(bus=t.get("bus", int, check=_in_range(0, 31)),
              speed_hz=t.get("speed_hz", int, check=_in_range(10_000, MAX30102_MAX_I2C_HZ, " Hz")))
    t.finish()

    t = top.table("max30102")

    def gpio_check(v: int) -> str | None:
        if v not in HEADER_GPIOS:
            return f"GPIO {v} is not a header GPIO (0-27)"
        if v in RESERVED_GPIOS:
            return f"GPIO {v} is taken by {RESERVED_GPIOS[v]}"
        return None

    sensor = MAX30102(
        address=t.get("address", int, check=lambda v: None if 0x08 <= v <= 0x77
                      else f"0x{v:02x} outside the 7-bit address range 0x08-0x77"),
        interrupt_gpio=t.get("interrupt_gpio", int, check=gpio_check),
        mode=t.get("mode", str, check=_one_of(MAX30102_MODES)),
        sample_rate_hz=t.get("sample_rate_hz", int, check=_one_of(MAX30102_SAMPLE_RATES_HZ, " Hz")),
        averaging=t.get("averaging", int, check=_one_of(MAX30102_AVERAGING)),
        pulse_width_us=t.get("pulse_width_us", int, check=_one_of(MAX30102_PULSE_WIDTHS_US, " us")),
        adc_range_na=t.get("adc_range_na", int, check=_one_of(MAX30102_ADC_RANGES_NA, " nA")),
        led_red_ma=_led(t, "led_red_ma"),
        led_ir_ma=_led(t, "led_ir_ma"),
        fifo_almost_full=t.get("fifo_almost_full", int, required=False, default=17,
                               check=_in_range(17, 32, " samples")),
    )
    if sensor.mode == "spo2":
        cap = MAX30102_SPO2_MAX_RATE_HZ[sensor.pulse_width_us]
        if sensor.sample_rate_hz > cap:
            raise t.fail("sample_rate_hz", f"{sensor.sample_rate_hz} Hz with a {sensor.pulse_width_us} us "
                         f"pulse is not allowed in SpO2 mode (at most {cap} Hz)")
    t.finish()

    t = top.table("uart")

    def port_check(v: str) -> str | None:
        if virtual:
            return None if v == "pty" else f"{v!r}: a virtual board's HIL link is 'pty'"
        return None if v.startswith("/dev/") else f"{v!r}: a real board's serial port is a /dev path"

    uart = UART(
        serial_port=t.get("serial_port", str, check=port_check),
        baudrate=t.get("baudrate", int, check=_one_of(BAUDRATES)),
        shared_with_bluetooth=t.get("shared_with_bluetooth", bool),
        disable_services=tuple(t.get("disable_services", list, required=False, default=[])),
    )
    if not all(isinstance(s, str) and _IDENT.match(s) for s in uart.disable_services):
        raise t.fail("disable_services", f"expected a list of service names, got {list(uart.disable_services)!r}")
    t.finish()

    t = top.table("runtime")
    interps = t.get("interpreters", list)
    if not interps:
        raise t.fail("interpreters", "empty: name at least one of " + ", ".join(INTERPRETERS))
    for it in interps:
        if it not in INTERPRETERS:
            raise t.fail("interpreters", f"{it!r} unknown; known: {', '.join(INTERPRETERS)}")
    if len(set(interps)) != len(interps):
        raise t.fail("interpreters", f"duplicates in {interps!r}")
    runtime = Runtime(
        interpreters=tuple(interps),
        peak_model=t.get("peak_model", str, required=False,
                         check=lambda v: None if re.fullmatch(r"peaks-[\w.-]+\.tflite", v)
                         else f"{v!r} is not a peak model file name like 'peaks-Type30-int8.tflite'"),
        peak_model_source=t.get("peak_model_source", str, required=False, check=_nonempty),
        hop_s=t.get("hop_s", float, required=False, check=_in_range(0.1, 10.0, " s")),
        hop_source=t.get("hop_source", str, required=False, check=_nonempty),
    )
    for key, src in (("peak_model", "peak_model_source"), ("hop_s", "hop_source")):
        if (getattr(runtime, key) is None) != (getattr(runtime, src) is None):
            raise t.fail(key, f"{key} and {src} go together (say how it was chosen)")
    t.finish()

    t = top.table("power")
    watts = _in_range(0.01, 100.0, " W")
    power = Power(
        idle_w=t.get("idle_w", float, check=watts),
        active_w=t.get("active_w", float, check=watts),
        idle_source=t.get("idle_source", str, check=_nonempty),
        active_source=t.get("active_source", str, check=_nonempty),
        idle_w_range=_range_pair(t, "idle_w_range"),
        active_w_range=_range_pair(t, "active_w_range"),
        core_active_w=t.get("core_active_w", float, required=False, check=watts),
        core_active_source=t.get("core_active_source", str, required=False, check=_nonempty),
    )
    if (power.core_active_w is None) != (power.core_active_source is None):
        raise t.fail("core_active_w", "core_active_w and core_active_source go together")
    if not power.idle_w < power.active_w:
        raise t.fail("active_w", f"{power.active_w} W must exceed idle_w {power.idle_w} W")
    if power.core_active_w is not None and power.core_active_w > power.active_w - power.idle_w:
        raise t.fail("core_active_w", f"{power.core_active_w} W for one core exceeds the whole board's "
                     f"{power.active_w - power.idle_w:.2f} W above idle")
    for key, value, rng in (("idle_w", power.idle_w, power.idle_w_range),
                            ("active_w", power.active_w, power.active_w_range)):
        if rng is not None and not rng[0] <= value <= rng[1]:
            raise t.fail(key, f"{value} W lies outside its published range {rng[0]}-{rng[1]} W")
    t.finish()

    t = top.table("config_txt", required=not virtual)
    config_txt = None
    if t is not None:
        if virtual:
            raise ConfigError(f"{path}: table [config_txt]: a virtual board has no SD card")
        lines = t.get("lines", list)
        for line in lines:
            if not isinstance(line, str) or not _CONFIG_LINE.match(line):
                raise t.fail("lines", f"{line!r} is not a config.txt setting like 'dtparam=i2c_arm=on'")
        config_txt = ConfigTxt(section=t.get("section", str, check=_one_of(CONFIG_TXT_SECTIONS)),
                               lines=tuple(lines))
        if uart.shared_with_bluetooth and not any(o in lines for o in BT_UART_OVERLAYS):
            raise t.fail("lines", "uart.shared_with_bluetooth is true but none of "
                         f"{', '.join(BT_UART_OVERLAYS)} frees the PL011 for the HIL link")
        t.finish()
    top.finish()

    return Board(identifier=ident, name=name, virtual=virtual, cpu=cpu, os=os_info, i2c=i2c,
                 max30102=sensor, uart=uart, interpreters=tuple(interps), power=power, runtime=runtime,
                 config_txt=config_txt, emulates=emulates, path=path)


# --------------------------------------------------------------------------- lookup


def boards_dir() -> Path:
    """Folder holding the committed board files."""
    return Path(str(resources.files("ppg_edge.boards")))


def board_names() -> list[str]:
    """Identifiers of the committed boards, sorted."""
    return sorted(p.stem for p in boards_dir().glob("*.toml") if not p.name.startswith("hardware-map"))


def load_board(name_or_path: str | Path) -> Board:
    """A committed board by identifier (``"rpi4b"``) or any board file by path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".toml") or path.is_file() or "/" in text:
        if not path.is_file():
            raise ConfigError(f"{path}: board file does not exist")
    else:
        path = boards_dir() / f"{text}.toml"
        if not path.is_file():
            raise ConfigError(f"unknown board {text!r}; known boards: {', '.join(board_names())}")
    board = parse_board(_read_toml(path), str(path))
    log.debug("loaded board %s from %s", board.identifier, path)
    return board


def list_boards() -> list[Board]:
    """Every committed board, validated, sorted by identifier.

    Also checks what one file cannot: each virtual board emulates a committed
    real board with the same CPU model.
    """
    boards = [load_board(n) for n in board_names()]
    by_id = {b.identifier: b for b in boards}
    for b in boards:
        if b.emulates is not None:
            target = by_id.get(b.emulates)
            if target is None or target.virtual:
                raise ConfigError(f"{b.path}: field emulates: {b.emulates!r} is not a committed real board")
            if target.cpu.model != b.cpu.model:
                raise ConfigError(f"{b.path}: field cpu.model: {b.cpu.model!r} differs from the emulated "
                                  f"{target.identifier}'s {target.cpu.model!r}")
    return boards
