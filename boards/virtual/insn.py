"""Count guest instructions of an aarch64 program under the dynamic ``qemu-aarch64`` (TCG plugin).

``qemu-user-static`` cannot load TCG plugins; the dynamic ``qemu-user`` (Debian bookworm:
qemu 7.2, plugin API version 1) can. The plugin below adds each translated block's
instruction count to one 64-bit counter with an inline add (no callback per block) and
writes the total to the file named by ``$PPG_INSN_OUT`` at exit. Counts under TCG are
deterministic for the same program and input on the same CPU model (docs/facts.md).

Stage attribution: the guest marks a stage boundary with the syscall
``lseek(MARK_FD, MARK_MAGIC | stage, 0)`` on ``/dev/null`` (it succeeds and does nothing, so
a mark costs no exception in the guest); the plugin's syscall callback charges the instructions since the last
mark to the stage that was current and makes ``stage`` current. Stage 0 is "not in a
stage". The plugin counts every vCPU into one counter, so the guest must stay single
threaded (the edge interpreter runs with ``num_threads=1``).

The plugin is compiled with ``gcc`` on first use into ``cache_dir()/insn-plugin-<hash>``,
under the cache lock and published atomically (:func:`ppg_edge.cache.build_stage`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ppg_edge import config
from ppg_edge.cache import build_stage
from ppg_edge.errors import ConfigError, HardwareError

log = logging.getLogger(__name__)

QEMU = "qemu-aarch64"
MARK_FD = 1023  # /dev/null, dup-ed here by the guest's first mark: lseek on it always succeeds
MARK_MAGIC = 0x5050_4700_0000_0000
MAX_STAGES = 64
OUT_ENV = "PPG_INSN_OUT"

PLUGIN_C = r"""
/* ppg-edge instruction counter: TCG plugin API version 1 (qemu 7.2). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*atexit_cb)(qemu_plugin_id_t, void *);
typedef void (*syscall_cb)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t, uint64_t,
                           uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, atexit_cb, void *);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define NSTAGES %(nstages)d
static uint64_t total, last, stages[NSTAGES];
static unsigned current;

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
    if (num != 62 || (uint32_t)a1 != (uint32_t)(%(fd)d) || (a2 & ~0xffffull) != %(magic)sull) return;
    stages[current] += total - last;
    last = total;
    current = (unsigned)(a2 & 0xffff) %% NSTAGES;
}

static void on_atexit(qemu_plugin_id_t id, void *p) {
    const char *path = getenv("%(env)s");
    FILE *f = path ? fopen(path, "w") : stderr;
    if (!f) return;
    stages[current] += total - last;
    fprintf(f, "total %%llu\n", (unsigned long long)total);
    for (int i = 0; i < NSTAGES; i++)
        if (stages[i]) fprintf(f, "stage %%d %%llu\n", i, (unsigned long long)stages[i]);
    if (f != stderr) fclose(f);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc, char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_atexit, NULL);
    return 0;
}
""" % {"nstages": MAX_STAGES, "fd": MARK_FD, "magic": hex(MARK_MAGIC), "env": OUT_ENV}  # noqa: UP031 (C braces)


def require_qemu() -> str:
    """The dynamic ``qemu-aarch64`` (not the static one, which cannot load plugins)."""
    path = shutil.which(QEMU)
    if path is None:
        raise HardwareError(f"{QEMU} not found: apt-get install qemu-user (the dynamic build; "
                            "qemu-user-static cannot load TCG plugins)")
    return path


_plugin: Path | None = None


def plugin_path(rebuild: bool = False) -> Path:
    """The compiled counting plugin (built with gcc on first use, cached; looked up once a process)."""
    global _plugin
    if _plugin is not None and not rebuild and _plugin.is_file():
        return _plugin
    key = hashlib.sha256(PLUGIN_C.encode()).hexdigest()[:16]
    final = config.cache_dir() / f"insn-plugin-{key}"

    def fill(tmp: Path) -> None:
        gcc = shutil.which("gcc")
        if gcc is None:
            raise HardwareError("gcc not found: apt-get install gcc (it builds the instruction-count plugin)")
        (tmp / "insn.c").write_text(PLUGIN_C)
        proc = subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", str(tmp / "libinsn.so"), str(tmp / "insn.c")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise HardwareError(f"compiling the instruction-count plugin failed: {proc.stderr.strip()[-400:]}")

    _plugin = build_stage(final, fill, rebuild=rebuild, what="instruction-count plugin") / "libinsn.so"
    return _plugin


@dataclass
class Count:
    """One counted run: the total, per-stage counts (stage id -> instructions) and the program's stdout."""

    total: int
    stages: dict[int, int] = field(default_factory=dict)
    stdout: str = ""


def parse_counts(text: str) -> tuple[int, dict[int, int]]:
    total, stages = None, {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["total"] and len(parts) == 2:
            total = int(parts[1])
        elif parts[:1] == ["stage"] and len(parts) == 3:
            stages[int(parts[1])] = int(parts[2])
    if total is None:
        raise HardwareError(f"the instruction-count plugin wrote no total: {text[:200]!r}")
    return total, stages


def count(argv: list[str], *, root: Path, qemu_cpu: str, env: dict[str, str] | None = None,
          timeout: float = 1800) -> Count:
    """Run the aarch64 program ``argv`` (``argv[0]`` a path inside ``root``) under the counter.

    ``root`` is the aarch64 userland given to qemu as ``-L`` (its dynamic loader and
    libraries); ``env`` is the guest's whole environment."""
    if not qemu_cpu:
        raise ConfigError("no qemu CPU model to count instructions on")
    qemu = require_qemu()
    plugin = plugin_path()
    exe = Path(root) / argv[0].lstrip("/")
    if not exe.is_file():
        raise HardwareError(f"{exe}: not in the aarch64 root")
    with tempfile.TemporaryDirectory(prefix="ppg-insn-") as tmp:
        out = Path(tmp) / "counts.txt"
        run_env = {**(env or {}), OUT_ENV: str(out)}
        cmd = [qemu, "-cpu", qemu_cpu, "-plugin", str(plugin), "-L", str(root), str(exe), *argv[1:]]
        log.debug("counting: %s", " ".join(cmd))
        try:
            proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HardwareError(f"counted run exceeded {timeout:.0f} s: {' '.join(argv)}") from None
        if proc.returncode != 0:
            raise HardwareError(f"counted run failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        if not out.is_file():
            raise HardwareError("the instruction-count plugin wrote nothing (was it loaded?)")
        total, stages = parse_counts(out.read_text())
    return Count(total=total, stages=stages, stdout=proc.stdout)


_marks_ready = False


def mark(stage: int) -> None:
    """Guest side: make ``stage`` current (a no-op syscall outside the counter)."""
    global _marks_ready
    if not _marks_ready:
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, MARK_FD)
        os.close(fd)
        _marks_ready = True
    os.lseek(MARK_FD, MARK_MAGIC | stage, 0)
