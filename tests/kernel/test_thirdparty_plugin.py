"""An out-of-tree plugin (tests/thirdparty/bpfman_raw_tracepoint, installed
into the test environment through the `bpfman.plugins` entry-point group)
works through the same API and CLI as the built-in types, with no change to
the core."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

from bpfman import kernel
from bpfman.testing import DaemonProcess


def raw_count(map_dir: str) -> int:
    raw = kernel.map_lookup(Path(map_dir) / "raw_counts", struct.pack("<I", 0))
    assert raw is not None
    return struct.unpack("<Q", raw)[0]


def test_raw_tracepoint_plugin_through_api(daemon: DaemonProcess,
                                           bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("raw_tp_counter")
    client = daemon.client()
    plugins = {p["name"]: p for p in client.call("plugin.list")}
    assert plugins["raw_tracepoint"]["types"] == ["raw_tracepoint"]
    assert plugins["raw_tracepoint"]["version"] == "0.1.0"

    [prog] = client.call("program.load", {
        "path": str(obj),
        "programs": [{"name": "count_sys_enter", "type": "raw_tracepoint"}],
        "global_data": {"target_pid": struct.pack("<I", os.getpid()).hex()},
    })["programs"]
    link = client.call("program.attach", {"program_id": prog["program_id"],
                                          "params": {"name": "sys_enter"}})
    assert link["summary"] == "raw_tracepoint sys_enter"
    assert Path(link["pin_path"]).exists()
    before = raw_count(prog["map_pin_dir"])
    for _ in range(50):
        os.getpid()
    assert raw_count(prog["map_pin_dir"]) - before == 50

    client.call("program.detach", {"link_id": link["link_id"]})
    before = raw_count(prog["map_pin_dir"])
    os.getpid()
    assert raw_count(prog["map_pin_dir"]) == before
    client.call("program.unload", {"program_id": prog["program_id"]})


def test_raw_tracepoint_plugin_through_cli(daemon: DaemonProcess,
                                           bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("raw_tp_counter")
    target = struct.pack("<I", os.getpid()).hex()
    out = daemon.cli("-o", "json", "load", "file", "--path", str(obj),
                     "--programs", "raw_tracepoint:count_sys_enter", "-g", f"target_pid={target}")
    [prog] = json.loads(out.stdout)["programs"]
    link = json.loads(daemon.cli("-o", "json", "attach", str(prog["program_id"]),
                                 "raw_tracepoint", "--name", "sys_enter").stdout)
    before = raw_count(prog["map_pin_dir"])
    for _ in range(20):
        os.getpid()
    assert raw_count(prog["map_pin_dir"]) - before == 20
    assert "raw_tracepoint sys_enter" in daemon.cli("list", "links").stdout
    bad = daemon.cli("attach", str(prog["program_id"]), "raw_tracepoint", "--name",
                     "no_such_raw_tp", check=False)
    assert bad.returncode == 1 and "no raw tracepoint no_such_raw_tp" in bad.stderr
    daemon.cli("detach", str(link["link_id"]))
    daemon.cli("unload", str(prog["program_id"]))
