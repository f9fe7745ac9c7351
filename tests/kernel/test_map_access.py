"""Map access through the API, as an unprivileged application would use it."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from bpfman.client import RpcError
from bpfman.testing import DaemonProcess


def test_map_get_dump_update_delete(daemon: DaemonProcess,
                                    bpf_program: Callable[..., Path]) -> None:
    client = daemon.client()
    [prog] = client.call("program.load", {
        "path": str(bpf_program("tp_counter")),
        "programs": [{"name": "count_getpid", "type": "tracepoint"}],
        "global_data": {"target_pid": struct.pack("<I", os.getpid()).hex()},
    })["programs"]
    pid = prog["program_id"]
    maps = {m["name"]: m for m in client.call("map.list", {"program_id": pid})}
    assert maps["counts"]["key_size"] == 4 and maps["counts"]["value_size"] == 8
    assert maps["counts"]["map_id"] in prog["kernel"]["map_ids"]

    client.call("program.attach", {"program_id": pid,
                                   "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
    zero = struct.pack("<I", 0).hex()

    def count() -> int:
        reply = client.call("map.get", {"program_id": pid, "map": "counts", "key": zero})
        return struct.unpack("<Q", bytes.fromhex(reply["value"]))[0]

    before = count()
    for _ in range(40):
        os.getpid()
    assert count() - before == 40

    client.call("map.update", {"program_id": pid, "map": "counts", "key": zero,
                               "value": struct.pack("<Q", 1000).hex()})
    assert count() == 1000

    dump = client.call("map.dump", {"program_id": pid, "map": "counts"})
    assert [e["key"] for e in dump["entries"]] == [zero] and dump["next"] is None

    with pytest.raises(RpcError) as err:
        client.call("map.get", {"program_id": pid, "map": "counts", "key": "00"})
    assert err.value.code == 1000 and err.value.data["field"] == "key"
    with pytest.raises(RpcError) as err:
        client.call("map.get", {"program_id": pid, "map": "nope", "key": zero})
    assert err.value.code == 1100 and "counts" in err.value.message


def test_map_dump_pages(daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    client = daemon.client()
    [prog] = client.call("program.load", {
        "path": str(bpf_program("map_kinds")),
        "programs": [{"name": "noop", "type": "tracepoint"}],
    })["programs"]
    maps = {m["name"]: m for m in client.call("map.list", {"program_id": prog["program_id"]})}
    name, key_size, value_size = "by_key", maps["by_key"]["key_size"], maps["by_key"]["value_size"]
    for i in range(10):
        client.call("map.update", {"program_id": prog["program_id"], "map": name,
                                   "key": i.to_bytes(key_size, "little").hex(),
                                   "value": (i * 3).to_bytes(value_size, "little").hex()})
    seen: dict[int, int] = {}
    after = None
    while True:
        page = client.call("map.dump", {"program_id": prog["program_id"], "map": name,
                                        "limit": 3, "after": after})
        assert len(page["entries"]) <= 3
        for e in page["entries"]:
            seen[int.from_bytes(bytes.fromhex(e["key"]), "little")] = int.from_bytes(
                bytes.fromhex(e["value"]), "little")
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == {i: i * 3 for i in range(10)}
    deleted = client.call("map.delete", {"program_id": prog["program_id"], "map": name,
                                         "key": (4).to_bytes(key_size, "little").hex()})
    assert int.from_bytes(bytes.fromhex(deleted["value"]), "little") == 12


def test_map_cli(daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    out = daemon.cli("-o", "json", "load", "file", "--path", str(bpf_program("map_kinds")),
                     "--programs", "tracepoint:noop")
    pid = str(json.loads(out.stdout)["programs"][0]["program_id"])
    assert "by_key" in daemon.cli("map", "list", pid).stdout
    key, value = (7).to_bytes(4, "little").hex(), (99).to_bytes(8, "little").hex()
    daemon.cli("map", "update", pid, "by_key", key, value)
    # by_key has BTF (__u64 values): the CLI prints the value decoded
    assert daemon.cli("map", "get", pid, "by_key", key).stdout.strip() == "99"
    assert json.loads(daemon.cli("-o", "json", "map", "get", pid, "by_key", key).stdout)[
        "value"] == value
    assert key in daemon.cli("map", "dump", pid, "by_key").stdout
    daemon.cli("map", "delete", pid, "by_key", key)
    missing = daemon.cli("map", "get", pid, "by_key", key, check=False)
    assert "no such key" in missing.stdout and missing.returncode == 1


def test_structured_values_from_btf(daemon: DaemonProcess,
                                    bpf_program: Callable[..., Path]) -> None:
    client = daemon.client()
    [prog] = client.call("program.load", {"path": str(bpf_program("map_btf")),
                                          "programs": [{"name": "touch", "type": "tracepoint"}]})[
        "programs"]
    pid = prog["program_id"]
    key = struct.pack("<IHBB", 0x0100007F, 8080, 6, 0)
    value = (struct.pack("<QiI", 42, -3, 2) + struct.pack("<HHH", 1, 2, 3) + b"web\0\0\0\0\0"
             + bytes([7, 9]))
    value += bytes(-len(value) % 8)  # struct padding to its 8-byte alignment
    client.call("map.update", {"program_id": pid, "map": "flows", "key": key.hex(),
                               "value": value.hex()})
    got = client.call("map.get", {"program_id": pid, "map": "flows", "key": key.hex()})
    assert got["decoded_key"] == {"addr": 0x0100007F, "port": 8080, "proto": 6, "pad": 0}
    assert got["decoded_value"] == {"packets": 42, "delta": -3, "color": "GREEN",
                                    "hist": [1, 2, 3], "label": "web",
                                    "pair": {"a": 7, "b": 9}}
    [entry] = client.call("map.dump", {"program_id": pid, "map": "flows"})["entries"]
    assert entry["decoded_value"]["label"] == "web"
    total = client.call("map.get", {"program_id": pid, "map": "per_cpu_total",
                                    "key": bytes(4).hex()})
    assert total["decoded_key"] == 0
    # One value per possible CPU.
    assert total["decoded_value"] and set(total["decoded_value"]) == {0}
