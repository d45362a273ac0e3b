"""Training of the Keras PPG models (installed as ``ppg_edge.train``).

Models are built with tf_keras (``TF_USE_LEGACY_KERAS=1``) so that every LSTM
converts to the fused TFLite op.
"""
