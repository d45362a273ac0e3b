"""``ppg-edge evaluate peaks`` with the data registry and noise replaced by synthetic stand-ins."""
from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from evaluate_helpers import make_record, white_noise

import ppg_edge.data
from ppg_edge.cli import main
from ppg_edge.errors import DataNotFoundError


@pytest.fixture
def fake_data(monkeypatch):
    """ppg_edge.data.load / load_record serving synthetic records; records the calls."""
    rng = np.random.default_rng(4)
    sets = {
        "alpha": [make_record("alpha", f"r{i}", 100.0, 15.0, 60.0 + 20 * i, rng) for i in range(3)],
        "beta": [make_record("beta", "q0", 125.0, 15.0, 100.0, rng)],
    }
    calls = []

    def load(name, root=None, progress=False):
        calls.append(("load", name, root))
        if name not in sets:
            raise DataNotFoundError(f"data set {name!r} not found")
        return list(sets[name])

    def load_record(name, record_id, root=None):
        calls.append(("load_record", name, record_id, root))
        for r in sets.get(name, []):
            if r.record_id == record_id:
                return r
        raise DataNotFoundError(f"record {name}/{record_id} not found")

    monkeypatch.setattr(ppg_edge.data, "load", load, raising=False)
    monkeypatch.setattr(ppg_edge.data, "load_record", load_record, raising=False)
    synth = types.ModuleType("ppg_edge.synth")
    synth.add_noise = white_noise
    monkeypatch.setitem(sys.modules, "ppg_edge.synth", synth)
    return calls


def test_markdown_table_for_two_datasets_and_noise(fake_data, capsys, tmp_path):
    out, md = tmp_path / "r" / "res.json", tmp_path / "table.md"
    rc = main(["-q", "evaluate", "peaks", "--dataset", "alpha", "--dataset", "beta",
               "--detector", "nk-elgendi", "--noise", "gaussian:10",
               "--out", str(out), "--markdown", str(md), "--data-root", str(tmp_path)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "### alpha" in text and "### beta" in text and "### all" in text
    assert "| nk-elgendi | clean |" in text and "| nk-elgendi | gaussian:10 |" in text
    assert md.read_text().strip() == text.strip()
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 4 * 2
    assert data["tolerances_ms"] == [50.0, 25.0]
    clean_all = [p for p in data["pooled"] if (p["dataset"], p["condition"]) == ("all", "clean")][0]
    assert clean_all["scores"]["50ms"]["f1"] >= 0.95
    assert ("load", "alpha", str(tmp_path)) in fake_data


def test_json_to_stdout_with_selected_records_and_tolerance(fake_data, capsys):
    rc = main(["-q", "evaluate", "peaks", "--dataset", "alpha", "--records", "r0", "r2",
               "--detector", "nk-elgendi", "--detector", "nk-msptdfastv2",
               "--tolerance-ms", "40", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tolerances_ms"] == [40.0]
    assert {r["record_id"] for r in data["rows"]} == {"r0", "r2"}
    assert data["detectors"] == ["nk-elgendi", "nk-msptdfastv2"]
    assert [c[0] for c in fake_data] == ["load_record", "load_record"]


def test_dataset_qualified_record_ids(fake_data, capsys):
    assert main(["-q", "evaluate", "peaks", "--dataset", "alpha", "--dataset", "beta",
                 "--records", "beta/q0", "--json"]) == 0
    assert {r["dataset"] for r in json.loads(capsys.readouterr().out)["rows"]} == {"beta"}


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--dataset", "alpha", "--detector", "nope"], "unknown detector 'nope'; valid names: Type16, Type24, Type28, Type30, dwt-baseline, nk-elgendi"),
        (["--dataset", "alpha", "--noise", "pink:3"], "unknown noise kind"),
        (["--dataset", "alpha", "--noise", "gaussian"], "KIND:SNR_DB"),
        (["--dataset", "gamma"], "data set 'gamma' not found"),
        (["--dataset", "alpha", "--records", "zz"], "record alpha/zz not found"),
        (["--dataset", "alpha", "--dataset", "beta", "--records", "r0"], "ambiguous"),
        (["--dataset", "alpha", "--records", "beta/q0"], "not among --dataset"),
        (["--dataset", "alpha", "--no-clean"], "nothing to evaluate"),
        (["--dataset", "alpha", "--tolerance-ms", "0"], "must be positive"),
    ],
)
def test_bad_usage_is_a_one_line_error(fake_data, capsys, argv, msg):
    assert main(["-q", "evaluate", "peaks", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ppg-edge: error: ") and msg in err


def test_missing_registry_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delattr(ppg_edge.data, "load", raising=False)
    assert main(["-q", "evaluate", "peaks", "--dataset", "alpha"]) == 1
    assert "ppg_edge.data has no load()" in capsys.readouterr().err


def test_evaluate_without_benchmark_prints_help(capsys):
    assert main(["evaluate"]) == 2
    assert "peaks" in capsys.readouterr().err


def test_dataset_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "peaks"])
    assert exc.value.code == 2
    assert "--dataset" in capsys.readouterr().err
