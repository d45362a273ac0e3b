"""ppg-edge flash: on a small MBR + FAT16 disk image built here; fake /sys, /proc and /dev trees.

Nothing here opens a real disk: device targets live under a fake dev root in
tmp_path, where regular files stand in for block devices.
"""
from __future__ import annotations

import hashlib
import importlib.util
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ppg_edge.boards import load_board
from ppg_edge.boards.flash import (
    ChecksumError,
    FirstBoot,
    SystemRoots,
    UnsafeTargetError,
    boot_partition,
    check_target,
    download_image,
    edit_cmdline,
    edit_config_txt,
    fatfs,
    flash,
    inspect_target,
    make_mbr,
    parse_mbr,
    sha512_crypt,
)
from ppg_edge.boards.flash.bootconfig import wpa_psk_hex
from ppg_edge.cli import main
from ppg_edge.errors import ConfigError, DataError, DownloadError

HAVE_FAT = importlib.util.find_spec("pyfatfs") is not None
needs_fat = pytest.mark.skipif(not HAVE_FAT, reason="pyfatfs (flash's FAT editor; the 'flash' extra) is not installed")

BOOT_LBA, BOOT_SECTORS, ROOT_SECTORS = 2048, 16384, 2048      # 8 MiB FAT16, 1 MiB "root"
STOCK_CONFIG = "# stock\n#dtparam=i2c_arm=on\n[cm4]\notg_mode=1\n[all]\narm_64bit=1\n"
STOCK_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=5eed5eed-02 rootfstype=ext4 "
                 "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0000000000000000000 tester@host"


SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
FAT_TOOLS = {"mkfs.vfat": "dosfstools", "fsck.vfat": "dosfstools", "mcopy": "mtools", "mmd": "mtools",
             "mdir": "mtools", "mtype": "mtools"}


def fat_tool(name: str) -> str:
    """Path of a dosfstools/mtools program; skips (not root) or fails (root: `make test` installs them)."""
    found = shutil.which(name, path=SBIN_PATH)
    if found:
        return found
    missing = sorted({t for t in FAT_TOOLS if shutil.which(t, path=SBIN_PATH) is None})
    packages = " and ".join(sorted({FAT_TOOLS[t] for t in missing}))
    msg = (f"{', '.join(missing)} not found: install the {packages} packages "
           "(`make system-deps` as root, or apt-get install dosfstools mtools)")
    if os.geteuid() == 0:
        pytest.fail(msg)
    pytest.skip(msg)


