"""What goes onto the boot partition for one board: config.txt, cmdline.txt, first boot.

Text is built by pure functions (tested on their own), then written into the
FAT boot partition with pyfatfs at the offset the MBR gives (no root, no loop
mount). Raspberry Pi OS Bookworm reads, on first boot:

- ``userconf.txt``: ``user:crypt-hash``, the first user (Bookworm has no default user);
- ``ssh`` (empty): enable the SSH server;
- ``cmdline.txt``: here it gains ``systemd.run=<boot>/firstrun.sh`` so the script runs
  once as root, after which the script removes those words and itself, and
  ``systemd.run_success_action=reboot`` reboots into the configured system.

``firstrun.sh`` sets the hostname, installs the SSH key, writes a NetworkManager
Wi-Fi profile (PSK stored as its PBKDF2 hash, not in clear), sets locale and
timezone, frees the UART from the login console, loads ``i2c-dev``, and, when a
bundle was given, installs the ppg-edge edge bundle and its service.

Bundle contract (a file or folder copied to ``<boot>/ppg-edge/bundle``): a
``.tar.gz``/``.tgz`` is unpacked into ``/opt/ppg-edge/bundle``, a folder is
copied there. If it has ``install.sh`` that script is run; otherwise every
``*.whl`` in it is installed (``pip --no-index``) into ``/opt/ppg-edge/venv``.
A ``*.service`` file in it is installed under /etc/systemd/system and enabled.
"""
from __future__ import annotations

import hashlib
import logging
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ppg_edge.boards.registry import Board
from ppg_edge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BEGIN = "# >>> ppg-edge"
END = "# <<< ppg-edge"
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TIMEZONE = re.compile(r"^[A-Za-z]+(?:/[A-Za-z0-9_+-]+)*$")
_LOCALE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}\.UTF-8$")
_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( .*)?$")
SERIAL_CONSOLES = ("serial0", "serial1", "ttyAMA", "ttyS")


@dataclass(frozen=True)
class FirstBoot:
    """First-boot settings; validated on construction."""

    hostname: str = "ppg-edge"
    user: str = "ppg"
    password_hash: str | None = None        # "$6$..."; None: SSH key only
    ssh_keys: tuple[str, ...] = ()
    wifi_ssid: str | None = None
    wifi_psk: str | None = None
    country: str | None = None
    timezone: str | None = None
    locale: str | None = None
    bundle_name: str | None = None          # file/folder name under <boot>/ppg-edge/
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _HOSTNAME.match(self.hostname):
            raise ConfigError(f"--hostname {self.hostname!r}: letters, digits and '-' (1-63, no '-' at the ends)")
        if not _USER.match(self.user) or self.user == "root":
            raise ConfigError(f"--user {self.user!r}: a lower-case login name, not root")
        if self.password_hash is not None and not self.password_hash.startswith("$6$"):
            raise ConfigError("password hash must be SHA-512 crypt ($6$...)")
        for key in self.ssh_keys:
            if not _KEY.match(key.strip()):
                raise ConfigError(f"--ssh-key: {key[:40]!r}... is not an OpenSSH public key line")
        if self.password_hash is None and not self.ssh_keys:
            raise ConfigError("no way to log in: give --ssh-key and/or --password-file")
        if (self.wifi_ssid is None) != (self.wifi_psk is None):
            raise ConfigError("--wifi-ssid and --wifi-psk go together")
        if self.wifi_ssid is not None:
            if not 1 <= len(self.wifi_ssid.encode()) <= 32:
                raise ConfigError(f"--wifi-ssid {self.wifi_ssid!r}: 1-32 bytes")
            if not 8 <= len(self.wifi_psk) <= 63 or not self.wifi_psk.isascii():
                raise ConfigError("--wifi-psk: 8-63 ASCII characters (WPA2 passphrase)")
            if self.country is None:
                raise ConfigError("--country is required with Wi-Fi (the radio stays blocked without it)")
        if self.country is not None and not _COUNTRY.match(self.country):
            raise ConfigError(f"--country {self.country!r}: a two-letter ISO 3166 code like DE or GB")
        if self.timezone is not None and not _TIMEZONE.match(self.timezone):
            raise ConfigError(f"--timezone {self.timezone!r}: an IANA name like Europe/Berlin")
        if self.locale is not None and not _LOCALE.match(self.locale):
            raise ConfigError(f"--locale {self.locale!r}: like en_GB.UTF-8")


