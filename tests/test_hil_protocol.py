"""HIL line protocol: round trips, malformed and oversized lines, DUT dispatch without I/O."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppg_edge.hil_tests.dut import DUT
from ppg_edge.hil_tests.link import TOO_LONG, LineReader
from ppg_edge.hil_tests.pipeline import MovingAveragePeaks, Stimulus, synthetic_ppg
from ppg_edge.hil_tests.protocol import (
    MAX_LINE_BYTES,
    ProtocolError,
    data_commands,
    encode_command,
    encode_error,
    encode_reply,
    int_list_replies,
    parse_command,
    parse_int_list,
    parse_reply_line,
    parse_samples,
    samples_crc,
)


def test_command_round_trip_with_awkward_values():
    line = encode_command("cfg", model="a b=c%d/é", fs=125)
    assert line.endswith(b"%\n") and b" " not in line.split(b" ", 1)[1].replace(b" fs", b"")
    cmd = parse_command(line)
    assert cmd.verb == "cfg" and dict(cmd.kwargs) == {"model": "a b=c%d/é", "fs": "125"}
    cmd = parse_command(encode_command("infer", 10, 2))
    assert cmd.args == ("10", "2") and not cmd.kwargs
    assert parse_command(b"name%\r\n").verb == "name"


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                       st.text(max_size=30), max_size=4))
def test_reply_round_trip_any_text(fields):
    line = encode_reply("m-cfg", **fields)
    back = parse_reply_line(line)
    assert back.kind == "m-cfg" and dict(back.fields) == fields


@pytest.mark.parametrize("line, code", [
    (b"name\n", "malformed"),                       # no '%'
    (b"%\n", "malformed"),
    (b"\n", "malformed"),
    (b"NAME%\n", "malformed"),
    (b"launch%\n", "unknown-command"),
    (b"infer 10%\n", "bad-arg"),                    # needs N and W
    (b"infer 1 2 3%\n", "bad-arg"),
    (b"name extra%\n", "bad-arg"),
    (b"stim a m=3%\n", "bad-arg"),                  # unknown key
    (b"cfg fs=1 fs=2%\n", "bad-arg"),
    (b"cfg Fs=1%\n", "malformed"),
    (b"cfg fs=1 oops%\n", "malformed"),             # positional after key=value
    (b"cfg fs=\xff%\n", "malformed"),               # not ASCII
    (b"cfg fs=(1)%\n", "malformed"),                # outside the token set
    (b"select " + b"a" * MAX_LINE_BYTES + b"%\n", "too-long"),
])
def test_malformed_commands_have_codes(line, code):
    with pytest.raises(ProtocolError) as info:
        parse_command(line)
    assert info.value.code == code


def test_encoders_refuse_over_long_lines_and_unknown_verbs():
    with pytest.raises(ProtocolError, match="limit"):
        encode_command("select", "x" * MAX_LINE_BYTES)
    with pytest.raises(ProtocolError, match="unknown command"):
        encode_command("reboot")
    long_error = encode_error("pipeline", "é" * 2000)
    assert len(long_error) <= MAX_LINE_BYTES
    err = parse_reply_line(long_error)
    assert err.is_error and err.kind == "e-pipeline" and err.fields["msg"].endswith("...")
    with pytest.raises(ProtocolError):
        parse_reply_line(b"hello world\n")
    with pytest.raises(ProtocolError):
        parse_reply_line(b"m-win i0\n")


def test_samples_round_trip_exactly_in_bounded_chunks(rng):
    x = rng.standard_normal(3000) * 1e3
    lines = list(data_commands(x))
    assert len(lines) > 1 and all(len(ln) <= MAX_LINE_BYTES for ln in lines)
    back = [v for ln in lines for v in parse_samples(parse_command(ln).args[0])]
    assert np.array_equal(np.asarray(back), x)
    assert samples_crc(back) == samples_crc(x)
    assert samples_crc(x[:-1]) != samples_crc(x)


@pytest.mark.parametrize("text", ["1,nan", "inf", "1,,2", "1,abc", ""])
def test_bad_sample_chunks_are_errors(text):
    with pytest.raises(ProtocolError) as info:
        parse_samples(text)
    assert info.value.code == "bad-arg"


def test_int_lists_split_to_fit_and_reassemble(rng):
    values = rng.integers(0, 10**7, 900).tolist()
    lines = list(int_list_replies("m-lat", "us", values, i=3))
    assert len(lines) > 1 and all(len(ln) <= MAX_LINE_BYTES for ln in lines)
    got: list[int] = []
    for ln in lines:
        r = parse_reply_line(ln)
        assert r.int("i") == 3 and r.int("off") == len(got)
        got += parse_int_list(r.fields["us"], "us")
    assert got == values


class BytesPort:
    """A serial-like port over a fixed byte string; empty reads once exhausted."""

    def __init__(self, data: bytes):
        self.buf = io.BytesIO(data)
        self.timeout = 0.0

    def readline(self, size: int = -1) -> bytes:
        return self.buf.readline(size)


def test_line_reader_rejects_long_line_then_recovers():
    data = b"a" * (3 * MAX_LINE_BYTES) + b"\nname%\n"
    r = LineReader(BytesPort(data))
    assert r.read_line() is TOO_LONG
    assert r.read_line() == b"name%\n"
    assert r.read_line() is None                    # nothing left: no hang, no crash


def test_line_reader_keeps_partial_lines_across_timeouts():
    port = BytesPort(b"infer 1")
    r = LineReader(port)
    assert r.read_line() is None
    port.buf = io.BytesIO(b" 0%\n")
    assert r.read_line() == b"infer 1 0%\n"


# ----------------------------------------------------------------------------- DUT dispatch


def make_dut(rng) -> tuple[DUT, Stimulus]:
    stim = synthetic_ppg(rng, seconds=10, id="s1")
    return DUT(port=None, pipeline=MovingAveragePeaks(), board="rpi4b", stimuli=[stim]), stim


def reply(dut: DUT, line: bytes):
    return [parse_reply_line(ln) for ln in dut.handle(line)]


def test_dut_identify_configure_select(rng):
    dut, stim = make_dut(rng)
    (name,) = reply(dut, b"name%\n")
    assert name.kind == "m-name" and name.fields["board"] == "rpi4b"
    assert name.fields["pipeline"] == "moving-average-peaks" and "ppg_edge" in name.fields
    (cfg,) = reply(dut, encode_command("cfg", window=100, width=7))
    assert cfg.fields["window"] == "100" and cfg.fields["width"] == "7"
    (sel,) = reply(dut, b"select s1%\n")
    assert sel.fields["crc"] == stim.crc and sel.int("n") == stim.samples.size


@pytest.mark.parametrize("line, kind", [
    (b"select nope%\n", "e-no-stimulus"),
    (b"infer 1 0%\n", "e-no-stimulus"),            # nothing selected yet
    (b"cfg colour=red%\n", "e-config"),
    (b"cfg width=0%\n", "e-config"),
    (b"cfg window=x%\n", "e-bad-arg"),
    (b"data 1,2%\n", "e-no-stimulus"),             # no upload in progress
    (b"infer -1 0%\n", "e-bad-arg"),
    (b"bogus%\n", "e-unknown-command"),
])
def test_dut_bad_commands_answer_errors(rng, line, kind):
    dut, _ = make_dut(rng)
    out = reply(dut, line)
    assert len(out) == 1 and out[0].kind == kind and out[0].fields["msg"]
    assert reply(dut, b"name%\n")[0].kind == "m-name"        # still serving


def test_dut_infer_more_windows_than_stimulus(rng):
    dut, stim = make_dut(rng)
    reply(dut, b"select s1%\n")
    (err,) = reply(dut, encode_command("infer", stim.samples.size // 250 + 1, 0))
    assert err.kind == "e-bad-arg" and "holds 4 windows" in err.fields["msg"]


def test_dut_upload_checks_count_and_values(rng):
    dut, _ = make_dut(rng)
    x = rng.standard_normal(500)
    assert reply(dut, encode_command("stim", "up", n=500))[0].kind == "m-upload"
    lines = list(data_commands(x))
    for ln in lines[:-1]:
        assert reply(dut, ln)[0].kind == "m-data"
    (done,) = reply(dut, lines[-1])
    assert done.kind == "m-stim" and done.fields["crc"] == samples_crc(x)
    # too many samples abandons the upload; NaN is refused, not dropped
    reply(dut, encode_command("stim", "up2", n=3))
    (err,) = reply(dut, b"data 1,2,3,4%\n")
    assert err.kind == "e-bad-arg" and "exceed" in err.fields["msg"]
    assert reply(dut, b"data 1%\n")[0].kind == "e-no-stimulus"
    reply(dut, encode_command("stim", "up3", n=3))
    assert reply(dut, b"data 1,nan,3%\n")[0].kind == "e-bad-arg"


def test_dut_pipeline_crash_is_an_error_reply(rng):
    dut, _ = make_dut(rng)

    def boom(samples):
        raise ZeroDivisionError("model exploded")

    dut.pipeline.feed = boom
    reply(dut, b"select s1%\n")
    (err,) = reply(dut, b"infer 1 0%\n")
    assert err.kind == "e-internal" and "model exploded" in err.fields["msg"]
