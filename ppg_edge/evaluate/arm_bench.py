"""``ppg-edge bench arm``: instructions of the device path on a board's CPU model (qemu TCG counts).

Method (the report repeats it):

* the device path runs as :mod:`ppg_edge.evaluate.arm_device` under the dynamic
  ``qemu-aarch64 -cpu <core> -plugin <counter>`` (:mod:`ppg_edge.boards.virtual.insn`) with
  the virtual Pi's base stage (aarch64 Python 3.11, numpy, ai-edge-litert) as ``-L`` root;
  the project's code is the source tree mapped to its installed names on ``PYTHONPATH``;
* the real MAX30102 driver reads FIFO bytes prepared on the host (the emulated chip fed by
  the record, its FIFO reads captured) from a bus fake; the emulated chip is counted apart;
* every figure is a difference of the same run at two signal lengths, so that interpreter
  start-up, imports and model loading cancel; stage figures are differences of per-stage
  counters (the stage marks itself with a no-op syscall the plugin sees);
* with the stages, what they are made of: instructions per call of a few numpy and Python
  calls on a window-sized array (:func:`call_counts`);
* CPU load and energy are MODELLED from the board file: ``load = insn/s / (ipc * clock)``
  of one core, ``energy per sample = load * core_active_w / sample rate``.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ppg_edge.errors import ConfigError

log = logging.getLogger(__name__)

RECORD = ("capnobase", "0009")
PEAK_INT8 = "models/device/peaks-Type30-int8.tflite"
PEAK_FLOAT = "models/device/peaks-Type30-float32.tflite"


def board_paths(board) -> dict[str, tuple[str, str]]:
    """path -> (peak model, gate) for a board: ``network`` is the device's peak model (the board
    file's ``runtime.peak_model``, int8 Type30 when it names none), always on; the other
    precision of Type30 beside it (``network-int8`` / ``network-float32``); ``gated`` and
    ``classic`` with the device's model loaded."""
    rt = getattr(board, "runtime", None)
    device = f"models/device/{rt.peak_model}" if rt is not None and rt.peak_model else PEAK_INT8
    other = PEAK_INT8 if device == PEAK_FLOAT else PEAK_FLOAT
    return {"network": (device, "network"),
            f"network-{'int8' if other == PEAK_INT8 else 'float32'}": (other, "network"),
            "gated": (device, "auto"),
            "classic": (device, "classic"),
            "network+bp": (device, "network")}


def board_bp_model(board) -> str:
    """The BP model a bundle for ``board`` runs (the one made for its rate), for the ``network+bp`` path."""
    from ppg_edge.boards.deploy.bundle import _board_bp_model

    return f"models/device/{_board_bp_model(board.identifier)}"


def _path_spec(inp: dict, path: str, paths_run: dict, board, **kw) -> dict:
    from ppg_edge.config import REPO_ROOT

    model, gate = paths_run[path]
    spec = {**inp, "mode": "path", "model": str(REPO_ROOT / model), "gate": gate, **kw}
    if path == "network+bp":
        spec["bp_model"] = str(REPO_ROOT / board_bp_model(board))
    return spec


def board_hop(board, model_fs: float = 125.0) -> int | None:
    """The framer hop the board's service runs (``runtime.hop_s``), in model samples."""
    rt = getattr(board, "runtime", None)
    return None if rt is None else rt.hop_samples(model_fs)

STAGE_ROWS = ("driver", "bus-fake", "resampler", "iir", "dwt", "framing", "quality", "invoke", "classic",
              "decoder", "bp", "sink", "pipeline")
GUEST_PYTHON = "/usr/bin/python3.11"
SITE = "opt/ppg-edge/base-venv/lib/python3.11/site-packages"
DEVICE_SCRIPT = Path(__file__).with_name("arm_device.py")


# --------------------------------------------------------------------------- boards


def qemu_core(board) -> str:
    """The qemu CPU model of a board: its pinned ``qemu_cpu`` or its core (``cpu.model``)."""
    from ppg_edge.boards.registry import QEMU_CPUS

    core = board.cpu.qemu_cpu or board.cpu.model.lower()
    if core not in QEMU_CPUS:
        raise ConfigError(f"{board.identifier}: core {board.cpu.model!r} has no qemu model "
                          f"(known: {', '.join(QEMU_CPUS)})")
    return core


