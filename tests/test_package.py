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