# --------------------------------------------------------------------------- config.txt

def config_lines(board: Board) -> list[str]:
    """The config.txt block for ``board`` (between ppg-edge markers)."""
    if board.config_txt is None:
        raise ConfigError(f"board {board.identifier} is virtual: there is no SD card to configure")
    s = board.max30102
    lines = [
        f"{BEGIN} (board {board.identifier}; `ppg-edge flash` rewrites this block)",
        "[all]",
        "dtparam=i2c_arm=on",
        f"dtparam=i2c_arm_baudrate={board.i2c.speed_hz}",
        "enable_uart=1",
        f"# MAX30102 at 0x{s.address:02x} on i2c-{board.i2c.bus}; INT (open drain, active low) on GPIO "
        f"{s.interrupt_gpio}: input with pull-up",
        f"gpio={s.interrupt_gpio}=ip,pu",
        f"[{board.config_txt.section}]",
        *board.config_txt.lines,
        "[all]",
        END,
    ]
    return lines


def edit_config_txt(text: str, board: Board) -> str:
    """``text`` with the ppg-edge block replaced (or appended); other lines kept."""
    kept, inside = [], False
    for line in text.splitlines():
        if line.startswith(BEGIN):
            inside = True
        elif line.startswith(END) and inside:
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise DataError("config.txt: a ppg-edge block is opened but never closed; fix it by hand")
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept + [""] + config_lines(board)) + "\n"


# --------------------------------------------------------------------------- cmdline.txt

def edit_cmdline(text: str, boot_mount: str, firstrun: bool) -> str:
    """cmdline.txt without serial consoles, with the first-boot hook when asked; one line."""
    words = text.split()
    if not words:
        raise DataError("cmdline.txt is empty: not a Raspberry Pi OS boot partition")
    out = []
    for w in words:
        if w.startswith("console=") and w[len("console="):].split(",")[0].startswith(SERIAL_CONSOLES):
            continue  # the HIL link needs the UART, not a login console
        if w.startswith(("systemd.run=", "systemd.run_success_action=", "systemd.unit=kernel-command-line")):
            continue  # an older first-boot hook; replaced below
        out.append(w)
    if firstrun:
        out += [f"systemd.run={boot_mount}/firstrun.sh", "systemd.run_success_action=reboot",
                "systemd.unit=kernel-command-line.target"]
    return " ".join(out) + "\n"


# --------------------------------------------------------------------------- first boot

def wpa_psk_hex(ssid: str, passphrase: str) -> str:
    """The 256-bit WPA2 PSK (IEEE 802.11i: PBKDF2-HMAC-SHA1, 4096 rounds, SSID as salt)."""
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


def userconf(fb: FirstBoot) -> str:
    # "*" is a locked password: SSH key login only.
    return f"{fb.user}:{fb.password_hash or '*'}\n"


def nm_connection(fb: FirstBoot) -> str:
    return "\n".join([
        "[connection]", "id=ppg-edge-wifi", "type=wifi", "autoconnect=true", "",
        "[wifi]", "mode=infrastructure", f"ssid={fb.wifi_ssid}", "",
        "[wifi-security]", "key-mgmt=wpa-psk", f"psk={wpa_psk_hex(fb.wifi_ssid, fb.wifi_psk)}", "",
        "[ipv4]", "method=auto", "", "[ipv6]", "method=auto", "",
    ])


