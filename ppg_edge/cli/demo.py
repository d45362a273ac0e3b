"""``ppg-edge demo``: the main job on the embedded default, end to end on real data.

It loads a held-out CapnoBase record (a test subject of the committed ``peaks``
split, never used for training or threshold choice), runs every peer detector on
it, clean and with the peak paper's noise models at 5 dB, and prints a short
report. Then the device: it installs the virtual Pi's system packages when it can
(root and apt-get), brings up the virtual Pi (an arm64 chroot under qemu) or, when
it cannot, a local DUT, saying at the top and at the end of its report that the
device part did not run on the virtual Pi, why, and the command that fixes it; deploys the device models to it over ssh; and runs the HIL
``smoke`` and ``accuracy-short`` suites on held-out records through the whole
device path (emulated MAX30102, driver, DSP, TFLite, decoder). It prints each
suite's report and where its session folder and PNGs are.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_DETECTORS = ("nk-elgendi", "nk-msptdfastv2", "dwt-baseline")
DEFAULT_CONDITIONS = ("clean", "gaussian:5", "baseline:5", "motion:5")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job on real data: detectors and models on a held-out record",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="data root (default: $PPG_EDGE_DATA, then ../shared/data)")
    p.add_argument("--record", metavar="DATASET/ID", default=None,
                   help="record to use (default: the first CapnoBase test subject of the peaks split)")
    p.add_argument("--out", metavar="DIR", default="runs",
                   help="parent folder of the session folder (default: runs)")
    p.add_argument("--board", default="virtual-rpi4", help="virtual board for the HIL part (default virtual-rpi4)")
    p.add_argument("--no-hil", action="store_true", help="skip the HIL part (virtual Pi, deploy, suites)")
    p.add_argument("--local-dut", action="store_true", help="HIL on a local DUT, not the virtual Pi")
    p.set_defaults(func=cmd_demo)


def _default_record() -> str:
    from ..data.splits import load_split

    test = load_split("peaks")["test"]
    return sorted(k for k in test if k.startswith("capnobase/"))[0]


def _banner(reason: str, fix: str) -> str:
    return (f"NOTE: the device part did NOT run on the virtual Pi: {reason}.\n"
            f"      It ran on a local DUT (this machine, x86) instead. Fix: {fix}")


def cmd_demo(args) -> int:
    from .. import config, data
    from ..evaluate.harness import evaluate_peaks

    root = config.data_root(args.data_root)
    key = args.record or _default_record()
    dataset, _, rid = key.partition("/")
    t0 = time.perf_counter()
    record = data.load_record(dataset, rid, root)
    print(f"ppg-edge demo — data root {root}")
    ready = None
    if not args.no_hil and not args.local_dut:
        from ..boards.virtual.host import readiness

        ready = readiness(install=True)
        if ready.installed:
            print(f"installed system packages: {' '.join(ready.installed)}")
        if not ready.ok:
            print(_banner(ready.reason, ready.fix))
    print(f"record {record.key}: {record.duration_s / 60:.1f} min at {record.fs:g} Hz, "
          f"{len(record.peaks)} reference peaks ({record.meta.get('peaks_source', 'expert labels')})")

    result = evaluate_peaks([record], list(DEFAULT_DETECTORS), DEFAULT_CONDITIONS, progress=False)
    print()
    print(result.to_markdown(dataset))

    session = Path(args.out) / time.strftime("demo-%Y%m%d-%H%M%S")
    session.mkdir(parents=True, exist_ok=True)
    (session / "results.json").write_text(result.to_json())
    (session / "report.md").write_text(result.to_markdown(dataset) + "\n")
    main_tol = result.tol_labels[0]
    worst = {}
    for r in result.pooled:
        if r["dataset"] == dataset:
            f1 = r["scores"][main_tol]["f1"]
            worst[r["detector"]] = min(worst.get(r["detector"], 1.0), f1)
    ranking = ", ".join(f"{d} {f1:.3f}" for d, f1 in sorted(worst.items(), key=lambda kv: -kv[1]))
    print()
    print(f"worst-condition F1 @{main_tol}: {ranking}")
    print(f"{len(result.events)} harness events; "
          f"{time.perf_counter() - t0:.1f} s; session folder {session}")
    if args.no_hil:
        return 0
    status, device = _hil(args, root, ready)
    report = session / "report.md"
    if device.get("reason"):
        banner = _banner(device["reason"], device["fix"])
        print()
        print(banner)
        report.write_text(banner + "\n\n" + report.read_text() + "\n" + banner + "\n")
    else:
        report.write_text(report.read_text() + f"\nDevice part: {device['where']}.\n")
    return status


def _device_models() -> tuple[dict, str]:
    """The committed device models, or a float32 conversion of Type30 into the cache (noted)."""
    import subprocess
    import sys

    from .. import config
    from .hil import _model_args

    models = _model_args([], defaults=True)
    if models:
        return models, "models/device (committed device models)"
    from ..cache import build_stage
    from ..config import REPO_ROOT
    from ..errors import PPGEdgeError

    out = config.cache_dir() / "demo-device-models"
    f32 = out / "Type30-float32.tflite"

    def convert(tmp: Path) -> None:
        print("models/device has no device models yet: converting models/peaks/Type30 to float32 "
              f"into {out} (synthetic self-check; a minute or two)")
        proc = subprocess.run([sys.executable, "-m", "ppg_edge", "-q", "convert",
                               str(REPO_ROOT / "models/peaks/Type30"), "--mode", "float32", "--out", str(tmp)],
                              check=False, timeout=900)
        if proc.returncode != 0 or not (tmp / f32.name).is_file():
            raise PPGEdgeError(f"ppg-edge convert exited {proc.returncode}")

    try:
        build_stage(out, convert, what="demo device models", rebuild=out.is_dir() and not f32.is_file())
    except (PPGEdgeError, OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"no device model (conversion failed: {exc})"
    return {"float32": f32}, f"{f32} (converted for the demo; models/device has none; no int8)"


def _hil(args, data_root, ready) -> tuple[int, dict]:
    """Run the HIL suites; returns the status and where the device part ran (with the
    reason and the fix when it was not the virtual Pi)."""
    import tempfile

    from ..boards import load_board
    from ..errors import PPGEdgeError
    from ..hil_tests.suites import LocalDut, run_suite

    print("\n== hardware in the loop ==")
    board = load_board(args.board)
    models, where = _device_models()
    if not models:
        print(f"HIL part skipped: {where}")
        return 1, {"where": "nowhere (no device model)", "reason": where, "fix": "make device-models"}
    print(f"device models: {', '.join(f'{k}={v.name}' for k, v in models.items())} from {where}")
    status = 0
    device: dict = {"where": f"the virtual Pi {board.identifier} (aarch64 under qemu-user)"}
    with tempfile.TemporaryDirectory(prefix="ppg-edge-demo-") as work:
        work = Path(work)
        dut = None
        if args.local_dut:
            device = {"where": "a local DUT (--local-dut)"}
        elif ready is not None and not ready.ok:
            device = {"where": "a local DUT", "reason": ready.reason, "fix": ready.fix}
        else:
            from ..hil_tests.vpi_dut import VirtualPiDut

            try:
                t = time.perf_counter()
                dut = VirtualPiDut(board, models, work)
                print(f"bringing up the virtual Pi {board.identifier} and deploying over ssh ...")
                dut.bring_up()
                print(f"virtual Pi up, release {dut.deploy_report.release} deployed and smoke-checked "
                      f"({time.perf_counter() - t:.0f} s)")
            except (PPGEdgeError, OSError) as exc:
                dut = None
                device = {"where": "a local DUT", "reason": f"the virtual Pi could not be brought up ({exc})",
                          "fix": f"ppg-edge --debug vpi build --board {board.identifier}, then read its error"}
        if dut is None:
            print(f"NOTE: HIL on a local DUT (a `ppg-edge hil dut` subprocess on this machine): "
                  f"{device.get('reason') or '--local-dut given'}")
            dut = LocalDut(board, models, work)
        try:
            for suite in ("smoke", "accuracy-short"):
                t = time.perf_counter()
                folder, results = run_suite(suite, board, dut, models, runs_dir=Path(args.out),
                                            data_root=data_root, close_dut=False)
                print()
                print((folder / "report.md").read_text())
                pngs = ", ".join(str(p) for p in sorted(folder.glob("*.png")))
                print(f"suite {suite}: {results['status']} in {time.perf_counter() - t:.0f} s; "
                      f"session {folder}; plots: {pngs}")
                status |= results["status"] != "ok"
        finally:
            close = getattr(dut, "close", None)
            if close is not None:
                close()
    return int(status), device
