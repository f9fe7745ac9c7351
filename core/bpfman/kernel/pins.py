"""Pins in bpffs: create, open, inspect and remove them.

Paths come from `bpfman.kernel.bpffs`; this module never invents one. Every
function accepts a `Path` or a `str`. A missing pin is `StateDrift` (a record
names it, the kernel object or the pin vanished); other failures are
`KernelError`.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import BpfLinkInfo, BpfProgInfo
from bpfman.model.errors import InvalidArgument, StateDrift

PathLike = Path | str
ObjectKind = Literal["prog", "map", "link"]

# What /proc/self/fd/N points to for each bpf object kind (anon inode names).
_ANON_INODE_KIND: dict[str, ObjectKind] = {
    "anon_inode:bpf-prog": "prog",
    "anon_inode:bpf-map": "map",
    "anon_inode:bpf-link": "link",
    "anon_inode:bpf_link": "link",  # the spelling of older kernels
}


def fd_kind(fd: int) -> ObjectKind | None:
    """Which kind of bpf object `fd` refers to (None if not a bpf object)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return _ANON_INODE_KIND.get(target)


def _missing(path: Path) -> StateDrift:
    return StateDrift(f"pin {path} does not exist", pin=str(path))


@contextmanager
def open_pinned(path: PathLike, kind: ObjectKind | None = None) -> Iterator[int]:
    """Open the object pinned at `path`; the fd is closed when the block ends.

    :param kind: if given, the pin must hold that kind of object, otherwise
        `InvalidArgument(field="pin")`.
    """
    path = Path(path)
    with kernel_errors("bpf_obj_get", {errno.ENOENT: lambda _e: _missing(path)}, pin=str(path)):
        fd = libbpf.bpf_obj_get(os.fsencode(path))
    try:
        # bpf_obj_get only opens bpf objects; an anon-inode name we do not
        # know (a future kernel's spelling) is given the benefit of the doubt.
        found = fd_kind(fd)
        if kind is not None and found is not None and found != kind:
            raise InvalidArgument(
                f"pin {path} holds a {found}, expected a {kind}",
                field="pin",
                pin=str(path),
            )
        yield fd
    finally:
        os.close(fd)


def pin_fd(fd: int, path: PathLike) -> None:
    """Pin the object behind `fd` at `path` (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with kernel_errors("bpf_obj_pin", pin=str(path)):
        libbpf.bpf_obj_pin(fd, os.fsencode(path))


def pin_exists(path: PathLike) -> bool:
    return os.path.lexists(path)


def remove_pin(path: PathLike) -> bool:
    """Unpin `path`; returns whether it existed.

    Removing the last reference (pin and fds) frees the object, so unpinning
    a link detaches it. The kernel finishes that asynchronously: a
    perf_event link's program was measured to run for up to one jiffy
    (~4 ms at HZ=250) after this returns, after its link id is already gone.
    A directory (a link made of one kernel link per CPU) goes with its pins.
    """
    if os.path.isdir(path) and not os.path.islink(path):
        remove_pin_dir(path)
        return True
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_pin_dir(path: PathLike) -> None:
    """Remove every pin below `path` (depth first) and the directory itself.
    A directory that is already gone is fine."""
    path = Path(path)
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_pin_dir(Path(entry.path))
        else:
            remove_pin(entry.path)
    with suppress(FileNotFoundError):
        os.rmdir(path)


def object_info(fd: int, info: ctypes.Structure, op: str) -> None:
    """BPF_OBJ_GET_INFO_BY_FD into a ctypes info struct (info_len = its size:
    the kernel fills what both sides know and zeroes nothing beyond it)."""
    length = ctypes.c_uint32(ctypes.sizeof(info))
    try:  # not `with kernel_errors`: this runs per object in every listing
        libbpf.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(length))
    except SysError:
        with kernel_errors(op):
            raise


def program_id_of_fd(fd: int) -> int:
    info = BpfProgInfo()
    object_info(fd, info, "bpf_obj_get_info_by_fd(program)")
    return int(info.id)


def program_id_of_pin(path: PathLike) -> int:
    """The kernel id of the program pinned at `path`."""
    with open_pinned(path, "prog") as fd:
        return program_id_of_fd(fd)


def link_id_of_fd(fd: int) -> int:
    info = BpfLinkInfo()
    object_info(fd, info, "bpf_obj_get_info_by_fd(link)")
    return int(info.id)


def link_id_of_pin(path: PathLike) -> int:
    """The kernel id of the link pinned at `path`."""
    with open_pinned(path, "link") as fd:
        return link_id_of_fd(fd)


__all__ = [
    "fd_kind",
    "link_id_of_pin",
    "open_pinned",
    "pin_exists",
    "pin_fd",
    "program_id_of_pin",
    "remove_pin",
    "remove_pin_dir",
]


def repin(source: PathLike, pin: PathLike) -> None:
    """Make `pin` hold the object pinned at `source` (replacing what it held)."""
    remove_pin(pin)
    with open_pinned(source) as fd:
        pin_fd(fd, pin)