def modelled(board, insn_per_s: float, sample_rate: float) -> dict:
    """Modelled CPU load (fraction of one core), power above idle (mW) and energy per sensor
    sample from the board file. The power is what a battery sees; the energy per sample also
    falls with the rate's denominator, so a lower sensor rate raises it for the same power."""
    ipc, watts = board.cpu.ipc, board.power.core_active_w
    if ipc is None or watts is None:
        raise ConfigError(f"{board.identifier}: the board file has no cpu.ipc or power.core_active_w "
                          "(needed for the modelled load and energy)")
    load = insn_per_s / (ipc * board.cpu.clock_mhz * 1e6)
    return {"modelled_cpu_load": load, "modelled_mw": load * watts * 1e3,
            "modelled_mj_per_sample": load * watts / sample_rate * 1e3}


# --------------------------------------------------------------------------- guest


def aarch64_root(board, work: Path) -> Path:
    """An ``-L`` root for qemu-user: the virtual Pi's base stage, seen through symbolic links,
    with the board's aarch64 ``/proc/cpuinfo`` (ai-edge-litert crashes on the host's x86 one;
    qemu-user looks a path up under ``-L`` first, so no mount is needed)."""
    from ppg_edge.boards.registry import list_boards, load_board
    from ppg_edge.boards.virtual import chroot as ch
    from ppg_edge.boards.virtual import machine
    from ppg_edge.boards.virtual import userland as ul

    vboard = board if board.virtual else None
    if vboard is None:
        for b in list_boards():
            if b.virtual and b.emulates == board.identifier:
                vboard = b
        vboard = vboard or load_board("virtual-rpi4")  # the base stage does not depend on the core
    base = machine.build_base(ul.build_userland(), vboard) / "root"
    root = work / "root"
    (root / "proc").mkdir(parents=True)
    for entry in base.iterdir():
        if entry.name != "proc":
            (root / entry.name).symlink_to(entry)
    core = qemu_core(board)
    (root / "proc/cpuinfo").write_text(ch.cpuinfo_text(core, board.cpu.cores, board.name))
    return root


def installed_tree(work: Path) -> Path:
    """A snapshot of the source tree under its installed package names (setup.py's ROLE_FOLDERS
    that the device path needs): guest and host runs see the same code for the whole bench,
    even while the working tree changes."""
    import shutil

    from ppg_edge.config import REPO_ROOT

    top = work / "py"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "ppg_edge", top / "ppg_edge", ignore=skip)
    for folder in ("edge_runtime", "boards"):
        shutil.copytree(REPO_ROOT / folder, top / "ppg_edge" / folder, ignore=skip)
    return top


class Runner:
    """Runs :mod:`arm_device` specs under the counter (or on the host)."""

    def __init__(self, board, work: Path):
        self.board, self.work = board, work
        self.root = aarch64_root(board, work)
        self.py = installed_tree(work)
        self.script = self.py / "ppg_edge" / "evaluate" / DEVICE_SCRIPT.name
        self.n = 0

    def _spec(self, spec: dict) -> Path:
        self.n += 1
        path = self.work / f"spec-{self.n}.json"
        path.write_text(json.dumps(spec))
        return path

    def count(self, spec: dict, core: str | None = None):
        from ppg_edge.boards.virtual import insn
        from ppg_edge.edge_runtime import SINGLE_THREAD_ENV

        env = {"PYTHONPATH": f"{self.root / SITE}:{self.py}", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               **SINGLE_THREAD_ENV,
               "HOME": str(self.work), "PYTHONPYCACHEPREFIX": str(self.work / "pycache")}
        c = insn.count([GUEST_PYTHON, str(self.script), str(self._spec(spec))], root=self.root,
                       qemu_cpu=core or qemu_core(self.board), env=env)
        c.result = json.loads(c.stdout.strip().splitlines()[-1])
        return c

    def host(self, spec: dict) -> dict:
        # the snapshot the guest runs: -S keeps the editable install's path hook out, the
        # environment's site-packages come back through PYTHONPATH
        import sysconfig

        env = {**os.environ, "PYTHONHASHSEED": "0",
               "PYTHONPATH": f"{self.py}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"}
        proc = subprocess.run([sys.executable, "-S", str(self.script), str(self._spec(spec))], env=env, cwd=self.work,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"host run of the device path failed: {proc.stderr.strip()[-600:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- input


def _record(record) -> tuple[str, str]:
    """``"dataset/id"`` (or a pair) as ``(dataset, id)``."""
    parts = tuple(record.split("/", 1)) if isinstance(record, str) else tuple(record)
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"record {record!r}: give DATASET/ID, e.g. capnobase/0009")
    return parts


