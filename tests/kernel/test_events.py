"""The event stream: one notification per change, in order, filtered by kind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bpfman.client import Client
from bpfman.testing import DaemonProcess


def test_event_stream_reports_every_change(daemon: DaemonProcess,
                                           bpf_program: Callable[..., Path]) -> None:
    watcher = Client(str(daemon.socket), timeout=20)
    stream = watcher.events()
    only_links = Client(str(daemon.socket), timeout=20).events(["attached", "detached"])
    client = daemon.client()
    [prog] = client.call("program.load", {
        "path": str(bpf_program("tp_counter")),
        "programs": [{"name": "count_getpid", "type": "tracepoint"}],
    })["programs"]
    pid = prog["program_id"]
    link = client.call("program.attach", {
        "program_id": pid, "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
    # The subscriber's connection still answers calls while subscribed.
    assert watcher.call("program.get", {"program_id": pid})["program_id"] == pid
    client.call("program.detach", {"link_id": link["link_id"]})
    client.call("program.unload", {"program_id": pid})

    events = [next(stream) for _ in range(4)]
    assert [e["kind"] for e in events] == ["loaded", "attached", "detached", "unloaded"]
    assert all(e["program_id"] == pid for e in events)
    assert events[1]["link_id"] == link["link_id"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert [next(only_links)["kind"] for _ in range(2)] == ["attached", "detached"]


def test_events_cli_prints_json_lines(daemon: DaemonProcess,
                                      bpf_program: Callable[..., Path]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpfman", "--socket", str(daemon.socket), "-o", "json",
         "events", "--kind", "loaded"], stdout=subprocess.PIPE, text=True)
    try:
        # Once the CLI has subscribed, the daemon logs it; wait for that line.
        for _ in range(200):
            if "subscribed to events" in daemon.log_text():
                break
            subprocess.run(["sleep", "0.05"])
        daemon.client().call("program.load", {
            "path": str(bpf_program("tp_counter")),
            "programs": [{"name": "count_getppid", "type": "tracepoint"}]})
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert '"kind": "loaded"' in line and "count_getppid" in line
    finally:
        proc.terminate()
        proc.wait(10)
