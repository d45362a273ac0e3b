"""Hand-made PPG features (numpy only: they run on the device too).

``ppg_edge.features.bp`` holds the blood-pressure features: physiologically
motivated per-pulse features and common statistical/spectral ones, per pulse,
per segment, and as a per-pulse sequence for the multi-stage LSTM.
"""
