"""ctypes bindings to the few libc calls Python's os module lacks:
statfs(2) (for f_type), mount(2) and perf_event_open(2)."""

from __future__ import annotations

import ctypes
import os
import platform
from ctypes import c_char_p, c_int, c_long, c_size_t, c_ulong, c_void_p
from pathlib import Path

from bpfman.kernel._sys.errors import SysError
from bpfman.kernel._sys.structs import PERF_FLAG_FD_CLOEXEC, PerfEventAttr, Statfs

_libc = ctypes.CDLL(None, use_errno=True)

_statfs = _libc.statfs
_statfs.argtypes = (c_char_p, ctypes.POINTER(Statfs))
_statfs.restype = c_int

_mount = _libc.mount
_mount.argtypes = (c_char_p, c_char_p, c_char_p, c_ulong, c_void_p)
_mount.restype = c_int

# variadic: long syscall(long number, ...); arguments are passed as longs.
_syscall = _libc.syscall
_syscall.restype = c_long

vsnprintf = _libc.vsnprintf
vsnprintf.argtypes = (c_char_p, c_size_t, c_char_p, c_void_p)
vsnprintf.restype = c_int

# perf_event_open has no glibc wrapper; its number differs per architecture.
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319, "s390x": 331}

MNT_DETACH = 2


def _fail(func: str, detail: str | None = None) -> SysError:
    return SysError(ctypes.get_errno(), func, detail)


def statfs_type(path: Path) -> int:
    """The filesystem magic (f_type) of the filesystem holding `path`."""
    buf = Statfs()
    if _statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        raise _fail("statfs", str(path))
    return int(buf.f_type) & 0xFFFFFFFF


def mount(source: str, target: Path, fstype: str, flags: int = 0, data: str | None = None) -> None:
    opts = data.encode() if data is not None else None
    if _mount(source.encode(), os.fsencode(target), fstype.encode(), flags, opts) != 0:
        raise _fail("mount", f"{fstype} on {target}")


def perf_event_open(
    attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1, flags: int = 0
) -> int:
    """perf_event_open(2) with FD_CLOEXEC (plus `flags`, e.g.
    PERF_FLAG_PID_CGROUP); returns the new fd."""
    machine = platform.machine()
    nr = _NR_PERF_EVENT_OPEN.get(machine)
    if nr is None:
        raise SysError(38, "perf_event_open", f"syscall number unknown for {machine}")  # ENOSYS
    fd = _syscall(
        c_long(nr), ctypes.byref(attr), c_int(pid), c_int(cpu), c_int(group_fd),
        c_ulong(PERF_FLAG_FD_CLOEXEC | flags),
    )
    if fd < 0:
        raise _fail("perf_event_open")
    return int(fd)
