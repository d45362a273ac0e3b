"""The emulated MAX30102 on its own: registers, FIFO, quantisation, faults, clocks."""
from __future__ import annotations

import errno

import numpy as np
import pytest
from smbus2 import i2c_msg

from ppg_edge.edge_runtime.sensors import registers as R
from ppg_edge.edge_runtime.sensors._i2c import SimpleI2cMsg
from ppg_edge.edge_runtime.sensors.clock import AcceleratedClock, VirtualClock
from ppg_edge.edge_runtime.sensors.emulated import EmulatedMax30102, FaultPlan
from ppg_edge.errors import ConfigError, DataError, PPGEdgeError


@pytest.fixture(autouse=True)
def ideal_converter(monkeypatch):
    """The register model and the driver's bookkeeping are checked on exact codes (each sample's
    code names it); the conversion noise has its own tests (test_emulated_chip.py)."""
    from ppg_edge.edge_runtime.sensors import emulated

    monkeypatch.setattr(emulated, "ADC_NOISE_FS", 0.0)

A = R.ADDRESS


def make_chip(source=None, fs=100.0, **kw):
    clock = kw.pop("clock", None) or VirtualClock()
    if source is None:
        source = np.full(10_000, 100.0)
    return EmulatedMax30102(source, fs, clock=clock, **kw), clock


def configure(chip, *, sr_code=1, pw_code=3, rge_code=1, smp_ave=0, rollover=True, a_full=0xF,
              led=50, mode=R.MODE_SPO2):
    chip.write_byte_data(A, R.FIFO_CONFIG, (smp_ave << 5) | (R.FIFO_ROLLOVER_EN if rollover else 0) | a_full)
    chip.write_byte_data(A, R.SPO2_CONFIG, (rge_code << 5) | (sr_code << 2) | pw_code)
    chip.write_byte_data(A, R.LED1_PA, led)
    chip.write_byte_data(A, R.LED2_PA, led)
    chip.write_byte_data(A, R.MODE_CONFIG, mode)


