"""HIL suites as data: ``hil_tests/suites/<name>.toml`` run against a DUT, one session folder.

A suite file has ``description``, ``[defaults]`` (``window_s``, ``chunk_s``,
``windows``, ``warmups``, ``loops``, ``seconds``, ``model``, ``settings``), a
``[virtual]`` table overriding the defaults on virtual boards (qemu is 130-430x
slower), and ``[[step]]`` tables. A step is a measurement (``record`` =
``DATASET/ID``, played through the DUT's emulated MAX30102, ``model``, cfg
``settings``, ``expect``) or a fault drill (``kind`` = ``link_drop``,
``corrupt_model``, ``deploy_interrupted``) or a soak (``kind = "soak"``: hours of signal
composed from ``[[step.segment]]`` tables through emulated chip -> driver -> Pipeline in
this process, see :mod:`.soak`) or a BP comparison (``kind = "bp"``: a record through the
same in-process device path with the BP model, beside the host's BPStage and the ABP
reference, see :mod:`.bp_check`); a suite of soak and bp steps only starts no DUT.

Every step's results (the harness's dict: latency percentiles, modelled energy
with its method, lost samples, DUT accuracy against the reference labels and
against the host's run of the same model) go into ``results.json`` under
``steps``; every expectation becomes a ``check`` and every fault a ``fault``
event with its outcome, so nothing ends silently.

Host side only (loads records, runs the host reference, writes plots).
"""
from __future__ import annotations

import copy
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppg_edge.errors import ConfigError, HardwareError

from .device import record_stimulus, reference_beats
from .harness import Harness
from .link import DUTError, Link, LinkClosed, open_pty_pair, start_dut_process

log = logging.getLogger(__name__)

SUITES_DIR = Path(__file__).parent / "suites"
STEP_KINDS = ("measure", "link_drop", "corrupt_model", "deploy_interrupted", "soak", "bp")
IN_PROCESS_KINDS = ("soak", "bp")   # run emulated chip -> driver -> Pipeline in this process, no DUT
RUN_KEYS = ("window_s", "chunk_s", "windows", "warmups", "loops", "seconds", "start_s", "model", "settings",
            "score_margin_s")
# Beats in the last seconds of a measured span may still be undecided (a model window is 2 s): not scored.
SCORE_MARGIN_S = 3.0
EXPECT_KEYS = ("max_lost", "min_lost", "min_beats", "max_beats", "identical_to_host", "min_f1_vs_host",
               "events", "error", "max_rss_growth_kb",
               # soak steps (hil_tests/soak.py)
               "exact_accounting", "no_duplicate_beats", "max_f1_delta_vs_offline", "min_f1", "min_faults",
               # bp steps (hil_tests/bp_check.py)
               "max_mean_abs_diff_vs_host_mmhg", "max_abs_diff_vs_host_mmhg", "min_estimates")


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name: str | os.PathLike, *, virtual: bool = False) -> dict[str, Any]:
    """Read and validate a suite; steps come back with the defaults (and virtual overrides) applied."""
    path = Path(name)
    if not path.suffix:
        path = SUITES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"no HIL suite {name!r} (known: {', '.join(suite_names())})")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    defaults = dict(doc.get("defaults", {}))
    if virtual:
        defaults.update(doc.get("virtual", {}))
    for key in defaults:
        if key not in RUN_KEYS:
            raise ConfigError(f"{path}: unknown default {key!r} (known: {', '.join(RUN_KEYS)})")
    steps = []
    for i, raw in enumerate(doc.get("step", [])):
        step = {**copy.deepcopy(defaults), **raw}
        if virtual:   # qemu is slow: the virtual table's sizes win over the step's own
            step.update({k: v for k, v in doc.get("virtual", {}).items() if k in ("windows", "loops", "warmups")})
        step.setdefault("kind", "measure")
        step.setdefault("name", f"step-{i}")
        if step["kind"] not in STEP_KINDS:
            raise ConfigError(f"{path}: step {step['name']}: kind {step['kind']!r} not one of {', '.join(STEP_KINDS)}")
        if step["kind"] in ("measure", "link_drop") and "record" not in step:
            raise ConfigError(f"{path}: step {step['name']} needs record = \"DATASET/ID\"")
        if step["kind"] == "bp" and "bp_model" not in step:
            raise ConfigError(f"{path}: step {step['name']} needs bp_model = \"models/device/...\"")
        for key in step.get("expect", {}):
            if key not in EXPECT_KEYS:
                raise ConfigError(f"{path}: step {step['name']}: unknown expectation {key!r}")
        for key in ("window_s", "chunk_s"):
            if key in step and not step[key] > 0:
                raise ConfigError(f"{path}: step {step['name']}: {key} must be positive")
        steps.append(step)
    if not steps:
        raise ConfigError(f"{path}: no [[step]] tables")
    insn = doc.get("instructions")
    if insn is not None and not (isinstance(insn, dict) and set(insn) <= {"seconds"}
                                 and isinstance(insn.get("seconds", 10), (int, float)) and insn.get("seconds", 10) >= 5):
        raise ConfigError(f"{path}: [instructions] takes seconds = N (at least 5), got {insn!r}")
    return {"name": path.stem, "path": str(path), "description": doc.get("description", ""),
            "steps": steps, "virtual": virtual, "instructions": insn}