def tool(*argv: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C.UTF-8"}
    done = subprocess.run([fat_tool(argv[0]), *argv[1:]], capture_output=True, env=env, **kw)
    if done.returncode:
        pytest.fail(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr!r}")
    return done


def make_fat(fat: Path, fat32: bool, files: dict[str, str | None], maker: str, dirs: tuple[str, ...] = ()) -> None:
    """A FAT file system in ``fat`` holding ``files`` (path as stored: its case is kept) and ``dirs``.

    ``maker`` "pyfatfs": the project's own writer (pyfatfs, names in long entries where the case
    needs one; "pyfatfs-8.3": upper-case 8.3 names only). "mtools": mkfs.vfat + mmd + mcopy, as
    Linux stores names: an all-lower-case 8.3 name as a short entry with the NT lower-case flags,
    mixed case or a long name in a long (VFAT) entry.
    """
    sectors = 34 * 2048 if fat32 else BOOT_SECTORS
    if maker.startswith("pyfatfs"):
        from pyfatfs.PyFat import PyFat
        from pyfatfs.PyFatFS import PyFatFS

        fat.write_bytes(b"")
        pf = PyFat()
        pf.mkfs(str(fat), PyFat.FAT_TYPE_FAT32 if fat32 else PyFat.FAT_TYPE_FAT16, size=sectors * 512,
                label="BOOTFS")  # upper case, as mkfs stores it
        pf.close()
        fs = PyFatFS(str(fat), preserve_case=maker == "pyfatfs")
        for d in dirs:
            fs.makedirs(d)
        for name, text in files.items():
            if text is not None:
                fs.writetext(name, text)
        fs.close()
    elif maker == "mtools":
        with open(fat, "wb") as fh:
            fh.truncate(sectors * 512)
        tool("mkfs.vfat", "-F", "32" if fat32 else "16", "-S", "512", "-s", "1",
             "-n", "BOOTFS", str(fat))
        for d in dirs:
            tool("mmd", "-i", str(fat), "::" + d)
        src = fat.with_name("src")
        src.mkdir(exist_ok=True)
        for i, (name, text) in enumerate(files.items()):
            if text is not None:
                (src / str(i)).write_text(text)
                tool("mcopy", "-i", str(fat), str(src / str(i)), "::" + name)
        shutil.rmtree(src)
    else:
        raise ValueError(maker)


def build_image(folder: Path, rng, config=STOCK_CONFIG, cmdline=STOCK_CMDLINE, xz=True, fat32=False,
                maker="pyfatfs", config_name="/config.txt", cmdline_name="/cmdline.txt",
                dirs: tuple[str, ...] = ()) -> Path:
    """A 10 MiB disk: MBR, FAT16 boot partition with config.txt/cmdline.txt, random 'root'.

    ``fat32``: a 34 MiB FAT32 boot partition of type 0x0C instead, as Raspberry Pi OS uses.
    ``maker``, ``*_name``, ``dirs``: how the boot partition is made and what its names are (make_fat).
    """
    fat = folder / "fat.bin"
    sectors = 34 * 2048 if fat32 else BOOT_SECTORS
    make_fat(fat, fat32, {config_name: config, cmdline_name: cmdline}, maker, dirs)
    raw = (make_mbr([(0x0C if fat32 else 0x0E, BOOT_LBA, sectors), (0x83, BOOT_LBA + sectors, ROOT_SECTORS)])
           + bytes(BOOT_LBA * 512 - 512) + fat.read_bytes()
           + rng.integers(0, 256, ROOT_SECTORS * 512, dtype="uint8").tobytes())
    fat.unlink()
    if xz:
        image = folder / "raspios-test-arm64-lite.img.xz"
        image.write_bytes(lzma.compress(raw, preset=0))
    else:
        image = folder / "raspios-test-arm64-lite.img"
        image.write_bytes(raw)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    image.with_name(image.name + ".sha256").write_text(f"{digest}  {image.name}\n")
    return image


def raw_bytes(image: Path) -> bytes:
    data = image.read_bytes()
    return lzma.decompress(data) if image.suffix == ".xz" else data


def read_boot(disk: Path) -> dict[str, bytes]:
    """Every file on the boot partition, by the name a FAT driver shows (long name, or 8.3 with its case flags)."""
    with fatfs.open_fat(disk, BOOT_LBA * 512, read_only=True) as fs:
        return {shown: fs.readbytes(stored) for shown, stored in fatfs.walk_files(fs)}


def mtools_boot(disk: Path) -> dict[str, bytes]:
    """The same, read by mtools (an independent FAT implementation)."""
    at = f"{disk}@@{BOOT_LBA * 512}"
    listing = tool("mdir", "-/", "-b", "-i", at, "::/", text=True).stdout.splitlines()
    names = [ln[2:] for ln in listing if ln.startswith("::/") and not ln.endswith("/")]
    return {n: tool("mtype", "-i", at, "::" + n).stdout for n in names}


def fsck_boot(disk: Path, fat32: bool) -> str:
    """``fsck.vfat -n`` over the boot partition; fails the test on any complaint."""
    sectors = 34 * 2048 if fat32 else BOOT_SECTORS
    part = disk.with_name(disk.name + ".boot")
    with open(disk, "rb") as fh:
        fh.seek(BOOT_LBA * 512)
        part.write_bytes(fh.read(sectors * 512))
    try:
        out = subprocess.run([fat_tool("fsck.vfat"), "-n", str(part)], capture_output=True, text=True)
    finally:
        part.unlink()
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def fake_system(tmp: Path, *, removable="1", mounted_part=False, root_on=None, model="SD Card Reader"):
    """Fake /sys, /proc and /dev: sda (system disk, 2 partitions) and sdb (the card, 2 partitions)."""
    sysr, proc, dev = tmp / "sys", tmp / "proc", tmp / "dev"
    for disk, major_minor, rem, mdl, size in (("sda", (8, 0), "0", "Samsung SSD 980", 1953525168),
                                             ("sdb", (8, 16), removable, model, 62333952)):
        d = sysr / "block" / disk
        (d / "device").mkdir(parents=True)
        (d / "dev").write_text(f"{major_minor[0]}:{major_minor[1]}\n")
        (d / "removable").write_text(rem + "\n")
        (d / "size").write_text(f"{size}\n")
        (d / "device" / "model").write_text(mdl + "\n")
        for i in (1, 2):
            part = d / f"{disk}{i}"
            part.mkdir()
            (part / "partition").write_text(f"{i}\n")
            (part / "dev").write_text(f"{major_minor[0]}:{major_minor[1] + i}\n")
            cls = sysr / "class" / "block" / f"{disk}{i}"
            cls.mkdir(parents=True)
            (cls / "partition").write_text(f"{i}\n")
            (cls / "dev").write_text(f"{major_minor[0]}:{major_minor[1] + i}\n")
        dev.mkdir(exist_ok=True)
        (dev / disk).write_bytes(b"")
        for i in (1, 2):
            (dev / f"{disk}{i}").write_bytes(b"")
    root = root_on or "sda2"
    root_num = {"sda2": "8:2", "sdb2": "8:18"}[root]
    mountinfo = [f"22 1 {root_num} / / rw,relatime shared:1 - ext4 /dev/{root} rw",
                 "23 22 0:5 / /proc rw - proc proc rw",
                 "24 22 8:1 / /boot/efi rw - vfat /dev/sda1 rw"]
    mounts = [f"/dev/{root} / ext4 rw 0 0", "proc /proc proc rw 0 0", "/dev/sda1 /boot/efi vfat rw 0 0"]
    if mounted_part:
        mountinfo.append("30 22 8:17 / /media/user/bootfs rw - vfat /dev/sdb1 rw")
        mounts.append("/dev/sdb1 /media/user/bootfs vfat rw 0 0")
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text("\n".join(mountinfo) + "\n")
    (proc / "mounts").write_text("\n".join(mounts) + "\n")
    (proc / "swaps").write_text("Filename Type Size Used Priority\n")
    return SystemRoots(sys=sysr, proc=proc, dev=dev)


FB = FirstBoot(hostname="bench1", user="ppg", ssh_keys=(KEY,))


# ------------------------------------------------------------------ pieces

def test_sha512_crypt_matches_openssl():
    if shutil.which("openssl") is None:
        pytest.skip("openssl not on PATH")
    for password, salt in (("raspberry", "saltsaltsaltsalt"), ("p", "x"), ("ä long pässword " * 9, "ab./CD12")):
        ref = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, password],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert sha512_crypt(password, salt) == ref


