"""Element access on pinned maps (lookup, update, delete, key iteration).

Keys and values are raw bytes in the map's own layout (native endianness,
as the BPF program sees them). Per-CPU maps (percpu_hash, percpu_array,
lru_percpu_hash, percpu_cgroup_storage) hold one value per possible CPU:
lookups return, and updates take, the per-CPU values concatenated in CPU
order, each padded to a multiple of 8 bytes (the kernel's layout), i.e.
`round_up(value_size, 8) * num_possible_cpus` bytes.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import PERCPU_MAP_TYPES, BpfMapInfo
from bpfman.model.errors import InvalidArgument

BPF_ANY = 0


@cache
def _possible_cpus() -> int:
    return int(libbpf.libbpf_num_possible_cpus())


def _layout(fd: int) -> tuple[int, int]:
    """(key size, value buffer size) of the map behind `fd`."""
    info = BpfMapInfo()
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
    value_size = int(info.value_size)
    if info.type in PERCPU_MAP_TYPES:
        value_size = ((value_size + 7) // 8) * 8 * _possible_cpus()
    return int(info.key_size), value_size


def _key(key: bytes, key_size: int) -> ctypes.Array[ctypes.c_char]:
    if len(key) != key_size:
        raise InvalidArgument(
            f"map key must be {key_size} bytes, got {len(key)}",
            field="key",
            expected_size=key_size,
        )
    return ctypes.create_string_buffer(bytes(key), key_size or 1)


def map_lookup(pin_path: Path | str, key: bytes) -> bytes | None:
    """The value stored under `key`, or None if there is none."""
    with pins.open_pinned(pin_path, "map") as fd:
        key_size, value_size = _layout(fd)
        value = ctypes.create_string_buffer(value_size)
        try:
            libbpf.bpf_map_lookup_elem(fd, _key(key, key_size), value)
        except SysError as exc:
            if exc.errno == errno.ENOENT:
                return None
            with kernel_errors("bpf_map_lookup_elem", pin=str(pin_path)):
                raise
        return value.raw


def map_update(pin_path: Path | str, key: bytes, value: bytes) -> None:
    """Create or replace the element under `key` (BPF_ANY)."""
    with pins.open_pinned(pin_path, "map") as fd:
        key_size, value_size = _layout(fd)
        if len(value) != value_size:
            raise InvalidArgument(
                f"map value must be {value_size} bytes, got {len(value)}",
                field="value",
                expected_size=value_size,
            )
        buf = ctypes.create_string_buffer(bytes(value), value_size)
        with kernel_errors("bpf_map_update_elem", pin=str(pin_path)):
            libbpf.bpf_map_update_elem(fd, _key(key, key_size), buf, BPF_ANY)


def map_delete(pin_path: Path | str, key: bytes) -> bool:
    """Delete the element under `key`; returns whether it existed. Array
    maps cannot delete (KernelError EINVAL): overwrite with zeros instead."""
    with pins.open_pinned(pin_path, "map") as fd:
        key_size, _ = _layout(fd)
        try:
            libbpf.bpf_map_delete_elem(fd, _key(key, key_size))
        except SysError as exc:
            if exc.errno == errno.ENOENT:
                return False
            with kernel_errors("bpf_map_delete_elem", pin=str(pin_path)):
                raise
        return True


def map_keys(pin_path: Path | str) -> Iterator[bytes]:
    """Every key, in the kernel's iteration order. The map stays open while
    the iterator runs; a hash map changing meanwhile may repeat or skip keys
    (the kernel restarts from the first key when the current one vanishes)."""
    with pins.open_pinned(pin_path, "map") as fd:
        key_size, _ = _layout(fd)
        current = ctypes.create_string_buffer(key_size or 1)
        following = ctypes.create_string_buffer(key_size or 1)
        previous: ctypes.Array[ctypes.c_char] | None = None
        while True:
            try:
                libbpf.bpf_map_get_next_key(fd, previous, following)
            except SysError as exc:
                if exc.errno == errno.ENOENT:
                    return
                with kernel_errors("bpf_map_get_next_key", pin=str(pin_path)):
                    raise
            yield following.raw[:key_size]
            ctypes.memmove(current, following, key_size)
            previous = current