# --------------------------------------------------------------------------- DUTs


def stop_pty_dut(dut, wait_s: float, kill) -> None:
    """End a DUT reached over a pty pair (``dut.pair``, ``dut.link``, ``dut.proc``): close the
    link, give the process ``wait_s`` to exit on its own, then ``kill(proc)`` and reap it."""
    if dut.pair is not None:
        dut.pair.release_slave()
    if dut.link is not None:
        dut.link.close()
        dut.link = None
    if dut.proc is not None:
        try:
            dut.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            kill(dut.proc)
            dut.proc.wait(timeout=wait_s)
        dut.proc = None


class LocalDut:
    """``ppg-edge hil dut --pipeline device`` as a subprocess on this machine, over a pty pair."""

    kind = "local"

    where = f"local subprocess on {platform.machine()} ({platform.node()})"

    def __init__(self, board, models: Mapping[str, Path], workdir: Path, *, timeout_s: float = 10.0):
        self.board, self.models, self.workdir, self.timeout_s = board, dict(models), Path(workdir), timeout_s
        self.proc: subprocess.Popen | None = None
        self.pair = None
        self.link: Link | None = None

    def argv(self, port: str) -> list[str]:
        argv = [sys.executable, "-m", "ppg_edge", "-q", "hil", "dut", "--port", port,
                "--board", self.board.identifier, "--pipeline", "device"]
        for name, path in self.models.items():
            argv += ["--model", f"{name}={path}"]
        return argv

    def start(self) -> Link:
        self.pair = open_pty_pair()
        self.proc = start_dut_process(self.argv(self.pair.path))
        self.link = Link(self.pair.master, timeout_s=self.timeout_s, name=self.pair.path)
        Harness(self.link).wait_ready(60.0)
        self.pair.release_slave()
        return self.link

    def kill(self) -> None:
        """Drop the link the hard way: the DUT process dies mid-command."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self) -> None:
        stop_pty_dut(self, wait_s=5.0, kill=lambda proc: proc.kill())

    def corrupt_copy(self, name: str) -> str:
        """A copy of model ``name`` (and its manifest) with bytes flipped, where the DUT can read it."""
        from ppg_edge import manifest as mf

        src = self.models[name]
        dst = self.workdir / "corrupt" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        shutil.copy(mf.manifest_path_for(src), mf.manifest_path_for(dst))
        flip_bytes(dst)
        return str(dst)

    def deploy_target(self):
        """(runner, root) of a deploy target for the interrupted-deploy drill: a local folder."""
        from ppg_edge.boards.deploy.remote import LocalRunner

        return LocalRunner(), str(self.workdir / "device-root")


class PortDut:
    """A DUT already serving on a serial port (a real board): no restart, no file access."""

    kind = "port"

    def __init__(self, port: str, board, workdir: Path, *, baudrate: int = 115200, timeout_s: float = 10.0):
        from .link import open_link

        self.board, self.workdir = board, Path(workdir)
        self.where = f"{board.identifier} on {port}"
        self.port, self.baudrate, self.timeout_s = port, baudrate, timeout_s
        self.link: Link | None = open_link(port, baudrate=baudrate, timeout_s=timeout_s)

    def start(self) -> Link:
        from .link import open_link

        if self.link is None:
            self.link = open_link(self.port, baudrate=self.baudrate, timeout_s=self.timeout_s)
        Harness(self.link).wait_ready(30.0)
        return self.link

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None


def flip_bytes(path: Path, n: int = 64) -> None:
    """Corrupt a file in place: invert ``n`` bytes in its middle (size unchanged)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(len(data), mid + n)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- running


