"""kprobe, kretprobe, fentry and fexit through the daemon, in the VM kernel
(the host kernel has no kprobes and refuses tracing programs).

The probed function is do_unlinkat (in BTF, kallsyms and the ftrace list of
any kernel with BTF; the syscall wrappers such as __x64_sys_getppid have no
BTF function to fentry), which the test drives by unlinking a known number
of files; the programs count only the test's own process.

One daemon serves the whole module: under qemu's software emulation it takes
about a minute to start (measured 65 s), longer than bpfman.testing's
per-test `daemon` fixture waits, so this module overrides that fixture with
a module-scoped one of the same name. Each test unloads what it loaded.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import TEST_RUN_ROOT, DaemonProcess

FUNCTION = "do_unlinkat"
KPROBE, KRETPROBE, KPROBE_OFFSET, FENTRY, FEXIT = range(5)  # slots of kernel_probes.bpf.c
N = 100
DAEMON_START_TIMEOUT = 300.0


def unlink_files(n: int) -> None:
    """Exactly `n` calls of do_unlinkat by this process."""
    with tempfile.TemporaryDirectory(prefix="unlink") as tmp:
        paths = [Path(tmp) / str(i) for i in range(n)]
        for path in paths:
            path.touch()
        for path in paths:
            os.unlink(path)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """One real daemon for the module, stopped (its bpffs unmounted) at the end."""
    TEST_RUN_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    d = DaemonProcess(Path(tempfile.mkdtemp(prefix="d", dir=TEST_RUN_ROOT)))
    try:
        d.start(timeout=DAEMON_START_TIMEOUT)
        yield d
    finally:
        d.cleanup()


@pytest.fixture(autouse=True)
def unload_everything(daemon: DaemonProcess) -> Iterator[None]:
    """Leave the shared daemon as each test found it: no links, no programs."""
    yield
    for prog in daemon.client().call("program.list", {}):
        daemon.client().call("program.unload", {"program_id": prog["program_id"]})
    assert list((daemon.bpffs / "links").iterdir()) == []


@pytest.fixture
def programs(daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> dict[str, Any]:
    """Every program of kernel_probes.bpf.c loaded in one request (one map)."""
    selectors = [
        {"name": "on_entry", "type": "kprobe"},
        {"name": "on_return", "type": "kretprobe"},
        {"name": "on_offset", "type": "kprobe"},
        {"name": "on_fentry", "type": "fentry", "attach_func": FUNCTION},
        {"name": "on_fexit", "type": "fexit"},  # the target is in its ELF section
    ]
    loaded = daemon.client().call("program.load", {
        "path": str(bpf_program("kernel_probes")), "programs": selectors,
        "global_data": {"target_pid": struct.pack("<I", os.getpid()).hex()},
    })["programs"]
    return {p["name"]: p for p in loaded}


def counts(programs: dict[str, Any]) -> list[int]:
    maps = Path(programs["on_entry"]["map_pin_dir"])
    out = []
    for slot in range(5):
        raw = kernel.map_lookup(maps / "counts", struct.pack("<I", slot))
        assert raw is not None
        out.append(struct.unpack("<Q", raw[:8])[0])
    return out


def attach(daemon: DaemonProcess, prog: dict[str, Any], **params: Any) -> dict[str, Any]:
    return daemon.client().call("program.attach", {"program_id": prog["program_id"],
                                                   "params": params})


def detach(daemon: DaemonProcess, link: dict[str, Any]) -> None:
    daemon.client().call("program.detach", {"link_id": link["link_id"]})
    assert not Path(link["pin_path"]).exists()


def test_kprobe_and_kretprobe_count_calls(daemon: DaemonProcess,
                                          programs: dict[str, Any]) -> None:
    entry = attach(daemon, programs["on_entry"], fn_name=FUNCTION)
    ret = attach(daemon, programs["on_return"], fn_name=FUNCTION)
    assert entry["summary"] == f"kprobe {FUNCTION}"
    assert ret["summary"] == f"kretprobe {FUNCTION}"
    for link in (entry, ret):
        info = kernel.link_info(link["kernel_link_id"])
        assert (info.type, info.program_id) == ("perf_event", link["program_id"])

    unlink_files(N)
    assert counts(programs)[:2] == [N, N]

    detach(daemon, entry)
    detach(daemon, ret)
    unlink_files(N)
    assert counts(programs)[:2] == [N, N]
    assert daemon.client().call("link.list", {}) == []


def test_kprobe_at_an_offset(daemon: DaemonProcess, programs: dict[str, Any]) -> None:
    # Where instructions start depends on the build (endbr64, the ftrace nop):
    # the daemon refuses offsets inside an instruction, so take the first it
    # accepts in the function's straight-line prologue.
    refused = 0
    link = None
    for offset in range(1, 16):
        try:
            link = attach(daemon, programs["on_offset"], fn_name=FUNCTION, offset=offset)
            break
        except RpcError as err:
            assert (err.code, err.data["field"]) == (1000, "offset"), err
            refused += 1
    assert link is not None, "no offset in 1..15 accepted"
    assert link["summary"] == f"kprobe {FUNCTION}+{link['params']['offset']:#x}"
    unlink_files(N)
    assert counts(programs)[KPROBE_OFFSET] == N
    detach(daemon, link)
    unlink_files(N)
    assert counts(programs)[KPROBE_OFFSET] == N


def test_kprobe_errors(daemon: DaemonProcess, programs: dict[str, Any]) -> None:
    cases: list[tuple[str, dict[str, Any], int, str | None]] = [
        ("on_return", {"fn_name": FUNCTION, "offset": 4}, 1000, "offset"),
        ("on_entry", {"fn_name": "bpfman_no_such_function"}, 1100, None),
        ("on_entry", {"fn_name": "not a symbol"}, -32602, None),
    ]
    for name, params, code, field in cases:
        with pytest.raises(RpcError) as err:
            attach(daemon, programs[name], **params)
        assert err.value.code == code, (params, err.value)
        if field is not None:
            assert err.value.data["field"] == field
    assert daemon.client().call("link.list", {}) == []
    assert list((daemon.bpffs / "links").iterdir()) == []


def test_fentry_and_fexit_on_the_same_function(daemon: DaemonProcess,
                                               programs: dict[str, Any]) -> None:
    for name in ("on_fentry", "on_fexit"):
        got = daemon.client().call("program.get", {"program_id": programs[name]["program_id"]})
        assert got["attach_func"] == FUNCTION
        assert got["kernel"]["kernel_type"] == "tracing"
    fentry = attach(daemon, programs["on_fentry"])
    fexit = attach(daemon, programs["on_fexit"])
    assert (fentry["summary"], fexit["summary"]) == (f"fentry {FUNCTION}", f"fexit {FUNCTION}")
    for link in (fentry, fexit):
        assert kernel.link_info(link["kernel_link_id"]).type == "tracing"

    unlink_files(N)
    assert counts(programs)[FENTRY:] == [N, N]
    detach(daemon, fentry)
    unlink_files(N)
    assert counts(programs)[FENTRY:] == [N, 2 * N]
    detach(daemon, fexit)
    unlink_files(N)
    assert counts(programs)[FENTRY:] == [N, 2 * N]


def test_fexit_program_cannot_pose_as_fentry(daemon: DaemonProcess,
                                             bpf_program: Callable[..., Path]) -> None:
    [prog] = daemon.client().call("program.load", {
        "path": str(bpf_program("kernel_probes")),
        "programs": [{"name": "on_fexit", "type": "fentry"}]})["programs"]
    with pytest.raises(RpcError) as err:
        attach(daemon, prog)
    assert (err.value.code, err.value.data["field"]) == (1000, "type")
    assert list((daemon.bpffs / "links").iterdir()) == []
