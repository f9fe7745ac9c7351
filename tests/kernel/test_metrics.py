"""The metrics plugin: Prometheus text from observer hooks and the public API."""

from __future__ import annotations

import os
import re
import socket
import struct
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bpfman.testing import DaemonProcess, running_daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_metrics_report_programs_runs_and_calls(bpf_program: Callable[..., Path]) -> None:
    port = free_port()
    config = f'[plugins.config.metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
    with running_daemon(config) as d:
        client = d.client()
        [prog] = client.call("program.load", {
            "path": str(bpf_program("tp_counter")),
            "programs": [{"name": "count_getpid", "type": "tracepoint"}],
            "global_data": {"target_pid": struct.pack("<I", os.getpid()).hex()},
        })["programs"]
        client.call("program.attach", {"program_id": prog["program_id"],
                                       "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
        for _ in range(50):
            os.getpid()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read(
        ).decode()
        assert sample(text, "bpfman_programs", type="tracepoint") == 1
        assert sample(text, "bpfman_links", type="tracepoint") == 1
        runs = sample(text, "bpfman_program_run_count_total", program_id=str(prog["program_id"]))
        assert runs >= 50  # every getpid on the host runs it; ours are 50 of them
        assert sample(text, "bpfman_rpc_calls_total", method="program.load", outcome="ok") == 1
        assert sample(text, "bpfman_rpc_latency_seconds_count", method="program.attach") == 1


def test_metrics_are_off_by_default(daemon: DaemonProcess) -> None:
    plugins = {p["name"]: p for p in daemon.client().call("plugin.list")}
    assert "bpfman_rpc_completed" in plugins["metrics"]["hooks"]
    assert "serving Prometheus metrics" not in daemon.log_text()
