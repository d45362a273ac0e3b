"""``ppg-edge evaluate bp-calibration``: BP calibration tested against continuous ABP.

Runs :func:`ppg_edge.evaluate.bp_calibration.evaluate_calibration` on the WFDB sample records
with an ABP channel (``mixedsignals``, ``041s``) through the device's BP stage
(:func:`~ppg_edge.evaluate.bp_calibration.device_estimator`, the ``--bp-model`` file). The
population mean is the model's training (PPG-BP) mean from its manifest.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ppg_edge.provenance import machine

from ..errors import ConfigError
from .outputs import write_outputs

log = logging.getLogger(__name__)

DEFAULT_RECORDS = ("mixedsignals", "041s")
DEFAULT_BP_MODEL = Path("models/device/bp-ppg-100hz.trees")


def register(sub) -> None:
    p = sub.add_parser(
        "bp-calibration",
        help="test one-cuff BP calibration against continuous ABP (WFDB samples)",
        description=(
            "Estimate BP from the PPG of records with continuous arterial pressure, calibrate "
            "with an offset over the first --calib-s seconds and report on the rest the MAE "
            "uncalibrated, calibrated, of the carry-forward baseline (the first period's mean "
            "ABP) and of the PPG-BP population mean, per record and pooled. Estimator: "
            "FeatureBaseline trained on all PPG-BP subjects at 100 Hz."
        ),
    )
    p.add_argument("--data-root", metavar="DIR", help="data root (default: PPG_EDGE_DATA, ../shared/data)")
    p.add_argument("--calib-s", type=float, default=60.0, metavar="S",
                   help="calibration period at the start of each record (default 60)")
    p.add_argument("--record", action="append", metavar="ID",
                   help="wfdb-samples record (repeatable; default mixedsignals and 041s)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the Markdown")
    p.add_argument("--out", type=Path, metavar="FILE.json", help="write the full JSON result here")
    p.add_argument("--markdown", type=Path, metavar="FILE.md", help="write the Markdown report here")
    p.add_argument("--bp-model", type=Path, default=DEFAULT_BP_MODEL, metavar="FILE",
                   help=f"the device BP model (default {DEFAULT_BP_MODEL})")
    p.set_defaults(func=run_bp_calibration)


def command_line(args, prog: str = "ppg-edge evaluate bp-calibration") -> str:
    parts = [prog, f"--calib-s {args.calib_s:g}"]
    if args.data_root:
        parts.append(f"--data-root {args.data_root}")
    parts += [f"--record {r}" for r in (args.record or [])]
    for opt in ("out", "markdown"):
        if getattr(args, opt):
            parts.append(f"--{opt} {getattr(args, opt)}")
    parts.append(f"--bp-model {args.bp_model}")
    for flag in ("json",):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return " ".join(parts)


def run_bp_calibration(args: argparse.Namespace) -> int:
    from .. import data
    from ..evaluate.bp_calibration import device_estimator, evaluate_calibration, markdown_report

    if not args.calib_s > 0:
        raise ConfigError(f"--calib-s must be positive, got {args.calib_s}")
    start = time.perf_counter()
    records = [data.load_record("wfdb-samples", rid, root=args.data_root)
               for rid in (args.record or DEFAULT_RECORDS)]
    estimator = device_estimator(args.bp_model)
    t_train = time.perf_counter() - start
    result = evaluate_calibration(records, estimator, calib_s=args.calib_s,
                                  population_mean=estimator.population_mean)
    result["command"] = command_line(args)
    result["estimator"] = estimator.description
    result["seconds"] = {"load": round(t_train, 2), "total": round(time.perf_counter() - start, 2)}
    result["machine"] = machine()
    result["benchmark"] = "bp-calibration"
    result["dataset"] = "wfdb-samples (PhysioNet; MIMIC DB, Moody & Mark 1996); trained on PPG-BP (Liang et al. 2018)"
    log.info("bp-calibration: %.1f s", result["seconds"]["total"])
    write_outputs(args, result, markdown_report(result))
    return 0
