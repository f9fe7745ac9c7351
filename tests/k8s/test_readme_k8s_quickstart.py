"""The README's "Quick start on Kubernetes", run as a newcomer would run it.

The local cluster script runs as a subprocess exactly as shown (only the
kubeconfig path is the test's own), the README's shell block runs in bash as
written (only /tmp/pybpfman-demo becomes the test's directory), then the
traffic and counter commands the script printed are run too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bpfman.testing import markdown_blocks

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"


def test_the_readme_kubernetes_quick_start(tmp_path: Path) -> None:
    command, shell = markdown_blocks(README, "Quick start on Kubernetes")[:2]
    assert command == "sudo .venv/bin/python scripts/k8s-local-cluster.py --nodes 2"
    kubeconfig = tmp_path / "kubeconfig"
    argv = command.split()[1:]  # we are root already: no sudo
    argv[0] = sys.executable
    cluster = subprocess.Popen([*argv, "--kubeconfig", str(kubeconfig)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert cluster.stdout is not None
        printed = []
        while not printed or not printed[-1].startswith("logs under"):
            line = cluster.stdout.readline()
            assert line, "".join(printed)
            printed.append(line)
        text = "".join(printed)
        demo = tmp_path / "demo"
        script = shell.replace("/tmp/pybpfman-kubeconfig", str(kubeconfig)).replace(
            "/tmp/pybpfman-demo", str(demo))
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "go-xdp-counter-example" in out.stdout
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        kubectl = str(Path(re.search(r"PATH=(\S+):\$PATH", text)[1]) / "kubectl")
        deadline = time.monotonic() + 60
        while "Success" not in subprocess.run(
                [kubectl, "get", "clusterbpfapplications", "go-xdp-counter-example"],
                env=env, capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "the application never reached Success"
            time.sleep(0.5)
        # What the script printed for node-1: the traffic and the counter commands.
        ping = re.search(r"node-1:.*\n\s+traffic:\s+(.*)\n\s+programs:\s+(.*)", text)
        assert ping, text
        socket = ping[2].split("--socket ")[1].split()[0]
        subprocess.run([*ping[1].split(), "-c", "5", "-q"], check=True, capture_output=True)
        bpfman = [sys.executable, "-m", "bpfman", "--socket", socket]
        listed = subprocess.run([*bpfman, "-o", "json", "list"], check=True,
                                capture_output=True, text=True).stdout
        program_id = re.search(r'"program_id": (\d+)', listed)[1]
        value = subprocess.run([*bpfman, "-o", "json", "map", "get", program_id,
                                "xdp_stats_map", "02000000"], check=True,
                               capture_output=True, text=True).stdout
        hexed = re.search(r'"value": "([0-9a-f]+)"', value)[1]
        raw = bytes.fromhex(hexed)
        packets = sum(int.from_bytes(raw[off:off + 8], "little")
                      for off in range(0, len(raw), 16))
        assert packets >= 5, value
    finally:
        cluster.send_signal(signal.SIGINT)  # Ctrl-C: the script removes everything
        cluster.wait(120)
    assert cluster.returncode == 0
