"""The cgroup, sk_lookup and netfilter plugins' pure parts: params
validation (what the CLI and rpc.discover see), re-order planning, link
descriptions."""

from __future__ import annotations

import pytest

from bpfman.model.records import LinkRecord
from bpfman_cgroup import plugin as cgroup
from bpfman_netfilter import plugin as netfilter
from bpfman_sk_lookup import plugin as sk_lookup


def link(link_id: int, type_: str = "cgroup_skb", **params: object) -> LinkRecord:
    return LinkRecord(link_id=link_id, program_id=link_id, type=type_, params=dict(params),
                      attach_point="x", seq=link_id, pin_path=f"/fs/links/{link_id}")


@pytest.mark.parametrize(("positions", "kept"), [
    ([0, 1, 2], {1, 2, 3}),    # already in order: nothing moves
    ([2, 0, 1], {2, 3}),       # the first one jumped ahead: only it moves
    ([1, 2, 0], {1, 2}),       # the last one: only it moves
    ([2, 1, 0], None),         # reversed: all but one (any) move
    ([], set()),
])
def test_reorder_keeps_the_longest_in_order_run(positions: list[int],
                                                kept: set[int] | None) -> None:
    links = [link(i + 1) for i in range(len(positions))]
    result = cgroup._in_order(links, positions)
    if kept is None:
        assert len(result) == 1
    else:
        assert result == kept


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="absolute"):
        cgroup.CgroupParams(cgroup="app", attach_type="egress")
    with pytest.raises(ValueError):
        cgroup.CgroupParams(cgroup="/sys/fs/cgroup/unified/app", attach_type="egress",
                            priority=1001)
    with pytest.raises(ValueError):
        netfilter.NetfilterParams(family="arp", hook="input", priority=0)
    with pytest.raises(ValueError):
        netfilter.NetfilterParams(family="ipv4", hook="input", priority=2**31 - 1)
    with pytest.raises(ValueError, match="absolute"):
        sk_lookup.SkLookupParams(netns="web")
    assert sk_lookup.SkLookupParams().path == "/proc/self/ns/net"


def test_descriptions() -> None:
    assert cgroup.bpfman_describe_link(link(1, cgroup="/cg/a", attach_type="egress",
                                            priority=5)) == "cgroup /cg/a egress priority 5"
    assert netfilter.bpfman_describe_link(link(2, "netfilter", family="ipv4", hook="input",
                                               priority=-10, netns="/run/netns/x")) == (
        "netfilter ipv4 input priority -10 in /run/netns/x")
    assert sk_lookup.bpfman_describe_link(link(3, "sk_lookup", netns="")) == (
        "sk_lookup in (daemon netns)")
