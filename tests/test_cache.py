"""The shared cache: one builder at a time, atomic publication, mount-safe removal, recovery
after a killed build."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ppg_edge import cache

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount --bind)")

# A builder run in a child process: counts its runs, sleeps, writes the stage's content.
BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ppg_edge import cache

    final, counter, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    def fill(tmp):
        with open(counter, "a") as fh:
            fh.write("built\\n")
        (tmp / "started").write_text("")
        time.sleep(delay)
        (tmp / "content").write_text("stage content")

    out = cache.build_stage(final, fill)
    print(out, (out / "content").read_text())
""")


def _builder(tmp_path: Path, final: Path, delay: float) -> subprocess.Popen:
    script = tmp_path / "builder.py"
    script.write_text(BUILDER)
    return subprocess.Popen([sys.executable, str(script), str(final), str(tmp_path / "count"), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_building_one_stage_on_an_empty_cache(tmp_path):
    final = tmp_path / "cache" / "vpi" / "base-abc"
    procs = [_builder(tmp_path, final, 1.5) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.split() == [str(final), "stage", "content"]
    assert (tmp_path / "count").read_text().splitlines() == ["built"], "the stage was built twice"
    assert sorted(p.name for p in final.parent.iterdir()) == ["base-abc", "base-abc.lock"]


def test_a_killed_build_is_repaired_by_the_next(tmp_path):
    final = tmp_path / "stage"
    proc = _builder(tmp_path, final, 60)
    deadline = time.monotonic() + 30
    while not any(p.name.startswith("stage.partial-") and (p / "started").exists()
                  for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not final.exists()
    assert cache.stale_partials(final), "the killed build left nothing to recover from"
    built = []
    out = cache.build_stage(final, lambda tmp: (built.append(1), (tmp / "content").write_text("ok")))
    assert built == [1] and (out / "content").read_text() == "ok"
    assert cache.stale_partials(final) == []


def test_a_failed_build_publishes_nothing(tmp_path):
    final = tmp_path / "stage"

    def fail(tmp):
        (tmp / "half").write_text("")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.build_stage(final, fail)
    assert not final.exists() and cache.stale_partials(final) == []
    # a finished stage is reused; rebuild replaces it in one rename
    cache.build_stage(final, lambda tmp: (tmp / "v").write_text("1"))
    assert cache.build_stage(final, lambda tmp: (tmp / "v").write_text("2")).joinpath("v").read_text() == "1"
    assert cache.build_stage(final, lambda tmp: (tmp / "v").write_text("2"), rebuild=True).joinpath(
        "v").read_text() == "2"
    assert cache.stale_partials(final) == []


def test_mountinfo_parsing_and_mounts_under(tmp_path):
    tree = tmp_path / "my tree"
    info = tmp_path / "mountinfo"
    escaped = str(tree).replace(" ", "\\040")
    info.write_text("\n".join([
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
        f"45 22 254:0 /host/mirror {escaped}/root/opt/mirror ro,relatime - ext4 /dev/vda rw",
        f"46 22 0:5 / {escaped}/root/dev rw - devtmpfs udev rw",
        f"47 46 0:6 / {escaped}/root/dev/pts rw - devpts devpts rw",
        f"48 22 0:7 / {escaped}-other/root rw - tmpfs tmpfs rw",
    ]) + "\n")
    got = cache.mounts_under(tree, mountinfo=info)
    assert got.index(f"{tree}/root/dev/pts") < got.index(f"{tree}/root/dev")   # deepest first
    assert set(got) == {f"{tree}/root/opt/mirror", f"{tree}/root/dev", f"{tree}/root/dev/pts"}


def test_removal_is_refused_while_a_mount_remains(tmp_path):
    """A mount that cannot be unmounted (here: one this fake mountinfo lists) stops the removal."""
    tree = tmp_path / "tree"
    (tree / "root/opt/mirror").mkdir(parents=True)
    (tree / "root/opt/mirror/wheel.whl").write_text("host file")
    info = tmp_path / "mountinfo"
    info.write_text(f"45 22 254:0 /host {tree}/root/opt/mirror ro - ext4 /dev/vda rw\n")
    with pytest.raises(cache.UnsafeRemovalError, match=r"root/opt/mirror is mounted under it"):
        cache.remove_tree(tree, mountinfo=info)
    assert (tree / "root/opt/mirror/wheel.whl").read_text() == "host file"


@ROOT_ONLY
def test_a_bind_mount_inside_a_tree_is_never_followed(tmp_path):
    host = tmp_path / "host-mirror"
    host.mkdir()
    (host / "keep.whl").write_text("host file")
    tree = tmp_path / "vpi" / "base.partial-x"
    target = tree / "root" / "opt" / "mirror"
    target.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(host), str(target)], check=True)
    try:
        assert cache.mounts_under(tree) == [str(target)]
        with pytest.raises(cache.UnsafeRemovalError, match="mounted under it"):
            cache.remove_tree(tree, unmount=False)
        assert (host / "keep.whl").read_text() == "host file"
        assert tree.exists()
        cache.remove_tree(tree)                 # unmounts, checks again, then removes
        assert not tree.exists()
        assert (host / "keep.whl").read_text() == "host file"
        assert cache.mounts_under(tmp_path) == []
    finally:
        if str(target) in cache.mount_points():
            subprocess.run(["umount", "-l", str(target)])


@ROOT_ONLY
def test_a_stale_partial_with_live_mounts_is_recovered_safely(tmp_path):
    """What a killed virtual-Pi build leaves: a partial tree with a host folder bound inside."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("x")
    final = tmp_path / "stage"
    stale = tmp_path / "stage.partial-dead"
    (stale / "root/dev").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(host), str(stale / "root/dev")], check=True)
    try:
        out = cache.build_stage(final, lambda tmp: (tmp / "ok").write_text(""))
        assert (out / "ok").exists() and not stale.exists()
        assert (host / "precious").read_text() == "x"
    finally:
        if str(stale / "root/dev") in cache.mount_points():
            subprocess.run(["umount", "-l", str(stale / "root/dev")])


def test_atomic_path_replaces_in_one_step(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("old")
    with pytest.raises(ValueError):
        with cache.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert path.read_text() == "old" and sorted(tmp_path.iterdir()) == [path]
    with cache.atomic_path(path) as tmp:
        assert tmp.suffix == ".npz" and tmp != path
        tmp.write_text("new")
    assert path.read_text() == "new" and sorted(tmp_path.iterdir()) == [path]
