"""``ppg-edge hil``: DUT mode on the board, and the host harness that measures it.

``ppg-edge hil dut --port /dev/serial0`` serves the HIL line protocol
(docs/hil-protocol.md). ``ppg-edge hil run --port /dev/ttyUSB0 --board rpi4b``
drives a DUT through warm-ups and five measurement loops and writes a session
folder under ``runs/``. ``--port pty --local-dut`` runs both ends on this
machine over a pseudo-terminal pair (a smoke test of the whole chain).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PIPELINES = ("moving-average",)
DEFAULT_SEED = 20251122


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hil", help="hardware-in-the-loop: DUT mode and host harness",
                              description="Serve the HIL protocol on the board (dut) or measure a DUT "
                                          "from the host (run).")
    sub = p.add_subparsers(dest="hil_command", metavar="ACTION", required=True)

    d = sub.add_parser("dut", help="serve the HIL line protocol on a serial port (runs on the board)")
    d.add_argument("--port", required=True, help="serial port or pyserial URL (/dev/serial0, a pty path)")
    d.add_argument("--baud", type=int, default=115200)
    d.add_argument("--board", default="unknown", help="board identifier to report")
    d.add_argument("--pipeline", choices=PIPELINES, default="moving-average",
                   help="what the DUT runs (the edge runtime plugs in here)")
    d.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help="seed of the synthetic stimulus the DUT holds")
    d.set_defaults(func=_dut)

    r = sub.add_parser("run", help="measure a DUT: warm-ups, five loops, medians; writes runs/<session>/")
    r.add_argument("--port", required=True,
                   help="serial port or pyserial URL of the link; 'pty' with --local-dut")
    r.add_argument("--baud", type=int, default=115200)
    r.add_argument("--board", required=True, help="board identifier (power model, session name)")
    r.add_argument("--suite", default="smoke", help="suite name for the session folder")
    r.add_argument("--windows", type=int, default=8, help="measured windows per loop")
    r.add_argument("--warmups", type=int, default=2, help="warm-up windows before each loop")
    r.add_argument("--loops", type=int, default=5, help="measurement loops (median reported)")
    r.add_argument("--window", type=int, default=250, help="samples per window")
    r.add_argument("--chunk", type=int, default=1, help="samples per pipeline call")
    r.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the synthetic stimulus")
    r.add_argument("--upload", action="store_true", help="upload the stimulus instead of selecting it")
    r.add_argument("--meter", help="energy meter: ina219[:...], ina226[:...], usb:PORT, joulescope, rapl "
                                   "(default: the board power model only)")
    r.add_argument("--runs-dir", type=Path, default=Path("runs"))
    r.add_argument("--timeout", type=float, default=5.0, help="longest DUT silence, seconds")
    r.add_argument("--local-dut", action="store_true",
                   help="start `ppg-edge hil dut` here on the other end of a pty pair (--port pty)")
    r.set_defaults(func=_run)


def _stimulus(seed: int, seconds: float = 60.0):
    import numpy as np

    from ppg_edge.hil_tests.pipeline import synthetic_ppg

    return synthetic_ppg(np.random.default_rng(seed), fs=100.0, seconds=seconds,
                         id=f"synthetic-seed{seed}")


def _dut(args: argparse.Namespace) -> int:
    from ppg_edge.hil_tests.dut import serve_port
    from ppg_edge.hil_tests.pipeline import MovingAveragePeaks

    pipeline = MovingAveragePeaks()
    n = serve_port(args.port, pipeline, baudrate=args.baud, board=args.board,
                   stimuli=[_stimulus(args.seed)])
    print(f"hil dut: link closed after {n} commands")
    return 0


def _run(args: argparse.Namespace) -> int:
    import subprocess

    from ppg_edge.boards import load_board
    from ppg_edge.errors import ConfigError
    from ppg_edge.hil_tests.energy import open_meter
    from ppg_edge.hil_tests.harness import Harness
    from ppg_edge.hil_tests.link import Link, open_link, open_pty_pair
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
        proc = subprocess.Popen([sys.executable, "-m", "ppg_edge", "-q", "hil", "dut", "--port", pair.path,
                                 "--board", board.identifier, "--seed", str(args.seed)])
        link = Link(pair.master, timeout_s=args.timeout, name=pair.path)
    elif args.port == "pty":
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
    lat = results["latency_us"]["per_sample"]
    print(f"session {session.path}")
    print(f"status {results['status']}" + (f": {results['error']}" if results.get("error") else ""))
    print(f"{results['loops_completed']}/{args.loops} loops; per-sample latency p50 {lat['p50']} us, "
          f"p99 {lat['p99']} us; throughput {results['throughput_samples_per_s']} samples/s")
    for e in results["energy_per_sample"]:
        print(f"energy {e['joules_per_sample']} J/sample ({e['method']})")
    return 0 if results["status"] == "ok" else 1
