"""Instruction counts of the device path on the board's core, for the HIL performance report.

A suite with an ``[instructions]`` table (``seconds``: signal counted, at least 5) gets, beside
its latency and energy figures, the count of ``ppg-edge bench arm`` for the HIL board: every
guest instruction of the device path (real driver on a bus fake, pipeline, interpreter, sink) at
the board file's runtime under ``qemu-aarch64`` with the board's CPU model, per path, and the
emulated chip's own count apart (it runs inside the DUT's measured process in HIL). Host side;
needs qemu-user and root (the virtual Pi's base stage), like the bench: without them the report
says why there is no count instead of failing the suite.
"""
from __future__ import annotations

import logging
from typing import Any

from ppg_edge.errors import ConfigError, HardwareError

log = logging.getLogger(__name__)


def count_for_report(board, seconds: float, data_root=None) -> dict[str, Any]:
    """``{"method", "cpu", "paths": {path: {insn_per_signal_s, modelled_mw, modelled_mj_per_sample}},
    "emulated_chip_insn_per_signal_s"}``, or ``{"error": why}`` when it cannot be counted here."""
    from ppg_edge.evaluate.arm_bench import bench

    try:
        doc = bench(board, seconds, stages=False, models=False, chip=True, equivalence=False,
                    data_root=data_root, progress=False)
    except (ConfigError, HardwareError, OSError) as exc:
        log.warning("no instruction count for the report: %s", exc)
        return {"error": str(exc)}
    return {"method": (f"qemu-aarch64 -cpu {doc['cpu']['qemu_cpu']} with a TCG instruction-count plugin "
                       f"(ppg-edge bench arm --board {board.identifier} --seconds {seconds:g}): the difference of "
                       f"{doc['lengths_s'][1]:g} s and {doc['lengths_s'][0]:g} s of {doc['record']}, driver included, "
                       f"emulated chip apart; power and energy modelled from the board file"),
            "cpu": doc["cpu"]["model"],
            "paths": {p: {"insn_per_signal_s": round(v["device_insn_per_signal_s"]),
                          "modelled_mw": round(v["modelled_mw"], 3),
                          "modelled_mj_per_sample": round(v["modelled_mj_per_sample"], 5)}
                      for p, v in doc["paths"].items()},
            "emulated_chip_insn_per_signal_s": round(doc.get("emulated_chip_insn_per_signal_s") or 0)}
