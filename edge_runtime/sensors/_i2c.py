"""The I2C message type the driver builds transfers with.

``smbus2.i2c_msg`` when smbus2 is installed; otherwise a minimal stand-in with the
same constructors (``read(addr, n)``, ``write(addr, buf)``) and the same reading
interface (``addr``, ``flags``, ``len``, ``bytes(msg)``, ``list(msg)``), so the
emulated chip and the driver work on a machine without smbus2.
"""
from __future__ import annotations

I2C_M_RD = 0x0001


class SimpleI2cMsg:
    """Minimal ``smbus2.i2c_msg`` look-alike; ``buf`` is a ``bytearray``."""

    __slots__ = ("addr", "flags", "len", "buf")

    def __init__(self, addr: int, flags: int, buf: bytearray) -> None:
        self.addr = addr
        self.flags = flags
        self.len = len(buf)
        self.buf = buf

    @staticmethod
    def read(address: int, length: int) -> SimpleI2cMsg:
        return SimpleI2cMsg(address, I2C_M_RD, bytearray(length))

    @staticmethod
    def write(address: int, buf) -> SimpleI2cMsg:
        return SimpleI2cMsg(address, 0, bytearray(buf))

    def __iter__(self):
        return iter(self.buf)

    def __len__(self) -> int:
        return self.len

    def __bytes__(self) -> bytes:
        return bytes(self.buf)

    def __repr__(self) -> str:
        return f"SimpleI2cMsg({self.addr},{self.flags},{bytes(self.buf)!r})"


def i2c_msg_type():
    """``smbus2.i2c_msg`` if importable, else :class:`SimpleI2cMsg`."""
    try:
        from smbus2 import i2c_msg
    except ImportError:  # pragma: no cover - smbus2 is part of the edge extra
        return SimpleI2cMsg
    return i2c_msg


def fill_read_msg(msg, data: bytes) -> None:
    """Copy ``data`` into a read message's buffer (smbus2 ctypes or the stand-in)."""
    if isinstance(msg.buf, bytearray):
        msg.buf[: len(data)] = data
        return
    import ctypes

    ctypes.memmove(msg.buf, bytes(data), len(data))
