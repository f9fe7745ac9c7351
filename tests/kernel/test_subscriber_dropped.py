"""An event subscriber that stops reading is dropped: the daemon closes its
connection once a notification has waited `send_timeout_seconds`, and keeps
serving everyone else (docs/security.md, "Event subscribers")."""

from __future__ import annotations

import array
import fcntl
import socket
import termios
import time
from collections.abc import Callable
from pathlib import Path

from bpfman.client import Client
from bpfman.testing import DaemonProcess, running_daemon

SEND_TIMEOUT = 1


def _queued(sock: socket.socket) -> int:
    """Bytes waiting in `sock`'s receive queue, without reading them."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    return buf[0]


def _changes(d: DaemonProcess, obj: Path) -> None:
    """Two events: loaded, unloaded."""
    client = d.client()
    [prog] = client.call("program.load", {
        "path": str(obj), "programs": [{"name": "count_getpid", "type": "tracepoint"}],
    })["programs"]
    client.call("program.unload", {"program_id": prog["program_id"]})


def test_a_subscriber_that_never_reads_is_dropped(bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("tp_counter")
    with running_daemon(f"[daemon]\nsend_timeout_seconds = {SEND_TIMEOUT}\n") as d:
        stalled = socket.socket(socket.AF_UNIX)
        stalled.settimeout(10)
        stalled.connect(str(d.socket))
        stalled.sendall(b'{"jsonrpc":"2.0","id":1,"method":"events.subscribe"}\n')
        reading = Client(str(d.socket), timeout=20).events(["loaded"])
        try:
            deadline = time.monotonic() + 60
            # Make changes until the daemon's writes to the stalled subscriber
            # stop arriving (its socket buffer is full and a send is waiting).
            last, still = -1, 0
            while still < 3:
                assert time.monotonic() < deadline, "the socket never filled up"
                for _ in range(10):
                    _changes(d, obj)
                queued = _queued(stalled)
                still = still + 1 if queued == last else 0
                last = queued
            time.sleep(SEND_TIMEOUT + 1)
            # Its connection is closed: after what was queued comes EOF.
            data = b""
            while chunk := stalled.recv(1 << 20):
                data += chunk
            assert data.count(b"\n") > 1  # it had been receiving events
            assert f"read nothing for {SEND_TIMEOUT}" in d.log_text()
            assert "(event subscriber)" in d.log_text()
            # Everyone else is still served, in order.
            assert d.client().call("daemon.info")["version"]
            assert next(reading)["kind"] == "loaded"
            _changes(d, obj)
        finally:
            stalled.close()
        assert d.proc is not None and d.proc.poll() is None
