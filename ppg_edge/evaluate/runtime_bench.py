"""``ppg-edge bench runtime`` (host side): what the streaming runtime costs, on one core, beside the peers.

On the CapnoBase TEST subjects of the committed ``peaks`` split (never trained or
tuned on), each record (clean, and with white Gaussian noise at ``snr_db``, seeded
per record) is played once through the emulated MAX30102 and the real driver at
the board's settings; the captured FIFO blocks are then processed again and again,
so every stage is timed on the same samples:

- **DSP front end** per sensor sample: resampler to the model rate, causal
  band-pass (float64 ``SOSFilter`` and Q31 biquads), framer, z-score and DWT, as
  the pipeline runs them (:class:`~ppg_edge.edge_runtime.resample.StreamResampler` +
  :class:`~ppg_edge.edge_runtime.stream.StreamPreprocessor`);
- **inference** per window: :meth:`~ppg_edge.edge_runtime.interpreter.EdgeModel.predict_window` (one
  interpreter thread, state reset, int8 quantize/dequantize) for the int8 and the
  float32 model;
- **whole pipeline** (:class:`~ppg_edge.edge_runtime.pipeline.Pipeline`: quality gate, DSP, model,
  decoder, HR/HRV, events into a memory sink): real-time factor = signal seconds /
  wall seconds, with the network always on (int8 and float32), quality-gated
  (``auto``), and classic only; plus the F1 (+-50 ms, one-to-one) of its beats
  against the expert peaks;
- **peers** on the same samples (batch-resampled to the model rate): NeuroKit2's
  ``elgendi`` and ``msptdfastv2`` detectors (``ppg_edge.evaluate.detectors``,
  after ``ppg_clean``), cost and F1;
- **Keras in TensorFlow**: the same peak model (``models/peaks/<variant>``) per
  window at batch 1 (a direct call, and a ``tf.function``), on a sample of the
  windows.

Costs are CPU time of this process (``time.process_time``) around the work only
(model loading, emulation and record loading excluded): on a shared machine wall
time would also count other jobs' turns on the core. The process pins itself to one core
(``os.sched_setaffinity``) and TensorFlow gets one intra/inter-op thread. The
device-side timing (capture, front end, per-window inference, pipeline, F1) is
:mod:`ppg_edge.edge_runtime.bench`; this module adds the host's parts: the records
and splits, the peers, Keras in TensorFlow and the report. NeuroKit2 and TensorFlow
are imported only inside the functions that use them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppg_edge.edge_runtime.batch import to_model_rate
from ppg_edge.edge_runtime.bench import (
    TOL_S,
    capture,
    cpu_time,
    f1,
    machine,
    pin_to_one_core,
    reference_on_model_axis,
    run_pipeline,
    time_frontend,
    time_windows,
    timed,
)
from ppg_edge.edge_runtime.interpreter import EdgeModel
from ppg_edge.edge_runtime.playback import settings_from_board
from ppg_edge.errors import ConfigError
from ppg_edge.metrics.peaks import f1_from_counts

log = logging.getLogger(__name__)

TARGETS = {
    "pipeline_int8_network_x_realtime_min": 500.0,
    "keras_over_int8_per_window_min": 10.0,
    "gated_over_elgendi_cost_clean_max": 5.0,
}
PEERS = ("nk-elgendi", "nk-msptdfastv2")


def keras_timing(keras_dir, windows: np.ndarray, n: int) -> dict:
    """Per-window seconds of the Keras model in TensorFlow at batch 1 (direct call and
    ``tf.function``), on ``n`` windows after 3 warm-up calls each."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process
        log.warning("TensorFlow threads were already set up; its timing may use more than one thread")
    from ppg_edge.evaluate.detectors import load_keras_peak_model

    keras_dir = Path(keras_dir)
    model, _ = load_keras_peak_model(keras_dir / keras_dir.name if keras_dir.is_dir() else keras_dir)
    xs = [tf.constant(w[None].astype(np.float32)) for w in windows[:n]]
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    out = {"tensorflow": tf.__version__, "windows": len(xs)}
    for name, call in (("eager_call", lambda x: model(x, training=False)), ("tf_function", fn)):
        for x in xs[:3]:
            call(x).numpy()
        t = np.zeros(len(xs))
        for k, x in enumerate(xs):
            t0 = cpu_time()
            call(x).numpy()
            t[k] = cpu_time() - t0
        out[name] = {"mean_ms": float(t.mean() * 1e3), "median_ms": float(np.median(t) * 1e3)}
    out["best_mean_ms"] = min(out["eager_call"]["mean_ms"], out["tf_function"]["mean_ms"])
    return out


