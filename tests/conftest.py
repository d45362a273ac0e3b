"""Shared fixtures: the real data root, seeded generators.

Tests that need real data take the ``data_root`` fixture. Without data they are
skipped with a reason, except when ``CI`` or ``PPG_EDGE_REQUIRE_DATA`` is set:
then a missing data root fails the run.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from ppg_edge import config
from ppg_edge.errors import DataNotFoundError

# --board/--port/--suite options, hardware fixtures (skip without a hardware map).
pytest_plugins = ["ppg_edge.hil_tests.pytest_plugin"]


def _require_data() -> bool:
    return bool(os.environ.get("PPG_EDGE_REQUIRE_DATA") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def data_root():
    try:
        return config.data_root()
    except DataNotFoundError as exc:
        if _require_data():
            pytest.fail(f"real data is required here: {exc}")
        pytest.skip(f"no real data: {exc}")


@pytest.fixture
def rng():
    return np.random.default_rng(20251122)


def run_hil_suite(suite: str, data_root, runs, peak_model, timeout: float = 1200):
    """``ppg-edge hil run --board virtual-rpi4 --local-dut --suite SUITE --json`` as a user runs it, in a
    process of its own: (session folder, results.json, the --json headline, the process). Fails
    with the stderr tail when no session folder was written."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ppg_edge", "hil", "run", "--board", "virtual-rpi4", "--local-dut",
           "--suite", suite, "--model", f"int8={peak_model}", "--data-root", str(data_root),
           "--runs-dir", str(runs), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    folders = sorted(f.parent for f in runs.rglob("results.json"))
    assert len(folders) == 1, f"rc {p.returncode}; stderr tail:\n{p.stderr[-3000:]}"
    head = json.loads(p.stdout)                      # --json: one document on stdout
    return folders[0], json.loads((folders[0] / "results.json").read_text()), head, p