def test_sha512_crypt_rounds_and_random_salt():
    h1, h2 = sha512_crypt("pw"), sha512_crypt("pw")
    assert h1.startswith("$6$") and h1 != h2 and len(h1.split("$")[2]) == 16
    # glibc's crypt(3) as the reference for the rounds= form (stdlib crypt: deprecated, gone in 3.13)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt")
    for rounds in (1000, 10000):
        ref = crypt.crypt("Hello world!", f"$6$rounds={rounds}$saltstringsaltst")
        assert ref.startswith("$6$rounds=")
        assert sha512_crypt("Hello world!", "saltstringsaltst", rounds=rounds) == ref
    with pytest.raises(ConfigError, match="salt"):
        sha512_crypt("pw", "bad salt")


def test_mbr_parse_and_refusals():
    mbr = make_mbr([(0x0C, 8192, 1048576), (0x83, 1056768, 4000000)])
    parts = parse_mbr(mbr)
    assert [(p.index, p.type_id, p.lba_start, p.is_fat) for p in parts] == [
        (1, 0x0C, 8192, True), (2, 0x83, 1056768, False)]
    assert parts[0].bootable and parts[0].offset == 8192 * 512
    with pytest.raises(DataError, match="no MBR signature"):
        parse_mbr(bytes(512))
    with pytest.raises(DataError, match="GPT"):
        parse_mbr(make_mbr([(0xEE, 1, 100000)]))
    with pytest.raises(DataError, match="too short"):
        parse_mbr(b"\x00" * 100)


def test_boot_partition_needs_fat_and_fits(tmp_path):
    p = tmp_path / "d.img"
    p.write_bytes(make_mbr([(0x83, 2048, 100)]))
    with open(p, "rb") as fh, pytest.raises(DataError, match="no FAT boot partition"):
        boot_partition(fh, str(p))
    p.write_bytes(make_mbr([(0x0C, 2048, 100)]))
    with open(p, "rb") as fh, pytest.raises(DataError, match="beyond the end of the disk"):
        boot_partition(fh, str(p), disk_size=512)


def test_config_txt_edit_is_idempotent_and_keeps_the_rest():
    board = load_board("rpi-zero-2w")
    once = edit_config_txt(STOCK_CONFIG, board)
    assert edit_config_txt(once, board) == once
    assert once.startswith(STOCK_CONFIG.rstrip("\n"))
    block = once[once.index("# >>> ppg-edge"):]
    for line in ("[all]\ndtparam=i2c_arm=on", "dtparam=i2c_arm_baudrate=400000", "enable_uart=1",
                 "gpio=4=ip,pu", "[pi02]\ndtoverlay=disable-bt\n[all]"):
        assert line in block
    # switching boards replaces the block rather than stacking a second one
    pi5 = edit_config_txt(once, load_board("rpi5"))
    assert pi5.count("# >>> ppg-edge") == 1 and "dtparam=uart0=on" in pi5 and "disable-bt" not in pi5
    with pytest.raises(DataError, match="never closed"):
        edit_config_txt("# >>> ppg-edge\nx=1\n", board)


