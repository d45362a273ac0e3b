"""Session folders: every HIL run leaves ``runs/<timestamp>-<board>-<suite>/``.

Contents: ``log.txt`` (the ``ppg_edge`` log of the run), ``results.json``
(the harness's results dict) and ``report.md`` with two PNG plots
(``latency_hist.png``, ``energy_per_sample.png``, and for suites ``accuracy.png``). Plots use matplotlib
(host side only, imported when the report is written, Agg backend).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from ppg_edge.errors import ConfigError

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    return _SAFE.sub("-", text).strip("-") or "none"


class Session:
    """One run's folder; use as a context manager to capture the log into ``log.txt``."""

    def __init__(self, path: Path):
        self.path = path
        self._handler: logging.Handler | None = None

    @classmethod
    def create(cls, root: str | Path, board: str, suite: str,
               now: _dt.datetime | None = None) -> Session:
        now = now or _dt.datetime.now()
        base = f"{now:%Y%m%d-%H%M%S}-{_slug(board)}-{_slug(suite)}"
        root = Path(root)
        path = root / base
        k = 1
        while path.exists():                     # two runs in one second
            k += 1
            path = root / f"{base}-{k}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(f"cannot create session folder {path}: {exc}") from None
        return cls(path)

    def __enter__(self) -> Session:
        self._handler = logging.FileHandler(self.path / "log.txt", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._handler.setLevel(logging.DEBUG)
        logger = logging.getLogger("ppg_edge")
        self._old_level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handler is not None:
            logger = logging.getLogger("ppg_edge")
            logger.removeHandler(self._handler)
            logger.setLevel(self._old_level)
            self._handler.close()
            self._handler = None

    def write(self, results: dict[str, Any]) -> Path:
        """Write ``results.json``, the plots and ``report.md``; return the folder."""
        (self.path / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
        plots = write_plots(results, self.path)
        (self.path / "report.md").write_text(render_report(results, plots))
        log.info("session written to %s", self.path)
        return self.path


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def write_plots(results: dict[str, Any], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    lat = results.get("latency_samples_us") or []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if lat:
        ax.hist(lat, bins=min(50, max(5, int(math.sqrt(len(lat))))), color="#3b6ea5")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no latency samples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency per sample (µs, DUT clock)")
    ax.set_ylabel("count")
    ax.set_title(f"{results.get('board')} / {results.get('suite')}: per-sample latency")
    fig.tight_layout()
    fig.savefig(folder / "latency_hist.png", dpi=100)
    plt.close(fig)
    names.append("latency_hist.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    series = {}
    for loop in results.get("per_loop", []):
        for e in loop.get("energy", []):
            if e.get("joules_per_sample") is not None:
                series.setdefault(e["source"], []).append(e["joules_per_sample"] * 1e6)
    for src, vals in series.items():
        ax.plot(range(1, len(vals) + 1), vals, marker="o", label=src)
    if series:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no energy figures", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("loop")
    ax.set_ylabel("energy per sample (µJ)")
    ax.set_title("energy per sample (see report for measured vs modelled)")
    fig.tight_layout()
    fig.savefig(folder / "energy_per_sample.png", dpi=100)
    plt.close(fig)
    names.append("energy_per_sample.png")

    steps = [st for st in results.get("steps", []) if st.get("kind") == "measure" and st.get("accuracy") is not None]
    if steps:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(steps) + 2), 3.5))
        x = list(range(len(steps)))
        truth = [(st.get("accuracy") or {}).get("f1") or 0.0 for st in steps]
        host = [(st.get("accuracy_vs_host") or {}).get("f1_within_tolerance") or 0.0 for st in steps]
        ax.bar([i - 0.2 for i in x], truth, width=0.4, label="F1 vs reference labels", color="#3b6ea5")
        ax.bar([i + 0.2 for i in x], host, width=0.4, label="F1 vs host run, same model", color="#d08c2b")
        ax.set_xticks(x)
        ax.set_xticklabels([st["name"] for st in steps], rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        ax.legend(fontsize=7)
        ax.set_title("DUT accuracy per step")
        fig.tight_layout()
        fig.savefig(folder / "accuracy.png", dpi=100)
        plt.close(fig)
        names.append("accuracy.png")
    return names


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def chip_note(results: dict[str, Any]) -> str:
    """Whether the emulated MAX30102 ran in the measured process (every HIL report says so)."""
    dut = results.get("dut") or {}
    if results.get("dut_where", "").startswith("this process"):
        return ("ran in the measured process (the harness's own: emulated chip, driver and pipeline "
                "together), so its work is inside the CPU and memory figures")
    if dut.get("sensor") == "emulated-max30102":
        return ("ran in the measured DUT process: the stimulus is played through the emulated MAX30102 "
                "and read by the real driver, so the chip's own work is inside the latency, CPU share and "
                "energy figures (`ppg-edge bench arm` counts the device path without it, and the chip apart)")
    return (f"not in the measured process: pipeline {dut.get('pipeline', '-')} is fed the stimulus samples "
            f"directly (sensor: {dut.get('sensor', 'none reported')})")


def render_report(results: dict[str, Any], plots: list[str]) -> str:
    dut = results.get("dut") or {}
    lines = [f"# HIL run: {results.get('board')} / {results.get('suite')}", "",
             f"- status: **{results.get('status')}**" + (f" ({results['error']})" if results.get("error") else ""),
             f"- DUT: {dut.get('name', '-')} on {dut.get('board', '-')}, pipeline {dut.get('pipeline', '-')}, "
             f"ppg-edge {dut.get('ppg_edge', '-')}, Python {dut.get('python', '-')}",
             f"- emulated chip: {chip_note(results)}",
             *([f"- command: `{results['command']}`"] if results.get("command") else []),
             f"- stimulus: {results.get('stimulus', {}).get('id')} "
             f"({results.get('stimulus', {}).get('samples')} samples, crc {results.get('stimulus', {}).get('crc')})",
             f"- {results.get('windows')} windows after {results.get('warmups')} warm-ups, "
             f"{results.get('loops_completed')}/{results.get('loops')} loops; figures are medians over loops", "",
             "| latency (µs, DUT clock) | p50 | p95 | p99 | max |", "|---|---|---|---|---|"]
    for scope in ("per_sample", "per_window"):
        s = (results.get("latency_us") or {}).get(scope, {})
        lines.append(f"| {scope.replace('_', ' ')} | {_fmt(s.get('p50'))} | {_fmt(s.get('p95'))} | "
                     f"{_fmt(s.get('p99'))} | {_fmt(s.get('max'))} |")
    lines += ["", f"- throughput: {_fmt(results.get('throughput_samples_per_s'), '.0f')} samples/s",
              f"- CPU share: {_fmt(results.get('cpu_share'), '.2f')}",
              f"- DUT peak memory: {results.get('dut_peak_memory_kb')} KiB (ru_maxrss)",
              f"- lost samples: {results.get('lost_samples')}", "", "## Energy per sample", ""]
    energy = results.get("energy_per_sample") or []
    if not energy:
        lines.append("No energy figures (no meter and no board file).")
    for e in energy:
        lines.append(f"- {_fmt(e.get('joules_per_sample') and e['joules_per_sample'] * 1e6, '.3f')} µJ per "
                     f"{e.get('per', 'sample')} — {e['method']}")
    insn = results.get("instructions")
    if insn is not None:
        lines += ["", "## Instructions on the board's core", ""]
        if insn.get("error"):
            lines.append(f"Not counted here: {insn['error']}")
        else:
            lines += [f"{insn['method']}.", "", f"| path | instructions / s of signal ({insn['cpu']}) | "
                      "modelled mW above idle | modelled mJ / sample |", "|---|---:|---:|---:|"]
            lines += [f"| {p} | {v['insn_per_signal_s'] / 1e6:.2f}M | {v['modelled_mw']:.2f} | "
                      f"{v['modelled_mj_per_sample']:.4f} |" for p, v in insn["paths"].items()]
            lines += ["", f"The emulated chip, which runs inside the DUT's measured process here, adds "
                      f"{insn['emulated_chip_insn_per_signal_s'] / 1e6:.2f}M instructions per second of signal."]
    acc = results.get("accuracy")
    lines += ["", "## Accuracy", ""]
    if acc:
        lines.append(f"- sensitivity {_fmt(acc.get('sensitivity'), '.3f')}, PPV {_fmt(acc.get('ppv'), '.3f')}, "
                     f"F1 {_fmt(acc.get('f1'), '.3f')} (tolerance {acc.get('tolerance_s')} s, last {acc.get('unscored_tail_s')} s not scored, {acc.get('reference')})")
    else:
        lines.append("No reference annotations for this stimulus.")
    if results.get("accuracy_vs_host"):
        vh = results["accuracy_vs_host"]
        lines.append(f"- against the host's run of the same model: F1 {_fmt(vh.get('f1_exact'), '.3f')} exact, "
                     f"{_fmt(vh.get('f1_within_tolerance'), '.3f')} within tolerance; "
                     f"{vh.get('identical_loops')}/{vh.get('loops')} loops identical")
    if results.get("latency_method"):
        lines.append(f"- latency: {results['latency_method']}")
    if results.get("energy_note"):
        lines.append(f"- energy: {results['energy_note']}")
    steps = results.get("steps") or []
    if steps:
        lines += ["", "## Steps", "", "| step | model | status | beats | F1 vs labels | F1 vs host | identical | "
                  "lost | latency p50 / p99 (ms) | inference p50 (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for st in steps:
            acc = st.get("accuracy") or {}
            vh = st.get("accuracy_vs_host") or {}
            lat = (st.get("latency_us") or {}).get("per_sample") or {}
            inf = st.get("inference_us") or {}
            ident = f"{vh.get('identical_loops')}/{vh.get('loops')}" if vh else "-"
            lines.append(f"| {st.get('name')} | {st.get('model', '-')} | {st.get('step_status')} | "
                         f"{_fmt(st.get('beats'), '.0f')} | {_fmt(acc.get('f1'), '.3f')} | "
                         f"{_fmt(vh.get('f1_within_tolerance'), '.3f')} | {ident} | {_fmt(st.get('lost_samples'), '.0f')} | "
                         f"{_fmt(lat.get('p50') and lat['p50'] / 1e3, '.1f')} / {_fmt(lat.get('p99') and lat['p99'] / 1e3, '.1f')} | "
                         f"{_fmt(inf.get('p50') and inf['p50'] / 1e3, '.2f')} |")
        checks = results.get("checks") or []
        lines += ["", "## Checks", ""] + [f"- {c['status'].upper()} {c['step']}: {c['check']} — {c['detail']}"
                                          for c in checks]
    events = results.get("events") or []
    lines += ["", "## Events", ""] + ([f"- {e['kind']}{' ' + e['fault'] if e.get('fault') else ''}"
                                       f"{' (' + e['outcome'] + ')' if e.get('outcome') else ''}"
                                       f"{' [' + e['step'] + ']' if e.get('step') else ''}: {e['message']}"
                                       for e in events] or ["None."])
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"