def prepare_input(board, seconds: float, work: Path, data_root=None, record=RECORD) -> dict:
    """The record as the emulated chip's light, and the FIFO bytes the chip gives the driver."""
    from ppg_edge.data import load_record
    from ppg_edge.edge_runtime.playback import light_from_ppg, settings_from_board
    from ppg_edge.edge_runtime.sensors import EmulatedMax30102, Max30102, VirtualClock

    record = _record(record)
    rec = load_record(*record, data_root)
    settings = settings_from_board(board)
    light = light_from_ppg(rec.ppg)
    need = int(seconds * rec.fs) + int(5 * rec.fs)
    if light.size < need:
        raise ConfigError(f"{'/'.join(record)} has {light.size / rec.fs:.0f} s; the bench needs {need / rec.fs:.0f} s")
    light = light[:need]
    clock = VirtualClock()
    chip = EmulatedMax30102(light, rec.fs, clock=clock)
    captured: list[bytes] = []
    real = chip.i2c_rdwr

    def capture(wr, rd):
        real(wr, rd)
        if bytes(wr)[0] == 0x07:  # FIFO_DATA
            captured.append(bytes(rd))

    chip.i2c_rdwr = capture
    sensor = Max30102(chip, settings=settings, clock=clock, wait_for_interrupt=chip.wait_for_interrupt)
    sensor.start()
    n = int(seconds * settings.output_rate)
    for _ in sensor.blocks(n_samples=n):
        pass
    fifo = np.frombuffer(b"".join(captured), dtype=np.uint8)
    if fifo.size < 6 * n:
        raise ConfigError(f"the emulated chip gave {fifo.size // 6} samples, {n} needed")
    np.save(work / "fifo.npy", fifo)
    np.save(work / "light.npy", light)
    return {"fifo": str(work / "fifo.npy"), "light": str(work / "light.npy"), "light_fs": float(rec.fs),
            "settings": {"sample_rate": settings.sample_rate, "averaging": settings.averaging,
                         "almost_full": settings.almost_full},
            "fs": settings.output_rate}


# --------------------------------------------------------------------------- the bench


def lengths(seconds: float) -> tuple[float, float]:
    """The two signal lengths whose difference is measured: a lead-in and ``seconds`` more."""
    if not seconds >= 5:
        raise ConfigError(f"--seconds must be at least 5, got {seconds}")
    lead = max(10.0, round(seconds / 3))
    return lead, lead + float(seconds)


