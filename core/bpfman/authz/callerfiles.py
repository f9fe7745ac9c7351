"""Read a file a caller names, as that caller, without ever blocking.

A caller names files the daemon then reads for it (the object of
`program.load`). Two rules keep that from lending the daemon's rights or its
time to the caller:

- The file is opened with the caller's filesystem identity: the worker thread
  switches its fsuid, fsgid and supplementary groups to the caller's for the
  one `open` (all three are per-thread in the kernel; the raw syscalls are used
  because glibc would apply setgroups to every thread), so the kernel decides
  access exactly as for the caller's own `open`, ACLs and LSMs included. The
  daemon checks as the caller rather than taking a descriptor from the client
  so that `socat` one-liners and every existing client keep working.
- `O_NONBLOCK` and "regular files only" (checked on the open descriptor) mean a
  FIFO, a device or a socket is refused at once instead of stalling the
  daemon's kernel lane; the size is capped before anything is read.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bpfman.model.caller import Caller
from bpfman.model.errors import InvalidArgument

#: BPF objects are small; this bounds the memory one request can make us use.
MAX_OBJECT_BYTES = 64 << 20

_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()  # one identity switch at a time per process, for clarity in logs


def _setgroups(groups: list[int]) -> None:
    arr = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
    nr = _SYS_SETGROUPS[platform.machine()]
    if _libc.syscall(nr, len(groups), arr) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _setfs(fn: str, ident: int) -> None:
    # setfsuid/setfsgid return the previous id and never report errors: check
    # by asking again with an invalid id (-1), which only reads the current one.
    getattr(_libc, fn)(ident)
    if getattr(_libc, fn)(-1) != ident:
        raise PermissionError(f"{fn}({ident}) did not take effect")


@contextmanager
def _as_caller(caller: Caller) -> Iterator[None]:
    """This thread's filesystem identity is the caller's inside the block."""
    saved_groups = os.getgroups()
    with _lock:
        try:
            _setgroups(sorted({caller.gid, *caller.groups}))
            _setfs("setfsgid", caller.gid)
            _setfs("setfsuid", caller.uid)
            yield
        finally:
            try:
                _setfs("setfsuid", 0)
                _setfs("setfsgid", 0)
                _setgroups(saved_groups)
            except OSError:
                # A worker thread left with a caller's identity would serve the
                # next request with it: stop rather than go on wrong.
                os.abort()


def open_as(path: str, caller: Caller, *, field: str = "path",
            flags: int = os.O_RDONLY) -> int:
    """A descriptor of `path` opened as `caller` (never blocking on a FIFO).

    Raises InvalidArgument (with `field`) when the caller could not open it.
    """
    flags |= os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        if caller.uid == 0:
            return os.open(path, flags)
        with _as_caller(caller):
            return os.open(path, flags)
    except OSError as exc:
        raise InvalidArgument(f"cannot open {path} as uid {caller.uid}: {exc.strerror}",
                              field=field, path=path) from None


def check_readable(path: str, caller: Caller, *, field: str) -> None:
    """Raise InvalidArgument unless `caller` could open `path` for reading."""
    os.close(open_as(path, caller, field=field))


def read_file(path: str, caller: Caller, *, limit: int = MAX_OBJECT_BYTES,
              field: str = "path") -> bytes:
    """The bytes of the regular file `path`, opened as `caller`.

    Raises InvalidArgument (with `field`) when the caller could not open it,
    when it is not a regular file, or when it is larger than `limit`.
    """
    fd = open_as(path, caller, field=field)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path} is not a regular file", field=field, path=path)
        if st.st_size > limit:
            raise InvalidArgument(f"{path} is larger than {limit} bytes", field=field,
                                  path=path, limit=limit)
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:  # grew while we read
                raise InvalidArgument(f"{path} is larger than {limit} bytes", field=field,
                                      path=path, limit=limit)
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            raise InvalidArgument(f"{path} would block", field=field, path=path) from None
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}", field=field,
                              path=path) from None
    finally:
        os.close(fd)
