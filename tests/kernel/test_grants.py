"""A grant bounds what the daemon does for its caller (docs/security.md).

Every caller here is a real process running as uid 65534 (nobody) with no
BPF privileges; the daemon loads and attaches for it only what the rule's
bounds allow: program types, network namespaces and interfaces, chain
priority, and the files, processes and cgroups an attach reaches, the last
three checked with the caller's own rights.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bpfman.testing import NOBODY, DaemonProcess, VethPair, call_as, compile_bpf, running_daemon

PROGRAMS = Path(__file__).parents[1] / "programs"
CGROUP2 = Path("/sys/fs/cgroup/unified")
ARCH = {"x86_64": "x86", "aarch64": "arm64"}[platform.machine()]


@contextmanager
def granted(bounds: str = "", methods: str = '"program.*", "link.*"'
            ) -> Iterator[DaemonProcess]:
    """A daemon where nobody may call `methods` within `bounds` (TOML lines)."""
    config = (f'[daemon]\nsocket_mode = "0666"\n\n[[authorization.rules]]\n'
              f'users = ["nobody"]\nscope = "own"\nmethods = [{methods}]\n{bounds}')
    with running_daemon(config) as d:
        os.chmod(d.root, 0o755)  # let the unprivileged client reach the socket
        yield d


def load(d: DaemonProcess, obj: Path, name: str, kind: str) -> dict[str, Any]:
    return call_as(d, "program.load", {"path": str(obj),
                                       "programs": [{"name": name, "type": kind}]})


def loaded(reply: dict[str, Any]) -> int:
    assert "result" in reply, reply
    return int(reply["result"]["programs"][0]["program_id"])


def attach(d: DaemonProcess, program_id: int, **params: Any) -> dict[str, Any]:
    return call_as(d, "program.attach", {"program_id": program_id, "params": params})


def denied(reply: dict[str, Any], *words: str) -> None:
    assert reply.get("code") == 1500, reply  # PermissionDenied
    for word in words:
        assert word in reply["message"], (word, reply["message"])


@pytest.fixture
def objects(public_tmp_path: Path) -> Callable[..., Path]:
    """Objects compiled where nobody can read them (the daemon reads as the caller)."""
    def build(name: str, **defines: str) -> Path:
        return compile_bpf(PROGRAMS / f"{name}.bpf.c", public_tmp_path, defines=defines)
    return build


@pytest.fixture
def sleeper() -> Iterator[Callable[[int], int]]:
    """Start `sleep` processes as a given uid; all killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(uid: int) -> int:
        procs.append(subprocess.Popen(["sleep", "120"], user=uid, group=uid, extra_groups=[]))
        return procs[-1].pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_tracing_types_are_not_granted_by_default(objects: Callable[..., Path]) -> None:
    with granted() as d:
        denied(load(d, objects("tp_counter"), "count_getpid", "tracepoint"),
               "tracepoint", "root-equivalent")
        denied(load(d, objects("uprobe_counter", **{f"__TARGET_ARCH_{ARCH}": "1"}),
                    "count_entry", "uprobe"), "uprobe")
        assert d.client().call("program.list") == []
        # A network type is.
        loaded(load(d, objects("xdp_counter"), "xdp_counter", "xdp"))
    with granted('program_types = ["tracepoint"]\n') as d:
        loaded(load(d, objects("tp_counter"), "count_getpid", "tracepoint"))


def test_memory_reading_helpers_need_a_tracing_grant(objects: Callable[..., Path]) -> None:
    peek = objects("xdp_peek")
    with granted() as d:
        denied(load(d, peek, "xdp_peek", "xdp"), "bpf_probe_read_kernel")
        denied(load(d, peek, "xdp_print", "xdp"), "bpf_trace_printk")
        assert d.client().call("program.list") == []
        # The kernel itself would take it from the daemon: the refusal is ours.
        d.client().call("program.load", {"path": str(peek),
                                         "programs": [{"name": "xdp_peek", "type": "xdp"}]})
    with granted('program_types = ["*"]\n') as d:  # root-equivalent, and documented so
        loaded(load(d, peek, "xdp_peek", "xdp"))


