"""The daemon serves on a socket it inherits, as systemd socket activation does it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bpfman.testing import TEST_RUN_ROOT

# What systemd does between fork and exec: the socket on fd 3, our own pid
# (kept across exec) in LISTEN_PID.
LAUNCHER = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='bpfman'); "
    "os.execv(sys.executable, [sys.executable, '-m', 'bpfman', 'daemon', *sys.argv[2:]])"
)


def test_daemon_serves_inherited_socket() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    TEST_RUN_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sa", dir=TEST_RUN_ROOT))
    path = root / "activated.sock"
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(path))
    listening.listen()
    config = root / "bpfman.toml"
    config.write_text('[daemon]\nsocket_group = "bpfman"\n')
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(listening.fileno()), "--config", str(config),
         "--socket", str(root / "unused.sock"), "--state-dir", str(root / "state"),
         "--bpffs", str(root / "fs")],
        pass_fds=[listening.fileno()], stderr=subprocess.PIPE, text=True,
    )
    listening.close()  # the daemon holds it now
    try:
        # The socket already accepts connections: the first request waits for
        # the daemon instead of failing, which is the point of activation.
        out = subprocess.run(
            ["socat", "-t", "30", "-", f"UNIX-CONNECT:{path}"],
            input='{"jsonrpc":"2.0","id":1,"method":"daemon.info"}\n',
            capture_output=True, text=True, timeout=60, check=True,
        )
        info = json.loads(out.stdout)["result"]
        assert info["bpffs"] == str(root / "fs")
        assert info["socket"] == str(path)  # the socket it serves, not the configured one
        assert not (root / "unused.sock").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert path.exists()  # systemd owns the socket file, not the daemon
        # The configured group cannot apply to systemd's socket: said, not ignored.
        assert proc.stderr is not None
        assert "set SocketMode=/SocketGroup= in bpfman.socket" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-l", str(root / "fs")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
