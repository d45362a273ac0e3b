"""Benchmarks on data sets: the detector registry (``detectors``) and the peak
harness (``harness.evaluate_peaks``). Host-side; the nk-* detectors need NeuroKit2."""
