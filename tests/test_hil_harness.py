"""The DUT over a real pty pair, the host harness through pyserial, dropped links, sessions, plugin."""
from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

from ppg_edge.boards import load_board
from ppg_edge.cli import main
from ppg_edge.errors import HardwareError
from ppg_edge.hil_tests.dut import DUT
from ppg_edge.hil_tests.harness import DetResult, Harness, InferRun, latency_stats, summarize
from ppg_edge.hil_tests.link import DUTError, Link, LinkClosed, open_link, open_pty_pair
from ppg_edge.hil_tests.pipeline import MovingAveragePeaks, Stimulus, synthetic_ppg
from ppg_edge.hil_tests.protocol import MAX_LINE_BYTES, encode_command
from ppg_edge.hil_tests.session import Session
from ppg_edge.metrics.peaks import peak_scores

pytest_plugins = ["pytester"]


class CountingPipeline(MovingAveragePeaks):
    """The trivial pipeline, counting samples fed and resets."""

    def __init__(self, **kw):
        self.fed = 0
        self.resets = 0
        super().__init__(**kw)

    def reset(self):
        self.resets = getattr(self, "resets", 0) + 1
        super().reset()

    def feed(self, samples):
        self.fed += len(samples)
        return super().feed(samples)


@contextmanager
def dut_over_pty(pipeline, stimuli, *, timeout_s=2.0):
    """DUT thread on the pty master; the host opens the slave path with serial_for_url."""
    pair = open_pty_pair()
    dut = DUT(pair.master, pipeline, board="virtual-rpi4", stimuli=stimuli)
    stop = threading.Event()
    thread = threading.Thread(target=dut.serve, args=(stop,), daemon=True)
    thread.start()
    link = open_link(pair.path, timeout_s=timeout_s, read_timeout_s=0.02)
    pair.release_slave()
    try:
        yield link, dut, pair
    finally:
        stop.set()
        link.close()
        thread.join(timeout=3)
        pair.master.close()


@pytest.fixture
def stim(rng):
    return synthetic_ppg(rng, fs=100.0, seconds=20.0, id="syn")


def test_identify_configure_infer_over_pty(stim):
    pipe = CountingPipeline()
    with dut_over_pty(pipe, [stim]) as (link, dut, _):
        h = Harness(link, board=load_board("virtual-rpi4"), suite="t")
        info = h.identify()
        assert info["board"] == "virtual-rpi4" and info["pipeline"] == "moving-average-peaks"
        assert h.configure(window=200, chunk=10, fs=100)["chunk"] == "10"
        h.load(stim)
        fed_before, resets_before = pipe.fed, pipe.resets
        run = h.infer(5, 3, stim)
        # W warm-up windows, then a reset, then N measured windows from sample 0
        assert pipe.fed - fed_before == (3 + 5) * 200
        assert pipe.resets - resets_before == 2
        assert [w.index for w in run.windows] == list(range(5))
        assert all(len(w.call_latency_us) == 20 and w.samples == 200 for w in run.windows)
        t = [x for w in run.windows for x in (w.t0_us, w.t1_us)]
        assert t == sorted(t) and run.t0_us <= t[0] and t[-1] <= run.t1_us
        assert all(run.t0_us <= r.t_us <= run.t1_us for r in run.results)
        assert all(w.t0_us <= r.t_us <= w.t1_us for r in run.results for w in run.windows if w.index == r.window)
        # the trivial detector finds most of the synthetic beats in the measured span
        score = peak_scores([p for p in stim.peaks if p < 1000], [r.index for r in run.results],
                            stim.fs, 10 / stim.fs)
        assert score["recall"] > 0.8 and score["precision"] > 0.8