def bench(board, seconds: float = 60.0, *, stages: bool = True, models: bool = True, chip: bool = True,
          equivalence: bool = True, data_root=None, progress: bool = True, rate_error: float = 0.0,
          record=RECORD) -> dict:
    """Count the device path (see the module docstring). ``rate_error``: the chip's clock runs
    this fraction fast, as a real MAX30102's oscillator does, so that the pipeline measures the
    rate and the resampler follows it (its floating-point path; 0: the nominal grid).
    ``record``: the signal played (``"dataset/id"``; the budget's is :data:`RECORD`)."""
    from tqdm import tqdm

    from ppg_edge.boards.registry import list_boards
    from ppg_edge.config import REPO_ROOT

    short, long_ = lengths(seconds)
    dt = long_ - short
    if not -0.05 <= rate_error <= 0.05:
        raise ConfigError(f"--rate-error must be within +-0.05 (5 %), got {rate_error}")
    with tempfile.TemporaryDirectory(prefix="ppg-arm-bench-") as tmp:
        work = Path(tmp)
        runner = Runner(board, work)
        record = _record(record)
        inp = prepare_input(board, long_, work, data_root, record)
        inp["hop"] = board_hop(board)
        inp["rate_error"] = float(rate_error)
        fs = inp.pop("fs")
        paths_run = board_paths(board)
        jobs = [(p, staged) for p in paths_run for staged in ((False, True) if stages else (False,))]
        bar = tqdm(total=2 * len(jobs) + len(paths_run) + (2 if chip else 0) + (1 if equivalence else 0), desc="arm bench",
                   disable=not progress, unit="run")
        counts: dict = {}
        # warm-up, discarded, once per path: compiles the byte code into the private pycache and
        # fills what the stages cache on first use (else the first counted run pays it)
        for path in paths_run:
            runner.count(_path_spec(inp, path, paths_run, board, seconds=short, stages=True))
            bar.update()
        for path, staged in jobs:
            for secs in (short, long_):
                spec = _path_spec(inp, path, paths_run, board, seconds=secs, stages=staged)
                if path == "network" and not staged and secs == long_ and equivalence:
                    spec["events"] = str(work / "guest-events.jsonl")
                counts[(path, staged, secs)] = runner.count(spec)
                bar.update()
        paths, stage_table = {}, {}
        from ppg_edge.evaluate.arm_device import STAGES

        for path in paths_run:
            a, b = counts[(path, False, short)], counts[(path, False, long_)]
            per_s = (b.total - a.total) / dt
            paths[path] = {"device_insn_per_signal_s": per_s, "insn_per_sample": per_s / fs,
                           **modelled(board, per_s, fs), "windows": b.result["windows"] - a.result["windows"],
                           "beats": b.result["beats"], "paths_taken": b.result["paths"]}
            if stages:
                a, b = counts[(path, True, short)], counts[(path, True, long_)]
                stage_table[path] = {s: (b.stages.get(STAGES[s], 0) - a.stages.get(STAGES[s], 0)) / dt
                                     for s in STAGE_ROWS}
        doc = {"board": board.identifier, "cpu": {"model": board.cpu.model, "qemu_cpu": qemu_core(board),
                                                   "clock_mhz": board.cpu.clock_mhz, "ipc": board.cpu.ipc,
                                                   "ipc_source": board.cpu.ipc_source,
                                                   "core_active_w": board.power.core_active_w,
                                                   "core_active_source": board.power.core_active_source},
               "record": "/".join(record), "seconds": seconds, "lengths_s": [short, long_], "sample_rate_hz": fs,
               "rate_error": float(rate_error),
               "runtime": {"peak_model": Path(paths_run["network"][0]).name, "hop": inp["hop"],
                           "bp_model": Path(board_bp_model(board)).name,
                           "fifo_almost_full": inp["settings"]["almost_full"],
                           "peak_model_source": getattr(board.runtime, "peak_model_source", None),
                           "hop_source": getattr(board.runtime, "hop_source", None)},
               "paths": paths, "stages": stage_table}
        if chip:
            got = []
            for secs in (short, long_):
                model, gate = paths_run["network"]
                got.append(runner.count({**inp, "mode": "path", "model": str(REPO_ROOT / model), "gate": gate,
                                         "seconds": secs, "stages": True, "bus": "emulated"}))
                bar.update()
            doc["emulated_chip_insn_per_signal_s"] = (got[1].stages.get(STAGES["chip"], 0)
                                                      - got[0].stages.get(STAGES["chip"], 0)) / dt
        if equivalence:
            model, gate = paths_run["network"]
            host_events = work / "host-events.jsonl"
            runner.host({**inp, "mode": "path", "model": str(REPO_ROOT / model), "gate": gate, "seconds": long_,
                         "events": str(host_events)})
            bar.update()
            guest = (work / "guest-events.jsonl").read_text().splitlines()
            host = host_events.read_text().splitlines()
            beats = [json.loads(x) for x in guest if '"type":"beat"' in x]
            doc["equivalence"] = {"path": "network", "events_equal": guest == host, "events": len(guest),
                                  "beats": len(beats),
                                  "first_difference": next((i for i, (g, h) in enumerate(zip(guest, host))
                                                            if g != h), None)}
        bar.close()
        if stages:
            doc["calls"] = call_counts(runner)
        if models:
            doc["models"] = model_counts(runner, [b for b in list_boards() if not b.virtual], progress)
    return doc


def model_counts(runner: Runner, boards, progress: bool = True, invokes: int = 5) -> dict:
    """Instructions per invoke of every models/device/*.tflite on each board's core."""
    from tqdm import tqdm

    from ppg_edge.config import REPO_ROOT
    from ppg_edge.evaluate.arm_device import MODEL_STAGE0

    files = sorted((REPO_ROOT / "models/device").glob("*.tflite"))
    out: dict = {f.name: {} for f in files}
    cores = sorted({qemu_core(b) for b in boards})
    for core in tqdm(cores, desc="models per core", disable=not progress):
        c = runner.count({"mode": "models", "models": [str(f) for f in files], "invokes": invokes}, core=core)
        for i, f in enumerate(files):
            out[f.name][core] = c.stages.get(MODEL_STAGE0 + i, 0) / invokes
    return out


