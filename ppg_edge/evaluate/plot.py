"""F1 versus SNR per detector, one panel per noise kind (matplotlib, Agg backend).

Input is the result of :func:`ppg_edge.evaluate.harness.evaluate_peaks` (or its JSON
form, ``PeakEvaluation.to_dict()``). Each panel plots, for one noise kind, the pooled F1
of every detector at each SNR of that kind; the clean condition is drawn as a dashed
horizontal line in the detector's colour (and a point at the panel's right edge).
Classic detectors (``nk-*``, ``dwt-*``) are dashed with triangles, models solid.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _doc(result) -> dict:
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_dict"):
        return result.to_dict()
    raise ConfigError(f"cannot plot a {type(result).__name__}; give a PeakEvaluation or its dict")


def f1_curves(result, dataset: str = "all", tolerance: str | None = None) -> dict:
    """``{detector: {"clean": f1 or None, kind: [(snr, f1), ...]}}`` from the pooled rows."""
    doc = _doc(result)
    pooled = [r for r in doc.get("pooled", []) if r["dataset"] == dataset]
    if not pooled:
        raise DataError(f"no pooled rows for data set {dataset!r} to plot")
    tol = tolerance or f"{doc['tolerances_ms'][0]:g}ms"
    out: dict[str, dict] = {}
    for r in pooled:
        if tol not in r["scores"]:
            raise ConfigError(f"tolerance {tol!r} not in the result ({sorted(r['scores'])})")
        f1 = r["scores"][tol]["f1"]
        f1 = None if f1 is None or (isinstance(f1, float) and math.isnan(f1)) else float(f1)
        d = out.setdefault(r["detector"], {"clean": None})
        if r["condition"] == "clean":
            d["clean"] = f1
        else:
            kind, _, snr = r["condition"].partition(":")
            d.setdefault(kind, []).append((float(snr), f1))
    for d in out.values():
        for k, v in d.items():
            if k != "clean":
                v.sort()
    return out


def plot_f1_vs_snr(result, path, dataset: str = "all", tolerance: str | None = None,
                   title: str | None = None) -> Path:
    """Write the PNG to ``path`` and return it. ``DataError`` when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = _doc(result)
    curves = f1_curves(doc, dataset, tolerance)
    tol = tolerance or f"{doc['tolerances_ms'][0]:g}ms"
    kinds = sorted({k for d in curves.values() for k in d if k != "clean"})
    panels = kinds or ["clean"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), sharey=True,
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    detectors = list(curves)
    all_snrs = sorted({s for d in curves.values() for k, v in d.items() if k != "clean" for s, _ in v})
    x_clean = (max(all_snrs) + 5.0) if all_snrs else 0.0
    lows = []
    for ax, kind in zip(axes[0], panels):
        for i, det in enumerate(detectors):
            c = colours[i % len(colours)]
            classic = det.startswith(("nk-", "dwt-"))
            style = "--" if classic else "-"
            pts = [(s, f) for s, f in curves[det].get(kind, []) if f is not None]
            if pts:
                ax.plot([s for s, _ in pts], [f for _, f in pts], style, marker="^" if classic else "o",
                        color=c, label=det, ms=4)
                lows.extend(f for _, f in pts)
            clean = curves[det]["clean"]
            if clean is not None:
                ax.axhline(clean, color=c, ls=":", lw=0.9, alpha=0.8)
                ax.plot([x_clean], [clean], marker="s", color=c, ms=4,
                        label=None if pts else det)
                lows.append(clean)
        ax.set_title(kind)
        ax.set_xlabel("SNR (dB); square: clean")
        if all_snrs:
            ax.set_xticks(all_snrs + [x_clean])
            ax.set_xticklabels([f"{s:g}" for s in all_snrs] + ["clean"])
        ax.grid(alpha=0.3)
    if not lows:
        plt.close(fig)
        raise DataError("no F1 values to plot")
    axes[0][0].set_ylabel(f"F1 (±{tol})")
    axes[0][0].set_ylim(max(0.0, min(lows) - 0.02), 1.005)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or f"F1 versus SNR, {dataset} records", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log.info("wrote %s", path)
    return path
