"""DUT mode: serve the HIL line protocol on a serial port, driving a :class:`Pipeline`.

The loop reads one command line at a time (bounded, see
:class:`~.link.LineReader`), answers it and ends every answer with ``m-ready``.
Bad lines get an error reply and the loop carries on; it ends when the link
closes or ``stop`` is set. Timestamps are the device's monotonic clock in µs.

Measurement (``infer N W``): W warm-up windows run first and are not reported;
then the pipeline is reset and N windows of ``window`` samples are fed from the
start of the selected stimulus, ``chunk`` samples per ``feed`` call. For each
window the DUT reports its start/end time, the latency of every ``feed`` call,
the lost-sample count, and every result with the time it was produced; the
closing ``m-infer`` line carries the wall and CPU time of the measured windows
and the process's peak resident memory (``resource.getrusage``).

This module runs on the Pi: standard library and numpy only.
"""
from __future__ import annotations

import logging
import platform
import resource
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ppg_edge import __version__
from ppg_edge.errors import ConfigError, PPGEdgeError

from .link import TOO_LONG, LineReader
from .pipeline import Pipeline, Stimulus
from .protocol import (
    MAX_LINE_BYTES,
    READY_LINE,
    Command,
    ProtocolError,
    encode_error,
    encode_reply,
    int_list_replies,
    parse_command,
    parse_int,
    parse_samples,
    samples_crc,
)

log = logging.getLogger(__name__)

