"""What every ``ppg-edge evaluate`` benchmark writes: its result files and the machine it ran on.

Shared by :mod:`.evaluate` (``evaluate peaks``) and :mod:`.evaluate_bp` (``evaluate bp``),
so neither imports the other for it.
"""
from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def write_outputs(args, doc: dict, table: str) -> None:
    """``--out`` JSON, ``--markdown`` table, then the table (or JSON with ``--json``) on stdout."""
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        log.info("wrote %s", args.out)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
        log.info("wrote %s", args.markdown)
    print(json.dumps(doc, indent=1) if args.json else table)



