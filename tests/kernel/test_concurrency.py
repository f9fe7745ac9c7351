"""50 clients mutating at once: the result equals a serial run, nothing leaks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bpfman import kernel
from bpfman.testing import DaemonProcess

CLIENTS = 50
TRACEPOINTS = ["syscalls/sys_enter_getpid", "syscalls/sys_enter_getppid"]


def daemon_fds(d: DaemonProcess) -> int:
    assert d.proc is not None
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


def daemon_rss_kib(d: DaemonProcess) -> int:
    assert d.proc is not None
    for line in Path(f"/proc/{d.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def client_script(d: DaemonProcess, obj: str, index: int, out: dict[int, Any]) -> None:
    """What each client does; serially, it would leave one program with one
    link on TRACEPOINTS[index % 2], and nothing else."""
    client = d.client()
    [prog] = client.call("program.load", {
        "path": obj, "programs": [{"name": "count_getpid", "type": "tracepoint"}],
        "metadata": {"client": str(index)}})["programs"]
    pid = prog["program_id"]
    first = client.call("program.attach", {"program_id": pid,
                                           "params": {"tracepoint": TRACEPOINTS[0]}})
    second = client.call("program.attach", {"program_id": pid,
                                            "params": {"tracepoint": TRACEPOINTS[1]}})
    keep, drop = (first, second) if index % 2 == 0 else (second, first)
    client.call("program.detach", {"link_id": drop["link_id"]})
    # A throw-away program per client, loaded and unloaded amid the others.
    [tmp] = client.call("program.load", {
        "path": obj, "programs": [{"name": "count_getppid", "type": "tracepoint"}]})["programs"]
    client.call("program.attach", {"program_id": tmp["program_id"],
                                   "params": {"tracepoint": TRACEPOINTS[index % 2]}})
    client.call("program.unload", {"program_id": tmp["program_id"]})
    out[index] = {"program_id": pid, "link_id": keep["link_id"]}


def run_clients(d: DaemonProcess, obj: str) -> dict[int, Any]:
    out: dict[int, Any] = {}
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            client_script(d, obj, i, out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    return out


def test_fifty_concurrent_clients(daemon: DaemonProcess,
                                  bpf_program: Callable[..., Path]) -> None:
    obj = str(bpf_program("tp_counter"))
    client = daemon.client()
    client.call("daemon.info")
    fds_before = daemon_fds(daemon)
    rss_before = daemon_rss_kib(daemon)

    out = run_clients(daemon, obj)

    programs = client.call("program.list", {})
    links = client.call("link.list", {})
    assert len(out) == CLIENTS
    expected_programs = sorted(o["program_id"] for o in out.values())
    assert sorted(p["program_id"] for p in programs) == expected_programs
    assert sorted(ln["link_id"] for ln in links) == sorted(o["link_id"] for o in out.values())
    for i, o in out.items():
        [link] = [ln for ln in links if ln["link_id"] == o["link_id"]]
        assert link["program_id"] == o["program_id"]
        assert link["params"]["tracepoint"] == TRACEPOINTS[i % 2]
    # Pins, records and kernel agree.
    assert {str(p) for p in daemon.bpffs.glob("prog_*")} == {p["pin_path"] for p in programs}
    assert {str(p) for p in (daemon.bpffs / "links").iterdir()} == {ln["pin_path"] for ln in links}
    for ln in links:
        assert kernel.link_info(ln["kernel_link_id"]).program_id == ln["program_id"]

    for o in out.values():
        client.call("program.unload", {"program_id": o["program_id"]})
    assert list(daemon.bpffs.glob("prog_*")) == []
    assert list((daemon.bpffs / "links").iterdir()) == []
    assert list((daemon.bpffs / "maps").iterdir()) == []
    # No descriptor kept for any of the 100 programs or 150 links it handled.
    assert daemon_fds(daemon) <= fds_before + 2
    assert daemon_rss_kib(daemon) < rss_before + 20 * 1024
