"""Energy meters: INA219/INA226 register math on chip-like fake buses, meters, the power model."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import serial

from ppg_edge.boards import load_board
from ppg_edge.errors import ConfigError, HardwareError
from ppg_edge.hil_tests.energy import (
    INA219,
    INA226,
    JoulescopeMeter,
    MeterUnavailable,
    PollingMeter,
    PowerReading,
    RaplMeter,
    SerialLineMeter,
    board_energy,
    integrate,
    open_meter,
)


class FakeINA:
    """An INA219/INA226 at register level: the chip's own arithmetic from a true current and bus voltage.

    Conversions follow the data sheets: the shunt register holds V_shunt/LSB,
    the current register shunt x CAL / 4096 (INA219) or / 2048 (INA226), the
    power register current x bus / 5000 or / 20000. Reads are big-endian
    register pairs; a wrong address NACKs (OSError 121).
    """

    def __init__(self, chip: str, address: int = 0x40, shunt_ohm: float = 0.1):
        self.chip, self.address, self.shunt_ohm = chip, address, shunt_ohm
        self.regs = {0: 0x399F if chip == "ina219" else 0x4127, 5: 0}
        if chip == "ina226":
            self.regs[0xFE], self.regs[0xFF] = 0x5449, 0x2260
        self.current_a = 0.0
        self.bus_v = 5.0
        self.writes: list[tuple[int, int]] = []

    def _check(self, addr):
        if addr != self.address:
            raise OSError(121, "Remote I/O error")

    def write_i2c_block_data(self, addr, reg, data):
        self._check(addr)
        assert len(data) == 2
        value = (data[0] << 8) | data[1]
        if self.chip == "ina219" and reg == 5:
            value &= 0xFFFE
        self.regs[reg] = value
        self.writes.append((reg, value))

    def _value(self, reg: int) -> int:
        if self.chip == "ina219":
            shunt_lsb, bus_lsb, div, pdiv = 10e-6, 4e-3, 4096, 5000
        else:
            shunt_lsb, bus_lsb, div, pdiv = 2.5e-6, 1.25e-3, 2048, 20000
        shunt = int(round(self.current_a * self.shunt_ohm / shunt_lsb))
        bus = int(round(self.bus_v / bus_lsb))
        cal = self.regs.get(5, 0)
        current = int(shunt * cal / div)
        power = int(abs(current) * bus / pdiv)
        if reg == 1:
            return shunt & 0xFFFF
        if reg == 2:
            return (bus << 3 | 0b10) if self.chip == "ina219" else bus
        if reg == 3:
            return power
        if reg == 4:
            return current & 0xFFFF
        return self.regs[reg]

    def read_i2c_block_data(self, addr, reg, n):
        self._check(addr)
        v = self._value(reg)
        return [(v >> 8) & 0xFF, v & 0xFF][:n]


def test_calibration_matches_data_sheet_examples():
    # INA219 (SBOS448 8.5.1): 0.1 ohm shunt, 100 uA current LSB -> CAL 4096
    assert INA219(FakeINA("ina219"), shunt_ohm=0.1, max_current_a=3.2768).cal == 4096
    # INA226 (SBOS547 7.5.1): 2 mOhm shunt, 1 mA current LSB -> CAL 2560
    assert INA226(FakeINA("ina226"), shunt_ohm=0.002, max_current_a=32.768).cal == 2560


@pytest.mark.parametrize("chip, cls, imax", [("ina219", INA219, 2.0), ("ina226", INA226, 0.8)])
@pytest.mark.parametrize("amps, volts", [(0.4321, 5.1), (0.7, 4.93), (-0.25, 5.0), (0.0, 3.3)])
def test_register_math_recovers_current_voltage_power(chip, cls, imax, amps, volts):
    bus = FakeINA(chip)
    ina = cls(bus, shunt_ohm=0.1, max_current_a=imax)
    ina.configure()
    assert bus.regs[5] == ina.cal and (5, ina.cal) in bus.writes
    assert bus.regs[0] & 0b111 == 0b111                       # continuous shunt + bus
    bus.current_a, bus.bus_v = amps, volts
    r = ina.read()
    shunt_lsb = 10e-6 if chip == "ina219" else 2.5e-6
    # current: shunt quantisation plus the chip's integer division, in units of I_lsb
    assert r.current_a == pytest.approx(amps, abs=shunt_lsb / 0.1 + 2 * ina.current_lsb)
    assert r.bus_v == pytest.approx(volts, abs=ina.BUS_LSB_V)
    assert r.shunt_v == pytest.approx(amps * 0.1, abs=shunt_lsb)
    assert r.power_w == pytest.approx(abs(amps) * volts, rel=0.01, abs=2 * ina.power_lsb)


def test_ina219_picks_pga_range_and_rejects_too_much():
    bus = FakeINA("ina219")
    INA219(bus, shunt_ohm=0.1, max_current_a=0.35).configure()
    assert (bus.regs[0] >> 11) & 0b11 == 0                    # 35 mV fits the 40 mV range
    with pytest.raises(ConfigError, match="320 mV"):
        INA219(FakeINA("ina219"), shunt_ohm=1.0, max_current_a=0.5).configure()


def test_ina_faults_are_hardware_errors():
    with pytest.raises(HardwareError, match="0x41.*register"):
        INA226(FakeINA("ina226", address=0x40), address=0x41).configure()   # NACK
    wrong = FakeINA("ina226")
    wrong.regs[0xFE] = 0x1234
    with pytest.raises(HardwareError, match="not an INA226"):
        INA226(wrong).configure()
    bus = FakeINA("ina219")
    ina = INA219(bus, max_current_a=2.0)
    ina.configure()
    bus._value = lambda reg, orig=bus._value: orig(reg) | (1 if reg == 2 else 0)   # OVF bit
    with pytest.raises(HardwareError, match="overflow"):
        ina.read()
    with pytest.raises(ConfigError, match="address"):
        INA219(bus, address=0x20)


def test_integrate_is_trapezoid():
    assert integrate([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(4.5)
    with pytest.raises(ValueError):
        integrate([0, 1], [1])


class ClockSensor:
    """A constant-power sensor; every read advances a fake clock by dt."""

    method = "measured: fake"

    def __init__(self, watts: float, dt: float):
        self.t, self.watts, self.dt = 0.0, watts, dt

    def clock(self) -> float:
        return self.t

    def read(self):
        self.t += self.dt
        return PowerReading(5.0, 0.0, self.watts / 5.0, self.watts)


def test_polling_meter_integrates_constant_power():
    s = ClockSensor(2.5, 0.001)
    m = PollingMeter(s, interval_s=0.0005, clock=s.clock, source="fake")
    m.start()
    import time
    time.sleep(0.05)
    fig = m.stop()
    assert fig.seconds > 0 and fig.joules == pytest.approx(2.5 * fig.seconds)
    assert fig.method.startswith("measured: fake") and fig.per_sample(100)["joules_per_sample"] == fig.joules / 100
    with pytest.raises(HardwareError, match="not started"):
        m.stop()


def test_polling_meter_reports_sensor_failure():
    class Broken:
        method = "measured: broken"
        n = 0

        def read(self):
            self.n += 1
            if self.n > 2:
                raise HardwareError("INA219 at 0x40: reading register 0x03 failed: [Errno 121]")
            return PowerReading(5, 0, 0.1, 0.5)

    m = PollingMeter(Broken(), interval_s=0.001)
    m.start()
    import time
    time.sleep(0.02)
    with pytest.raises(HardwareError, match="failed while sampling"):
        m.stop()


def test_serial_line_meter_over_loop_url():
    port = serial.serial_for_url("loop://", timeout=0.05)
    port.write(b"# meter v1\n5.0,0.5\nhello\n1.5,5.1,0.4\nnan,1\n5.0,0.1,0.2,0.3\n")
    meter = SerialLineMeter(port, name="loop")
    readings = [meter.read() for _ in range(6)]
    got = [r for r in readings if r is not None]
    assert [r.power_w for r in got] == pytest.approx([2.5, 5.1 * 0.4])
    assert meter.bad_lines == 3                               # counted, not silently dropped
    assert meter.read() is None                               # nothing more: returns after timeout
    port.close()


def test_rapl_reads_powercap_and_handles_wrap(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "energy_uj").write_text("999000000\n")
    (zone / "max_energy_range_uj").write_text("1000000000\n")
    t = iter([0.0, 2.0])
    m = RaplMeter(tmp_path, clock=lambda: next(t))
    m.start()
    (zone / "energy_uj").write_text("4000000\n")             # wrapped past 1e9 uJ
    fig = m.stop()
    assert fig.joules == pytest.approx(5.0) and fig.seconds == 2.0
    assert "host CPU package" in fig.method and fig.method.startswith("measured: RAPL")
    with pytest.raises(MeterUnavailable, match="energy can only be modelled"):
        RaplMeter(tmp_path / "absent")


@pytest.mark.skipif(Path("/sys/class/powercap/intel-rapl:0/energy_uj").exists(), reason="this host has RAPL")
def test_rapl_absent_here_is_unavailable():
    with pytest.raises(MeterUnavailable):
        open_meter("rapl")


@pytest.mark.skipif(importlib.util.find_spec("joulescope") is not None, reason="joulescope installed")
def test_joulescope_absent_is_a_clear_message():
    with pytest.raises(MeterUnavailable, match="pip install joulescope"):
        JoulescopeMeter()


def test_board_power_model_is_labelled_modelled():
    b = load_board("rpi4b")
    fig = board_energy(2.0, b)
    assert fig.joules == pytest.approx(2.0 * (5.0 - 1.6) / 4)
    assert fig.method.startswith("modelled: cpu_time x (active-idle)")
    assert b.power.active_source in fig.method and b.power.idle_source in fig.method
    per = fig.per_sample(1000)
    assert per["joules_per_sample"] == pytest.approx(fig.joules / 1000) and per["mean_w"] == pytest.approx(0.85)
    with pytest.raises(ConfigError):
        board_energy(-1.0, b)


def test_open_meter_specs():
    with pytest.raises(ConfigError, match="valid: ina219, ina226, usb, joulescope, rapl"):
        open_meter("multimeter")
    with pytest.raises(ConfigError, match="unknown options"):
        open_meter("ina219:bus=1,colour=red")
    with pytest.raises(ConfigError, match="usb:/dev/ttyUSB1"):
        open_meter("usb:")
    if not Path("/dev/i2c-1").exists():
        with pytest.raises(MeterUnavailable, match="/dev/i2c-1 does not exist"):
            open_meter("ina226:bus=1")
    m = open_meter("usb:loop://")
    assert isinstance(m, PollingMeter) and m.method.startswith("measured: USB meter")
