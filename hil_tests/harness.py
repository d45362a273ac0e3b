"""The host harness: drive a DUT over a :class:`~.link.Link` and measure it.

Measurement discipline (after the MLPerf Tiny runner): the stimulus is checked
on the DUT by CRC, every measurement command runs W warm-up windows first, the
measurement is repeated ``loops`` times (five by default) and each figure is
reported as the median over the loops, beside the per-loop values. Timing comes
from the DUT's own monotonic clock (µs), never from the host, so link latency
does not enter the numbers.

A link that drops or a DUT that stops answering ends the benchmark with a
``link`` event and ``status: "failed"`` in the results (the completed loops are
kept); nothing waits longer than the link's timeouts.
"""
from __future__ import annotations

import logging
import math
import resource
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppg_edge.errors import HardwareError
from ppg_edge.metrics.peaks import peak_scores

from .link import Link, Reply
from .pipeline import Stimulus
from .protocol import ProtocolError, data_commands, encode_command, parse_int_list, samples_crc

log = logging.getLogger(__name__)

DEFAULT_LOOPS = 5


def latency_stats(values_us: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean (µs) and the count; ``None`` figures for no values."""
    v = np.asarray(values_us, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"n": int(v.size), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(v.max()), "mean": float(v.mean())}


def _peak_scores(ref: Sequence[int], det: Sequence[int], fs: float, tol_s: float) -> dict[str, Any]:
    """The evaluation's scores (:func:`ppg_edge.metrics.peaks.peak_scores`: its one-to-one
    matching and its empty-list conventions), with ``None`` for the NaN of no matched pair
    so that ``results.json`` stays JSON."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in peak_scores(ref, det, fs, tol_s).items()}


@dataclass
class Window:
    index: int
    t0_us: int
    t1_us: int
    samples: int
    lost: int
    call_latency_us: list[int] = field(default_factory=list)
    sample_latency_us: list[int] = field(default_factory=list)   # arrival -> result (device path)
    inference_us: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)


@dataclass
class DetResult:
    window: int
    t_us: int
    index: int
    kind: str
    value: float


@dataclass
class InferRun:
    """One ``infer N W`` reply, parsed and checked."""

    windows: list[Window]
    results: list[DetResult]
    n: int
    warmups: int
    window: int
    chunk: int
    t0_us: int
    t1_us: int
    cpu_us: int
    maxrss_kb: int
    lost: int
    crc: str

    @property
    def wall_us(self) -> int:
        return self.t1_us - self.t0_us

    def energy_samples(self) -> tuple[int, str]:
        """(count, unit) energy is shared over: sensor samples the DUT's driver read when it reports
        them (the device path), else the stimulus samples fed."""
        read = self.windows[-1].counters.get("samples_read") if self.windows else None
        if read:
            return int(read), "sensor sample (read by the DUT's MAX30102 driver)"
        return self.samples, "stimulus sample (fed to the DUT pipeline)"

    @property
    def samples(self) -> int:
        return self.n * self.window

    @property
    def arrival_latency(self) -> bool:
        """True when the DUT measures each sample's arrival -> result latency itself (the device
        path reports ``m-slat``/``m-cnt`` for every window, even when no sample got a result yet)."""
        return any(w.counters for w in self.windows)

    def per_sample_latency_us(self) -> list[float]:
        """Arrival -> result per sample when the DUT measured it, else each ``feed`` call's
        latency divided by the samples it carried."""
        if self.arrival_latency:
            return [float(v) for w in self.windows for v in w.sample_latency_us]
        out: list[float] = []
        for w in self.windows:
            sizes = [min(self.chunk, w.samples - k) for k in range(0, w.samples, self.chunk)]
            out.extend(lat / size for lat, size in zip(w.call_latency_us, sizes))
        return out

    def per_window_latency_us(self) -> list[int]:
        return [w.t1_us - w.t0_us for w in self.windows]


