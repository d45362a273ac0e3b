"""MAX30102 register map and field encodings, shared by the driver and the emulated chip.

Facts from the Maxim/Analog Devices MAX30102 datasheet (rev. 1), as summarised in
``docs/facts.md``: 7-bit I2C address 0x57, PART_ID 0x15, a 32-sample FIFO with 5-bit
write/read pointers and an overflow counter that saturates at 0x1F, 18-bit samples
(3 bytes per channel, red first then IR in SpO2 mode) left-justified: at lower
resolutions the low bits of the 18-bit word are zero.
"""
from __future__ import annotations

ADDRESS = 0x57
PART_ID_VALUE = 0x15

INT_STATUS_1 = 0x00
INT_STATUS_2 = 0x01
INT_ENABLE_1 = 0x02
INT_ENABLE_2 = 0x03
FIFO_WR_PTR = 0x04
OVF_COUNTER = 0x05
FIFO_RD_PTR = 0x06
FIFO_DATA = 0x07
FIFO_CONFIG = 0x08
MODE_CONFIG = 0x09
SPO2_CONFIG = 0x0A
LED1_PA = 0x0C  # red
LED2_PA = 0x0D  # IR
REV_ID = 0xFE
PART_ID = 0xFF

# INT_STATUS_1 / INT_ENABLE_1 bits
INT_A_FULL = 0x80
INT_PPG_RDY = 0x40
INT_ALC_OVF = 0x20
INT_PWR_RDY = 0x01

# MODE_CONFIG
MODE_SHDN = 0x80
MODE_RESET = 0x40
MODE_HR = 0x02
MODE_SPO2 = 0x03
MODE_MULTI_LED = 0x07
MODE_MASK = 0x07

# FIFO_CONFIG
FIFO_ROLLOVER_EN = 0x10
FIFO_A_FULL_MASK = 0x0F
FIFO_SMP_AVE_SHIFT = 5

FIFO_DEPTH = 32
POINTER_MASK = 0x1F
OVF_MAX = 0x1F
SAMPLE_MASK = 0x3FFFF
SAMPLE_BITS = 18
BYTES_PER_CHANNEL = 3
LED_STEP_MA = 0.2
LED_MAX_CODE = 0xFF

# SMP_AVE code -> samples averaged (codes 5, 6, 7 all mean 32)
AVERAGING = {0: 1, 1: 2, 2: 4, 3: 8, 4: 16, 5: 32, 6: 32, 7: 32}
# SPO2_SR code -> samples per second
SAMPLE_RATES = {0: 50, 1: 100, 2: 200, 3: 400, 4: 800, 5: 1000, 6: 1600, 7: 3200}
# LED_PW code -> (pulse width in microseconds, ADC resolution in bits)
PULSE_WIDTHS = {0: (69, 15), 1: (118, 16), 2: (215, 17), 3: (411, 18)}
# SPO2_ADC_RGE code -> full-scale photodiode current in nA
ADC_RANGES = {0: 2048, 1: 4096, 2: 8192, 3: 16384}


def code_for(table: dict, value) -> int:
    """The lowest register code whose table entry (or entry[0]) equals ``value``."""
    for code in sorted(table):
        entry = table[code]
        if (entry[0] if isinstance(entry, tuple) else entry) == value:
            return code
    raise KeyError(value)
