"""The hardware-in-the-loop line protocol between the host harness and the DUT.

Pure encoding and decoding; no I/O. The grammar is written up in
``docs/hil-protocol.md``; in short (the shape follows the MLPerf Tiny runner's
``name%`` commands and ``m-ready`` markers, the words are ours):

* A **command** is one ASCII line ``VERB[ TOKEN ...]%`` ended by ``\\n``.
  Tokens are positional (``infer 10 2%``) or ``key=value`` (``cfg fs=100%``).
* A **reply** is zero or more lines ``m-KIND key=value ...`` and ends with the
  ready marker ``m-ready``. A failed command answers one error line
  ``e-CODE msg=...`` and then ``m-ready``.
* Values are percent-encoded (``urllib.parse.quote``), so a value never holds a
  space, ``=`` or ``%`` and any text survives the round trip.
* No line, in either direction, is longer than :data:`MAX_LINE_BYTES` bytes with
  its newline. A longer incoming line is answered with ``e-too-long`` and
  discarded; long payloads (samples, latencies) are split over several lines.
"""
from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from ppg_edge.errors import PPGEdgeError

MAX_LINE_BYTES = 1024
READY = "m-ready"
READY_LINE = (READY + "\n").encode("ascii")
COMMAND_END = "%"

# verb -> (min positional, max positional, allowed keys or None for any)
COMMANDS: dict[str, tuple[int, int, frozenset[str] | None]] = {
    "name": (0, 0, frozenset()),          # identify: name, board, versions, model hashes
    "cfg": (0, 0, None),                  # configure key=value ...; none: report the config
    "select": (1, 1, frozenset()),        # select a stimulus the DUT holds, by id
    "stim": (1, 1, frozenset({"n", "fs"})),   # start uploading stimulus <id> of n samples (at fs Hz)
    "data": (1, 1, frozenset()),          # one chunk of the upload: comma-separated floats
    "infer": (2, 2, frozenset()),         # infer N W: N measured windows after W warm-ups
    "reset": (0, 0, frozenset()),         # reset the pipeline state
}

ERROR_CODES = ("too-long", "malformed", "unknown-command", "bad-arg", "no-stimulus",
               "config", "pipeline", "internal")

_VERB = re.compile(r"^[a-z][a-z0-9-]*$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_KIND = re.compile(r"^[me]-[a-z][a-z0-9-]*$")
_SAFE = "._:,+-/"
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._:,+\-/=%~]*$")