def test_upload_and_oversized_line_over_pty(stim, rng):
    with dut_over_pty(MovingAveragePeaks(), []) as (link, dut, _):
        h = Harness(link)
        with pytest.raises(DUTError) as info:
            h.load(stim)                                   # the DUT does not hold it
        assert info.value.code == "no-stimulus"
        h.load(stim, upload=True)
        assert dut.current is not None and np.array_equal(dut.current.samples, stim.samples)
        # a line over the limit gets e-too-long and the DUT keeps serving
        link.port.write(b"x" * (2 * MAX_LINE_BYTES) + b"\n")
        with pytest.raises(DUTError) as info:
            link.read_reply("oversized line")
        assert info.value.code == "too-long"
        assert h.identify()["name"] == "ppg-edge-dut"


def test_benchmark_five_loops_reports_medians(stim):
    board = load_board("virtual-rpi4")
    with dut_over_pty(MovingAveragePeaks(), [stim]) as (link, _, _):
        res = Harness(link, board=board, suite="bench").benchmark(
            stim, windows=3, warmups=1, settings={"window": 250, "fs": 100})
    assert res["status"] == "ok" and res["loops_completed"] == 5 and len(res["per_loop"]) == 5
    p50s = [lp["latency_us"]["per_sample"]["p50"] for lp in res["per_loop"]]
    assert res["latency_us"]["per_sample"]["p50"] == statistics.median(p50s)
    tps = [lp["throughput_samples_per_s"] for lp in res["per_loop"]]
    assert res["throughput_samples_per_s"] == statistics.median(tps) and min(tps) > 0
    assert len(res["latency_samples_us"]) == 5 * 3 * 250
    (energy,) = res["energy_per_sample"]
    assert energy["method"].startswith("modelled: cpu_time x (active-idle)")
    assert "sbc-reviews" in energy["method"] and energy["joules_per_sample"] > 0
    assert 0 < res["cpu_share"] <= 1.5 and res["dut_peak_memory_kb"] > 1000
    assert res["lost_samples"] == 0 and res["accuracy"]["sensitivity"] > 0.8


def test_link_dropped_mid_run_is_a_clean_error(stim):
    slow = MovingAveragePeaks(delay_s=0.05)
    with dut_over_pty(slow, [stim]) as (link, dut, pair):
        h = Harness(link, board=load_board("virtual-rpi4"))
        h.configure(window=100, chunk=10)
        h.load(stim)
        threading.Timer(0.3, pair.master.close).start()      # the DUT side goes away mid-run
        t0 = time.monotonic()
        with pytest.raises(LinkClosed, match="dropped"):
            h.infer(10, 0)                                    # would take ~5 s
        assert time.monotonic() - t0 < 3.0


def test_silent_dut_times_out_and_benchmark_records_event(stim):
    stuck = MovingAveragePeaks(delay_s=0.0)
    with dut_over_pty(stuck, [stim], timeout_s=0.4) as (link, dut, _):
        h = Harness(link, board=load_board("virtual-rpi4"), suite="stall")
        h.configure(window=100, chunk=100)
        stuck.delay_s = 2.0                                   # each window now takes 2 s of silence
        t0 = time.monotonic()
        res = h.benchmark(stim, windows=1, warmups=0, loops=5)
        took = time.monotonic() - t0
    assert res["status"] == "failed" and "silent" in res["error"]
    assert res["loops_completed"] == 0 and res["events"][-1]["kind"] == "link"
    assert took < 2.0


