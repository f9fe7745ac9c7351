"""map.* reach only the maps of the program named, whatever the map name says."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bpfman.client import RpcError
from bpfman.testing import DaemonProcess


def _load(daemon: DaemonProcess, obj: Path) -> int:
    [prog] = daemon.client().call("program.load", {
        "path": str(obj), "programs": [{"name": "count_getpid", "type": "tracepoint"}],
    })["programs"]
    return int(prog["program_id"])


def test_a_map_name_never_leaves_the_programs_maps_directory(
        daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    program_id = _load(daemon, bpf_program("tp_counter"))
    client = daemon.client()
    # A map pinned elsewhere in the same bpffs, as another owner's would be.
    outside = daemon.bpffs / "outside"
    subprocess.run(["bpftool", "map", "create", str(outside), "type", "array", "key", "4",
                    "value", "4", "entries", "1", "name", "outside"], check=True)
    try:
        key, value = "00000000", "2a000000"
        replies = []
        for name in (str(outside), "../../outside", "a/../../outside",
                     str(daemon.bpffs / "does-not-exist")):
            with pytest.raises(RpcError) as refused:
                client.call("map.update", {"program_id": program_id, "map": name,
                                           "key": key, "value": value})
            assert refused.value.code == 1000 and refused.value.data["field"] == "map"
            replies.append(refused.value.message.replace(name, "NAME"))
            with pytest.raises(RpcError):
                client.call("map.get", {"program_id": program_id, "map": name, "key": key})
        # Existing and missing paths get the same answer: no probing the host.
        assert len(set(replies)) == 1
        dump = subprocess.run(["bpftool", "map", "dump", "pinned", str(outside)],
                              capture_output=True, text=True, check=True).stdout
        assert "2a" not in dump
    finally:
        outside.unlink()
        client.call("program.unload", {"program_id": program_id})


def test_a_maps_directory_removed_by_hand_is_reported_and_pinned_again(
        daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    program_id = _load(daemon, bpf_program("tp_counter"))
    client = daemon.client()
    maps_dir = Path(client.call("program.get", {"program_id": program_id})["map_pin_dir"])
    before = sorted(p.name for p in maps_dir.iterdir())
    client.call("map.update", {"program_id": program_id, "map": "counts", "key": "00000000",
                               "value": "2a00000000000000"})
    shutil.rmtree(maps_dir)
    try:
        for method, params in (("map.list", {}), ("map.get", {"map": "counts",
                                                              "key": "00000000"})):
            with pytest.raises(RpcError) as gone:
                client.call(method, {"program_id": program_id, **params})
            assert "maps directory" in gone.value.message and gone.value.code != -32603
        # Reconcile notices, and the program still holds its maps: pinned again.
        [drift] = [d for d in client.call("daemon.reconcile")
                   if d["problem"] == "maps directory missing"]
        assert drift["action"].startswith("pinned again from the kernel"), drift
        assert sorted(p.name for p in maps_dir.iterdir()) == before
        value = client.call("map.get", {"program_id": program_id, "map": "counts",
                                        "key": "00000000"})["value"]
        assert value == "2a00000000000000"  # the same map, not a new one
    finally:
        client.call("program.unload", {"program_id": program_id})
