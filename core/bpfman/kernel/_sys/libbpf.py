"""ctypes bindings to libbpf.so.1 (libbpf >= 1.0 semantics).

Every binding that can fail has an errcheck that raises `SysError`:
int-returning calls fail with a negative errno (libbpf 1.0 "strict" mode
returns -errno directly), pointer-returning calls fail with NULL and errno.
Opaque libbpf objects (bpf_object, bpf_program, bpf_map, btf) are plain
integers (c_void_p). libbpf's diagnostic output goes to the `bpfman.libbpf`
logger and, inside `captured_messages()`, into a per-thread list so that
errors can quote what libbpf said.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ctypes import POINTER, c_bool, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any

from bpfman.kernel._sys import libc
from bpfman.kernel._sys.errors import SysError, use_libbpf_strerror
from bpfman.kernel._sys.structs import BpfProgLoadOpts

LIBBPF_SONAME = "libbpf.so.1"
log = logging.getLogger("bpfman.libbpf")

_lib = ctypes.CDLL(LIBBPF_SONAME, use_errno=True)

_Check = Callable[[Any, Any, tuple[Any, ...]], Any]


def _negative_errno(name: str) -> _Check:
    def check(result: int, _func: Any, _args: tuple[Any, ...]) -> int:
        if result < 0:
            raise SysError(-result, name)
        return result

    return check


def _null_errno(name: str) -> _Check:
    def check(result: int | None, _func: Any, _args: tuple[Any, ...]) -> int:
        if not result:
            raise SysError(ctypes.get_errno() or 22, name)  # EINVAL if libbpf left errno 0
        return result

    return check


def _bind(name: str, restype: Any, argtypes: tuple[Any, ...], check: str | None = None) -> Any:
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    if check == "neg":
        fn.errcheck = _negative_errno(name)
    elif check == "null":
        fn.errcheck = _null_errno(name)
    return fn


_u32p = POINTER(c_uint32)

# --- library-wide -----------------------------------------------------------
_strerror = _bind("libbpf_strerror", c_int, (c_int, c_char_p, c_size_t))
libbpf_version_string = _bind("libbpf_version_string", c_char_p, ())
libbpf_bpf_prog_type_str = _bind("libbpf_bpf_prog_type_str", c_char_p, (c_int,))
libbpf_bpf_map_type_str = _bind("libbpf_bpf_map_type_str", c_char_p, (c_int,))
libbpf_bpf_link_type_str = _bind("libbpf_bpf_link_type_str", c_char_p, (c_int,))
libbpf_probe_bpf_prog_type = _bind("libbpf_probe_bpf_prog_type", c_int, (c_int, c_void_p))
libbpf_num_possible_cpus = _bind("libbpf_num_possible_cpus", c_int, (), "neg")

# --- bpf_object / bpf_program / bpf_map ---------------------------------------
bpf_object__open_file = _bind("bpf_object__open_file", c_void_p, (c_char_p, c_void_p), "null")
bpf_object__open_mem = _bind("bpf_object__open_mem", c_void_p, (c_char_p, c_size_t, c_void_p),
                             "null")


class BpfObjectOpenOpts(ctypes.Structure):
    """The head of struct bpf_object_open_opts: libbpf reads only `sz` bytes."""

    _fields_ = (("sz", c_size_t), ("object_name", c_char_p))
bpf_object__load = _bind("bpf_object__load", c_int, (c_void_p,), "neg")
bpf_object__close = _bind("bpf_object__close", None, (c_void_p,))
bpf_object__btf = _bind("bpf_object__btf", c_void_p, (c_void_p,))
bpf_object__next_program = _bind("bpf_object__next_program", c_void_p, (c_void_p, c_void_p))
bpf_object__next_map = _bind("bpf_object__next_map", c_void_p, (c_void_p, c_void_p))
bpf_object__find_map_by_name = _bind(
    "bpf_object__find_map_by_name", c_void_p, (c_void_p, c_char_p)
)

bpf_program__name = _bind("bpf_program__name", c_char_p, (c_void_p,))
bpf_program__section_name = _bind("bpf_program__section_name", c_char_p, (c_void_p,))
bpf_program__type = _bind("bpf_program__type", c_int, (c_void_p,))
bpf_program__set_type = _bind("bpf_program__set_type", c_int, (c_void_p, c_int), "neg")
bpf_program__set_autoload = _bind("bpf_program__set_autoload", c_int, (c_void_p, c_bool), "neg")
bpf_program__set_attach_target = _bind(
    "bpf_program__set_attach_target", c_int, (c_void_p, c_int, c_char_p), "neg"
)
bpf_program__set_log_buf = _bind(
    "bpf_program__set_log_buf", c_int, (c_void_p, c_void_p, c_size_t), "neg"
)
bpf_program__fd = _bind("bpf_program__fd", c_int, (c_void_p,), "neg")
bpf_program__insns = _bind("bpf_program__insns", c_void_p, (c_void_p,))
bpf_program__insn_cnt = _bind("bpf_program__insn_cnt", c_size_t, (c_void_p,))

bpf_map__name = _bind("bpf_map__name", c_char_p, (c_void_p,))
bpf_map__type = _bind("bpf_map__type", c_int, (c_void_p,))
bpf_map__key_size = _bind("bpf_map__key_size", c_uint32, (c_void_p,))
bpf_map__value_size = _bind("bpf_map__value_size", c_uint32, (c_void_p,))
bpf_map__max_entries = _bind("bpf_map__max_entries", c_uint32, (c_void_p,))
bpf_map__is_internal = _bind("bpf_map__is_internal", c_bool, (c_void_p,))
bpf_map__initial_value = _bind(
    "bpf_map__initial_value", c_void_p, (c_void_p, POINTER(c_size_t))
)
bpf_map__set_initial_value = _bind(
    "bpf_map__set_initial_value", c_int, (c_void_p, c_void_p, c_size_t), "neg"
)
bpf_map__reuse_fd = _bind("bpf_map__reuse_fd", c_int, (c_void_p, c_int), "neg")
bpf_map__fd = _bind("bpf_map__fd", c_int, (c_void_p,), "neg")
bpf_map__set_pin_path = _bind("bpf_map__set_pin_path", c_int, (c_void_p, c_char_p), "neg")

# --- BTF ---------------------------------------------------------------------
btf__find_by_name_kind = _bind("btf__find_by_name_kind", c_int, (c_void_p, c_char_p, c_uint32))
btf__type_cnt = _bind("btf__type_cnt", c_uint32, (c_void_p,))
btf__type_by_id = _bind("btf__type_by_id", c_void_p, (c_void_p, c_uint32), "null")
btf__name_by_offset = _bind("btf__name_by_offset", c_char_p, (c_void_p, c_uint32))
btf__load_from_kernel_by_id = _bind("btf__load_from_kernel_by_id", c_void_p, (c_uint32,), "null")
btf__free = _bind("btf__free", None, (c_void_p,))

# --- low-level bpf(2) wrappers ------------------------------------------------
bpf_obj_pin = _bind("bpf_obj_pin", c_int, (c_int, c_char_p), "neg")
bpf_obj_get = _bind("bpf_obj_get", c_int, (c_char_p,), "neg")
bpf_obj_get_info_by_fd = _bind("bpf_obj_get_info_by_fd", c_int, (c_int, c_void_p, _u32p), "neg")
bpf_prog_get_fd_by_id = _bind("bpf_prog_get_fd_by_id", c_int, (c_uint32,), "neg")
bpf_map_get_fd_by_id = _bind("bpf_map_get_fd_by_id", c_int, (c_uint32,), "neg")
bpf_link_get_fd_by_id = _bind("bpf_link_get_fd_by_id", c_int, (c_uint32,), "neg")
bpf_prog_get_next_id = _bind("bpf_prog_get_next_id", c_int, (c_uint32, _u32p), "neg")
bpf_link_get_next_id = _bind("bpf_link_get_next_id", c_int, (c_uint32, _u32p), "neg")
bpf_raw_tracepoint_open = _bind("bpf_raw_tracepoint_open", c_int, (c_char_p, c_int), "neg")
bpf_link_create = _bind("bpf_link_create", c_int, (c_int, c_int, c_int, c_void_p), "neg")
bpf_map_lookup_elem = _bind("bpf_map_lookup_elem", c_int, (c_int, c_void_p, c_void_p), "neg")
bpf_map_update_elem = _bind(
    "bpf_map_update_elem", c_int, (c_int, c_void_p, c_void_p, c_uint64), "neg"
)
bpf_map_delete_elem = _bind("bpf_map_delete_elem", c_int, (c_int, c_void_p), "neg")
bpf_map_get_next_key = _bind("bpf_map_get_next_key", c_int, (c_int, c_void_p, c_void_p), "neg")
bpf_prog_load = _bind(
    "bpf_prog_load",
    c_int,
    (c_int, c_char_p, c_char_p, c_void_p, c_size_t, POINTER(BpfProgLoadOpts)),
    "neg",
)


def libbpf_strerror(err: int) -> str:
    buf = ctypes.create_string_buffer(256)
    _strerror(err, buf, len(buf))
    return buf.value.decode(errors="replace") or f"error {err}"


use_libbpf_strerror(libbpf_strerror)


# Types newer than libbpf 1.1's tables (UAPI values, names as newer libbpf
# spells them), so that a 6.x kernel's objects still get proper names.
_NEWER_PROG_TYPES = {32: "netfilter"}
_NEWER_MAP_TYPES = {33: "arena"}
_NEWER_LINK_TYPES = {10: "netfilter", 11: "tcx", 12: "uprobe_multi", 13: "netkit", 14: "sockmap"}


def _type_name(lookup: Any, newer: dict[int, str], value: int) -> str:
    name = lookup(value)
    if name:
        return str(name.decode())
    return newer.get(value, f"unknown({value})")


@functools.cache  # fixed tables, asked per object in listings
def prog_type_name(prog_type: int) -> str:
    """libbpf's name for a prog type ("tracepoint", "sched_cls", ...)."""
    return _type_name(libbpf_bpf_prog_type_str, _NEWER_PROG_TYPES, prog_type)


