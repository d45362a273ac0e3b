"""The held-out test section of a peak model's ``MODEL_CARD.md``.

``ppg-edge evaluate peaks --split test --model-cards`` calls :func:`write_test_section`
for every model detector of the run: the card gets (or has replaced) a section
``## Held-out test`` before ``## Limits``, with the pooled and per-data-set scores of the
model on the test subjects of the split and, per condition, the best classic detector of
the same run (same records, same noisy signals).
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from ppg_edge.errors import ConfigError

log = logging.getLogger(__name__)

HEADING = "## Held-out test"
CLASSIC_PREFIXES = ("nk-", "dwt-")


def _f(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def test_section(doc: dict, detector: str, raw_axis: dict | None = None) -> str:
    """Markdown of the held-out section for ``detector`` from an evaluation JSON ``doc``."""
    pooled = doc["pooled"]
    rows = [r for r in pooled if r["detector"] == detector]
    if not rows:
        raise ConfigError(f"detector {detector!r} is not in this evaluation")
    datasets = sorted({r["dataset"] for r in rows} - {"all"})
    first, second = (f"{t:g}ms" for t in doc["tolerances_ms"][:2])
    classic = [d for d in doc["detectors"] if d.startswith(CLASSIC_PREFIXES)]
    split = doc.get("split", {})
    recs = split.get("records", [])
    head = ["condition", f"F1 {first}", f"F1 {second}", "P", "R", "ADE ms"]
    head += [f"{ds} F1 {first}" for ds in datasets]
    if classic:
        head += [f"best classic F1 {first}", "model - classic"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cond in doc["conditions"]:
        r = next(x for x in rows if x["dataset"] == "all" and x["condition"] == cond)
        s = r["scores"][first]
        cells = [cond, _f(s["f1"]), _f(r["scores"][second]["f1"]), _f(s["precision"]),
                 _f(s["recall"]), _f(s["ade_ms"], 1)]
        for ds in datasets:
            x = next((x for x in rows if x["dataset"] == ds and x["condition"] == cond), None)
            cells.append(_f(x["scores"][first]["f1"]) if x else "-")
        if classic:
            best = max(((p["scores"][first]["f1"], p["detector"]) for p in pooled
                        if p["dataset"] == "all" and p["condition"] == cond
                        and p["detector"] in classic), key=lambda t: -1 if t[0] is None else t[0])
            cells += [f"{_f(best[0])} ({best[1]})",
                      f"{s['f1'] - best[0]:+.3f}" if s["f1"] is not None and best[0] is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    mapping = raw_axis or {}
    return f"""{HEADING} ({split.get('part', '?')} subjects of split {split.get('name', '?')})
Measured by the evaluation command, never used for training, threshold or mapping choices:
`{doc.get('command', '?')}`
on {doc.get('machine', {}).get('platform', '?')} ({doc.get('machine', {}).get('cpus', '?')} CPUs).
Records: {', '.join(recs)}. Whole records at their own rate (resampled to 125 Hz for the
model, peaks mapped back); raw-axis mapping {mapping.get('mapping', 'snap')}{
    f" within {mapping['radius_s'] * 1000:g} ms" if mapping.get('mapping', 'snap') == 'snap' else ''}{
    f" to the raw PPG smoothed over {mapping['smooth_s'] * 1000:g} ms" if mapping.get('smooth_s') else ''}{
    f", then within {mapping['refine_s'] * 1000:g} ms to the raw maximum" if mapping.get('refine_s') else ''}{
    f" (chosen on the {mapping['chosen_on']}: docs/results/peaks-val-mapping.json; the validation "
    "table above predates it)" if mapping.get('chosen_on') else ''}.
Noise added to the raw record (`ppg_edge.synth.add_noise`, SNR against the 0.5-8 Hz band
power), the same noisy signal for every detector. Pooled one-to-one matching; ADE of the
{first} matches. "best classic": the best of {', '.join(classic) or 'none'} in the same run.

{chr(10).join(lines)}
"""


def write_test_section(card: Path, section: str) -> None:
    """Put ``section`` into ``card``: replace an earlier one, else insert before ``## Limits``."""
    card = Path(card)
    text = card.read_text()
    pattern = re.compile(rf"^{re.escape(HEADING)}.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda m: section.rstrip() + "\n\n", text, count=1)
    elif "\n## Limits" in text:
        text = text.replace("\n## Limits", "\n" + section.rstrip() + "\n\n## Limits", 1)
    else:
        text = text.rstrip() + "\n\n" + section
    text = text.replace("- Validation only; test subjects are untouched until the evaluation command "
                        "reports them.",
                        "- The held-out table is the only look at the test subjects; nothing was "
                        "tuned on it.")
    card.write_text(text)
    log.info("wrote the held-out test table into %s", card)
