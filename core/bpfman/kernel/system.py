"""Host set-up the daemon needs before any BPF work: bpffs and tracefs
mounts (neither is mounted at boot on our hosts), RLIMIT_MEMLOCK, and the
kernel release."""

from __future__ import annotations

import errno
import logging
import os
import resource
from pathlib import Path

from bpfman.kernel._sys import libc
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import BPF_FS_MAGIC, TRACEFS_MAGIC
from bpfman.model.errors import KernelFeatureMissing

log = logging.getLogger("bpfman.kernel")

TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS_TRACING = Path("/sys/kernel/debug/tracing")


def fs_magic(path: Path | str) -> int | None:
    """statfs(2) f_type of `path`, or None if it does not exist.
    (os.statvfs has no f_type, so this goes through libc.)"""
    try:
        return libc.statfs_type(Path(path))
    except SysError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def is_bpffs(path: Path | str) -> bool:
    return fs_magic(path) == BPF_FS_MAGIC


def ensure_bpffs(path: Path | str) -> None:
    """Mount a bpffs at `path` unless one is already there (creating it)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if is_bpffs(path):
        return
    with kernel_errors("mount bpf", target=str(path)):
        libc.mount("bpf", path, "bpf", 0, "mode=0700")


def _is_tracefs(path: Path) -> bool:
    # Only a real tracefs counts (the events/ directory of an unmounted
    # mount point does not exist).
    return fs_magic(path) == TRACEFS_MAGIC and (path / "events").is_dir()


def ensure_tracefs() -> Path:
    """The tracefs root, mounting tracefs at /sys/kernel/tracing if needed.

    Falls back to debugfs's /sys/kernel/debug/tracing (an automount of
    tracefs) when mounting at the standard place fails.
    """
    for candidate in (TRACEFS, DEBUGFS_TRACING):
        if _is_tracefs(candidate):
            return candidate
    try:
        libc.mount("tracefs", TRACEFS, "tracefs", 0, None)
    except SysError as first:
        if (DEBUGFS_TRACING / "events").is_dir():
            return DEBUGFS_TRACING
        if first.errno == errno.ENODEV:
            raise KernelFeatureMissing("tracefs", "kernel built without CONFIG_TRACING") from first
        with kernel_errors("mount tracefs", target=str(TRACEFS)):
            raise first
    return TRACEFS


def raise_memlock() -> bool:
    """Lift RLIMIT_MEMLOCK: kernels before 5.11 charge BPF memory to it
    (newer ones use memcg and ignore it).

    Without CAP_SYS_RESOURCE (root on our CI hosts lacks it) the hard limit
    cannot be raised; the soft limit is then raised to the hard one and a
    warning logged, since only old kernels care.

    :return: whether the limit is now infinite.
    """
    inf = resource.RLIM_INFINITY
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (inf, inf))
        return True
    except (ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
        log.warning(
            "cannot lift RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE); kept at %s bytes,"
            " which matters only on kernels before 5.11 (this is %s)",
            hard, kernel_release(),
        )
        return hard == inf


def kernel_release() -> str:
    return os.uname().release


def enable_bpf_stats() -> int:
    """Turn on run-count and run-time accounting for every program while the
    returned fd stays open (BPF_ENABLE_STATS); close it to turn it off."""
    from bpfman.kernel._sys import libbpf

    with kernel_errors("bpf_enable_stats"):
        return int(libbpf.bpf_enable_stats(libbpf.BPF_STATS_RUN_TIME))
