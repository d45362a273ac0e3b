"""A virtual arm64 Raspberry Pi on an x86 host: a Debian bookworm chroot run through qemu-user.

Host-side tool (needs root, qemu-user-static and binfmt-support). ``build``
makes the userland (cached), :class:`VirtualPi` brings it up with sshd on
127.0.0.1 and takes it down. See ``docs/facts.md`` for the facts
this follows (pinned ``QEMU_CPU``, aarch64 ``/proc/cpuinfo``).
"""
from .machine import VirtualPi, build, default_dir

__all__ = ["VirtualPi", "build", "default_dir"]
