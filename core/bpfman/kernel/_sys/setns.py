"""setns(2) for Python 3.11 (os.setns arrived in 3.12)."""

from __future__ import annotations

import ctypes
import os

from bpfman.kernel._sys.errors import SysError

_libc = ctypes.CDLL(None, use_errno=True)
_setns = _libc.setns
_setns.argtypes = (ctypes.c_int, ctypes.c_int)
_setns.restype = ctypes.c_int


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace behind `fd`."""
    if hasattr(os, "setns"):
        os.setns(fd, nstype)
        return
    if _setns(fd, nstype) != 0:
        raise SysError(ctypes.get_errno(), "setns")