def parse_infer(reply: Reply, n: int, warmups: int) -> InferRun:
    """Rebuild the measurement from the reply lines; an incomplete reply is a HardwareError."""
    try:
        summary = reply.one("m-infer")
        windows: dict[int, Window] = {}
        for ln in reply.of_kind("m-win"):
            w = Window(ln.int("i"), ln.int("t0"), ln.int("t1"), ln.int("n"), ln.int("lost"))
            windows[w.index] = w
        for ln in reply.of_kind("m-lat"):
            i = ln.int("i")
            if i not in windows:
                raise HardwareError(f"m-lat for unknown window {i}")
            lat = windows[i].call_latency_us
            if ln.int("off") != len(lat):
                raise HardwareError(f"m-lat window {i}: offset {ln.int('off')}, expected {len(lat)}")
            lat.extend(parse_int_list(ln.fields.get("us", ""), "m-lat us"))
        for kind, attr in (("m-slat", "sample_latency_us"), ("m-inf", "inference_us")):
            for ln in reply.of_kind(kind):
                i = ln.int("i")
                if i not in windows:
                    raise HardwareError(f"{kind} for unknown window {i}")
                vals = getattr(windows[i], attr)
                if ln.int("off") != len(vals):
                    raise HardwareError(f"{kind} window {i}: offset {ln.int('off')}, expected {len(vals)}")
                vals.extend(parse_int_list(ln.fields.get("us", ""), f"{kind} us"))
        for ln in reply.of_kind("m-cnt"):
            i = ln.int("i")
            if i in windows:
                windows[i].counters = {k: int(v) for k, v in ln.fields.items() if k != "i"}
        for ln in reply.of_kind("m-evt"):
            i = ln.int("i")
            if i in windows:
                windows[i].events[ln.fields.get("kind", "?")] = ln.int("n")
        results = [DetResult(ln.int("i"), ln.int("t"), ln.int("idx"), ln.fields.get("kind", ""),
                             ln.float("v")) for ln in reply.of_kind("m-res")]
        run = InferRun(windows=[windows[i] for i in sorted(windows)], results=results,
                       n=summary.int("n"), warmups=summary.int("w"), window=summary.int("window"),
                       chunk=summary.int("chunk"), t0_us=summary.int("t0"), t1_us=summary.int("t1"),
                       cpu_us=summary.int("cpu_us"), maxrss_kb=summary.int("maxrss_kb"),
                       lost=summary.int("lost"), crc=summary.fields.get("crc", ""))
    except (ProtocolError, ValueError) as exc:
        if isinstance(exc, HardwareError):
            raise
        raise HardwareError(f"malformed reply to {reply.command!r}: {exc}") from None
    if run.n != n or run.warmups != warmups or len(run.windows) != n:
        raise HardwareError(f"reply to {reply.command!r} covers {len(run.windows)} windows "
                            f"(n={run.n}, w={run.warmups}); expected {n} after {warmups} warm-ups")
    calls = math.ceil(run.window / run.chunk)
    for w in run.windows:
        if len(w.call_latency_us) != calls:
            raise HardwareError(f"window {w.index}: {len(w.call_latency_us)} latencies, expected {calls}")
    return run


