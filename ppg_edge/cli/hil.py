"""``ppg-edge hil``: DUT mode on the board, and the host harness that measures it.

``ppg-edge hil dut --port /dev/serial0`` serves the HIL line protocol
(docs/hil-protocol.md). ``ppg-edge hil run --port /dev/ttyUSB0 --board rpi4b``
runs a suite (``hil_tests/suites/*.toml``) of the device path (emulated MAX30102,
driver, DSP, TFLite, decoder) and writes a session folder under ``runs/``;
``--local-dut`` runs the DUT here over a pty pair, and a virtual board without
``--port`` runs it inside the virtual Pi. ``--pipeline moving-average`` keeps the
synthetic link benchmark (warm-ups, five loops) of the toy pipeline.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PIPELINES = ("device", "moving-average")
DEFAULT_SEED = 20251122
DEVICE_MODELS = {"int8": "peaks-Type30-int8.tflite", "float32": "peaks-Type30-float32.tflite"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hil", help="hardware-in-the-loop: DUT mode and host harness",
                              description="Serve the HIL protocol on the board (dut) or measure a DUT "
                                          "from the host (run).")
    sub = p.add_subparsers(dest="hil_command", metavar="ACTION", required=True)

    d = sub.add_parser("dut", help="serve the HIL line protocol on a serial port (runs on the board)")
    d.add_argument("--port", required=True, help="serial port or pyserial URL (/dev/serial0, a pty path)")
    d.add_argument("--baud", type=int, default=115200)
    d.add_argument("--board", default="unknown", help="board identifier to report (and its MAX30102 settings)")
    d.add_argument("--pipeline", choices=PIPELINES, default="moving-average",
                   help="device: emulated MAX30102 -> driver -> DSP -> TFLite -> decoder (the real device "
                        "path); moving-average: a toy for testing the link")
    d.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                   help="peak model .tflite for --pipeline device (repeat; the first is selected)")
    d.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="seed of the synthetic stimulus the DUT holds")
    d.set_defaults(func=_dut)

    r = sub.add_parser("run", help="run a HIL suite against a DUT; writes runs/<session>/",
                       description="Run a suite (hil_tests/suites/NAME.toml: smoke, accuracy, performance, "
                                   "faults, soak) against a DUT: a real board on --port, a local DUT "
                                   "(--local-dut), or the virtual Pi (--board virtual-rpi4 without --port). "
                                   "--pipeline moving-average runs the old synthetic link benchmark instead.")
    r.add_argument("--port", help="serial port or pyserial URL of the link; 'pty' with --local-dut")
    r.add_argument("--baud", type=int, default=115200)
    r.add_argument("--board", required=True, help="board identifier (power model, session name)")
    r.add_argument("--suite", default="smoke", help="suite name or .toml path (default smoke)")
    r.add_argument("--pipeline", choices=PIPELINES, default="device")
    r.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="host copy of a device model (repeat); default models/device/peaks-Type30-{int8,float32}")
    r.add_argument("--data-root", help="data root for the suite's records (default $PPG_EDGE_DATA)")
    r.add_argument("--json", action="store_true", help="print results.json's headline as JSON (the only thing on stdout)")
    r.add_argument("--windows", type=int, default=8, help="(moving-average) measured windows per loop")
    r.add_argument("--warmups", type=int, default=2, help="(moving-average) warm-up windows before each loop")
    r.add_argument("--loops", type=int, default=5, help="(moving-average) measurement loops (median reported)")
    r.add_argument("--window", type=int, default=250, help="(moving-average) samples per window")
    r.add_argument("--chunk", type=int, default=1, help="(moving-average) samples per pipeline call")
    r.add_argument("--seed", type=int, default=DEFAULT_SEED, help="(moving-average) synthetic stimulus seed")
    r.add_argument("--upload", action="store_true", help="(moving-average) upload the stimulus")
    r.add_argument("--meter", help="energy meter: ina219[:...], ina226[:...], usb:PORT, joulescope, rapl "
                                   "(default: the board power model only)")
    r.add_argument("--runs-dir", type=Path, default=Path("runs"))
    r.add_argument("--save-results", type=Path, metavar="DIR",
                   help="also write DIR/hil-<suite>-<board>.json and .md (e.g. docs/results)")
    r.add_argument("--timeout", type=float, default=10.0, help="longest DUT silence, seconds")
    r.add_argument("--local-dut", action="store_true",
                   help="start `ppg-edge hil dut` here on the other end of a pty pair")
    r.set_defaults(func=_run)


def _model_args(values, *, defaults: bool) -> dict:
    """``[NAME=]PATH`` options -> {name: Path}; the committed device models when none are given."""
    from ppg_edge.errors import ConfigError

    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            name, path = Path(v).stem, v
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--model {v}: no such file")
        out[name] = p
    if not out and defaults:
        for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
            for name, fname in DEVICE_MODELS.items():
                if name not in out and (root / "models" / "device" / fname).is_file():
                    out[name] = root / "models" / "device" / fname
    return out


def _stimulus(seed: int, seconds: float = 60.0):
    import numpy as np

    from ppg_edge.hil_tests.pipeline import synthetic_ppg

    return synthetic_ppg(np.random.default_rng(seed), fs=100.0, seconds=seconds,
                         id=f"synthetic-seed{seed}")


def _dut(args: argparse.Namespace) -> int:
    from ppg_edge.hil_tests.dut import serve_port

    stim = _stimulus(args.seed)
    if args.pipeline == "device":
        from ppg_edge.boards import load_board
        from ppg_edge.errors import ConfigError
        from ppg_edge.hil_tests.device import DevicePipeline, to_light
        from ppg_edge.hil_tests.pipeline import Stimulus

        board = load_board(args.board) if args.board != "unknown" else None
        models = _model_args(args.model, defaults=False)
        if not models:
            raise ConfigError("--pipeline device needs --model [NAME=]PATH (a peak model with its manifest)")
        pipeline = DevicePipeline(models, board=board)
        stim = Stimulus(id=stim.id, samples=to_light(stim.samples), fs=stim.fs, peaks=stim.peaks,
                        source=stim.source + " as light")
    else:
        from ppg_edge.hil_tests.pipeline import MovingAveragePeaks

        pipeline = MovingAveragePeaks()
    n = serve_port(args.port, pipeline, baudrate=args.baud, board=args.board, stimuli=[stim])
    # A note, not a result: the DUT's stdout may be the stdout of a `hil run --json` parent.
    log.info("hil dut: link closed after %d commands", n)
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.pipeline == "device":
        return _run_suite(args)
    return _run_toy(args)


def _run_suite(args: argparse.Namespace) -> int:
    import tempfile

    from ppg_edge.boards import load_board
    from ppg_edge.errors import ConfigError
    from ppg_edge.hil_tests.energy import open_meter
    from ppg_edge.hil_tests.suites import LocalDut, PortDut, run_suite

    board = load_board(args.board)
    if args.local_dut and args.port not in (None, "pty"):
        raise ConfigError("--local-dut makes its own pty; leave out --port (or give --port pty)")
    if not args.local_dut and args.port == "pty":
        raise ConfigError("--port pty needs --local-dut (or give the pty path the DUT opened)")
    models = _model_args(args.model, defaults=True)
    if not models:
        raise ConfigError("no device models: pass --model int8=PATH (and float32=PATH), or commit "
                          "models/device/peaks-Type30-{int8,float32}.tflite with their manifests")
    meter = open_meter(args.meter) if args.meter else None
    with tempfile.TemporaryDirectory(prefix="ppg-edge-hil-") as work:
        if args.local_dut:
            dut = LocalDut(board, models, Path(work), timeout_s=args.timeout)
        elif args.port:
            dut = PortDut(args.port, board, Path(work), baudrate=args.baud, timeout_s=args.timeout)
        elif board.virtual:
            from ppg_edge.hil_tests.vpi_dut import VirtualPiDut

            dut = VirtualPiDut(board, models, Path(work), timeout_s=max(args.timeout, 120.0))
        else:
            raise ConfigError(f"{board.identifier} is a real board: give --port (the DUT's serial port) "
                              "or --local-dut")
        folder, results = run_suite(args.suite, board, dut, models, runs_dir=args.runs_dir,
                                    data_root=args.data_root, meter=meter)
    if args.save_results:
        from ppg_edge.hil_tests.suites import save_results

        saved = save_results(results, args.save_results, folder / "report.md")
        print(f"results saved to {saved}", file=sys.stderr)
    _print_suite(folder, results, as_json=args.json)
    return 0 if results["status"] == "ok" else 1


def _print_suite(folder, results, *, as_json: bool) -> None:
    import json

    if as_json:
        keep = ("suite", "board", "status", "dut_where", "latency_us", "latency_method", "inference_us",
                "energy_per_sample", "lost_samples", "accuracy", "accuracy_vs_host", "checks_failed", "seconds")
        print(json.dumps({"session": str(folder), **{k: results.get(k) for k in keep}}, indent=1, default=str))
        return
    print((folder / "report.md").read_text())
    print(f"session {folder} (results.json, report.md, PNGs)")


def _run_toy(args: argparse.Namespace) -> int:
    import subprocess

    from ppg_edge.boards import load_board
    from ppg_edge.errors import ConfigError
    from ppg_edge.hil_tests.energy import open_meter
    from ppg_edge.hil_tests.harness import Harness
    from ppg_edge.hil_tests.link import Link, open_link, open_pty_pair, start_dut_process
    from ppg_edge.hil_tests.session import Session

    for name in ("windows", "loops", "window", "chunk"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be at least 1")
    if args.warmups < 0:
        raise ConfigError("--warmups must be >= 0")
    board = load_board(args.board)
    stim = _stimulus(args.seed)
    meter = open_meter(args.meter) if args.meter else None
    proc = None
    pair = None
    if args.local_dut:
        if args.port != "pty":
            raise ConfigError("--local-dut needs --port pty")
        pair = open_pty_pair()
        proc = start_dut_process([sys.executable, "-m", "ppg_edge", "-q", "hil", "dut", "--port", pair.path,
                                  "--board", board.identifier, "--seed", str(args.seed)])
        link = Link(pair.master, timeout_s=args.timeout, name=pair.path)
    elif args.port in (None, "pty"):
        raise ConfigError("--port pty needs --local-dut (or give the pty path the DUT opened)")
    else:
        link = open_link(args.port, baudrate=args.baud, timeout_s=args.timeout)
    session = Session.create(args.runs_dir, board.identifier, args.suite)
    try:
        with session, link:
            harness = Harness(link, board=board, suite=args.suite)
            if pair is not None:
                harness.wait_ready(30.0)     # the DUT process is starting; it opens the slave
                pair.release_slave()         # from now on its exit closes the link
            results = harness.benchmark(stim, windows=args.windows, warmups=args.warmups, loops=args.loops,
                                        settings={"window": args.window, "chunk": args.chunk, "fs": stim.fs},
                                        upload=args.upload, meter=meter)
            session.write(results)
    finally:
        if pair is not None:
            pair.release_slave()
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if args.json:
        import json

        keep = ("suite", "board", "status", "error", "loops", "loops_completed", "latency_us",
                "throughput_samples_per_s", "energy_per_sample")
        print(json.dumps({"session": str(session.path), **{k: results.get(k) for k in keep}},
                         indent=1, default=str))
        return 0 if results["status"] == "ok" else 1
    lat = results["latency_us"]["per_sample"]
    print(f"session {session.path}")
    print(f"status {results['status']}" + (f": {results['error']}" if results.get("error") else ""))
    print(f"{results['loops_completed']}/{args.loops} loops; per-sample latency p50 {lat['p50']} us, "
          f"p99 {lat['p99']} us; throughput {results['throughput_samples_per_s']} samples/s")
    for e in results["energy_per_sample"]:
        print(f"energy {e['joules_per_sample']} J/sample ({e['method']})")
    return 0 if results["status"] == "ok" else 1
