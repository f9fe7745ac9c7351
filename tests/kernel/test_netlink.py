"""The rtnetlink transport against the real kernel: interface lookups in a
namespace, and the kernel's own words (extended ack) in refusals."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bpfman import kernel
from bpfman.kernel import netlink, pins
from bpfman.kernel.netns import NetNs
from bpfman.model.errors import AttachTargetNotFound, Conflict
from bpfman.testing import DaemonProcess, VethPair


def test_interface_lookup_by_name_in_a_namespace(veth: VethPair) -> None:
    ns = NetNs.of(veth.netns_b)
    index = kernel.interface_index(veth.if_b, netns=ns)
    shown = subprocess.run(["ip", "-n", veth.ns_b, "-o", "link", "show", veth.if_b],
                           capture_output=True, text=True, check=True).stdout
    assert shown.startswith(f"{index}: {veth.if_b}@")
    with pytest.raises(AttachTargetNotFound):
        kernel.interface_index(veth.if_a, netns=ns)  # lives in the other namespace


def test_refusal_carries_the_kernels_extended_ack(daemon: DaemonProcess, veth: VethPair,
                                                  bpf_program: Callable[..., Path]) -> None:
    obj = bpf_program("xdp_verdict")
    # Someone else's program in generic mode: native cannot be added beside it.
    subprocess.run(["ip", "-n", veth.ns_b, "link", "set", "dev", veth.if_b, "xdpgeneric",
                    "obj", str(obj), "sec", "xdp"], check=True, capture_output=True)
    [p] = daemon.client().call("program.load", {"path": str(obj), "programs": [
        {"name": "xdp_pass_only", "type": "xdp"}]})["programs"]
    ns = NetNs.of(veth.netns_b)
    index = kernel.interface_index(veth.if_b, netns=ns)
    before = netlink.xdp_query(index, ns)
    assert before.mode == "generic"
    with pins.open_pinned(p["pin_path"], "prog") as fd, pytest.raises(Conflict) as refused:
        netlink.xdp_attach(index, fd, netns=ns, mode="native")
    assert "Native and generic XDP can't be active at the same time" in str(refused.value)
    assert netlink.xdp_query(index, ns) == before  # nothing changed
