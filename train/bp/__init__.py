"""Blood-pressure models of the seed papers (installed as ``ppg_edge.train.bp``).

* :mod:`.cnn_lstm` -- the calibration-free CNN-LSTM of Hayirlioglu & Semiz (2025)
  and its Table 1 random search (KerasTuner).
* :mod:`.derivatives_model` -- CNN + LSTM over PPG, VPG, APG and JPG of one pulse
  (the "CNN+LSTM Blood Pressure Prediction" notebook, PPG_to_BP).
* :mod:`.multistage` -- the LSTM multi-stage transfer-learning cascade of Ali &
  Atef (2022) and its single-stage ANN and LSTM baselines.
* :mod:`.feature_baseline` -- gradient boosting on segment features.

TensorFlow is imported lazily (through :func:`ppg_edge.train.bp._keras.keras`),
always as tf_keras so that LSTMs convert to the fused TFLite op.
"""