def test_namespaces_by_identity_and_ownership(objects: Callable[..., Path], veth: VethPair,
                                              host_veth: str) -> None:
    obj = objects("xdp_counter")
    with granted() as d:
        prog = loaded(load(d, obj, "xdp_counter", "xdp"))
        denied(attach(d, prog, iface=veth.if_b, netns=veth.netns_b), "not granted", "uid 0")
        denied(attach(d, prog, iface=host_veth), f"interface {host_veth}", "not granted")
        # A namespace nobody made (through its own user namespace) is its own.
        holder = subprocess.Popen(["unshare", "-Urn", "sleep", "120"], user=NOBODY,
                                  group=NOBODY, extra_groups=[])
        try:
            netns = f"/proc/{holder.pid}/ns/net"
            for _ in range(100):  # until unshare has exec'd sleep in the new namespace
                if os.stat(netns).st_ino != os.stat("/proc/self/ns/net").st_ino:
                    break
                subprocess.run(["sleep", "0.05"], check=True)
            link = attach(d, prog, iface="lo", netns=netns)
            assert "result" in link, link
            assert d.client().call("link.list") != []
            d.client().call("program.detach", {"link_id": link["result"]["link_id"]})
        finally:
            holder.kill()
            holder.wait()
    # A namespace the admin names (a glob) is allowed by identity.
    with granted(f'netns = ["{os.path.dirname(veth.netns_b)}/{veth.ns_b[:4]}*"]\n') as d:
        prog = loaded(load(d, obj, "xdp_counter", "xdp"))
        assert "result" in attach(d, prog, iface=veth.if_b, netns=veth.netns_b)
        assert veth.ping(3) == 3


@pytest.fixture
def host_veth() -> Iterator[str]:
    """An interface of the test's own in the daemon's namespace (one end of a
    veth pair, the other is the name + "p"; this kernel has no dummy driver).
    Never the machine's own interfaces: a regression would attach to them."""
    name = f"pbg{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
                   check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_host_interfaces_and_priority(objects: Callable[..., Path], host_veth: str) -> None:
    with granted(f'interfaces = ["{host_veth}"]\nmin_priority = 500\n') as d:
        prog = loaded(load(d, objects("xdp_counter"), "xdp_counter", "xdp"))
        denied(attach(d, prog, iface=f"{host_veth}p", priority=600), f"interface {host_veth}p")
        denied(attach(d, prog, iface=host_veth, priority=100), "priority 100", "500")
        link = attach(d, prog, iface=host_veth, priority=600)
        assert "result" in link, link
        link_id = link["result"]["link_id"]
        denied(call_as(d, "link.update", {"link_id": link_id, "params": {"priority": 0}}),
               "priority 0")
        assert d.client().call("link.get", {"link_id": link_id})["params"]["priority"] == 600
        assert "result" in call_as(d, "link.update", {"link_id": link_id,
                                                      "params": {"priority": 700}})
        d.client().call("program.unload", {"program_id": prog})


def test_uprobes_reach_only_the_callers_processes_and_files(
    objects: Callable[..., Path], sleeper: Callable[[int], int], tmp_path: Path
) -> None:
    libc = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6")
                if os.path.exists(p))
    secret = tmp_path / "libc-copy.so"  # tmp_path: root's, 0700
    shutil.copy(libc, secret)
    secret.chmod(0o600)
    obj = objects("uprobe_counter", **{f"__TARGET_ARCH_{ARCH}": "1"})
    with granted('program_types = ["uprobe"]\n') as d:
        prog = loaded(load(d, obj, "count_entry", "uprobe"))
        roots, mine = sleeper(0), sleeper(NOBODY)
        denied(attach(d, prog, target=libc, fn_name="malloc", pid=roots),
               f"may not trace process {roots}")
        denied(attach(d, prog, target=libc, fn_name="malloc"), "every process")
        denied(attach(d, prog, target=str(secret), fn_name="malloc", pid=mine),
               "cannot open", "Permission denied")
        link = attach(d, prog, target=libc, fn_name="malloc", pid=mine)
        assert "result" in link, link
        assert d.client().call("link.list") != []
        d.client().call("program.unload", {"program_id": prog})


