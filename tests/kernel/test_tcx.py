"""The `tcx` type on the host kernel: TCX links ordered by priority on veth
pairs in namespaces the tests create, checked with real packets (ping), the
programs' own maps, BPF_PROG_QUERY and bpftool.

Programs are instances of tests/programs/tc_chain.bpf.c: each counts the
ICMP packets it sees, records its tag in run order and returns its verdict.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tc_support import DROP, NEXT, PASS, Chain

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.kernel.netns import NetNs
from bpfman.testing import DaemonProcess, VethPair


@pytest.fixture
def chain(daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> Chain:
    return Chain(daemon, bpf_program("tc_chain"), "tcx")


def kernel_chain(veth: VethPair, direction: str = "ingress") -> list[int]:
    """Program ids on vb's TCX hook, in run order (the kernel's view)."""
    ifindex = kernel.interface_index(veth.if_b, netns=NetNs(veth.netns_b))
    return kernel.query_tcx(ifindex, direction, netns=NetNs(veth.netns_b)).program_ids()


def listed_order(chain: Chain) -> list[int]:
    [d] = chain.dispatchers()
    return [chain.client.call("link.get", {"link_id": i})["program_id"] for i in d["links"]]


def test_four_priorities_next_pass_drop(chain: Chain, veth: VethPair) -> None:
    """As upstream's test_tcx: priorities 1, 50, 100, 1000 attached out of
    order; NEXT continues, PASS ends the chain with the packet delivered,
    DROP ends it with the packet gone."""
    chain.load(1, NEXT)
    chain.load(2, NEXT)
    chain.load(3, PASS)
    chain.load(4, DROP)
    base = {"iface": veth.if_b, "direction": "ingress", "netns": veth.netns_b}
    links = {}
    for tag, prio in ((3, 100), (1, 1), (4, 1000), (2, 50)):
        links[tag] = chain.attach(tag, priority=prio, **base)
        assert links[tag]["kernel_link_id"], links[tag]

    expected = [chain.programs[t] for t in (1, 2, 3, 4)]
    assert kernel_chain(veth) == expected
    assert listed_order(chain) == expected
    [d] = chain.dispatchers()
    assert d["mode"] == "tcx" and d["revision"] >= 5

    assert veth.ping(1) == 1
    assert chain.trace() == [1, 2, 3]  # PASS at 100 ended the chain before DROP
    assert veth.ping(5) == 5
    assert chain.counts() == {1: 6, 2: 6, 3: 6, 4: 0}

    # Re-prioritize the dropper in front of the passer: traffic stops.
    chain.reset_trace()
    updated = chain.client.call("link.update", {"link_id": links[4]["link_id"],
                                                "params": {"priority": 10}})
    assert updated["params"]["priority"] == 10
    expected = [chain.programs[t] for t in (1, 4, 2, 3)]
    assert kernel_chain(veth) == expected
    assert listed_order(chain) == expected
    assert veth.ping(1) == 0
    assert chain.trace() == [1, 4]
    assert veth.ping(3) == 0
    assert chain.counts() == {1: 10, 2: 6, 3: 6, 4: 4}

    # Detach the dropper: traffic flows again, order of the rest unchanged.
    chain.client.call("program.detach", {"link_id": links[4]["link_id"]})
    assert kernel_chain(veth) == [chain.programs[t] for t in (1, 2, 3)]
    assert veth.ping(3) == 3
    for tag in (1, 2, 3):
        chain.client.call("program.detach", {"link_id": links[tag]["link_id"]})
    assert kernel_chain(veth) == []
    assert chain.dispatchers() == []
    assert not list((Path(chain.client.call("daemon.info")["bpffs"]) / "links").iterdir())


def test_equal_priorities_run_in_attach_order(chain: Chain, veth: VethPair) -> None:
    for tag in (1, 2, 3):
        chain.load(tag, NEXT)
    for tag in (2, 3, 1):
        chain.attach(tag, iface=veth.if_b, direction="ingress", priority=50,
                     netns=veth.netns_b)
    assert kernel_chain(veth) == [chain.programs[t] for t in (2, 3, 1)]
    veth.ping(1)
    assert chain.trace() == [2, 3, 1]


def test_egress_and_host_side_netns(chain: Chain, veth: VethPair) -> None:
    """Egress of va (namespace a): the dropper stops echo requests leaving a."""
    chain.load(1, NEXT)
    chain.load(2, DROP)
    chain.attach(1, iface=veth.if_a, direction="egress", priority=5, netns=veth.netns_a)
    link = chain.attach(2, iface=veth.if_a, direction="egress", priority=6, netns=veth.netns_a)
    assert veth.ping(2) == 0
    # A dropped egress packet fails ping's send, and ping tries again.
    counts = chain.counts()
    assert counts[1] == counts[2] >= 2
    chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert veth.ping(2) == 2
    # Ingress of vb saw nothing of ours.
    assert kernel_chain(veth) == []


def test_foreign_tcx_program_kept_in_place(chain: Chain, veth: VethPair,
                                           daemon: DaemonProcess) -> None:
    """A TCX link the daemon did not make stays where it is; ours are
    ordered around it and it survives their attach and detach."""
    foreign = chain.load(9, NEXT)
    chain.load(1, NEXT)
    chain.load(2, NEXT)
    ifindex = kernel.interface_index(veth.if_b, netns=NetNs(veth.netns_b))
    foreign_pin = daemon.bpffs / "foreign_link"
    kernel.attach_tcx(daemon.bpffs / f"prog_{foreign}", ifindex, "ingress", foreign_pin,
                      kernel.TcxAnchor.append(), netns=NetNs(veth.netns_b))
    try:
        a = chain.attach(2, iface=veth.if_b, direction="ingress", priority=20,
                         netns=veth.netns_b)
        b = chain.attach(1, iface=veth.if_b, direction="ingress", priority=10,
                         netns=veth.netns_b)
        assert kernel_chain(veth) == [foreign, chain.programs[1], chain.programs[2]]
        veth.ping(1)
        assert chain.trace() == [9, 1, 2]
        for link in (a, b):
            chain.client.call("program.detach", {"link_id": link["link_id"]})
        assert kernel_chain(veth) == [foreign]
    finally:
        kernel.detach_tcx(foreign_pin)


def test_bpftool_agrees_with_dispatcher_list(chain: Chain, veth: VethPair) -> None:
    for tag in (1, 2):
        chain.load(tag, NEXT)
    l1 = chain.attach(1, iface=veth.if_b, direction="ingress", priority=2, netns=veth.netns_b)
    l2 = chain.attach(2, iface=veth.if_b, direction="ingress", priority=1, netns=veth.netns_b)
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], check=True,
                                      capture_output=True, text=True).stdout)
    by_id = {ln["id"]: ln for ln in links}
    for link, tag in ((l1, 1), (l2, 2)):
        assert by_id[link["kernel_link_id"]]["prog_id"] == chain.programs[tag]
    [d] = chain.dispatchers()
    assert d["links"] == [l2["link_id"], l1["link_id"]]
    # bpftool 7.1 `net` predates TCX; newer ones list the chain in order.
    net = subprocess.run(["ip", "netns", "exec", veth.ns_b, "bpftool", "-j", "net", "show"],
                         capture_output=True, text=True)
    tcx_entries = [e for block in json.loads(net.stdout or "[]")
                   for e in block.get("tcx", [])] if net.returncode == 0 else []
    if tcx_entries:
        assert [e["prog_id"] for e in tcx_entries] == [chain.programs[2], chain.programs[1]]


def test_attach_errors(chain: Chain, veth: VethPair) -> None:
    chain.load(1, NEXT)
    with pytest.raises(RpcError) as err:
        chain.attach(1, iface="nosuch0", direction="ingress", netns=veth.netns_b)
    assert err.value.code == 1100 and "nosuch0" in err.value.message
    with pytest.raises(RpcError) as err:
        chain.attach(1, iface=veth.if_b, direction="sideways", netns=veth.netns_b)
    assert err.value.code == -32602
    with pytest.raises(RpcError) as err:
        chain.attach(1, iface=veth.if_b, direction="ingress", priority=1001,
                     netns=veth.netns_b)
    assert err.value.code == -32602
    with pytest.raises(RpcError) as err:
        chain.attach(1, iface=veth.if_b, direction="ingress", netns="/var/run/netns/nosuch")
    assert err.value.code == 1100
    chain.attach(1, iface=veth.if_b, direction="ingress", netns=veth.netns_b)
    # The same program twice on one hook: the kernel refuses, nothing is left behind.
    with pytest.raises(RpcError) as err:
        chain.attach(1, iface=veth.if_b, direction="ingress", netns=veth.netns_b)
    assert err.value.code == 1200
    assert len(chain.client.call("link.list")) == 1
    assert kernel_chain(veth) == [chain.programs[1]]


def test_netns_deleted_then_detach(chain: Chain, veth: VethPair) -> None:
    chain.load(1, NEXT)
    link = chain.attach(1, iface=veth.if_b, direction="ingress", netns=veth.netns_b)
    veth.destroy()
    chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert chain.client.call("link.list") == []
    assert chain.dispatchers() == []


# --- the kernel layer directly (bpfman.kernel.links.tcx) ---------------------------


def test_stale_revision_is_retried(chain: Chain, veth: VethPair, daemon: DaemonProcess) -> None:
    """Someone changes the chain between our query and our attach: the
    kernel answers ESTALE, the position is recomputed from a fresh query."""
    ours, theirs = chain.load(1, NEXT), chain.load(2, NEXT)
    ns = NetNs(veth.netns_b)
    ifindex = kernel.interface_index(veth.if_b, netns=ns)
    seen: list[list[int]] = []

    def position(current: kernel.TcxChain) -> kernel.TcxAnchor:
        seen.append(current.program_ids())
        if len(seen) == 1:  # the race: another attach lands first
            kernel.attach_tcx(daemon.bpffs / f"prog_{theirs}", ifindex, "ingress",
                              daemon.bpffs / "theirs", kernel.TcxAnchor.append(), netns=ns)
        return kernel.TcxAnchor.head()

    try:
        kernel.attach_tcx(daemon.bpffs / f"prog_{ours}", ifindex, "ingress",
                          daemon.bpffs / "ours", position, netns=ns)
        assert seen == [[], [theirs]]
        assert kernel_chain(veth) == [ours, theirs]
    finally:
        kernel.detach_tcx(daemon.bpffs / "ours")
        kernel.detach_tcx(daemon.bpffs / "theirs")
    assert kernel_chain(veth) == []
    assert not (daemon.bpffs / "ours").exists()
    assert kernel.detach_tcx(daemon.bpffs / "ours") is False  # idempotent


def test_link_update_swaps_program_in_place(chain: Chain, veth: VethPair,
                                            daemon: DaemonProcess) -> None:
    first, second, other = chain.load(1, NEXT), chain.load(2, DROP), chain.load(3, NEXT)
    ns = NetNs(veth.netns_b)
    ifindex = kernel.interface_index(veth.if_b, netns=ns)
    pin = daemon.bpffs / "swap"
    kernel.attach_tcx(daemon.bpffs / f"prog_{other}", ifindex, "ingress",
                      daemon.bpffs / "other", kernel.TcxAnchor.append(), netns=ns)
    kernel_id = kernel.attach_tcx(daemon.bpffs / f"prog_{first}", ifindex, "ingress", pin,
                                  kernel.TcxAnchor.head(), netns=ns)
    try:
        assert veth.ping(1) == 1
        kernel.update_tcx_link(pin, daemon.bpffs / f"prog_{second}")
        assert kernel_chain(veth) == [second, other]
        info = kernel.tcx_link_info(pin)
        assert (info.kernel_link_id, info.program_id, info.ifindex, info.direction) == (
            kernel_id, second, ifindex, "ingress")
        assert veth.ping(2) == 0
        with pytest.raises(Exception, match="already"):
            kernel.update_tcx_link(pin, daemon.bpffs / f"prog_{other}")
    finally:
        kernel.detach_tcx(pin)
        kernel.detach_tcx(daemon.bpffs / "other")


def test_cli_and_daemon_restart(chain: Chain, veth: VethPair, daemon: DaemonProcess) -> None:
    """The CLI drives tcx like any type; the chain keeps running while the
    daemon is down and is still managed after it comes back."""
    chain.load(1, NEXT)
    chain.load(2, DROP)
    out = daemon.cli("-o", "json", "attach", str(chain.programs[2]), "tcx", "--iface",
                     veth.if_b, "--direction", "ingress", "--priority", "20",
                     "--netns", veth.netns_b, "-m", "owner=test")
    dropper = json.loads(out.stdout)
    assert dropper["metadata"] == {"owner": "test"}
    daemon.cli("attach", str(chain.programs[1]), "tcx", "--iface", veth.if_b,
               "--direction", "ingress", "--priority", "10", "--netns", veth.netns_b)
    assert "tcx" in daemon.cli("dispatchers").stdout
    daemon.stop()
    assert veth.ping(2) == 0  # still attached, daemon down
    assert kernel_chain(veth) == [chain.programs[1], chain.programs[2]]
    daemon.start()
    chain.client = daemon.client()
    assert listed_order(chain) == [chain.programs[1], chain.programs[2]]
    daemon.cli("detach", str(dropper["link_id"]))
    assert veth.ping(2) == 2
    assert kernel_chain(veth) == [chain.programs[1]]


def test_link_update_program_swap_through_the_api(chain: Chain, veth: VethPair) -> None:
    passer, dropper, tail = chain.load(1, NEXT), chain.load(2, DROP), chain.load(3, NEXT)
    where = {"iface": veth.if_b, "netns": veth.netns_b, "direction": "ingress"}
    link = chain.attach(1, **where, priority=10)
    chain.attach(3, **where, priority=20)
    assert veth.ping(1) == 1
    swapped = chain.client.call("link.update", {"link_id": link["link_id"],
                                                "program_id": dropper})
    assert swapped["program_id"] == dropper and swapped["link_id"] == link["link_id"]
    assert kernel_chain(veth) == [dropper, tail]  # same slot, same link
    assert veth.ping(2) == 0
    assert chain.client.call("program.get", {"program_id": dropper})["links"] == [
        link["link_id"]]
    assert chain.client.call("program.get", {"program_id": passer})["links"] == []
    chain.client.call("link.update", {"link_id": link["link_id"], "program_id": passer})
    assert veth.ping(1) == 1
