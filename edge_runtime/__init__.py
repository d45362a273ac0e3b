"""The streaming runtime that ships to the device (installed as ``ppg_edge.edge_runtime``).

numpy and a TFLite interpreter only: this package never imports TensorFlow or scipy.
"""

# The device path runs on one core. numpy's OpenBLAS otherwise starts a thread per core at
# import, and those threads spin after each BLAS call: under the qemu count they added ~1.5M
# instructions per run and made counts vary by up to 0.4M per second of signal (ppg-edge bench
# arm, Cortex-A53); on a Pi they burn the other cores. The service unit, the benches and the
# virtual Pi's runs set these before Python starts (numpy reads them at import).
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