def firstrun_script(board: Board, fb: FirstBoot) -> str:
    """The one-shot root script run by systemd at first boot."""
    q = shlex.quote
    boot = board.os.boot_mount or "/boot/firmware"
    sh = [
        "#!/bin/bash",
        f"# Written by `ppg-edge flash` for board {board.identifier}. Runs once at first boot as root,",
        "# then removes its hook from cmdline.txt and deletes itself.",
        "set -u",
        "exec >>/var/log/ppg-edge-firstrun.log 2>&1",
        'echo "ppg-edge firstrun $(date -Is)"',
        f"BOOT={q(boot)}",
        f"NEW_HOST={q(fb.hostname)}",
        f"PPG_USER={q(fb.user)}",
        "",
        "# hostname",
        "OLD_HOST=$(tr -d ' \\t\\n\\r' </etc/hostname)",
        'echo "$NEW_HOST" >/etc/hostname',
        'sed -i "s/127\\.0\\.1\\.1.*$OLD_HOST/127.0.1.1\\t$NEW_HOST/" /etc/hosts',
        'hostnamectl set-hostname "$NEW_HOST" 2>/dev/null || true',
        "",
        "# first user (userconf.txt normally does this; do it here if it has not happened yet)",
        'if ! id -u "$PPG_USER" >/dev/null 2>&1; then',
        f"  HASH={q(fb.password_hash or '*')}",
        '  if [ -x /usr/lib/userconf-pi/userconf ]; then /usr/lib/userconf-pi/userconf "$PPG_USER" "$HASH"',
        '  else useradd -m -s /bin/bash -p "$HASH" "$PPG_USER"; fi',
        "fi",
        'for g in i2c dialout gpio sudo; do getent group "$g" >/dev/null && usermod -aG "$g" "$PPG_USER"; done',
        'HOME_DIR=$(getent passwd "$PPG_USER" | cut -d: -f6)',
        "",
        "# SSH",
    ]
    if fb.ssh_keys:
        sh += ['install -d -m 700 -o "$PPG_USER" -g "$PPG_USER" "$HOME_DIR/.ssh"',
               "cat >>\"$HOME_DIR/.ssh/authorized_keys\" <<'PPG_EDGE_KEYS'",
               *[k.strip() for k in fb.ssh_keys],
               "PPG_EDGE_KEYS",
               'chown "$PPG_USER:$PPG_USER" "$HOME_DIR/.ssh/authorized_keys"',
               'chmod 600 "$HOME_DIR/.ssh/authorized_keys"']
    if fb.password_hash is None:
        sh += ["echo 'PasswordAuthentication no' >/etc/ssh/sshd_config.d/ppg-edge.conf"]
    sh += ["systemctl enable ssh", ""]
    if fb.country:
        sh += ["# Wi-Fi regulatory country",
               f"raspi-config nonint do_wifi_country {q(fb.country)} 2>/dev/null || iw reg set {q(fb.country)} || true"]
    if fb.wifi_ssid is not None:
        sh += ["# Wi-Fi (NetworkManager; the PSK below is the PBKDF2 hash, not the passphrase)",
               "rfkill unblock wifi 2>/dev/null || true",
               "install -d -m 700 /etc/NetworkManager/system-connections",
               "cat >/etc/NetworkManager/system-connections/ppg-edge-wifi.nmconnection <<'PPG_EDGE_NM'",
               nm_connection(fb).rstrip("\n"),
               "PPG_EDGE_NM",
               "chmod 600 /etc/NetworkManager/system-connections/ppg-edge-wifi.nmconnection", ""]
    if fb.timezone:
        sh += [f"timedatectl set-timezone {q(fb.timezone)} 2>/dev/null || "
               f"ln -sf /usr/share/zoneinfo/{q(fb.timezone)} /etc/localtime"]
    if fb.locale:
        sh += [f"raspi-config nonint do_change_locale {q(fb.locale)} 2>/dev/null || "
               f"update-locale LANG={q(fb.locale)} || true"]
    sh += ["", "# sensor bus and HIL link",
           "echo i2c-dev >/etc/modules-load.d/ppg-edge.conf",
           "systemctl disable --now serial-getty@serial0.service serial-getty@ttyAMA0.service "
           "serial-getty@ttyS0.service 2>/dev/null || true"]
    for svc in board.uart.disable_services:
        sh.append(f"systemctl disable {q(svc)} 2>/dev/null || true")
    if fb.bundle_name:
        b = q(f"{boot}/ppg-edge/{fb.bundle_name}")
        sh += ["", "# ppg-edge edge bundle",
               "install -d /opt/ppg-edge/bundle",
               f"SRC={b}",
               'case "$SRC" in',
               '  *.tar.gz|*.tgz) tar -xzf "$SRC" -C /opt/ppg-edge/bundle ;;',
               '  *) if [ -d "$SRC" ]; then cp -r "$SRC"/. /opt/ppg-edge/bundle/; '
               'else cp "$SRC" /opt/ppg-edge/bundle/; fi ;;',
               "esac",
               "cd /opt/ppg-edge/bundle",
               "if [ -x ./install.sh ] || [ -f ./install.sh ]; then bash ./install.sh",
               "else",
               "  python3 -m venv /opt/ppg-edge/venv",
               "  /opt/ppg-edge/venv/bin/pip install --no-index --find-links /opt/ppg-edge/bundle "
               "/opt/ppg-edge/bundle/*.whl",
               "fi",
               'for unit in /opt/ppg-edge/bundle/*.service; do [ -e "$unit" ] || continue',
               '  cp "$unit" /etc/systemd/system/ && systemctl enable "$(basename "$unit")"',
               "done",
               'chown -R "$PPG_USER:$PPG_USER" /opt/ppg-edge']
    sh += ["", "# remove the one-shot hook",
           'sed -i "s| systemd.run=[^ ]*||; s| systemd.run_success_action=[^ ]*||; '
           's| systemd.unit=kernel-command-line.target||" "$BOOT/cmdline.txt"',
           'rm -f "$BOOT/firstrun.sh"',
           'echo "ppg-edge firstrun done"',
           "exit 0", ""]
    return "\n".join(sh)


