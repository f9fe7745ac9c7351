"""Drift on an XDP interface: our dispatcher detached or replaced by another tool."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xdp_support import attach, counts, load

from bpfman.testing import DaemonProcess, VethPair, running_daemon


def attach_dropper(daemon: DaemonProcess, veth: VethPair, obj: Path) -> dict[str, Any]:
    return attach(daemon, load(daemon, obj, "xdp_dropper"), veth)


def ip_b(veth: VethPair, *args: str) -> None:
    subprocess.run(["ip", "-n", veth.ns_b, *args], check=True, capture_output=True)


def test_dispatcher_detached_behind_our_back_is_rebuilt(
    daemon: DaemonProcess, veth: VethPair, bpf_program: Callable[..., Path]
) -> None:
    attach_dropper(daemon, veth, bpf_program("xdp_verdict"))
    assert veth.ping(3) == 0
    ip_b(veth, "link", "set", "dev", veth.if_b, "xdp", "off")
    assert veth.ping(3) == 3
    drifts = daemon.client().call("daemon.reconcile")
    [drift] = [x for x in drifts if x["subject"].startswith("xdp ")]
    assert "detached outside the daemon" in drift["problem"]
    assert drift["action"] == "rebuilt from the records"
    assert veth.ping(3) == 0  # the dropper runs again
    drifts = daemon.client().call("daemon.reconcile")
    assert [x for x in drifts if x["subject"].startswith("xdp ")] == []


def test_dispatcher_replaced_by_another_tool_is_reported_not_stomped(
    daemon: DaemonProcess, veth: VethPair, bpf_program: Callable[..., Path]
) -> None:
    attach_dropper(daemon, veth, bpf_program("xdp_verdict"))
    other = bpf_program("xdp_counter")
    ip_b(veth, "-force", "link", "set", "dev", veth.if_b, "xdp", "obj", str(other), "sec", "xdp")
    assert veth.ping(3) == 3  # the other tool's program passes traffic
    drifts = daemon.client().call("daemon.reconcile")
    [drift] = [x for x in drifts if x["subject"].startswith("xdp ")]
    assert "which this daemon did not attach" in drift["problem"]
    assert drift["action"].startswith("marked")
    assert veth.ping(3) == 3  # left alone
    ip_b(veth, "link", "set", "dev", veth.if_b, "xdp", "off")


@pytest.mark.parametrize("mode", ["static", "single"])
def test_a_link_pin_removed_by_hand_stops_its_program(
    veth: VethPair, bpf_program: Callable[..., Path], mode: str
) -> None:
    """The record goes, and so does the program from the kernel's chain: the
    daemon never leaves running what it no longer shows."""
    with running_daemon(f'[plugins.config.xdp]\ndispatcher = "{mode}"\n') as daemon:
        dropper = attach_dropper(daemon, veth, bpf_program("xdp_verdict"))
        counter = None
        if mode == "static":  # a chain of two: the counter stays
            counter = load(daemon, bpf_program("xdp_counter"), "xdp_counter")
            attach(daemon, counter, veth, priority=10)
        assert veth.ping(3) == 0
        Path(dropper["pin_path"]).unlink()
        drifts = daemon.client().call("daemon.reconcile")
        [drift] = [x for x in drifts if x["subject"] == f"link {dropper['link_id']}"]
        assert drift["action"] == "record removed; its chain rebuilt without it"
        assert veth.ping(3) == 3  # the dropper no longer runs
        links = daemon.client().call("link.list")
        assert [x["link_id"] for x in links] == ([] if counter is None else
                                                  [links[0]["link_id"]])
        shown = subprocess.run(["ip", "-n", veth.ns_b, "link", "show", veth.if_b],
                               capture_output=True, text=True, check=True).stdout
        if counter is None:
            assert "xdp" not in shown.split("\n", 1)[1]  # nothing left on the interface
            assert daemon.client().call("dispatcher.list") == []
        else:
            packets = counts(counter)[0]
            assert veth.ping(3) == 3 and counts(counter)[0] >= packets + 3
