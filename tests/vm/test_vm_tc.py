"""The `tc` type's freplace dispatcher, inside Debian's 6.12 kernel (extension
programs load there; the host kernel refuses them and gets the static
dispatcher, tests/kernel/test_tc.py). Same programs and checks: real packets
on a veth pair in namespaces the test creates, counts and run order read
from the programs' maps, `tc filter show` against `dispatcher.list`.

One daemon serves the module (`module_daemon`, tests/vm/conftest.py): under
qemu's software emulation it takes about a minute to start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tc_support import NEXT, OK, PIPE, SHOT, Chain, attach, filters

from bpfman import kernel
from bpfman.testing import DaemonProcess, VethPair, veth_pair


@pytest.fixture
def veth() -> Iterator[VethPair]:
    with veth_pair("vmtc") as pair:
        yield pair


@pytest.fixture
def chain(module_daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> Chain:
    return Chain(module_daemon, bpf_program("tc_chain"), "tc")






def test_freplace_dispatcher_chain(chain: Chain, veth: VethPair) -> None:
    chain.load(1, PIPE)
    chain.load(2, SHOT)
    chain.load(3, OK)
    counter = attach(chain, veth, 1, 10)
    dropper = attach(chain, veth, 2, 20)
    passer = attach(chain, veth, 3, 30)
    [d] = chain.dispatchers()
    assert d["mode"] == "freplace"
    assert d["links"] == [counter["link_id"], dropper["link_id"], passer["link_id"]]
    [f] = filters(veth)
    assert (f["pref"], f["options"]["prog"]["id"]) == (50, d["program_id"])
    # Each link's pin now holds its program's extension form.
    for link in (counter, dropper, passer):
        info = kernel.program_info(kernel.program_id_of_pin(link["pin_path"]))
        assert info.kernel_type == "ext"

    assert veth.ping(1) == 0
    assert chain.trace() == [1, 2]
    chain.reset_trace()
    chain.client.call("link.update", {"link_id": passer["link_id"], "params": {"priority": 15}})
    [d2] = chain.dispatchers()
    assert d2["mode"] == "freplace" and d2["revision"] == d["revision"] + 1
    assert filters(veth)[0]["options"]["handle"] == f["options"]["handle"]
    assert veth.ping(2) == 2
    assert chain.trace()[:2] == [1, 3]
    chain.reset_trace()
    chain.client.call("link.update", {"link_id": passer["link_id"],
                                      "params": {"proceed_on": ["ok"]}})
    assert veth.ping(1) == 0
    assert chain.trace() == [1, 3, 2]
    assert chain.counts()[1] >= 4

    for link in (counter, dropper, passer):
        chain.client.call("program.detach", {"link_id": link["link_id"]})
    assert chain.dispatchers() == [] and filters(veth) == []
    assert veth.ping(1) == 1


def test_freplace_egress_and_tcx_first(chain: Chain, veth: VethPair,
                                       module_daemon: DaemonProcess) -> None:
    """Egress through the freplace dispatcher; a TCX program on the same
    hook runs before it (TCX runs before cls_bpf filters)."""
    chain.load(1, PIPE)
    chain.load(2, SHOT)
    attach(chain, veth, 1, 1, "egress")
    attach(chain, veth, 2, 2, "egress")
    assert veth.ping(2) == 0
    tcx = Chain(module_daemon, chain.obj, "tcx")
    tcx.owner, tcx.map_dir = chain.owner, chain.map_dir
    tcx.load(9, NEXT)
    tcx.attach(9, iface=veth.if_b, direction="egress", netns=veth.netns_b)
    chain.reset_trace()
    veth.ping(1)
    assert chain.trace() == [9, 1, 2]