def boot_files(board: Board, fb: FirstBoot, config_txt: str, cmdline_txt: str) -> dict[str, str]:
    """Every text file to write on the boot partition, by path."""
    boot = board.os.boot_mount or "/boot/firmware"
    return {
        "/config.txt": edit_config_txt(config_txt, board),
        "/cmdline.txt": edit_cmdline(cmdline_txt, boot, firstrun=True),
        "/userconf.txt": userconf(fb),
        "/ssh": "",
        "/firstrun.sh": firstrun_script(board, fb),
    }


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name} on the boot partition is not UTF-8 text ({exc})") from None


def configure_boot_partition(disk: Path, board: Board, fb: FirstBoot, bundle: Path | None = None) -> dict[str, str]:
    """Edit the FAT boot partition inside ``disk`` (image file or device); returns what was written."""
    try:
        import pyfatfs  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"editing the FAT boot partition needs pyfatfs ({exc}); "
                          "install it: pip install 'ppg-edge[flash]' or pip install pyfatfs") from None

    from . import fatfs
    from .mbr import boot_partition

    with open(disk, "rb") as fh:
        part = boot_partition(fh, str(disk), disk_size=fh.seek(0, 2))
    log.info("%s: boot partition %d at byte %d (%d MB)", disk, part.index, part.offset, part.size // 10**6)
    with fatfs.open_fat(disk, part.offset, what=f"partition {part.index}") as fat:
        # FAT names are case-insensitive: Linux and Windows store config.txt as CONFIG.TXT with
        # lower-case flags, a card edited elsewhere may hold Config.TXT (fatfs).
        missing = [n for n in ("/config.txt", "/cmdline.txt") if not fatfs.exists(fat, n)]
        if missing:
            raise DataError(f"{disk}: boot partition has no {', '.join(missing)}: not a Raspberry Pi OS image")
        files = boot_files(board, fb, _text(fatfs.read_bytes(fat, "/config.txt"), "config.txt"),
                           _text(fatfs.read_bytes(fat, "/cmdline.txt"), "cmdline.txt"))
        for name, text in files.items():
            fatfs.write_bytes(fat, name, text.encode())
        if bundle is not None:
            dest = f"/ppg-edge/{bundle.name}"
            if bundle.is_dir():
                fatfs.copy_tree(fat, bundle, dest)
            else:
                fatfs.makedirs(fat, "/ppg-edge")
                with open(bundle, "rb") as src:
                    fatfs.upload(fat, dest, src)
    return files
