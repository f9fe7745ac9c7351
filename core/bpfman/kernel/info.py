"""The kernel's live view of programs, links and maps, read by id.

Everything here is read at call time (never a load-time snapshot), and
opens the object by id for the duration of the call only. The one memo is of
a program's full name, memlock and load time, which are fixed for its lifetime.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import attrs

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import (
    BPF_OBJ_NAME_LEN,
    BpfFuncInfo,
    BpfLinkInfo,
    BpfMapInfo,
    BpfProgInfo,
    BtfType,
)
from bpfman.model.errors import BpfmanError, LinkNotFound, NotFound, ProgramNotFound
from bpfman.model.kernelfacts import KernelProgramInfo

BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


@attrs.frozen
class KernelLinkInfo:
    """The kernel's view of one bpf_link. `kernel_link_id` is the kernel's
    id (our own link ids are sqlite rowids, STYLE 6.5)."""

    kernel_link_id: int
    type: str  # libbpf's link type name: "perf_event", "tcx", "xdp", ...
    program_id: int

    @property
    def link_id(self) -> int:
        """Alias of `kernel_link_id` (the name first announced for this field)."""
        return self.kernel_link_id


@attrs.frozen
class KernelMapInfo:
    map_id: int
    name: str
    type: str  # libbpf's map type name: "array", "percpu_hash", ...
    key_size: int
    value_size: int
    max_entries: int


@contextmanager
def _fd_by_id(
    get: Callable[[int], int], object_id: int, not_found: Callable[[], BpfmanError], op: str
) -> Iterator[int]:
    # ENOENT: no such id. EINVAL: id 0 or out of range.
    on = {errno.ENOENT: lambda _e: not_found(), errno.EINVAL: lambda _e: not_found()}
    with kernel_errors(op, on):
        fd = get(object_id)
    try:
        yield fd
    finally:
        os.close(fd)


# --- programs --------------------------------------------------------------------


def program_info(program_id: int, *, stats_enabled: bool | None = None) -> KernelProgramInfo:
    """The live KernelProgramInfo of one program.

    :param stats_enabled: kernel.bpf_stats_enabled if the caller already read
        it (listings read it once, not once per program).
    :raises ProgramNotFound: no program with that id.
    """
    try:  # not `_fd_by_id`: this runs per program in every listing
        fd = libbpf.bpf_prog_get_fd_by_id(program_id)
    except SysError as exc:
        # ENOENT: no such id. EINVAL: id 0 or out of range.
        if exc.errno in (errno.ENOENT, errno.EINVAL):
            raise ProgramNotFound(program_id) from exc
        with kernel_errors("bpf_prog_get_fd_by_id"):
            raise
    try:
        return program_info_of_fd(fd, stats_enabled=stats_enabled)
    finally:
        os.close(fd)


def programs_info(program_ids: Iterable[int]) -> dict[int, KernelProgramInfo]:
    """Live info of each program that still exists, by id (missing ones left out)."""
    stats = bpf_stats_enabled()
    out = {}
    for program_id in program_ids:
        try:
            out[program_id] = program_info(program_id, stats_enabled=stats)
        except ProgramNotFound:
            continue
    return out


# The full name, memlock and load time never change for a loaded program, and
# reading them costs more than the rest of its info (a BTF load, a /proc read,
# clock arithmetic): keep them by (id, load time), which no later program can
# share.
_FIXED_FACTS: dict[tuple[int, int], tuple[str, int | None, str | None]] = {}
_FIXED_FACTS_MAX = 16384


def _fixed_facts(fd: int, info: BpfProgInfo) -> tuple[str, int | None, str | None]:
    key = (info.id, info.load_time)
    facts = _FIXED_FACTS.get(key)
    if facts is None:
        if len(_FIXED_FACTS) >= _FIXED_FACTS_MAX:
            _FIXED_FACTS.clear()
        facts = _FIXED_FACTS[key] = (
            _full_name(fd, info), _fdinfo_int(fd, b"memlock"), _wall_clock(info.load_time))
    return facts


# Room for this many map ids in the first info query: one syscall for almost
# every program, a second only for programs using more maps.
_MAP_IDS_ROOM = 64


def program_info_of_fd(fd: int, *, stats_enabled: bool | None = None) -> KernelProgramInfo:
    ids = (ctypes.c_uint32 * _MAP_IDS_ROOM)()
    info = BpfProgInfo(nr_map_ids=_MAP_IDS_ROOM, map_ids=ctypes.addressof(ids))
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(program)")
    run_count: int | None = int(info.run_cnt)
    run_time: int | None = int(info.run_time_ns)
    if not run_count and not run_time:
        if stats_enabled is None:
            stats_enabled = bpf_stats_enabled()
        if not stats_enabled:
            run_count = run_time = None  # stats off: zero means "not counted"
    count = int(info.nr_map_ids)
    map_ids = list(ids[:count]) if count <= _MAP_IDS_ROOM else _map_ids(fd, count)
    name, memlock, loaded_at = _fixed_facts(fd, info)
    return KernelProgramInfo(
        program_id=int(info.id),
        name=name,
        kernel_type=libbpf.prog_type_name(info.type),
        tag=bytes(info.tag).hex(),
        loaded_at=loaded_at,
        uid=int(info.created_by_uid),
        gpl_compatible=bool(info.gpl_compatible),
        map_ids=map_ids,
        btf_id=int(info.btf_id) or None,
        xlated_size=int(info.xlated_prog_len),
        jited_size=int(info.jited_prog_len),
        memlock=memlock,
        verified_insns=int(info.verified_insns) or None,
        run_count=run_count,
        run_time_ns=run_time,
    )


def program_ids() -> Iterator[int]:
    """The id of every program in the kernel, ascending (no fd opened)."""
    next_id = ctypes.c_uint32(0)
    current = 0
    while True:
        try:
            libbpf.bpf_prog_get_next_id(current, ctypes.byref(next_id))
        except SysError as exc:
            if exc.errno == errno.ENOENT:
                return
            with kernel_errors("bpf_prog_get_next_id"):
                raise
        current = next_id.value
        yield current


def iter_programs() -> Iterator[KernelProgramInfo]:
    """Every program in the kernel, by ascending id. Programs that vanish
    between listing and opening are skipped."""
    stats = bpf_stats_enabled()
    for program_id in program_ids():
        try:
            yield program_info(program_id, stats_enabled=stats)
        except ProgramNotFound:
            continue


def bpf_stats_enabled() -> bool:
    try:
        f = os.open(BPF_STATS_SYSCTL, os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.read(f, 16).strip() == b"1"
    finally:
        os.close(f)


def _wall_clock(ns_since_boot: int) -> str | None:
    """load_time is CLOCK_BOOTTIME ns; wall time = now - (boottime now - it)."""
    if not ns_since_boot:
        return None
    ago = time.clock_gettime(time.CLOCK_BOOTTIME) - ns_since_boot / 1e9
    return datetime.fromtimestamp(time.time() - ago, UTC).isoformat(timespec="milliseconds")


def _map_ids(fd: int, count: int) -> list[int]:
    if not count:
        return []
    ids = (ctypes.c_uint32 * count)()
    info = BpfProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids))
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(program map ids)")
    # bpf_prog_bind_map can add maps between the two calls: keep what fits.
    return [int(i) for i in ids[: min(count, info.nr_map_ids)]]


def _full_name(fd: int, info: BpfProgInfo) -> str:
    """The kernel truncates names to 15 bytes; the program's BTF has the
    whole function name (as bpftool shows it)."""
    short = str(info.name.decode(errors="replace"))
    if len(info.name) < BPF_OBJ_NAME_LEN - 1 or not info.btf_id or not info.nr_func_info:
        return short
    func = BpfFuncInfo()
    query = BpfProgInfo(
        nr_func_info=1,
        func_info_rec_size=ctypes.sizeof(BpfFuncInfo),
        func_info=ctypes.addressof(func),
    )
    try:
        pins.object_info(fd, query, "bpf_obj_get_info_by_fd(program func info)")
        btf = libbpf.btf__load_from_kernel_by_id(info.btf_id)
    except BpfmanError:
        return short
    try:
        t = BtfType.from_address(libbpf.btf__type_by_id(btf, func.type_id))
        name = libbpf.btf__name_by_offset(btf, t.name_off)
    except SysError:
        return short
    finally:
        libbpf.btf__free(btf)
    full = name.decode(errors="replace") if name else ""
    return full if full.startswith(short) else short


def _fdinfo_int(fd: int, key: bytes) -> int | None:
    # os.open/os.read: pathlib costs more than the kernel does here.
    try:
        f = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(f, 4096)
    finally:
        os.close(f)
    at = text.find(b"\n" + key + b":")
    if at < 0:
        return None
    value = text[at + len(key) + 2:].split(b"\n", 1)[0]
    try:
        return int(value.strip())
    except ValueError:
        return None


# --- links and maps ------------------------------------------------------------------


def link_info(kernel_link_id: int) -> KernelLinkInfo:
    """:raises LinkNotFound: no link with that kernel id."""
    with _fd_by_id(
        libbpf.bpf_link_get_fd_by_id,
        kernel_link_id,
        lambda: LinkNotFound(kernel_link_id),
        "bpf_link_get_fd_by_id",
    ) as fd:
        return link_info_of_fd(fd)


def link_info_of_fd(fd: int) -> KernelLinkInfo:
    info = BpfLinkInfo()
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(link)")
    return KernelLinkInfo(
        kernel_link_id=int(info.id),
        type=libbpf.link_type_name(info.type),
        program_id=int(info.prog_id),
    )


def map_info(map_id: int) -> KernelMapInfo:
    """:raises NotFound: no map with that id."""
    with _fd_by_id(
        libbpf.bpf_map_get_fd_by_id,
        map_id,
        lambda: NotFound(f"no map with id {map_id}", map_id=map_id),
        "bpf_map_get_fd_by_id",
    ) as fd:
        return map_info_of_fd(fd)


def map_info_of_fd(fd: int) -> KernelMapInfo:
    info = BpfMapInfo()
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
    return KernelMapInfo(
        map_id=int(info.id),
        name=info.name.decode(errors="replace"),
        type=libbpf.map_type_name(info.type),
        key_size=int(info.key_size),
        value_size=int(info.value_size),
        max_entries=int(info.max_entries),
    )


def wait_program_gone(program_id: int, timeout: float = 1.0) -> bool:
    """Wait until the kernel has freed a program whose last reference was dropped.

    Freeing is deferred (RCU), a few milliseconds after the last pin or link
    goes; waiting lets `program.unload` reply only once the program is gone.
    Returns False if it is still there after `timeout` (someone else holds it).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            program_info(program_id)
        except ProgramNotFound:
            return True
        time.sleep(0.002)
    return False


def map_info_of_pin(path: Path | str) -> KernelMapInfo:
    """:raises StateDrift: the pin is missing. :raises InvalidArgument: not a map."""
    with pins.open_pinned(path, "map") as fd:
        return map_info_of_fd(fd)
