"""The DWT-CNN-LSTM-attention PPG peak detector family (installed as ``ppg_edge.train.peaks``).

After Georgieva-Tsaneva G., "Improved PPG Peak Detection Using a Hybrid DWT-CNN-LSTM
Architecture with a Temporal Attention Mechanism", Computation 2025, 13(12), 273,
https://doi.org/10.3390/computation13120273.

``variants`` lists the paper's 30 configurations (Table 2) as data; ``models`` builds
them with tf_keras; ``losses`` holds BCE + a differentiable PeakDistanceLoss;
``labels`` turns peak indices into per-sample targets; ``fit`` trains and saves;
``detector`` chooses a model's raw-axis mapping on the val subjects; ``dataset`` assembles real and
synthetic training windows from the subject-wise split; ``train`` runs one training job
(threshold on the val subjects, report, model card) or a sweep. The paper's classic
wavelet detector and a saved model as a detector live on the evaluation side
(``ppg_edge.evaluate.dwt_baseline``, ``ppg_edge.evaluate.peak_model``). TensorFlow is imported lazily
inside the functions that need it, never at module import.
"""
