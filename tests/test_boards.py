"""Board files: every committed board validates; each rule rejects a crafted bad file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ppg_edge.boards import board_names, list_boards, load_board, load_hardware_map
from ppg_edge.boards.registry import boards_dir
from ppg_edge.cli import main
from ppg_edge.errors import ConfigError

EXPECTED = {"rpi-zero-2w", "rpi4b", "rpi5", "virtual-rpi4", "virtual-rpi5"}


def edit(text: str, section: str, key: str, value: str | None) -> str:
    """Set (or with None delete) ``key`` in ``[section]`` ("" = top level) of a TOML text."""
    lines = text.splitlines()
    out: list[str] = []
    current, done, i = "", False, 0
    while i < len(lines):
        line = lines[i]
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            if current == section and not done and value is not None:
                out.append(f"{key} = {value}")
                done = True
            current = header.group(1)
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            code = line.split("#")[0]
            if code.count("[") > code.count("]"):  # a multi-line array: skip to its "]"
                while not lines[i].strip().startswith("]"):
                    i += 1
            if value is not None:
                out.append(f"{key} = {value}")
            done, i = True, i + 1
            continue
        out.append(line)
        i += 1
    if not done and value is not None:
        out += ([] if current == section else [f"[{section}]"]) + [f"{key} = {value}"]
    return "\n".join(out) + "\n"


def crafted(tmp_path: Path, base: str, section: str, key: str, value: str | None) -> Path:
    text = (boards_dir() / f"{base}.toml").read_text()
    path = tmp_path / f"{base}.toml"
    path.write_text(edit(text, section, key, value))
    return path


def test_every_committed_board_validates():
    boards = list_boards()
    assert {b.identifier for b in boards} == EXPECTED == set(board_names())
    for b in boards:
        assert b.cpu.architecture == "aarch64" and b.os.bits == 64 and b.os.python == "3.11"
        assert b.max30102.address == 0x57
        assert b.power.idle_w < b.power.active_w
        assert b.virtual == (b.cpu.qemu_cpu is not None) == (b.uart.serial_port == "pty")


def test_model_specific_details():
    pi4, pi5, zero = load_board("rpi4b"), load_board("rpi5"), load_board("rpi-zero-2w")
    v4, v5 = load_board("virtual-rpi4"), load_board("virtual-rpi5")
    assert (v4.cpu.qemu_cpu, v5.cpu.qemu_cpu) == ("cortex-a72", "cortex-a76")
    assert (v4.emulates, v5.emulates) == ("rpi4b", "rpi5")
    # Bluetooth shares the PL011 on the Pi 4 and Zero 2 W, not on the Pi 5.
    assert "dtoverlay=disable-bt" in pi4.config_txt.lines and "dtoverlay=disable-bt" in zero.config_txt.lines
    assert "dtoverlay=disable-bt" not in pi5.config_txt.lines and "dtparam=uart0=on" in pi5.config_txt.lines
    assert zero.cpu.ram_mb == 512 and zero.cpu.model == "Cortex-A53"
    assert (pi4.power.idle_w, pi4.power.active_w) == (1.6, 5.0)
    assert v4.config_txt is None and v4.os.boot_mount is None


def test_board_runtime_choices_name_committed_models_and_say_why():
    """A board's peak model is a committed device model; its hop and FIFO burst reach the driver
    settings and the service (the choice is data, reviewable in the board file)."""
    from ppg_edge.config import REPO_ROOT
    from ppg_edge.edge_runtime.playback import settings_from_board

    for board in list_boards():
        rt = board.runtime
        if rt.peak_model is not None:
            assert (REPO_ROOT / "models/device" / rt.peak_model).is_file(), (board.identifier, rt.peak_model)
            assert "bench arm" in rt.peak_model_source, rt.peak_model_source
        assert settings_from_board(board).almost_full == board.max30102.fifo_almost_full
    zero = load_board("rpi-zero-2w")
    assert zero.runtime.hop_samples(125.0) == 225 and "bench hop" in zero.runtime.hop_source
    assert load_board("rpi4b").runtime.hop_samples(125.0) is None  # the manifest's hop


def test_load_by_path_equals_load_by_name():
    assert load_board(boards_dir() / "rpi5.toml") == load_board("rpi5")


def test_unknown_board_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown board 'rpi9'.*rpi4b"):
        load_board("rpi9")
    with pytest.raises(ConfigError, match="does not exist"):
        load_board("/nonexistent/rpi4b.toml")


# (base file, section, key, new value or None to delete, expected message)
BAD = [
    ("rpi4b", "", "schema", "2", "schema 2 not supported"),
    ("rpi4b", "", "identifier", '"rpi-4b"', "differs from the file name"),
    ("rpi4b", "", "identifier", '"RPi4"', "lower-case"),
    ("rpi4b", "", "name", None, "field name: missing"),
    ("rpi4b", "", "virtual", '"no"', "expected bool"),
    ("rpi4b", "", "colour", '"red"', "unknown field"),
    ("rpi4b", "cpu", "architecture", '"armv7l"', "needs aarch64"),
    ("rpi4b", "cpu", "cores", "0", "cpu.cores: 0 outside 1-64"),
    ("rpi4b", "cpu", "clock_mhz", "1.8", "expected int"),
    ("rpi4b", "cpu", "ram_mb", "4", "outside 64-65536 MB"),
    ("rpi4b", "cpu", "qemu_cpu", '"cortex-a72"', "only virtual boards"),
    ("rpi4b", "os", "bits", "32", "64-bit OS is required"),
    ("rpi4b", "os", "python", '"three"', "not a Python version"),
    ("rpi4b", "i2c", "speed_hz", "1000000", "outside 10000-400000 Hz"),
    ("rpi4b", "max30102", "address", "0x78", "0x78 outside the 7-bit address range"),
    ("rpi4b", "max30102", "address", "0x03", "outside the 7-bit address range"),
    ("rpi4b", "max30102", "interrupt_gpio", "2", "taken by I2C-1 SDA"),
    ("rpi4b", "max30102", "interrupt_gpio", "40", "not a header GPIO"),
    ("rpi4b", "max30102", "mode", '"multi"', "not one of spo2, hr"),
    ("rpi4b", "max30102", "sample_rate_hz", "125", "max30102.sample_rate_hz: 125 Hz not one of"),
    ("rpi4b", "max30102", "sample_rate_hz", "800", "not allowed in SpO2 mode"),
    ("rpi4b", "max30102", "averaging", "3", "not one of 1, 2, 4"),
    ("rpi4b", "max30102", "pulse_width_us", "100", "us not one of 69"),
    ("rpi4b", "max30102", "adc_range_na", "1000", "nA not one of 2048"),
    ("rpi4b", "max30102", "led_red_ma", "51.2", "outside 0-51 mA"),
    ("rpi4b", "max30102", "led_ir_ma", "-1.0", "outside 0-51 mA"),
    ("rpi4b", "max30102", "led_ir_ma", "7.1", "0.2 mA register step"),
    ("rpi4b", "max30102", "led_ir_ma", None, "led_ir_ma: missing"),
    ("rpi4b", "uart", "serial_port", '"pty"', "real board's serial port is a /dev path"),
    ("rpi4b", "uart", "baudrate", "12345", "not one of 9600"),
    ("rpi4b", "runtime", "interpreters", "[]", "empty"),
    ("rpi4b", "runtime", "interpreters", '["tensorflow"]', "'tensorflow' unknown"),
    ("rpi4b", "runtime", "interpreters", '["tflite-runtime", "tflite-runtime"]', "duplicates"),
    ("rpi4b", "runtime", "peak_model", '"Type30.h5"', "not a peak model file name"),
    ("rpi4b", "runtime", "peak_model_source", None, "peak_model and peak_model_source go together"),
    ("rpi-zero-2w", "runtime", "hop_s", "0.01", "outside 0.1-10.0 s"),
    ("rpi-zero-2w", "runtime", "hop_source", None, "hop_s and hop_source go together"),
    ("rpi-zero-2w", "max30102", "fifo_almost_full", "33", "outside 17-32 samples"),
    ("rpi4b", "power", "idle_w", "6.0", "must exceed idle_w"),
    ("rpi4b", "power", "active_w", "0", "outside 0.01-100.0 W"),
    ("rpi4b", "power", "idle_source", '""', "must not be empty"),
    ("rpi5", "power", "idle_w", "3.5", "outside its published range"),
    ("rpi5", "power", "active_w_range", "[9.0, 8.5]", "need 0 < low <= high"),
    ("rpi4b", "config_txt", "lines", '["dtparam=i2c_arm=on"]', "frees the PL011"),
    ("rpi4b", "config_txt", "lines", '["dtoverlay=disable-bt", "rm -rf /"]', "not a config.txt setting"),
    ("rpi4b", "config_txt", "section", '"pi9"', "not one of all"),
    ("virtual-rpi4", "cpu", "qemu_cpu", None, "must pin the qemu CPU model"),
    ("virtual-rpi4", "cpu", "qemu_cpu", '"max"', "not one of cortex-a53"),
    ("virtual-rpi4", "cpu", "qemu_cpu", '"cortex-a76"', "does not match cpu.model"),
    ("virtual-rpi4", "", "emulates", None, "names the board it emulates"),
    ("virtual-rpi4", "uart", "serial_port", '"/dev/serial0"', "virtual board's HIL link is 'pty'"),
    ("virtual-rpi4", "config_txt", "section", '"pi4"', "a virtual board has no SD card"),
]


@pytest.mark.parametrize("base,section,key,value,message", BAD,
                         ids=[f"{b}:{s}.{k}={v}" for b, s, k, v, _ in BAD])
def test_each_rule_rejects_a_crafted_file(tmp_path, base, section, key, value, message):
    path = crafted(tmp_path, base, section, key, value)
    with pytest.raises(ConfigError) as info:
        load_board(path)
    text = str(info.value)
    assert str(path) in text, text  # the file is named
    assert message in text, text


def test_missing_table_and_bad_toml(tmp_path):
    text = (boards_dir() / "rpi4b.toml").read_text()
    p = tmp_path / "rpi4b.toml"
    p.write_text(text.replace("[power]", "[powr]"))
    with pytest.raises(ConfigError, match=r"table \[power\] missing"):
        load_board(p)
    p.write_text(text + "\n[cpu\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_board(p)


def test_edit_helper_changes_only_what_it_is_asked(tmp_path):
    # The crafted files above differ from a valid board in exactly one field.
    p = crafted(tmp_path, "rpi4b", "max30102", "led_red_ma", "8.0")
    board = load_board(p)
    assert board.max30102.led_red_ma == 8.0
    assert board.max30102.led_ir_ma == load_board("rpi4b").max30102.led_ir_ma


# ------------------------------------------------------------------ hardware map

def test_example_hardware_map_validates():
    hw = load_hardware_map(boards_dir() / "hardware-map.example.toml")
    assert [u.name for u in hw.units] == ["bench-pi4", "bench-zero", "emulated-pi4"]
    assert hw.unit("bench-zero").i2c_address == 0x57  # defaulted from the board file
    assert hw.unit("emulated-pi4").host is None
    assert [u.name for u in hw.for_board("rpi4b")] == ["bench-pi4"]
    with pytest.raises(ConfigError, match="no unit named 'x'"):
        hw.unit("x")


def test_hardware_map_path_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PPG_EDGE_HARDWARE_MAP", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_hardware_map()
    p = tmp_path / "hw.toml"
    p.write_text('[[unit]]\nname = "a"\nboard = "rpi5"\nhost = "pi@a"\nserial_port = "/dev/ttyUSB0"\n')
    monkeypatch.setenv("PPG_EDGE_HARDWARE_MAP", str(p))
    assert load_hardware_map().unit("a").board == "rpi5"


def test_absent_default_hardware_map_is_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("PPG_EDGE_HARDWARE_MAP", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    hw = load_hardware_map()
    assert hw.units == () and hw.path is None


HW_BAD = [
    ('name = "a"\nboard = "rpi9"\nhost = "pi@a"\nserial_port = "/dev/ttyUSB0"', "unknown board 'rpi9'"),
    ('name = "a"\nboard = "rpi4b"\nserial_port = "/dev/ttyUSB0"', "unit[0].host: missing"),
    ('name = "a"\nboard = "rpi4b"\nhost = "pi@a b"\nserial_port = "/dev/ttyUSB0"', "not an ssh target"),
    ('name = "a"\nboard = "rpi4b"\nhost = "pi@a"\ni2c_address = 0x80\nserial_port = "/dev/ttyUSB0"', "outside 0x08-0x77"),
    ('name = "a"\nboard = "rpi4b"\nhost = "pi@a"\nserial_port = "COM3"', "expected a /dev path"),
    ('name = "a"\nboard = "virtual-rpi5"\nserial_port = "/dev/ttyUSB0"', "virtual unit's link is 'pty'"),
    ('name = "a"\nboard = "rpi4b"\nhost = "pi@a"\nserial_port = "/dev/ttyUSB0"\nport = 1', "unknown field"),
]


@pytest.mark.parametrize("body,message", HW_BAD)
def test_hardware_map_rules(tmp_path, body, message):
    p = tmp_path / "hw.toml"
    p.write_text("[[unit]]\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_hardware_map(p)
    assert str(p) in str(info.value) and message in str(info.value), str(info.value)


def test_hardware_map_duplicate_names(tmp_path):
    unit = '[[unit]]\nname = "a"\nboard = "virtual-rpi4"\nserial_port = "pty"\n'
    p = tmp_path / "hw.toml"
    p.write_text(unit + unit)
    with pytest.raises(ConfigError, match="used twice"):
        load_hardware_map(p)


# ------------------------------------------------------------------ CLI

def test_cli_lists_boards(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPECTED)
    assert main(["boards", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["identifier"] for d in data} == EXPECTED
    assert next(d for d in data if d["identifier"] == "rpi5")["power"]["idle_w_range"] == [2.4, 3.1]


def test_cli_show(capsys):
    assert main(["boards", "show", "virtual-rpi5"]) == 0
    out = capsys.readouterr().out
    assert "QEMU_CPU=cortex-a76" in out and "emulates rpi5" in out
    assert main(["boards", "show", "rpi4b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config_txt"]["section"] == "pi4"


def test_cli_show_unknown_board_is_a_one_line_error(capsys):
    assert main(["boards", "show", "rpi9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ppg-edge: error: unknown board 'rpi9'") and "Traceback" not in err


def test_cli_hardware(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PPG_EDGE_HARDWARE_MAP", str(boards_dir() / "hardware-map.example.toml"))
    assert main(["boards", "--hardware"]) == 0
    assert "bench-pi4" in capsys.readouterr().out
