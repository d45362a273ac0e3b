"""``ppg-edge bench arm``: the device path's instruction counts stay within the committed budget.

The budget (hil_tests/budgets/arm-insn.json) holds the counts of a 10 s run on the Zero 2 W's
Cortex-A53; instruction counts under qemu TCG are deterministic, so growing more than 10 %
over it fails. A change that lowers a count updates the budget in the same commit.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from ppg_edge.boards.registry import load_board
from ppg_edge.boards.virtual import insn
from ppg_edge.config import REPO_ROOT
from ppg_edge.errors import ConfigError
from ppg_edge.evaluate import arm_bench

BUDGET = REPO_ROOT / "hil_tests" / "budgets" / "arm-insn.json"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "not root: the bench runs on the virtual Pi's base stage, which only root builds"
    if shutil.which("qemu-aarch64") is None:
        return "qemu-user missing: apt-get install qemu-user (the dynamic qemu-aarch64 loads TCG plugins)"
    if shutil.which("gcc") is None:
        return "gcc missing: it builds the instruction-count plugin"
    return None


def _require_tools() -> None:
    """Skip without root, qemu-user or gcc; in CI (PPG_EDGE_REQUIRE_DATA=1, as root) fail instead."""
    reason = _missing()
    if reason:
        if os.environ.get("PPG_EDGE_REQUIRE_DATA") == "1" and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)


def test_parse_counts_and_budget_check():
    total, stages = insn.parse_counts("total 100\nstage 0 60\nstage 7 40\n")
    assert (total, stages) == (100, {0: 60, 7: 40})
    with pytest.raises(Exception, match="no total"):
        insn.parse_counts("stage 1 5\n")
    budget = {"paths": {"network": 10e6, "classic": 4e6}}
    doc = {"paths": {"network": {"device_insn_per_signal_s": 10.9e6}, "classic": {"device_insn_per_signal_s": 4.5e6}}}
    over = arm_bench.check_budget(doc, budget)
    assert len(over) == 1 and over[0].startswith("classic: 4.50M")
    # a count of another record is not held to the budget's figures
    over = arm_bench.check_budget({**doc, "record": "capnobase/0038"}, {**budget, "record": "capnobase/0009"})
    assert over[0] == "counted on capnobase/0038, the budget is capnobase/0009's"


def test_bench_record_is_dataset_and_id(tmp_path, capsys):
    from ppg_edge.cli import main

    assert arm_bench._record("capnobase/0038") == ("capnobase", "0038")
    for bad in ("0038", "capnobase/", "/0038"):
        with pytest.raises(ConfigError, match="DATASET/ID"):
            arm_bench._record(bad)
    # refused before anything runs: a budget is the CI record's
    assert main(["bench", "arm", "--record", "capnobase/0038", "--budget", str(tmp_path / "b.json")]) != 0
    assert "leave out --record" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_budget_keeps_its_history(tmp_path):
    doc = {"board": "rpi-zero-2w", "seconds": 10.0, "cpu": {"qemu_cpu": "cortex-a53"}, "record": "capnobase/0009",
           "lengths_s": [10.0, 20.0], "runtime": {"hop": 225},
           "paths": {"network": {"device_insn_per_signal_s": 5.5e6}}}
    old = tmp_path / "budget.json"
    assert "history" not in arm_bench.budget_from(doc, previous=old)  # no file yet, no note
    old.write_text(json.dumps({"paths": {"network": 6e6}, "history": ["first"]}))
    got = arm_bench.budget_from(doc, previous=old, note="second")
    assert got["history"] == ["first", "second"] and got["paths"] == {"network": 5500000}
    old.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a budget file"):
        arm_bench.budget_from(doc, previous=old)


def test_modelled_energy_from_the_board_file():
    zero = load_board("rpi-zero-2w")
    assert arm_bench.qemu_core(zero) == "cortex-a53"
    m = arm_bench.modelled(zero, 6e6, 100.0)  # 6M instructions/s at 1 GHz, IPC 1: 0.6 % of a core
    assert m["modelled_cpu_load"] == pytest.approx(0.006)
    assert m["modelled_mj_per_sample"] == pytest.approx(0.006 * 0.35 / 100 * 1e3)
    assert m["modelled_mw"] == pytest.approx(0.006 * 0.35 * 1e3)
    with pytest.raises(ConfigError, match="at least 5"):
        arm_bench.lengths(1)
    with pytest.raises(ConfigError, match="rate-error"):  # refused before anything is built or run
        arm_bench.bench(zero, 10, rate_error=0.2)


@pytest.mark.slow
def test_device_path_within_budget(data_root):
    _require_tools()
    budget = json.loads(BUDGET.read_text())
    doc = arm_bench.bench(load_board(budget["board"]), budget["seconds"], stages=False, models=False, chip=False,
                          equivalence=True, data_root=data_root, progress=False)
    assert doc["equivalence"]["events_equal"], doc["equivalence"]
    assert doc["equivalence"]["beats"] > 0
    over = arm_bench.check_budget(doc, budget)
    assert not over, "over the instruction budget on " + budget["board"] + ": " + "; ".join(over)


@pytest.mark.slow
def test_what_a_stage_is_made_of_is_counted_per_call(tmp_path):
    _require_tools()
    rows = {r["call"]: r["insn_per_call"]
            for r in arm_bench.call_counts(arm_bench.Runner(load_board("rpi-zero-2w"), tmp_path), repeats=20)}
    empty = rows.pop("Python call of a function that does nothing")
    assert empty > 0 and all(v > empty for v in rows.values()), rows
    # numpy's Python-level wrapper costs more than the reduction it wraps; a ufunc more than a view
    assert rows["np.mean(x) (a Python-level wrapper)"] > rows["numpy reduction np.add.reduce(x)"]
    assert rows["numpy ufunc x + 1.0"] > rows["numpy slice view x[10:200]"]
