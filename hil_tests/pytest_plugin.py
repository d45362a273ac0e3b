"""pytest plugin for hardware-in-the-loop suites.

Register it in the root ``conftest.py`` with
``pytest_plugins = ["ppg_edge.hil_tests.pytest_plugin"]`` (or ``-p
ppg_edge.hil_tests.pytest_plugin``). It adds:

* options ``--board`` (a board identifier), ``--port`` (a serial port or
  pyserial URL, overriding the hardware map's) and ``--suite`` (run only the
  ``@pytest.mark.hil(suite="...")`` tests of that suite);
* markers ``hardware`` and ``hil(suite=...)``;
* fixtures ``hil_unit`` (the unit of the local hardware map to test, see
  ``ppg_edge.boards.hardware_map``) and ``hil_link`` (an open
  :class:`~ppg_edge.hil_tests.link.Link` to its DUT).

Without attached hardware the fixtures skip with the reason; with
``PPG_EDGE_REQUIRE_HARDWARE=1`` they fail instead, so a hardware bench cannot
pass by skipping everything.
"""
from __future__ import annotations

import os

import pytest

ENV_REQUIRE = "PPG_EDGE_REQUIRE_HARDWARE"


def require_hardware() -> bool:
    return os.environ.get(ENV_REQUIRE, "").strip() not in ("", "0", "false", "no")


def _absent(reason: str) -> None:
    if require_hardware():
        pytest.fail(f"hardware is required here ({ENV_REQUIRE}=1): {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ppg-edge-hil", "ppg-edge hardware-in-the-loop")
    group.addoption("--board", action="store", default=None,
                    help="board identifier of the unit to test (default: the map's first unit)")
    group.addoption("--port", action="store", default=None,
                    help="serial port or pyserial URL of the HIL link (overrides the hardware map)")
    group.addoption("--suite", action="store", default=None,
                    help="run only HIL tests marked hil(suite=NAME)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs real hardware named in the local hardware map")
    config.addinivalue_line("markers", "hil(suite): a hardware-in-the-loop test belonging to a suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite = config.getoption("--suite")
    if not suite:
        return
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("hil")
        if mark is None:
            keep.append(item)
            continue
        (keep if mark.kwargs.get("suite", mark.args[0] if mark.args else None) == suite else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def hil_unit(request: pytest.FixtureRequest):
    """The hardware-map unit under test (``--board`` picks one); skips when none is attached."""
    from ppg_edge.boards import load_hardware_map
    from ppg_edge.errors import ConfigError

    try:
        hw = load_hardware_map()
    except ConfigError as exc:
        pytest.fail(f"hardware map is invalid: {exc}", pytrace=False)
    board = request.config.getoption("--board")
    units = [u for u in hw.units if board is None or u.board == board]
    if not hw.units:
        _absent("no hardware attached: no hardware map (see boards/hardware-map.example.toml)")
    if not units:
        _absent(f"no unit of board {board!r} in the hardware map {hw.path} "
                f"(it has: {', '.join(u.board for u in hw.units)})")
    return units[0]


@pytest.fixture
def hil_link(request: pytest.FixtureRequest, hil_unit):
    """An open link to the unit's DUT (``ppg-edge hil dut`` must be running there)."""
    from ppg_edge.errors import HardwareError

    from .link import open_link

    port = request.config.getoption("--port") or hil_unit.serial_port
    if port == "pty":
        _absent(f"unit {hil_unit.name} is virtual: start its DUT on a pty and pass that path with --port")
    try:
        link = open_link(port)
    except HardwareError as exc:
        _absent(f"unit {hil_unit.name}: {exc}")
    try:
        yield link
    finally:
        link.close()
