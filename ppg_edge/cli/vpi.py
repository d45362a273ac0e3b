"""``ppg-edge vpi``: build, start, stop and inspect a virtual arm64 Raspberry Pi."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("vpi", help="a virtual arm64 Raspberry Pi (qemu-user chroot) to deploy to",
                              description="Build an arm64 Debian bookworm userland, run it through "
                                          "qemu-user with sshd on 127.0.0.1, and take it down again. "
                                          "Needs root, qemu-user-static and binfmt-support.")
    sub = p.add_subparsers(dest="vpi_command", metavar="ACTION", required=True)
    for name, text in (("build", "build (or reuse from the cache) the virtual Pi"),
                       ("up", "mount /proc, /sys, /dev and the cpuinfo; start sshd"),
                       ("down", "stop what `up` started and unmount what it mounted"),
                       ("status", "show mounts, processes and the ssh settings")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--board", default="virtual-rpi4", help="virtual board (default virtual-rpi4)")
        s.add_argument("--dir", help="virtual Pi folder (default: cache/vpi/BOARD)")
        if name == "build":
            s.add_argument("--rebuild", action="store_true", help="ignore the cached stages")
        if name == "up":
            s.add_argument("--port", type=int, default=0, help="ssh port on 127.0.0.1 (default: a free one)")
        if name == "status":
            s.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ppg_edge.boards.virtual import VirtualPi, build, default_dir

    vpi_dir = Path(args.dir) if args.dir else default_dir(args.board)
    if args.vpi_command == "build":
        out = build(args.board, vpi_dir, rebuild=args.rebuild)
        print(f"virtual Pi {args.board} built in {out}")
        return 0
    vpi = VirtualPi(vpi_dir, board=args.board)
    if args.vpi_command == "up":
        if not 0 <= args.port <= 65535:
            from ppg_edge.errors import ConfigError
            raise ConfigError(f"--port {args.port}: not a TCP port")
        vpi.requested_port = args.port
        vpi.up()
        print(f"virtual Pi {args.board} up on 127.0.0.1:{vpi.port}")
        print(f"  ppg-edge deploy --board {args.board} --host {vpi.host} --port {vpi.port} "
              f"--identity {vpi.identity} --known-hosts {vpi.known_hosts} --service-manager none")
        return 0
    if args.vpi_command == "down":
        problems = vpi.down()
        for p in problems:
            print(f"problem: {p}")
        print("virtual Pi down" if not problems else "virtual Pi down with problems (see above)")
        return 1 if problems else 0
    st = vpi.status()
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        print(f"{st['board']} in {st['dir']}: {'built' if st['built'] else 'not built'}, "
              f"{'up on port ' + str(st['port']) if st['up'] else 'down'}")
        for m, ok in st["mounts"].items():
            print(f"  mount {m}: {'mounted' if ok else 'NOT mounted'}")
        for pid, ok in st["pids"].items():
            print(f"  pid {pid}: {'running' if ok else 'gone'}")
    return 0