MAX_STIMULUS_SAMPLES = 1_000_000
DUT_SETTINGS = ("window", "chunk")


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class DUT:
    """One device under test: a pipeline, the stimuli it holds, and the protocol state."""

    def __init__(self, port: Any, pipeline: Pipeline, *, board: str = "unknown",
                 name: str = "ppg-edge-dut", stimuli: Iterable[Stimulus] = (),
                 clock_us: Callable[[], int] = monotonic_us):
        self.port = port
        self.pipeline = pipeline
        self.board = board
        self.name = name
        self.stimuli: dict[str, Stimulus] = {s.id: s for s in stimuli}
        self.clock_us = clock_us
        self.current: Stimulus | None = None
        self.window = 250
        self.chunk = 1
        self._upload: dict[str, Any] | None = None
        self.commands = 0
        self.errors = 0
        self._stop: threading.Event | None = None

    # ------------------------------------------------------------------ loop

    def serve(self, stop: threading.Event | None = None) -> int:
        """Answer commands until the link closes or ``stop`` is set; return commands handled."""
        reader = LineReader(self.port, MAX_LINE_BYTES)
        self._stop = stop
        log.info("DUT %s (%s) serving %s on %s", self.name, self.board, self.pipeline.name,
                 getattr(self.port, "port", None) or self.port)
        while stop is None or not stop.is_set():
            try:
                raw = reader.read_line()
                if raw is None:
                    continue
                if raw is TOO_LONG:
                    self.errors += 1
                    self._send([encode_error("too-long", f"line over {MAX_LINE_BYTES} bytes discarded")])
                    continue
                self._send(self.handle(raw))  # type: ignore[arg-type]
            except OSError as exc:  # pyserial's SerialException is an OSError
                log.info("DUT link closed: %s", exc)
                break
        return self.commands

    def _send(self, lines: Iterable[bytes]) -> None:
        for ln in lines:
            self.port.write(ln)
        self.port.write(READY_LINE)
        flush = getattr(self.port, "flush", None)
        if flush is not None:
            flush()

    # ------------------------------------------------------------------ dispatch

    def handle(self, raw: bytes) -> list[bytes]:
        """The reply lines (without ``m-ready``) to one command line; never raises PPGEdgeError."""
        self.commands += 1
        try:
            cmd = parse_command(raw)
            return list(getattr(self, f"_cmd_{cmd.verb}")(cmd))
        except ProtocolError as exc:
            self.errors += 1
            return [encode_error(exc.code, str(exc))]
        except ConfigError as exc:
            self.errors += 1
            return [encode_error("config", str(exc))]
        except PPGEdgeError as exc:
            self.errors += 1
            return [encode_error("pipeline", str(exc))]
        except Exception as exc:  # a pipeline bug must not take the DUT down
            self.errors += 1
            log.exception("DUT: command failed")
            return [encode_error("internal", f"{type(exc).__name__}: {exc}")]

    def _cmd_name(self, cmd: Command) -> Iterable[bytes]:
        info = dict(self.pipeline.describe())
        info.setdefault("pipeline", self.pipeline.name)
        yield encode_reply("m-name", name=self.name, board=self.board, ppg_edge=__version__,
                           python=platform.python_version(), machine=platform.machine(), **info)

    def _settings(self) -> dict[str, str]:
        return {"window": str(self.window), "chunk": str(self.chunk), **self.pipeline.settings()}

    def _cmd_cfg(self, cmd: Command) -> Iterable[bytes]:
        for key, value in cmd.kwargs.items():
            if key == "window":
                self.window = parse_int(value, "window", minimum=1, maximum=MAX_STIMULUS_SAMPLES)
            elif key == "chunk":
                self.chunk = parse_int(value, "chunk", minimum=1, maximum=MAX_STIMULUS_SAMPLES)
            else:
                self.pipeline.configure(key, value)
        yield encode_reply("m-cfg", **self._settings())

    def _cmd_select(self, cmd: Command) -> Iterable[bytes]:
        sid = cmd.args[0]
        if sid not in self.stimuli:
            known = ", ".join(sorted(self.stimuli)) or "none"
            raise ProtocolError("no-stimulus", f"no stimulus {sid!r} on this DUT (holds: {known})")
        self.current = self.stimuli[sid]
        self._bind(self.current)
        yield self._stim_line(self.current)

    def _bind(self, stim: Stimulus) -> None:
        """Tell the pipeline its stimulus when it plays one itself (the device path), else reset it."""
        bind = getattr(self.pipeline, "bind", None)
        if bind is not None:
            bind(stim)
        else:
            self.pipeline.reset()

    def _stim_line(self, s: Stimulus) -> bytes:
        return encode_reply("m-stim", id=s.id, n=s.samples.size, crc=s.crc)

    def _cmd_stim(self, cmd: Command) -> Iterable[bytes]:
        if "n" not in cmd.kwargs:
            raise ProtocolError("bad-arg", "stim: needs n=<samples>")
        n = parse_int(cmd.kwargs["n"], "stim n", minimum=1, maximum=MAX_STIMULUS_SAMPLES)
        fs = 1.0
        if "fs" in cmd.kwargs:
            try:
                fs = float(cmd.kwargs["fs"])
            except ValueError:
                fs = float("nan")
            if not 0 < fs <= 100_000:
                raise ProtocolError("bad-arg", f"stim: fs={cmd.kwargs['fs']!r} is not a rate in (0, 100000] Hz")
        self._upload = {"id": cmd.args[0], "n": n, "fs": fs, "values": []}
        yield encode_reply("m-upload", id=cmd.args[0], n=n)

    def _cmd_data(self, cmd: Command) -> Iterable[bytes]:
        up = self._upload
        if up is None:
            raise ProtocolError("no-stimulus", "data: no upload in progress (send stim <id> n=<N>% first)")
        values = parse_samples(cmd.args[0])
        if len(up["values"]) + len(values) > up["n"]:
            self._upload = None
            raise ProtocolError("bad-arg", f"data: upload {up['id']} would exceed its {up['n']} samples; "
                                "upload abandoned")
        up["values"].extend(values)
        if len(up["values"]) < up["n"]:
            yield encode_reply("m-data", got=len(up["values"]), of=up["n"])
            return
        stim = Stimulus(id=up["id"], samples=np.asarray(up["values"]), fs=up["fs"], source="uploaded")
        self._upload = None
        self.stimuli[stim.id] = stim
        self.current = stim
        self._bind(stim)
        yield self._stim_line(stim)

    def _cmd_reset(self, cmd: Command) -> Iterable[bytes]:
        self.pipeline.reset()
        yield encode_reply("m-reset", t=self.clock_us())

    def _cmd_infer(self, cmd: Command) -> Iterable[bytes]:
        n = parse_int(cmd.args[0], "infer N", minimum=1)
        w = parse_int(cmd.args[1], "infer W", minimum=0)
        stim = self.current
        if stim is None:
            raise ProtocolError("no-stimulus", "infer: no stimulus selected (select <id>% or upload one)")
        have = stim.samples.size // self.window
        if n > have or w > have:
            raise ProtocolError("bad-arg", f"infer: stimulus {stim.id} holds {have} windows of "
                                f"{self.window} samples; asked for {n} measured and {w} warm-up")
        x = stim.samples
        self.pipeline.reset()
        for i in range(w):                                   # warm-ups, not reported
            for j in range(i * self.window, (i + 1) * self.window, self.chunk):
                self.pipeline.feed(x[j:min(j + self.chunk, (i + 1) * self.window)])
        self.pipeline.reset()
        if hasattr(self.pipeline, "take_window_stats"):
            self.pipeline.take_window_stats()              # nothing from the warm-ups is reported
        lost0 = int(getattr(self.pipeline, "lost_samples", 0))
        cpu0 = time.process_time_ns()
        t_start = self.clock_us()
        for i in range(n):
            if self._stop is not None and self._stop.is_set():
                raise ProtocolError("internal", f"infer: DUT stopping, abandoned after {i} windows")
            lat: list[int] = []
            results = []
            lost_before = int(getattr(self.pipeline, "lost_samples", 0))
            t0 = self.clock_us()
            for j in range(i * self.window, (i + 1) * self.window, self.chunk):
                a = self.clock_us()
                out = self.pipeline.feed(x[j:min(j + self.chunk, (i + 1) * self.window)])
                b = self.clock_us()
                lat.append(b - a)
                results.extend((b, r) for r in out)
            t1 = self.clock_us()
            lost = int(getattr(self.pipeline, "lost_samples", 0)) - lost_before
            yield encode_reply("m-win", i=i, t0=t0, t1=t1, n=self.window, lost=lost)
            yield from int_list_replies("m-lat", "us", lat, i=i)
            yield from self._window_stats(i)
            for t, r in results:
                yield encode_reply("m-res", i=i, t=t, idx=r.index, kind=r.kind, v=repr(float(r.value)))
        t_end = self.clock_us()
        cpu_us = (time.process_time_ns() - cpu0) // 1000
        lost_total = int(getattr(self.pipeline, "lost_samples", 0)) - lost0
        maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
        yield encode_reply("m-infer", n=n, w=w, window=self.window, chunk=self.chunk, t0=t_start,
                           t1=t_end, cpu_us=cpu_us, maxrss_kb=maxrss_kb, lost=lost_total,
                           stim=stim.id, crc=samples_crc(x[: n * self.window]))


    def _window_stats(self, i: int) -> Iterable[bytes]:
        """Per-window extras of pipelines that measure themselves (the device path)."""
        take = getattr(self.pipeline, "take_window_stats", None)
        if take is None:
            return
        st = take()
        yield from int_list_replies("m-slat", "us", st.get("sample_latency_us", []), i=i)
        yield from int_list_replies("m-inf", "us", st.get("inference_us", []), i=i)
        yield encode_reply("m-cnt", i=i, chip_lost=st.get("chip_lost", 0), driver_lost=st.get("driver_lost", 0),
                           i2c_errors=st.get("i2c_errors", 0), samples_read=st.get("samples_read", 0))
        for kind, n in sorted(st.get("events", {}).items()):
            yield encode_reply("m-evt", i=i, kind=kind, n=n)


def serve_port(url: str, pipeline: Pipeline, *, baudrate: int = 115200, board: str = "unknown",
               stimuli: Iterable[Stimulus] = (), stop: threading.Event | None = None) -> int:
    """Open ``url`` with pyserial and serve until the link closes (``ppg-edge hil dut``)."""
    from ppg_edge.errors import HardwareError

    try:
        import serial
    except ImportError:  # pragma: no cover
        raise HardwareError("DUT mode needs pyserial (pip install 'ppg-edge[edge]')") from None
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.1)
    except (serial.SerialException, ValueError) as exc:
        raise HardwareError(f"cannot open DUT serial port {url!r}: {exc}") from None
    try:
        return DUT(port, pipeline, board=board, stimuli=stimuli).serve(stop)
    finally:
        try:
            port.close()
        except OSError as exc:       # the host already closed its end (EIO on a pty): nothing to flush
            log.debug("closing %s: %s", url, exc)