@functools.cache  # fixed tables, asked per object in listings
def map_type_name(map_type: int) -> str:
    return _type_name(libbpf_bpf_map_type_str, _NEWER_MAP_TYPES, map_type)


@functools.cache  # fixed tables, asked per object in listings
def link_type_name(link_type: int) -> str:
    return _type_name(libbpf_bpf_link_type_str, _NEWER_LINK_TYPES, link_type)


def prog_types_by_name() -> dict[str, int]:
    """Every prog type libbpf can name, name -> enum value (libbpf has no
    reverse lookup; its table is dense from 0 and ends with NULL)."""
    table: dict[str, int] = {}
    for value in range(256):
        name = libbpf_bpf_prog_type_str(value)
        if name is None:
            break
        table[name.decode()] = value
    return table


# --- libbpf's print callback ---------------------------------------------------
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
_LEVELS = {LIBBPF_WARN: logging.WARNING, LIBBPF_INFO: logging.INFO, LIBBPF_DEBUG: logging.DEBUG}
_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_capture = threading.local()


def _on_print(level: int, fmt: bytes, args: int) -> int:
    lines: list[str] | None = getattr(_capture, "lines", None)
    pylevel = _LEVELS.get(level, logging.DEBUG)
    if lines is None and not log.isEnabledFor(pylevel):
        return 0
    if level == LIBBPF_DEBUG and not log.isEnabledFor(logging.DEBUG):
        return 0
    # A va_list can be consumed once, so format into a generous buffer.
    buf = ctypes.create_string_buffer(16384)
    libc.vsnprintf(buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace").rstrip("\n")
    if lines is not None and level != LIBBPF_DEBUG:
        lines.extend(line.removeprefix("libbpf: ") for line in text.splitlines())
        # The caller turns captured lines into its error; log them quietly.
        pylevel = logging.DEBUG
    log.log(pylevel, "%s", text)
    return 0


# Module-level reference: libbpf keeps the pointer, so the thunk must live forever.
_print_thunk = _PRINT_FN(_on_print)
_set_print = _bind("libbpf_set_print", c_void_p, (_PRINT_FN,))
_set_print(_print_thunk)


@contextmanager
def captured_messages() -> Iterator[list[str]]:
    """Collect libbpf's warning/info lines printed by this thread in the block."""
    previous = getattr(_capture, "lines", None)
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        _capture.lines = previous

# --- statistics ----------------------------------------------------------------
BPF_STATS_RUN_TIME = 0
bpf_enable_stats = _bind("bpf_enable_stats", c_int, (c_int,), "neg")
