"""``ppg-edge boards``: list the board files, show one, list the local hardware map."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("boards", help="list supported boards (board files) or show one",
                              description="List the committed board files, show one board, "
                                          "or list the units in the local hardware map.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--hardware", action="store_true",
                   help="list the units of the local hardware map instead "
                        "($PPG_EDGE_HARDWARE_MAP or ~/.config/ppg-edge/hardware-map.toml)")
    sub = p.add_subparsers(dest="boards_command", metavar="ACTION")
    show = sub.add_parser("show", help="show one board (identifier or path to a board file)")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", dest="show_json", help="machine-readable output")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from ppg_edge.boards import list_boards, load_board, load_hardware_map

    if args.boards_command == "show":
        board = load_board(args.name)
        if args.json or args.show_json:
            print(json.dumps(board.to_dict(), indent=2))
        else:
            print(_describe(board))
        return 0
    if args.hardware:
        hw = load_hardware_map()
        if args.json:
            print(json.dumps({"path": hw.path, "units": [u.__dict__ for u in hw.units]}, indent=2))
        elif not hw.units:
            print("no hardware map: no units attached to this host "
                  "(see boards/hardware-map.example.toml)")
        else:
            print(f"hardware map {hw.path}")
            for u in hw.units:
                print(f"  {u.name:<16} {u.board:<14} {u.host or '-':<28} i2c 0x{u.i2c_address:02x}  {u.serial_port}")
        return 0
    boards = list_boards()
    if args.json:
        print(json.dumps([b.to_dict() for b in boards], indent=2))
        return 0
    print(f"{'BOARD':<14} {'NAME':<56} {'CPU':<22} {'RAM':>7}  POWER idle/active")
    for b in boards:
        cpu = f"{b.cpu.cores}x {b.cpu.model} {b.cpu.clock_mhz}"
        print(f"{b.identifier:<14} {b.name:<56} {cpu:<22} {b.cpu.ram_mb:>4} MB  "
              f"{b.power.idle_w:g}/{b.power.active_w:g} W")
    return 0


def _describe(b) -> str:
    s = b.max30102
    lines = [
        f"{b.identifier}: {b.name}" + (f" (virtual, emulates {b.emulates})" if b.virtual else ""),
        f"  file         {b.path}",
        f"  cpu          {b.cpu.cores}x {b.cpu.model} @ {b.cpu.clock_mhz} MHz, {b.cpu.architecture}, "
        f"{b.cpu.ram_mb} MB RAM" + (f", QEMU_CPU={b.cpu.qemu_cpu}" if b.cpu.qemu_cpu else ""),
        f"  os           {b.os.name} ({b.os.release}, {b.os.bits}-bit), Python {b.os.python}",
        f"  i2c          {b.i2c.device} at {b.i2c.speed_hz // 1000} kHz",
        f"  max30102     0x{s.address:02x}, INT on GPIO {s.interrupt_gpio}, {s.mode} mode, "
        f"{s.sample_rate_hz} sps / avg {s.averaging} = {s.output_rate_hz:g} Hz out, "
        f"{s.pulse_width_us} us, {s.adc_range_na} nA, LED red {s.led_red_ma:g} mA IR {s.led_ir_ma:g} mA",
        f"  hil link     {b.uart.serial_port} at {b.uart.baudrate} baud",
        f"  interpreters {', '.join(b.interpreters)}",
        f"  power        idle {b.power.idle_w:g} W ({b.power.idle_source})",
        f"               active {b.power.active_w:g} W ({b.power.active_source})",
    ]
    if b.config_txt:
        lines.append(f"  config.txt   [{b.config_txt.section}] " + "; ".join(b.config_txt.lines))
    return "\n".join(lines)
