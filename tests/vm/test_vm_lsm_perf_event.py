"""LSM programs through the daemon in the VM kernel (the host's lockdown
refuses them): a program on the task_kill hook denies kill(2) to one test
process, which sees EPERM while the link exists and succeeds again after
detach. Also perf_event in the VM, whose emulated CPU has no hardware PMU:
the software cpu-clock event samples on every CPU, and a hardware event
either samples or is refused naming the missing feature.

One daemon serves the whole module (`module_daemon`, tests/vm/conftest.py).
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess

HOOK = "task_kill"
# Answers each line on stdin with the outcome of kill(own pid, 0): "ok" or the errno name.
KILLER = """
import errno, os, sys
for _ in sys.stdin:
    try:
        os.kill(os.getpid(), 0)
        print("ok", flush=True)
    except OSError as exc:
        print(errno.errorcode[exc.errno], flush=True)
"""


class Killer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", KILLER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def try_kill(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, "the test process did not answer"
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def killer() -> Iterator[Killer]:
    k = Killer()
    try:
        yield k
    finally:
        k.stop()


def denials(prog: dict[str, Any]) -> int:
    raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / "denials", struct.pack("<I", 0))
    assert raw is not None
    return struct.unpack("<Q", raw[:8])[0]


def test_lsm_denies_then_allows_after_detach(module_daemon: DaemonProcess, killer: Killer,
                                             bpf_program: Callable[..., Path]) -> None:
    client = module_daemon.client()
    assert client.call("daemon.info")["features"]["lsm_programs"] is True
    [prog] = client.call("program.load", {
        "path": str(bpf_program("lsm_deny")),
        "programs": [{"name": "deny_kill", "type": "lsm"}],  # hook from SEC("lsm/task_kill")
        "global_data": {"target_pid": struct.pack("<I", killer.proc.pid).hex()},
    })["programs"]
    got = client.call("program.get", {"program_id": prog["program_id"]})
    assert (got["attach_func"], got["kernel"]["kernel_type"]) == (HOOK, "lsm")
    assert killer.try_kill() == "ok"  # loaded, not attached: nothing denied

    out = module_daemon.cli("attach", str(prog["program_id"]), "lsm", "-o", "json")
    link = json.loads(out.stdout)
    assert link["summary"] == f"lsm {HOOK}"
    assert kernel.link_info(link["kernel_link_id"]).type == "tracing"
    assert killer.try_kill() == "EPERM"
    assert killer.try_kill() == "EPERM"
    assert denials(prog) == 2
    os.kill(killer.proc.pid, 0)  # another process (this one) is not denied

    client.call("program.detach", {"link_id": link["link_id"]})
    assert not Path(link["pin_path"]).exists()
    assert killer.try_kill() == "ok"
    assert denials(prog) == 2
    client.call("program.unload", {"program_id": prog["program_id"]})


def test_lsm_unknown_hook_and_wrong_type(module_daemon: DaemonProcess,
                                         bpf_program: Callable[..., Path]) -> None:
    client = module_daemon.client()
    with pytest.raises(RpcError) as missing:
        client.call("program.load", {
            "path": str(bpf_program("lsm_deny")),
            "programs": [{"name": "deny_kill", "type": "lsm", "attach_func": "no_such_hook"}]})
    assert missing.value.data["kind"] == "attach_target_not_found", missing.value.data
    with pytest.raises(RpcError) as wrong:
        client.call("program.load", {
            "path": str(bpf_program("lsm_deny")),
            "programs": [{"name": "deny_kill", "type": "fentry"}]})
    assert wrong.value.data["field"] == "programs[0].type"


def _samples(prog: dict[str, Any]) -> list[int]:
    out = []
    for cpu in kernel.online_cpus():
        raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / "samples", struct.pack("<I", cpu))
        assert raw is not None
        out.append(struct.unpack("<Q", raw[:8])[0])
    return out


def test_perf_event_software_and_hardware(module_daemon: DaemonProcess,
                                          bpf_program: Callable[..., Path]) -> None:
    client = module_daemon.client()
    [prog] = client.call("program.load", {
        "path": str(bpf_program("perf_counter")),
        "programs": [{"name": "count_samples", "type": "perf_event"}]})["programs"]
    link = client.call("program.attach", {"program_id": prog["program_id"],
                                          "params": {"event": "cpu-clock", "frequency": 100}})
    assert len(list(Path(link["pin_path"]).iterdir())) == len(kernel.online_cpus())
    deadline = time.monotonic() + 30
    while not all(_samples(prog)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_samples(prog)), _samples(prog)
    client.call("program.detach", {"link_id": link["link_id"]})
    try:
        hw = client.call("program.attach", {"program_id": prog["program_id"],
                                            "params": {"event": "cycles"}})
    except RpcError as exc:
        # No hardware PMU in the emulated CPU: refused, naming the feature.
        assert exc.data["kind"] == "kernel_feature_missing", exc.data
        assert "hardware perf events" in str(exc)
    else:
        client.call("program.detach", {"link_id": hw["link_id"]})
    assert list((module_daemon.bpffs / "links").iterdir()) == []
    client.call("program.unload", {"program_id": prog["program_id"]})
