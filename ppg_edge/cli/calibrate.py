"""``ppg-edge calibrate``: store a cuff reading for the device's BP model (on the device).

The reading is paired with the device's own **uncalibrated** estimate at that time: the last
stable ``bp`` event of the running service's JSON-lines output (``--events``), or one given by
hand (``--estimate-sbp``/``--estimate-dbp``). One reading gives an offset, two or more a line
(:class:`ppg_edge.edge_runtime.user.Calibration`); ``ppg-edge run --calibration FILE`` applies it.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="store a cuff BP reading for the device's BP model (offset / two-point fit)",
        description=__doc__)
    p.add_argument("--sbp", type=float, help="cuff systolic pressure, mmHg")
    p.add_argument("--dbp", type=float, help="cuff diastolic pressure, mmHg")
    p.add_argument("--bp-model", required=True, help="the BP model the service runs (.trees or .tflite)")
    p.add_argument("--profile", help="the wearer's profile file, when the service runs with one")
    p.add_argument("--calibration", help="calibration file to add the reading to (created)")
    p.add_argument("--state-dir", help="the service's state folder (its calibration.json, and profile.toml when "
                                       "present): e.g. /opt/ppg-edge/state")
    p.add_argument("--events", help="the service's JSON-lines output ('-': stdin, e.g. `journalctl -u ppg-edge -o "
                                    "cat | ppg-edge calibrate ... --events -`): its last stable bp event is the estimate")
    p.add_argument("--max-age-s", type=float, default=300.0,
                   help="the estimate must end at most this long before the events file's last event (default 300)")
    p.add_argument("--estimate-sbp", type=float, help="the device's uncalibrated SBP at the cuff time (instead of --events)")
    p.add_argument("--estimate-dbp", type=float, help="the device's uncalibrated DBP at the cuff time")
    p.add_argument("--time", help="when the cuff reading was taken (ISO 8601; default now)")
    p.add_argument("--reset", action="store_true", help="drop the earlier readings first")
    p.add_argument("--json", action="store_true", help="print the calibration as one JSON document")
    p.set_defaults(func=_handle)


def last_estimate(events_path, max_age_s: float) -> dict:
    """The uncalibrated values of the last stable ``bp`` event in a JSON-lines file."""
    from ppg_edge.errors import ConfigError

    last_t, best = None, None
    import contextlib
    import sys

    try:
        fh = contextlib.nullcontext(sys.stdin) if str(events_path) == "-" else open(events_path)
    except OSError as exc:
        raise ConfigError(f"--events {events_path}: cannot read ({exc.strerror or exc})") from None
    with fh as fh:
        for n, line in enumerate(fh, 1):
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s line %d: not JSON (a line cut off?); skipped", events_path, n)
                continue
            if isinstance(ev, dict) and isinstance(ev.get("t"), (int, float)):
                last_t = float(ev["t"])
                if ev.get("type") == "bp" and ev.get("quality") == "stable" and ev.get("uncalibrated"):
                    best = ev
    if best is None:
        raise ConfigError(f"{events_path}: no stable bp estimate yet (keep the finger on the sensor for "
                          "a minute, at rest, then calibrate)")
    if last_t - float(best["t"]) > max_age_s:
        raise ConfigError(f"{events_path}: the last stable bp estimate is {last_t - best['t']:.0f} s old "
                          f"(> --max-age-s {max_age_s:g}): measure again, then calibrate")
    return {"values": dict(best["uncalibrated"]), "t": best["t"], "model": best.get("model")}


def _handle(args: argparse.Namespace) -> int:
    from ppg_edge.edge_runtime.user import Calibration
    from ppg_edge.errors import ConfigError
    from ppg_edge.manifest import manifest_path_for, verify_model

    from .run import CALIBRATION_FILE, PROFILE_FILE, bp_inputs

    state = Path(args.state_dir) if args.state_dir else None
    if (args.calibration is None) == (state is None):
        raise ConfigError("give --calibration FILE or --state-dir DIR (one of them)")
    profile = args.profile or (str(state / PROFILE_FILE) if state and (state / PROFILE_FILE).is_file() else None)
    model, _, _ = bp_inputs(argparse.Namespace(bp_model=str(args.bp_model), profile=profile, calibration=None))
    sha = verify_model(model)["sha256"]
    if args.sbp is None and args.dbp is None:
        raise ConfigError("give the cuff reading: --sbp and/or --dbp")
    if args.events:
        if args.estimate_sbp is not None or args.estimate_dbp is not None:
            raise ConfigError("--events or --estimate-sbp/--estimate-dbp, not both")
        got = last_estimate(args.events, args.max_age_s)
        if got["model"] is not None and got["model"] != Path(model).name:
            raise ConfigError(f"{args.events}: its estimates come from {got['model']}, not {Path(model).name}")
        estimate = got["values"]
    else:
        estimate = {"sbp": args.estimate_sbp, "dbp": args.estimate_dbp}
    path = Path(args.calibration) if args.calibration else state / CALIBRATION_FILE
    cal = Calibration(model_sha256=sha)
    if path.exists() and not args.reset:
        cal = Calibration.load(path, model_sha256=sha)
    cal.add({"sbp": args.sbp, "dbp": args.dbp}, estimate, time=args.time)
    cal.save(path)
    summary = cal.summary() | {"file": str(path), "model": Path(model).name, "manifest": str(manifest_path_for(model))}
    if args.json:
        print(json.dumps(summary))
    else:
        for q, f in summary["fit"].items():
            if f is not None:
                log.info("%s: %s (slope %.3f, intercept %+.1f mmHg) from %d reading(s)", q.upper(), f["method"],
                         f["slope"], f["intercept"], f["n"])
        print(f"calibration {path}: {summary['readings']} reading(s), last {summary['last']}")
    return 0