def test_cgroups_must_be_delegated_to_the_caller(objects: Callable[..., Path]) -> None:
    if not (CGROUP2 / "cgroup.procs").exists():
        pytest.fail(f"no cgroup v2 mount at {CGROUP2}")
    group = CGROUP2 / f"pbgrant-{os.getpid()}"
    group.mkdir()
    try:
        with granted() as d:
            prog = loaded(load(d, objects("cgroup_net"), "skb_count", "cgroup_skb"))
            denied(attach(d, prog, cgroup=str(group), attach_type="egress"),
                   f"cgroup {group} is not delegated to uid {NOBODY}")
            os.chown(group, NOBODY, NOBODY)  # delegated, as systemd does for a user
            link = attach(d, prog, cgroup=str(group), attach_type="egress")
            assert "result" in link, link
            d.client().call("program.unload", {"program_id": prog})
    finally:
        group.rmdir()


def test_program_metadata_bounds_what_is_visible_and_reachable(
    objects: Callable[..., Path]
) -> None:
    """The Kubernetes map-access rule: one application's programs and maps only."""
    bounds = 'program_metadata = { "bpfman.io/ProgramName" = "app-a" }\n'
    reads = '"program.list", "program.get", "map.list", "map.get", "map.dump"'
    with granted(bounds, methods=reads) as d:
        obj = objects("xdp_counter")
        ids = {}
        for app in ("app-a", "app-b"):
            [prog] = d.client().call("program.load", {
                "path": str(obj), "programs": [{"name": "xdp_counter", "type": "xdp"}],
                "metadata": {"bpfman.io/ProgramName": app}})["programs"]
            ids[app] = prog["program_id"]
        listed = call_as(d, "program.list", {"all": True})["result"]
        assert [p["program_id"] for p in listed] == [ids["app-a"]]
        key = "00000000"
        mine = call_as(d, "map.get", {"program_id": ids["app-a"], "map": "xdp_counts",
                                      "key": key})
        assert "result" in mine, mine
        for method, params in [
            ("program.get", {"program_id": ids["app-b"]}),
            ("map.get", {"program_id": ids["app-b"], "map": "xdp_counts", "key": key}),
            ("map.dump", {"program_id": ids["app-b"], "map": "xdp_counts"}),
            ("map.list", {"program_id": ids["app-b"]}),
        ]:
            denied(call_as(d, method, params), "not among the programs granted")
        # Programs outside the store (no metadata) are not visible either.
        everything = d.client().call("program.list", {"all": True})
        for other in [p for p in everything if not p["managed"]][:3]:
            reply = call_as(d, "program.get", {"program_id": other["program_id"]})
            assert reply.get("code") == 1100, reply  # as if it did not exist


def test_program_metadata_bounds_the_links_visible_too(objects: Callable[..., Path]) -> None:
    """A link is as visible as its program: link.list and link.get under a
    metadata-bound grant show only the granted application's links."""
    bounds = 'program_metadata = { "bpfman.io/ProgramName" = "app-a" }\n'
    with granted(bounds, methods='"program.list", "link.list", "link.get"') as d:
        obj = objects("tp_counter")
        links = {}
        for app in ("app-a", "app-b"):
            prog = d.load(obj, "count_getpid", "tracepoint",
                          metadata={"bpfman.io/ProgramName": app})
            links[app] = d.attach(prog, tracepoint="syscalls/sys_enter_getpid")["link_id"]
        listed = call_as(d, "link.list", {})["result"]
        assert [x["link_id"] for x in listed] == [links["app-a"]]
        assert call_as(d, "link.get", {"link_id": links["app-a"]})["result"]["link_id"] \
            == links["app-a"]
        denied(call_as(d, "link.get", {"link_id": links["app-b"]}),
               "not among the programs granted")
        # root (unbounded) still sees both
        assert len(d.client().call("link.list", {})) == 2
