"""``ppg-edge convert``: a saved peak model to self-checked TFLite files with manifests."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a saved peak or BP model to TFLite (float32/float16/dynamic/int8)",
        description="Convert a saved peak model (<name>.json + <name>.weights.h5, as written by "
                    "save_peak_model) or a BP CNN-LSTM folder (config.json + model.keras) to TFLite. Each mode is checked against Keras on held-out "
                    "windows and written with a sealed manifest; a mode that fails is not written. "
                    "Mode 16x8 is refused for LSTM models (TFLite does not support it for the fused LSTM).")
    p.add_argument("model", metavar="MODEL_DIR", help="directory (or path stem) of the saved model")
    p.add_argument("--mode", action="append", dest="modes", metavar="MODE",
                   help="float32, float16, dynamic, int8 or 16x8; repeat for several (default: float32 and int8)")
    p.add_argument("--out", default=None, help="output directory (default MODEL_DIR/tflite)")
    p.add_argument("--calibration", default=None, metavar="LIST",
                   help="calibration list JSON (training-subject windows; built with --build-calibration)")
    p.add_argument("--build-calibration", action="store_true",
                   help="draw the calibration list LIST from the committed 'peaks' split and the data root first")
    p.add_argument("--calibration-windows", type=int, default=200, help="windows to draw for --build-calibration")
    p.add_argument("--synthetic-calibration", type=int, default=None, metavar="N",
                   help="calibrate on N synthetic PPG windows instead (tests, no data)")
    p.add_argument("--check-windows", type=int, default=32, help="synthetic self-check windows when no list is given")
    p.add_argument("--threshold", type=float, default=None,
                   help="decoder threshold recorded in the manifest (default: the model json's, chosen on "
                        "the validation subjects)")
    p.add_argument("--stem", default=None,
                   help="file name stem: writes STEM-MODE.tflite + STEM-MODE.json (default: the model name; "
                        "models/device uses peaks-Type30, bp-cnn-lstm-100hz)")
    p.add_argument("--quantizer", default="best", choices=("best", "legacy", "mlir", "auto"),
                   help="int8 peak models: converter quantizer; 'best' converts with both and keeps the one "
                        "with the smaller self-check error on the validation windows (default)")
    p.add_argument("--tolerance", default=None, metavar="MAX_ATOL,MAX_REL,MEAN_ATOL,MEAN_REL",
                   help="override the int8 self-check tolerance (max |d| <= MAX_ATOL + "
                        "MAX_REL*span, mean |d| <= MEAN_ATOL + MEAN_REL*span); recorded in the manifest")
    p.add_argument("--bp-calibration-windows", type=int, default=200,
                   help="BP models: PPG-BP windows drawn (seeded) to calibrate int8")
    p.add_argument("--bp-scheme", default="scaled", choices=("scaled", "raw"),
                   help="BP models: 'scaled' folds the training mean/std into the last Dense layer "
                        "(standardised int8 output, undone by target_scaling in the manifest); 'raw' keeps mmHg")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=_handle)


def _build_calibration(args) -> None:
    from ppg_edge import config
    from ppg_edge.convert import calibration as cal
    from ppg_edge.convert.peaks import find_saved_model, peak_preprocessing
    from ppg_edge.data.splits import load_split
    from ppg_edge.train.peaks.fit import load_peak_model

    from . import CLIError

    if not args.calibration:
        raise CLIError("--build-calibration needs --calibration LIST (the file to write)")
    model, cfg = load_peak_model(find_saved_model(args.model))
    pre = peak_preprocessing(cfg, int(model.input_shape[1]))
    root = config.data_root(args.data_root)
    split = load_split("peaks")
    doc = cal.build_calibration_list(
        split, cal.record_refs(split, pre.fs, root), kind="peaks", fs=pre.fs, window=pre.window,
        hop=pre.hop, n_windows=args.calibration_windows, seed=args.seed,
    )
    cal.save_calibration_list(doc, args.calibration)
    _, balance = cal.load_windows(doc, pre, "entries", root)
    print(cal.describe(doc, balance), file=sys.stderr if args.json else sys.stdout)


def _tolerance(text):
    from ppg_edge.convert.tflite import Tolerance

    from . import CLIError

    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4 or any(v < 0 for v in vals):
        raise CLIError(f"--tolerance takes four non-negative numbers MAX_ATOL,MAX_REL,MEAN_ATOL,MEAN_REL, got {text!r}")
    return Tolerance(*vals)


def _handle(args: argparse.Namespace) -> int:
    from ppg_edge.convert.bp import convert_saved_bp_model, is_bp_model_dir
    from ppg_edge.convert.peaks import convert_saved_peak_model

    tolerance = _tolerance(args.tolerance)

    if is_bp_model_dir(args.model):
        done = convert_saved_bp_model(
            args.model, args.modes or ["float32", "int8"], args.out, stem=args.stem, scheme=args.bp_scheme,
            n_calibration=args.bp_calibration_windows, n_check=args.check_windows, seed=args.seed,
            data_root=args.data_root, tolerance=tolerance,
        )
    else:
        if args.build_calibration:
            _build_calibration(args)
        done = convert_saved_peak_model(
            args.model, args.modes or ["float32", "int8"], args.out,
            calibration_list=args.calibration, synthetic_calibration=args.synthetic_calibration,
            n_check=args.check_windows, threshold=args.threshold, seed=args.seed, data_root=args.data_root,
            stem=args.stem, quantizer=args.quantizer, tolerance=tolerance,
        )
    if args.json:
        print(json.dumps([{"mode": c.mode, "path": str(c.path), "size_bytes": c.size_bytes,
                           "self_check": c.check} for c in done], indent=2))
        return 0
    print(f"{'MODE':<9} {'BYTES':>9}  {'MAX|d|':>9} {'LIMIT':>9}  FILE")
    for c in done:
        print(f"{c.mode:<9} {c.size_bytes:>9}  {c.check['max_abs']:>9.2e} {c.check['limit_max_abs']:>9.2e}  {c.path}")
    return 0