def call_counts(runner: Runner, repeats: int = 200) -> list[dict]:
    """Instructions per call of the calls the stages are made of (:func:`arm_device.calls`), on
    the board's core; each includes the loop and call around it (the first row, a function that
    does nothing, is that overhead)."""
    from ppg_edge.evaluate.arm_device import MODEL_STAGE0

    c = runner.count({"mode": "calls", "repeats": repeats})
    return [{"call": name, "insn_per_call": c.stages.get(MODEL_STAGE0 + i, 0) / repeats}
            for i, name in enumerate(c.result["calls"])]


# --------------------------------------------------------------------------- budget


def budget_from(doc: dict, previous: Path | None = None, note: str | None = None) -> dict:
    """The budget file of a bench result: its per-path counts, with what they were counted on, and
    the ``history`` of why they changed (``previous``'s, when that file exists, then ``note``)."""
    history = []
    if previous is not None and Path(previous).is_file():
        try:
            history = list(json.loads(Path(previous).read_text()).get("history", []))
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{previous}: not a budget file ({exc})") from None
    if note:
        history.append(str(note))
    return {"about": "Instructions per second of signal of the device path (driver included, emulated chip "
                     "excluded) on the board's core, counted by ppg-edge bench arm's method "
                     f"(ppg-edge bench arm --board {doc['board']} --seconds {doc['seconds']:g} --no-stages "
                     "--no-models --budget FILE); tests/test_bench_arm.py fails when a path grows more than "
                     "10 % over its figure. A change that lowers a count updates this file in the same commit.",
            "board": doc["board"], "cpu": doc["cpu"]["qemu_cpu"], "record": doc["record"], "seconds": doc["seconds"],
            "lengths_s": doc["lengths_s"], "runtime": doc["runtime"],
            "paths": {p: round(v["device_insn_per_signal_s"]) for p, v in doc["paths"].items()},
            **({"history": history} if history else {})}


def check_budget(doc: dict, budget: dict, tolerance: float = 0.10) -> list[str]:
    """The paths whose count grew more than ``tolerance`` over the budget (one line each)."""
    over = []
    if budget.get("record") and doc.get("record") and budget["record"] != doc["record"]:
        over.append(f"counted on {doc['record']}, the budget is {budget['record']}'s")
    for path, want in budget["paths"].items():
        got = doc["paths"].get(path, {}).get("device_insn_per_signal_s")
        if got is None:
            over.append(f"{path}: not measured")
        elif got > want * (1 + tolerance):
            over.append(f"{path}: {got / 1e6:.2f}M instructions per second of signal, budget "
                        f"{want / 1e6:.2f}M (+{tolerance:.0%} allowed)")
    return over


# --------------------------------------------------------------------------- report


