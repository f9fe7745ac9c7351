"""The cgroup types on the host kernel: a cgroup v2 directory the test
creates, a real process moved into it, real sockets; links ordered by
priority (cgroup bpf_mprog, Linux >= 6.17) and checked with the programs'
own maps, BPF_PROG_QUERY and the sockets' results.

Programs are tests/programs/cgroup_net.bpf.c.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, running_daemon

CGROUP2 = Path("/sys/fs/cgroup/unified")


@pytest.fixture
def cgroup(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh cgroup v2 directory, removed at the end (after its processes)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    if not (CGROUP2 / "cgroup.procs").exists():
        pytest.skip(f"no cgroup v2 mount at {CGROUP2}")
    path = CGROUP2 / f"types-a-{os.getpid()}-{request.node.name[:40]}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            (CGROUP2 / "cgroup.procs").write_text(pid)
        path.rmdir()


def run_in(cgroup: Path, code: str, timeout: float = 20) -> str:
    """Run Python `code` in a child process moved into `cgroup` first; its
    stdout (the child prints what its sockets saw)."""
    prelude = f"open({str(cgroup / 'cgroup.procs')!r}, 'w').write('0')\n"
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                         text=True, timeout=timeout, check=True)
    return out.stdout.strip()


UDP_SEND = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ok = 0
for _ in range({n}):
    try:
        s.sendto(b"x", ("127.0.0.1", 9))
        ok += 1
    except OSError:
        pass
print(ok)
"""

CONNECT = """
import socket
for port in {ports}:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        print(port, "ok", s.recv(16).decode())
    except OSError as exc:
        print(port, "error", exc.errno)
    s.close()
"""


class Cg:
    """Instances of cgroup_net loaded into one daemon, sharing their maps."""

    def __init__(self, daemon: DaemonProcess, obj: Path) -> None:
        self.client = daemon.client()
        self.obj = obj
        self.owner: int | None = None
        self.map_dir = ""

    def load(self, name: str, kind: str, **globals_: bytes) -> int:
        req: dict[str, Any] = {"path": str(self.obj),
                               "programs": [{"name": name, "type": kind}],
                               "global_data": {k: v.hex() for k, v in globals_.items()}}
        if self.owner is not None:
            req["map_owner_id"] = self.owner
        [prog] = self.client.call("program.load", req)["programs"]
        if self.owner is None:
            self.owner, self.map_dir = prog["program_id"], prog["map_pin_dir"]
        return int(prog["program_id"])

    def count(self, tag: int) -> int:
        raw = kernel.map_lookup(Path(self.map_dir) / "counts", struct.pack("<I", tag))
        assert raw is not None
        return int(struct.unpack("<Q", raw)[0])

    def trace(self) -> list[int]:
        path = Path(self.map_dir) / "trace"
        raw = kernel.map_lookup(path, struct.pack("<I", 0))
        assert raw is not None
        n = min(struct.unpack("<I", raw)[0], 63)
        return [struct.unpack("<I", kernel.map_lookup(path, struct.pack("<I", i)) or b"")[0]
                for i in range(1, n + 1)]


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u16(v: int) -> bytes:
    return struct.pack("<H", v)


@pytest.fixture
def cg(daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> Cg:
    return Cg(daemon, bpf_program("cgroup_net"))


def test_egress_count_order_drop_and_detach(cg: Cg, cgroup: Path) -> None:
    late = cg.load("skb_count", "cgroup_skb", tag=u32(1), verdict=u32(1))
    early = cg.load("skb_count", "cgroup_skb", tag=u32(2), verdict=u32(1))
    where = {"cgroup": str(cgroup), "attach_type": "egress"}
    cg.client.call("program.attach", {"program_id": late, "params": {**where, "priority": 50}})
    cg.client.call("program.attach", {"program_id": early,
                                      "params": {**where, "priority": 10}})
    assert kernel.query_cgroup(cgroup, "egress").program_ids() == [early, late]
    assert run_in(cgroup, UDP_SEND.format(n=3)) == "3"
    assert cg.count(1) >= 3 and cg.count(2) >= 3
    assert cg.trace()[:2] == [2, 1]  # priority order, not attach order
    # a dropping program in the middle: sends fail (EPERM), both others still ran
    dropper = cg.load("skb_count", "cgroup_skb", tag=u32(3), verdict=u32(0))
    link = cg.client.call("program.attach", {"program_id": dropper,
                                             "params": {**where, "priority": 20}})
    assert kernel.query_cgroup(cgroup, "egress").program_ids() == [early, dropper, late]
    assert run_in(cgroup, UDP_SEND.format(n=3)) == "0"
    assert cg.count(3) >= 3
    # traffic outside the cgroup is not affected
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", 9))
    s.close()
    cg.client.call("program.detach", {"link_id": link["link_id"]})
    assert kernel.query_cgroup(cgroup, "egress").program_ids() == [early, late]
    assert run_in(cgroup, UDP_SEND.format(n=2)) == "2"


def test_connect4_denies_and_rewrites(cg: Cg, cgroup: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    real = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"hello")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deny, virtual = 5, 7  # nothing listens on these
    try:
        prog = cg.load("connect4", "cgroup_sock_addr", tag=u32(4), deny_port=u16(deny),
                       from_port=u16(virtual), to_port=u16(real))
        with pytest.raises(RpcError, match="connect4"):  # wrong hook for the type
            cg.client.call("program.attach", {"program_id": prog, "params": {
                "cgroup": str(cgroup), "attach_type": "egress"}})
        with pytest.raises(RpcError, match="no cgroup v2 directory"):
            cg.client.call("program.attach", {"program_id": prog, "params": {
                "cgroup": "/tmp", "attach_type": "connect4"}})
        v1 = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[2] == "cgroup"]
        if v1:  # a cgroup v1 hierarchy is refused by name
            with pytest.raises(RpcError, match="not on a cgroup v2 mount"):
                cg.client.call("program.attach", {"program_id": prog, "params": {
                    "cgroup": v1[0], "attach_type": "connect4"}})
        cg.client.call("program.attach", {"program_id": prog, "params": {
            "cgroup": str(cgroup), "attach_type": "connect4"}})
        out = run_in(cgroup, CONNECT.format(ports=[deny, virtual])).splitlines()
        assert out == [f"{deny} error 1", f"{virtual} ok hello"]  # EPERM, then rewritten
        assert cg.count(4) == 2
    finally:
        stop.set()
        thread.join()
        server.close()


