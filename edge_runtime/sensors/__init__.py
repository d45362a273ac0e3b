"""PPG sensor backends, chosen by name like gpiozero pin factories.

``open_sensor(name, **kw)`` returns a started sensor with ``read()``, ``blocks()``,
``close()``, counters and ``events``. Names:

- ``max30102``: the real chip on ``/dev/i2c-<bus>`` through smbus2 (imported lazily);
- ``emulated``: the same driver over :class:`~.emulated.EmulatedMax30102`, a
  register-level fake chip fed by an array (the real driver code runs unchanged);
- ``replay``: an array of ADC counts served as blocks, no driver.

Without a name, the ``PPG_EDGE_SENSOR`` environment variable decides, else ``max30102``.
There is deliberately no silent fallback from the real chip to a fake one.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable

from ...errors import ConfigError, HardwareError
from . import registers
from .clock import AcceleratedClock, Clock, MonotonicClock, VirtualClock
from .emulated import EmulatedMax30102, FaultPlan
from .max30102 import Block, Max30102, Max30102Settings, SensorEvent
from .replay import ReplaySensor

__all__ = [
    "AcceleratedClock",
    "BACKENDS",
    "Block",
    "Clock",
    "EmulatedMax30102",
    "FaultPlan",
    "Max30102",
    "Max30102Settings",
    "MonotonicClock",
    "ReplaySensor",
    "SENSOR_ENV",
    "SensorEvent",
    "VirtualClock",
    "gpio_interrupt_waiter",
    "open_sensor",
    "registers",
]

log = logging.getLogger(__name__)

SENSOR_ENV = "PPG_EDGE_SENSOR"
BACKENDS = ("max30102", "emulated", "replay")


def gpio_interrupt_waiter(pin) -> Callable[[float], bool]:
    """A ``wait_for_interrupt(timeout)`` on a GPIO pin wired to the MAX30102 INT line.

    INT is open-drain and active-low, so the pin is read with its pull-up on and
    "active" means low. Needs gpiozero (with lgpio on a Pi 5).
    """
    try:
        from gpiozero import DigitalInputDevice
    except ImportError as exc:
        raise HardwareError(
            f"gpiozero is needed to wait on the INT pin {pin!r}: pip install gpiozero, "
            f"or open the sensor without int_pin (timed polling)"
        ) from exc
    device = DigitalInputDevice(pin, pull_up=True)

    def wait(timeout: float) -> bool:
        return bool(device.wait_for_active(timeout=timeout))

    return wait


def _open_max30102(*, bus: int = 1, address: int = registers.ADDRESS,
                   int_pin=None, **driver_kw) -> Max30102:
    path = f"/dev/i2c-{bus}"
    try:
        from smbus2 import SMBus
    except ImportError as exc:
        raise HardwareError("smbus2 is not installed: pip install 'ppg-edge[edge]'") from exc
    if not os.path.exists(path):
        raise HardwareError(
            f"no I2C bus {path}: is I2C enabled? (raspi-config > Interface Options > I2C, or "
            f"dtparam=i2c_arm=on in config.txt, then reboot) and is the MAX30102 on SDA/SCL?"
        )
    try:
        smbus = SMBus(bus)
    except OSError as exc:
        raise HardwareError(
            f"cannot open I2C bus {path}: {exc} (is this user in the 'i2c' group?)"
        ) from exc
    if int_pin is not None and driver_kw.get("wait_for_interrupt") is None:
        driver_kw["wait_for_interrupt"] = gpio_interrupt_waiter(int_pin)
    sensor = Max30102(smbus, address=address, owns_bus=True, **driver_kw)
    try:
        sensor.start()
    except BaseException:
        sensor.close()
        raise
    return sensor


def _open_emulated(*, source=None, source_fs: float | None = None, clock: Clock | None = None,
                   faults: FaultPlan | None = None, part_id: int = registers.PART_ID_VALUE,
                   loop: bool = False, use_interrupt: bool = True, adc_noise: float | None = None,
                   **driver_kw) -> Max30102:
    if source is None or source_fs is None:
        raise ConfigError(
            "the emulated sensor needs source=<array of light, nA per mA, shape (n,) or (n, 2)> "
            "and source_fs=<its rate in Hz>"
        )
    clock = clock if clock is not None else VirtualClock()
    chip = EmulatedMax30102(source, source_fs, clock=clock, faults=faults, part_id=part_id,
                            loop=loop, adc_noise=adc_noise)
    waiter = chip.wait_for_interrupt if use_interrupt else None
    sensor = Max30102(chip, clock=clock, wait_for_interrupt=waiter, owns_bus=True, **driver_kw)
    sensor.start()
    return sensor


def _open_replay(*, red=None, ir=None, fs: float | None = None, **kw) -> ReplaySensor:
    if red is None or fs is None:
        raise ConfigError("the replay sensor needs red=<ADC counts> (and ir=) and fs=<Hz>")
    return ReplaySensor(red, ir, fs=fs, **kw)


_OPENERS = {"max30102": _open_max30102, "emulated": _open_emulated, "replay": _open_replay}


def open_sensor(name: str | None = None, **kw):
    """Open and start the sensor backend ``name`` (or ``$PPG_EDGE_SENSOR``, else ``max30102``)."""
    chosen = name or os.environ.get(SENSOR_ENV) or "max30102"
    key = chosen.strip().lower()
    if key not in _OPENERS:
        origin = "" if name else f" (from {SENSOR_ENV})"
        raise ConfigError(
            f"unknown sensor backend {chosen!r}{origin}; choose one of {', '.join(BACKENDS)}"
        )
    log.debug("opening sensor backend %s", key)
    return _OPENERS[key](**kw)