def write_report(doc: dict, out: Path, command: str) -> tuple[Path, Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-arm-{doc['board']}"
    if doc["record"] != "/".join(RECORD):  # the committed report is the budget record's
        stem += "-" + doc["record"].replace("/", "-")
    jpath, mpath, ppath = out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.png"
    jpath.write_text(json.dumps({**doc, "command": command}, indent=1) + "\n")
    plot_stages(doc, ppath)
    cpu = doc["cpu"]
    m = lambda v: f"{v / 1e6:.2f}M"  # noqa: E731
    lines = [f"# Instructions of the device path on {cpu['model']} ({doc['board']})", "",
             f"Command: `{command}`", "",
             f"Counted under `qemu-aarch64 -cpu {cpu['qemu_cpu']}` with a TCG instruction-count plugin "
             f"(deterministic for the same input), record {doc['record']} read by the real MAX30102 driver "
             f"from a bus fake serving the emulated chip's FIFO bytes; every figure is the difference of the "
             f"same run at {doc['lengths_s'][0]:g} s and {doc['lengths_s'][1]:g} s of signal, divided by "
             f"{doc['lengths_s'][1] - doc['lengths_s'][0]:g} s (start-up cancels).", "",
             f"The board's runtime (its board file): peak model {doc['runtime']['peak_model']} "
             f"({doc['runtime']['peak_model_source'] or 'the default'}); framer hop "
             f"{doc['runtime']['hop'] or 'of the model manifest'} samples ({doc['runtime']['hop_source'] or 'default'}); "
             f"FIFO burst of {doc['runtime']['fifo_almost_full']} samples (A_FULL).", "",
             "## Per path", "",
             "| path | instructions / s of signal | per sample | modelled CPU load (one core) "
             "| modelled mW above idle | modelled mJ / sample |", "|---|---:|---:|---:|---:|---:|"]
    for p, v in doc["paths"].items():
        lines.append(f"| {p} | {m(v['device_insn_per_signal_s'])} | {v['insn_per_sample']:,.0f} | "
                     f"{v['modelled_cpu_load']:.2%} | {v['modelled_mw']:.2f} | {v['modelled_mj_per_sample']:.4f} |")
    lines += ["", f"Modelled (not measured): load = instructions/s / (IPC {cpu['ipc']} x {cpu['clock_mhz']} MHz); "
              f"power = load x {cpu['core_active_w']} W (one core above idle); energy per sample = power / "
              f"{doc['sample_rate_hz']:g} Hz. IPC: {cpu['ipc_source']}. Power: {cpu['core_active_source']}.", ""]
    if "emulated_chip_insn_per_signal_s" in doc:
        lines += [f"The emulated chip (tests and HIL on the virtual Pi only) costs "
                  f"{m(doc['emulated_chip_insn_per_signal_s'])} instructions per second of signal on top; "
                  "it is not in the figures above.", ""]
    if doc.get("stages"):
        lines += ["## Per stage (instructions per second of signal)", "",
                  "| stage | " + " | ".join(doc["stages"]) + " |", "|---|" + "---:|" * len(doc["stages"])]
        for s in STAGE_ROWS:
            lines.append(f"| {s} | " + " | ".join(m(doc["stages"][p][s]) for p in doc["stages"]) + " |")
        lines += ["", "`pipeline`: the pipeline's own glue (block handling, events); `bus-fake`: the "
                  "prepared-FIFO bus's Python methods, which stand in for smbus2's ioctl calls (included in "
                  "the path totals above; the kernel's I2C work on a Pi is not counted). Stage counters add "
                  "a marker syscall per call, so their sum is a little above the path total.", ""]
    if doc.get("calls"):
        lines += [f"## What a stage is made of (instructions per call on {cpu['qemu_cpu']})", "",
                  "| call (arrays of 250 samples, a window) | instructions |", "|---|---:|"]
        lines += [f"| {c['call']} | {c['insn_per_call']:,.0f} |" for c in doc["calls"]]
        lines += ["", "Each figure includes the loop and the call around it (the first row). The streaming "
                  "stages above are made of such calls on a window or a FIFO burst each.", ""]
    if doc.get("models"):
        cores = sorted({c for v in doc["models"].values() for c in v})
        lines += ["## Per model file (instructions per invoke)", "", "| model | " + " | ".join(cores) + " |",
                  "|---|" + "---:|" * len(cores)]
        for f, v in doc["models"].items():
            lines.append(f"| {f} | " + " | ".join(m(v[c]) for c in cores) + " |")
        lines.append("")
    if "equivalence" in doc:
        e = doc["equivalence"]
        lines += ["## Equivalence", "", f"network path ({doc['runtime']['peak_model']}) under qemu against the "
                  "same run on the host: "
                  f"{'identical' if e['events_equal'] else 'DIFFERENT'} ({e['events']} events, {e['beats']} beats"
                  + ("" if e["events_equal"] else f", first difference at event {e['first_difference']}") + ").",
                  ""]
    lines += [f"![stages]({ppath.name})", ""]
    mpath.write_text("\n".join(lines))
    return jpath, mpath, ppath


def plot_stages(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(doc["paths"])
    if doc.get("stages"):
        bottom = np.zeros(len(names))
        for s in STAGE_ROWS:
            vals = np.array([doc["stages"][p][s] / 1e6 for p in names])
            if vals.max() <= 0.01:
                continue
            ax.bar(names, vals, bottom=bottom, label=s)
            bottom += vals
        ax.legend(fontsize=8, ncol=2)
    ax.plot(names, [doc["paths"][p]["device_insn_per_signal_s"] / 1e6 for p in names], "k_", markersize=30,
            label="path total")
    ax.set_ylabel("million instructions per second of signal")
    ax.set_title(f"Device path on {doc['cpu']['model']} ({doc['board']}), counted under qemu TCG")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
