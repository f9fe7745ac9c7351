"""Traffic control through netlink (`bpfman.kernel.rtnl`, pyroute2's `tcmsg`
as the codec): the clsact qdisc and cls_bpf direct-action filters.

Interface indexes, qdiscs and filters all belong to a network namespace.
Every function takes a `bpfman.kernel.netns.NetNs` (default: the daemon's own);
the calling thread enters it for the duration of the call only (the
daemon's kernel lane is a worker thread, so this never moves the trio
thread).
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import attrs
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from bpfman.kernel import pins, rtnl
from bpfman.kernel.links import require_program_type
from bpfman.kernel.netns import NetNs, host_netns
from bpfman.kernel.rtnl import NetlinkError
from bpfman.model.errors import AttachTargetNotFound, Conflict, InvalidArgument

# linux/pkt_sched.h: the clsact qdisc and its two filter parents.
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
TC_H_MIN_INGRESS = 0xFFF2
TC_H_MIN_EGRESS = 0xFFF3
_PARENT = {"ingress": CLSACT_HANDLE | TC_H_MIN_INGRESS, "egress": CLSACT_HANDLE | TC_H_MIN_EGRESS}
ETH_P_ALL = 0x0003
TCA_BPF_FLAG_ACT_DIRECT = 1


@attrs.frozen
class TcFilter:
    """One classifier on a clsact direction, as `tc filter show` lists it."""

    direction: str
    priority: int
    handle: int
    kind: str  # "bpf", "u32", "flower", ...
    protocol: int
    name: str | None = None  # cls_bpf: the name given at attach
    direct_action: bool = False


def _parent(direction: str) -> int:
    try:
        return _PARENT[direction]
    except KeyError:
        raise InvalidArgument(f"direction must be ingress or egress, not {direction!r}",
                              field="direction") from None


def _tcmsg(ifindex: int, *, handle: int = 0, parent: int = 0, info: int = 0,
           attrs_: list[tuple[str, Any]] | None = None) -> tcmsg:
    msg = tcmsg()
    msg["index"] = ifindex
    msg["handle"] = handle
    msg["parent"] = parent
    msg["info"] = info
    msg["attrs"] = attrs_ or []
    return msg


def _filter_info(priority: int) -> int:
    # tcm_info: priority in the high half, protocol (network order) in the low.
    return (priority << 16) | socket.htons(ETH_P_ALL)


def _clsact(ifindex: int) -> tcmsg:
    return _tcmsg(ifindex, handle=CLSACT_HANDLE, parent=TC_H_CLSACT,
                  attrs_=[("TCA_KIND", "clsact")])


def qdisc_kinds(ifindex: int, *, netns: NetNs | None = None) -> dict[int, str]:
    """parent handle -> kind of the qdiscs on the interface's ingress side
    (clsact and ingress both sit at parent TC_H_CLSACT = TC_H_INGRESS)."""
    with rtnl.connect(host_netns(netns)) as rt:
        try:
            qdiscs = rt.request(_tcmsg(ifindex), rtnl.RTM_GETQDISC, rtnl.DUMP)
        except NetlinkError as exc:
            raise rtnl.kernel_error("tc qdisc show", exc, ifindex=ifindex) from exc
    return {int(q["parent"]): str(q.get_attr("TCA_KIND")) for q in qdiscs
            if q["index"] == ifindex}


def ensure_clsact(ifindex: int, *, netns: NetNs | None = None) -> bool:
    """Make sure the interface has a clsact qdisc.

    :return: True when this call created it (the caller owns it), False when
        one was there already.
    :raises Conflict: an `ingress` qdisc holds the slot clsact needs.
    """
    present = qdisc_kinds(ifindex, netns=netns).get(TC_H_CLSACT)
    if present == "clsact":
        return False
    if present is not None:
        raise Conflict(f"interface {ifindex} has an {present!r} qdisc where clsact must go;"
                       " remove it (tc qdisc del dev IFACE ingress) or use the tcx type",
                       ifindex=ifindex, qdisc=present)
    with rtnl.connect(host_netns(netns)) as rt:
        try:
            rt.request(_clsact(ifindex), rtnl.RTM_NEWQDISC, rtnl.CREATE)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:  # someone was faster: theirs, not ours
                return False
            raise rtnl.kernel_error("tc qdisc add clsact", exc, ifindex=ifindex) from exc
    return True


def remove_clsact(ifindex: int, *, netns: NetNs | None = None) -> bool:
    """Delete the interface's clsact qdisc (and every filter on it).
    Returns False when there was none (or the interface is gone)."""
    with rtnl.connect(host_netns(netns)) as rt:
        try:
            rt.request(_clsact(ifindex), rtnl.RTM_DELQDISC, rtnl.ACKED)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                return False
            raise rtnl.kernel_error("tc qdisc del clsact", exc, ifindex=ifindex) from exc
    return True


def list_filters(ifindex: int, direction: str, *,
                 netns: NetNs | None = None) -> list[TcFilter]:
    """The filters on a clsact direction, in run order (priority ascending).
    An interface without clsact has none."""
    parent = _parent(direction)
    with rtnl.connect(host_netns(netns)) as rt:
        try:
            msgs = rt.request(_tcmsg(ifindex, parent=parent), rtnl.RTM_GETTFILTER, rtnl.DUMP)
        except NetlinkError as exc:
            if exc.code in (errno.EINVAL, errno.ENOENT):
                return []
            raise rtnl.kernel_error("tc filter show", exc, ifindex=ifindex) from exc
    out = []
    for m in msgs:
        if m["index"] != ifindex or not m["handle"]:
            continue  # the per-priority header entry has handle 0
        options = m.get_attr("TCA_OPTIONS")
        name = options.get_attr("TCA_BPF_NAME") if options is not None else None
        flags = options.get_attr("TCA_BPF_FLAGS") if options is not None else None
        info = int(m["info"])
        out.append(TcFilter(direction=direction, priority=info >> 16, handle=int(m["handle"]),
                            kind=str(m.get_attr("TCA_KIND")),
                            protocol=int.from_bytes((info & 0xFFFF).to_bytes(2, "little"),
                                                    "big"),
                            name=name, direct_action=bool((flags or 0) & TCA_BPF_FLAG_ACT_DIRECT)))
    return sorted(out, key=lambda f: (f.priority, f.handle))


def attach_bpf_filter(program_pin: Path | str, ifindex: int, direction: str, *, priority: int,
                      handle: int, name: str, replace: bool = False,
                      netns: NetNs | None = None) -> None:
    """Attach the sched_cls program pinned at `program_pin` as a cls_bpf
    direct-action filter (protocol all) at `priority`/`handle`.

    With `replace`, the filter at that priority and handle must exist and
    gets the new program in one step (NLM_F_REPLACE: packets see the old
    program or the new one, never neither). Without it, an existing filter
    there is a `Conflict` (NLM_F_EXCL).
    """
    parent = _parent(direction)
    if not 1 <= priority <= 0xFFFF or not 1 <= handle <= 0xFFFFFFFF:
        raise InvalidArgument("tc priority must be 1..65535 and handle 1..2^32-1",
                              field="priority")
    with pins.open_pinned(program_pin, "prog") as fd:
        require_program_type(fd, ("sched_cls",), f"tc {direction}")
        msg = _tcmsg(ifindex, handle=handle, parent=parent, info=_filter_info(priority),
                     attrs_=[("TCA_KIND", "bpf"), ("TCA_OPTIONS", {"attrs": [
                         ("TCA_BPF_FD", fd), ("TCA_BPF_NAME", name),
                         ("TCA_BPF_FLAGS", TCA_BPF_FLAG_ACT_DIRECT)]})])
        with rtnl.connect(host_netns(netns)) as rt:
            try:
                rt.request(msg, rtnl.RTM_NEWTFILTER, rtnl.REPLACE if replace else rtnl.CREATE)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise Conflict(f"a tc filter already exists at {direction} priority"
                                   f" {priority} handle {handle:#x}", ifindex=ifindex) from exc
                if exc.code == errno.ENODEV:
                    raise AttachTargetNotFound(f"no interface with index {ifindex}",
                                               ifindex=ifindex) from exc
                raise rtnl.kernel_error("tc filter replace" if replace else "tc filter add", exc,
                                     ifindex=ifindex, priority=priority) from exc


def detach_filter(ifindex: int, direction: str, *, priority: int, handle: int, kind: str = "bpf",
                  netns: NetNs | None = None) -> bool:
    """Delete one filter; False when it (or the interface, or clsact) is gone."""
    msg = _tcmsg(ifindex, handle=handle, parent=_parent(direction),
                 info=_filter_info(priority), attrs_=[("TCA_KIND", kind)])
    with rtnl.connect(host_netns(netns)) as rt:
        try:
            rt.request(msg, rtnl.RTM_DELTFILTER, rtnl.ACKED)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                return False
            raise rtnl.kernel_error("tc filter del", exc, ifindex=ifindex) from exc
    return True


__all__ = [
    "TcFilter",
    "attach_bpf_filter",
    "detach_filter",
    "ensure_clsact",
    "host_netns",
    "list_filters",
    "qdisc_kinds",
    "remove_clsact",
]