SOCKETS = """
import socket
for family in (socket.AF_INET, socket.AF_INET6):
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
        print("ok")
    except OSError as exc:
        print("error", exc.errno)
"""


def test_sock_create_refuses_a_family(cg: Cg, cgroup: Path) -> None:
    prog = cg.load("sock_create", "cgroup_sock", tag=u32(6),
                   deny_family=u32(socket.AF_INET6))
    cg.client.call("program.attach", {"program_id": prog, "params": {
        "cgroup": str(cgroup), "attach_type": "sock_create"}})
    assert run_in(cgroup, SOCKETS).splitlines() == ["ok", "error 1"]
    assert cg.count(6) >= 2
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()  # outside: allowed


def test_cli_restart_and_removed_cgroup(cg: Cg, cgroup: Path, daemon: DaemonProcess) -> None:
    prog = cg.load("skb_count", "cgroup_skb", tag=u32(5), verdict=u32(0))
    out = daemon.cli("-o", "json", "attach", str(prog), "cgroup_skb", "--cgroup", str(cgroup),
                     "--attach-type", "egress", "--priority", "30")
    link = json.loads(out.stdout)
    assert "cgroup_skb" in daemon.cli("plugins").stdout
    counter = cg.load("skb_count", "cgroup_skb", tag=u32(7), verdict=u32(1))
    lost = cg.client.call("program.attach", {"program_id": counter, "params": {
        "cgroup": str(cgroup), "attach_type": "egress", "priority": 40}})
    daemon.stop()
    assert run_in(cgroup, UDP_SEND.format(n=2)) == "0"  # still dropping, daemon down
    Path(lost["pin_path"]).unlink()  # behind the daemon's back: that link is gone
    daemon.start()
    cg.client = daemon.client()
    with pytest.raises(RpcError):
        cg.client.call("link.get", {"link_id": lost["link_id"]})
    assert kernel.query_cgroup(cgroup, "egress").program_ids() == [prog]
    got = cg.client.call("link.get", {"link_id": link["link_id"]})
    assert got["program_id"] == prog
    daemon.cli("detach", str(link["link_id"]))
    assert kernel.query_cgroup(cgroup, "egress").program_ids() == []
    assert run_in(cgroup, UDP_SEND.format(n=2)) == "2"
    # a link whose cgroup is removed is reported by reconcile
    cg.client.call("program.attach", {"program_id": prog, "params": {
        "cgroup": str(cgroup), "attach_type": "egress"}})
    cgroup.rmdir()
    try:
        drifts = cg.client.call("daemon.reconcile")
        assert any("cgroup removed" in d["problem"] for d in drifts), drifts
    finally:
        cgroup.mkdir()


