"""kill -9 at every step of every mutation, then restart: the world is consistent.

Fault points (bpfman.manager.faults) make the daemon SIGKILL itself mid-mutation. After
a restart, reconciliation must leave no kernel object without its record and
no record without its kernel object, and attached programs kept running.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, running_daemon


def assert_consistent(d: DaemonProcess) -> dict[str, Any]:
    client = d.client()
    programs = client.call("program.list", {})
    links = client.call("link.list", {})
    pins = {str(p) for p in d.bpffs.glob("prog_*")}
    assert pins == {p["pin_path"] for p in programs}, "program pins and records differ"
    for p in programs:
        assert p["kernel"] is not None, f"record {p['program_id']} without kernel program"
    link_pins = {str(p) for p in (d.bpffs / "links").iterdir()}
    assert link_pins == {ln["pin_path"] for ln in links}, "link pins and records differ"
    for ln in links:
        assert kernel.link_info(ln["kernel_link_id"]).program_id == ln["program_id"]
    map_dirs = {str(p) for p in (d.bpffs / "maps").iterdir()}
    assert map_dirs == {p["map_pin_dir"] for p in programs}, "map pins and records differ"
    # Every program the kernel keeps alive for this daemon is a pin checked
    # above or an fd it holds: it must hold none between requests.
    assert d.proc is not None
    held = [os.readlink(f"/proc/{d.proc.pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{d.proc.pid}/fd")]
    assert not [h for h in held if h.startswith("anon_inode:bpf")], held
    return {"programs": programs, "links": links}


@pytest.mark.parametrize("point", [
    "load.after_kernel", "load.before_commit", "attach.after_kernel", "attach.before_commit",
    "detach.after_kernel", "unload.after_kernel",
])
def test_kill_at_fault_point_then_restart(point: str, bpf_program: Callable[..., Path]) -> None:
    obj = str(bpf_program("tp_counter"))
    me = struct.pack("<I", os.getpid()).hex()
    with running_daemon() as d:
        client = d.client()
        [kept] = client.call("program.load", {
            "path": obj, "programs": [{"name": "count_getpid", "type": "tracepoint"}],
            "global_data": {"target_pid": me}})["programs"]
        kept_link = client.call("program.attach", {
            "program_id": kept["program_id"],
            "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
        d.stop()
        d.start(env={"BPFMAN_FAULT": point})

        verb = point.split(".")[0]
        request = {
            "load": ("program.load", {"path": obj, "programs": [
                {"name": "count_getppid", "type": "tracepoint"}]}),
            "attach": ("program.attach", {"program_id": kept["program_id"], "params": {
                "tracepoint": "syscalls/sys_enter_getppid"}}),
            "detach": ("program.detach", {"link_id": kept_link["link_id"]}),
            "unload": ("program.unload", {"program_id": kept["program_id"]}),
        }[verb]
        with pytest.raises((RpcError, OSError)):
            d.client().call(*request)
        assert d.proc is not None and d.proc.wait(10) == -9
        d.proc = None

        # While the daemon is dead, the attached program keeps counting.
        if verb in ("load", "attach"):
            before = struct.unpack("<Q", kernel.map_lookup(
                Path(kept["map_pin_dir"]) / "counts", bytes(4)))[0]
            for _ in range(10):
                os.getpid()
            after = struct.unpack("<Q", kernel.map_lookup(
                Path(kept["map_pin_dir"]) / "counts", bytes(4)))[0]
            assert after - before == 10

        d.start()
        state = assert_consistent(d)
        ids = [p["program_id"] for p in state["programs"]]
        link_ids = [ln["link_id"] for ln in state["links"]]
        if verb in ("load", "attach"):
            # The interrupted mutation did not happen; what existed is intact.
            assert ids == [kept["program_id"]]
            assert link_ids == [kept_link["link_id"]]
        elif verb == "detach":
            assert ids == [kept["program_id"]] and link_ids == []
        else:  # unload: the pin was already gone, so the program is gone
            assert ids == [] and link_ids == []
        assert "reconcile:" in d.log_text(), "the repair was not reported"


def test_reconcile_on_demand_reports_drift(daemon: DaemonProcess,
                                           bpf_program: Callable[..., Path]) -> None:
    client = daemon.client()
    [prog] = client.call("program.load", {
        "path": str(bpf_program("tp_counter")),
        "programs": [{"name": "count_getpid", "type": "tracepoint"}]})["programs"]
    link = client.call("program.attach", {"program_id": prog["program_id"],
                                          "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
    assert client.call("daemon.reconcile") == []
    Path(link["pin_path"]).unlink()  # someone detached it behind our back
    [drift] = client.call("daemon.reconcile")
    assert drift["subject"] == f"link {link['link_id']}" and "pin missing" in drift["problem"]
    assert client.call("link.list", {}) == []
    Path(prog["pin_path"]).unlink()  # and unloaded the program
    drifts = client.call("daemon.reconcile")
    assert any(d["subject"].startswith(f"program {prog['program_id']}") for d in drifts)
    assert client.call("program.list", {}) == []
    assert_consistent(daemon)


def test_reboot_with_empty_bpffs_clears_stale_records(bpf_program: Callable[..., Path]) -> None:
    with running_daemon() as d:
        client = d.client()
        [prog] = client.call("program.load", {
            "path": str(bpf_program("tp_counter")),
            "programs": [{"name": "count_getpid", "type": "tracepoint"}]})["programs"]
        client.call("program.attach", {"program_id": prog["program_id"],
                                       "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
        d.stop()
        # A reboot: the bpffs is gone with everything pinned in it; the store stays.
        assert os.system(f"umount {d.bpffs}") == 0
        d.start()
        assert d.client().call("program.list", {}) == []
        assert d.client().call("link.list", {}) == []
        assert f"program {prog['program_id']} (count_getpid): pin missing" in d.log_text()
        assert_consistent(d)


def test_reboot_with_restore_option_reloads_and_reattaches(
    bpf_program: Callable[..., Path],
) -> None:
    me = struct.pack("<I", os.getpid()).hex()
    with running_daemon('[daemon]\nlost_programs = "restore"\n') as d:
        client = d.client()
        progs = client.call("program.load", {
            "path": str(bpf_program("tp_counter")),
            "programs": [{"name": "count_getpid", "type": "tracepoint"},
                         {"name": "count_getppid", "type": "tracepoint"}],
            "global_data": {"target_pid": me, "increment": struct.pack("<Q", 2).hex()},
            "metadata": {"app": "survivor"}})["programs"]
        for p in progs:
            client.call("program.attach", {"program_id": p["program_id"], "params": {
                "tracepoint": f"syscalls/sys_enter_{p['name'].removeprefix('count_')}"}})
        d.stop()
        assert os.system(f"umount {d.bpffs}") == 0  # the reboot
        d.start()
        restored = d.client().call("program.list", {"metadata": {"app": "survivor"}})
        assert sorted(p["name"] for p in restored) == ["count_getpid", "count_getppid"]
        assert {p["program_id"] for p in restored}.isdisjoint({p["program_id"] for p in progs})
        assert len({p["map_pin_dir"] for p in restored}) == 1  # maps shared again
        links = d.client().call("link.list", {})
        assert len(links) == 2
        counts = Path(restored[0]["map_pin_dir"]) / "counts"
        before = struct.unpack("<Q", kernel.map_lookup(counts, bytes(4)))[0]
        for _ in range(10):
            os.getpid()
            os.getppid()
        # Same global data as before: increment 2, our pid, both programs.
        assert struct.unpack("<Q", kernel.map_lookup(counts, bytes(4)))[0] - before == 40
        assert "restored as program" in d.log_text()
        assert_consistent(d)
