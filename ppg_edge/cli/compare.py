"""``ppg-edge compare``: Keras float vs TFLite variants of a saved peak model."""
from __future__ import annotations

import argparse
import shlex
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="compare Keras float with TFLite float32/float16/dynamic/int8 (size, latency, accuracy)",
        description="Convert a saved peak model to each mode (and pruned+int8 with --prune) and report "
                    "accuracy, file and gzip size, parameters and latency per window/sample (median, one "
                    "thread, ai-edge-litert) as NAME.md, NAME.json and NAME.png. With --heldout, accuracy "
                    "is F1 (+-50 ms) and ADE on the split's held-out TEST subjects, clean and at 10/5 dB, "
                    "each TFLite variant run by the device runtime; without it, agreement with the Keras "
                    "outputs on synthetic windows.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--name", default="compare", help="report file stem (default compare: compare.md/.json/.png)")
    p.add_argument("--mode", action="append", dest="modes", metavar="MODE",
                   help="modes to compare (default float32 float16 dynamic int8)")
    p.add_argument("--prune", type=float, default=None, metavar="SPARSITY", help="add pruned+int8 at this sparsity")
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--qat", type=int, default=None, metavar="EPOCHS",
                   help="add QAT int8 (Conv1D/Dense/attention annotated, LSTMs fused), fine-tuned this many epochs")
    p.add_argument("--heldout", action="store_true",
                   help="accuracy on the held-out test subjects of the model's split (needs the data)")
    p.add_argument("--calibration", default=None, metavar="LIST",
                   help="calibration list JSON of training-subject windows (default: synthetic windows)")
    p.add_argument("--synthetic-calibration", type=int, default=64, metavar="N")
    p.add_argument("--quantizer", default="best", choices=("best", "legacy", "mlir", "auto"),
                   help="int8 quantizer (as ppg-edge convert; 'best' picks on the calibration list's "
                        "validation windows, else on synthetic ones)")
    p.add_argument("--check-windows", type=int, default=32)
    p.add_argument("--runs", type=int, default=100, help="timed invokes per variant (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    bp = p.add_argument_group("BP models (MODEL_DIR holds config.json + model.keras): subject-wise CV, "
                              "float vs quantized on each held-out fold")
    bp.add_argument("--folds", default=None, help="comma list of folds to run (default: all of ppg-bp-10fold)")
    bp.add_argument("--epochs", type=int, default=30, help="max epochs per fold (early stopping)")
    bp.add_argument("--patience", type=int, default=6)
    bp.add_argument("--batch-size", type=int, default=32)
    bp.add_argument("--bp-calibration-windows", type=int, default=200)
    p.set_defaults(func=_handle)


def _handle_bp(args: argparse.Namespace, command: str) -> int:
    import json
    from pathlib import Path

    from ppg_edge.convert import bp_cv
    from ppg_edge.convert.bp import load_bp_keras
    from ppg_edge.errors import ConfigError
    from ppg_edge.provenance import machine

    for flag, value in (("--prune", args.prune), ("--qat", args.qat)):
        if value:
            raise ConfigError(f"{flag} applies to peak models; a BP model's report compares float32, "
                              "dynamic, plain int8 and int8 with output scaling per fold")
    _, cfg = load_bp_keras(args.model)
    folds = None if not args.folds else [int(k) for k in args.folds.split(",")]
    res = bp_cv.run_quantized_cv(float(cfg["fs"]), folds=folds, epochs=args.epochs, patience=args.patience,
                                 batch_size=args.batch_size, seed=int(cfg.get("seed", args.seed)),
                                 n_calibration=args.bp_calibration_windows, data_root=args.data_root)
    res.update({"model": str(args.model), "recipe": cfg.get("command"), "machine": machine(), "command": command})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name if args.name != "compare" else "compare-bp"
    (out / f"{name}.json").write_text(json.dumps(res, indent=2, sort_keys=True, default=float) + "\n")
    text = bp_cv.to_markdown(res)
    (out / f"{name}.md").write_text(text)
    print(text, end="")
    print(f"json: {out / (name + '.json')}\nmarkdown: {out / (name + '.md')}")
    return 0


def _handle(args: argparse.Namespace) -> int:
    from ppg_edge.convert.bp import is_bp_model_dir
    from ppg_edge.convert.compare import to_markdown
    from ppg_edge.convert.peaks import compare_saved_peak_model

    command = "ppg-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if is_bp_model_dir(args.model):
        return _handle_bp(args, command)

    result, paths = compare_saved_peak_model(
        args.model, args.out, tuple(args.modes or ("float32", "float16", "dynamic", "int8")),
        synthetic_calibration=args.synthetic_calibration, n_check=args.check_windows,
        prune_sparsity=args.prune, prune_epochs=args.prune_epochs, qat_epochs=args.qat, runs=args.runs,
        seed=args.seed,
        heldout=args.heldout, calibration_list=args.calibration, data_root=args.data_root, name=args.name,
        quantizer=args.quantizer,
        command=command,
    )
    print(to_markdown(result), end="")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