def test_foreign_link_kept_in_place_and_link_facts(cg: Cg, cgroup: Path,
                                                   daemon: DaemonProcess) -> None:
    """The core mechanism directly (attach_cgroup with an anchor,
    fd_link_info, detach_pinned_link): a cgroup link the daemon did not make
    stays where it is, and ours are ordered around it."""
    foreign = cg.load("skb_count", "cgroup_skb", tag=u32(9), verdict=u32(1))
    mine_late = cg.load("skb_count", "cgroup_skb", tag=u32(2), verdict=u32(1))
    mine_early = cg.load("skb_count", "cgroup_skb", tag=u32(1), verdict=u32(1))
    foreign_pin = daemon.bpffs / "foreign_cgroup_link"
    kernel.attach_cgroup(daemon.bpffs / f"prog_{foreign}", cgroup, "egress", foreign_pin,
                         kernel.Anchor.head())
    try:
        info = kernel.fd_link_info(foreign_pin)
        assert (info.link_type, info.target, info.attach_type) == (
            "cgroup", kernel.cgroup_id(cgroup), kernel.CGROUP_HOOKS["egress"].attach_type)
        assert not info.defunct
        where = {"cgroup": str(cgroup), "attach_type": "egress"}
        cg.client.call("program.attach", {"program_id": mine_late,
                                          "params": {**where, "priority": 20}})
        cg.client.call("program.attach", {"program_id": mine_early,
                                          "params": {**where, "priority": 10}})
        assert kernel.query_cgroup(cgroup, "egress").program_ids() == [
            foreign, mine_early, mine_late]
        assert run_in(cgroup, UDP_SEND.format(n=1)) == "1"
        assert cg.trace()[:3] == [9, 1, 2]
        [d] = [d for d in cg.client.call("dispatcher.list") if d["type"] == "cgroup_skb"]
        assert d["mode"] == "cgroup-mprog"
    finally:
        assert kernel.detach_pinned_link(foreign_pin)
    assert not kernel.detach_pinned_link(foreign_pin)  # idempotent
    assert kernel.query_cgroup(cgroup, "egress").program_ids() == [mine_early, mine_late]


@pytest.mark.parametrize("point", ["attach.after_kernel", "attach.before_commit",
                                   "detach.after_kernel"])
def test_kill_mid_change_then_restart(point: str, cgroup: Path,
                                      bpf_program: Callable[..., Path]) -> None:
    """kill -9 in the middle of an attach or detach: after the restart the
    cgroup hook runs exactly the recorded links, in priority order."""
    with running_daemon() as d:
        cg = Cg(d, bpf_program("cgroup_net"))
        kept = cg.load("skb_count", "cgroup_skb", tag=u32(1), verdict=u32(1))
        other = cg.load("skb_count", "cgroup_skb", tag=u32(2), verdict=u32(1))
        where = {"cgroup": str(cgroup), "attach_type": "egress"}
        kept_link = cg.client.call("program.attach", {"program_id": kept,
                                                      "params": {**where, "priority": 10}})
        d.stop()
        d.start(env={"BPFMAN_FAULT": point})
        if point.startswith("attach"):
            request = {"program_id": other, "params": {**where, "priority": 5}}
            method = "program.attach"
        else:
            request, method = {"link_id": kept_link["link_id"]}, "program.detach"
        with pytest.raises((RpcError, OSError)):
            d.client().call(method, request)
        assert d.proc is not None and d.proc.wait(10) == -9
        d.proc = None
        d.start()
        client = d.client()
        links = sorted(client.call("link.list", {}), key=lambda ln: ln["params"]["priority"])
        assert kernel.query_cgroup(cgroup, "egress").program_ids() == [
            ln["program_id"] for ln in links]
        assert [ln["program_id"] for ln in links] == ([] if point.startswith("detach")
                                                      else [kept])


def test_link_update_reorders(cg: Cg, cgroup: Path) -> None:
    """link.update with a new priority moves the link in the kernel chain;
    the others keep running."""
    a, b, c = (cg.load("skb_count", "cgroup_skb", tag=u32(t), verdict=u32(1))
               for t in (1, 2, 3))
    where = {"cgroup": str(cgroup), "attach_type": "egress"}
    links = {p: cg.client.call("program.attach", {"program_id": p,
                                                  "params": {**where, "priority": prio}})
             for p, prio in ((a, 10), (b, 20), (c, 30))}

    def chain() -> list[int]:
        return kernel.query_cgroup(cgroup, "egress").program_ids()

    assert chain() == [a, b, c]

    def kernel_link(p: int) -> int:
        return int(cg.client.call("link.get", {"link_id": links[p]["link_id"]})[
            "kernel_link_id"])

    before = {p: kernel_link(p) for p in (a, b)}
    cg.client.call("link.update", {"link_id": links[c]["link_id"], "params": {"priority": 5}})
    assert chain() == [c, a, b]
    assert {p: kernel_link(p) for p in (a, b)} == before  # only c was moved
    cg.client.call("link.update", {"link_id": links[a]["link_id"], "params": {"priority": 40}})
    assert chain() == [c, b, a]
    assert run_in(cgroup, UDP_SEND.format(n=1)) == "1"
    assert cg.trace()[:3] == [3, 2, 1]
    [d] = [d for d in cg.client.call("dispatcher.list") if d["type"] == "cgroup_skb"]
    assert [cg.client.call("link.get", {"link_id": i})["program_id"] for i in d["links"]] == [
        c, b, a]
