"""kprobe, kretprobe, fentry and fexit through the daemon, in the VM kernel
(the host kernel has no kprobes and refuses tracing programs).

The probed function is do_unlinkat (see probe_support.py), which the test
drives by unlinking a known number of files; the programs count only the
test's own process.

One daemon serves the whole module (`module_daemon`, tests/vm/conftest.py):
under qemu's software emulation it takes about a minute to start.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import probe_support
import pytest
from probe_support import FENTRY, FUNCTION, KPROBE_OFFSET, unlink_files

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess

N = 100


@pytest.fixture
def programs(module_daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> dict[str, Any]:
    """Every program of kernel_probes.bpf.c loaded in one request (one map)."""
    selectors = [
        {"name": "on_entry", "type": "kprobe"},
        {"name": "on_return", "type": "kretprobe"},
        {"name": "on_offset", "type": "kprobe"},
        {"name": "on_fentry", "type": "fentry", "attach_func": FUNCTION},
        {"name": "on_fexit", "type": "fexit"},  # the target is in its ELF section
    ]
    loaded = module_daemon.client().call("program.load", {
        "path": str(bpf_program("kernel_probes")), "programs": selectors,
        "global_data": {"target_pid": struct.pack("<I", os.getpid()).hex()},
    })["programs"]
    return {p["name"]: p for p in loaded}


def counts(programs: dict[str, Any]) -> list[int]:
    """Every slot of the map the programs share."""
    return probe_support.counts(Path(programs["on_entry"]["map_pin_dir"]))




def detach(daemon: DaemonProcess, link: dict[str, Any]) -> None:
    daemon.client().call("program.detach", {"link_id": link["link_id"]})
    assert not Path(link["pin_path"]).exists()


def test_kprobe_and_kretprobe_count_calls(module_daemon: DaemonProcess,
                                          programs: dict[str, Any]) -> None:
    entry = module_daemon.attach(programs["on_entry"], fn_name=FUNCTION)
    ret = module_daemon.attach(programs["on_return"], fn_name=FUNCTION)
    assert entry["summary"] == f"kprobe {FUNCTION}"
    assert ret["summary"] == f"kretprobe {FUNCTION}"
    for link in (entry, ret):
        info = kernel.link_info(link["kernel_link_id"])
        assert (info.type, info.program_id) == ("perf_event", link["program_id"])

    unlink_files(N)
    assert counts(programs)[:2] == [N, N]

    detach(module_daemon, entry)
    detach(module_daemon, ret)
    unlink_files(N)
    assert counts(programs)[:2] == [N, N]
    assert module_daemon.client().call("link.list", {}) == []


def test_kprobe_at_an_offset(module_daemon: DaemonProcess, programs: dict[str, Any]) -> None:
    # Where instructions start depends on the build (endbr64, the ftrace nop):
    # the daemon refuses offsets inside an instruction, so take the first it
    # accepts in the function's straight-line prologue.
    refused = 0
    link = None
    for offset in range(1, 16):
        try:
            link = module_daemon.attach(programs["on_offset"], fn_name=FUNCTION, offset=offset)
            break
        except RpcError as err:
            assert (err.code, err.data["field"]) == (1000, "offset"), err
            refused += 1
    assert link is not None, "no offset in 1..15 accepted"
    assert link["summary"] == f"kprobe {FUNCTION}+{link['params']['offset']:#x}"
    unlink_files(N)
    assert counts(programs)[KPROBE_OFFSET] == N
    detach(module_daemon, link)
    unlink_files(N)
    assert counts(programs)[KPROBE_OFFSET] == N


def test_kprobe_errors(module_daemon: DaemonProcess, programs: dict[str, Any]) -> None:
    cases: list[tuple[str, dict[str, Any], int, str | None]] = [
        ("on_return", {"fn_name": FUNCTION, "offset": 4}, 1000, "offset"),
        ("on_entry", {"fn_name": "bpfman_no_such_function"}, 1100, None),
        ("on_entry", {"fn_name": "not a symbol"}, -32602, None),
    ]
    for name, params, code, field in cases:
        with pytest.raises(RpcError) as err:
            module_daemon.attach(programs[name], **params)
        assert err.value.code == code, (params, err.value)
        if field is not None:
            assert err.value.data["field"] == field
    assert module_daemon.client().call("link.list", {}) == []
    assert list((module_daemon.bpffs / "links").iterdir()) == []


def test_fentry_and_fexit_on_the_same_function(module_daemon: DaemonProcess,
                                               programs: dict[str, Any]) -> None:
    for name in ("on_fentry", "on_fexit"):
        got = module_daemon.client().call("program.get",
                                          {"program_id": programs[name]["program_id"]})
        assert got["attach_func"] == FUNCTION
        assert got["kernel"]["kernel_type"] == "tracing"
    fentry = module_daemon.attach(programs["on_fentry"])
    fexit = module_daemon.attach(programs["on_fexit"])
    assert (fentry["summary"], fexit["summary"]) == (f"fentry {FUNCTION}", f"fexit {FUNCTION}")
    for link in (fentry, fexit):
        assert kernel.link_info(link["kernel_link_id"]).type == "tracing"

    unlink_files(N)
    assert counts(programs)[FENTRY:] == [N, N]
    detach(module_daemon, fentry)
    unlink_files(N)
    assert counts(programs)[FENTRY:] == [N, 2 * N]
    detach(module_daemon, fexit)
    unlink_files(N)
    assert counts(programs)[FENTRY:] == [N, 2 * N]


def test_fexit_program_cannot_pose_as_fentry(module_daemon: DaemonProcess,
                                             bpf_program: Callable[..., Path]) -> None:
    [prog] = module_daemon.client().call("program.load", {
        "path": str(bpf_program("kernel_probes")),
        "programs": [{"name": "on_fexit", "type": "fentry"}]})["programs"]
    with pytest.raises(RpcError) as err:
        module_daemon.attach(prog)
    assert (err.value.code, err.value.data["field"]) == (1000, "type")
    assert list((module_daemon.bpffs / "links").iterdir()) == []
