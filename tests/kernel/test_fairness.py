"""One abusive uid cannot slow the daemon down for another (docs/security.md).

Real processes under two uids: the abuser holds many connections, each
sending batches of 100 requests as fast as the daemon answers (rpc.discover,
40 KB each, answered on the event loop; program.list, run in the kernel
lane), while the other uid times its `daemon.info` calls one by one. Its p99
must stay under 50 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from bpfman.testing import DaemonProcess, running_daemon

ABUSER, VICTIM = 65534, 65533
CONNECTIONS = 16
CONFIG = f"""[daemon]
socket_mode = "0666"

[[authorization.rules]]
uids = [{ABUSER}, {VICTIM}]
methods = ["daemon.info", "rpc.discover", "program.list"]
"""

FLOOD = """
import json, socket, sys, threading, time
path, method, connections, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": method} for i in range(100)]).encode()
answered = [0]

def flood():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rb")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(batch + b"\\n")
        f.readline()
        answered[0] += 100

threads = [threading.Thread(target=flood) for _ in range(connections)]
for t in threads:
    t.start()
print("ready", flush=True)
for t in threads:
    t.join()
print(answered[0], flush=True)
"""

TIMED = """
import json, socket, sys, time
path, calls = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.connect(path)
f = s.makefile("rb")
took = []
for i in range(calls):
    started = time.perf_counter()
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": "daemon.info"}).encode() + b"\\n")
    assert "result" in json.loads(f.readline())
    took.append(time.perf_counter() - started)
    time.sleep(0.01)
took.sort()
print(json.dumps({"p50": took[len(took) // 2], "p99": took[int(len(took) * 0.99) - 1],
                  "max": took[-1]}))
"""


@pytest.fixture(scope="module")
def shared() -> Iterator[DaemonProcess]:
    with running_daemon(CONFIG, log_level="info") as d:
        os.chmod(d.root, 0o755)
        yield d


def run_as(uid: int, code: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], user=uid, group=uid,
                            extra_groups=[], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("method", ["rpc.discover", "program.list"])
def test_a_flooding_uid_does_not_slow_down_another(shared: DaemonProcess, method: str) -> None:
    flood = run_as(ABUSER, FLOOD, shared.socket, method, CONNECTIONS, 8)
    try:
        assert flood.stdout is not None and flood.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the flood is on
        timed = run_as(VICTIM, TIMED, shared.socket, 200)
        out, _ = timed.communicate(timeout=120)
        figures = json.loads(out)
        answered = int(flood.communicate(timeout=60)[0].strip())
    finally:
        flood.kill()
        flood.wait()
    print(f"{method} flood: {answered} answered to the abuser; victim daemon.info"
          f" p50 {figures['p50'] * 1000:.1f} ms, p99 {figures['p99'] * 1000:.1f} ms,"
          f" max {figures['max'] * 1000:.1f} ms")
    assert answered > 1000  # the abuser really was served meanwhile
    assert figures["p99"] < 0.050, figures
