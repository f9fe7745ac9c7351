"""Map access through the API: how an application without BPF privileges
reads (and, where granted, writes) the maps of programs the daemon loaded.

Maps are addressed by the program that uses them and the map's name (as the
ELF object names it; `map.list` shows them). Keys and values are hex strings
in the map's own layout (native endianness, as the BPF program sees them);
per-CPU maps hold one value per possible CPU, concatenated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bpfman.authz import grants
from bpfman.model.caller import Caller
from bpfman.model.errors import InvalidArgument, NotFound, PermissionDenied, ProgramNotFound
from bpfman.model.records import ProgramRecord
from bpfman.model.replies import MapDumpReply, MapEntry, MapReply, MapValueReply
from bpfman.model.requests import (
    MAX_DUMP_PAGE,
    MapDumpRequest,
    MapKeyRequest,
    MapListRequest,
    MapUpdateRequest,
)
from bpfman.store import Store


class MapAccess:
    def __init__(self, store: Store, kernel: ModuleType) -> None:
        self.store = store
        self.kernel = kernel

    def _program(self, caller: Caller, program_id: int) -> ProgramRecord:
        program = self.store.get_program(program_id)
        if program is None:
            raise ProgramNotFound(program_id)
        grants.check_program(caller, program_id, program.metadata)
        return program

    def _pin(self, program: ProgramRecord, name: str) -> Path:
        # A map name is a name, never a path: "/etc/x" or "a/../b" would
        # otherwise reach pins outside the program's maps directory. Refused
        # without looking at the filesystem, so the answer tells nothing about it.
        if not name or "/" in name or "\0" in name:
            raise InvalidArgument(f"invalid map name {name!r}: a map name, as in map.list",
                                  field="map")
        maps_dir = Path(program.map_pin_dir)
        pin = maps_dir / self.kernel.map_pin_name(name)
        if not self.kernel.pin_exists(pin):
            if not maps_dir.is_dir():
                raise NotFound(f"the maps directory of program {program.program_id} is gone"
                               f" ({maps_dir}; removed outside the daemon?)", map=name)
            known = ", ".join(sorted(p.name for p in maps_dir.iterdir()))
            raise NotFound(f"program {program.program_id} has no map {name!r} (maps: {known})",
                           map=name)
        return pin

    def list(self, caller: Caller, req: MapListRequest) -> list[MapReply]:
        program = self._program(caller, req.program_id)
        out = []
        maps_dir = Path(program.map_pin_dir)
        if not maps_dir.is_dir():
            raise NotFound(f"the maps directory of program {program.program_id} is gone"
                           f" ({maps_dir}; removed outside the daemon?)")
        for pin in sorted(maps_dir.iterdir()):
            info = self.kernel.map_info_of_pin(pin)
            out.append(MapReply(name=pin.name, map_id=info.map_id, type=info.type,
                                key_size=info.key_size, value_size=info.value_size,
                                max_entries=info.max_entries, pin_path=str(pin)))
        return out

    def _decoder(self, pin: Path) -> Callable[[bytes, bytes | None], dict[str, Any]]:
        """Structured forms from the map's BTF (nothing when it has none)."""
        decode_key, decode_value = self.kernel.map_decoders(pin)

        def decoded(key: bytes, value: bytes | None) -> dict[str, Any]:
            if decode_key is None or decode_value is None:
                return {}
            return {"decoded_key": decode_key(key),
                    "decoded_value": None if value is None else decode_value(value)}

        return decoded

    def get(self, caller: Caller, req: MapKeyRequest) -> MapValueReply:
        pin = self._pin(self._program(caller, req.program_id), req.map)
        value = self.kernel.map_lookup(pin, req.key)
        return MapValueReply(key=req.key, value=value, **self._decoder(pin)(req.key, value))

    def dump(self, caller: Caller, req: MapDumpRequest) -> MapDumpReply:
        pin = self._pin(self._program(caller, req.program_id), req.map)
        limit = max(1, min(req.limit, MAX_DUMP_PAGE))
        decoded = self._decoder(pin)
        entries: list[MapEntry] = []
        started = req.after is None
        next_key = None
        for key in self.kernel.map_keys(pin):
            if not started:
                started = key == req.after
                continue
            value = self.kernel.map_lookup(pin, key)
            if value is None:  # deleted while we walked
                continue
            if len(entries) == limit:
                next_key = entries[-1].key
                break
            entries.append(MapEntry(key=key, value=value, **decoded(key, value)))
        return MapDumpReply(entries=entries, next=next_key)

    def _writable(self, caller: Caller, program: ProgramRecord) -> None:
        if caller.own_only and program.loaded_by_uid != caller.uid:
            raise PermissionDenied(
                f"program {program.program_id} belongs to uid {program.loaded_by_uid}",
                owner_uid=program.loaded_by_uid)

    def update(self, caller: Caller, req: MapUpdateRequest) -> MapValueReply:
        program = self._program(caller, req.program_id)
        self._writable(caller, program)
        self.kernel.map_update(self._pin(program, req.map), req.key, req.value)
        return MapValueReply(key=req.key, value=req.value)

    def delete(self, caller: Caller, req: MapKeyRequest) -> MapValueReply:
        program = self._program(caller, req.program_id)
        self._writable(caller, program)
        pin = self._pin(program, req.map)
        old = self.kernel.map_lookup(pin, req.key)
        if not self.kernel.map_delete(pin, req.key):
            raise NotFound(f"no key {req.key.hex()} in map {req.map!r}", key=req.key.hex())
        return MapValueReply(key=req.key, value=old)