class ProtocolError(PPGEdgeError, ValueError):
    """A line does not follow the HIL protocol; ``code`` is the error reply code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Command:
    verb: str
    args: tuple[str, ...] = ()
    kwargs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyLine:
    kind: str                       # "m-win", "e-bad-arg" ...
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.kind.startswith("e-")

    @property
    def is_ready(self) -> bool:
        return self.kind == READY

    def int(self, key: str) -> int:
        return int(self._get(key))

    def float(self, key: str) -> float:
        return float(self._get(key))

    def _get(self, key: str) -> str:
        try:
            return self.fields[key]
        except KeyError:
            raise ProtocolError("malformed", f"reply line {self.kind} lacks field {key!r}") from None


# --------------------------------------------------------------------------- values


def quote_value(value: object) -> str:
    """Percent-encode one value so it holds no space, '=' or '%'."""
    return quote(str(value), safe=_SAFE)


def _fields_text(fields: Mapping[str, object]) -> str:
    parts = []
    for key, value in fields.items():
        if not _KEY.match(key):
            raise ProtocolError("malformed", f"field name {key!r} is not lower-case [a-z0-9_]")
        parts.append(f"{key}={quote_value(value)}")
    return " ".join(parts)


def _check_length(text: str, what: str) -> bytes:
    data = (text + "\n").encode("ascii")
    if len(data) > MAX_LINE_BYTES:
        raise ProtocolError("too-long", f"{what} is {len(data)} bytes; the limit is {MAX_LINE_BYTES}")
    return data


def _decode(line: bytes | str) -> str:
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError("too-long", f"line of {len(line)} bytes; the limit is {MAX_LINE_BYTES}")
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("malformed", "line holds non-ASCII bytes") from None
    return line.rstrip("\r\n")


# --------------------------------------------------------------------------- commands


def encode_command(verb: str, /, *args: object, **kwargs: object) -> bytes:
    """``encode_command("infer", 10, 2)`` -> ``b"infer 10 2%\\n"``."""
    if verb not in COMMANDS:
        raise ProtocolError("unknown-command", f"unknown command {verb!r}; known: {', '.join(COMMANDS)}")
    parts = [verb] + [quote_value(a) for a in args]
    if kwargs:
        parts.append(_fields_text(kwargs))
    return _check_length(" ".join(parts) + COMMAND_END, f"command {verb}")


def parse_command(line: bytes | str) -> Command:
    """Parse and check one command line; raise :class:`ProtocolError` with the reply code."""
    text = _decode(line).strip()
    if not text:
        raise ProtocolError("malformed", "empty line")
    if not text.endswith(COMMAND_END):
        raise ProtocolError("malformed", f"command {text[:40]!r} does not end with '%'")
    tokens = text[:-1].split()
    if not tokens:
        raise ProtocolError("malformed", "no command before '%'")
    verb = tokens[0]
    if not _VERB.match(verb):
        raise ProtocolError("malformed", f"command word {verb[:40]!r} is not lower-case [a-z0-9-]")
    if verb not in COMMANDS:
        raise ProtocolError("unknown-command", f"unknown command {verb!r}; known: {', '.join(COMMANDS)}")
    lo, hi, keys = COMMANDS[verb]
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for tok in tokens[1:]:
        if not _TOKEN_CHARS.match(tok):
            raise ProtocolError("malformed", f"{verb}: token {tok[:40]!r} holds characters outside the protocol set")
        if "=" in tok:
            key, _, value = tok.partition("=")
            if not _KEY.match(key):
                raise ProtocolError("malformed", f"{verb}: key {key[:40]!r} is not lower-case [a-z0-9_]")
            if keys is not None and key not in keys:
                allowed = ", ".join(sorted(keys)) or "none"
                raise ProtocolError("bad-arg", f"{verb}: unknown key {key!r} (allowed: {allowed})")
            if key in kwargs:
                raise ProtocolError("bad-arg", f"{verb}: key {key!r} given twice")
            kwargs[key] = unquote(value)
        else:
            if kwargs:
                raise ProtocolError("malformed", f"{verb}: positional {tok[:40]!r} after key=value")
            args.append(unquote(tok))
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo}-{hi}"
        raise ProtocolError("bad-arg", f"{verb}: takes {want} positional argument(s), got {len(args)}")
    return Command(verb, tuple(args), kwargs)


def parse_int(text: str, what: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer argument in a range, or ``ProtocolError('bad-arg')``."""
    try:
        value = int(text, 10)
    except ValueError:
        raise ProtocolError("bad-arg", f"{what} {text[:40]!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}-{maximum}"
        raise ProtocolError("bad-arg", f"{what} {value} must be {bound}")
    return value


# --------------------------------------------------------------------------- replies


def encode_reply(kind: str, /, **fields: object) -> bytes:
    """``encode_reply("m-win", i=0, t0=12)`` -> ``b"m-win i=0 t0=12\\n"``."""
    if not _KIND.match(kind):
        raise ProtocolError("malformed", f"reply kind {kind!r} is not m-xxx or e-xxx")
    text = kind + (" " + _fields_text(fields) if fields else "")
    return _check_length(text, f"reply {kind}")


def encode_error(code: str, message: str) -> bytes:
    """An error reply line; an over-long message is cut to fit the line limit."""
    if code not in ERROR_CODES:
        raise ProtocolError("internal", f"unknown error code {code!r}")
    room = MAX_LINE_BYTES - len(f"e-{code} msg=...\n")
    msg = quote_value(message)
    if len(msg) > room:
        cut = len(message)
        while len(quote_value(message[:cut])) > room:
            cut = cut * 3 // 4
        msg = quote_value(message[:cut]) + "..."
    return f"e-{code} msg={msg}\n".encode("ascii")


def parse_reply_line(line: bytes | str) -> ReplyLine:
    """Parse one DUT line: ``m-ready``, ``m-KIND k=v ...`` or ``e-CODE msg=...``."""
    text = _decode(line).strip()
    tokens = text.split()
    if not tokens or not _KIND.match(tokens[0]):
        raise ProtocolError("malformed", f"not a reply line: {text[:60]!r}")
    fields: dict[str, str] = {}
    for tok in tokens[1:]:
        key, eq, value = tok.partition("=")
        if not eq or not _KEY.match(key):
            raise ProtocolError("malformed", f"{tokens[0]}: field {tok[:40]!r} is not key=value")
        fields[key] = unquote(value)
    return ReplyLine(tokens[0], fields)


# --------------------------------------------------------------------------- payloads


def format_sample(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(value))


def parse_samples(text: str) -> list[float]:
    """The comma-separated floats of a ``data`` chunk; NaN, inf and junk are errors."""
    if not text:
        raise ProtocolError("bad-arg", "data: empty chunk")
    out = []
    for i, tok in enumerate(text.split(",")):
        try:
            v = float(tok)
        except ValueError:
            raise ProtocolError("bad-arg", f"data: value {i} ({tok[:20]!r}) is not a number") from None
        if not math.isfinite(v):
            raise ProtocolError("bad-arg", f"data: value {i} is {tok!r}; samples must be finite")
        out.append(v)
    return out


def data_commands(samples: Iterable[float]) -> Iterator[bytes]:
    """The ``data`` command lines carrying ``samples``, each within the line limit."""
    room = MAX_LINE_BYTES - len("data %\n")
    chunk: list[str] = []
    size = 0
    for v in samples:
        tok = format_sample(v)
        if chunk and size + 1 + len(tok) > room:
            yield encode_command("data", ",".join(chunk))
            chunk, size = [], 0
        size += len(tok) + (1 if chunk else 0)
        chunk.append(tok)
    if chunk:
        yield encode_command("data", ",".join(chunk))


def int_list_replies(kind: str, key: str, values: Sequence[int], /, **fixed: object) -> Iterator[bytes]:
    """Reply lines ``KIND fixed... off=J KEY=v,v,...`` splitting ``values`` to fit the limit."""
    head = len(encode_reply(kind, **fixed, off=len(values), **{key: ""}))
    room = MAX_LINE_BYTES - head
    start = 0
    while True:
        end, size = start, 0
        while end < len(values):
            add = len(str(int(values[end]))) + (1 if end > start else 0)
            if size + add > room:
                break
            size += add
            end += 1
        if end == start and start < len(values):
            raise ProtocolError("too-long", f"{kind}: one value does not fit a line")
        yield encode_reply(kind, **fixed, off=start, **{key: ",".join(str(int(v)) for v in values[start:end])})
        start = end
        if start >= len(values):
            return


def parse_int_list(text: str, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise ProtocolError("malformed", f"{what}: {text[:40]!r} is not a list of integers") from None


def samples_crc(samples: Iterable[float]) -> str:
    """CRC-32 (hex) of the samples as little-endian float64: both ends compute it."""
    crc = 0
    for v in samples:
        crc = zlib.crc32(struct.pack("<d", float(v)), crc)
    return f"{crc:08x}"
