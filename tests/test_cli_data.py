"""``ppg-edge data info`` / ``data fetch``: output, errors, and a closed network."""
from __future__ import annotations

import io
import json
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from ppg_edge.cli import main
from ppg_edge.data import fetch


def _biosppy_root(tmp_path: Path) -> Path:
    d = tmp_path / "root" / "biosppy-examples"
    d.mkdir(parents=True)
    (d / "ppg.txt").write_text("# Sampling Rate (Hz):= 100\n" + "\n".join(["1.0"] * 250) + "\n")
    return tmp_path / "root"


def test_info_json_on_synthetic_root(tmp_path, capsys):
    root = _biosppy_root(tmp_path)
    assert main(["data", "info", "--json", "--data-root", str(root), "biosppy"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["records"] == 1 and row["duration_s"] == 2.5 and row["rates"] == {"ppg": [100.0]}
    # the option also works on the `data` parser
    assert main(["data", "--data-root", str(root), "info", "biosppy"]) == 0
    out = capsys.readouterr().out
    assert "biosppy" in out and "0:00:02" in out


def test_info_all_reports_unavailable_sets(tmp_path, capsys):
    root = _biosppy_root(tmp_path)
    rc = main(["data", "info", "--data-root", str(root)])
    out = capsys.readouterr().out
    assert rc == 1  # other data sets are missing from this root
    assert "capnobase" in out and "unavailable" in out and "biosppy" in out


def test_info_unknown_name_and_missing_root(tmp_path, capsys):
    assert main(["data", "info", "--data-root", str(tmp_path), "nope"]) == 1
    assert "unknown data set 'nope'; valid names: ppg-bp" in capsys.readouterr().err
    assert main(["data", "info", "--data-root", str(tmp_path / "absent"), "biosppy"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_info_real(data_root, capsys):
    assert main(["data", "info", "--data-root", str(data_root), "--json", "ppg-bp", "capnobase"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ppg-bp"]["records"] == 567 and rows["ppg-bp"]["subjects_left_out"] == 30
    assert rows["capnobase"]["peaks"]["total"] == 20232


@pytest.mark.parametrize("exc", [
    urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
    TimeoutError("timed out"),
    ConnectionResetError("reset by peer"),
])
def test_fetch_offline_clear_error(tmp_path, monkeypatch, capsys, exc):
    def boom(url, timeout):
        assert timeout > 0
        raise exc

    monkeypatch.setattr(fetch, "urlopen", boom)
    rc = main(["data", "fetch", "welltory", "--dest", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "ppg-edge: error: could not reach codeload.github.com" in err
    assert f"copy the data set into {tmp_path / 'w'} by hand or set PPG_EDGE_DATA" in err
    assert "Traceback" not in err


def test_fetch_physionet_probe_fails_fast(tmp_path, monkeypatch):
    """The PhysioNet path probes the host with a timeout before wfdb runs."""
    import ppg_edge.data as registry

    class Fake:
        FOLDER = "fake"
        SOURCES = [{"url": "https://physionet.org/content/bidmc/", "kind": "physionet", "db": "bidmc"}]

    monkeypatch.setattr(registry, "dataset_module", lambda name: Fake)
    monkeypatch.setattr(fetch, "dataset_module", lambda name: Fake)
    monkeypatch.setattr(fetch, "urlopen", lambda url, timeout: (_ for _ in ()).throw(TimeoutError("t")))
    with pytest.raises(fetch.DownloadError, match="could not reach physionet.org"):
        fetch.fetch("bidmc", tmp_path)


def test_fetch_dry_run_touches_no_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "urlopen", lambda *a, **k: pytest.fail("network used in --dry-run"))
    assert main(["data", "fetch", "wfdb-samples", "--dry-run", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "raw.githubusercontent.com/MIT-LCP/wfdb-python" in out and "mixedsignals_e.dat" in out
    assert not any(tmp_path.iterdir())
    assert main(["data", "fetch", "but-ppg", "--dry-run"]) == 0
    assert "not fetched (official home" in capsys.readouterr().out


class _Resp(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def test_fetch_file_then_load(tmp_path, monkeypatch):
    """A served file lands in dest and the loader reads it (the real code path, fake wire)."""
    payload = ("# Sampling Rate (Hz):= 1000.00\n" + "\n".join(str(v) for v in range(2000))).encode()
    seen = []
    monkeypatch.setattr(fetch, "urlopen", lambda url, timeout: seen.append(url) or _Resp(payload))
    dest = fetch.fetch("biosppy", tmp_path / "b", progress=False)
    assert seen and seen[0].startswith("https://raw.githubusercontent.com/scientisst/BioSPPy/")
    from ppg_edge.data import biosppy

    rec = biosppy.load_record(dest, "ppg")
    assert rec.ppg.size == 2000 and not list(dest.glob("*.part"))


def test_fetch_github_archive_extracts(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in [("repo-abc/data/subject_01/PPG.csv", "time,R,G,B\n0,1,1,1\n33,2,1,1\n"),
                           ("repo-abc/data/subject_01/RR.txt", "800 800")]:
            blob = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(fetch, "urlopen", lambda url, timeout: _Resp(buf.getvalue()))
    dest = fetch.fetch("welltory", tmp_path / "w", progress=False)
    from ppg_edge.data import welltory

    assert welltory.list_records(dest) == ["subject_01"]
    assert welltory.load_record(dest, "subject_01").labels["hr"] == 75.0


def test_extract_refuses_members_that_escape(tmp_path):
    import zipfile

    from ppg_edge.errors import DataError

    tar = tmp_path / "a.tar"
    with tarfile.open(tar, "w") as tf:
        for name in ("repo-abc/ok.txt", "repo-abc/../../evil.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="evil.txt'? escapes the destination"):
        fetch._extract_tar(tar, tmp_path / "t", "")
    assert (tmp_path / "t" / "ok.txt").read_text() == "hi" and not (tmp_path / "evil.txt").exists()
    zp = tmp_path / "a.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("d/ok.txt", "zz")
        zf.writestr("../evil.txt", "no")
    with pytest.raises(DataError, match="escapes the destination"):
        fetch._extract_zip(zp, tmp_path / "z")
    assert (tmp_path / "z" / "d" / "ok.txt").read_text() == "zz" and not (tmp_path / "evil.txt").exists()
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("d/a.txt", "1")
        zf.writestr("d/b.txt", "2")
    assert fetch._extract_zip(zp, tmp_path / "z2") == 2 and (tmp_path / "z2" / "d" / "b.txt").read_text() == "2"


def test_capnobase_mat_conversion(tmp_path):
    import h5py

    from ppg_edge.data import capnobase

    mat = tmp_path / "0042_8min.mat"
    with h5py.File(mat, "w") as f:
        f["param/samplingrate/pleth"] = np.array([[300.0]])
        f["labels/pleth/peak/x"] = np.array([[3.0, 7.0]])
        f["signal/pleth/y"] = np.array([[0, 1, 5, 1, 0, 2, 6, 2.5]])
    fetch.capnobase_mat_to_csv(mat, tmp_path / "out" / "capnobase_0042.csv")
    r = capnobase.load_record(tmp_path / "out", "0042")
    assert r.fs == 300 and r.peaks.tolist() == [2, 6] and r.ppg[6] == 6
