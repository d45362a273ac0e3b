"""The local hardware map: which physical units are attached to this host.

Board files (committed) describe kinds of board; the hardware map (never
committed, it is per host) names the units on the bench: which board each one
is, how to reach it (an ssh target), the MAX30102's I2C address on it and the
host-side serial port of its hardware-in-the-loop link. Hardware tests pick
their units from it.

Path: ``$PPG_EDGE_HARDWARE_MAP``, else ``~/.config/ppg-edge/hardware-map.toml``.
A missing default file means "no hardware attached" (an empty map); a path
named by the environment variable that does not exist is an error. See
``boards/hardware-map.example.toml`` for the format.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ppg_edge.errors import ConfigError

from .registry import _IDENT, _read_toml, _Table, load_board

log = logging.getLogger(__name__)

ENV_HARDWARE_MAP = "PPG_EDGE_HARDWARE_MAP"
_SSH_TARGET = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(?::\d{1,5})?$")


@dataclass(frozen=True)
class Unit:
    """One physical (or virtual) board attached to this host."""

    name: str
    board: str
    host: str | None
    i2c_address: int
    serial_port: str
    notes: str = ""


@dataclass(frozen=True)
class HardwareMap:
    path: str | None
    units: tuple[Unit, ...] = ()

    def unit(self, name: str) -> Unit:
        for u in self.units:
            if u.name == name:
                return u
        known = ", ".join(u.name for u in self.units) or "none"
        raise ConfigError(f"hardware map {self.path}: no unit named {name!r} (units: {known})")

    def for_board(self, board: str) -> list[Unit]:
        return [u for u in self.units if u.board == board]


def hardware_map_path() -> tuple[Path, bool]:
    """The hardware map's path and whether it was named explicitly (environment)."""
    env = os.environ.get(ENV_HARDWARE_MAP)
    if env:
        return Path(env).expanduser(), True
    return Path.home() / ".config" / "ppg-edge" / "hardware-map.toml", False


def parse_hardware_map(data: dict, path: str = "<hardware map>") -> HardwareMap:
    top = _Table(path, "", data)
    raw_units = top.get("unit", list, required=False, default=[])
    top.finish()
    units: list[Unit] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_units):
        t = _Table(path, f"unit[{i}]", raw)
        name = t.get("name", str, check=lambda v: None if _IDENT.match(v)
                     else "use lower-case letters, digits and '-'")
        if name in seen:
            raise t.fail("name", f"{name!r} used twice")
        seen.add(name)
        board_id = t.get("board", str)
        try:
            board = load_board(board_id)
        except ConfigError as exc:
            raise t.fail("board", str(exc)) from None
        host = t.get("host", str, required=not board.virtual,
                     check=lambda v: None if _SSH_TARGET.match(v) else f"{v!r} is not an ssh target like pi@host")
        addr = t.get("i2c_address", int, required=False, default=board.max30102.address,
                     check=lambda v: None if 0x08 <= v <= 0x77 else f"0x{v:02x} outside 0x08-0x77")

        def port_check(v: str) -> str | None:
            if board.virtual:  # noqa: B023 - called at once below, within this iteration
                return None if v == "pty" else f"{v!r}: a virtual unit's link is 'pty'"
            return None if v.startswith("/dev/") else f"{v!r}: expected a /dev path on this host"

        port = t.get("serial_port", str, check=port_check)
        notes = t.get("notes", str, required=False, default="")
        t.finish()
        units.append(Unit(name=name, board=board.identifier, host=host, i2c_address=addr,
                          serial_port=port, notes=notes))
    return HardwareMap(path=path, units=tuple(units))


def load_hardware_map(path: str | os.PathLike | None = None) -> HardwareMap:
    """Read and validate the hardware map; an absent default file is an empty map."""
    if path is not None:
        p, explicit = Path(path).expanduser(), True
    else:
        p, explicit = hardware_map_path()
    if not p.is_file():
        if explicit:
            raise ConfigError(f"hardware map {p} does not exist")
        log.debug("no hardware map at %s: no units attached", p)
        return HardwareMap(path=None)
    return parse_hardware_map(_read_toml(p), str(p))
