"""The streaming runtime that ships to the device (installed as ``ppg_edge.edge_runtime``).

numpy and a TFLite interpreter only: this package never imports TensorFlow or scipy.
"""
