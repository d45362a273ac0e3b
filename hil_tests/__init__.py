"""Hardware-in-the-loop harness and suites (installed as ``ppg_edge.hil_tests``)."""
