"""``ppg-edge deploy``: push a release to a Pi over ssh, or show / roll back what is there."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("deploy", help="deploy a release to a Raspberry Pi over ssh (with rollback)",
                              description="Bundle the project wheel, models, board file and systemd unit; "
                                          "push over ssh (host keys checked); install into a new release "
                                          "folder; switch `current` atomically; restart; smoke-check; roll "
                                          "back on any failure.")
    p.add_argument("--board", required=True, help="board identifier or board file")
    p.add_argument("--host", required=True, help="user@host of the device")
    p.add_argument("--port", type=int, default=22, help="ssh port (default 22)")
    p.add_argument("--identity", help="ssh private key")
    p.add_argument("--known-hosts", help="known_hosts file holding the device's host key "
                                         "(default ~/.ssh/known_hosts; unknown keys are refused)")
    p.add_argument("--models", help="folder of *.tflite models, each with its *.json manifest")
    p.add_argument("--wheel", help="a built ppg_edge wheel (default: build one with pip wheel)")
    p.add_argument("--root", default="/opt/ppg-edge", help="install root on the device")
    p.add_argument("--service-manager", choices=("auto", "systemd", "none"), default="auto",
                   help="how to restart the service (auto: systemd if the device runs it)")
    p.add_argument("--service-user", default="pi", help="unprivileged user the service runs as")
    p.add_argument("--profile", help="the wearer's profile (TOML/JSON: age, sex, height_cm, weight_kg), checked "
                                     "here and installed as the device's state/profile.toml (the BP model's "
                                     "profile variant then runs); without it the device keeps the one it has")
    p.add_argument("--dry-run", action="store_true", help="build the bundle and print each step; change nothing")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="show the current and installed releases")
    mode.add_argument("--rollback", action="store_true", help="switch back to the previous release")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ppg_edge.boards.deploy import Deployer, DryRunner, SSHRunner, build_bundle
    from ppg_edge.boards.registry import load_board

    board = load_board(args.board)
    runner = SSHRunner(args.host, port=args.port,
                       identity=Path(args.identity) if args.identity else None,
                       known_hosts=Path(args.known_hosts) if args.known_hosts else None)
    say = print if not args.json else (lambda m: print(m, file=sys.stderr))
    use = DryRunner(runner, out=sys.stderr if args.json else None) if args.dry_run else runner
    dep = Deployer(use, root=args.root, python=f"python{board.os.python}",
                   service_manager=args.service_manager, sudo=not args.host.startswith("root@"), say=say)
    if args.status:
        st = dep.status()
        print(json.dumps(st, indent=2) if args.json else
              f"current: {st['current'] or '(none)'}\nreleases:\n" + "".join(f"  {r}\n" for r in st["releases"]))
        return 0
    if args.rollback:
        rep = dep.rollback()
        print(json.dumps(rep.__dict__, indent=2) if args.json else
              f"rolled back from {rep.previous} to {rep.release}")
        return 0
    with tempfile.TemporaryDirectory(prefix="ppg-edge-bundle-") as tmp:
        bundle = build_bundle(Path(tmp) / "bundle", board, wheel=Path(args.wheel) if args.wheel else None,
                              models_dir=Path(args.models) if args.models else None,
                              root=args.root, user=args.service_user,
                              profile=Path(args.profile) if args.profile else None)
        say(f"bundle {bundle.release}: {len(bundle.manifest['files'])} files")
        rep = dep.deploy(bundle)
    if args.json:
        print(json.dumps(rep.__dict__, indent=2))
    elif args.dry_run:
        print("dry run: nothing was changed on the device")
    else:
        print(f"deployed {rep.release} (previous: {rep.previous or 'none'}); smoke check passed")
    return 0