class Harness:
    """Host side of one HIL session with one DUT."""

    def __init__(self, link: Link, *, board: Any = None, suite: str = "default",
                 window_timeout_s: float = 2.0):
        self.link = link
        self.board = board
        self.suite = suite
        self.window_timeout_s = window_timeout_s
        self.events: list[dict[str, Any]] = []
        self.settings: dict[str, str] = {}

    def event(self, kind: str, message: str, **extra: Any) -> None:
        log.warning("%s: %s", kind, message)
        self.events.append({"kind": kind, "message": message, **extra})

    # ------------------------------------------------------------------ commands

    def identify(self) -> dict[str, str]:
        return dict(self.link.command(encode_command("name"), retry=True).one("m-name").fields)

    def wait_ready(self, within_s: float = 20.0, poll_s: float = 1.0) -> dict[str, str]:
        """Identify, retrying every ``poll_s`` until the DUT answers (it may still be starting)."""
        from .link import LinkClosed

        deadline = self.link.clock() + within_s
        saved = self.link.timeout_s
        self.link.timeout_s = poll_s
        try:
            while True:
                try:
                    return dict(self.link.command(encode_command("name")).one("m-name").fields)
                except LinkClosed:
                    raise
                except HardwareError as exc:
                    if self.link.clock() >= deadline:
                        raise HardwareError(f"DUT on {self.link.name} not ready within {within_s:g} s: "
                                            f"{exc}") from None
        finally:
            self.link.timeout_s = saved

    def configure(self, **settings: object) -> dict[str, str]:
        reply = self.link.command(encode_command("cfg", **settings), retry=True)
        self.settings = dict(reply.one("m-cfg").fields)
        return self.settings

    def load(self, stim: Stimulus, *, upload: bool = False) -> None:
        """Select ``stim`` on the DUT (or upload it in chunks) and check its CRC there."""
        if not upload:
            reply = self.link.command(encode_command("select", stim.id), retry=True)
        else:
            self.link.command(encode_command("stim", stim.id, n=stim.samples.size, fs=repr(float(stim.fs))))
            reply = None
            for line in data_commands(stim.samples):
                reply = self.link.command(line)
            assert reply is not None
        got = reply.one("m-stim")
        if got.fields.get("crc") != stim.crc or got.int("n") != stim.samples.size:
            raise HardwareError(f"stimulus {stim.id} differs on the DUT: n={got.fields.get('n')} "
                                f"crc={got.fields.get('crc')}, host has n={stim.samples.size} crc={stim.crc}")

    def infer(self, n: int, warmups: int, stim: Stimulus | None = None) -> InferRun:
        total = self.link.timeout_s + (n + warmups) * self.window_timeout_s
        reply = self.link.command(encode_command("infer", n, warmups), total_timeout_s=total)
        run = parse_infer(reply, n, warmups)
        if stim is not None:
            want = samples_crc(stim.samples[: run.samples])
            if run.crc != want:
                raise HardwareError(f"DUT fed different samples than {stim.id} (crc {run.crc} != {want})")
        return run

    # ------------------------------------------------------------------ benchmark

    def benchmark(self, stim: Stimulus, *, windows: int, warmups: int = 1, loops: int = DEFAULT_LOOPS,
                  settings: Mapping[str, object] | None = None, upload: bool = False,
                  meter: Any = None, peak_tolerance_s: float = 0.1,
                  host_beats: Sequence[int] | None = None, score_margin_s: float = 0.0) -> dict[str, Any]:
        """Identify, configure, load, then ``loops`` x (W warm-ups + N windows); the results dict."""
        from .energy import board_energy

        results: dict[str, Any] = {"suite": self.suite, "status": "ok",
                                   "board": getattr(self.board, "identifier", None),
                                   "windows": windows, "warmups": warmups, "loops": loops,
                                   "stimulus": {"id": stim.id, "samples": int(stim.samples.size),
                                                "fs": stim.fs, "crc": stim.crc, "source": stim.source}}
        runs: list[InferRun] = []
        energies: list[list[dict[str, Any]]] = []
        try:
            results["dut"] = self.identify()
            results["config"] = self.configure(**(settings or {}))
            self.load(stim, upload=upload)
            for k in range(loops):
                if meter is not None:
                    meter.start()
                run = self.infer(windows, warmups, stim)
                loop_energy = []
                if meter is not None:
                    loop_energy.append({**meter.stop().per_sample(run.energy_samples()[0]),
                                        "per": run.energy_samples()[1]})
                if self.board is not None:
                    loop_energy.append({**board_energy(run.cpu_us / 1e6, self.board).per_sample(run.energy_samples()[0]),
                                        "per": run.energy_samples()[1]})
                runs.append(run)
                energies.append(loop_energy)
                if run.lost:
                    self.event("lost-samples", f"loop {k}: the DUT lost {run.lost} samples", loop=k,
                               lost=run.lost)
                cnt = run.windows[-1].counters if run.windows else {}
                if cnt.get("chip_lost", 0) > cnt.get("driver_lost", 0):
                    self.event("silent-loss", f"loop {k}: the chip lost {cnt['chip_lost']} samples but the "
                               f"driver counted {cnt['driver_lost']}", loop=k, **cnt)
                log.info("loop %d/%d: %d samples in %.1f ms", k + 1, loops, run.samples, run.wall_us / 1e3)
        except HardwareError as exc:
            results["status"] = "failed"
            results["error"] = str(exc)
            self.event("link", str(exc), loop=len(runs))
        results.update(summarize(runs, energies, stim, peak_tolerance_s, host_beats=host_beats,
                                 score_margin_s=score_margin_s))
        results["events"] = list(self.events)
        results["host_peak_memory_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return results


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def summarize(runs: Sequence[InferRun], energies: Sequence[Sequence[dict[str, Any]]],
              stim: Stimulus | None = None, peak_tolerance_s: float = 0.1,
              host_beats: Sequence[int] | None = None, score_margin_s: float = 0.0) -> dict[str, Any]:
    """Per-loop figures and their medians (the reported numbers).

    ``host_beats``: the host's run of the same model on the same samples; the DUT's
    beats are matched to it exactly (tolerance 0) and within the peak tolerance.
    """
    per_loop = []
    for k, run in enumerate(runs):
        wall_s = run.wall_us / 1e6
        loop: dict[str, Any] = {
            "loop": k,
            "latency_us": {"per_sample": latency_stats(run.per_sample_latency_us()),
                           "per_window": latency_stats(run.per_window_latency_us())},
            "throughput_samples_per_s": run.samples / wall_s if wall_s > 0 else None,
            "cpu_share": run.cpu_us / run.wall_us if run.wall_us > 0 else None,
            "dut_peak_memory_kb": run.maxrss_kb,
            "lost_samples": run.lost,
            "beats": sum(1 for r in run.results if r.kind == "peak"),
            "energy": list(energies[k]) if k < len(energies) else [],
            "inference_us": latency_stats([v for w in run.windows for v in w.inference_us]),
            "dut_events": _sum_counts(w.events for w in run.windows),
            "dut_counters": dict(run.windows[-1].counters) if run.windows else {},
        }
        if host_beats is not None:
            det = [r.index for r in run.results if r.kind == "peak"]
            host = [int(b) for b in host_beats]
            loop["vs_host"] = {"exact": _peak_scores(host, det, stim.fs if stim is not None else 1.0, 0.0),
                               "within_tolerance": _peak_scores(host, det, stim.fs, peak_tolerance_s)
                               if stim is not None else None,
                               "identical": sorted(det) == sorted(host)}
        if stim is not None and stim.peaks is not None:
            # beats in the last `score_margin_s` may still be undecided when the run ends: not scored
            span = run.samples - int(round(score_margin_s * stim.fs))
            ref = [int(p) for p in stim.peaks if p < span]
            det = [r.index for r in run.results if r.kind == "peak" and r.index < span]
            loop["accuracy"] = _peak_scores(ref, det, stim.fs, peak_tolerance_s)
            loop["accuracy"]["scored_samples"] = max(span, 0)
        per_loop.append(loop)

    def med(path: Sequence[str]) -> float | None:
        vals = []
        for loop in per_loop:
            v: Any = loop
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            vals.append(v)
        return _median(vals)

    out: dict[str, Any] = {"loops_completed": len(per_loop), "per_loop": per_loop}
    out["latency_us"] = {
        scope: {stat: med(["latency_us", scope, stat]) for stat in ("p50", "p95", "p99", "max", "mean")}
        for scope in ("per_sample", "per_window")}
    out["latency_samples_us"] = [v for r in runs for v in r.per_sample_latency_us()]
    out["latency_method"] = ("arrival -> result per sensor sample (DUT monotonic clock; accelerated playback)"
                             if runs and runs[0].arrival_latency else
                             "feed-call latency / samples per call (DUT monotonic clock)")
    out["inference_us"] = {stat: med(["inference_us", stat]) for stat in ("p50", "p95", "p99", "max", "mean")}
    out["dut_events"] = _sum_counts(loop["dut_events"] for loop in per_loop)
    out["dut_counters"] = per_loop[-1]["dut_counters"] if per_loop else {}
    out["throughput_samples_per_s"] = med(["throughput_samples_per_s"])
    out["cpu_share"] = med(["cpu_share"])
    out["dut_peak_memory_kb"] = max((r.maxrss_kb for r in runs), default=None)
    out["lost_samples"] = sum(r.lost for r in runs)
    out["beats"] = med(["beats"])
    methods: dict[str, list[dict[str, Any]]] = {}
    for loop in per_loop:
        for e in loop["energy"]:
            methods.setdefault(e["method"], []).append(e)
    out["energy_per_sample"] = [
        {"method": m, "source": es[0]["source"], "per": es[0].get("per", "sample"),
         "joules_per_sample": _median([e["joules_per_sample"] for e in es]),
         "mean_w": _median([e["mean_w"] for e in es])}
        for m, es in methods.items()]
    if per_loop and "accuracy" in per_loop[0]:
        out["accuracy"] = {"sensitivity": med(["accuracy", "recall"]), "ppv": med(["accuracy", "precision"]),
                           "f1": med(["accuracy", "f1"])}
        out["accuracy"]["tolerance_s"] = peak_tolerance_s
        out["accuracy"]["unscored_tail_s"] = score_margin_s
        out["accuracy"]["reference"] = "stimulus reference peaks"
    else:
        out["accuracy"] = None
    if per_loop and "vs_host" in per_loop[0]:
        out["accuracy_vs_host"] = {
            "f1_exact": med(["vs_host", "exact", "f1"]),
            "f1_within_tolerance": med(["vs_host", "within_tolerance", "f1"]),
            "identical_loops": sum(1 for loop in per_loop if loop["vs_host"]["identical"]),
            "loops": len(per_loop), "host_beats": len(host_beats or []),
            "reference": "the host's run of the same model on the same samples (ppg_edge.hil_tests.device)"}
    return out


def _sum_counts(dicts) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return total
