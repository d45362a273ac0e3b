"""Packaging rules: one namespace, version from metadata, one-line CLI errors."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import ppg_edge
from ppg_edge.cli import main


def test_version_comes_from_metadata():
    from importlib.metadata import version

    assert ppg_edge.__version__ == version("ppg-edge")


def test_roles_import_under_the_namespace():
    for role in ("train", "convert", "edge_runtime", "hil_tests", "boards"):
        assert importlib.util.find_spec(f"ppg_edge.{role}") is not None, role


def test_wheel_has_one_top_level_name_and_a_light_base(tmp_path):
    """Nothing plainly named `train` or `convert` lands in site-packages, and the
    base requirements (what the device installs) never include TensorFlow."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(root)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("ppg_edge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ppg_edge"}, tops
    assert any(n.startswith("ppg_edge/edge_runtime/") for n in names)
    base = [line for line in meta.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base and not any("tensorflow" in line for line in base), base
    edge = [line for line in meta.splitlines() if "extra == \"edge\"" in line]
    assert edge and not any("tensorflow" in line or "scipy" in line for line in edge), edge


def test_cli_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert ppg_edge.__version__ in capsys.readouterr().out


def test_cli_without_command_prints_help_and_fails():
    proc = subprocess.run([sys.executable, "-m", "ppg_edge"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: ppg-edge" in proc.stderr


def _parser_with(handler):
    import argparse

    parser = argparse.ArgumentParser(prog="ppg-edge")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    sub = parser.add_subparsers()
    sub.add_parser("boom").set_defaults(func=handler)
    return parser


def test_cli_errors_are_one_line(monkeypatch, capsys):
    import ppg_edge.cli as cli
    from ppg_edge.errors import DataNotFoundError

    def handler(args):
        raise DataNotFoundError("record capnobase/0000 not found in /nowhere")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "ppg-edge: error: record capnobase/0000 not found in /nowhere"


def test_cli_unexpected_errors_are_one_line_unless_debug(monkeypatch, capsys):
    import pytest

    import ppg_edge.cli as cli

    def handler(args):
        raise KeyError("oops")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ppg-edge: error: internal error (KeyError") and "Traceback" not in err
    with pytest.raises(KeyError):
        cli.main(["--debug", "boom"])