def burst(chip, n, msg=i2c_msg):
    w, r = msg.write(A, [R.FIFO_DATA]), msg.read(A, 6 * n)
    chip.i2c_rdwr(w, r)
    b = np.frombuffer(bytes(r), dtype=np.uint8).reshape(n, 6).astype(np.int64)
    red = (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
    ir = (b[:, 3] << 16) | (b[:, 4] << 8) | b[:, 5]
    return red, ir


def pointers(chip):
    return (chip.read_byte_data(A, R.FIFO_WR_PTR), chip.read_byte_data(A, R.OVF_COUNTER),
            chip.read_byte_data(A, R.FIFO_RD_PTR))


def test_identity_and_reset_self_clears():
    chip, _ = make_chip(part_id=0x11)
    assert chip.read_byte_data(A, R.PART_ID) == 0x11
    chip2, _ = make_chip()
    assert chip2.read_byte_data(A, R.PART_ID) == 0x15
    configure(chip2)
    assert chip2.read_byte_data(A, R.SPO2_CONFIG) != 0
    chip2.write_byte_data(A, R.MODE_CONFIG, R.MODE_RESET)
    assert chip2.read_byte_data(A, R.MODE_CONFIG) == 0  # RESET bit cleared, mode back to 0
    assert chip2.read_byte_data(A, R.SPO2_CONFIG) == 0
    assert chip2.read_byte_data(A, R.PART_ID) == 0x15  # read-only, survives reset
    chip2.write_byte_data(A, R.PART_ID, 0x00)
    assert chip2.read_byte_data(A, R.PART_ID) == 0x15


def test_wrong_address_is_a_nack():
    chip, _ = make_chip()
    with pytest.raises(OSError) as err:
        chip.read_byte_data(0x58, R.PART_ID)
    assert err.value.errno == errno.EREMOTEIO


def test_samples_appear_as_time_passes_and_pointers_wrap():
    src = np.arange(1, 201, dtype=float) * 10  # distinct values
    chip, clock = make_chip(src, fs=100)
    configure(chip, led=5)  # 1 mA, 4096 nA range, 18 bit
    assert pointers(chip) == (0, 0, 0)
    clock.advance(0.25)
    wr, ovf, rd = pointers(chip)
    assert (wr, ovf, rd) == (25, 0, 0)
    got, seen_wr = [], []
    for _ in range(4):  # 4 x 25 samples: write and read pointers wrap past 31
        wr, _, rd = pointers(chip)
        seen_wr.append(wr)
        red, _ = burst(chip, (wr - rd) % 32)
        got.extend(red.tolist())
        clock.advance(0.25)
    assert seen_wr == [25, 50 % 32, 75 % 32, 100 % 32]
    expected = np.rint(src[:100] * 1.0 / 4096 * 2**18)
    np.testing.assert_array_equal(got, expected)
    assert pointers(chip)[0] == 125 % 32
    assert chip.produced == 125 and chip.underflow_reads == 0


@pytest.mark.parametrize("rollover", [True, False])
def test_overflow_counter_saturates_and_rollover_decides_which_samples_stay(rollover):
    src = np.arange(1000, dtype=float)
    chip, clock = make_chip(src, fs=100)
    configure(chip, led=5, rollover=rollover)
    clock.advance(0.2)
    assert pointers(chip) == (20, 0, 0)
    clock.advance(0.13)  # 33 produced: one lost
    wr, ovf, rd = pointers(chip)
    assert ovf == 1 and wr == rd
    clock.advance(1.0)  # 133 produced, 101 lost: the counter saturates
    wr, ovf, rd = pointers(chip)
    assert ovf == 0x1F and chip.lost == 101 and chip.produced == 133 and wr == rd
    red, _ = burst(chip, 32)
    kept = np.arange(101, 133) if rollover else np.arange(0, 32)
    np.testing.assert_array_equal(red, np.rint(kept / 4096 * 2**18))
    assert pointers(chip)[1] == 0  # OVF cleared once a sample is popped
    assert chip.underflow_reads == 0


def test_fifo_data_advances_rd_ptr_per_whole_sample_only():
    chip, clock = make_chip()
    configure(chip)
    clock.advance(0.05)
    w, r = i2c_msg.write(A, [R.FIFO_DATA]), i2c_msg.read(A, 3)  # half a sample
    chip.i2c_rdwr(w, r)
    assert pointers(chip)[2] == 0
    burst(chip, 2)
    assert pointers(chip)[2] == 2
    # reading past the data is an underflow the chip counts (the driver must never do it)
    burst(chip, 4)
    assert chip.underflow_reads == 1


def test_status_bits_latch_and_clear_on_read():
    chip, clock = make_chip()
    configure(chip, a_full=0xF)  # A_FULL at 17 unread
    assert chip.read_byte_data(A, R.INT_STATUS_1) & R.INT_PWR_RDY
    assert chip.read_byte_data(A, R.INT_STATUS_1) == 0
    clock.advance(0.16)
    st = chip.read_byte_data(A, R.INT_STATUS_1)
    assert st & R.INT_PPG_RDY and not st & R.INT_A_FULL
    clock.advance(0.01)
    assert chip.read_byte_data(A, R.INT_STATUS_1) & R.INT_A_FULL
    assert chip.read_byte_data(A, R.INT_STATUS_1) == 0


def test_interrupt_line_wait_lands_on_the_almost_full_sample():
    chip, clock = make_chip()
    configure(chip, a_full=0xF)
    chip.read_byte_data(A, R.INT_STATUS_1)
    assert not chip.int_asserted  # A_FULL not enabled yet
    chip.write_byte_data(A, R.INT_ENABLE_1, R.INT_A_FULL)
    assert chip.wait_for_interrupt(1.0) is True
    assert clock.now() == pytest.approx(0.17)
    assert chip.unread == 17
    # not wired: waits the whole timeout and reports no edge
    chip2, clock2 = make_chip(faults=FaultPlan(int_not_wired=True))
    configure(chip2)
    chip2.write_byte_data(A, R.INT_ENABLE_1, R.INT_A_FULL)
    assert chip2.wait_for_interrupt(0.5) is False
    assert clock2.now() == pytest.approx(0.5)


@pytest.mark.parametrize("pw_code,bits", [(0, 15), (1, 16), (2, 17), (3, 18)])
def test_resolution_follows_pulse_width_and_is_left_justified(pw_code, bits):
    level = 1234.5678  # nA per mA
    chip, clock = make_chip(np.full(100, level))
    configure(chip, pw_code=pw_code, rge_code=2, led=25)  # 8192 nA, 5 mA
    clock.advance(0.05)
    red, _ = burst(chip, 5)
    native = round(level * 5.0 / 8192 * 2**bits)
    np.testing.assert_array_equal(red, native << (18 - bits))
    assert np.all(red & ((1 << (18 - bits)) - 1) == 0)


def test_adc_range_and_led_current_scale_the_light():
    def code(rge_code, led):
        chip, clock = make_chip(np.full(100, 200.0))
        configure(chip, rge_code=rge_code, led=led)
        clock.advance(0.01)
        return int(burst(chip, 1)[0][0])

    assert code(0, 10) == round(200 * 2.0 / 2048 * 2**18)
    assert code(1, 10) * 2 == code(0, 10)  # twice the range: half the code
    assert code(1, 20) == code(0, 10)  # twice the current: twice the light
    assert code(0, 0) == 0  # LED off
    assert code(0, 255) == 2**18 - 1  # clipped at full scale


def test_averaging_divides_the_rate_and_averages_codes():
    src = np.arange(4000, dtype=float) * 3.0
    chip, clock = make_chip(src, fs=400)
    configure(chip, sr_code=3, smp_ave=2, led=5)  # 400 sps, average 4 -> 100 per s
    clock.advance(0.1)  # 40 conversions -> 10 samples
    wr, _, rd = pointers(chip)
    assert (wr - rd) % 32 == 10
    red, _ = burst(chip, 10)
    conv = np.rint(src[:40] / 4096 * 2**18).astype(np.int64)
    np.testing.assert_array_equal(red, conv.reshape(10, 4).sum(axis=1) // 4)
    # a partial group carries over between updates
    clock.advance(0.0075)  # 3 more conversions: no sample yet
    assert (pointers(chip)[0] - pointers(chip)[2]) % 32 == 0
    clock.advance(0.0025)
    red, _ = burst(chip, 1)
    assert red[0] == np.rint(src[40:44] / 4096 * 2**18).astype(np.int64).sum() // 4


def test_hr_mode_serves_red_only():
    chip, clock = make_chip(np.stack([np.full(100, 10.0), np.full(100, 20.0)], axis=1))
    configure(chip, mode=R.MODE_HR)
    clock.advance(0.02)
    w, r = i2c_msg.write(A, [R.FIFO_DATA]), i2c_msg.read(A, 6)
    chip.i2c_rdwr(w, r)
    raw = bytes(r)
    assert raw[:3] == raw[3:]  # two red samples, no IR
    assert pointers(chip)[2] == 2


def test_fault_plan_errors_on_chosen_transfers():
    chip, _ = make_chip(faults=FaultPlan(fail_transfers=FaultPlan.burst(2, 2)))
    chip.read_byte_data(A, R.PART_ID)
    for _ in range(2):
        with pytest.raises(OSError) as err:
            chip.read_byte_data(A, R.PART_ID)
        assert err.value.errno == errno.EIO
    assert chip.read_byte_data(A, R.PART_ID) == 0x15
    assert chip.failed_transfers == 2


def test_stuck_fifo_and_saturation_window():
    chip, clock = make_chip(faults=FaultPlan(stuck_fifo_after_s=0.1, saturate_between_s=(0.05, 0.08)))
    configure(chip, led=5)
    clock.advance(1.0)
    wr, ovf, rd = pointers(chip)
    assert (wr - rd) % 32 == 10 and ovf == 0
    red, ir = burst(chip, 10)
    sat = red == 2**18 - 1
    np.testing.assert_array_equal(np.flatnonzero(sat), [5, 6, 7])
    np.testing.assert_array_equal(sat, ir == 2**18 - 1)


def test_source_exhaustion_and_loop():
    chip, clock = make_chip(np.arange(50, dtype=float), fs=100)
    configure(chip, led=5)
    clock.advance(0.3)
    assert not chip.exhausted and chip.produced == 30
    clock.advance(0.3)
    assert chip.exhausted and chip.produced == 50
    looped, clock2 = make_chip(np.arange(50, dtype=float), fs=100, loop=True)
    configure(looped, led=5, rollover=True)
    clock2.advance(0.6)
    assert not looped.exhausted and looped.produced == 60
    red, _ = burst(looped, 32)  # the newest 32: source samples 28..49 then 0..9 again
    expected = np.rint(np.r_[np.arange(28, 50), np.arange(0, 10)] / 4096 * 2**18)
    np.testing.assert_array_equal(red, expected)


def test_simple_message_type_works_like_smbus2():
    chip, clock = make_chip()
    configure(chip)
    clock.advance(0.03)
    red_a, ir_a = burst(chip, 1, msg=i2c_msg)
    red_b, ir_b = burst(chip, 1, msg=SimpleI2cMsg)
    assert red_a[0] == red_b[0] and ir_a[0] == ir_b[0]
    w = SimpleI2cMsg.write(A, [R.FIFO_WR_PTR])
    r = SimpleI2cMsg.read(A, 3)
    chip.i2c_rdwr(w, r)
    assert list(r) == [3, 0, 2]  # WR, OVF, RD auto-increment


@pytest.mark.parametrize("source,fs,exc", [
    (np.array([1.0, np.nan, 2.0]), 100, DataError),
    (np.zeros((10, 3)), 100, DataError),
    (np.zeros(1), 100, DataError),
    (np.zeros(10), 0, ConfigError),
    (np.zeros(10), float("nan"), ConfigError),
])
def test_bad_sources_are_refused(source, fs, exc):
    with pytest.raises(exc) as err:
        EmulatedMax30102(source, fs)
    assert isinstance(err.value, PPGEdgeError)


def test_clocks():
    clock = VirtualClock(5.0)
    clock.sleep(0.5)
    clock.advance(1.0)
    assert clock.now() == 6.5 and clock.sleeps == [0.5]
    counting = VirtualClock(keep_sleeps=False)  # hours of accelerated signal: counts, no list
    for _ in range(3):
        counting.sleep(0.25)
    assert counting.sleeps == [] and counting.n_sleeps == 3 and counting.slept_s == 0.75 and counting.now() == 0.75
    with pytest.raises(ValueError):
        clock.sleep(-1)
    with pytest.raises(ValueError):
        clock.advance(-1)
    fast = AcceleratedClock(1000.0)
    t0 = fast.now()
    fast.sleep(2.0)  # 2 ms of real time
    assert fast.now() - t0 >= 2.0
    with pytest.raises(ValueError):
        AcceleratedClock(0)


@pytest.mark.parametrize("mode, n_read", [(R.MODE_SPO2, 20), (R.MODE_SPO2, 40), (R.MODE_HR, 25)])
def test_fifo_burst_is_byte_for_byte_what_single_byte_reads_give(mode, n_read):
    """The chip serves a FIFO_DATA burst in one pass; it must equal reading the same bytes one
    at a time (the datasheet's per-byte semantics: pop at each whole sample, repeat the sample at
    RD_PTR past the last unread one), with the same pointers, flags and underflow count after."""
    rng = np.random.default_rng(3)
    source = 100.0 + rng.standard_normal(5000)
    chips = []
    for _ in range(2):
        chip, clock = make_chip(source, fs=100.0)
        configure(chip, sr_code=1, smp_ave=1, mode=mode)  # 100 sps, 2-sample averaging
        clock.sleep(0.3)  # 15 samples waiting
        chips.append(chip)
    bps = 6 if mode == R.MODE_SPO2 else 3
    length = bps * n_read + 2  # more samples than are unread, and a sample read in part
    w, r = i2c_msg.write(A, [R.FIFO_DATA]), i2c_msg.read(A, length)
    chips[0].i2c_rdwr(w, r)
    one_by_one = bytearray()
    for _ in range(length):  # the register pointer stays at FIFO_DATA; the sample position carries
        one_by_one.append(chips[1]._read_reg(R.FIFO_DATA))
    assert bytes(r) == bytes(one_by_one)
    assert pointers(chips[0]) == pointers(chips[1])
    assert chips[0].underflow_reads == chips[1].underflow_reads > 0
    assert chips[0].unread == chips[1].unread == 0


def test_status_block_read_brings_the_chip_up_to_the_clock_once():
    """A 7-byte INT_STATUS..FIFO_RD_PTR read sees the FIFO as the clock has it at the transfer."""
    chip, clock = make_chip()
    configure(chip, sr_code=1)  # 100 sps
    clock.sleep(0.205)
    w, r = i2c_msg.write(A, [R.INT_STATUS_1]), i2c_msg.read(A, 7)
    chip.i2c_rdwr(w, r)
    raw = bytes(r)
    assert raw[4] & R.POINTER_MASK == 20 and raw[6] & R.POINTER_MASK == 0
    assert raw[0] & R.INT_PPG_RDY


@pytest.mark.parametrize("start", [0.0, 65000.0])
def test_accounting_stays_exact_late_in_a_long_run(start):
    """A float clock 18 h into a soak carries rounding larger than a 1e-9-conversion tolerance:
    the chip then left a due conversion for the next read and the driver, after a stall,
    counted a sample lost that the chip never lost. Exact at any clock origin."""
    from ppg_edge.edge_runtime.sensors import Max30102, Max30102Settings

    clock = VirtualClock(start)
    fs_src = 250.0
    t = np.arange(int(700 * fs_src)) / fs_src
    light = 50_000 + 400 * np.sin(2 * np.pi * 1.1 * t)
    chip = EmulatedMax30102(light, fs_src, clock=clock)
    drv = Max30102(chip, settings=Max30102Settings(sample_rate=400, averaging=8, almost_full=24), clock=clock,
                   wait_for_interrupt=chip.wait_for_interrupt)
    drv.start()
    read = 0
    for k, block in enumerate(drv.blocks(duration_s=600.0)):
        read += len(block)
        if k % 40 == 39:
            clock.sleep(2.0)  # a stalled reader: the FIFO overflows
    assert chip.lost > 0
    assert drv.samples_lost == chip.lost, (drv.samples_lost, chip.lost)
    assert read + drv.samples_lost == chip.produced
    assert not any(e.kind == "interrupt_missing" for e in getattr(drv, "events", []))


# ------------------------------------------------------------------ conversion noise
def test_conversion_noise_is_the_measured_size_and_a_function_of_the_conversion_alone(monkeypatch):
    from ppg_edge.edge_runtime.sensors import emulated

    monkeypatch.setattr(emulated, "ADC_NOISE_FS", 16.0 / (1 << 18))
    g = emulated.conversion_noise(np.arange(100_000))
    assert abs(g.mean()) < 0.02 and abs(g.std() - 1.0) < 0.02
    assert abs(np.corrcoef(g[:-1, 1], g[1:, 1])[0, 1]) < 0.02 and abs(np.corrcoef(g[:, 0], g[:, 1])[0, 1]) < 0.02
    np.testing.assert_array_equal(emulated.conversion_noise(np.arange(500, 600)), g[500:600])

    def codes(**kw):
        chip, clock = make_chip(np.full(2000, 100.0), fs=100, **kw)  # a constant light
        configure(chip, led=5)  # 100 sps, 18 bits
        out = []
        for _ in range(12):
            clock.advance(0.25)
            wr, _, rd = pointers(chip)
            out += burst(chip, (wr - rd) % 32)[1].tolist()
        return np.array(out)

    noisy = codes()  # only the noise moves the codes
    assert noisy.size == 300 and 12 < noisy.std() < 20  # 16 codes of 18 bits per conversion
    assert np.mean(np.diff(noisy) == 0) < 0.06  # a live conversion seldom repeats (a noiseless one: always)
    np.testing.assert_array_equal(codes(), noisy)  # the same on every run
    assert np.ptp(codes(adc_noise=0.0)) == 0
    with pytest.raises(ConfigError, match="adc_noise"):
        make_chip(adc_noise=-1.0)
