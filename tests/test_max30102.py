"""The real MAX30102 driver against the emulated chip, on a virtual clock."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from ppg_edge.edge_runtime.sensors import (
    SENSOR_ENV,
    EmulatedMax30102,
    FaultPlan,
    Max30102,
    Max30102Settings,
    ReplaySensor,
    VirtualClock,
    open_sensor,
)
from ppg_edge.edge_runtime.sensors import registers as R
from ppg_edge.errors import ConfigError, DataError, HardwareError


@pytest.fixture(autouse=True)
def ideal_converter(monkeypatch):
    """The register model and the driver's bookkeeping are checked on exact codes (each sample's
    code names it); the conversion noise has its own tests (test_emulated_chip.py)."""
    from ppg_edge.edge_runtime.sensors import emulated

    monkeypatch.setattr(emulated, "ADC_NOISE_FS", 0.0)


def light_for(codes, settings: Max30102Settings, current_ma: float):
    """Light (nA/mA) that the chip quantises to exactly ``codes`` at ``settings``."""
    return np.asarray(codes, float) * settings.adc_range_na / 2**settings.resolution_bits / current_ma


def make(codes_red, codes_ir=None, *, settings=None, faults=None, interrupt=False, part_id=0x15,
         source_fs=None, start=True, **driver_kw):
    settings = settings or Max30102Settings()
    codes_ir = codes_red if codes_ir is None else codes_ir
    src = np.stack([light_for(codes_red, settings, settings.red_current_ma),
                    light_for(codes_ir, settings, settings.ir_current_ma)], axis=1)
    clock = VirtualClock()
    chip = EmulatedMax30102(src, source_fs or settings.sample_rate, clock=clock, faults=faults,
                            part_id=part_id)
    drv = Max30102(chip, settings=settings, clock=clock,
                   wait_for_interrupt=chip.wait_for_interrupt if interrupt else None, **driver_kw)
    if start:
        drv.start()
    return drv, chip, clock


def collect(drv, n_blocks):
    blocks = [drv.read() for _ in range(n_blocks)]
    return blocks, np.concatenate([b.red for b in blocks]), np.concatenate([b.ir for b in blocks])


def ramp(n, bits=18, rng=None):
    rng = rng or np.random.default_rng(0)
    return rng.integers(1000, 2**bits - 2, size=n)


def test_configuration_registers_written_as_expected():
    s = Max30102Settings(sample_rate=200, averaging=4, pulse_width_us=215, adc_range_na=8192,
                         red_current_ma=6.4, ir_current_ma=12.2, almost_full=20, rollover=False)
    drv, chip, _ = make(np.full(100, 5000), settings=s)
    writes = dict(chip.register_writes)  # last value per register
    assert writes[R.FIFO_CONFIG] == (2 << 5) | 12  # SMP_AVE=4, no rollover, 12 free slots
    assert writes[R.SPO2_CONFIG] == (2 << 5) | (2 << 2) | 2  # 8192 nA, 200 sps, 215 us
    assert writes[R.LED1_PA] == 32 and writes[R.LED2_PA] == 61
    assert writes[R.MODE_CONFIG] == R.MODE_SPO2
    assert writes[R.INT_ENABLE_1] == R.INT_A_FULL
    order = [reg for reg, _ in chip.register_writes]
    assert order[0] == R.MODE_CONFIG and chip.register_writes[0][1] == R.MODE_RESET  # reset first
    assert order[-1] == R.MODE_CONFIG  # sampling starts last, after the FIFO is cleared
    assert {R.FIFO_WR_PTR, R.OVF_COUNTER, R.FIFO_RD_PTR} <= set(order)


@pytest.mark.parametrize("pulse_width_us,bits", [(69, 15), (118, 16), (215, 17), (411, 18)])
def test_samples_out_equal_samples_in(pulse_width_us, bits, rng):
    s = Max30102Settings(pulse_width_us=pulse_width_us)
    red, ir = ramp(500, bits, rng), ramp(500, bits, rng)
    drv, chip, _ = make(red, ir, settings=s)
    blocks, got_red, got_ir = collect(drv, 20)
    n = got_red.size
    assert n >= 17 * 20
    np.testing.assert_array_equal(got_red, red[:n])  # red and IR not swapped
    np.testing.assert_array_equal(got_ir, ir[:n])
    assert got_red.dtype == np.int32 and blocks[0].resolution_bits == bits
    idx = np.concatenate([b.index for b in blocks])
    np.testing.assert_array_equal(idx, np.arange(n))
    assert drv.samples_read == n and drv.samples_lost == 0 and not drv.events
    assert chip.underflow_reads == 0


def test_pointer_wrap_over_many_blocks_and_two_transfers_per_block(rng):
    red = ramp(3000, rng=rng)
    drv, chip, _ = make(red)
    before = chip.transfers
    blocks, got, _ = collect(drv, 100)
    assert chip.produced > 50 * 32  # the 5-bit pointers wrapped many times
    np.testing.assert_array_equal(got, red[: got.size])
    assert chip.transfers - before == 2 * len(blocks)  # pointers+status, one FIFO burst
    assert all(len(b) == 17 for b in blocks)


@pytest.mark.parametrize("rollover", [True, False])
def test_late_reader_loses_exactly_the_overflowed_samples(rollover, rng):
    red = ramp(2000, rng=rng)
    s = Max30102Settings(rollover=rollover)
    drv, chip, clock = make(red, settings=s)
    first = drv.read()
    assert (first.first_index, len(first)) == (0, 17)
    clock.advance(1.0)  # the reader stalls 1 s at 100 sps
    t = clock.now()
    late = drv.read()
    produced = int(np.floor((t - 0.0) * 100 + 1e-9)) - 17
    assert produced == 100
    assert len(late) == 32 and late.lost == 68 and drv.samples_lost == 68
    assert chip.lost == 68  # the chip's own count agrees
    if rollover:  # newest kept: the gap is before the block
        assert late.first_index == 17 + 68
    else:  # oldest kept: the gap comes after it
        assert late.first_index == 17
    np.testing.assert_array_equal(late.red, red[late.index])
    (ev,) = [e for e in drv.events if e.kind == "overflow"]
    assert ev.detail["lost"] == 68 and ev.detail["estimated"] is True
    nxt = drv.read()
    assert nxt.first_index == 17 + 32 + 68 and nxt.lost == 0
    np.testing.assert_array_equal(nxt.red, red[nxt.index])


def test_small_overflow_is_counted_from_ovf_counter(rng):
    red = ramp(1000, rng=rng)
    drv, chip, clock = make(red)
    drv.read()
    clock.advance(0.37)  # 37 samples waiting for a 32 deep FIFO: 5 lost, counter not saturated
    late = drv.read()
    assert late.lost == 5 and chip.lost == 5
    ev = [e for e in drv.events if e.kind == "overflow"][-1]
    assert ev.detail["estimated"] is False
    np.testing.assert_array_equal(late.red, red[late.index])


def test_exactly_full_fifo_does_not_look_empty(rng):
    red = ramp(500, rng=rng)
    drv, chip, clock = make(red)
    drv.read()  # 17 samples, t = 0.17
    clock.advance(0.32 - 0.17 + 0.17)  # exactly 32 new samples, WR == RD, OVF == 0
    block = drv.read()
    assert len(block) == 32 and block.lost == 0 and chip.lost == 0
    np.testing.assert_array_equal(block.red, red[17:49])


def test_on_chip_averaging(rng):
    conv = ramp(4000, rng=rng)
    s = Max30102Settings(sample_rate=400, averaging=4)
    drv, chip, clock = make(conv, settings=s)
    blocks, got, _ = collect(drv, 10)
    assert drv.settings.output_rate == 100
    expected = conv[: got.size * 4].reshape(-1, 4).sum(axis=1) // 4
    np.testing.assert_array_equal(got, expected)
    assert clock.now() == pytest.approx(got.size / 100)  # a quarter of the conversion rate


def test_wrong_part_id_is_a_hardware_error():
    with pytest.raises(HardwareError) as err:
        make(np.full(10, 100), part_id=0x11)
    msg = str(err.value)
    assert "0x57" in msg and "0x11" in msg and "0x15" in msg
    # it never touched the unknown device's configuration
    drv, chip, _ = make(np.full(10, 100), part_id=0x11, start=False)
    with pytest.raises(HardwareError):
        drv.start()
    assert chip.register_writes == [] and drv.events[-1].kind == "part_id"


def test_i2c_error_bursts_are_retried_and_counted(rng):
    red = ramp(2000, rng=rng)
    faults = FaultPlan(fail_transfers=FaultPlan.burst(40, 3) | FaultPlan.burst(70, 2) | {5})
    drv, chip, _ = make(red, faults=faults)
    blocks, got, _ = collect(drv, 30)
    np.testing.assert_array_equal(got, red[: got.size])  # nothing lost, nothing doubled
    assert drv.i2c_errors == 6 == chip.failed_transfers
    assert drv.i2c_retries == 6
    assert drv.samples_lost == 0
    recovered = [e for e in drv.events if e.kind == "i2c_error"]
    assert recovered and all(e.detail["recovered"] is not False for e in recovered)


def test_persistent_i2c_errors_raise_in_bounded_time():
    drv, chip, clock = make(np.full(5000, 1000), faults=FaultPlan(fail_from=60), max_retries=4)
    t_wall = time.monotonic()
    with pytest.raises(HardwareError) as err:
        for _ in range(100):
            drv.read()
    assert time.monotonic() - t_wall < 5
    assert "failed 5 times in a row" in str(err.value) and "0x57" in str(err.value)
    assert drv.i2c_errors == 5 and drv.i2c_retries == 4
    assert sum(clock.sleeps[-4:]) < 0.1  # back-off 1, 2, 4, 8 ms
    assert drv.events[-1].kind == "i2c_error" and drv.events[-1].detail["recovered"] is False


def test_fifo_bursts_that_always_fail_end_in_an_error_not_a_loop():
    drv, chip, clock = make(np.full(5000, 1000), faults=FaultPlan(fifo_reads_fail=True),
                            max_retries=3)
    t_wall = time.monotonic()
    with pytest.raises(HardwareError, match="FIFO burst read .* failed 4 times in a row"):
        drv.read()
    assert time.monotonic() - t_wall < 5
    assert drv.i2c_errors == 4 and drv.i2c_retries == 3


def test_burst_cut_off_midway_counts_popped_samples_as_lost(rng):
    red = ramp(2000, rng=rng)
    drv, chip, _ = make(red, start=False)
    drv.start()
    burst_no = chip.transfers + 2 * 3 + 2  # the FIFO burst of the fourth read
    chip.faults = FaultPlan(partial_bursts=frozenset({burst_no}))
    blocks, got, _ = collect(drv, 8)
    idx = np.concatenate([b.index for b in blocks])
    np.testing.assert_array_equal(got, red[idx])
    assert drv.samples_lost == 17 == chip.produced - chip.unread - drv.samples_read
    assert drv.samples_read + drv.samples_lost == idx[-1] + 1


def test_saturation_is_flagged_not_passed_silently():
    s = Max30102Settings()
    codes = np.full(300, 2**18 - 1)
    codes[:100] = 50_000
    drv, chip, _ = make(codes, settings=s)
    blocks, got, _ = collect(drv, 10)
    sat = np.concatenate([b.saturated for b in blocks])
    np.testing.assert_array_equal(sat, got == 2**18 - 1)
    assert sat[:100].sum() == 0 and sat[100:].all()
    assert drv.samples_saturated == int(sat.sum())
    assert sum(e.detail["samples"] for e in drv.events if e.kind == "saturation") == int(sat.sum())
    # ambient light flooding the photodiode (fault plan), at 15-bit resolution
    s15 = Max30102Settings(pulse_width_us=69)
    drv, _, _ = make(np.full(300, 1000), settings=s15,
                     faults=FaultPlan(saturate_between_s=(0.5, 0.6)))
    blocks, got, _ = collect(drv, 10)
    sat = np.concatenate([b.saturated for b in blocks])
    np.testing.assert_array_equal(np.flatnonzero(sat), np.arange(50, 60))
    assert got[sat].tolist() == [2**15 - 1] * 10


def test_polling_without_interrupt_sleeps_once_per_block(rng):
    red = ramp(2000, rng=rng)
    drv, chip, clock = make(red)
    n0 = len(clock.sleeps)
    blocks, got, _ = collect(drv, 50)
    sleeps = clock.sleeps[n0:]
    assert len(sleeps) == 50  # one timed wait per block, no spinning
    assert all(s == pytest.approx(0.17) for s in sleeps)
    assert chip.transfers <= 2 * 50 + 20  # set-up plus two transfers per block
    assert got.size == 50 * 17


def test_interrupt_pacing_and_missing_interrupt_line(rng):
    red = ramp(2000, rng=rng)
    calls = []
    drv, chip, clock = make(red, interrupt=True)
    wrapped = drv._wait_irq
    drv._wait_irq = lambda timeout: calls.append(timeout) or wrapped(timeout)
    blocks, got, _ = collect(drv, 20)
    assert len(calls) == 20 and all(len(b) == 17 for b in blocks)
    np.testing.assert_array_equal(got, red[: got.size])
    # INT not wired: one timed-out wait, an event, then timed polling; nothing lost
    drv, chip, clock = make(red, interrupt=True, faults=FaultPlan(int_not_wired=True))
    blocks, got, _ = collect(drv, 20)
    assert [e.kind for e in drv.events] == ["interrupt_missing"]
    assert drv.samples_lost == 0
    np.testing.assert_array_equal(got, red[: got.size])


def test_reset_errno5_is_tolerated():
    drv, chip, _ = make(np.full(200, 3000), faults=FaultPlan(reset_errno5=True, reset_busy_s=0.004))
    assert drv.reset_nacks >= 2 and chip.resets == 1
    assert drv.i2c_errors == 0
    block = drv.read()
    assert len(block) == 17 and (block.red == 3000).all()


def test_chip_that_never_leaves_reset_is_an_error_not_a_hang():
    t_wall = time.monotonic()
    with pytest.raises(HardwareError, match="did not come out of reset"):
        make(np.full(200, 3000), faults=FaultPlan(reset_busy_s=60.0))
    assert time.monotonic() - t_wall < 5


def test_finger_off_low_dc_passes_through(rng):
    # no finger: little light reaches the photodiode; quality is judged downstream
    level = rng.normal(40, 3, size=500).clip(1).round()
    drv, _, _ = make(level)
    blocks, got, _ = collect(drv, 10)
    np.testing.assert_array_equal(got, level[: got.size])
    assert not drv.events and drv.samples_lost == 0


def test_stuck_fifo_gives_stall_events_then_an_error():
    drv, chip, clock = make(np.full(5000, 1000), faults=FaultPlan(stuck_fifo_after_s=0.5),
                            max_stalls=3, read_timeout_s=0.5)
    got = sum(len(drv.read()) for _ in range(3))
    assert got == 50
    assert len(drv.read()) == 0 and drv.events[-1].kind == "stall"
    assert len(drv.read()) == 0
    with pytest.raises(HardwareError, match="FIFO not advancing"):
        drv.read()
    assert clock.now() < 3.0 and len(clock.sleeps) < 30
    assert chip.underflow_reads == 0


def test_blocks_stop_at_the_end_of_the_source(rng):
    red = ramp(345, rng=rng)
    drv, chip, _ = make(red)
    got = np.concatenate([b.red for b in drv.blocks()])
    np.testing.assert_array_equal(got, red)
    drv2, _, _ = make(red)
    n = sum(len(b) for b in drv2.blocks(n_samples=100))
    assert 100 <= n < 100 + 32


@pytest.mark.parametrize("field,value", [
    ("sample_rate", 123), ("averaging", 3), ("pulse_width_us", 100), ("adc_range_na", 1000),
    ("red_current_ma", 0.3), ("ir_current_ma", 52.0), ("red_current_ma", -0.2),
    ("ir_current_ma", float("nan")), ("almost_full", 16), ("almost_full", 33),
])
def test_settings_validation(field, value):
    with pytest.raises(ConfigError, match=field):
        Max30102Settings(**{field: value})


def test_settings_encode_the_datasheet_fields():
    s = Max30102Settings(sample_rate=3200, averaging=32, pulse_width_us=69, adc_range_na=16384,
                         red_current_ma=51.0, ir_current_ma=0.0, almost_full=32)
    regs = s.register_values()
    assert regs[R.FIFO_CONFIG] == (5 << 5) | R.FIFO_ROLLOVER_EN | 0
    assert regs[R.SPO2_CONFIG] == (3 << 5) | (7 << 2) | 0
    assert regs[R.LED1_PA] == 0xFF and regs[R.LED2_PA] == 0
    assert s.resolution_bits == 15 and s.output_rate == 100


def test_open_sensor_by_name_and_environment(monkeypatch):
    src = np.full(400, 100.0)
    monkeypatch.setenv(SENSOR_ENV, "emulated")
    sensor = open_sensor(source=src, source_fs=100)
    assert isinstance(sensor, Max30102) and isinstance(sensor.bus, EmulatedMax30102)
    assert len(sensor.read()) == 17
    sensor.close()
    monkeypatch.setenv(SENSOR_ENV, "bogus")
    with pytest.raises(ConfigError, match="PPG_EDGE_SENSOR"):
        open_sensor()
    with pytest.raises(ConfigError, match="max30102, emulated, replay"):
        open_sensor("nope")
    with pytest.raises(ConfigError, match="source"):
        open_sensor("emulated")


def test_real_backend_without_i2c_bus_says_how_to_enable_it():
    with pytest.raises(HardwareError, match=r"no I2C bus /dev/i2c-97: is I2C enabled\?"):
        open_sensor("max30102", bus=97)


def test_replay_backend():
    red = np.arange(100)
    sensor = open_sensor("replay", red=red, ir=red * 2, fs=50, block_size=30)
    blocks = list(sensor.blocks())
    assert [len(b) for b in blocks] == [30, 30, 30, 10] and sensor.exhausted
    np.testing.assert_array_equal(np.concatenate([b.ir for b in blocks]), red * 2)
    assert [b.first_index for b in blocks] == [0, 30, 60, 90]
    assert len(sensor.read()) == 0
    clock = VirtualClock()
    paced = ReplaySensor(red, fs=50, block_size=25, clock=clock)
    paced.read()
    assert clock.now() == pytest.approx(0.5)
    with pytest.raises(DataError, match="non-integer"):
        ReplaySensor(np.linspace(0, 1, 10), fs=50)
    with pytest.raises(DataError, match="non-finite"):
        ReplaySensor(np.array([1.0, np.nan]), fs=50)
    with pytest.raises(DataError, match="lengths differ"):
        ReplaySensor(red, red[:5], fs=50)


def test_edge_runtime_sensors_import_no_tensorflow_or_scipy():
    code = ("import sys, ppg_edge.edge_runtime.sensors as s; "
            "bad = [m for m in ('tensorflow', 'scipy', 'smbus2') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sample_clock_estimate_follows_a_drifting_chip(rng):
    """A chip whose crystal runs 2 % fast: timed polling re-anchors on exact pointer
    observations, and the loss estimate past OVF_COUNTER's 31 uses the measured rate
    (within one sample: the phase between observations is unknown)."""
    red = ramp(20_000, rng=rng)
    s = Max30102Settings()
    clock = VirtualClock()
    src = np.stack([light_for(red, s, s.red_current_ma)] * 2, axis=1)
    chip = EmulatedMax30102(src, 102.0, clock=clock, faults=FaultPlan(rate_error=0.02))
    drv = Max30102(chip, settings=s, clock=clock)
    drv.start()
    for _ in range(200):  # 34 s of reading: 68 samples of drift, all absorbed
        drv.read()
    assert drv.samples_lost == 0
    clock.advance(2.0)
    drv.read()
    assert chip.lost > 31  # beyond what OVF_COUNTER can say
    assert abs(drv.samples_lost - chip.lost) <= 1
    assert drv.events[-1].detail["estimated"] is True
