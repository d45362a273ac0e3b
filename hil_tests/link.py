"""The serial link: bounded line framing (both ends) and the host's command channel.

Any object with the pyserial API (``read``, ``readline``, ``write``,
``timeout``) can carry the link; :func:`open_link` opens one with
``serial.serial_for_url``, so ``/dev/ttyUSB0``, ``/dev/serial0``, a pty path and
``loop://`` all work. pyserial is imported only there.

Every wait is bounded: a read returns after the port's ``timeout``, a command
fails with :class:`~ppg_edge.errors.HardwareError` when the DUT is silent for
``timeout_s`` (or past ``total_timeout_s``), and a link that drops (the DUT is
killed, the cable pulled, the pty closed) raises ``HardwareError`` at once.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ppg_edge.errors import HardwareError

from .protocol import MAX_LINE_BYTES, ProtocolError, ReplyLine, parse_reply_line

log = logging.getLogger(__name__)

TOO_LONG = object()
"""Returned by :meth:`LineReader.read_line` for a line over the limit (already discarded)."""


class LinkClosed(HardwareError):
    """The other end of the link went away."""


class DUTError(HardwareError):
    """The DUT answered a command with an error reply (``code`` is the protocol code)."""

    def __init__(self, code: str, message: str, command: str):
        super().__init__(f"DUT refused {command!r}: e-{code}: {message}")
        self.code = code
        self.dut_message = message


class LineReader:
    """Assemble ``\\n``-ended lines from a serial-like port, never holding more than ``max_len`` bytes.

    ``read_line`` returns a complete line (bytes with its newline), ``None``
    when nothing complete arrived before the port's read timeout, or
    :data:`TOO_LONG` once for a line over the limit, whose remaining bytes are
    then skipped up to its newline.
    """

    def __init__(self, port: Any, max_len: int = MAX_LINE_BYTES):
        self.port = port
        self.max_len = max_len
        self._buf = b""
        self._discarding = False

    def read_line(self) -> bytes | None | object:
        while True:
            want = self.max_len if self._discarding else self.max_len - len(self._buf)
            chunk = self.port.readline(want)
            if not chunk:
                return None                        # port timeout: try again later
            if self._discarding:
                if chunk.endswith(b"\n"):
                    self._discarding = False
                continue
            self._buf += chunk
            if self._buf.endswith(b"\n"):
                line, self._buf = self._buf, b""
                return line
            if len(self._buf) >= self.max_len:
                self._buf = b""
                self._discarding = True
                return TOO_LONG
            # partial line (port timeout mid-line): keep it, report nothing yet
            return None


@dataclass
class Reply:
    """The lines of one reply, before its ``m-ready``."""

    command: str
    lines: list[ReplyLine] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[ReplyLine]:
        return [ln for ln in self.lines if ln.kind == kind]

    def one(self, kind: str) -> ReplyLine:
        found = self.of_kind(kind)
        if len(found) != 1:
            raise HardwareError(f"reply to {self.command!r} has {len(found)} {kind} lines, expected 1")
        return found[0]


def _is_link_error(exc: BaseException) -> bool:
    """True for the ways a vanished port fails: OSError (pyserial's SerialException is one,
    a closed pty gives EIO) and ``termios.error`` (tcflush on a dead tty)."""
    if isinstance(exc, HardwareError):
        return False
    if isinstance(exc, OSError):
        return True
    try:
        import termios
    except ImportError:  # pragma: no cover - not POSIX
        return False
    return isinstance(exc, termios.error)


class Link:
    """The host end: send one command, collect its reply up to ``m-ready``.

    ``timeout_s`` is the longest silence allowed between two reply lines;
    ``total_timeout_s`` (optional) caps one command. Idempotent commands may be
    retried (``retries`` more times) after a timeout; a dropped link is never
    retried.
    """

    def __init__(self, port: Any, *, timeout_s: float = 5.0, retries: int = 1,
                 name: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.port = port
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.name = name or str(getattr(port, "port", None) or getattr(port, "name", None) or "link")
        self.reader = LineReader(port)
        self.clock = clock
        self.closed = False

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.port.close()
            except OSError as exc:           # already gone
                log.debug("closing %s: %s", self.name, exc)

    def command(self, line: bytes, *, timeout_s: float | None = None,
                total_timeout_s: float | None = None, retry: bool = False,
                on_line: Callable[[ReplyLine], None] | None = None) -> Reply:
        """Send ``line`` (from :func:`~.protocol.encode_command`), return its reply.

        Raises :class:`DUTError` for an error reply, :class:`LinkClosed` when
        the link drops and :class:`HardwareError` when the DUT stays silent.
        """
        if self.closed:
            raise LinkClosed(f"link {self.name} is closed")
        text = line.decode("ascii").strip()
        tries = 1 + (self.retries if retry else 0)
        last: HardwareError | None = None
        for attempt in range(1, tries + 1):
            try:
                return self._exchange(line, text, timeout_s or self.timeout_s, total_timeout_s, on_line)
            except LinkClosed:
                raise
            except DUTError:
                raise
            except HardwareError as exc:
                last = exc
                if attempt < tries:
                    log.warning("%s (try %d of %d); retrying", exc, attempt, tries)
        assert last is not None
        raise last

    def _exchange(self, line: bytes, text: str, idle_s: float, total_s: float | None,
                  on_line: Callable[[ReplyLine], None] | None) -> Reply:
        try:
            reset = getattr(self.port, "reset_input_buffer", None)
            if reset is not None:
                reset()                      # drop stale output of an earlier, abandoned command
            self.port.write(line)
            flush = getattr(self.port, "flush", None)
            if flush is not None:
                flush()
        except Exception as exc:
            if _is_link_error(exc):
                raise LinkClosed(f"link {self.name} dropped while sending {text!r}: {exc}") from exc
            raise
        return self.read_reply(text, idle_s=idle_s, total_s=total_s, on_line=on_line)

    def read_reply(self, text: str = "(pending reply)", *, idle_s: float | None = None,
                   total_s: float | None = None,
                   on_line: Callable[[ReplyLine], None] | None = None) -> Reply:
        """Collect reply lines up to ``m-ready`` without sending anything."""
        idle_s = self.timeout_s if idle_s is None else idle_s
        reply = Reply(text)
        start = last_seen = self.clock()
        error: ReplyLine | None = None
        while True:
            now = self.clock()
            if now - last_seen > idle_s:
                raise HardwareError(
                    f"DUT on {self.name} silent for {idle_s:g} s during {text!r} "
                    f"({len(reply.lines)} reply lines so far"
                    + (f", last {reply.lines[-1].kind}" if reply.lines else "") + ")")
            if total_s is not None and now - start > total_s:
                raise HardwareError(f"DUT on {self.name} did not finish {text!r} within {total_s:g} s "
                                    f"({len(reply.lines)} reply lines so far)")
            try:
                raw = self.reader.read_line()
            except Exception as exc:
                if _is_link_error(exc):
                    raise LinkClosed(f"link {self.name} dropped during {text!r} after "
                                     f"{len(reply.lines)} reply lines: {exc}") from exc
                raise
            if raw is None:
                continue
            last_seen = self.clock()
            if raw is TOO_LONG:
                raise HardwareError(f"DUT on {self.name} sent a line over {MAX_LINE_BYTES} bytes during {text!r}")
            try:
                parsed = parse_reply_line(raw)  # type: ignore[arg-type]
            except ProtocolError as exc:
                raise HardwareError(f"DUT on {self.name} sent a malformed line during {text!r}: {exc}") from None
            if parsed.is_ready:
                if error is not None:
                    raise DUTError(error.kind[2:], error.fields.get("msg", ""), text)
                return reply
            if parsed.is_error:
                error = parsed
                continue
            reply.lines.append(parsed)
            if on_line is not None:
                on_line(parsed)


def open_link(url: str, *, baudrate: int = 115200, read_timeout_s: float = 0.05,
              timeout_s: float = 5.0, retries: int = 1) -> Link:
    """Open a :class:`Link` through ``serial.serial_for_url`` (device path, pty path, ``loop://``)."""
    try:
        import serial
    except ImportError:  # pragma: no cover - pyserial is in the edge extra
        raise HardwareError("the HIL link needs pyserial (pip install 'ppg-edge[edge]')") from None
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=read_timeout_s,
                                     write_timeout=timeout_s)
    except (serial.SerialException, ValueError) as exc:
        raise HardwareError(f"cannot open serial link {url!r}: {exc}") from None
    return Link(port, timeout_s=timeout_s, retries=retries, name=url)