def test_dut_killed_in_subprocess_gives_hardware_error(stim):
    """`ppg-edge hil dut` in its own process on the pty slave; killing it drops the link."""
    pair = open_pty_pair()
    proc = subprocess.Popen([sys.executable, "-m", "ppg_edge", "-q", "hil", "dut", "--port", pair.path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    link = Link(pair.master, timeout_s=2.0)
    try:
        h = Harness(link)
        info = h.wait_ready(30.0, poll_s=0.5)
        pair.release_slave()
        assert info["name"] == "ppg-edge-dut"
        h.configure(window=100, chunk=10, delay_s=0.05)
        link.command(encode_command("select", "synthetic-seed20251122"))
        threading.Timer(0.3, proc.kill).start()
        t0 = time.monotonic()
        with pytest.raises(HardwareError):
            h.infer(20, 0)
        assert time.monotonic() - t0 < 3.0
    finally:
        proc.kill()
        proc.wait(timeout=5)
        pair.close()


def test_cli_run_local_dut_writes_session(tmp_path, capsys):
    rc = main(["-q", "hil", "run", "--port", "pty", "--local-dut", "--board", "virtual-rpi4",
               "--pipeline", "moving-average", "--suite", "smoke", "--windows", "2", "--warmups", "1", "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-virtual-rpi4-smoke")
    names = {p.name for p in folder.iterdir()}
    assert {"log.txt", "results.json", "report.md", "latency_hist.png", "energy_per_sample.png"} <= names
    res = json.loads((folder / "results.json").read_text())
    for key in ("latency_us", "throughput_samples_per_s", "cpu_share", "dut_peak_memory_kb",
                "lost_samples", "energy_per_sample", "accuracy", "per_loop"):
        assert key in res
    assert set(res["latency_us"]["per_sample"]) == {"p50", "p95", "p99", "max", "mean"}
    assert res["loops_completed"] == 5
    report = (folder / "report.md").read_text()
    assert "modelled: cpu_time" in report and "![latency_hist.png]" in report
    assert (folder / "latency_hist.png").read_bytes()[:4] == b"\x89PNG"
    assert "loop 5/5" in (folder / "log.txt").read_text()


def test_cli_errors_are_clean(capsys):
    assert main(["hil", "run", "--port", "pty", "--board", "rpi4b"]) == 1
    assert "--local-dut" in capsys.readouterr().err
    assert main(["hil", "run", "--port", "/dev/ttyNOPE9", "--board", "rpi4b", "--pipeline", "moving-average"]) == 1
    assert "cannot open serial link" in capsys.readouterr().err
    assert main(["hil", "run", "--port", "loop://", "--board", "rpi4b", "--loops", "0",
                 "--pipeline", "moving-average"]) == 1
    assert main(["hil", "run", "--port", "/dev/ttyNOPE9", "--board", "rpi4b", "--model", "int8=/nope.tflite"]) == 1
    assert "no such file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- pieces


def test_latency_stats():
    s = latency_stats(list(range(1, 101)))
    assert s["n"] == 100 and s["max"] == 100 and s["p50"] == pytest.approx(50.5)
    assert s["p99"] == pytest.approx(99.01)
    assert latency_stats([])["p50"] is None


def _run_with_beats(beats, n=1000):
    results = [DetResult(window=0, t_us=0, index=int(b), kind="peak", value=1.0) for b in beats]
    return InferRun(windows=[], results=results, n=1, warmups=0, window=n, chunk=n, t0_us=0,
                    t1_us=1_000_000, cpu_us=1, maxrss_kb=1, lost=0, crc="0")


@pytest.mark.parametrize("ref, det", [([100, 352, 500, 700], [101, 350, 400, 701]),
                                      ([], []), ([], [300]), ([300], []), ([500], [497, 503])])
def test_summarized_accuracy_is_the_evaluations_score(ref, det):
    """The HIL accuracy is metrics.peaks' score (its matching and its empty-list conventions),
    against the stimulus and against the host's beats alike."""
    fs, tol_s = 100.0, 0.03
    stim = Stimulus(id="s", samples=np.zeros(1000), fs=fs, peaks=np.asarray(ref, dtype=np.int64))
    res = summarize([_run_with_beats(det)], [[]], stim=stim, peak_tolerance_s=tol_s, host_beats=ref)
    want = peak_scores(ref, det, fs, tol_s)
    acc = res["accuracy"]
    assert (acc["sensitivity"], acc["ppv"], acc["f1"]) == (want["recall"], want["precision"], want["f1"])
    loop = res["per_loop"][0]
    assert (loop["accuracy"]["tp"], loop["accuracy"]["fp"], loop["accuracy"]["fn"]) == (
        want["tp"], want["fp"], want["fn"])
    assert res["accuracy_vs_host"]["f1_within_tolerance"] == want["f1"]
    assert res["accuracy_vs_host"]["f1_exact"] == peak_scores(ref, det, fs, 0.0)["f1"]
    json.dumps(res, allow_nan=False)  # no NaN (no matched pair) in results.json


def test_summarized_accuracy_conventions():
    stim = Stimulus(id="s", samples=np.zeros(1000), fs=100.0, peaks=np.zeros(0, dtype=np.int64))
    empty = summarize([_run_with_beats([])], [[]], stim=stim)["accuracy"]
    assert (empty["sensitivity"], empty["ppv"], empty["f1"]) == (1.0, 1.0, 1.0)  # nothing to find
    stim = Stimulus(id="s", samples=np.zeros(1000), fs=100.0, peaks=np.array([100, 200]))
    missed = summarize([_run_with_beats([])], [[]], stim=stim)["accuracy"]
    assert (missed["sensitivity"], missed["ppv"], missed["f1"]) == (0.0, 1.0, 0.0)
    # one detection cannot match two references
    one = summarize([_run_with_beats([150])], [[]], stim=Stimulus(
        id="s", samples=np.zeros(1000), fs=100.0, peaks=np.array([145, 155])), peak_tolerance_s=0.1)
    assert one["per_loop"][0]["accuracy"]["tp"] == 1 and one["accuracy"]["sensitivity"] == 0.5


def test_session_folder_naming_and_log(tmp_path):
    now = dt.datetime(2025, 11, 22, 9, 30, 5)
    a = Session.create(tmp_path, "rpi4b", "peaks smoke", now=now)
    b = Session.create(tmp_path, "rpi4b", "peaks smoke", now=now)
    assert a.path.name == "20251122-093005-rpi4b-peaks-smoke" and b.path.name.endswith("-2")
    import logging
    with a:
        logging.getLogger("ppg_edge.hil_tests.test").info("hello from the run")
    logging.getLogger("ppg_edge.hil_tests.test").info("after the run")
    log = (a.path / "log.txt").read_text()
    assert "hello from the run" in log and "after the run" not in log
    a.write({"board": "rpi4b", "suite": "x", "status": "failed", "error": "link dropped",
             "per_loop": [], "events": [{"kind": "link", "message": "link dropped"}]})
    report = (a.path / "report.md").read_text()
    assert "failed" in report and "link: link dropped" in report
    assert json.loads((a.path / "results.json").read_text())["status"] == "failed"


def test_loop_url_is_not_a_dut():
    """loop:// echoes our own command back: the harness reports it, never hangs."""
    link = open_link("loop://", timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(HardwareError, match="malformed|silent"):
        Harness(link).identify()
    assert time.monotonic() - t0 < 2.0
    link.close()


# ----------------------------------------------------------------------------- pytest plugin

PLUGIN = "ppg_edge.hil_tests.pytest_plugin"
# the inner runs need none of the installed plugins: keep them out, they cost seconds
QUIET = ("-p", "no:hypothesispytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-p", PLUGIN)
HW_TEST = """
import pytest

@pytest.mark.hardware
def test_unit(hil_unit):
    assert hil_unit.board == "rpi4b" and hil_unit.name == "bench"

@pytest.mark.hil(suite="peaks")
def test_peaks():
    pass

@pytest.mark.hil(suite="bp")
def test_bp():
    pass
"""


@pytest.fixture
def hw_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPG_EDGE_HARDWARE_MAP", raising=False)
    monkeypatch.delenv("PPG_EDGE_REQUIRE_HARDWARE", raising=False)
    return monkeypatch


def test_plugin_skips_without_hardware(pytester, hw_env):
    pytester.makepyfile(HW_TEST)
    r = pytester.runpytest(*QUIET, "-rs")
    r.assert_outcomes(passed=2, skipped=1)
    r.stdout.fnmatch_lines(["*no hardware attached*"])


def test_plugin_fails_when_hardware_required(pytester, hw_env):
    hw_env.setenv("PPG_EDGE_REQUIRE_HARDWARE", "1")
    pytester.makepyfile(HW_TEST)
    r = pytester.runpytest(*QUIET)
    r.assert_outcomes(passed=2, errors=1)
    r.stdout.fnmatch_lines(["*hardware is required here*"])


def test_plugin_picks_unit_and_suite(pytester, hw_env, tmp_path):
    hw = tmp_path / "map.toml"
    hw.write_text('[[unit]]\nname = "bench"\nboard = "rpi4b"\nhost = "pi@bench"\n'
                  'serial_port = "/dev/ttyUSB0"\n')
    hw_env.setenv("PPG_EDGE_HARDWARE_MAP", str(hw))
    pytester.makepyfile(HW_TEST)
    pytester.runpytest(*QUIET, "--board", "rpi4b").assert_outcomes(passed=3)
    r = pytester.runpytest(*QUIET, "--board", "rpi5", "-rs")
    r.assert_outcomes(passed=2, skipped=1)
    r.stdout.fnmatch_lines(["*no unit of board 'rpi5'*"])
    r = pytester.runpytest(*QUIET, "--suite", "peaks", "-k", "peaks or bp")
    r.assert_outcomes(passed=1, deselected=2)


def test_every_report_says_whether_the_emulated_chip_ran_in_the_measured_process():
    from ppg_edge.hil_tests.session import render_report

    device = {"dut": {"pipeline": "device", "sensor": "emulated-max30102"}}
    assert "emulated chip: ran in the measured DUT process" in render_report(device, [])
    plain = {"dut": {"pipeline": "moving-average"}}
    assert "emulated chip: not in the measured process: pipeline moving-average" in render_report(plain, [])
    soak = {"dut_where": "this process (soak: ...)"}
    assert "emulated chip: ran in the measured process (the harness's own" in render_report(soak, [])


def test_performance_suite_reports_the_instruction_count_or_why_not(monkeypatch, tmp_path):
    from ppg_edge.boards import load_board
    from ppg_edge.errors import ConfigError, HardwareError
    from ppg_edge.evaluate import arm_bench
    from ppg_edge.hil_tests import insn_count
    from ppg_edge.hil_tests.session import render_report
    from ppg_edge.hil_tests.suites import load_suite

    assert load_suite("performance")["instructions"] == {"seconds": 10}
    bad = tmp_path / "bad.toml"
    bad.write_text('[instructions]\nseconds = 1\n[[step]]\nrecord = "capnobase/0009"\n')
    with pytest.raises(ConfigError, match="at least 5"):
        load_suite(bad)
    board = load_board("virtual-rpi4")
    doc = {"cpu": {"model": "Cortex-A72", "qemu_cpu": "cortex-a72"}, "lengths_s": [10.0, 20.0],
           "record": "capnobase/0009", "emulated_chip_insn_per_signal_s": 1.2e6,
           "paths": {"network": {"device_insn_per_signal_s": 5.9e6, "modelled_mw": 2.1,
                                 "modelled_mj_per_sample": 0.021}}}
    monkeypatch.setattr(arm_bench, "bench", lambda *a, **k: doc)
    got = insn_count.count_for_report(board, 10)
    assert got["paths"]["network"]["insn_per_signal_s"] == 5900000 and "cortex-a72" in got["method"]
    text = render_report({"instructions": got}, [])
    assert "| network | 5.90M | 2.10 | 0.0210 |" in text and "adds 1.20M" in text

    def refuse(*a, **k):
        raise HardwareError("qemu-aarch64 not found on this host")

    monkeypatch.setattr(arm_bench, "bench", refuse)
    got = insn_count.count_for_report(board, 10)
    assert "Not counted here: qemu-aarch64 not found" in render_report({"instructions": got}, [])