def peer_run(name: str, x: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    from ppg_edge.evaluate.detectors import get_detector

    det = get_detector(name)
    det.detect(x[: int(10 * fs)], fs)  # warm-up (imports, caches)
    return timed(lambda: np.asarray(det.detect(x, fs), dtype=np.int64))


# ----------------------------------------------------------------------------- main
def run_benchmark(*, int8_model, float_model, keras_dir=None, records: Sequence[str] | None = None,
                  seconds: float | None = None, snr_db: float = 5.0, board: str = "virtual-rpi4",
                  data_root=None, keras_windows: int = 200, core: int | None = None, seed: int = 0,
                  progress: bool = True) -> dict:
    """Run everything (see the module docstring); returns the result dict (JSON-ready)."""
    from tqdm import tqdm

    from ppg_edge.boards import load_board
    from ppg_edge.data import load_record
    from ppg_edge.data.splits import load_split
    from ppg_edge.synth import add_noise

    pinned = pin_to_one_core(core)
    board_def = load_board(board)
    settings = settings_from_board(board_def)
    test = [s.split("/", 1)[1] for s in load_split("peaks")["test"] if s.startswith("capnobase/")]
    names = list(records) if records else test
    for r in names:
        if f"capnobase/{r}" not in load_split("peaks")["test"]:
            raise ConfigError(f"capnobase/{r} is not a TEST subject of the 'peaks' split ({', '.join(test)})")
    m8 = EdgeModel(int8_model, kind="peaks")
    m32 = EdgeModel(float_model, kind="peaks")
    spec = m8.spec
    # the board's framer hop (runtime.hop_s), else the manifest's
    hop = board_def.runtime.hop_samples(spec.fs) if board_def.runtime is not None else None
    hop_n = spec.hop if hop is None else hop
    # Q31 needs headroom for 18-bit codes (minus the first sample): 31 - 18 - 1 fraction bits
    q31 = type(spec).from_dict({**spec.to_dict(), "arithmetic": "q31", "q31_frac_bits": 12})
    f32spec = type(spec).from_dict({**spec.to_dict(), "arithmetic": "float"})
    configs = {"network_int8": (int8_model, "network"), "network_float32": (float_model, "network"),
               "gated_int8": (int8_model, "auto"), "classic": (int8_model, "classic")}
    per_record = []
    tot: dict[str, float] = {}
    counts: dict[str, dict] = {}
    keras_pool: list[np.ndarray] = []
    win8: list[float] = []
    win32: list[float] = []

    def add(key, v):
        tot[key] = tot.get(key, 0.0) + float(v)

    def addc(key, c):
        d = counts.setdefault(key, {"tp": 0, "fp": 0, "fn": 0})
        for k in ("tp", "fp", "fn"):
            d[k] += c[k]

    rng_root = np.random.SeedSequence(seed)
    steps = tqdm(total=len(names) * 2, desc="bench runtime", unit="run", disable=not progress)
    for ri, name in enumerate(names):
        rec = load_record("capnobase", name, data_root)
        n_src = rec.ppg.size if seconds is None else min(rec.ppg.size, int(seconds * rec.fs))
        clean = np.asarray(rec.ppg[:n_src], dtype=np.float64)
        rng = np.random.default_rng(rng_root.spawn(len(names))[ri])
        noisy = add_noise(clean, rec.fs, "gaussian", snr_db, rng)
        row: dict[str, Any] = {"record": f"capnobase/{name}"}
        for cond, sig in (("clean", clean), (f"gaussian_{snr_db:g}dB", noisy)):
            cap = capture(sig, rec.fs, settings)
            ref = reference_on_model_axis(rec.peaks, rec.fs, n_src, settings, spec.fs)
            c: dict[str, Any] = {"seconds": cap.seconds, "emulate_s": cap.emulate_s}
            add(f"{cond}:seconds", cap.seconds)
            if cond == "clean":
                dt_f, wins = time_frontend(cap, f32spec)
                dt_q, _ = time_frontend(cap, q31)
                c["frontend_float_s"], c["frontend_q31_s"] = dt_f, dt_q
                add("frontend_float_s", dt_f)
                add("frontend_q31_s", dt_q)
                add("sensor_samples", sum(len(b.ir) for b in cap.blocks))
                xs = [w.x for w in wins]
                t8, t32 = time_windows(m8, xs), time_windows(m32, xs)
                win8 += t8.tolist()
                win32 += t32.tolist()
                c["windows"] = len(xs)
                keras_pool += xs[:: max(1, len(xs) // max(1, keras_windows // len(names)))]
            x125 = to_model_rate(cap.blood_volume, cap.fs, spec.fs)
            ref = ref[ref < x125.size]
            c["reference_peaks"] = int(ref.size)
            for key, (path, gate) in configs.items():
                summary, beats, dt = run_pipeline(cap, path, gate, hop=hop)
                covered = ref[ref < summary["windows"] * hop_n + spec.window - hop_n]
                sc = f1(covered, beats, spec.fs)
                c[key] = {"cpu_s": dt, "x_realtime": cap.seconds / dt, "paths": summary["paths"],
                          "suppressed": summary["suppressed"], "beats": int(beats.size), **sc}
                add(f"{cond}:{key}_s", dt)
                addc(f"{cond}:{key}", sc)
            for peer in PEERS:
                det, dt = peer_run(peer, x125, spec.fs)
                sc = f1(ref, det, spec.fs)
                c[peer] = {"cpu_s": dt, "x_realtime": cap.seconds / dt, **sc}
                add(f"{cond}:{peer}_s", dt)
                addc(f"{cond}:{peer}", sc)
            row[cond] = c
            steps.update(1)
        per_record.append(row)
        log.info("%s: %s", row["record"], {k: round(v["network_int8"]["x_realtime"])
                                           for k, v in row.items() if isinstance(v, dict)})
    steps.close()

    keras = None
    if keras_dir is not None and keras_windows > 0:
        keras = keras_timing(keras_dir, np.asarray(keras_pool[:keras_windows]), keras_windows)

    samples = tot["sensor_samples"]
    conds = ["clean", f"gaussian_{snr_db:g}dB"]
    summary: dict[str, Any] = {
        "signal_seconds": {c: tot[f"{c}:seconds"] for c in conds},
        "frontend": {
            "float_us_per_sample": tot["frontend_float_s"] / samples * 1e6,
            "q31_us_per_sample": tot["frontend_q31_s"] / samples * 1e6,
            "float_x_realtime": tot["clean:seconds"] / tot["frontend_float_s"],
            "q31_x_realtime": tot["clean:seconds"] / tot["frontend_q31_s"],
            "sensor_samples": int(samples),
        },
        "inference_per_window": {
            "int8": {"mean_ms": float(np.mean(win8) * 1e3), "median_ms": float(np.median(win8) * 1e3),
                     "windows": len(win8)},
            "float32": {"mean_ms": float(np.mean(win32) * 1e3), "median_ms": float(np.median(win32) * 1e3),
                        "windows": len(win32)},
        },
        "pipeline": {}, "peers": {}, "keras": keras,
    }
    for cond in conds:
        secs = tot[f"{cond}:seconds"]
        summary["pipeline"][cond] = {
            key: {"x_realtime": secs / tot[f"{cond}:{key}_s"], "us_per_signal_second": tot[f"{cond}:{key}_s"] / secs * 1e6,
                  **counts[f"{cond}:{key}"], "f1": f1_from_counts(**counts[f"{cond}:{key}"])}
            for key in configs}
        summary["peers"][cond] = {
            peer: {"x_realtime": secs / tot[f"{cond}:{peer}_s"], "us_per_signal_second": tot[f"{cond}:{peer}_s"] / secs * 1e6,
                   **counts[f"{cond}:{peer}"], "f1": f1_from_counts(**counts[f"{cond}:{peer}"])}
            for peer in PEERS}
    pc = summary["pipeline"]["clean"]
    ratios = {
        "pipeline_int8_network_x_realtime": pc["network_int8"]["x_realtime"],
        "pipeline_float32_network_x_realtime": pc["network_float32"]["x_realtime"],
        "pipeline_gated_x_realtime_clean": pc["gated_int8"]["x_realtime"],
        "gated_over_elgendi_cost_clean": pc["gated_int8"]["us_per_signal_second"]
        / summary["peers"]["clean"]["nk-elgendi"]["us_per_signal_second"],
        "gated_over_network_cost_clean": pc["gated_int8"]["us_per_signal_second"]
        / pc["network_int8"]["us_per_signal_second"],
        "int8_over_float32_per_window": summary["inference_per_window"]["int8"]["mean_ms"]
        / summary["inference_per_window"]["float32"]["mean_ms"],
    }
    if keras is not None:
        ratios["keras_over_int8_per_window"] = keras["best_mean_ms"] / summary["inference_per_window"]["int8"]["mean_ms"]
        ratios["keras_over_float32_per_window"] = (keras["best_mean_ms"]
                                                   / summary["inference_per_window"]["float32"]["mean_ms"])
    targets = {
        "pipeline_int8_network_x_realtime_min": {
            "target": TARGETS["pipeline_int8_network_x_realtime_min"],
            "measured": ratios["pipeline_int8_network_x_realtime"],
            "met": ratios["pipeline_int8_network_x_realtime"] >= TARGETS["pipeline_int8_network_x_realtime_min"]},
        "gated_over_elgendi_cost_clean_max": {
            "target": TARGETS["gated_over_elgendi_cost_clean_max"],
            "measured": ratios["gated_over_elgendi_cost_clean"],
            "met": ratios["gated_over_elgendi_cost_clean"] <= TARGETS["gated_over_elgendi_cost_clean_max"]},
    }
    if "keras_over_int8_per_window" in ratios:
        targets["keras_over_int8_per_window_min"] = {
            "target": TARGETS["keras_over_int8_per_window_min"], "measured": ratios["keras_over_int8_per_window"],
            "met": ratios["keras_over_int8_per_window"] >= TARGETS["keras_over_int8_per_window_min"]}
    return {"benchmark": "runtime", "records": [r["record"] for r in per_record], "snr_db": snr_db,
            "board": board, "sensor": {"sample_rate": settings.sample_rate, "averaging": settings.averaging,
                                       "output_rate_hz": settings.output_rate},
            "models": {"int8": str(int8_model), "float32": str(float_model),
                       "int8_sha256": _sha(int8_model), "float32_sha256": _sha(float_model),
                       "keras": None if keras_dir is None else str(keras_dir)},
            "clock": "time.process_time (CPU seconds of this process)",
            "model_fs": spec.fs, "window": spec.window, "hop": hop_n, "tolerance_ms": TOL_S * 1000,
            "machine": machine(pinned), "summary": summary, "ratios": ratios, "targets": targets,
            "per_record": per_record}


def _check_part(part: str) -> None:
    if part not in ("train", "val"):
        raise ConfigError(f"choose on 'train' or 'val' subjects, not {part!r}")


def part_sweep(*, model, part: str, configs: Sequence[tuple],
               datasets: Sequence[str] = ("capnobase",), snr_dbs: Sequence[float] = (5.0,),
               seconds: float | None = None, board: str = "virtual-rpi4", data_root=None,
               core: int | None = None, seed: int = 0, progress: bool = True, what: str = "sweep") -> dict:
    """The pipeline under each of ``configs`` (``(key, gate, sqi_classic, hop[, averaging[, decoder]])``;
    ``averaging`` None or absent: the board's chip settings, else the chip averages that many
    conversions per FIFO sample, so the sensor rate is ``sample_rate / averaging``; ``decoder``:
    decoder settings laid over the model's) on the subjects
    of ``datasets`` in one part of split ``peaks`` (``val`` to choose with; never ``test``), clean
    and with white Gaussian noise at each of ``snr_dbs``: pooled F1, network share and CPU cost
    per condition and config."""
    from tqdm import tqdm

    from ppg_edge.boards import load_board
    from ppg_edge.data import load_record
    from ppg_edge.data.splits import load_split
    from ppg_edge.synth import add_noise

    _check_part(part)
    pinned = pin_to_one_core(core)
    settings = settings_from_board(load_board(board))
    subjects = [s for s in load_split("peaks")[part] if s.split("/", 1)[0] in datasets]
    spec = EdgeModel(model, kind="peaks").spec
    acc: dict[str, dict] = {}
    root = np.random.SeedSequence(seed)
    bar = tqdm(total=len(subjects) * (1 + len(snr_dbs)), desc=f"{what} ({part})", unit="run", disable=not progress)
    for ri, subject in enumerate(subjects):
        rec = load_record(*subject.split("/", 1), data_root)
        n_src = rec.ppg.size if seconds is None else min(rec.ppg.size, int(seconds * rec.fs))
        clean = np.asarray(rec.ppg[:n_src], dtype=np.float64)
        conds = [("clean", clean)] + [
            (f"gaussian_{snr:g}dB", add_noise(clean, rec.fs, "gaussian", snr,
                                              np.random.default_rng(root.spawn(len(subjects))[ri])))
            for snr in snr_dbs]
        for cond, sig in conds:
            caps: dict = {}  # one chip capture per distinct averaging
            for key, gate, sqi, hop, *rest in configs:
                avg = rest[0] if rest and rest[0] is not None else settings.averaging
                dec = rest[1] if len(rest) > 1 else None
                if avg not in caps:
                    st = dataclasses.replace(settings, averaging=int(avg))
                    caps[avg] = (capture(sig, rec.fs, st),
                                 reference_on_model_axis(rec.peaks, rec.fs, n_src, st, spec.fs))
                cap, ref = caps[avg]
                summary, beats, dt = run_pipeline(cap, model, gate, sqi, hop=hop, decoder=dec)
                h = spec.hop if hop is None else hop
                covered = ref[ref < summary["windows"] * h + spec.window - h]
                sc = f1(covered, beats, spec.fs)
                d = acc.setdefault(cond, {}).setdefault(key, {"tp": 0, "fp": 0, "fn": 0, "cpu_s": 0.0,
                                                              "seconds": 0.0, "network": 0, "classic": 0})
                for k in ("tp", "fp", "fn"):
                    d[k] += sc[k]
                d["cpu_s"] += dt
                d["seconds"] += cap.seconds
                d["network"] += summary["paths"].get("network", 0)
                d["classic"] += summary["paths"].get("classic", 0)
            bar.update(1)
    bar.close()
    for cond in acc.values():
        for d in cond.values():
            d["f1"] = f1_from_counts(d["tp"], d["fp"], d["fn"])
            d["network_share"] = d["network"] / max(1, d["network"] + d["classic"])
            d["x_realtime"] = d["seconds"] / d["cpu_s"]
    return {"benchmark": what, "part": part, "records": subjects, "snr_dbs": list(snr_dbs),
            "model": str(model), "model_sha256": _sha(model), "tolerance_ms": TOL_S * 1000,
            "machine": machine(pinned), "results": acc}


def gate_sweep(*, model, part: str = "val", thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
               seconds: float | None = None, snr_dbs: Sequence[float] = (5.0, 0.0), board: str = "rpi-zero-2w",
               data_root=None, core: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """The quality gate's SQI threshold against accuracy and cost, on the CapnoBase and BIDMC
    subjects of one part of split ``peaks``, at the board's framer hop: per threshold, the gated
    pipeline's F1 (clean and noisy) and network share beside the network always on."""
    from ppg_edge.boards import load_board

    _check_part(part)
    rt = load_board(board).runtime
    hop = rt.hop_samples(EdgeModel(model, kind="peaks").spec.fs) if rt is not None else None
    configs = [("network", "network", None, hop)] + [(f"sqi>={t:g}", "auto", float(t), hop) for t in thresholds]
    res = part_sweep(model=model, part=part, configs=configs, datasets=("capnobase", "bidmc"), snr_dbs=snr_dbs,
                     seconds=seconds, board=board, data_root=data_root, core=core, seed=seed, progress=progress,
                     what="gate-sweep")
    return {**res, "board": board, "hop": hop, "thresholds": list(thresholds)}


def hop_sweep(*, model, hops: Sequence[int], averagings: Sequence[int | None] = (None,),
              gates: Sequence[str] = ("network",), rr_refractories: Sequence[float | None] = (None,),
              part: str = "val", seconds: float | None = None,
              snr_dbs: Sequence[float] = (5.0, 0.0), board: str = "rpi-zero-2w", data_root=None,
              core: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """The framer hop against accuracy (network always on), on the CapnoBase and BIDMC subjects of
    one part of split ``peaks``: what a board's ``runtime.hop_s`` is chosen with (fewer invokes
    per second of signal against F1); with ``averagings``, each hop at each chip averaging (the
    sensor rate: fewer FIFO bursts and samples per second of signal, more conversions averaged);
    with ``gates``, each under each quality-gate mode (``network`` always on, ``auto``, ``classic``); with
    ``rr_refractories``, each with the decoder's RR-relative refractory at each fraction (None: the
    runtime's, :data:`~ppg_edge.edge_runtime.peaks_decode.RUNTIME_DECODER`)."""
    configs = [(("" if gates == ("network",) else f"{g}, ") + f"hop {h}" + ("" if a is None else f", averaging {a}")
                + ("" if r is None else f", rr_refractory {r:g}"),
                g, None, int(h), a, None if r is None else {"rr_refractory": float(r)})
               for g in gates for h in hops for a in averagings for r in rr_refractories]
    res = part_sweep(model=model, part=part, configs=configs, datasets=("capnobase", "bidmc"), snr_dbs=snr_dbs,
                     seconds=seconds, board=board, data_root=data_root, core=core, seed=seed, progress=progress,
                     what="hop-sweep")
    return {**res, "hops": [int(h) for h in hops], "averagings": list(averagings), "gates": list(gates),
            "rr_refractories": list(rr_refractories)}


def sweep_markdown(res: dict) -> str:
    """The table of a :func:`part_sweep` result (gate or hop sweep)."""
    conds = list(res["results"])
    what = ("Quality gate: SQI threshold" if res["benchmark"] == "gate-sweep"
            else "Framer hop and chip averaging per quality-gate mode")
    lines = [f"# {what}, on the {res['part']} subjects", "",
             f"Command: `{res.get('command', '')}`  ",
             f"Records: {', '.join(res['records'])}; noisy = white Gaussian noise at "
             f"{', '.join(f'{s:g}' for s in res['snr_dbs'])} dB; F1 within +-{res['tolerance_ms']:g} ms, pooled; "
             f"machine: {res['machine']['cpu_model']}, one core, CPU time.  ",
             f"Model: `{res['model']}` (sha256 {res['model_sha256'][:12]})"
             + (f"; board {res.get('board')}, framer hop {res.get('hop')} model samples; the threshold the "
                "runtime uses is QualityConfig.sqi_classic." if res["benchmark"] == "gate-sweep"
                else "; the model rate's hop in samples (a board's runtime.hop_s)."), "",
             "| config | " + " | ".join(f"{c}: F1 | {c}: network share | {c}: x real time" for c in conds) + " |",
             "|---|" + "---|---|---|" * len(conds)]
    for key in res["results"][conds[0]]:
        cells = []
        for c in conds:
            d = res["results"][c][key]
            cells += [f"{d['f1']:.4f}", f"{d['network_share']:.2f}", f"{d['x_realtime']:,.0f}"]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _sha(path) -> str:
    from ppg_edge.manifest import sha256_file

    return sha256_file(path)


def to_markdown(res: dict) -> str:
    s = res["summary"]
    m = res["machine"]
    noisy = [c for c in s["pipeline"] if c != "clean"][0]
    hop_ms = res["hop"] / res["model_fs"] * 1000  # signal per window hop
    lines = [
        "# Runtime benchmark",
        "",
        f"Command: `{res.get('command', '')}`  ",
        f"Machine: {m['cpu_model']} ({m['machine']}), pinned to core {m['pinned_core']} of {m['cpus']}, "
        f"Python {m['python']}, numpy {m['numpy']}, ai-edge-litert {m.get('ai_edge_litert', '?')}; "
        f"load average at start {m.get('loadavg_at_start')} (a shared machine: other jobs ran beside it).  ",
        f"Records: {', '.join(res['records'])} (CapnoBase TEST subjects of split `peaks`), "
        f"{s['signal_seconds']['clean']:.0f} s of signal each condition, through the emulated MAX30102 "
        f"({res['sensor']['sample_rate']} sps / {res['sensor']['averaging']} = {res['sensor']['output_rate_hz']:g} Hz) "
        f"and the driver, resampled to {res['model_fs']:g} Hz; noisy = white Gaussian noise at {res['snr_db']:g} dB.",
        f"Models: int8 `{res['models']['int8']}` (sha256 {res['models'].get('int8_sha256', '?')[:12]}), float32 "
        f"`{res['models']['float32']}` (sha256 {res['models'].get('float32_sha256', '?')[:12]}), Keras "
        f"`{res['models']['keras']}`. Costs are CPU time of the benchmark process on one pinned core "
        "(x real time = signal seconds / CPU seconds).",
        "",
        "| stage | cost | x real time |",
        "|---|---|---|",
        f"| DSP front end, float64 | {s['frontend']['float_us_per_sample']:.2f} us / sensor sample | "
        f"{s['frontend']['float_x_realtime']:,.0f} |",
        f"| DSP front end, Q31 | {s['frontend']['q31_us_per_sample']:.2f} us / sensor sample | "
        f"{s['frontend']['q31_x_realtime']:,.0f} |",
        f"| inference int8 | {s['inference_per_window']['int8']['mean_ms']:.3f} ms / window (median "
        f"{s['inference_per_window']['int8']['median_ms']:.3f}) | {hop_ms / s['inference_per_window']['int8']['mean_ms']:,.0f} |",
        f"| inference float32 | {s['inference_per_window']['float32']['mean_ms']:.3f} ms / window (median "
        f"{s['inference_per_window']['float32']['median_ms']:.3f}) | {hop_ms / s['inference_per_window']['float32']['mean_ms']:,.0f} |",
    ]
    k = s.get("keras")
    if k:
        lines.append(f"| Keras in TensorFlow {k['tensorflow']}, batch 1 | {k['best_mean_ms']:.3f} ms / window "
                     f"(tf.function {k['tf_function']['mean_ms']:.3f}, eager {k['eager_call']['mean_ms']:.3f}; "
                     f"{k['windows']} windows) | {hop_ms / k['best_mean_ms']:,.0f} |")
    lines += ["", "Inference x real time: one window per hop "
              f"({res['hop']} samples = {res['hop'] / res['model_fs']:g} s of signal).", "",
              "| path | clean: x real time | clean F1 @50ms | "
              f"{noisy}: x real time | {noisy} F1 @50ms | windows classic/network (clean) |",
              "|---|---|---|---|---|---|"]
    pcl, pno = s["pipeline"]["clean"], s["pipeline"][noisy]
    for key, label in (("network_int8", "pipeline, network always on (int8)"),
                       ("network_float32", "pipeline, network always on (float32)"),
                       ("gated_int8", "pipeline, quality-gated (int8 where quality drops)"),
                       ("classic", "pipeline, classic detector only")):
        paths = _paths_total(res, "clean", key)
        lines.append(f"| {label} | {pcl[key]['x_realtime']:,.0f} | {pcl[key]['f1']:.4f} | "
                     f"{pno[key]['x_realtime']:,.0f} | {pno[key]['f1']:.4f} | "
                     f"{paths.get('classic', 0)}/{paths.get('network', 0)} |")
    for peer in PEERS:
        a, b = s["peers"]["clean"][peer], s["peers"][noisy][peer]
        lines.append(f"| NeuroKit2 {peer[3:]} (batch, zero-phase clean) | {a['x_realtime']:,.0f} | {a['f1']:.4f} | "
                     f"{b['x_realtime']:,.0f} | {b['f1']:.4f} | |")
    lines += ["", "| ratio | measured | target | met |", "|---|---|---|---|"]
    names = {"pipeline_int8_network_x_realtime_min": "pipeline int8, network always on: x real time",
             "keras_over_int8_per_window_min": "Keras (TF) / int8 TFLite per window",
             "gated_over_elgendi_cost_clean_max": "gated pipeline / NeuroKit2 elgendi cost, clean"}
    for key, t in res["targets"].items():
        op = ">=" if key.endswith("_min") else "<="
        lines.append(f"| {names[key]} | {t['measured']:.2f} | {op} {t['target']:g} | {'yes' if t['met'] else 'no'} |")
    r = res["ratios"]
    lines += ["", f"Other ratios: int8 / float32 per window {r['int8_over_float32_per_window']:.2f}; "
              + (f"Keras / float32 per window {r['keras_over_float32_per_window']:.1f}; "
                 if "keras_over_float32_per_window" in r else "")
              + f"gated / network-always-on cost (clean) {r['gated_over_network_cost_clean']:.3f}.", ""]
    inf = s["inference_per_window"]
    hop_cost_ms = 1000.0 / pcl["network_int8"]["x_realtime"]  # CPU ms per second of signal
    lines += ["Reading:", "",
              f"- Network always on, int8: {hop_cost_ms:.2f} ms of CPU per second of signal, of which "
              f"{inf['int8']['mean_ms']:.2f} ms is the int8 model ({inf['int8']['mean_ms'] / hop_cost_ms:.0%}). "
              f"The int8 model is {r['int8_over_float32_per_window']:.1f}x slower than float32 here: on x86 "
              "XNNPACK takes the float fused LSTM but not the int8 one (docs/facts.md measured 5-7x).",
              f"- The quality gate sent {_paths_total(res, 'clean', 'gated_int8').get('network', 0)} of "
              f"{sum(_paths_total(res, 'clean', 'gated_int8').values())} clean windows to the network; its cost "
              "is then the per-window Python work of the streaming stages (resampler, filter, framing, "
              "quality checks, classic detector, decoder, events), which a batch detector over a whole "
              "record (NeuroKit2, vectorised once per record, zero-phase) does not have.",
              "- NeuroKit2's detectors are batch and zero-phase (they see the future); the runtime's paths "
              "are causal and emit each beat about a window after it happens."]
    if res["models"].get("note"):
        lines += [f"- Models: {res['models']['note']}"]
    lines.append("")
    return "\n".join(lines)


def _paths_total(res: dict, cond: str, key: str) -> dict:
    out: dict[str, int] = {}
    for row in res["per_record"]:
        for k, v in row[cond][key]["paths"].items():
            out[k] = out.get(k, 0) + int(v)
    return out
