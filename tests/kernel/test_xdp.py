"""XDP chains on the host kernel (static and single modes), with real packets.

The host kernel refuses extension programs (lockdown), so the daemon builds
static dispatchers here: every test below runs a real daemon over its socket
and a veth pair between two namespaces the test creates. XDP programs attach
to the B end (inside namespace B); traffic goes from A to B only. Counter
deltas are checked as ">=" where the counter runs: the kernel's own IPv6
neighbour discovery on the veth also passes through the chain.
"""

from __future__ import annotations

import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xdp_support import FRAME, XDP_DROP, XDP_PASS, XDP_TX, attach, counts, dispatchers, load

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.dispatch import MAX_SLOTS
from bpfman.testing import DaemonProcess, VethPair, running_daemon, veth_pair


@pytest.fixture
def objs(bpf_program: Callable[..., Path]) -> dict[str, Path]:
    return {"counter": bpf_program("xdp_counter"), "verdict": bpf_program("xdp_verdict"),
            "tailcall": bpf_program("xdp_tailcall")}


def run_attached(pair: VethPair, data: bytes = FRAME) -> int:
    """BPF_PROG_TEST_RUN on whatever program interface B runs now."""
    prog_id = pair.xdp_program_id()
    assert prog_id, "nothing attached"
    return kernel.test_run(prog_id, data).retval


# --- the announcement's demonstration ------------------------------------------------


def test_demo_priority_proceed_on_and_reprioritize(daemon: DaemonProcess, objs: dict[str, Path],
                                                    veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=55)
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "single"  # alone: attached directly
    assert veth.ping(5) == 5
    packets, nbytes = counts(counter)
    assert packets >= 5 and nbytes >= 5 * 98

    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    link = attach(daemon, passer, veth, priority=50, proceed_on=["drop"])
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "static" and len(disp["links"]) == 2
    assert disp["links"][0] == link["link_id"]
    before = counts(counter)[0]
    assert veth.ping(5) == 5  # pass-only says PASS: traffic flows...
    assert counts(counter)[0] == before  # ...but the chain stops before the counter

    # Re-prioritize under traffic: no ping may be lost across the swap.
    result: dict[str, int] = {}
    flood = threading.Thread(target=lambda: result.setdefault("got", veth.ping(300)))
    flood.start()
    time.sleep(1.0)
    updated = daemon.client().call("link.update", {"link_id": link["link_id"],
                                              "params": {"priority": 60}})
    flood.join(30)
    assert updated["link_id"] == link["link_id"] and updated["params"]["priority"] == 60
    assert updated["program_id"] == passer["program_id"]
    assert result["got"] == 300
    [disp] = dispatchers(daemon)
    assert disp["links"] == [counter_link_id(daemon, counter), link["link_id"]]
    assert [(s["program_id"], s["priority"], s["proceed_on"]) for s in disp["slots"]] == [
        (counter["program_id"], 55, ["pass", "dispatcher_return"]),
        (passer["program_id"], 60, ["drop"])]
    assert f"@{veth.netns_b}" in disp["attach_point"] and veth.if_b in disp["attach_point"]
    assert disp["revision"] >= 3
    after = counts(counter)[0]
    assert after > before  # counting again (the flood's tail)
    assert veth.ping(5) == 5
    assert counts(counter)[0] >= after + 5


def counter_link_id(daemon: DaemonProcess, prog: dict[str, Any]) -> int:
    [ln] = [x for x in daemon.client().call("link.list") if x["program_id"] == prog["program_id"]]
    return int(ln["link_id"])


# --- proceed-on, deterministically -------------------------------------------------


