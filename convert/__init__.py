"""Quantization and TFLite conversion with manifests (installed as ``ppg_edge.convert``)."""
