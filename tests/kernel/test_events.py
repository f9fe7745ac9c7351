"""The event stream: one notification per change, in order, filtered by kind."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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


def _subscribe_raw(daemon: DaemonProcess) -> socket.socket:
    """A subscriber speaking JSON-RPC by hand, so the test decides how it dies."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.socket))
    sock.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "events.subscribe",'
                 b' "params": {}}\n')
    reply = sock.makefile("rb").readline()
    assert b'"subscribed":true' in reply, reply
    return sock


def _subscriber_process(daemon: DaemonProcess) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bpfman", "--socket", str(daemon.socket), "-o", "json",
         "events"], stdout=subprocess.PIPE, text=True)
    before = daemon.log_text().count("subscribed to events")
    for _ in range(200):
        if daemon.log_text().count("subscribed to events") > before:
            break
        time.sleep(0.05)
    return proc


def _load_and_unload(daemon: DaemonProcess, obj: Path) -> None:
    client = daemon.client()
    [prog] = client.call("program.load", {
        "path": str(obj), "programs": [{"name": "count_getpid", "type": "tracepoint"}],
    })["programs"]
    client.call("program.unload", {"program_id": prog["program_id"]})


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "closed", "half_closed", "reset",
                                 "never_reads"])
def test_a_vanished_subscriber_takes_nothing_down(how: str, daemon: DaemonProcess,
                                                  bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("tp_counter")
    survivor = Client(str(daemon.socket), timeout=20).events(["loaded"])
    proc: subprocess.Popen[str] | None = None
    sock: socket.socket | None = None
    try:
        if how in ("sigterm", "sigkill"):
            proc = _subscriber_process(daemon)
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
            proc.wait(10)
        else:
            sock = _subscribe_raw(daemon)
            if how == "closed":
                sock.close()
            elif how == "half_closed":
                sock.shutdown(socket.SHUT_WR)
            elif how == "reset":
                # SO_LINGER 0: close sends RST, the daemon's next write fails.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            # never_reads: stays open and never reads a byte.
        # More changes for a non-reading subscriber (here only: the daemon
        # survives it; that it is dropped is tests/kernel/test_subscriber_dropped.py).
        rounds = 40 if how == "never_reads" else 2
        for _ in range(rounds):
            _load_and_unload(daemon, obj)
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_text()[-3000:]
        assert daemon.client().call("daemon.info", {})
        # Another subscriber kept receiving, in order.
        assert next(survivor)["kind"] == "loaded"
        assert "TrioInternalError" not in daemon.log_text()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if sock is not None:
            sock.close()