def test_proceed_on_with_test_run(daemon: DaemonProcess, objs: dict[str, Path],
                                  veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    dropper = load(daemon, objs["verdict"], "xdp_dropper")
    attach(daemon, counter, veth, priority=20)
    drop_link = attach(daemon, dropper, veth, priority=10, proceed_on=["pass"])
    # dropper first, DROP not in its proceed-on: verdict DROP, counter never runs.
    before = counts(counter)[0]
    assert run_attached(veth) == XDP_DROP
    assert counts(counter)[0] == before
    assert veth.ping(3) == 0  # real packets are dropped too

    daemon.client().call("link.update", {"link_id": drop_link["link_id"],
                                    "params": {"proceed_on": ["drop"]}})
    # DROP now proceeds: the counter runs and its PASS falls through to PASS.
    assert run_attached(veth) == XDP_PASS
    assert counts(counter)[0] >= before + 1
    assert veth.ping(3) == 3

    # Counter first with proceed-on [] (nothing proceeds): its PASS is final.
    counter_link = counter_link_id(daemon, counter)
    daemon.client().call("link.update", {"link_id": counter_link,
                                    "params": {"priority": 1, "proceed_on": []}})
    daemon.client().call("link.update", {"link_id": drop_link["link_id"],
                                    "params": {"proceed_on": ["pass"]}})
    before = counts(counter)[0]
    assert run_attached(veth) == XDP_PASS
    assert counts(counter)[0] >= before + 1
    # ...and with proceed-on [pass] the dropper decides.
    daemon.client().call("link.update",
                         {"link_id": counter_link, "params": {"proceed_on": ["pass"]}})
    assert run_attached(veth) == XDP_DROP


def test_dispatcher_return_and_all_proceed(daemon: DaemonProcess, objs: dict[str, Path],
                                           veth: VethPair) -> None:
    ret31 = load(daemon, objs["verdict"], "xdp_dispatcher_return")
    tx = load(daemon, objs["verdict"], "xdp_tx_only")
    attach(daemon, ret31, veth, priority=1)  # default proceed-on includes dispatcher_return
    tx_link = attach(daemon, tx, veth, priority=2, proceed_on=["tx"])
    assert run_attached(veth) == XDP_PASS  # both proceed: the fall-through verdict
    daemon.client().call("link.update",
                         {"link_id": tx_link["link_id"], "params": {"proceed_on": []}})
    assert run_attached(veth) == XDP_TX


def test_removing_first_program_keeps_proceed_on_aligned(daemon: DaemonProcess,
                                                         objs: dict[str, Path],
                                                         veth: VethPair) -> None:
    """Upstream #791: after removing the first program, each remaining
    program must keep its own proceed-on set, not inherit its slot's."""
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    dropper = load(daemon, objs["verdict"], "xdp_dropper")
    counter = load(daemon, objs["counter"], "xdp_counter")
    first = attach(daemon, passer, veth, priority=5, proceed_on=["pass"])
    attach(daemon, dropper, veth, priority=10, proceed_on=["drop"])  # proceeds after DROP
    attach(daemon, counter, veth, priority=15, proceed_on=[])
    c0 = counts(counter)[0]
    assert run_attached(veth) == XDP_PASS and counts(counter)[0] >= c0 + 1
    daemon.client().call("program.detach", {"link_id": first["link_id"]})
    # Misaligned masks would give the dropper slot 0's mask ({pass}) -> DROP.
    assert run_attached(veth) == XDP_PASS and counts(counter)[0] >= c0 + 2
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "static" and len(disp["links"]) == 2


def test_equal_priorities_keep_attach_order(daemon: DaemonProcess, objs: dict[str, Path],
                                            veth: VethPair) -> None:
    dropper = load(daemon, objs["verdict"], "xdp_dropper")
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    # Attached first, so it runs first although its name sorts later.
    a = attach(daemon, passer, veth, priority=50, proceed_on=[])
    b = attach(daemon, dropper, veth, priority=50, proceed_on=[])
    [disp] = dispatchers(daemon)
    assert disp["links"] == [a["link_id"], b["link_id"]]
    assert run_attached(veth) == XDP_PASS


# --- limits, failures, cleanup ------------------------------------------------------


def test_ten_programs_then_conflict_and_chain_intact(daemon: DaemonProcess, objs: dict[str, Path],
                                                     veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=999)
    for i in range(MAX_SLOTS - 1):
        p = load(daemon, objs["verdict"], "xdp_pass_only")
        attach(daemon, p, veth, priority=i)
    [disp] = dispatchers(daemon)
    assert len(disp["links"]) == MAX_SLOTS
    prog_before = veth.xdp_program_id()
    c0 = counts(counter)[0]
    assert run_attached(veth) == XDP_PASS and counts(counter)[0] >= c0 + 1

    extra = load(daemon, objs["verdict"], "xdp_dropper")
    with pytest.raises(RpcError) as err:
        attach(daemon, extra, veth, priority=0)
    assert err.value.code == 1200 and "10" in err.value.message
    assert veth.xdp_program_id() == prog_before
    assert len(dispatchers(daemon)[0]["links"]) == MAX_SLOTS
    assert len(daemon.client().call("link.list")) == MAX_SLOTS


def test_failed_rebuild_leaves_previous_chain(daemon: DaemonProcess, objs: dict[str, Path],
                                              veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    attach(daemon, counter, veth, priority=10)
    attach(daemon, passer, veth, priority=20)
    before = dispatchers(daemon)
    prog_before = veth.xdp_program_id()
    links_before = daemon.client().call("link.list")

    tail = load(daemon, objs["tailcall"], "xdp_tailcaller")
    with pytest.raises(RpcError) as err:
        attach(daemon, tail, veth, priority=1)
    assert "tail call" in err.value.message
    assert err.value.code == 1000
    assert veth.xdp_program_id() == prog_before
    assert dispatchers(daemon) == before
    assert daemon.client().call("link.list") == links_before
    c0 = counts(counter)[0]
    assert veth.ping(3) == 3 and counts(counter)[0] >= c0 + 3


def test_last_detach_removes_dispatcher(daemon: DaemonProcess, objs: dict[str, Path],
                                        veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    a = attach(daemon, counter, veth, priority=10)
    b = attach(daemon, passer, veth, priority=20)
    static_id = veth.xdp_program_id()
    daemon.client().call("program.detach", {"link_id": a["link_id"]})
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "single" and veth.xdp_program_id() == passer["program_id"]
    assert not any(p.program_id == static_id for p in kernel.iter_programs())
    daemon.client().call("program.detach", {"link_id": b["link_id"]})
    assert dispatchers(daemon) == []
    assert veth.xdp_program_id() == 0
    root = daemon.bpffs / "dispatchers" / "xdp"
    assert not root.exists() or not any(root.iterdir())
    assert not any((daemon.bpffs / "links").iterdir())
    # The programs are still loaded and reusable.
    attach(daemon, counter, veth)
    assert veth.xdp_program_id() == counter["program_id"]


def test_unload_detaches(daemon: DaemonProcess, objs: dict[str, Path], veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    attach(daemon, counter, veth, priority=10)
    attach(daemon, passer, veth, priority=20)
    daemon.client().call("program.unload", {"program_id": counter["program_id"]})
    assert veth.xdp_program_id() == passer["program_id"]
    daemon.client().call("program.unload", {"program_id": passer["program_id"]})
    assert veth.xdp_program_id() == 0 and dispatchers(daemon) == []


def test_foreign_program_is_not_replaced(daemon: DaemonProcess, objs: dict[str, Path],
                                         veth: VethPair) -> None:
    subprocess.run(["ip", "-n", veth.ns_b, "link", "set", "dev", veth.if_b, "xdp", "obj",
                    str(objs["verdict"]), "sec", "xdp"], check=True, capture_output=True)
    foreign = veth.xdp_program_id()
    counter = load(daemon, objs["counter"], "xdp_counter")
    with pytest.raises(RpcError) as err:
        attach(daemon, counter, veth)
    assert err.value.code == 1200 and "did not attach" in err.value.message
    assert veth.xdp_program_id() == foreign
    assert daemon.client().call("link.list") == []


# --- namespaces -------------------------------------------------------------------------


def test_netns_deleted_under_attached_program(objs: dict[str, Path]) -> None:
    with running_daemon() as daemon, veth_pair("x") as pair:
        counter = load(daemon, objs["counter"], "xdp_counter")
        passer = load(daemon, objs["verdict"], "xdp_pass_only")
        a = attach(daemon, counter, pair, priority=1)
        b = attach(daemon, passer, pair, priority=2)
        assert pair.ping(2) == 2
        subprocess.run(["ip", "netns", "del", pair.ns_b], check=True)
        [ln] = [x for x in daemon.client().call("link.list") if x["link_id"] == a["link_id"]]
        assert "deleted" in ln["summary"]
        daemon.client().call("program.detach", {"link_id": a["link_id"]})
        [disp] = dispatchers(daemon)
        assert disp["mode"] == "gone"
        daemon.client().call("program.detach", {"link_id": b["link_id"]})
        assert dispatchers(daemon) == []
        assert "was deleted" in daemon.log_text()
        assert daemon.client().call("link.list") == []


def test_unknown_interface_and_bad_params(daemon: DaemonProcess, objs: dict[str, Path],
                                          veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    with pytest.raises(RpcError) as err:
        attach(daemon, counter, veth, iface="nope0")
    assert err.value.code == 1100
    with pytest.raises(RpcError) as err:
        attach(daemon, counter, veth, netns="/var/run/netns/bpfman-does-not-exist")
    assert err.value.code == 1100
    with pytest.raises(RpcError) as err:
        attach(daemon, counter, veth, priority=1001)
    assert err.value.code == -32602
    with pytest.raises(RpcError) as err:
        attach(daemon, counter, veth, proceed_on=["maybe"])
    assert err.value.code == -32602
    assert daemon.client().call("link.list") == []


def test_single_mode_configured(objs: dict[str, Path]) -> None:
    config = '[plugins.config.xdp]\ndispatcher = "single"\nxdp_mode = "generic"\n'
    with running_daemon(config) as daemon, veth_pair("s") as pair:
        counter = load(daemon, objs["counter"], "xdp_counter")
        passer = load(daemon, objs["verdict"], "xdp_pass_only")
        attach(daemon, counter, pair)
        out = subprocess.run(["ip", "-n", pair.ns_b, "link", "show", pair.if_b],
                             capture_output=True, text=True).stdout
        assert "xdpgeneric" in out
        with pytest.raises(RpcError) as err:
            attach(daemon, passer, pair)
        assert err.value.code == 1200 and "single" in err.value.message
        assert pair.ping(2) == 2 and counts(counter)[0] >= 2


# --- what the static splice keeps from each program --------------------------------------


def test_static_chain_keeps_global_data_and_shared_maps(daemon: DaemonProcess,
                                                        objs: dict[str, Path],
                                                        veth: VethPair) -> None:
    """A spliced copy uses the loaded program's own maps: its .rodata (global
    data set at load) and maps shared through map_owner_id."""
    first = load(daemon, objs["counter"], "xdp_counter")
    # Same object, maps shared with `first`, verdict DROP set as global data.
    second = load(daemon, objs["counter"], "xdp_counter", map_owner_id=first["program_id"],
                  global_data={"verdict": struct.pack("<I", XDP_DROP).hex()})
    assert second["map_pin_dir"] == first["map_pin_dir"]
    attach(daemon, first, veth, priority=1)
    attach(daemon, second, veth, priority=2, proceed_on=[])
    c0 = counts(first)[0]
    assert run_attached(veth) == XDP_DROP  # second's own .rodata
    assert counts(first)[0] >= c0 + 2  # both counted into the one shared map


def test_libxdp_dispatcher_object_on_the_host() -> None:
    """The project's dispatcher passes libxdp's recognition checks (it loads
    here; only its extensions need the VM) and runs an empty chain to PASS."""
    from bpfman.dispatch import XDP
    from bpfman.dispatch.libxdp import LibxdpConfig, dispatcher_object
    from bpfman.kernel import freplace as libxdp

    with running_daemon() as daemon:  # only for a private bpffs
        pin = daemon.bpffs / "dispatcher_probe"
        config = LibxdpConfig(version=2, chain_call_actions=(XDP.mask(["pass"]),) * 2,
                              run_prios=(10, 20), program_flags=(0, 0))
        prog_id = libxdp.load_dispatcher(dispatcher_object(2), config.pack(), pin)
        try:
            info = kernel.program_info(prog_id)
            assert info.name == "xdp_dispatcher" and info.btf_id
            [map_id] = info.map_ids
            m = kernel.map_info(map_id)
            assert (m.key_size, m.value_size, m.max_entries) == (4, 124, 1)
            raw = libxdp.read_dispatcher_config(prog_id)
            assert raw is not None and LibxdpConfig.unpack(raw) == config
            # Empty stubs return 31 (bit 31 is always set): the chain falls through.
            assert kernel.test_run(prog_id, FRAME).retval == XDP_PASS
        finally:
            kernel.remove_pin(pin)


def test_native_falls_back_to_generic(daemon: DaemonProcess, objs: dict[str, Path],
                                      veth: VethPair) -> None:
    """A driver without native XDP (a bridge) gets generic XDP in mode auto."""
    subprocess.run(["ip", "-n", veth.ns_b, "link", "add", "xbr0", "type", "bridge"], check=True)
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, iface="xbr0")
    out = subprocess.run(["ip", "-n", veth.ns_b, "link", "show", "xbr0"],
                         capture_output=True, text=True, check=True).stdout
    assert "xdpgeneric" in out
    # Replacing keeps the mode in use.
    attach(daemon, load(daemon, objs["verdict"], "xdp_pass_only"), veth, iface="xbr0")
    out = subprocess.run(["ip", "-n", veth.ns_b, "link", "show", "xbr0"],
                         capture_output=True, text=True, check=True).stdout
    assert "xdpgeneric" in out and [x["mode"] for x in dispatchers(daemon)] == ["static"]


def test_link_update_program_swap(daemon: DaemonProcess, objs: dict[str, Path],
                                  veth: VethPair) -> None:
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    dropper = load(daemon, objs["verdict"], "xdp_dropper")
    link = attach(daemon, passer, veth, priority=10)
    assert veth.ping(2) == 2
    swapped = daemon.client().call("link.update", {"link_id": link["link_id"],
                                              "program_id": dropper["program_id"]})
    assert swapped["program_id"] == dropper["program_id"]
    assert veth.ping(2) == 0
    assert run_attached(veth) == 1  # XDP_DROP
