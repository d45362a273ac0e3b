"""Clocks shared by the MAX30102 driver and the emulated chip.

The driver never reads the time or sleeps by itself: it asks a :class:`Clock`. On a
Pi that is :class:`MonotonicClock`; in tests a :class:`VirtualClock` whose ``sleep``
moves virtual time forward, so an emulated chip sharing that clock produces exactly
the samples that "time passing" implies, deterministically and instantly.
"""
from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Seconds on a monotonic time line, and a way to wait."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """Real time: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class AcceleratedClock:
    """Real time running ``speed`` times faster (``speed=10``: one real second is ten)."""

    def __init__(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be positive, got {speed!r}")
        self.speed = float(speed)
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)


class VirtualClock:
    """Virtual time that moves only when someone sleeps or calls :meth:`advance`.

    Every ``sleep`` is recorded in :attr:`sleeps`, so a test can see how a reader
    paces itself (how many waits, how long) without waiting at all. ``keep_sleeps=False``
    (hours of accelerated signal: the list grows by a float per driver wait, ~0.7 MB per hour)
    keeps only :attr:`n_sleeps` and :attr:`slept_s`.
    """

    def __init__(self, start: float = 0.0, *, keep_sleeps: bool = True) -> None:
        self._t = float(start)
        self.sleeps: list[float] = []
        self.keep_sleeps = bool(keep_sleeps)
        self.n_sleeps = 0
        self.slept_s = 0.0

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, got {seconds!r}")
        if self.keep_sleeps:
            self.sleeps.append(float(seconds))
        self.n_sleeps += 1
        self.slept_s += float(seconds)
        self._t += float(seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without counting it as a sleep (e.g. a stalled reader)."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds!r} s)")
        self._t += float(seconds)
