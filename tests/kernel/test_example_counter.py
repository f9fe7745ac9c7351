"""examples/xdp_counter: the announcement's counter as an unprivileged app.

The application runs as uid 65534 with only what an own-scope rule grants;
the daemon loads and attaches the XDP program for it on a veth in a test
namespace, the app prints counts read with map.get, and unloads on exit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bpfman.testing import VethPair, compile_bpf, running_daemon

EXAMPLE = Path(__file__).parents[2] / "examples" / "xdp_counter"
POLICY = """[daemon]
socket_mode = "0666"

[[authorization.rules]]
users = ["nobody"]
scope = "own"
methods = ["program.load", "program.attach", "program.unload", "map.get"]
netns = ["{netns}"]
"""


def test_unprivileged_counter_app(veth: VethPair, public_tmp_path: Path) -> None:
    obj = compile_bpf(EXAMPLE / "xdp_counter.bpf.c", public_tmp_path)
    with running_daemon(POLICY.format(netns=veth.netns_b)) as d:
        os.chmod(d.root, 0o755)
        app = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "counter.py"), "--object", str(obj),
             "--iface", veth.if_b, "--netns", veth.netns_b, "--interval", "0.5",
             "--socket", str(d.socket)],
            user=65534, group=65534, extra_groups=[], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        try:
            assert app.stdout is not None
            first = app.stdout.readline()
            assert first.startswith(f"counting on {veth.if_b}"), (first, app.stderr)
            [prog] = d.client().call("program.list", {"metadata": {"app": "xdp-counter"}})
            assert prog["loaded_by_uid"] == 65534
            assert veth.ping(20) == 20  # the counter passes every packet
            deadline = time.monotonic() + 20
            packets = 0
            while packets < 20 and time.monotonic() < deadline:
                line = app.stdout.readline()
                if match := re.match(r"(\d+) packets received", line):
                    packets = int(match.group(1))
            assert packets >= 20  # our pings (and their ARP) arrived on veth b
        finally:
            app.send_signal(signal.SIGINT)
            app.wait(30)
        assert app.returncode == 0, app.stderr.read() if app.stderr else ""
        # On exit it unloaded (and so detached) what it asked for.
        assert d.client().call("program.list", {}) == []
        assert d.client().call("link.list", {}) == []
