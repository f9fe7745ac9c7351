"""Map keys and values as structured data, read through the map's BTF.

`map_decoders(pin)` returns a decoder for the key and one for the value of a
pinned map that carries BTF (both None otherwise). Decoding follows the C
layout: integers (signed or not, bools, bitfields), enums (by name when the
value is named), structs and unions as objects, arrays as lists, char arrays
as text; typedefs and qualifiers are looked through.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.structs import PERCPU_MAP_TYPES, BpfMapInfo, BtfType

Decoder = Callable[[bytes], Any]

INT, PTR, ARRAY, STRUCT, UNION, ENUM = 1, 2, 3, 4, 5, 6
TYPEDEF, VOLATILE, CONST, RESTRICT, FLOAT, TYPE_TAG, ENUM64 = 8, 9, 10, 11, 16, 18, 19
_SKIP = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
_HEADER = ctypes.sizeof(BtfType)
MAX_DEPTH = 32  # no real map value nests deeper; guards against cycles


class _Btf:
    """A kernel BTF object, freed when the last decoder using it goes."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __del__(self) -> None:
        libbpf.btf__free(self.handle)

    def type(self, type_id: int) -> BtfType:
        return BtfType.from_address(libbpf.btf__type_by_id(self.handle, type_id))

    def name(self, t: BtfType) -> str:
        raw = libbpf.btf__name_by_offset(self.handle, t.name_off)
        return raw.decode() if raw else ""

    def u32s(self, type_id: int, count: int) -> list[int]:
        """The `count` u32 words that follow a btf_type (its kind-specific data)."""
        address = libbpf.btf__type_by_id(self.handle, type_id) + _HEADER
        return list((ctypes.c_uint32 * count).from_address(address))

    def resolve(self, type_id: int) -> tuple[int, BtfType]:
        t = self.type(type_id)
        for _ in range(MAX_DEPTH):
            if t.kind not in _SKIP:
                break
            type_id = t.size_or_type
            t = self.type(type_id)
        return type_id, t

    def size(self, type_id: int) -> int:
        type_id, t = self.resolve(type_id)
        if t.kind == ARRAY:
            elem, _index, count = self.u32s(type_id, 3)
            return self.size(elem) * count
        if t.kind == PTR:
            return 8
        return int(t.size_or_type)

    def decode(self, type_id: int, data: bytes, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            return data.hex()
        type_id, t = self.resolve(type_id)
        kind = t.kind
        if kind == INT:
            (encoding,) = self.u32s(type_id, 1)
            bits, signed = encoding & 0xFF, bool((encoding >> 24) & 1)
            value = int.from_bytes(data[: t.size_or_type], "little", signed=signed)
            if (encoding >> 24) & 4:  # BTF_INT_BOOL
                return bool(value)
            return value if bits >= 8 * t.size_or_type else value & ((1 << bits) - 1)
        if kind == PTR:
            return int.from_bytes(data[:8], "little")
        if kind in (ENUM, ENUM64):
            signed = bool(t.info & (1 << 31))
            value = int.from_bytes(data[: t.size_or_type], "little", signed=signed)
            step = 2 if kind == ENUM else 3
            words = self.u32s(type_id, step * t.vlen)
            for i in range(t.vlen):
                name_off = words[step * i]
                val = words[step * i + 1] if kind == ENUM else (
                    words[step * i + 1] | words[step * i + 2] << 32)
                if val == value & ((1 << (8 * t.size_or_type)) - 1):
                    raw = libbpf.btf__name_by_offset(self.handle, name_off)
                    return raw.decode() if raw else value
            return value
        if kind == ARRAY:
            elem, _index, count = self.u32s(type_id, 3)
            _elem_id, elem_t = self.resolve(elem)
            width = self.size(elem)
            if elem_t.kind == INT and width == 1 and self.name(elem_t) in ("char", "unsigned char"):
                return data[: width * count].split(b"\0", 1)[0].decode(errors="replace")
            return [self.decode(elem, data[i * width:(i + 1) * width], depth + 1)
                    for i in range(count)]
        if kind in (STRUCT, UNION):
            words = self.u32s(type_id, 3 * t.vlen)
            kflag = bool(t.info & (1 << 31))
            out: dict[str, Any] = {}
            for i in range(t.vlen):
                name_off, member_type, offset = words[3 * i: 3 * i + 3]
                raw = libbpf.btf__name_by_offset(self.handle, name_off)
                name = raw.decode() if raw else f"_{i}"
                bit_size = offset >> 24 if kflag else 0
                bit_offset = offset & 0xFFFFFF if kflag else offset
                if bit_size or bit_offset % 8:
                    whole = int.from_bytes(data, "little")
                    out[name] = (whole >> bit_offset) & ((1 << (bit_size or 1)) - 1)
                    continue
                start = bit_offset // 8
                out[name] = self.decode(member_type, data[start:start + self.size(member_type)],
                                        depth + 1)
            return out
        if kind == FLOAT and t.size_or_type in (4, 8):
            return ctypes.c_float.from_buffer_copy(data[:4]).value if t.size_or_type == 4 \
                else ctypes.c_double.from_buffer_copy(data[:8]).value
        return data.hex()


def map_decoders(pin: Path | str) -> tuple[Decoder | None, Decoder | None]:
    """Key and value decoders of the pinned map (None, None without BTF).

    Per-CPU values decode to a list, one entry per possible CPU.
    """
    with pins.open_pinned(pin, "map") as fd:
        info = BpfMapInfo()
        pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
    if not info.btf_id or not info.btf_value_type_id:
        return None, None
    btf = _Btf(libbpf.btf__load_from_kernel_by_id(info.btf_id))
    key_id, value_id = int(info.btf_key_type_id), int(info.btf_value_type_id)
    value_size = int(info.value_size)
    percpu = info.type in PERCPU_MAP_TYPES
    stride = (value_size + 7) // 8 * 8

    def key(data: bytes) -> Any:
        return btf.decode(key_id, data) if key_id else data.hex()

    def value(data: bytes) -> Any:
        if percpu:
            return [btf.decode(value_id, data[i:i + value_size])
                    for i in range(0, len(data), stride)]
        return btf.decode(value_id, data)

    return key, value
