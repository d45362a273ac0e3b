"""``flash``: verify an image, check the target, write it, read it back, configure first boot."""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ppg_edge.boards import Board, load_board
from ppg_edge.errors import ConfigError, DataNotFoundError

from .bootconfig import FirstBoot, configure_boot_partition
from .image import raw_image_size, verify_image
from .targets import HOST_ROOTS, SystemRoots, Target, UnsafeTargetError, check_target, human_size, inspect_target
from .writer import write_and_verify

log = logging.getLogger(__name__)


@dataclass
class FlashReport:
    board: str
    image: str
    image_sha256: str
    target: str
    target_description: str
    raw_size: int
    dry_run: bool
    written_sha256: str | None = None
    boot_files: dict[str, str] = field(default_factory=dict)


def tty_confirm(question: str, answer: str) -> bool:
    """Ask on the terminal; the user must type ``answer``. No terminal: refuse."""
    if not sys.stdin.isatty():
        raise UnsafeTargetError("no terminal to confirm on; pass --yes to write without asking")
    reply = input(f"{question}\nType {answer!r} to continue: ")
    return reply.strip() == answer


def flash(image: Path, target: str | Path, board: str | Board, firstboot: FirstBoot, *,
          sha256: str | None = None, bundle: Path | None = None, yes: bool = False, force: bool = False,
          dry_run: bool = False, roots: SystemRoots = HOST_ROOTS,
          confirm: Callable[[str, str], bool] = tty_confirm) -> FlashReport:
    """Provision one SD card (or card image) for ``board``.

    Refuses (``ConfigError``/``UnsafeTargetError``/``ChecksumError``) before
    writing anything when the board is virtual, the bundle is missing, the
    checksum does not match, the target is unsafe, or nobody confirmed.
    """
    b = board if isinstance(board, Board) else load_board(board)
    if b.virtual or b.config_txt is None:
        raise ConfigError(f"board {b.identifier} is virtual: nothing to flash (it runs as a qemu chroot)")
    if bundle is not None and not bundle.exists():
        raise DataNotFoundError(f"--bundle {bundle} does not exist")
    if bundle is not None and firstboot.bundle_name != bundle.name:
        raise ConfigError("firstboot.bundle_name must be the bundle's file name")
    image = Path(image)
    digest = verify_image(image, sha256)
    size = raw_image_size(image)
    tgt: Target = inspect_target(target, roots)
    check_target(tgt, size, roots, force=force)
    report = FlashReport(board=b.identifier, image=str(image), image_sha256=digest, target=str(tgt.path),
                         target_description=tgt.describe(), raw_size=size, dry_run=dry_run)
    if dry_run:
        log.info("dry run: would write %s (%s) to %s", image.name, human_size(size), tgt.describe())
        return report
    if (tgt.is_device or tgt.size) and not yes:
        question = (f"Write {image.name} ({human_size(size)}) to {tgt.describe()}?\n"
                    "Everything on it will be erased.")
        if not confirm(question, tgt.name):
            raise UnsafeTargetError(f"{tgt.path}: not confirmed; nothing written")
    report.written_sha256 = write_and_verify(image, tgt.path, size, tgt.is_device)
    report.boot_files = configure_boot_partition(tgt.path, b, firstboot, bundle)
    return report