def test_cmdline_edit():
    out = edit_cmdline(STOCK_CMDLINE + "\n", "/boot/firmware", firstrun=True)
    assert out.endswith("\n") and out.count("\n") == 1
    words = out.split()
    assert "console=serial0,115200" not in words and "console=tty1" in words
    assert words[-3:] == ["systemd.run=/boot/firmware/firstrun.sh", "systemd.run_success_action=reboot",
                          "systemd.unit=kernel-command-line.target"]
    assert edit_cmdline(out, "/boot/firmware", firstrun=True) == out
    assert "console=ttyAMA0" not in edit_cmdline("console=ttyAMA0,115200 root=x", "/b", firstrun=False)
    with pytest.raises(DataError, match="empty"):
        edit_cmdline(" \n", "/b", firstrun=False)


def test_wpa_psk_matches_the_ieee_test_vector():
    # IEEE 802.11i-2004 Annex H.4 test vector
    assert wpa_psk_hex("IEEE", "password") == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"


@pytest.mark.parametrize("kwargs,message", [
    ({"hostname": "bad_host"}, "--hostname"),
    ({"user": "root"}, "--user"),
    ({"ssh_keys": ("not a key",)}, "not an OpenSSH public key"),
    ({"ssh_keys": ()}, "no way to log in"),
    ({"wifi_ssid": "lab"}, "go together"),
    ({"wifi_ssid": "lab", "wifi_psk": "short", "country": "DE"}, "8-63"),
    ({"wifi_ssid": "lab", "wifi_psk": "longenough"}, "--country is required"),
    ({"country": "Germany"}, "two-letter"),
    ({"timezone": "Europe/Berlin; rm -rf /"}, "--timezone"),
    ({"locale": "english"}, "--locale"),
])
def test_firstboot_rejects_bad_settings(kwargs, message):
    base = {"hostname": "h", "user": "ppg", "ssh_keys": (KEY,)}
    with pytest.raises(ConfigError, match=message):
        FirstBoot(**{**base, **kwargs})


# ------------------------------------------------------------------ whole runs

@needs_fat
def test_flash_to_image_file_writes_and_configures(tmp_path, rng):
    image = build_image(tmp_path, rng)
    bundle = tmp_path / "ppg-edge-bundle.tar.gz"
    bundle.write_bytes(rng.integers(0, 256, 50_000, dtype="uint8").tobytes())
    card = tmp_path / "card.img"
    pw = sha512_crypt("correct horse", "abcdefgh")
    fb = FirstBoot(hostname="bench1", user="ppg", password_hash=pw, ssh_keys=(KEY,), wifi_ssid="lab net",
                   wifi_psk="secret-pass", country="DE", timezone="Europe/Berlin", locale="en_GB.UTF-8",
                   bundle_name=bundle.name)
    report = flash(image, card, "rpi4b", fb, bundle=bundle, yes=True)
    raw = raw_bytes(image)
    disk = card.read_bytes()
    assert len(disk) == len(raw)
    assert report.written_sha256 == hashlib.sha256(raw).hexdigest()
    # outside the boot partition the card is byte-identical to the image
    boot_start, boot_end = BOOT_LBA * 512, (BOOT_LBA + BOOT_SECTORS) * 512
    assert disk[:boot_start] == raw[:boot_start] and disk[boot_end:] == raw[boot_end:]

    files = read_boot(card)
    assert set(files) == {"/config.txt", "/cmdline.txt", "/userconf.txt", "/ssh", "/firstrun.sh",
                          "/ppg-edge/ppg-edge-bundle.tar.gz"}
    assert files["/ppg-edge/ppg-edge-bundle.tar.gz"] == bundle.read_bytes()
    for name, text in report.boot_files.items():
        assert files[name].decode() == text
    config = files["/config.txt"].decode()
    assert config.startswith("# stock") and "dtparam=i2c_arm=on" in config and "[pi4]\ndtoverlay=disable-bt" in config
    cmdline = files["/cmdline.txt"].decode()
    assert "console=serial0" not in cmdline and "systemd.run=/boot/firmware/firstrun.sh" in cmdline
    assert "root=PARTUUID=5eed5eed-02" in cmdline
    assert files["/userconf.txt"].decode() == f"ppg:{pw}\n"
    assert files["/ssh"] == b""
    script = files["/firstrun.sh"].decode()
    assert KEY in script and "NEW_HOST=bench1" in script
    assert "ssid=lab net" in script and "secret-pass" not in script
    assert f"psk={wpa_psk_hex('lab net', 'secret-pass')}" in script
    assert "systemctl disable hciuart" in script and "/boot/firmware/ppg-edge/ppg-edge-bundle.tar.gz" in script
    assert "PasswordAuthentication no" not in script  # a password was given
    if shutil.which("bash"):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@needs_fat
