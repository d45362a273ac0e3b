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
