"""The one signal core: filtering, normalisation, derivatives, DWT, framing, pulses, rates.

numpy only at run time (the device has no scipy); scipy appears only inside
``filters.design_bandpass`` (offline design). Training and the device both call
:class:`ppg_edge.dsp.pipeline.Preprocessing`.
"""
from .filters import BANDS, Q31BiquadCascade, SOSFilter, design_bandpass, group_delay, sosfilt
from .pipeline import Preprocessing, bp_preprocessing, peaks_preprocessing

__all__ = [
    "BANDS", "Q31BiquadCascade", "SOSFilter", "design_bandpass", "group_delay", "sosfilt",
    "Preprocessing", "bp_preprocessing", "peaks_preprocessing",
]