def test_flash_uncompressed_image_with_explicit_sha(tmp_path, rng):
    image = build_image(tmp_path, rng, xz=False)
    image.with_name(image.name + ".sha256").unlink()
    card = tmp_path / "card.img"
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    flash(image, card, "rpi5", FB, sha256=digest, yes=True)
    files = read_boot(card)
    assert "dtparam=uart0=on" in files["/config.txt"].decode()
    assert files["/userconf.txt"] == b"ppg:*\n"
    assert "PasswordAuthentication no" in files["/firstrun.sh"].decode()


@needs_fat
def test_flash_to_fake_device(tmp_path, rng):
    image = build_image(tmp_path, rng)
    roots = fake_system(tmp_path)
    asked = []
    flash(image, roots.dev / "sdb", "rpi4b", FB, roots=roots,
          confirm=lambda q, a: asked.append((q, a)) or a == "sdb")
    (question, answer), = asked
    assert answer == "sdb" and "SD Card Reader" in question and "31.9 GB" in question
    assert "enable_uart=1" in read_boot(roots.dev / "sdb")["/config.txt"].decode()


@needs_fat
def test_dry_run_writes_nothing(tmp_path, rng):
    image = build_image(tmp_path, rng)
    roots = fake_system(tmp_path)
    report = flash(image, roots.dev / "sdb", "rpi4b", FB, roots=roots, dry_run=True)
    assert report.dry_run and (roots.dev / "sdb").read_bytes() == b""


# ------------------------------------------------------------------ refusals

@needs_fat
def test_checksum_mismatch_refused(tmp_path, rng):
    image = build_image(tmp_path, rng)
    card = tmp_path / "card.img"
    with pytest.raises(ChecksumError, match="sha256 mismatch.*Refusing"):
        flash(image, card, "rpi4b", FB, sha256="0" * 64, yes=True)
    image.with_name(image.name + ".sha256").write_text("ab" * 32 + "  " + image.name + "\n")
    with pytest.raises(ChecksumError):
        flash(image, card, "rpi4b", FB, yes=True)
    image.with_name(image.name + ".sha256").unlink()
    with pytest.raises(ConfigError, match="no checksum"):
        flash(image, card, "rpi4b", FB, yes=True)
    assert not card.exists()


@needs_fat
def test_unknown_and_virtual_boards_refused(tmp_path, rng):
    image = build_image(tmp_path, rng)
    with pytest.raises(ConfigError, match="unknown board 'rpi9'"):
        flash(image, tmp_path / "c.img", "rpi9", FB, yes=True)
    with pytest.raises(ConfigError, match="virtual"):
        flash(image, tmp_path / "c.img", "virtual-rpi4", FB, yes=True)


@needs_fat
@pytest.mark.parametrize("setup,target,message", [
    ({"mounted_part": True}, "sdb", "in use: /dev/sdb1 is mounted on /media/user/bootfs"),
    ({}, "sda", "holds the running system's root file system"),
    ({"root_on": "sdb2"}, "sdb", "root file system"),
    ({"removable": "0"}, "sdb", "not a removable disk; pass --force"),
    ({}, "sdb1", "is a partition"),
    ({}, "sdz", "no such device"),
])
def test_dangerous_targets_refused(tmp_path, rng, setup, target, message):
    image = build_image(tmp_path, rng)
    roots = fake_system(tmp_path, **setup)
    dev = roots.dev / target
    before = dev.read_bytes() if dev.exists() else None
    with pytest.raises(UnsafeTargetError, match=message):
        flash(image, dev, "rpi4b", FB, roots=roots, yes=True, force=(target == "sda"))
    assert (dev.read_bytes() if dev.exists() else None) == before


