"""examples/sk_lookup_steer: one listening socket serves a port range.

The app runs inside a network namespace the test creates; the daemon loads
and attaches the sk_lookup program to that namespace; the app puts its own
socket into the program's SOCKMAP. Connections from the namespace to three
ports of the range all reach it (it answers with the port asked for); one
outside the range is refused; on exit the app unloads what it loaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bpfman.kernel.netns import NetNs
from bpfman.testing import compile_bpf, running_daemon

EXAMPLE = Path(__file__).parents[2] / "examples" / "sk_lookup_steer"


def test_one_socket_serves_a_port_range(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    obj = compile_bpf(EXAMPLE / "steer.bpf.c", tmp_path)
    name = f"types-a-ex-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        with running_daemon() as d:
            app = subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, str(EXAMPLE / "steer.py"),
                 "--object", str(obj), "--ports", "7000-7099", "--count", "3",
                 "--socket", str(d.socket)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert app.stdout is not None
                first = app.stdout.readline()
                assert first.startswith("serving ports 7000-7099"), (first, app.stderr)
                replies = []
                for port in (7000, 7042, 7099, 7100):
                    with NetNs(f"/run/netns/{name}").entered():
                        s = socket.socket()
                    s.settimeout(5)
                    try:
                        s.connect(("127.0.0.1", port))
                        replies.append(s.recv(64).decode().strip())
                    except ConnectionRefusedError:
                        replies.append("refused")
                    finally:
                        s.close()
                assert replies == ["port 7000", "port 7042", "port 7099", "refused"]
                assert app.wait(20) == 0, app.stderr.read() if app.stderr else ""
            finally:
                if app.poll() is None:
                    app.kill()
                    app.wait(10)
            assert d.client().call("program.list", {}) == []
            assert d.client().call("link.list", {}) == []
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
