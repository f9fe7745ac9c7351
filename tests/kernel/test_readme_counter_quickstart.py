"""The README's "Quick start: an unprivileged packet counter", as written.

The root steps run in bash as they are (a user made for the test stands in
for alice, so nothing of the machine's is touched); the daemon restart is the
one step replaced: the test starts its own daemon with the configuration the
README wrote, instead of restarting the machine's. Alice's steps run in a
login shell of that user (`su -`), with no privilege, while root sends the
traffic; the counter must see it, and unload on exit.
"""

from __future__ import annotations

import grp
import os
import re
import subprocess
import sys
from pathlib import Path

from bpfman.testing import markdown_blocks, running_daemon

ROOT = Path(__file__).parents[2]


def test_the_readme_quick_start_as_a_real_user(tmp_path: Path) -> None:
    setup, with_systemd, without_systemd, as_alice = markdown_blocks(
        ROOT / "README.md", "Quick start: an unprivileged packet counter")
    assert "systemctl restart bpfman.socket bpfman.service" in with_systemd
    assert "nohup bpfman daemon" in without_systemd
    user = f"pbqs{os.getpid() % 100000}"
    config = tmp_path / "bpfman.toml"
    group_existed = any(g.gr_name == "bpfman" for g in grp.getgrall())

    def ours(text: str) -> str:
        return (text.replace("alice", user)
                .replace("/etc/bpfman/bpfman.toml", str(config))
                .replace("/opt/pybpfman/examples", str(ROOT / "examples"))
                .replace("/opt/pybpfman/venv/bin/python", sys.executable))

    try:
        subprocess.run(["bash", "-euo", "pipefail", "-c", ours(setup)], check=True,
                       capture_output=True, text=True, timeout=60)
        with running_daemon(config.read_text()) as d:
            os.chmod(d.root, 0o755)  # the socket's own group and mode do the rest
            # Alice's block: `su - alice` starts her login; the rest runs in it.
            first, *rest = as_alice.splitlines()
            assert first.split("#")[0].strip() == "su - alice"
            commands = "\n".join(line for line in rest if not line.startswith("#"))
            commands += " --count 4 --interval 1"  # the counter stops by itself here
            script = f"export BPFMAN_SOCKET={d.socket}\n{ours(commands)}"
            app = subprocess.Popen(["su", "-", user, "-c", script], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            assert app.stdout is not None
            first_line = app.stdout.readline()
            assert re.match(r"counting on lab1: program \d+, link \d+", first_line), (
                first_line, app.stderr.read() if app.stderr else "")
            subprocess.run(["ping", "-c", "3", "-i", "0.2", "10.77.0.2"], check=True,
                           capture_output=True, timeout=30)
            out, err = app.communicate(timeout=60)
            assert app.returncode == 0, err
            counted = [int(n) for n in re.findall(r"(\d+) packets received", out)]
            assert counted and max(counted) >= 3, out
            # Ctrl-C or the end of --count: it unloaded what it loaded.
            assert d.client().call("program.list") == []
    finally:
        subprocess.run(["ip", "netns", "del", f"{user}-lab"], capture_output=True)
        subprocess.run(["ip", "link", "del", "lab0"], capture_output=True)
        subprocess.run(["userdel", "-r", user], capture_output=True)
        if not group_existed:
            subprocess.run(["groupdel", "bpfman"], capture_output=True)
