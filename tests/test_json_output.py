"""Machine-readable output is pure: every ``--json`` command prints one JSON document on stdout.

Each command that takes ``--json`` runs here as a subprocess with the cheapest real
arguments that work in this repository, and its whole stdout must parse with
``json.loads`` (logs, progress bars and notes belong on stderr). Commands that need
ssh, root or hardware run in a mode that fails cleanly: then stdout must be empty.
:func:`test_every_json_command_is_covered` walks the CLI's own parser, so a new
``--json`` command without a case here fails the suite. The JSON-lines sink
(``ppg-edge run``) must give one JSON object per line and nothing else.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.cli import build_parser
from ppg_edge.edge_runtime.sinks import JsonLinesSink

REPO = Path(__file__).resolve().parents[1]
DEVICE_INT8 = REPO / "models" / "device" / "peaks-Type30-int8.tflite"


@dataclass(frozen=True)
class Case:
    id: str
    path: tuple[str, ...]              # the subcommand whose --json this exercises
    argv: tuple[str, ...]              # after `ppg-edge`; {tmp} is the test's tmp_path
    stdout: str = "json"               # "json": one document; "empty": a clean failure
    rcs: tuple[int, ...] = (0,)
    data: bool = False
    slow: bool = False
    needs: tuple[str, ...] = ()        # importable modules the command needs
    env: dict = field(default_factory=dict)
    check: Callable[[object], None] | None = None    # more about the parsed document


SSH = ("--board", "rpi4b", "--host", "pi@example.invalid")


def _hil_smoke_ok(doc) -> None:
    # the reproduction: the local DUT's "link closed" note came before this document
    assert doc["suite"] == "smoke" and doc["status"] == "ok"
    assert Path(doc["session"], "results.json").is_file()

CASES = [
    Case("boards", ("boards",), ("boards", "--json")),
    Case("boards-hardware", ("boards",), ("boards", "--hardware", "--json"),
         env={"PPG_EDGE_HARDWARE_MAP": str(REPO / "boards" / "hardware-map.example.toml")}),
    Case("boards-show", ("boards", "show"), ("boards", "show", "rpi4b", "--json")),
    Case("data-info", ("data", "info"), ("data", "info", "wfdb-samples", "--json"), data=True),
    # exit 1 means a committed split is stale against the data: still one JSON document
    Case("data-splits", ("data", "splits"), ("data", "splits", "--json"), rcs=(0, 1), data=True),
    Case("data-check-beats", ("data", "check-beats"), ("data", "check-beats", "--json"),
         rcs=(0, 1), data=True),
    Case("evaluate-peaks", ("evaluate", "peaks"),
         ("evaluate", "peaks", "--dataset", "capnobase", "--records", "0009", "--json"), data=True),
    Case("evaluate-bp-combine", ("evaluate", "bp"),
         ("evaluate", "bp", "--combine", "docs/results/bp-cv-100hz.json", "--json")),
    Case("evaluate-bp-calibration", ("evaluate", "bp-calibration"),
         ("evaluate", "bp-calibration", "--json"), data=True),
    Case("evaluate-pseudo-labels", ("evaluate", "pseudo-labels"),
         ("evaluate", "pseudo-labels", "--dataset", "bidmc", "--json"), data=True),
    Case("evaluate-lodo", ("evaluate", "lodo"),
         ("evaluate", "lodo", "--without", "bidmc=dwt-baseline", "--in-distribution", "nk-elgendi",
          "--classic", "dwt-baseline", "--noise", "gaussian:5", "--json"), data=True),
    Case("train-bp-device-choose", ("train", "bp-device"),
         ("train", "bp-device", "--cv", "docs/results/bp-device-cv.json", "--choose-only", "--json")),
    # a cuff reading paired by hand with an estimate: the calibration file's summary
    Case("calibrate", ("calibrate",),
         ("calibrate", "--sbp", "128", "--bp-model", "models/device/bp-ppg-100hz.trees", "--estimate-sbp", "120",
          "--calibration", "{tmp}/cal.json", "--json")),
    Case("hil-run-smoke", ("hil", "run"),
         ("hil", "run", "--board", "rpi4b", "--local-dut", "--suite", "smoke", "--json",
          "--runs-dir", "{tmp}/runs"), data=True, check=_hil_smoke_ok),
    Case("hil-run-moving-average", ("hil", "run"),
         ("hil", "run", "--board", "rpi4b", "--local-dut", "--port", "pty", "--pipeline", "moving-average",
          "--loops", "1", "--windows", "2", "--warmups", "0", "--json", "--runs-dir", "{tmp}/runs")),
    Case("deploy-dry-run", ("deploy",),
         ("deploy", *SSH, "--dry-run", "--json", "--wheel", "{tmp}/ppg_edge-0.0.0-py3-none-any.whl",
          "--models", "models/device")),
    Case("deploy-status-dry-run", ("deploy",), ("deploy", *SSH, "--status", "--dry-run", "--json")),
    # no device to reach: the error is one line on stderr and stdout stays empty
    Case("deploy-status-unreachable", ("deploy",),
         ("deploy", "--board", "rpi4b", "--host", "pi@127.0.0.1", "--port", "1", "--status", "--json"),
         stdout="empty", rcs=(1,)),
    # the count itself runs under qemu in tests/test_bench_arm.py; here its refusal keeps stdout clean
    Case("bench-arm-bad-length", ("bench", "arm"), ("bench", "arm", "--board", "rpi4b", "--seconds", "0", "--json"),
         stdout="empty", rcs=(1,)),
    Case("bench-real", ("bench", "real"), ("bench", "real", "--records", "aromring", "--json"), data=True),
    Case("vpi-status", ("vpi", "status"), ("vpi", "status", "--dir", "{tmp}/vpi", "--json")),
    Case("convert", ("convert",),
         ("convert", "models/peaks/Type16", "--mode", "float32", "--check-windows", "2",
          "--out", "{tmp}/tflite", "--json"), slow=True, needs=("tensorflow",)),
]


def _json_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every subcommand path of ``parser`` that has a ``--json`` option."""
    found = set()
    if any("--json" in a.option_strings for a in parser._actions):
        found.add(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _json_commands(sub, prefix + (name,))
    return found


def test_every_json_command_is_covered():
    commands = _json_commands(build_parser())
    assert ("hil", "run") in commands and ("boards", "show") in commands  # the walk finds nested ones
    covered = {c.path for c in CASES}
    assert commands - covered == set(), "--json commands without a case in tests/test_json_output.py"
    assert covered - commands == set(), "cases for commands that have no --json option"


def _ppg_edge(argv, *, env_extra=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("PPG_EDGE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "ppg_edge", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _params():
    for c in CASES:
        marks = ([pytest.mark.slow] if c.slow else []) + ([pytest.mark.data] if c.data else [])
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_json_stdout_is_one_document(case: Case, tmp_path, request):
    for mod in case.needs:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{' '.join(case.path)} needs {mod}, not installed here")
    env = dict(case.env)
    if case.data:
        env["PPG_EDGE_DATA"] = str(request.getfixturevalue("data_root"))
    if case.id == "deploy-dry-run":
        (tmp_path / "ppg_edge-0.0.0-py3-none-any.whl").write_bytes(b"")  # never installed: a dry run
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv]
    proc = _ppg_edge(argv, env_extra=env)
    where = f"ppg-edge {' '.join(argv)} (rc {proc.returncode})\nstderr tail:\n{proc.stderr[-1500:]}"
    assert proc.returncode in case.rcs, where
    assert "Traceback" not in proc.stderr, where
    if case.stdout == "empty":
        assert proc.stdout == "", where
        assert "ppg-edge: error:" in proc.stderr, where
        return
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"stdout is not one JSON document ({exc}):\n{proc.stdout[:800]}\n{where}")
    assert isinstance(doc, (dict, list)) and doc, where
    if case.check is not None:
        case.check(doc)


def _events(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "no events"
    events = [json.loads(ln) for ln in lines]           # every line is one complete JSON value
    assert all(isinstance(e, dict) and "type" in e and "t" in e for e in events)
    return events


RUN = ("run", "--board", "rpi4b", "--duration", "10", "--speed", "0", "--model", str(DEVICE_INT8))


def test_run_json_lines_on_stdout_with_the_status_line_on_stderr():
    proc = _ppg_edge(list(RUN))                           # live status line on: it must go to stderr
    assert proc.returncode == 0, proc.stderr[-1500:]
    events = _events(proc.stdout)
    assert any(e["type"] == "beat" for e in events)
    assert "beats" in proc.stderr                          # the status line is there, not on stdout


def test_run_json_lines_to_a_file_leave_stdout_empty(tmp_path):
    out = tmp_path / "events.jsonl"
    proc = _ppg_edge([*RUN, "--out", str(out), "--no-status"])
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout == ""
    assert any(e["type"] == "beat" for e in _events(out.read_text()))


def test_json_lines_sink_writes_one_object_per_line():
    buf = io.StringIO()
    sink = JsonLinesSink(buf)
    sink.emit({"type": "beat", "t": 1.5, "prob": np.float32(0.75), "index": np.int64(3)})
    sink.emit({"type": "sensor", "t": 2.0, "detail": "line one\nline two", "v": math.nan})
    sink.emit({"type": "window", "t": 3.0, "probs": np.array([0.1, math.inf]), "nested": {"x": -math.inf}})
    sink.close()
    lines = buf.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 4              # three lines, each newline-terminated
    a, b, c = (json.loads(ln) for ln in lines[:3])
    assert a == {"type": "beat", "t": 1.5, "prob": 0.75, "index": 3}
    assert b["detail"] == "line one\nline two" and b["v"] is None
    assert c["probs"] == [pytest.approx(0.1), None] and c["nested"] == {"x": None}
    assert sink.count == 3
