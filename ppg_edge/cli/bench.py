"""``ppg-edge bench runtime``: the streaming runtime's cost on one core, beside NeuroKit2 and Keras;
``ppg-edge bench arm``: its instructions on the board's ARM core (:mod:`ppg_edge.evaluate.arm_bench`);
``ppg-edge bench real``: the device path on the real MAX30102 recordings
(:mod:`ppg_edge.evaluate.real_recordings`)."""
from __future__ import annotations

import argparse
import logging
import shlex
import time

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (runtime: DSP, inference, pipeline vs peers)")
    sub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    r = sub.add_parser(
        "runtime", help="the streaming runtime on one core: DSP, inference, real-time factor, peers, Keras",
        description="Play the CapnoBase TEST records (clean and noisy) through the emulated MAX30102 and "
                    "time, on one pinned core: the DSP front end (float and Q31) per sample, inference per "
                    "window (int8 and float32), the whole pipeline (network always on, quality-gated, "
                    "classic), NeuroKit2's elgendi and MSPTDfast on the same samples, and the Keras model "
                    "in TensorFlow per window. Writes JSON and Markdown with the command and the machine.")
    r.add_argument("--model", required=True, help="int8 peak model .tflite (manifest beside it)")
    r.add_argument("--float-model", required=True, help="float32 peak model .tflite of the same network")
    r.add_argument("--keras", help="saved Keras peak model (e.g. models/peaks/Type30) for the TensorFlow "
                                   "comparison; omitted: no Keras row")
    r.add_argument("--records", nargs="+", metavar="ID",
                   help="CapnoBase TEST record ids (default: every CapnoBase TEST subject of split 'peaks')")
    r.add_argument("--seconds", type=float, help="first seconds of each record (default: all)")
    r.add_argument("--snr", type=float, default=5.0, help="noisy condition: white Gaussian noise SNR (dB)")
    r.add_argument("--keras-windows", type=int, default=200, help="windows timed in TensorFlow")
    r.add_argument("--board", default="virtual-rpi4", help="board whose MAX30102 settings the chip uses")
    r.add_argument("--core", type=int, help="CPU to pin to (default: the last allowed one)")
    r.add_argument("--seed", type=int, default=0, help="noise seed")
    r.add_argument("--data-root")
    r.add_argument("--out", default="docs/results/runtime-bench.json", help="JSON result (Markdown beside it)")
    r.set_defaults(func=_handle)
    g = sub.add_parser(
        "gate", help="the quality gate's SQI threshold vs accuracy and cost (train/val subjects only)",
        description="Run the pipeline with the network always on and quality-gated at each SQI threshold "
                    "on the CapnoBase and BIDMC subjects of one part of split 'peaks' (val or train; never "
                    "test), at the board's framer hop, clean and with white Gaussian noise; report pooled F1, "
                    "the network's share of windows and the CPU cost: what QualityConfig.sqi_classic is "
                    "chosen with.")
    g.add_argument("--model", required=True, help="peak model .tflite (the board's device model)")
    g.add_argument("--part", choices=("val", "train"), default="val")
    g.add_argument("--sqi", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9], help="thresholds")
    g.add_argument("--seconds", type=float, help="first seconds of each record (default: all)")
    g.add_argument("--snr", type=float, nargs="+", default=[5.0, 0.0], help="noisy conditions (dB)")
    g.add_argument("--board", default="rpi-zero-2w", help="board whose framer hop and chip settings are used")
    g.add_argument("--core", type=int)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--data-root")
    g.add_argument("--out", default="docs/results/gate-sweep-val.json")
    g.set_defaults(func=_handle_gate)
    h = sub.add_parser(
        "hop", help="the framer hop vs accuracy, network always on (train/val subjects only)",
        description="Run the pipeline with the network always on at each framer hop on the CapnoBase and "
                    "BIDMC subjects of one part of split 'peaks' (val or train; never test), clean and with "
                    "white Gaussian noise; report pooled F1 per hop: what a board's runtime.hop_s is chosen with.")
    h.add_argument("--model", required=True, help="peak model .tflite")
    h.add_argument("--hop", type=int, nargs="+", required=True, help="hops in model samples")
    h.add_argument("--gate", nargs="+", choices=("network", "auto", "classic"), default=["network"],
                   help="quality-gate modes to run each configuration under (default: network always on)")
    h.add_argument("--averaging", type=int, nargs="+",
                   help="chip averagings to try at each hop (default: the board's); the sensor rate is "
                        "the board's sample_rate_hz over it")
    h.add_argument("--part", choices=("val", "train"), default="val")
    h.add_argument("--seconds", type=float, help="first seconds of each record (default: all)")
    h.add_argument("--snr", type=float, nargs="+", default=[5.0, 0.0], help="noisy conditions (dB)")
    h.add_argument("--board", default="rpi-zero-2w", help="board whose MAX30102 settings the chip uses")
    h.add_argument("--core", type=int)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--data-root")
    h.add_argument("--rr-refractory", type=float, nargs="+", metavar="FRAC",
                   help="decoder RR-relative refractory fractions to try at each hop (0: off; default: the "
                        "runtime's, peaks_decode.RUNTIME_DECODER)")
    h.add_argument("--out", default="docs/results/hop-sweep-val.json")
    h.set_defaults(func=_handle_hop)
    a = sub.add_parser(
        "arm", help="instructions per second of signal of the device path on the board's ARM core (qemu TCG)",
        description="Count the device path's instructions (driver included, emulated chip apart) under "
                    "qemu-aarch64 with the board's core, per path, per stage and per model file; modelled CPU "
                    "load and energy from the board file. Needs root (the virtual Pi's base stage) and qemu-user.")
    a.add_argument("--board", default="rpi-zero-2w", help="board identifier (its core: cpu.model / cpu.qemu_cpu)")
    a.add_argument("--seconds", type=float, default=60.0, help="seconds of signal counted (beyond a lead-in)")
    a.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    a.add_argument("--out", help="folder for the Markdown report, the JSON and the PNG")
    a.add_argument("--no-models", action="store_true", help="skip the per-model-file counts")
    a.add_argument("--no-stages", action="store_true", help="skip the per-stage counts")
    a.add_argument("--rate-error", type=float, default=0.0,
                   help="the chip's clock runs this fraction fast (e.g. 0.01): the runtime measures the rate "
                        "and resamples at it, as with a real MAX30102")
    a.add_argument("--budget", metavar="FILE",
                   help="write the per-path counts as the instruction budget the CI test holds the device path "
                        "to (hil_tests/budgets/arm-insn.json; use --seconds 10 --no-stages --no-models)")
    a.add_argument("--budget-note", metavar="TEXT",
                   help="with --budget: why the counts changed, appended to the file's history (the earlier "
                        "notes are kept)")
    a.add_argument("--record", default="capnobase/0009", metavar="DATASET/ID",
                   help="the record played (default capnobase/0009, the budget's; the per-path figures "
                        "depend on how much of it the quality gate sends to the network)")
    a.add_argument("--data-root")
    a.set_defaults(func=_handle_arm)
    rr = sub.add_parser(
        "real", help="the device path on the real MAX30102 recordings (max30102-raw) against NeuroKit2",
        description="Replay every max30102-raw recording's 18-bit codes, and drive the emulated chip with them at "
                    "the recording's rate, through the network (float32, int8), gated and classic paths; compare "
                    "HR and beats with NeuroKit2 on the same blood-volume waveform, gated with network, finger "
                    "events with the IR level; check the classic detector on synthetic morphologies for beats "
                    "counted twice (ppg_edge.evaluate.real_recordings).")
    rr.add_argument("--board", default="rpi-zero-2w", help="board whose runtime (peak model, hop) and MAX30102 "
                                                           "settings the device path uses")
    rr.add_argument("--records", nargs="+", metavar="ID", help="max30102-raw record ids (default: all)")
    rr.add_argument("--seed", type=int, default=0, help="seed of the synthetic morphologies")
    rr.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    rr.add_argument("--out", help="folder for real-recordings.md, real-recordings.json and the PNGs")
    rr.add_argument("--data-root")
    rr.set_defaults(func=_handle_real)


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (rebuilt from the parsed options)."""
    parts = ["ppg-edge", "bench", "runtime", "--model", args.model, "--float-model", args.float_model]
    if args.keras:
        parts += ["--keras", args.keras]
    if args.records:
        parts += ["--records", *args.records]
    for opt, val, default in (("--seconds", args.seconds, None), ("--snr", args.snr, 5.0),
                              ("--keras-windows", args.keras_windows, 200), ("--board", args.board, "virtual-rpi4"),
                              ("--core", args.core, None), ("--seed", args.seed, 0), ("--out", args.out,
                              "docs/results/runtime-bench.json")):
        if val is not None and val != default:
            parts += [opt, f"{val:g}" if isinstance(val, float) else str(val)]
    return " ".join(shlex.quote(str(p)) for p in parts)


def _handle(args: argparse.Namespace) -> int:
    import platform

    from ppg_edge.evaluate.runtime_bench import run_benchmark, to_markdown

    _check_out(args.out)
    t0 = time.perf_counter()
    res = run_benchmark(int8_model=args.model, float_model=args.float_model, keras_dir=args.keras,
                        records=args.records, seconds=args.seconds, snr_db=args.snr, board=args.board,
                        data_root=args.data_root, keras_windows=args.keras_windows, core=args.core,
                        seed=args.seed)
    res["command"] = _command_line(args)
    res["host"] = platform.node()
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return _write(res, args.out, to_markdown(res) + f"\nThe whole benchmark took {res['elapsed_s']:.0f} s.\n")


def _handle_gate(args: argparse.Namespace) -> int:
    from ppg_edge.evaluate.runtime_bench import gate_sweep

    _check_out(args.out)

    t0 = time.perf_counter()
    res = gate_sweep(model=args.model, part=args.part, thresholds=args.sqi, seconds=args.seconds,
                     snr_dbs=args.snr, board=args.board, data_root=args.data_root, core=args.core, seed=args.seed)
    parts = ["ppg-edge", "bench", "gate", "--model", args.model, "--part", args.part, "--sqi",
             *[f"{t:g}" for t in args.sqi], "--snr", *[f"{x:g}" for x in args.snr], "--board", args.board]
    return _write_sweep(res, parts, args, t0)


def _write_sweep(res: dict, parts: list[str], args: argparse.Namespace, t0: float) -> int:
    """A gate or hop sweep's command line (``parts`` plus ``--seconds`` and ``--out``), its
    elapsed time, and its JSON and Markdown table written."""
    from ppg_edge.evaluate.runtime_bench import sweep_markdown

    if args.seconds is not None:
        parts += ["--seconds", f"{args.seconds:g}"]
    parts += ["--out", args.out]
    res["command"] = " ".join(shlex.quote(p) for p in parts)
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    return _write(res, args.out, sweep_markdown(res) + f"\nThe sweep took {res['elapsed_s']:.0f} s.\n")


def _handle_hop(args: argparse.Namespace) -> int:
    from ppg_edge.evaluate.runtime_bench import hop_sweep

    _check_out(args.out)

    t0 = time.perf_counter()
    res = hop_sweep(model=args.model, hops=args.hop, averagings=args.averaging or (None,),
                    gates=tuple(args.gate), rr_refractories=args.rr_refractory or (None,), part=args.part,
                    seconds=args.seconds, snr_dbs=args.snr, board=args.board, data_root=args.data_root,
                    core=args.core, seed=args.seed)
    parts = ["ppg-edge", "bench", "hop", "--model", args.model, "--hop", *[str(h) for h in args.hop],
             "--part", args.part, "--snr", *[f"{x:g}" for x in args.snr], "--board", args.board]
    if args.averaging:
        parts += ["--averaging", *[str(a) for a in args.averaging]]
    if args.gate != ["network"]:
        parts += ["--gate", *args.gate]
    if args.rr_refractory:
        parts += ["--rr-refractory", *[f"{r:g}" for r in args.rr_refractory]]
    return _write_sweep(res, parts, args, t0)


def _handle_arm(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ppg_edge.boards import load_board
    from ppg_edge.evaluate.arm_bench import bench, write_report

    if args.budget_note and not args.budget:
        from ppg_edge.errors import ConfigError

        raise ConfigError("--budget-note goes with --budget")
    if args.budget and args.record != "capnobase/0009":
        from ppg_edge.errors import ConfigError

        raise ConfigError("--budget counts capnobase/0009, the record the CI test plays: leave out --record")
    doc = bench(load_board(args.board), args.seconds, stages=not args.no_stages, models=not args.no_models,
                chip=not args.budget, data_root=args.data_root, progress=sys.stderr.isatty(),
                rate_error=args.rate_error, record=args.record)
    if args.budget:
        from ppg_edge.evaluate.arm_bench import budget_from

        budget = budget_from(doc, previous=Path(args.budget), note=args.budget_note)
        Path(args.budget).write_text(json.dumps(budget, indent=1) + "\n")
        log.info("wrote the budget %s", args.budget)
    parts = ["ppg-edge", "bench", "arm", "--board", args.board, "--seconds", f"{args.seconds:g}"]
    parts += [flag for flag, on in (("--no-models", args.no_models), ("--no-stages", args.no_stages)) if on]
    if args.rate_error:
        parts += ["--rate-error", f"{args.rate_error:g}"]
    if args.record != "capnobase/0009":
        parts += ["--record", args.record]
    if args.out:
        parts += ["--out", args.out]
        for path in write_report(doc, Path(args.out), " ".join(shlex.quote(p) for p in parts)):
            log.info("wrote %s", path)
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        for name, p in doc["paths"].items():
            log.info("%-16s %6.2fM instructions / s of signal, modelled %.4f mJ / sample", name,
                     p["device_insn_per_signal_s"] / 1e6, p["modelled_mj_per_sample"])
    return 0


def _handle_real(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ppg_edge.evaluate.real_recordings import evaluate, to_markdown, write_report

    t0 = time.perf_counter()
    doc = evaluate(args.data_root, board=args.board, records=args.records, seed=args.seed)
    parts = ["ppg-edge", "bench", "real", "--board", args.board]
    if args.records:
        parts += ["--records", *args.records]
    if args.seed:
        parts += ["--seed", str(args.seed)]
    if args.out:
        parts += ["--out", args.out]
    doc["command"] = " ".join(shlex.quote(p) for p in parts)
    doc["elapsed_s"] = round(time.perf_counter() - t0, 1)
    if args.out:
        for path in write_report(doc, Path(args.out), args.data_root):
            log.info("wrote %s", path)
    failed = [c for c in doc["checks"] if not c["passed"]]
    log.info("%d of %d checks pass%s", len(doc["checks"]) - len(failed), len(doc["checks"]),
             "" if not failed else ": failed " + "; ".join(f"{c['check']} {c['record']}" for c in failed))
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    elif not args.out:
        sys.stdout.write(to_markdown(doc))
    return 0


def _check_out(out) -> None:
    """Refuse, before any work, an ``--out`` these benchmarks cannot write: they take the JSON
    file's path (the Markdown goes beside it), not a folder as ``bench arm`` and ``bench real`` do."""
    from pathlib import Path

    from ppg_edge.errors import ConfigError

    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the JSON file's path (e.g. {out / 'runtime-bench.json'}), "
                          "the Markdown is written beside it")
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: the JSON result's path must end in .json (the Markdown goes beside it)")


def _write(res: dict, out, md: str) -> int:
    """The JSON result at ``out``, its Markdown beside it, the Markdown on stdout."""
    import json
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
