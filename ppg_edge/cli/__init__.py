"""The ``ppg-edge`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``. Modules import their heavy dependencies (TensorFlow,
scipy, NeuroKit2) inside the handler, so ``ppg-edge --help`` stays fast and the
edge install (no TensorFlow, no scipy) can run the commands it needs.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import PPGEdgeError

log = logging.getLogger("ppg_edge")

# Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "data",
    "boards",
    "flash",
    "evaluate",
    "demo",
    "hil",
    "deploy",
    "vpi",
    "run",
    "calibrate",
    "train",
    "convert",
    "compare",
    "bench",
)


class CLIError(PPGEdgeError, ValueError):
    """Bad command-line usage detected after parsing."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppg-edge",
        description="Train, quantize, deploy and hardware-test PPG models on a Raspberry Pi.",
    )
    parser.add_argument("--version", action="version", version=f"ppg-edge {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=bool(os.environ.get("PPG_EDGE_DEBUG")),
        help="show tracebacks and debug logs (also PPG_EDGE_DEBUG=1)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not debug:
        # Third-party chatter (TensorFlow, absl, matplotlib) only in debug mode.
        for noisy in ("tensorflow", "absl", "matplotlib", "h5py"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("ppg-edge: interrupted", file=sys.stderr)
        return 130
    except (PPGEdgeError, OSError) as exc:
        # Expected failures: bad input, missing data, hardware or link trouble.
        if args.debug:
            raise
        print(f"ppg-edge: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line unless --debug
        if args.debug:
            raise
        print(
            f"ppg-edge: error: internal error ({type(exc).__name__}: {exc}); "
            "rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
