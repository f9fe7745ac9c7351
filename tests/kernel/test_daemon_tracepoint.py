"""The whole daemon over its socket, with tracepoint programs in the host kernel.

Each test runs its own daemon (own socket, state dir and bpffs); stopping it
unmounts that bpffs, so no program outlives a test.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, running_daemon

N_CALLS = 100


def u32(value: int) -> str:
    return struct.pack("<I", value).hex()


def u64(value: int) -> str:
    return struct.pack("<Q", value).hex()


def counter(map_dir: str, name: str = "counts") -> int:
    raw = kernel.map_lookup(Path(map_dir) / name, struct.pack("<I", 0))
    assert raw is not None
    return struct.unpack("<Q", raw[:8])[0]


def call_getpid(n: int) -> None:
    for _ in range(n):
        os.getpid()


def call_getppid(n: int) -> None:
    for _ in range(n):
        os.getppid()


def kernel_program_ids() -> set[int]:
    return {info.program_id for info in kernel.iter_programs()}


@pytest.fixture
def tp_object(bpf_program: Callable[..., Path]) -> Path:
    return bpf_program("tp_counter")


def load(daemon: DaemonProcess, path: Path, *programs: str, **extra: Any) -> list[dict[str, Any]]:
    params = {"path": str(path), "programs": [{"name": n, "type": "tracepoint"} for n in programs]}
    params.update(extra)
    return daemon.client().call("program.load", params)["programs"]


def attach_tp(daemon: DaemonProcess, program_id: int, tracepoint: str) -> dict[str, Any]:
    return daemon.attach(program_id, tracepoint=tracepoint)


def test_tracepoint_counts_exactly(daemon: DaemonProcess, tp_object: Path) -> None:
    [prog] = load(daemon, tp_object, "count_getpid", global_data={"target_pid": u32(os.getpid())},
                  metadata={"app": "test"})
    assert prog["managed"] and prog["type"] == "tracepoint"
    assert prog["kernel"]["kernel_type"] == "tracepoint"
    link = attach_tp(daemon, prog["program_id"], "syscalls/sys_enter_getpid")
    assert Path(link["pin_path"]).exists()
    assert kernel.link_info(link["kernel_link_id"]).program_id == prog["program_id"]

    before = counter(prog["map_pin_dir"])
    call_getpid(N_CALLS)
    assert counter(prog["map_pin_dir"]) - before == N_CALLS

    got = daemon.client().call("program.get", {"program_id": prog["program_id"]})
    assert got["links"] == [link["link_id"]]
    assert got["metadata"] == {"app": "test"}
    listed = daemon.client().call("program.list", {"metadata": {"app": "test"}})
    assert [p["program_id"] for p in listed] == [prog["program_id"]]
    assert daemon.client().call("link.get", {"link_id": link["link_id"]})["summary"] == (
        "tracepoint syscalls/sys_enter_getpid"
    )

    # Detach stops the counting; the program stays loaded.
    daemon.client().call("program.detach", {"link_id": link["link_id"]})
    assert not Path(link["pin_path"]).exists()
    before = counter(prog["map_pin_dir"])
    call_getpid(N_CALLS)
    assert counter(prog["map_pin_dir"]) == before


def test_global_data_changes_behaviour(daemon: DaemonProcess, tp_object: Path) -> None:
    [prog] = load(daemon, tp_object, "count_getpid",
                  global_data={"target_pid": u32(os.getpid()), "increment": u64(5)})
    attach_tp(daemon, prog["program_id"], "syscalls/sys_enter_getpid")
    before = counter(prog["map_pin_dir"])
    call_getpid(N_CALLS)
    assert counter(prog["map_pin_dir"]) - before == 5 * N_CALLS
    assert prog["global_data"]["increment"] == u64(5)

    # Another pid: the same object counts nothing for us.
    [other] = load(daemon, tp_object, "count_getpid", global_data={"target_pid": u32(1)})
    attach_tp(daemon, other["program_id"], "syscalls/sys_enter_getpid")
    call_getpid(N_CALLS)
    assert counter(other["map_pin_dir"]) == 0


def test_programs_share_maps_through_map_owner(daemon: DaemonProcess, tp_object: Path) -> None:
    pid = u32(os.getpid())
    [owner] = load(daemon, tp_object, "count_getpid", global_data={"target_pid": pid})
    [user] = load(daemon, tp_object, "count_getppid", global_data={"target_pid": pid},
                  map_owner_id=owner["program_id"])
    assert user["map_pin_dir"] == owner["map_pin_dir"]
    assert user["map_owner_id"] == owner["program_id"]
    # Upstream's names for the same facts, in get and list alike.
    both = sorted([owner["program_id"], user["program_id"]])
    got = daemon.client().call("program.get", {"program_id": owner["program_id"]})
    assert got["map_pin_path"] == owner["map_pin_dir"] and got["map_used_by"] == both
    listed = {p["program_id"]: p for p in daemon.client().call("program.list")}
    assert listed[user["program_id"]]["map_used_by"] == both
    attach_tp(daemon, owner["program_id"], "syscalls/sys_enter_getpid")
    attach_tp(daemon, user["program_id"], "syscalls/sys_enter_getppid")
    before = counter(owner["map_pin_dir"])
    call_getpid(30)
    call_getppid(20)
    assert counter(owner["map_pin_dir"]) - before == 50

    # The maps stay while a user remains, and go with the last one.
    daemon.client().call("program.unload", {"program_id": owner["program_id"]})
    assert Path(owner["map_pin_dir"]).is_dir()
    daemon.client().call("program.unload", {"program_id": user["program_id"]})
    assert not Path(owner["map_pin_dir"]).exists()


def test_two_programs_from_one_object_in_one_call(daemon: DaemonProcess, tp_object: Path) -> None:
    progs = load(daemon, tp_object, "count_getpid", "count_getppid",
                 global_data={"target_pid": u32(os.getpid())})
    assert {p["name"] for p in progs} == {"count_getpid", "count_getppid"}
    assert len({p["map_pin_dir"] for p in progs}) == 1
    for p in progs:
        attach_tp(daemon, p["program_id"], f"syscalls/sys_enter_{p['name'].removeprefix('count_')}")
    before = counter(progs[0]["map_pin_dir"])
    call_getpid(7)
    call_getppid(3)
    assert counter(progs[0]["map_pin_dir"]) - before == 10


def test_unload_removes_program_and_pins(daemon: DaemonProcess, tp_object: Path) -> None:
    [prog] = load(daemon, tp_object, "count_getpid", global_data={"target_pid": u32(os.getpid())})
    link = attach_tp(daemon, prog["program_id"], "syscalls/sys_enter_getpid")
    pid = prog["program_id"]
    shown = subprocess.run(["bpftool", "prog", "show", "id", str(pid)], capture_output=True)
    assert shown.returncode == 0
    daemon.client().call("program.unload", {"program_id": pid})
    shown = subprocess.run(["bpftool", "prog", "show", "id", str(pid)], capture_output=True)
    assert shown.returncode != 0
    assert not Path(prog["pin_path"]).exists()
    assert not Path(link["pin_path"]).exists()
    assert not Path(prog["map_pin_dir"]).exists()
    assert daemon.client().call("program.list", {}) == []
    with pytest.raises(RpcError) as err:
        daemon.client().call("program.get", {"program_id": pid})
    assert err.value.code == 1100


def test_list_all_includes_unmanaged_programs(daemon: DaemonProcess, tp_object: Path) -> None:
    [prog] = load(daemon, tp_object, "count_getpid")
    everything = daemon.client().call("program.list", {"all": True})
    ids = {p["program_id"]: p for p in everything}
    assert ids[prog["program_id"]]["managed"] is True
    unmanaged = [p for p in everything if not p["managed"]]
    assert {p["program_id"] for p in unmanaged} == kernel_program_ids() - {prog["program_id"]}


@pytest.mark.parametrize(
    ("case", "code", "field"),
    [
        ("not_elf", 1000, "path"),
        ("unknown_program", 1000, "programs[0].name"),
        ("wrong_global_size", 1000, "global_data.target_pid"),
        ("unknown_global", 1000, "global_data.no_such_var"),
        ("wrong_type", 1000, "programs[0].type"),
        ("unknown_type", 1000, "programs[0].type"),
        ("relative_path", 1000, "path"),
    ],
)
def test_bad_loads_are_refused_and_leave_nothing(
    daemon: DaemonProcess, tp_object: Path, tmp_path: Path, case: str, code: int, field: str
) -> None:
    not_elf = tmp_path / "notes.txt"
    not_elf.write_text("not an ELF object\n")
    programs = [{"name": "count_getpid", "type": "tracepoint"}]
    params: dict[str, Any] = {"path": str(tp_object), "programs": programs}
    if case == "not_elf":
        params["path"] = str(not_elf)
    elif case == "unknown_program":
        programs[0]["name"] = "no_such_program"
    elif case == "wrong_global_size":
        params["global_data"] = {"target_pid": "01"}
    elif case == "unknown_global":
        params["global_data"] = {"no_such_var": "01"}
    elif case == "wrong_type":
        programs[0]["type"] = "raw_tracepoint"
    elif case == "unknown_type":
        programs[0]["type"] = "no_such_type"
    elif case == "relative_path":
        params["path"] = "tp_counter.bpf.o"
    before = kernel_program_ids()
    with pytest.raises(RpcError) as err:
        daemon.client().call("program.load", params)
    assert err.value.code == code, err.value
    assert err.value.data["field"] == field
    assert kernel_program_ids() - before == set()
    assert list(daemon.bpffs.glob("prog_*")) == []
    assert list((daemon.bpffs / "maps").iterdir()) == []
    assert daemon.client().call("daemon.info")["version"]


def test_verifier_rejection_carries_the_log(daemon: DaemonProcess, bpf_program: Callable[..., Path]
                                            ) -> None:
    bad = bpf_program("bad_verifier")
    spec = kernel.inspect_object(bad)
    name = spec.programs[0].name
    before = kernel_program_ids()
    with pytest.raises(RpcError) as err:
        daemon.client().call("program.load", {"path": str(bad), "programs": [
            {"name": name, "type": spec.programs[0].kernel_type}]})
    assert err.value.code == 2001
    assert err.value.data["verifier_log"], err.value.data
    assert kernel_program_ids() - before == set()
    assert list(daemon.bpffs.glob("prog_*")) == []


def test_unknown_tracepoint_and_bad_params(daemon: DaemonProcess, tp_object: Path) -> None:
    [prog] = load(daemon, tp_object, "count_getpid")
    with pytest.raises(RpcError) as err:
        attach_tp(daemon, prog["program_id"], "syscalls/sys_enter_no_such_call")
    assert err.value.code == 1100
    assert err.value.data["tracepoint"] == "syscalls/sys_enter_no_such_call"
    with pytest.raises(RpcError) as err:
        attach_tp(daemon, prog["program_id"], "no-slash")
    assert err.value.code == -32602
    assert any("tracepoint must be CATEGORY/NAME" in e for e in err.value.data["errors"])
    with pytest.raises(RpcError) as err:
        daemon.client().call("program.attach", {"program_id": prog["program_id"],
                                           "params": {"tracepoint": "a/b", "extra": 1}})
    assert err.value.code == -32602
    with pytest.raises(RpcError) as err:
        daemon.client().call("program.attach", {"program_id": 999999999, "params": {}})
    assert err.value.code == 1100
    with pytest.raises(RpcError) as err:
        daemon.client().call("program.detach", {"link_id": 12345})
    assert err.value.code == 1100
    assert daemon.client().call("link.list", {}) == []
    assert list((daemon.bpffs / "links").iterdir()) == []


def test_socat_round_trip_and_malformed_json(daemon: DaemonProcess) -> None:
    def socat(text: str) -> list[dict[str, Any]]:
        out = subprocess.run(["socat", "-t", "5", "-", f"UNIX-CONNECT:{daemon.socket}"],
                             input=text, capture_output=True, text=True, timeout=30, check=True)
        return [json.loads(line) for line in out.stdout.splitlines()]

    [reply] = socat('{"jsonrpc":"2.0","id":1,"method":"daemon.info"}\n')
    assert reply["id"] == 1 and reply["result"]["socket"] == str(daemon.socket)
    assert "tracepoint" in reply["result"]["types"]
    [reply] = socat('{"jsonrpc":"2.0","id":2,"method":\n')
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    # The daemon keeps serving after garbage.
    [reply] = socat('{"jsonrpc":"2.0","id":3,"method":"program.list"}\n')
    assert reply == {"jsonrpc": "2.0", "id": 3, "result": []}


def test_broken_plugin_is_reported_and_daemon_serves(daemon: DaemonProcess) -> None:
    info = daemon.client().call("daemon.info")
    failures = {f["name"]: f["error"] for f in info["plugin_failures"]}
    assert "broken_on_purpose" in failures
    assert "broken on purpose" in failures["broken_on_purpose"]
    plugins = {p["name"]: p for p in daemon.client().call("plugin.list")}
    assert plugins["tracepoint"]["types"] == ["tracepoint"]
    assert "bpfman_attach" in plugins["tracepoint"]["hooks"]


def test_rpc_discover_documents_methods_and_types(daemon: DaemonProcess) -> None:
    doc = daemon.client().call("rpc.discover")
    names = {m["name"] for m in doc["methods"]}
    assert {"program.load", "program.attach", "daemon.info", "rpc.discover"} <= names
    text = json.dumps(doc)
    assert "TracepointParams" in text and "tracepoint" in text


def test_sigterm_leaves_programs_running_and_restart_manages_them(
    tp_object: Path,
) -> None:
    with running_daemon() as daemon:
        [prog] = load(daemon, tp_object, "count_getpid",
                      global_data={"target_pid": u32(os.getpid())})
        link = attach_tp(daemon, prog["program_id"], "syscalls/sys_enter_getpid")
        [spare] = load(daemon, tp_object, "count_getppid")
        spare_link = attach_tp(daemon, spare["program_id"], "syscalls/sys_enter_getppid")
        assert daemon.stop() == 0
        before = counter(prog["map_pin_dir"])
        call_getpid(N_CALLS)
        assert counter(prog["map_pin_dir"]) - before == N_CALLS
        # Behind the daemon's back: one link pin removed while it is down.
        Path(spare_link["pin_path"]).unlink()
        daemon.start()
        got = daemon.client().call("program.get", {"program_id": prog["program_id"]})
        assert got["links"] == [link["link_id"]]
        assert daemon.client().call("link.get", {"link_id": link["link_id"]})["kernel_link_id"] == (
            link["kernel_link_id"]
        )
        assert [ln["link_id"] for ln in daemon.client().call("link.list", {})] == [link["link_id"]]
        log = daemon.log_text()
        assert "reconcile" in log and f"link {spare_link['link_id']}" in log
        daemon.client().call("program.unload", {"program_id": prog["program_id"]})
        assert not Path(link["pin_path"]).exists()


def test_cli_round_trip(daemon: DaemonProcess, tp_object: Path) -> None:
    out = daemon.cli("-o", "json", "load", "file", "--path", str(tp_object),
                "--programs", "tracepoint:count_getpid", "-g", f"target_pid={u32(os.getpid())}",
                "-m", "owner=cli")
    [prog] = json.loads(out.stdout)["programs"]
    pid = str(prog["program_id"])
    link = json.loads(daemon.cli("-o", "json", "attach", pid, "tracepoint",
                            "--tracepoint", "syscalls/sys_enter_getpid").stdout)
    before = counter(prog["map_pin_dir"])
    call_getpid(N_CALLS)
    assert counter(prog["map_pin_dir"]) - before == N_CALLS
    table = daemon.cli("list").stdout
    assert pid in table and "count_getpid" in table and "owner=cli" in table
    assert "syscalls/sys_enter_getpid" in daemon.cli("list", "links").stdout
    assert "tracepoint" in daemon.cli("get", pid).stdout
    assert pid in daemon.cli("list", "--all").stdout
    daemon.cli("detach", str(link["link_id"]))
    daemon.cli("unload", pid)
    assert json.loads(daemon.cli("-o", "json", "list").stdout) == []
    failed = daemon.cli("unload", pid, check=False)
    assert failed.returncode == 1 and f"no program with id {pid}" in failed.stderr


def test_typed_clients(daemon: DaemonProcess, tp_object: Path) -> None:
    import trio

    from bpfman.client import AsyncClient
    from bpfman.model.replies import LinkReply, LoadReply, ProgramReply
    from bpfman.model.requests import AttachRequest, LoadRequest, ProgramIdRequest, ProgramSelector

    loaded = daemon.client().call_typed("program.load", LoadRequest(
        path=str(tp_object), programs=[ProgramSelector("count_getpid", "tracepoint")]))
    assert isinstance(loaded, LoadReply)
    [prog] = loaded.programs
    assert isinstance(prog, ProgramReply) and prog.kernel is not None
    assert prog.kernel.kernel_type == "tracepoint"
    link = daemon.client().call_typed("program.attach", AttachRequest(
        prog.program_id, {"tracepoint": "syscalls/sys_enter_getpid"}))
    assert isinstance(link, LinkReply) and link.program_id == prog.program_id

    async def main() -> ProgramReply:
        async with await AsyncClient.connect(str(daemon.socket)) as client:
            return await client.call_typed("program.get", ProgramIdRequest(prog.program_id))

    got = trio.run(main)
    assert got.links == [link.link_id]
