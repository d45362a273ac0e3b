"""``ppg-edge compare``: Keras float vs TFLite variants of a saved peak model."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="compare Keras float with TFLite float32/float16/dynamic/int8 (size, latency, accuracy)",
        description="Convert a saved peak model to each mode (and pruned+int8 with --prune) and report "
                    "accuracy, file and gzip size, parameters and latency per window/sample (median, one "
                    "thread, ai-edge-litert) as compare.md, compare.json and compare.png. Without the "
                    "evaluation harness, accuracy is agreement with the Keras outputs on synthetic windows.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--mode", action="append", dest="modes", metavar="MODE",
                   help="modes to compare (default float32 float16 dynamic int8)")
    p.add_argument("--prune", type=float, default=None, metavar="SPARSITY", help="add pruned+int8 at this sparsity")
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--synthetic-calibration", type=int, default=64, metavar="N")
    p.add_argument("--check-windows", type=int, default=32)
    p.add_argument("--runs", type=int, default=100, help="timed invokes per variant (median)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from ppg_edge.convert.compare import to_markdown
    from ppg_edge.convert.peaks import compare_saved_peak_model

    result, paths = compare_saved_peak_model(
        args.model, args.out, tuple(args.modes or ("float32", "float16", "dynamic", "int8")),
        synthetic_calibration=args.synthetic_calibration, n_check=args.check_windows,
        prune_sparsity=args.prune, prune_epochs=args.prune_epochs, runs=args.runs, seed=args.seed,
    )
    print(to_markdown(result), end="")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
