"""``ppg-edge flash``: one command from a Raspberry Pi OS image to a configured SD card.

The image is checked against its published sha256, the target against the
host's /sys and /proc (never a mounted disk, never the system disk, removable
only unless forced, always confirmed), written with a progress bar and read
back, and then the FAT boot partition is edited in place (pyfatfs, MBR parsed
here) for the chosen board: config.txt, cmdline.txt, userconf.txt, ssh and a
one-shot firstrun.sh. Works on image files without root.
"""
from .bootconfig import FirstBoot, configure_boot_partition, edit_cmdline, edit_config_txt, firstrun_script
from .image import ChecksumError, download_image, verify_image
from .mbr import Partition, boot_partition, make_mbr, parse_mbr
from .passwd import sha512_crypt
from .provision import FlashReport, flash
from .targets import SystemRoots, UnsafeTargetError, check_target, inspect_target

__all__ = ["ChecksumError", "FirstBoot", "FlashReport", "Partition", "SystemRoots", "UnsafeTargetError",
           "boot_partition", "check_target", "configure_boot_partition", "download_image", "edit_cmdline",
           "edit_config_txt", "firstrun_script", "flash", "inspect_target", "make_mbr", "parse_mbr",
           "sha512_crypt", "verify_image"]
