"""``ppg-edge flash``: write Raspberry Pi OS Lite (64-bit) to an SD card or image and configure it."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "flash", help="write Raspberry Pi OS to an SD card (or image file) and configure it for a board",
        description="Verify a Raspberry Pi OS Lite (64-bit) image, write it to a removable disk or an "
                    "image file with read-back verification, and configure the boot partition for a "
                    "board: I2C, UART for the HIL link, MAX30102 interrupt pull-up, first user, SSH, "
                    "Wi-Fi, locale, and the ppg-edge bundle.")
    p.add_argument("--board", required=True, help="board identifier (see `ppg-edge boards`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="Raspberry Pi OS image (.img or .img.xz)")
    src.add_argument("--download", metavar="DIR", type=Path,
                     help="download the newest official Lite 64-bit image and its sha256 into DIR")
    p.add_argument("--sha256", help="expected sha256 of --image (default: IMAGE.sha256 beside it)")
    p.add_argument("--to", required=True, dest="target",
                   help="target: a whole disk (/dev/sdX, /dev/mmcblkN) or an image file path")
    p.add_argument("--hostname", default="ppg-edge")
    p.add_argument("--user", default="ppg", help="first user (Bookworm has no default user)")
    p.add_argument("--password-file", type=Path,
                   help="file whose first line is the user's password (stored as a SHA-512 crypt hash)")
    p.add_argument("--ssh-key", action="append", default=[],
                   help="OpenSSH public key to authorise: a key line or a .pub/authorized_keys file "
                        "(repeatable)")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-psk-file", type=Path, help="file whose first line is the Wi-Fi passphrase")
    p.add_argument("--wifi-psk", help="Wi-Fi passphrase (visible in the process list; prefer --wifi-psk-file)")
    p.add_argument("--country", help="Wi-Fi country, two letters (e.g. DE)")
    p.add_argument("--timezone", help="IANA time zone, e.g. Europe/Berlin")
    p.add_argument("--locale", help="e.g. en_GB.UTF-8")
    p.add_argument("--bundle", type=Path, help="ppg-edge edge bundle (file or folder) to install at first boot")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripted use)")
    p.add_argument("--force", action="store_true", help="allow a disk that does not report itself removable")
    p.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout for --download, seconds")
    # Test seams: fake /sys, /proc and /dev trees.
    for name in ("sys", "proc", "dev"):
        p.add_argument(f"--{name}-root", type=Path, default=Path(f"/{name}"), help=argparse.SUPPRESS)
    p.set_defaults(func=_handle)


def _first_line(path: Path, what: str) -> str:
    from ppg_edge.errors import ConfigError

    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    if not lines or not lines[0]:
        raise ConfigError(f"{what} {path}: empty")
    return lines[0]


def _handle(args: argparse.Namespace) -> int:
    from ppg_edge.boards import load_board
    from ppg_edge.boards.flash import FirstBoot, SystemRoots, download_image, flash, sha512_crypt
    from ppg_edge.errors import ConfigError

    board = load_board(args.board)  # unknown board: fail before anything slow
    password_hash = None
    if args.password_file:
        password_hash = sha512_crypt(_first_line(args.password_file, "--password-file"))
    keys = []
    for key in args.ssh_key:
        if key.startswith(("ssh-", "ecdsa-", "sk-")):
            keys.append(key.strip())
            continue
        try:
            text = Path(key).expanduser().read_text()
        except OSError as exc:
            raise ConfigError(f"--ssh-key {key}: not a key line and not a readable file ({exc.strerror or exc})") from None
        keys += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        if not keys:
            raise ConfigError(f"--ssh-key {key}: no key in the file")
    if args.wifi_psk and args.wifi_psk_file:
        raise ConfigError("give --wifi-psk or --wifi-psk-file, not both")
    psk = _first_line(args.wifi_psk_file, "--wifi-psk-file") if args.wifi_psk_file else args.wifi_psk
    fb = FirstBoot(hostname=args.hostname, user=args.user, password_hash=password_hash, ssh_keys=tuple(keys),
                   wifi_ssid=args.wifi_ssid, wifi_psk=psk, country=args.country, timezone=args.timezone,
                   locale=args.locale, bundle_name=args.bundle.name if args.bundle else None)
    image, sha = args.image, args.sha256
    if args.download:
        image, sha = download_image(args.download, timeout=args.timeout)
    report = flash(image, args.target, board, fb, sha256=sha, bundle=args.bundle, yes=args.yes,
                   force=args.force, dry_run=args.dry_run,
                   roots=SystemRoots(sys=args.sys_root, proc=args.proc_root, dev=args.dev_root))
    if report.dry_run:
        print(f"dry run: {report.image} (sha256 ok, {report.raw_size} bytes) -> {report.target_description}; "
              f"board {report.board}; nothing written")
    else:
        print(f"wrote {report.image} to {report.target_description}; read-back sha256 {report.written_sha256}")
        print(f"boot partition configured for {report.board}: " + ", ".join(sorted(report.boot_files)))
    return 0
