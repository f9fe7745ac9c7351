"""The `tc` type on the host kernel: programs behind the daemon's TC
dispatcher (static mode: the host kernel refuses extension programs), as a
cls_bpf direct-action filter on clsact, on veth pairs in namespaces the
tests create. Checked with real packets (ping), the programs' maps,
`tc filter show` and `bpftool net`.

Programs are instances of tests/programs/tc_chain.bpf.c: each counts the
ICMP packets it sees, records its tag in run order and returns its verdict.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tc_support import OK, PIPE, SHOT, UNSPEC, Chain, attach, filters, tc

from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, VethPair


@pytest.fixture
def chain(daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> Chain:
    return Chain(daemon, bpf_program("tc_chain"), "tc")






def qdiscs(veth: VethPair, *, ns: str | None = None, dev: str | None = None) -> list[str]:
    out = tc(veth, "-j", "qdisc", "show", "dev", dev or veth.if_b, ns=ns).stdout
    return [q["kind"] for q in json.loads(out)]




def test_counter_dropper_pass_in_priority_order(chain: Chain, veth: VethPair) -> None:
    """A counter (PIPE) at 10, a dropper (SHOT) at 20, a passer (OK) at 30:
    the dropper ends the chain; moving the passer in front of it lets
    traffic through; proceed-on decides whether the chain goes on."""
    chain.load(1, PIPE)
    chain.load(2, SHOT)
    chain.load(3, OK)
    assert qdiscs(veth) == ["noqueue"]  # no clsact yet: the daemon creates it
    counter = attach(chain, veth, 1, 10)
    dropper = attach(chain, veth, 2, 20)
    passer = attach(chain, veth, 3, 30)
    assert "clsact" in qdiscs(veth)

    [d] = chain.dispatchers()
    assert d["mode"] == "static" and d["links"] == [counter["link_id"], dropper["link_id"],
                                                    passer["link_id"]]
    [f] = filters(veth)
    assert (f["pref"], f["options"]["bpf_name"], f["options"]["prog"]["id"]) == (
        50, "bpfman_tc_dispatcher", d["program_id"])

    assert veth.ping(1) == 0
    assert chain.trace() == [1, 2]
    assert veth.ping(3) == 0
    assert chain.counts() == {1: 4, 2: 4, 3: 0}

    # Re-prioritize the passer in front of the dropper: one atomic swap.
    chain.reset_trace()
    handle = f["options"]["handle"]
    chain.client.call("link.update", {"link_id": passer["link_id"], "params": {"priority": 15}})
    [d2] = chain.dispatchers()
    assert d2["revision"] == d["revision"] + 1 and d2["program_id"] != d["program_id"]
    [f2] = filters(veth)
    assert f2["options"]["handle"] == handle  # replaced in place, not re-added
    assert veth.ping(1) == 1
    assert chain.trace() == [1, 3]
    assert veth.ping(3) == 3
    assert chain.counts() == {1: 8, 2: 4, 3: 4}

    # The passer proceeds on OK too: the chain goes on to the dropper.
    chain.reset_trace()
    chain.client.call("link.update", {"link_id": passer["link_id"],
                                      "params": {"proceed_on": ["ok"]}})
    assert veth.ping(1) == 0
    assert chain.trace() == [1, 3, 2]

    for link in (counter, dropper, passer):
        chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert chain.dispatchers() == []
    assert filters(veth) == []
    assert "clsact" not in qdiscs(veth)  # the daemon made it and nothing else uses it
    assert veth.ping(2) == 2
    bpffs = Path(chain.client.call("daemon.info")["bpffs"])
    assert not list((bpffs / "links").iterdir())
    assert not list((bpffs / "dispatchers").rglob("dispatcher"))


def test_default_proceed_on_and_fallthrough(chain: Chain, veth: VethPair) -> None:
    """Default proceed-on is pipe + dispatcher_return: a program returning
    UNSPEC (no verdict) ends the chain, one returning PIPE goes on; when all
    proceeded the dispatcher accepts (TC_ACT_OK)."""
    chain.load(1, UNSPEC)
    chain.load(2, PIPE)
    chain.load(3, PIPE)
    attach(chain, veth, 2, 1)
    attach(chain, veth, 3, 2)
    assert veth.ping(1) == 1
    assert chain.trace() == [2, 3]
    chain.reset_trace()
    attach(chain, veth, 1, 0)  # UNSPEC first: ends the chain, packet continues
    assert veth.ping(1) == 1
    assert chain.trace() == [1]
    dispatcher = chain.client.call("link.list")
    assert all("proceed-on pipe,dispatcher_return" in ln["summary"] for ln in dispatcher)


def test_egress(chain: Chain, veth: VethPair) -> None:
    chain.load(1, PIPE)
    chain.load(2, SHOT)
    counter = attach(chain, veth, 1, 1, "egress")
    attach(chain, veth, 2, 2, "egress")
    # vb's egress carries the echo replies: requests counted, replies dropped.
    assert veth.ping(2) == 0
    counts = chain.counts()
    assert counts[1] == counts[2] >= 2
    assert [f["options"]["bpf_name"] for f in filters(veth, "egress")] == [
        "bpfman_tc_dispatcher"]
    assert filters(veth, "ingress") == []
    chain.client.call("link.update", {"link_id": counter["link_id"],
                                      "params": {"proceed_on": ["ok"]}})
    assert veth.ping(2) == 2  # the counter's PIPE now ends the chain before the dropper


def test_foreign_filter_and_clsact_survive(chain: Chain, veth: VethPair,
                                           bpf_program: Callable[..., Path]) -> None:
    """An existing clsact with a filter the daemon did not create: reused,
    the filter keeps running before ours (lower tc priority), and both
    survive the last detach."""
    foreign = bpf_program("tc_chain")
    tc(veth, "qdisc", "add", "dev", veth.if_b, "clsact")
    tc(veth, "filter", "add", "dev", veth.if_b, "ingress", "prio", "10", "bpf", "da",
       "obj", str(foreign), "sec", "tc")
    chain.load(1, PIPE)
    link = attach(chain, veth, 1, 5)
    names = [(f["pref"], f["options"].get("bpf_name")) for f in filters(veth)]
    assert names[0][0] == 10 and names[1] == (50, "bpfman_tc_dispatcher")
    assert veth.ping(2) == 2 and chain.count(1) == 2
    chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert [f["pref"] for f in filters(veth)] == [10]
    assert "clsact" in qdiscs(veth)


def test_clsact_kept_when_others_use_it(chain: Chain, veth: VethPair,
                                        bpf_program: Callable[..., Path]) -> None:
    """The daemon created clsact, then someone else added a filter to it:
    the last detach leaves the qdisc (and their filter) alone."""
    chain.load(1, PIPE)
    link = attach(chain, veth, 1, 5)
    tc(veth, "filter", "add", "dev", veth.if_b, "egress", "prio", "7", "bpf", "da",
       "obj", str(bpf_program("tc_chain")), "sec", "tc")
    chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert "clsact" in qdiscs(veth)
    assert [f["pref"] for f in filters(veth, "egress")] == [7]


def test_ingress_qdisc_is_a_conflict(chain: Chain, veth: VethPair) -> None:
    tc(veth, "qdisc", "add", "dev", veth.if_b, "ingress")
    chain.load(1, PIPE)
    with pytest.raises(RpcError) as err:
        attach(chain, veth, 1, 5)
    assert err.value.code == 1200 and "ingress" in err.value.message
    assert chain.client.call("link.list") == [] and chain.dispatchers() == []
    assert qdiscs(veth).count("ingress") == 1


def test_ten_program_limit_and_failure_keeps_chain(chain: Chain, veth: VethPair) -> None:
    for tag in range(1, 12):
        chain.load(tag, PIPE)
    links = [attach(chain, veth, tag, tag) for tag in range(1, 11)]
    [d] = chain.dispatchers()
    with pytest.raises(RpcError) as err:
        attach(chain, veth, 11, 11)
    assert err.value.code == 1200
    assert chain.dispatchers() == [d]  # the same revision still runs
    assert len(chain.client.call("link.list")) == 10
    assert veth.ping(1) == 1
    assert chain.trace() == list(range(1, 11))
    for link in links:
        chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert filters(veth) == []


def test_failed_rebuild_keeps_the_running_chain(chain: Chain, veth: VethPair,
                                                tmp_path: Path) -> None:
    """A rebuild that fails (here: the new program's object file is gone, so
    it cannot be relocated into the dispatcher) changes nothing."""
    chain.load(1, SHOT)
    attach(chain, veth, 1, 5)
    [d] = chain.dispatchers()
    [f] = filters(veth)
    doomed = tmp_path / "doomed.bpf.o"
    doomed.write_bytes(chain.obj.read_bytes())
    obj, chain.obj = chain.obj, doomed
    chain.load(2, OK)
    chain.obj = obj
    doomed.unlink()
    with pytest.raises(RpcError):
        attach(chain, veth, 2, 1)
    assert chain.dispatchers() == [d]
    assert filters(veth) == [f]
    assert [p.name for p in Path(d["pin_dir"]).glob("rev_*")] == ["rev_1"]
    assert len(chain.client.call("link.list")) == 1
    assert veth.ping(2) == 0 and chain.count(1) == 2  # the dropper still runs alone


def test_netns_deleted_then_detach(chain: Chain, veth: VethPair, daemon: DaemonProcess) -> None:
    """Detach and unload still work after the namespace is gone, with tc
    and tcx links on the same interface."""
    chain.load(1, PIPE)
    chain.load(2, PIPE)
    tcx = Chain(daemon, chain.obj, "tcx")
    tcx.owner, tcx.map_dir = chain.owner, chain.map_dir
    tcx.load(3, UNSPEC)
    tcx.load(4, UNSPEC)
    link = attach(chain, veth, 1, 5)
    attach(chain, veth, 2, 6)
    for tag in (3, 4):
        tcx.attach(tag, iface=veth.if_b, direction="ingress", netns=veth.netns_b)
    veth.destroy()
    chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert len(chain.client.call("link.list")) == 3
    for program_id in (*chain.programs.values(), *tcx.programs.values()):
        chain.client.call("program.unload", {"program_id": program_id})
    assert chain.client.call("link.list") == [] and chain.client.call("dispatcher.list") == []
    assert not list((daemon.bpffs / "links").iterdir())
    assert not list((daemon.bpffs / "dispatchers").rglob("rev_*"))


def test_bpftool_net_agrees(chain: Chain, veth: VethPair) -> None:
    chain.load(1, PIPE)
    attach(chain, veth, 1, 5)
    out = subprocess.run(["ip", "netns", "exec", veth.ns_b, "bpftool", "-j", "net", "show"],
                         capture_output=True, text=True, check=True).stdout
    [d] = chain.dispatchers()
    tc_entries = [e for block in json.loads(out) for e in block.get("tc", [])]
    assert [(e["devname"], e["kind"], e["id"]) for e in tc_entries] == [
        (veth.if_b, "clsact/ingress", d["program_id"])]


def test_cli_and_daemon_restart(chain: Chain, veth: VethPair, daemon: DaemonProcess) -> None:
    chain.load(1, PIPE)
    chain.load(2, SHOT)
    out = daemon.cli("-o", "json", "attach", str(chain.programs[2]), "tc", "--iface",
                     veth.if_b, "--direction", "ingress", "--priority", "20",
                     "--netns", veth.netns_b, "--proceed-on", "pipe", "--proceed-on", "ok")
    dropper = json.loads(out.stdout)
    assert dropper["params"]["proceed_on"] == ["pipe", "ok"]
    daemon.cli("attach", str(chain.programs[1]), "tc", "--iface", veth.if_b,
               "--direction", "ingress", "--priority", "10", "--netns", veth.netns_b)
    assert "static" in daemon.cli("dispatchers").stdout
    [before] = chain.dispatchers()
    daemon.stop()
    assert veth.ping(2) == 0  # the filter keeps the dispatcher running
    daemon.start()
    chain.client = daemon.client()
    assert chain.dispatchers() == [before]
    daemon.cli("detach", str(dropper["link_id"]))
    assert veth.ping(2) == 2
    [after] = chain.dispatchers()
    assert after["revision"] == before["revision"] + 1


def test_restart_reports_a_deleted_dispatcher_and_rebuilds(chain: Chain, veth: VethPair,
                                                           daemon: DaemonProcess) -> None:
    chain.load(1, PIPE)
    chain.load(2, PIPE)
    attach(chain, veth, 1, 5)
    daemon.stop()
    tc(veth, "qdisc", "del", "dev", veth.if_b, "clsact")  # behind the daemon's back
    daemon.start()
    chain.client = daemon.client()
    assert "dispatcher filter missing" in daemon.log_text()
    attach(chain, veth, 2, 6)  # the next change rebuilds the chain
    assert veth.ping(1) == 1
    assert chain.trace() == [1, 2]


def test_link_update_program_swap_rebuilds_the_chain(chain: Chain, veth: VethPair) -> None:
    chain.load(1, PIPE)
    dropper = chain.load(2, SHOT)
    link = attach(chain, veth, 1, 10)
    assert veth.ping(1) == 1
    chain.client.call("link.update", {"link_id": link["link_id"], "program_id": dropper})
    assert veth.ping(2) == 0
    [disp] = chain.dispatchers()
    assert [s["program_id"] for s in disp["slots"]] == [dropper]


def test_link_pin_removed_by_hand_stops_the_program(chain: Chain, veth: VethPair) -> None:
    """Issue 14 item 9 for TC: reconcile drops the record of a link whose pin
    was removed by hand and rebuilds the chain without it, so the kernel
    stops running the dropper (here the last link: the dispatcher goes)."""
    chain.load(1, SHOT)
    link = attach(chain, veth, 1, 5)
    assert veth.ping(2) == 0
    Path(link["pin_path"]).unlink()
    drifts = chain.client.call("daemon.reconcile")
    assert veth.ping(2) == 2  # the kernel no longer runs the dropper
    [drift] = [x for x in drifts if x["subject"] == f"link {link['link_id']}"]
    assert "rebuilt without it" in drift["action"]
    assert chain.client.call("link.list") == []
    assert chain.dispatchers() == [] and filters(veth) == []
