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


@pytest.mark.slow
def test_demo_says_loudly_when_the_device_part_cannot_use_the_virtual_pi(data_root, tmp_path, capsys,
                                                                          monkeypatch):
    """A machine without qemu-user-static whose package install fails: the demo still runs its
    device part (on a local DUT) and says so at the top and at the end, with the reason and the fix."""
    from ppg_edge.boards.virtual import host
    from ppg_edge.errors import HardwareError

    monkeypatch.setattr(host, "missing_packages", lambda packages: ["qemu-user-static"])

    def no_install(packages):
        raise HardwareError("apt-get install failed (exit 100): E: Unable to locate package")

    monkeypatch.setattr(host, "install_packages", no_install)
    assert main(["demo", "--data-root", str(data_root), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    notes = [i for i, line in enumerate(lines) if "did NOT run on the virtual Pi" in line]
    assert len(notes) == 2, out
    assert notes[0] <= 2, "the note must open the report"
    assert notes[1] > lines.index("== hardware in the loop =="), "and close it"
    assert "qemu-user-static" in lines[notes[0]] and "Fix: apt-get install qemu-user-static" in lines[notes[0] + 1]
    (session,) = tmp_path.glob("demo-*")
    report = (session / "report.md").read_text().strip().splitlines()
    assert "did NOT run on the virtual Pi" in report[0] and "Fix:" in report[-1]
    # the device part ran all the same, on the local DUT
    hil = [json.loads(p.read_text()) for p in tmp_path.glob("*/results.json") if p.parent != session]
    assert {r["suite"] for r in hil} == {"smoke", "accuracy-short"}
    assert "local DUT" in out
