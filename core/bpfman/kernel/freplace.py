"""Dispatchers and their extension (freplace) programs, the kernel side of
the libxdp and TC freplace modes of `bpfman.dispatch`: load a dispatcher
object with a given .rodata config, read an attached dispatcher's config,
load a program as an extension of a dispatcher slot, attach it with a
freplace link, hold pins for undo, and libxdp's lock.

Pins follow libxdp: ``<bpffs>/xdp/dispatch-<ifindex>-<dispatcher id>/``
holds ``prog<N>-prog`` (the extension program) and ``prog<N>-link`` (its
freplace link) per slot; the dispatcher itself is held by the interface.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys import progload as _sp
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import BPF_PROG_TYPE_EXT, BpfMapInfo, BpfProgInfo
from bpfman.kernel.objects import _maps, _opened, _programs
from bpfman.kernel.splice import LOG_SIZE, reloaded
from bpfman.model.errors import InvalidArgument, KernelError

DISPATCHER_NAME = "xdp_dispatcher"
BPF_F_RDONLY_PROG = 1 << 7


@contextmanager
def libxdp_lock(xdp_dir: Path | str) -> Iterator[None]:
    """libxdp's lock: flock(LOCK_EX) on the ``<bpffs>/xdp`` directory
    (created 0700 if missing), held for the block."""
    path = Path(xdp_dir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_dispatcher_config(program_id: int) -> bytes | None:
    """The config (map value) of program `program_id` if it is a libxdp
    dispatcher by libxdp's own checks (BTF, name, exactly one map: array,
    key 4, one entry, BPF_F_RDONLY_PROG); None for any other program."""
    with kernel_errors("bpf_prog_get_fd_by_id", program_id=program_id):
        fd = libbpf.bpf_prog_get_fd_by_id(program_id)
    try:
        info = BpfProgInfo()
        pins.object_info(fd, info, "bpf_obj_get_info_by_fd(program)")
        if not info.btf_id or info.name.decode(errors="replace") != DISPATCHER_NAME:
            return None
        if info.nr_map_ids != 1:
            return None
        ids = (ctypes.c_uint32 * 1)()
        info2 = BpfProgInfo(nr_map_ids=1, map_ids=ctypes.addressof(ids))
        pins.object_info(fd, info2, "bpf_obj_get_info_by_fd(program map ids)")
    finally:
        os.close(fd)
    with kernel_errors("bpf_map_get_fd_by_id", map_id=int(ids[0])):
        map_fd = libbpf.bpf_map_get_fd_by_id(int(ids[0]))
    try:
        m = BpfMapInfo()
        pins.object_info(map_fd, m, "bpf_obj_get_info_by_fd(map)")
        if (m.key_size != 4 or m.max_entries != 1 or m.value_size < 2
                or not m.map_flags & BPF_F_RDONLY_PROG):
            return None
        key = ctypes.c_uint32(0)
        value = ctypes.create_string_buffer(m.value_size)
        with kernel_errors("bpf_map_lookup_elem(dispatcher config)"):
            libbpf.bpf_map_lookup_elem(map_fd, ctypes.byref(key), value)
        return value.raw
    finally:
        os.close(map_fd)


def load_dispatcher(object_path: Path | str, config: bytes, pin: Path | str, *,
                    program: str = DISPATCHER_NAME) -> int:
    """Load `program` (default ``xdp_dispatcher``; the TC plugin loads its
    ``tc_dispatcher`` the same way) of `object_path` with its ``.rodata``
    (the config) set to `config`, pin it at `pin`; returns its id."""
    with _opened(Path(object_path)) as obj:
        prog = None
        for p in _programs(obj):
            keep = libbpf.bpf_program__name(p) == program.encode()
            libbpf.bpf_program__set_autoload(p, keep)
            prog = p if keep else prog
        if prog is None:
            raise InvalidArgument(f"{object_path} has no {program} program",
                                  field="dispatcher")
        rodata = None
        for m in _maps(obj):
            libbpf.bpf_map__set_pin_path(m, None)
            if libbpf.bpf_map__is_internal(m) and libbpf.bpf_map__name(m).endswith(b".rodata"):
                rodata = m
        if rodata is None or libbpf.bpf_map__value_size(rodata) != len(config):
            raise InvalidArgument(f"{object_path}: .rodata does not hold a {len(config)}-byte"
                                  " dispatcher config", field="dispatcher")
        buf = ctypes.create_string_buffer(config, len(config))
        with kernel_errors("bpf_map__set_initial_value"):
            libbpf.bpf_map__set_initial_value(rodata, buf, len(config))
        log = ctypes.create_string_buffer(LOG_SIZE)
        libbpf.bpf_program__set_log_buf(prog, log, LOG_SIZE)
        with libbpf.captured_messages(), kernel_errors(f"load {program}"):
            libbpf.bpf_object__load(obj)
        fd = libbpf.bpf_program__fd(prog)
        pins.pin_fd(fd, pin)
        return pins.program_id_of_fd(fd)


def load_extension(object_path: Path | str, name: str, program_pin: Path | str,
                   map_pin_dir: Path | str | None, target_pin: Path | str, func: str,
                   pin: Path | str) -> int:
    """Load program `name` of `object_path` as an extension (freplace) of
    function `func` of the program pinned at `target_pin`, sharing the maps
    of the program pinned at `program_pin`; pin it at `pin`, return its id.

    :raises KernelFeatureMissing/KernelError: the kernel refuses extensions.
    :raises VerifierRejected: e.g. it changes packet data and `func` does not.
    """
    with pins.open_pinned(target_pin, "prog") as target_fd:
        def configure(prog: int) -> None:
            libbpf.bpf_program__set_type(prog, BPF_PROG_TYPE_EXT)
            _sp.bpf_program__set_expected_attach_type(prog, 0)
            with kernel_errors("bpf_program__set_attach_target", function=func):
                libbpf.bpf_program__set_attach_target(prog, target_fd, func.encode())

        with reloaded(object_path, name, program_pin, map_pin_dir, configure) as (prog, _gpl):
            fd = libbpf.bpf_program__fd(prog)
            pins.pin_fd(fd, pin)
            return pins.program_id_of_fd(fd)


def _func_btf_id(target_fd: int, func: str) -> int:
    info = BpfProgInfo()
    pins.object_info(target_fd, info, "bpf_obj_get_info_by_fd(program)")
    if not info.btf_id:
        raise InvalidArgument("the dispatcher has no BTF", field="dispatcher")
    with kernel_errors("btf__load_from_kernel_by_id"):
        btf = libbpf.btf__load_from_kernel_by_id(info.btf_id)
    try:
        try:
            return int(_sp.btf__find_by_name_kind(btf, func.encode(), _sp.BTF_KIND_FUNC))
        except SysError as exc:
            raise InvalidArgument(f"the dispatcher has no function {func!r}",
                                  field="dispatcher") from exc
    finally:
        libbpf.btf__free(btf)


def attach_extension(ext_pin: Path | str, target_pin: Path | str, func: str,
                     link_pin: Path | str) -> int:
    """Attach the extension pinned at `ext_pin` to `func` of the program
    pinned at `target_pin` (a new freplace link; an extension may be attached
    to several dispatchers at once), pin the link; returns its kernel id."""
    with pins.open_pinned(ext_pin, "prog") as ext_fd, \
            pins.open_pinned(target_pin, "prog") as target_fd:
        opts = _sp.BpfLinkCreateOpts(sz=ctypes.sizeof(_sp.BpfLinkCreateOpts),
                                     target_btf_id=_func_btf_id(target_fd, func))
        try:
            link_fd = _sp.bpf_link_create_opts(ext_fd, target_fd, 0, ctypes.byref(opts))
        except SysError as exc:
            raise KernelError("bpf_link_create(freplace)", exc.errno or errno.EIO,
                              f"attaching extension to {func} failed: {exc}") from exc
        try:
            kernel_link_id = pins.link_id_of_fd(link_fd)
            pins.pin_fd(link_fd, link_pin)
            return kernel_link_id
        finally:
            os.close(link_fd)


class HeldPins:
    """Every pin under a directory, held open so that the pins can be
    removed now and put back by `restore()` (undo). The fds close when the
    object is freed."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.fds: dict[Path, int] = {}
        if self.directory.is_dir():
            for entry in sorted(self.directory.iterdir()):
                try:
                    self.fds[entry] = libbpf.bpf_obj_get(os.fsencode(entry))
                except SysError:
                    continue

    def restore(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, fd in self.fds.items():
            if not path.exists():
                pins.pin_fd(fd, path)

    def __del__(self) -> None:
        for fd in self.fds.values():
            with suppress(OSError):
                os.close(fd)
        self.fds = {}


__all__ = ["HeldPins", "attach_extension", "libxdp_lock", "load_dispatcher",
           "load_extension", "read_dispatcher_config"]
