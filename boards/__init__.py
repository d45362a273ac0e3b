"""Board definitions, one TOML file per board (installed as ``ppg_edge.boards``)."""