def test_force_allows_non_removable_but_not_system_disk(tmp_path, rng):
    roots = fake_system(tmp_path, removable="0")
    t = inspect_target(roots.dev / "sdb", roots)
    check_target(t, 10 * 2**20, roots, force=True)  # allowed
    with pytest.raises(UnsafeTargetError, match="root file system"):
        check_target(inspect_target(roots.dev / "sda", roots), 10, roots, force=True)
    with pytest.raises(UnsafeTargetError, match="the image needs"):
        check_target(t, 10**12, roots, force=True)


def test_mount_table_by_name_only(tmp_path):
    # no mountinfo, only /proc/mounts (older kernels, containers)
    roots = fake_system(tmp_path, mounted_part=True)
    (roots.proc / "self" / "mountinfo").unlink()
    with pytest.raises(UnsafeTargetError, match="in use"):
        check_target(inspect_target(roots.dev / "sdb", roots), 1, roots)
    (roots.proc / "mounts").unlink()
    with pytest.raises(UnsafeTargetError, match="cannot read the mount table"):
        check_target(inspect_target(roots.dev / "sdb", roots), 1, roots)


def test_swap_on_target_refused(tmp_path):
    roots = fake_system(tmp_path)
    (roots.proc / "swaps").write_text("Filename Type Size Used Priority\n/dev/sdb2 partition 1 0 -2\n")
    with pytest.raises(UnsafeTargetError, match="swap"):
        check_target(inspect_target(roots.dev / "sdb", roots), 1, roots)


@needs_fat
def test_no_confirmation_refused(tmp_path, rng):
    image = build_image(tmp_path, rng)
    roots = fake_system(tmp_path)
    with pytest.raises(UnsafeTargetError, match="not confirmed"):
        flash(image, roots.dev / "sdb", "rpi4b", FB, roots=roots, confirm=lambda q, a: False)
    assert (roots.dev / "sdb").read_bytes() == b""


@needs_fat
def test_not_a_raspberry_pi_image(tmp_path, rng):
    image = build_image(tmp_path, rng, cmdline=None)
    with pytest.raises(DataError, match="no /cmdline.txt: not a Raspberry Pi OS image"):
        flash(image, tmp_path / "c.img", "rpi4b", FB, yes=True)


def test_download_fails_fast_without_network(tmp_path):
    # A closed local port: refused at once, reported as DownloadError (never a hang).
    with pytest.raises(DownloadError, match="cannot download"):
        download_image(tmp_path, url="http://127.0.0.1:9/raspios.img.xz", timeout=2)


