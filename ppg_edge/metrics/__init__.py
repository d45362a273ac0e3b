"""Scores shared by every role (NumPy only, so the device can use them too).

``peaks``: one-to-one peak matching and P/R/F1/ADE; ``bp``: blood-pressure errors
with the BHS, AAMI and IEEE 1708 criteria and the naive baseline.
"""
from .bp import bp_metrics, bp_report
from .peaks import PeakMatch, match_peaks, peak_scores, pool

__all__ = ["PeakMatch", "match_peaks", "peak_scores", "pool", "bp_metrics", "bp_report"]
