"""Board definitions, one TOML file per board (installed as ``ppg_edge.boards``).

``load_board("rpi4b")`` and ``list_boards()`` read and validate the committed
files; ``load_hardware_map()`` reads the local (uncommitted) map of physical
units attached to this host.
"""
from .hardware_map import HardwareMap, Unit, hardware_map_path, load_hardware_map
from .registry import Board, board_names, list_boards, load_board, parse_board

__all__ = ["Board", "HardwareMap", "Unit", "board_names", "hardware_map_path", "list_boards",
           "load_board", "load_hardware_map", "parse_board"]
