"""Per-method authorization from peer credentials, with a real unprivileged process.

The clients here run as uid 65534 (nobody) in a subprocess, so SO_PEERCRED
sees a real unprivileged peer; the daemon does the kernel work for it.
"""

from __future__ import annotations

import grp
import os
import shutil
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman.testing import NOBODY, DaemonProcess, call_as, running_daemon

MUTATIONS = {
    "program.load": {"path": "/nonexistent.o", "programs": [{"name": "x", "type": "tracepoint"}]},
    "program.unload": {"program_id": 1},
    "program.attach": {"program_id": 1, "params": {}},
    "program.detach": {"link_id": 1},
    "link.update": {"link_id": 1, "params": {}},
}



def as_nobody(d: DaemonProcess, method: str, params: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    return call_as(d, method, params)


def daemon_with(rules: str) -> Iterator[DaemonProcess]:
    with running_daemon(f'[daemon]\nsocket_mode = "0666"\n\n{rules}') as d:
        os.chmod(d.root, 0o755)  # let the unprivileged client reach the socket
        yield d


@pytest.fixture
def default_policy() -> Iterator[DaemonProcess]:
    yield from daemon_with("")


@pytest.fixture
def read_only() -> Iterator[DaemonProcess]:
    yield from daemon_with(
        '[[authorization.rules]]\nuids = [65534]\n'
        'methods = ["program.list", "program.get", "link.list", "link.get", "daemon.info"]\n'
    )


@pytest.fixture
def own_scope() -> Iterator[DaemonProcess]:
    yield from daemon_with(
        '[[authorization.rules]]\nusers = ["nobody"]\nscope = "own"\n'
        'methods = ["program.*", "link.*"]\nprogram_types = ["tracepoint"]\n'
    )


def test_default_policy_denies_others_everything(default_policy: DaemonProcess) -> None:
    reads = {"daemon.info": None, "program.list": None,
             "map.get": {"program_id": 1, "map": "counts", "key": "00000000"}}
    for method, params in {**reads, **MUTATIONS}.items():
        reply = as_nobody(default_policy, method, params)
        assert reply["code"] == 1500, (method, reply)
        assert reply["data"]["method"] == method
    assert f"denied program.load to uid={NOBODY}" in default_policy.log_text()
    # Root is unaffected.
    assert default_policy.client().call("program.list") == []


def test_read_only_grant(read_only: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("tp_counter")
    [prog] = read_only.client().call("program.load", {
        "path": str(obj), "programs": [{"name": "count_getpid", "type": "tracepoint"}],
    })["programs"]
    listed = as_nobody(read_only, "program.list")["result"]
    assert [p["program_id"] for p in listed] == [prog["program_id"]]
    assert as_nobody(read_only, "program.get", {"program_id": prog["program_id"]})["result"]
    for method, params in MUTATIONS.items():
        assert as_nobody(read_only, method, params)["code"] == 1500, method
    denied = as_nobody(read_only, "program.unload", {"program_id": prog["program_id"]})
    assert denied["code"] == 1500
    assert read_only.client().call("program.get", {"program_id": prog["program_id"]})
    assert as_nobody(read_only, "plugin.list")["code"] == 1500


def test_own_scope_lets_an_app_manage_only_its_programs(
    own_scope: DaemonProcess, bpf_program: Callable[..., Path], public_tmp_path: Path
) -> None:
    # The daemon reads the object with nobody's rights: put it where nobody can.
    obj = Path(shutil.copy(bpf_program("tp_counter"), public_tmp_path))
    selector = [{"name": "count_getpid", "type": "tracepoint"}]
    [roots] = own_scope.client().call("program.load", {"path": str(obj), "programs": selector,
                                                        })["programs"]
    # The unprivileged app loads and attaches through the daemon.
    reply = as_nobody(own_scope, "program.load", {
        "path": str(obj), "programs": selector,
        "global_data": {"target_pid": struct.pack("<I", 1).hex()},
    })
    [mine] = reply["result"]["programs"]
    assert mine["loaded_by_uid"] == NOBODY
    link = as_nobody(own_scope, "program.attach", {
        "program_id": mine["program_id"], "params": {"tracepoint": "syscalls/sys_enter_getpid"},
    })["result"]
    # Someone else's program and link are off limits.
    for method, params in [("program.unload", {"program_id": roots["program_id"]}),
                           ("program.attach", {"program_id": roots["program_id"],
                                               "params": {"tracepoint": "sched/sched_switch"}})]:
        denied = as_nobody(own_scope, method, params)
        assert denied["code"] == 1500 and denied["data"]["owner_uid"] == 0, method
    root_link = own_scope.client().call("program.attach", {
        "program_id": roots["program_id"], "params": {"tracepoint": "syscalls/sys_enter_getpid"},
    })
    assert as_nobody(own_scope, "program.detach", {"link_id": root_link["link_id"]})["code"] == (
        1500
    )
    # Its own are not.
    assert as_nobody(own_scope, "program.detach", {"link_id": link["link_id"]})["result"]
    assert as_nobody(own_scope, "program.unload", {"program_id": mine["program_id"]})["result"]
    assert as_nobody(own_scope, "daemon.info")["code"] == 1500


def _a_group_nobody_lacks() -> grp.struct_group:
    return next(g for g in grp.getgrall() if g.gr_gid not in (0, NOBODY)
                and "nobody" not in g.gr_mem)


def test_a_group_rule_uses_the_peers_supplementary_groups() -> None:
    group = _a_group_nobody_lacks()
    for d in daemon_with(f'[[authorization.rules]]\ngroups = ["{group.gr_name}"]\n'
                         'methods = ["daemon.info"]\n'):
        # Only as a supplementary group, which SO_PEERCRED does not carry:
        # the daemon takes them from SO_PEERGROUPS.
        reply = call_as(d, "daemon.info", extra_groups=[group.gr_gid])
        assert "result" in reply, reply
        assert as_nobody(d, "daemon.info")["code"] == 1500  # PermissionDenied


def test_peer_groups_come_from_the_socket() -> None:
    from bpfman.rpc.server import peer_caller

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        caller = peer_caller(a)
    assert sorted(caller.groups) == sorted(os.getgroups())
    assert caller.pid == os.getpid()


def test_own_scope_cannot_share_someone_elses_maps(
    own_scope: DaemonProcess, bpf_program: Callable[..., Path], public_tmp_path: Path
) -> None:
    obj = Path(shutil.copy(bpf_program("tp_counter"), public_tmp_path))
    selector = [{"name": "count_getpid", "type": "tracepoint"}]
    client = own_scope.client()
    [roots] = client.call("program.load", {"path": str(obj), "programs": selector})["programs"]
    try:
        # Sharing root's maps would let nobody write them through its own program.
        denied = as_nobody(own_scope, "program.load", {
            "path": str(obj), "programs": selector, "map_owner_id": roots["program_id"]})
        assert denied["code"] == 1500 and denied["data"]["owner_uid"] == 0, denied
        assert [p["program_id"] for p in client.call("program.list", {})] == [
            roots["program_id"]]
        # Its own program's maps it may share.
        [mine] = as_nobody(own_scope, "program.load", {
            "path": str(obj), "programs": selector})["result"]["programs"]
        [shared] = as_nobody(own_scope, "program.load", {
            "path": str(obj), "programs": selector,
            "map_owner_id": mine["program_id"]})["result"]["programs"]
        assert shared["map_owner_id"] == mine["map_owner_id"]
        for p in (shared, mine):
            assert as_nobody(own_scope, "program.unload", {"program_id": p["program_id"]})
    finally:
        client.call("program.unload", {"program_id": roots["program_id"]})