@needs_fat
def test_download_from_a_local_server(tmp_path, rng):
    import http.server
    import threading
    from functools import partial

    served = tmp_path / "srv"
    served.mkdir()
    image = build_image(served, rng)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{image.name}"
        got, sha = download_image(tmp_path / "dl", url=url, timeout=5)
        assert got.read_bytes() == image.read_bytes() and sha == hashlib.sha256(image.read_bytes()).hexdigest()
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_image(tmp_path / "dl2", url=url + ".missing", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ CLI

@needs_fat
def test_cli_flash_image(tmp_path, rng, capsys):
    image = build_image(tmp_path, rng)
    key = tmp_path / "id.pub"
    key.write_text(KEY + "\n")
    pw = tmp_path / "pw"
    pw.write_text("hunter22\n")
    card = tmp_path / "card.img"
    rc = main(["flash", "--board", "rpi-zero-2w", "--image", str(image), "--to", str(card), "--hostname", "zero1",
               "--ssh-key", str(key), "--password-file", str(pw), "--yes"])
    assert rc == 0, capsys.readouterr().err
    assert "read-back sha256" in capsys.readouterr().out
    files = read_boot(card)
    user, hash_ = files["/userconf.txt"].decode().strip().split(":", 1)
    salt = hash_.split("$")[2]
    assert user == "ppg" and hash_ == sha512_crypt("hunter22", salt)
    assert "[pi02]\ndtoverlay=disable-bt" in files["/config.txt"].decode()


@needs_fat
def test_cli_refusals_are_one_line_errors(tmp_path, rng, capsys):
    image = build_image(tmp_path, rng)
    roots = fake_system(tmp_path)
    common = ["--image", str(image), "--ssh-key", KEY,
              "--sys-root", str(roots.sys), "--proc-root", str(roots.proc), "--dev-root", str(roots.dev)]
    cases = [
        (["flash", "--board", "rpi9", "--to", str(roots.dev / "sdb"), *common], "unknown board 'rpi9'"),
        (["flash", "--board", "rpi4b", "--to", str(roots.dev / "sda"), "--yes", "--force", *common], "root file system"),
        # stdin is not a terminal under pytest, and no --yes
        (["flash", "--board", "rpi4b", "--to", str(roots.dev / "sdb"), *common], "no terminal to confirm on"),
        (["flash", "--board", "rpi4b", "--to", str(roots.dev / "sdb"), "--sha256", "f" * 64, "--yes", *common],
         "sha256 mismatch"),
        (["flash", "--board", "rpi4b", "--to", str(tmp_path / "c.img"), "--yes", "--image", str(image)],
         "no way to log in"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("ppg-edge: error:") and message in err and "Traceback" not in err, err
    assert (roots.dev / "sdb").read_bytes() == b"" and (roots.dev / "sda").read_bytes() == b""


@needs_fat
def test_cli_dry_run(tmp_path, rng, capsys):
    image = build_image(tmp_path, rng)
    roots = fake_system(tmp_path)
    rc = main(["flash", "--board", "rpi4b", "--image", str(image), "--to", str(roots.dev / "sdb"), "--ssh-key", KEY,
               "--dry-run", "--sys-root", str(roots.sys), "--proc-root", str(roots.proc), "--dev-root", str(roots.dev)])
    assert rc == 0 and "nothing written" in capsys.readouterr().out


def test_root_on_device_mapper_protects_the_disk_beneath(tmp_path):
    roots = fake_system(tmp_path)
    dm = roots.sys / "block" / "dm-0"
    (dm / "slaves" / "sdb2").mkdir(parents=True)
    (dm / "dev").write_text("254:0\n")
    (roots.proc / "self" / "mountinfo").write_text(
        "22 1 254:0 / / rw - ext4 /dev/mapper/cryptroot rw\n")
    (roots.proc / "mounts").write_text("/dev/mapper/cryptroot / ext4 rw 0 0\n")
    with pytest.raises(UnsafeTargetError, match="root file system"):
        check_target(inspect_target(roots.dev / "sdb", roots), 1, roots)
    check_target(inspect_target(roots.dev / "sda", roots), 1, roots, force=True)  # sda is free here


@needs_fat
def test_flash_fat32_boot_partition(tmp_path, rng):
    image = build_image(tmp_path, rng, fat32=True)
    card = tmp_path / "card.img"
    flash(image, card, "rpi4b", FB, yes=True)
    files = read_boot(card)
    assert set(files) == {"/config.txt", "/cmdline.txt", "/userconf.txt", "/ssh", "/firstrun.sh"}
    assert "gpio=4=ip,pu" in files["/config.txt"].decode()


# ------------------------------------------------------------------ FAT names: case-insensitive, case kept

def _root_entry(disk: Path, shown: str):
    """The raw pyfatfs root entry shown as ``shown``: (has a long name, NT reserved byte)."""
    with fatfs.open_fat(disk, BOOT_LBA * 512, read_only=True) as fs:
        dirs, files, _ = fs.fs.root_dir.get_entries()
        entry, = [e for e in dirs + files if fatfs.display_name(e) == shown]
        return entry.lfn_entry is not None, entry.ntres


@needs_fat
def test_fat_names_resolve_in_any_case(tmp_path, rng):
    fat_tool("mkfs.vfat")
    image = build_image(tmp_path, rng, xz=False, maker="mtools", config_name="/config.txt",
                        cmdline_name="/CmdLine.txt", dirs=("/Overlays",))
    # the image is what Linux writes: config.txt 8.3 only with both lower-case flags, CmdLine.txt a long name
    assert _root_entry(image, "config.txt") == (False, fatfs.NT_LOWER_BASE | fatfs.NT_LOWER_EXT)
    assert _root_entry(image, "CmdLine.txt")[0] and _root_entry(image, "Overlays")[0]
    with fatfs.open_fat(image, BOOT_LBA * 512) as fs:
        assert not fs.exists("/config.txt")  # the pyfatfs lookup this module exists for
        for name in ("/config.txt", "/CONFIG.TXT", "/Config.Txt"):
            assert fatfs.resolve(fs, name) == "/CONFIG.TXT"
            assert fatfs.read_bytes(fs, name).decode() == STOCK_CONFIG
        for name in ("/cmdline.txt", "/CMDLINE.TXT", "/CmdLine.txt"):
            assert fatfs.resolve(fs, name) == "/CmdLine.txt"
        assert fatfs.resolve(fs, "/overlays") == "/Overlays" and fatfs.resolve(fs, "/nope.txt") is None
        assert fatfs.write_bytes(fs, "/Config.TXT", b"x=1\n") == "/CONFIG.TXT"
        assert fatfs.write_bytes(fs, "/OVERLAYS/New File.dtbo", b"dt") == "/Overlays/New File.dtbo"
        assert fatfs.write_bytes(fs, "/overlays/new file.DTBO", b"dt2") == "/Overlays/New File.dtbo"
        assert fatfs.makedirs(fs, "/overlays/Sub/deeper") == "/Overlays/Sub/deeper"
        with pytest.raises(DataError, match="a file, not a folder"):
            fatfs.write_bytes(fs, "/config.txt/x", b"")
        with pytest.raises(DataError, match="a folder, not a file"):
            fatfs.write_bytes(fs, "/overlays", b"")
    files = mtools_boot(image)
    assert files == {"/config.txt": b"x=1\n", "/CmdLine.txt": STOCK_CMDLINE.encode(),
                     "/Overlays/New File.dtbo": b"dt2"}
    assert read_boot(image) == files
    fsck_boot(image, fat32=False)


# (maker, config.txt as stored): 8.3 only with the lower-case flags (Linux, Windows), plain upper-case 8.3,
# a long-name entry (mixed case), each on FAT16 and FAT32.
CARDS = [("mtools", "config.txt"), ("mtools", "CONFIG.TXT"), ("mtools", "Config.TXT"),
         ("pyfatfs", "config.txt"), ("pyfatfs", "Config.TXT"), ("pyfatfs-8.3", "CONFIG.TXT")]


@needs_fat
@pytest.mark.parametrize("fat32", [False, True], ids=["fat16", "fat32"])
@pytest.mark.parametrize("maker,config_name", CARDS, ids=[f"{m}-{n}" for m, n in CARDS])
def test_flash_accepts_any_case_of_the_boot_files(tmp_path, rng, maker, config_name, fat32):
    fat_tool("mkfs.vfat")
    cmdline_name = "CMDLINE.TXT" if maker == "pyfatfs-8.3" else "cmdline.txt"
    image = build_image(tmp_path, rng, xz=False, fat32=fat32, maker=maker, config_name="/" + config_name,
                        cmdline_name="/" + cmdline_name,
                        dirs=("/PPG-EDGE",) if maker == "pyfatfs-8.3" else ("/ppg-edge",))
    bundle = tmp_path / "bundle"
    (bundle / "Wheels").mkdir(parents=True)
    (bundle / "install.sh").write_text("echo hi\n")
    (bundle / "Wheels" / "ppg_edge-1.0-py3-none-any.whl").write_bytes(b"PK wheel")
    card = tmp_path / "card.img"
    flash(image, card, "rpi4b", FirstBoot(hostname="bench1", user="ppg", ssh_keys=(KEY,),
                                          bundle_name=bundle.name), bundle=bundle, yes=True)
    files = mtools_boot(card)
    pfx = "/PPG-EDGE" if maker == "pyfatfs-8.3" else "/ppg-edge"
    # existing entries are edited under the name they had; new names keep the case they were written in;
    # nothing doubled (no CONFIG~1.TXT beside config.txt)
    assert set(files) == {"/" + config_name, "/" + cmdline_name, "/userconf.txt", "/ssh", "/firstrun.sh",
                          f"{pfx}/bundle/install.sh", f"{pfx}/bundle/Wheels/ppg_edge-1.0-py3-none-any.whl"}
    config = files["/" + config_name].decode()
    assert config.startswith("# stock") and config.count("# >>> ppg-edge") == 1 and "gpio=4=ip,pu" in config
    assert "systemd.run=/boot/firmware/firstrun.sh" in files["/" + cmdline_name].decode()
    assert files[f"{pfx}/bundle/Wheels/ppg_edge-1.0-py3-none-any.whl"] == b"PK wheel"
    assert read_boot(card) == files
    fsck_boot(card, fat32)
    # flashing the card's own image again edits the same entries
    image2 = tmp_path / "again.img"
    image2.write_bytes(card.read_bytes())
    card2 = tmp_path / "card2.img"
    flash(image2, card2, "rpi5", FB, sha256=hashlib.sha256(card.read_bytes()).hexdigest(), yes=True)
    again = mtools_boot(card2)
    assert set(again) == set(files)
    assert "dtparam=uart0=on" in again["/" + config_name].decode()
    assert again["/" + config_name].decode().count("# >>> ppg-edge") == 1


@needs_fat
def test_mtools_card_without_cmdline_is_refused(tmp_path, rng):
    fat_tool("mkfs.vfat")
    image = build_image(tmp_path, rng, xz=False, maker="mtools", cmdline=None)
    with pytest.raises(DataError, match="no /cmdline.txt: not a Raspberry Pi OS image"):
        flash(image, tmp_path / "c.img", "rpi4b", FB, yes=True)
