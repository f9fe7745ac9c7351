"""The sk_lookup and netfilter types on the host kernel, with real sockets
and real traffic in network namespaces the tests create.

sk_lookup: tests/programs/sk_lookup_steer.bpf.c steers TCP connections to
a port range to one listening socket, which the test (the application) puts
into the program's pinned SOCKMAP with its own fd.
netfilter: tests/programs/nf_count.bpf.c counts (and drops or accepts) every
packet at its hook; ping between two namespaces shows the verdict.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.kernel.netns import NetNs
from bpfman.testing import DaemonProcess, VethPair


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    name = f"types-a-sk-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def load(client: Any, obj: Path, name: str, kind: str, **globals_: bytes) -> dict[str, Any]:
    [prog] = client.call("program.load", {
        "path": str(obj), "programs": [{"name": name, "type": kind}],
        "global_data": {k: v.hex() for k, v in globals_.items()}})["programs"]
    return dict(prog)


def test_sk_lookup_steers_a_port_range(daemon: DaemonProcess, netns: str,
                                       bpf_program: Callable[..., Path]) -> None:
    client = daemon.client()
    prog = load(client, bpf_program("sk_lookup_steer"), "steer", "sk_lookup",
                port_lo=struct.pack("<H", 7000), port_hi=struct.pack("<H", 7009))
    with NetNs(netns).entered():  # sockets keep the namespace they were made in
        server = socket.socket()
        clients = [socket.socket() for _ in range(3)]
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        # The application hands its own socket to the program: an fd only
        # means something in the process that owns it.
        kernel.map_update(Path(prog["map_pin_dir"]) / "target", struct.pack("<I", 0),
                          struct.pack("<Q", server.fileno()))
        with pytest.raises(RpcError, match="namespace"):
            client.call("program.attach", {"program_id": prog["program_id"],
                                           "params": {"netns": "/run/netns/types-a-none"}})
        link = client.call("program.attach", {"program_id": prog["program_id"],
                                              "params": {"netns": netns}})
        for c, port in zip(clients, (7000, 7009, 7010), strict=True):
            c.settimeout(5)
            try:
                c.connect(("127.0.0.1", port))
                result = "ok"
            except OSError as exc:
                result = f"error {exc.errno}"
            assert result == ("ok" if port < 7010 else "error 111"), port
        accepted = [server.accept()[0] for _ in range(2)]
        for a in accepted:
            a.close()
        steered = kernel.map_lookup(Path(prog["map_pin_dir"]) / "steered",
                                    struct.pack("<I", 0))
        assert steered is not None and struct.unpack("<Q", steered)[0] == 2
        assert "sk_lookup" in daemon.cli("list").stdout
        client.call("program.detach", {"link_id": link["link_id"]})
        with NetNs(netns).entered():
            late = socket.socket()
        late.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            late.connect(("127.0.0.1", 7001))
        late.close()
    finally:
        server.close()
        for c in clients:
            c.close()


def test_sk_lookup_link_of_a_deleted_namespace_is_reported(
        daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    client = daemon.client()
    prog = load(client, bpf_program("sk_lookup_steer"), "steer", "sk_lookup")
    name = f"types-a-gone-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        link = client.call("program.attach", {"program_id": prog["program_id"],
                                              "params": {"netns": f"/run/netns/{name}"}})
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    # the namespace is freed asynchronously (cleanup_net): wait for it
    deadline = time.monotonic() + 10
    while not kernel.fd_link_info(link["pin_path"]).defunct:
        assert time.monotonic() < deadline, "netns link never became defunct"
        time.sleep(0.1)
    drifts = client.call("daemon.reconcile")
    assert any("namespace gone" in d["problem"] for d in drifts), drifts
    client.call("program.detach", {"link_id": link["link_id"]})


def test_netfilter_drops_and_counts_ping(daemon: DaemonProcess, veth: VethPair,
                                         bpf_program: Callable[..., Path]) -> None:
    client = daemon.client()
    obj = bpf_program("nf_count")
    dropper = load(client, obj, "nf_count", "netfilter", verdict=struct.pack("<I", 0))
    counter = load(client, obj, "nf_count", "netfilter", verdict=struct.pack("<I", 1))
    ns_b = veth.netns_b
    assert veth.ping(2) == 2
    with pytest.raises(RpcError, match="hook"):
        client.call("program.attach", {"program_id": counter["program_id"], "params": {
            "family": "ipv4", "hook": "sideways", "priority": 10, "netns": ns_b}})
    # the counter runs first (-10), the dropper after it (10)
    client.call("program.attach", {"program_id": counter["program_id"], "params": {
        "family": "ipv4", "hook": "input", "priority": -10, "netns": ns_b}})
    out = daemon.cli("-o", "json", "attach", str(dropper["program_id"]), "netfilter",
                     "--family", "ipv4", "--hook", "input", "--priority", "10",
                     "--netns", ns_b)
    link = json.loads(out.stdout)
    assert veth.ping(3) == 0

    def count(prog: dict[str, Any]) -> int:
        raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / "counts", struct.pack("<I", 0))
        assert raw is not None
        return int(struct.unpack("<Q", raw)[0])

    assert count(counter) >= 3 and count(dropper) >= 3
    info = kernel.fd_link_info(link["pin_path"])
    assert info.link_type == "netfilter" and info.extra["priority"] == 10
    daemon.stop()
    assert veth.ping(2) == 0  # still dropping while the daemon is down
    daemon.start()
    client = daemon.client()
    client.call("program.detach", {"link_id": link["link_id"]})
    assert veth.ping(2) == 2


def test_discover_plugins_and_features_name_the_new_types(daemon: DaemonProcess) -> None:
    client = daemon.client()
    text = json.dumps(client.call("rpc.discover"))
    for name in ("CgroupParams", "SkLookupParams", "NetfilterParams",
                 "netfilter priority, lower runs first"):
        assert name in text
    listed = daemon.cli("plugins").stdout
    for kind in ("cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "sk_lookup", "netfilter"):
        assert kind in listed
    features = client.call("daemon.info")["features"]
    assert features["cgroup_programs"] and features["sk_lookup"]
    assert features["netfilter_programs"]


def test_netfilter_family_ipv6_leaves_ipv4_alone(daemon: DaemonProcess, veth: VethPair,
                                                 bpf_program: Callable[..., Path]) -> None:
    for ns, ifname, addr in ((veth.ns_a, veth.if_a, "fd00:7a::1"),
                             (veth.ns_b, veth.if_b, "fd00:7a::2")):
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/64", "dev", ifname, "nodad"],
                       check=True)

    def ping6(count: int) -> int:
        out = veth.exec(veth.ns_a, "ping", "-6", "-c", str(count), "-i", "0.01", "-W", "1",
                        "-q", "fd00:7a::2", check=False)
        match = re.search(r"(\d+) received", out.stdout)
        return int(match.group(1)) if match else 0

    assert ping6(2) == 2
    client = daemon.client()
    dropper = load(client, bpf_program("nf_count"), "nf_count", "netfilter",
                   verdict=struct.pack("<I", 0))
    link = client.call("program.attach", {"program_id": dropper["program_id"], "params": {
        "family": "ipv6", "hook": "input", "priority": 10, "netns": veth.netns_b}})
    assert ping6(2) == 0
    assert veth.ping(2) == 2  # IPv4 does not pass the ipv6 hook
    client.call("program.detach", {"link_id": link["link_id"]})
    assert ping6(2) == 2
