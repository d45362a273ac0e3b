"""`ppg-edge demo` runs on the real data and leaves a session folder."""
from __future__ import annotations

import json

import pytest

from ppg_edge.cli import main


@pytest.mark.slow
def test_demo_runs_on_a_held_out_record(data_root, tmp_path, capsys):
    assert main(["demo", "--data-root", str(data_root), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "capnobase/" in out and "| nk-elgendi | clean |" in out
    (session,) = tmp_path.glob("demo-*")
    result = json.loads((session / "results.json").read_text())
    # then the device: the smoke and short accuracy suites, each with its own session folder
    hil = {json.loads(p.read_text())["suite"]: json.loads(p.read_text())
           for p in tmp_path.glob("*/results.json") if p.parent != session}
    assert set(hil) == {"smoke", "accuracy-short"}, sorted(hil)
    assert all(r["status"] == "ok" for r in hil.values()), {k: r["status"] for k, r in hil.items()}
    assert "== hardware in the loop ==" in out
    # the demo record is a test subject of the committed split, never a training one
    from ppg_edge.data.splits import load_split

    (subject,) = {f"{r['dataset']}/{r['subject_id']}" for r in result["rows"]}
    assert subject in load_split("peaks")["test"]
    clean = [r for r in result["pooled"] if r["condition"] == "clean" and r["dataset"] == "capnobase"]
    assert {r["detector"] for r in clean} == {"nk-elgendi", "nk-msptdfastv2", "dwt-baseline"}
    assert all(r["scores"]["50ms"]["f1"] > 0.95 for r in clean)