def _samples(step: Mapping[str, Any], fs: float) -> tuple[int, int]:
    window = max(1, int(round(float(step.get("window_s", 2.0)) * fs)))
    chunk = max(1, min(window, int(round(float(step.get("chunk_s", 0.1)) * fs))))
    return window, chunk


class SuiteRunner:
    """Runs one suite's steps against a DUT handle (:class:`LocalDut` or the virtual Pi's)."""

    def __init__(self, suite: Mapping[str, Any], board, dut, host_models: Mapping[str, Path], *,
                 data_root=None, meter=None):
        self.suite, self.board, self.dut = suite, board, dut
        self.host_models = {k: Path(v) for k, v in host_models.items()}
        self.data_root, self.meter = data_root, meter
        self.link: Link | None = None
        self._stims: dict[tuple, Any] = {}
        self.uploaded: set[str] = set()

    def stimulus(self, step: Mapping[str, Any]):
        key = (step["record"], step.get("seconds"), step.get("start_s", 0.0))
        if key not in self._stims:
            self._stims[key] = record_stimulus(step["record"], root=self.data_root, seconds=step.get("seconds"),
                                               start_s=float(step.get("start_s", 0.0)), board=self.board)
        return self._stims[key]

    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        steps: list[dict[str, Any]] = []
        status = "ok"
        try:
            from tqdm import tqdm

            # soak and bp steps run the device path in this process: no DUT to start for a suite of them
            self.in_process = all(s["kind"] in IN_PROCESS_KINDS for s in self.suite["steps"])
            if not self.in_process:
                self.link = self.dut.start()
            for step in tqdm(self.suite["steps"], desc=f"suite {self.suite['name']}", unit="step", disable=None):
                log.info("step %s (%s)", step["name"], step["kind"])
                step = dict(step)
                model = step.get("model", "default")
                if model == "default":
                    model = "int8" if "int8" in self.host_models else next(iter(self.host_models), "int8")
                step["model"] = model
                if step["kind"] in ("measure", "soak") and model not in self.host_models:
                    steps.append({"name": step["name"], "kind": step["kind"], "step_status": "skipped",
                                  "status": "skipped", "events": [], "checks": [
                                      {"check": "model", "status": "skipped",
                                       "detail": f"no {model!r} model given (have: {', '.join(self.host_models)})"}]})
                    continue
                res = getattr(self, f"_{step['kind']}")(step)
                res["name"], res["kind"] = step["name"], step["kind"]
                res["checks"] = self._checks(step, res)
                failed = [c for c in res["checks"] if c["status"] == "fail"]
                res["step_status"] = "fail" if failed else "pass"
                if failed:
                    status = "failed"
                steps.append(res)
        except HardwareError as exc:
            status = "failed"
            steps.append({"name": "(suite)", "kind": "error", "step_status": "fail", "status": "failed",
                          "error": str(exc), "checks": [], "events": [{"kind": "link", "message": str(exc)}]})
        finally:
            self.dut.stop()
        return self._combine(steps, status, time.monotonic() - t0)

    # ------------------------------------------------------------------ step kinds

    def _load(self, harness: Harness, stim) -> None:
        if stim.id in self.uploaded:
            harness.load(stim)
        else:
            harness.load(stim, upload=True)
            self.uploaded.add(stim.id)

    def _measure(self, step: Mapping[str, Any], *, harness: Harness | None = None) -> dict[str, Any]:
        stim = self.stimulus(step)
        window, chunk = _samples(step, stim.fs)
        have = stim.samples.size // window
        windows = min(int(step.get("windows", 4)), have)
        warmups = min(int(step.get("warmups", 0)), have)
        if windows < 1:
            raise ConfigError(f"step {step['name']}: {stim.id} holds no window of {window} samples")
        settings: dict[str, Any] = {"window": window, "chunk": chunk, "model": step["model"],
                                    **{k: str(v) for k, v in (step.get("settings") or {}).items()}}
        for k in ("i2c_burst", "stall", "speed"):
            settings.setdefault(k, "none" if k != "speed" else "0")
        expect = step.get("expect", {})
        host = None
        model = settings["model"]
        if "error" not in expect and model in self.host_models:
            ref_settings = {k: v for k, v in settings.items() if k in ("i2c_burst", "stall")}
            host = reference_beats(stim, self.host_models[model], n_samples=windows * window, chunk=chunk,
                                   board=self.board, settings=ref_settings)
        harness = harness or Harness(self.link, board=self.board, suite=self.suite["name"])
        # the stimulus travels over the link once (its rate with it); later steps select it by id
        upload = stim.id not in self.uploaded
        # Paced playback (speed > 0): the DUT answers `infer` only after playing it in (scaled) real
        # time, so the link's silence limit must cover that playback.
        speed = float(settings.get("speed") or 0)
        saved = harness.link.timeout_s
        if speed > 0:
            harness.link.timeout_s = max(saved, (windows + warmups) * window / stim.fs / speed + saved)
        try:
            res = harness.benchmark(stim, windows=windows, warmups=warmups, loops=int(step.get("loops", 1)),
                                    settings=settings, meter=self.meter, host_beats=host, upload=upload,
                                    score_margin_s=float(step.get("score_margin_s", SCORE_MARGIN_S)))
        finally:
            harness.link.timeout_s = saved
        if speed > 0 and str(res.get("latency_method", "")).startswith("arrival"):
            res["latency_method"] = (f"arrival -> result per sensor sample (DUT monotonic clock; playback paced at "
                                     f"{speed:g}x real time, so it includes the FIFO wait and the framer hop)")
        if upload and res.get("dut"):
            self.uploaded.add(stim.id)
        res["model"] = model
        res["record"] = step["record"]
        if host is not None:
            res["host_beats"] = len(host)
        return res

    def _soak(self, step: Mapping[str, Any]) -> dict[str, Any]:
        """Hours of signal through emulated chip -> driver -> Pipeline in this process (hil_tests/soak.py)."""
        from .soak import run_soak, soak_events

        res = run_soak(step, self.board, self.host_models[step["model"]], data_root=self.data_root)
        res["events"] = soak_events(res)
        return res

    def _bp(self, step: Mapping[str, Any]) -> dict[str, Any]:
        """A record through emulated chip -> driver -> Pipeline with the BP model in this process, beside the
        host's BPStage and the ABP reference (hil_tests/bp_check.py)."""
        from .bp_check import bp_events, run_bp_step

        res = run_bp_step(step, self.board, data_root=self.data_root, peak_model=self.host_models.get(step["model"]))
        res["events"] = bp_events(res)
        return res

    def _skipped(self, step, what: str) -> dict[str, Any]:
        return {"status": "skipped", "events": [{"kind": "fault", "fault": step["kind"], "outcome": "skipped",
                                                 "message": f"{self.dut.where} cannot {what}"}]}

    def _link_drop(self, step: Mapping[str, Any]) -> dict[str, Any]:
        """Kill the DUT in the middle of ``infer``; the harness must report the drop; restart; measure again."""
        if not hasattr(self.dut, "kill"):
            return self._skipped(step, "be killed and restarted from the host")
        stim = self.stimulus(step)
        window, chunk = _samples(step, stim.fs)
        windows = min(int(step.get("windows", 4)), stim.samples.size // window)
        h = Harness(self.link, board=self.board, suite=self.suite["name"])
        h.configure(window=window, chunk=chunk, model=step["model"], i2c_burst="none", stall="none",
                    speed="1")                      # real-time playback: the infer takes seconds
        self._load(h, stim)
        events: list[dict[str, Any]] = []
        killer = threading.Timer(1.0, self.dut.kill)
        killer.start()
        t0 = time.monotonic()
        try:
            h.infer(windows, 0, stim)
            events.append({"kind": "fault", "fault": "link_drop", "outcome": "missed",
                           "message": "the DUT answered although it was killed"})
        except LinkClosed as exc:
            events.append({"kind": "fault", "fault": "link_drop", "outcome": "detected",
                           "message": f"link dropped after {time.monotonic() - t0:.1f} s: {exc}; "
                                      f"the {windows}-window infer was abandoned and no window of it was "
                                      "reported (nothing counted as measured)"})
        except HardwareError as exc:
            events.append({"kind": "fault", "fault": "link_drop", "outcome": "detected",
                           "message": f"link failed: {exc}"})
        finally:
            killer.cancel()
        self.dut.stop()
        self.uploaded.clear()
        self.link = self.dut.start()
        info = Harness(self.link).identify()
        again = self._measure({**step, "windows": min(2, windows), "loops": 1, "warmups": 0})
        ok = again.get("status") == "ok"
        events.append({"kind": "fault", "fault": "link_restored", "outcome": "recovered" if ok else "failed",
                       "message": f"DUT {info.get('name')} answered again after restart; a {min(2, windows)}-window "
                                  f"measurement {'completed' if ok else 'failed'} ({again.get('lost_samples')} lost)"})
        return {"status": "ok" if ok else "failed", "events": events, "after_restore": _brief(again)}

    def _corrupt_model(self, step: Mapping[str, Any]) -> dict[str, Any]:
        name = step["model"]
        if not hasattr(self.dut, "corrupt_copy"):
            return self._skipped(step, "have a model file corrupted by the host")
        path = self.dut.corrupt_copy(name)
        h = Harness(self.link, board=self.board, suite=self.suite["name"])
        events = []
        try:
            h.configure(model=path)
            events.append({"kind": "fault", "fault": "corrupt_model", "outcome": "missed",
                           "message": f"the DUT accepted the corrupted copy {path}"})
        except DUTError as exc:
            events.append({"kind": "fault", "fault": "corrupt_model", "outcome": "detected",
                           "message": f"the DUT refused the corrupted {path}: e-{exc.code}: {exc}"})
        cfg = h.configure()
        still = cfg.get("model")
        events.append({"kind": "fault", "fault": "corrupt_model", "outcome": "kept" if still == name else "changed",
                       "message": f"the DUT still runs model {still!r}"})
        return {"status": "ok", "events": events, "model_after": still}

    def _deploy_interrupted(self, step: Mapping[str, Any]) -> dict[str, Any]:
        from ppg_edge.boards.deploy import Deployer, DeployError
        from ppg_edge.boards.deploy.remote import InterruptedPush

        if not hasattr(self.dut, "deploy_target"):
            return self._skipped(step, "be deployed to in a drill")
        runner, root = self.dut.deploy_target()
        dep = Deployer(InterruptedPush(runner, fraction=0.5), root=root, service_manager="none")
        prepare_previous = getattr(self.dut, "prepare_previous_release", None)
        previous = prepare_previous(dep) if prepare_previous else _fake_previous_release(dep, runner)
        bundle = _bundle_for_drill(self.dut.workdir / "drill-bundle", self.board, self.host_models)
        events = []
        try:
            dep.deploy(bundle)
            events.append({"kind": "fault", "fault": "deploy_interrupted", "outcome": "missed",
                           "message": "the deploy succeeded although its push was cut off"})
        except DeployError as exc:
            events.append({"kind": "fault", "fault": "deploy_interrupted", "outcome": "detected",
                           "message": str(exc)})
        cur, releases = dep.current_release(), dep.list_releases()
        kept = cur == previous and bundle.release not in releases
        events.append({"kind": "fault", "fault": "deploy_rollback", "outcome": "kept" if kept else "broken",
                       "message": f"current -> {cur} (before: {previous}); releases {releases}"})
        return {"status": "ok", "events": events, "current": cur, "previous": previous, "releases": releases}

    # ------------------------------------------------------------------ checks and summary

    def _checks(self, step: Mapping[str, Any], res: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        def check(name: str, ok: bool, detail: str) -> None:
            out.append({"check": name, "status": "pass" if ok else "fail", "detail": detail})

        exp = step.get("expect", {})
        if step["kind"] == "soak":
            from .soak import soak_checks

            return soak_checks(step, res)
        if step["kind"] == "bp":
            from .bp_check import bp_checks

            return bp_checks(step, res)
        if step["kind"] != "measure":
            for ev in res.get("events", []):
                if ev.get("kind") == "fault":
                    ok = ev["outcome"] in ("detected", "recovered", "kept")
                    out.append({"check": ev["fault"], "status": "skipped" if ev["outcome"] == "skipped" else
                                ("pass" if ok else "fail"), "detail": ev["message"]})
            return out
        if "error" in exp:
            err = res.get("error") or ""
            ok = res.get("status") == "failed" and exp["error"].lower() in err.lower()
            check("error", ok, f"expected a failure mentioning {exp['error']!r}; got: {err or 'no error'}")
            res.setdefault("events", []).append({"kind": "fault", "fault": step["name"],
                                                 "outcome": "detected" if ok else "missed", "message": err})
            return out
        check("completed", res.get("status") == "ok", res.get("error") or "all loops completed")
        lost = res.get("lost_samples")
        cnt = res.get("dut_counters") or {}
        if "max_lost" in exp:
            check("max_lost", lost is not None and lost <= exp["max_lost"], f"{lost} samples lost (max {exp['max_lost']})")
        if "min_lost" in exp:
            check("min_lost", lost is not None and lost >= exp["min_lost"], f"{lost} samples lost (min {exp['min_lost']})")
        if cnt:
            check("no_silent_loss", cnt.get("driver_lost", 0) >= cnt.get("chip_lost", 0),
                  f"driver counted {cnt.get('driver_lost')} lost, the emulated chip lost {cnt.get('chip_lost')}")
        beats = res.get("beats")
        if "min_beats" in exp:
            check("min_beats", beats is not None and beats >= exp["min_beats"], f"{beats} beats (min {exp['min_beats']})")
        if "max_beats" in exp:
            check("max_beats", beats is not None and beats <= exp["max_beats"], f"{beats} beats (max {exp['max_beats']})")
        vh = res.get("accuracy_vs_host") or {}
        if exp.get("identical_to_host"):
            check("identical_to_host", bool(vh) and vh["identical_loops"] == vh["loops"],
                  f"{vh.get('identical_loops')}/{vh.get('loops')} loops gave exactly the host's beats")
        if "min_f1_vs_host" in exp:
            f1 = vh.get("f1_within_tolerance")
            check("min_f1_vs_host", f1 is not None and f1 >= exp["min_f1_vs_host"],
                  f"F1 against the host's beats {f1} (min {exp['min_f1_vs_host']})")
        evs = res.get("dut_events") or {}
        for kind, n in (exp.get("events") or {}).items():
            check(f"event {kind}", evs.get(kind, 0) >= n, f"{evs.get(kind, 0)} x {kind} (min {n})")
            res.setdefault("events", []).append({
                "kind": "fault", "fault": step["name"], "outcome": "detected" if evs.get(kind, 0) >= n else "missed",
                "message": f"{evs.get(kind, 0)} x {kind} reported by the DUT; lost samples {lost} "
                           f"(driver {cnt.get('driver_lost')}, chip {cnt.get('chip_lost')})"})
        if "max_rss_growth_kb" in exp:
            rss = [p.get("dut_peak_memory_kb") for p in res.get("per_loop", [])]
            growth = (rss[-1] - rss[0]) if len(rss) >= 2 else None
            check("max_rss_growth_kb", growth is not None and growth <= exp["max_rss_growth_kb"],
                  f"DUT peak RSS over loops {rss} (growth {growth} KiB, max {exp['max_rss_growth_kb']})")
        return out

    def _combine(self, steps: list[dict[str, Any]], status: str, seconds: float) -> dict[str, Any]:
        measured = [s for s in steps if s.get("kind") in ("measure", "soak") and s.get("loops_completed")]
        head: dict[str, Any] = dict(measured[0]) if measured else {}
        for k in ("name", "kind", "checks", "step_status", "events", "per_loop"):
            head.pop(k, None)
        head.pop("latency_samples_us", None)
        events = []
        for s in steps:
            for ev in s.get("events", []):
                events.append({**ev, "step": s["name"]})
        checks = [{**c, "step": s["name"]} for s in steps for c in s.get("checks", [])]
        lat_all = [v for s in measured for v in s.get("latency_samples_us", [])]
        from ppg_edge import manifest as mf

        models = {}
        for name, path in self.host_models.items():
            try:
                models[name] = {"file": path.name, "sha256": mf.sha256_file(path)}
            except OSError:
                models[name] = {"file": path.name, "sha256": None}
        results = {**head, "suite": self.suite["name"], "description": self.suite["description"],
                   "command": " ".join(sys.argv), "host": f"{platform.machine()} {platform.node()} "
                   f"({os.cpu_count()} CPUs), Python {platform.python_version()}", "models": models,
                   "board": self.board.identifier, "status": status,
                   "dut_where": (f"this process ({'/'.join(sorted({s['kind'] for s in self.suite['steps']}))}: the "
                                 "emulated chip, driver and pipeline ran in the harness; no DUT process was started)")
                   if getattr(self, "in_process", False) else self.dut.where,
                   "dut_kind": getattr(self.dut, "kind", "?"),
                   "seconds": round(seconds, 1),
                   "energy_note": ("none: a soak measures sample accounting, memory and beats, a bp step the "
                                   "device's BP against the host's and the reference, not energy"
                                   if getattr(self, "in_process", False) else
                                   f"CPU time was measured on the DUT ({self.dut.where}); on a local or emulated "
                                   "DUT it is not a Pi's CPU time, so the modelled figure is not a Pi figure"),
                   "lost_samples": sum(s.get("lost_samples") or 0 for s in measured),
                   "steps": steps, "checks": checks, "events": events, "latency_samples_us": lat_all,
                   "checks_failed": sum(1 for c in checks if c["status"] == "fail"),
                   "checks_skipped": sum(1 for c in checks if c["status"] == "skipped")}
        return results


def _brief(res: Mapping[str, Any]) -> dict[str, Any]:
    return {k: res.get(k) for k in ("status", "error", "lost_samples", "beats", "accuracy", "accuracy_vs_host")}


def _fake_previous_release(dep, runner) -> str:
    """A release already current on the drill target (as a previous deploy leaves it)."""
    name = "0.0.0-20240101T000000Z"
    rel = dep.release_dir(name)
    runner.run(["mkdir", "-p", rel])
    dep.switch(name)
    return name


def _bundle_for_drill(out: Path, board, models: Mapping[str, Path]):
    from ppg_edge.boards.deploy import build_bundle

    if out.exists():
        shutil.rmtree(out)
    wheel = out.parent / "drill-wheel" / "ppg_edge-0.0.1-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)   # an empty zip: the drill never installs it
    mdir = out.parent / "drill-models"
    mdir.mkdir(exist_ok=True)
    from ppg_edge import manifest as mf

    for path in models.values():
        shutil.copy(path, mdir / path.name)
        shutil.copy(mf.manifest_path_for(path), mdir / mf.manifest_path_for(path).name)
    return build_bundle(out, board, wheel=wheel, models_dir=mdir, now=time.time())


def run_suite(suite: str, board, dut, host_models: Mapping[str, Path], *, runs_dir: Path = Path("runs"),
              data_root=None, meter=None, close_dut: bool = True) -> tuple[Path, dict[str, Any]]:
    """Load ``suite``, run it against ``dut``, write the session folder; (folder, results)."""
    from .session import Session

    spec = load_suite(suite, virtual=bool(getattr(dut, "emulated", False)))   # qemu-slow DUTs get the [virtual] sizes
    session = Session.create(runs_dir, board.identifier, spec["name"])
    with session:
        try:
            results = SuiteRunner(spec, board, dut, host_models, data_root=data_root, meter=meter).run()
            if spec.get("instructions") is not None:  # the device path's count on the board's core
                from .insn_count import count_for_report

                results["instructions"] = count_for_report(board, float(spec["instructions"].get("seconds", 10)),
                                                           data_root)
        finally:
            close = getattr(dut, "close", None) if close_dut else None   # the virtual Pi goes down here
            if close is not None:
                close()
        session.write(results)
    return session.path, results


def save_results(results: Mapping[str, Any], folder: Path, report_md: Path | None = None) -> Path:
    """A copy of ``results`` for docs/results (``hil-<suite>-<board>.json``), without the raw latency list."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    slim = {k: v for k, v in results.items() if k != "latency_samples_us"}
    slim["steps"] = [{k: v for k, v in st.items() if k != "latency_samples_us"} for st in results.get("steps", [])]
    out = folder / f"hil-{results['suite']}-{results['board']}-{results.get('dut_kind', 'dut')}.json"
    out.write_text(json.dumps(slim, indent=1, default=str) + "\n")
    from .session import render_report

    where = f" (`{report_md.parent}`)" if report_md is not None else ""
    text = render_report(slim, [])
    text = text.replace("## Plots\n\n", f"## Plots\n\nIn the session folder of the run{where}; not copied here.\n")
    out.with_suffix(".md").write_text(text)
    return out
