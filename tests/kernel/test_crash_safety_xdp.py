"""Crash safety with a real dispatcher: XDP chains on a veth (static mode here).

The daemon is SIGKILLed between a dispatcher swap and its commit; after the
restart the kernel must run exactly the chain the records describe, and a
dropping program keeps dropping while the daemon is dead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from xdp_support import attach, dispatchers, load

from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, VethPair, running_daemon


def chain(d: DaemonProcess) -> list[int]:
    """Program ids the recorded dispatcher runs, in order."""
    [disp] = dispatchers(d)
    links = {ln["link_id"]: ln for ln in d.client().call("link.list", {})}
    return [links[link_id]["program_id"] for link_id in disp["links"]]




def test_dropper_keeps_dropping_while_the_daemon_is_dead(
    veth: VethPair, bpf_program: Callable[..., Path]
) -> None:
    with running_daemon() as d:
        dropper = load(d, bpf_program("xdp_verdict"), "xdp_dropper")
        attach(d, dropper, veth, priority=10)
        assert veth.ping(5) == 0
        assert d.proc is not None
        d.proc.kill()
        d.proc.wait(10)
        d.proc = None
        assert veth.ping(5) == 0  # still filtered with nobody managing it
        d.start()
        [link] = d.client().call("link.list", {})
        assert link["program_id"] == dropper["program_id"]
        assert veth.ping(5) == 0
        d.client().call("program.detach", {"link_id": link["link_id"]})
        assert veth.ping(5) == 5


@pytest.mark.parametrize("point", ["attach.after_kernel", "attach.before_commit",
                                   "detach.after_kernel"])
def test_kill_mid_dispatcher_change(point: str, veth: VethPair,
                                    bpf_program: Callable[..., Path]) -> None:
    verdict = bpf_program("xdp_verdict")
    counter_obj = bpf_program("xdp_counter")
    with running_daemon() as d:
        passer = load(d, verdict, "xdp_pass_only")
        counter = load(d, counter_obj, "xdp_counter")
        attach(d, passer, veth, priority=10, proceed_on=["pass"])
        counter_link = attach(d, counter, veth, priority=20)
        before = chain(d)
        assert before == [passer["program_id"], counter["program_id"]]
        d.stop()
        d.start(env={"BPFMAN_FAULT": point})
        if point.startswith("attach"):
            third = load(d, verdict, "xdp_pass_only")
            request = ("program.attach", {"program_id": third["program_id"], "params": {
                "iface": veth.if_b, "netns": veth.netns_b, "priority": 30}})
        else:
            request = ("program.detach", {"link_id": counter_link["link_id"]})
        with pytest.raises((RpcError, OSError)):
            d.client().call(*request)
        assert d.proc is not None and d.proc.wait(10) == -9
        d.proc = None
        assert veth.ping(3) == 3  # the data path never stopped

        d.start()
        expected = before if point.startswith("attach") else [passer["program_id"]]
        assert chain(d) == expected
        # The kernel runs the recorded dispatcher, not the one swapped in
        # before the crash.
        [disp] = dispatchers(d)
        assert veth.xdp_program_id() == disp["program_id"]
        links = d.client().call("link.list", {})
        assert {str(p) for p in (d.bpffs / "links").iterdir()} == {ln["pin_path"]
                                                                  for ln in links}
        assert veth.ping(3) == 3