class FdPort:
    """A pyserial-like port over a raw file descriptor (the master end of a pty pair).

    Virtual boards have no cable: the host makes a pty pair, the DUT opens the
    slave path with pyserial and the host keeps the master here. ``read``
    waits at most ``timeout`` seconds; a closed other end raises ``OSError``.
    """

    def __init__(self, fd: int, *, timeout: float = 0.05, name: str = "pty"):
        self.fd = fd
        self.timeout = timeout
        self.port = name
        self._pending = b""

    def read(self, size: int = 1) -> bytes:
        import os
        import select

        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            return b""
        data = os.read(self.fd, max(size, 4096))
        if not data:
            raise OSError(f"{self.port}: end of file (other end closed)")
        data, self._pending = data[:size], data[size:]
        return data

    def readline(self, size: int = -1) -> bytes:
        out = b""
        while size < 0 or len(out) < size:
            want = 4096 if size < 0 else size - len(out)
            if self._pending:
                nl = self._pending.find(b"\n", 0, want)
                take = nl + 1 if nl >= 0 else min(want, len(self._pending))
                out += self._pending[:take]
                self._pending = self._pending[take:]
                if out.endswith(b"\n"):
                    return out
                continue
            chunk = self.read(want)
            if not chunk:
                return out
            self._pending = chunk + self._pending
        return out

    def write(self, data: bytes) -> int:
        import os

        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        import os

        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class PtyPair:
    """A raw pty pair. ``master`` is the host's port; the DUT opens ``path`` (the slave).

    ``slave_fd`` keeps the slave open until the DUT has opened it; call
    :meth:`release_slave` then, so that the DUT exiting closes the link and the
    master sees it (``OSError``) instead of waiting.
    """

    master: FdPort
    path: str
    slave_fd: int

    def release_slave(self) -> None:
        import os

        if self.slave_fd >= 0:
            os.close(self.slave_fd)
            self.slave_fd = -1

    def close(self) -> None:
        self.release_slave()
        self.master.close()


def open_pty_pair(*, timeout: float = 0.05) -> PtyPair:
    """Make a raw pty pair (no echo, no line editing) for a virtual board's HIL link."""
    import os
    import pty
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    return PtyPair(FdPort(master, timeout=timeout, name=path), path, slave)


def start_dut_process(argv: list[str]):
    """Start a local DUT (``ppg-edge hil dut ...`` on the slave of a pty pair) as a child process.

    Its stdin is closed and its stdout goes to this process's stderr (fd 2): the
    host's stdout carries its results only (``ppg-edge hil run --json``), so
    nothing the DUT prints can land there.
    """
    import subprocess

    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=2)
