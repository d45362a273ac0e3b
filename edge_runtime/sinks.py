"""Event sinks: JSON lines (stdout or a file) and a hook for the HIL line protocol.

Every event is a flat-ish dict with ``type`` (``beat``, ``hr``, ``bp``,
``quality``, ``window``, ``sensor`` for overflow/i2c_error/saturation/stall...,
``nonfinite``, ``lost``, ``summary``) and ``t`` (seconds since the stream
start). :class:`JsonLinesSink` writes one JSON object per line, flushed, with
non-finite floats written as ``null``. :class:`CallbackSink` hands each event to
a function: the HIL engineer's line-protocol writer plugs in there.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Protocol

from ppg_edge.errors import ConfigError


class Sink(Protocol):
    def emit(self, event: dict) -> None: ...

    def close(self) -> None: ...


def json_safe(v):
    """``v`` with non-finite floats as ``None`` and numpy scalars and arrays as Python values
    (dicts, lists and tuples walked): what ``json.dumps(..., allow_nan=False)`` accepts. The
    one such cleaner: runtime events here, the evaluation harness's results."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "tolist"):  # numpy scalar or array
        return json_safe(v.tolist())
    return v


class JsonLinesSink:
    """One JSON object per line to ``target`` (a path, ``"-"`` for stdout, or an open text stream).

    Each line is a complete compact JSON object (newlines inside strings are
    escaped by the encoder). With ``"-"`` the events are the only thing on
    stdout: logs and the status line go to stderr.
    """

    def __init__(self, target: str | Path | IO[str] = "-"):
        self._own = False
        if hasattr(target, "write"):
            self.fh = target
        elif str(target) == "-":
            self.fh = sys.stdout
        else:
            try:
                self.fh = open(target, "w", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot open output file {target}: {exc.strerror or exc}") from None
            self._own = True
        self.count = 0
        # one encoder for every event: json.dumps with options builds a new one per call
        self._encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

    def emit(self, event: dict) -> None:
        try:  # the runtime's events are plain Python values: the encoder's C path, no walk
            line = self._encode(event)
        except (TypeError, ValueError):  # a numpy value or a non-finite float: cleaned first
            line = self._encode(json_safe(event))
        self.fh.write(line + "\n")
        self.fh.flush()
        self.count += 1

    def close(self) -> None:
        if self._own:
            self.fh.close()


class CallbackSink:
    """Calls ``fn(event)`` for every event whose type is in ``types`` (all when None)."""

    def __init__(self, fn: Callable[[dict], None], types: Iterable[str] | None = None):
        self.fn = fn
        self.types = set(types) if types is not None else None

    def emit(self, event: dict) -> None:
        if self.types is None or event.get("type") in self.types:
            self.fn(event)

    def close(self) -> None:
        pass


class MultiSink:
    def __init__(self, *sinks: Sink):
        self.sinks = list(sinks)

    def emit(self, event: dict) -> None:
        for s in self.sinks:
            s.emit(event)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class MemorySink:
    """Keeps events in a list (tests, and callers that post-process a run)."""

    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(json_safe(event))

    def close(self) -> None:
        pass

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("type") == kind]
