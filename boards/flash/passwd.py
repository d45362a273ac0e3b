"""SHA-512 ``crypt`` password hashes (``$6$salt$...``) in pure Python.

Raspberry Pi OS's ``userconf.txt`` holds ``user:hash`` where the hash is what
``openssl passwd -6`` or glibc ``crypt(3)`` produce. The stdlib ``crypt``
module is deprecated (gone in Python 3.13) and ``openssl`` is not on every
host, so this module implements the scheme itself, following Ulrich Drepper's
specification "Unix crypt using SHA-256 and SHA-512" (2007/2008). The tests
cross-check it against ``openssl passwd -6`` and, where present, ``crypt``.

The salt comes from :mod:`secrets`: a password salt must be unpredictable, so
it deliberately does not come from a seeded numpy Generator.
"""
from __future__ import annotations

import hashlib
import secrets

from ppg_edge.errors import ConfigError

ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_ROUNDS = 5000
# Output byte order of the final digest, three bytes per four characters.
_TRIPLES: list[tuple[int, int, int]] = []
for _k in range(21):
    _a = (_k * 22) % 63
    _TRIPLES.append((_a, (_a + 21) % 63, (_a + 42) % 63))


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // len(digest) + 1))[:length]


def _encode(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(ALPHABET[w & 0x3F])
        w >>= 6
    return "".join(out)


def sha512_crypt(password: str, salt: str | None = None, rounds: int = DEFAULT_ROUNDS) -> str:
    """The ``$6$`` hash of ``password``; a random 16-character salt unless one is given."""
    if salt is None:
        salt = "".join(secrets.choice(ALPHABET) for _ in range(16))
    if not salt or any(c not in ALPHABET for c in salt):
        raise ConfigError(f"password salt {salt!r}: use 1-16 characters of [./0-9A-Za-z]")
    if not 1000 <= rounds <= 999_999_999:
        raise ConfigError(f"password hash rounds {rounds}: outside 1000-999999999")
    p = password.encode("utf-8")
    s = salt[:16].encode("ascii")

    b = hashlib.sha512(p + s + p).digest()
    a = hashlib.sha512(p + s)
    a.update(_repeat(b, len(p)))
    n = len(p)
    while n:
        a.update(b if n & 1 else p)
        n >>= 1
    c = a.digest()

    p_seq = _repeat(hashlib.sha512(p * len(p)).digest(), len(p))
    s_seq = _repeat(hashlib.sha512(s * (16 + c[0])).digest(), len(s))

    for r in range(rounds):
        h = hashlib.sha512(p_seq if r & 1 else c)
        if r % 3:
            h.update(s_seq)
        if r % 7:
            h.update(p_seq)
        h.update(c if r & 1 else p_seq)
        c = h.digest()

    body = "".join(_encode(c[i], c[j], c[k], 4) for i, j, k in _TRIPLES) + _encode(0, 0, c[63], 2)
    prefix = "$6$" if rounds == DEFAULT_ROUNDS else f"$6$rounds={rounds}$"
    return f"{prefix}{s.decode()}${body}"
