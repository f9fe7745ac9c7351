"""netfilter programs (BPF_PROG_TYPE_NETFILTER, Linux >= 6.4): attached at
a protocol family (ipv4, ipv6) and netfilter hook (prerouting, input,
forward, output, postrouting) with a netfilter priority, in a network
namespace. They return a verdict: NF_ACCEPT (1) or NF_DROP (0).

Policy. One netfilter bpf_link per attach, pinned at the link's pin path, so
it survives a daemon restart; detach is synchronous. Order is netfilter's
own: every hook function of a family/hook runs by priority, lower first
(conntrack defrag is -400, conntrack -200, the iptables filter table 0), so
``priority`` is the netfilter priority itself, and programs share a hook
with iptables/nftables in one well-defined order; equal priorities run in
registration order. ``defrag`` asks the kernel to reassemble IP fragments
before the program runs (loads nf_defrag).
"""

from __future__ import annotations

from pathlib import Path

import attrs

from bpfman import (
    AttachPoint,
    Drift,
    HookContext,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)
from bpfman.kernel import NetNs

TYPE = "netfilter"
FAMILIES = ("ipv4", "ipv6")
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")


def _absolute(_self: object, _attr: attrs.Attribute, value: str) -> None:
    if value and not value.startswith("/"):
        raise ValueError("netns must be an absolute path (/run/netns/NAME, /proc/PID/ns/net)")


@attrs.frozen
class NetfilterParams:
    family: str = attrs.field(validator=attrs.validators.in_(FAMILIES), metadata={
        "doc": "protocol family: ipv4 or ipv6"})
    hook: str = attrs.field(validator=attrs.validators.in_(HOOKS), metadata={
        "doc": "netfilter hook: prerouting, input, forward, output or postrouting"})
    priority: int = attrs.field(validator=attrs.validators.and_(
        attrs.validators.ge(-(2**31) + 1), attrs.validators.le(2**31 - 2)), metadata={
        "doc": "netfilter priority, lower runs first (iptables filter is 0, conntrack -200);"
               " INT_MIN and INT_MAX are reserved"})
    netns: str = attrs.field(default="", validator=_absolute, metadata={
        "doc": "network namespace (/run/netns/NAME or /proc/PID/ns/net); empty: the daemon's"})
    defrag: bool = attrs.field(default=False, metadata={
        "doc": "reassemble IP fragments before the program runs"})


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(name=TYPE, kernel_prog_type="netfilter", params_type=NetfilterParams,
                     required_features=("netfilter_programs",),
                     description="netfilter hooks (family, hook, netfilter priority;"
                                 " Linux >= 6.4, CONFIG_NETFILTER_BPF_LINK)")]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: NetfilterParams) -> None:
    NetNs.of(params.netns)


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: NetfilterParams) -> Reach:
    return Reach(network=True, netns=params.netns or None)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: NetfilterParams) -> AttachPoint:
    netns_id = NetNs.of(params.netns).inode() if params.netns else None
    return AttachPoint(type=TYPE, key=f"{params.family}/{params.hook}", netns_id=netns_id)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: NetfilterParams) -> LinkRecord:
    netns = NetNs.of(params.netns)
    kernel_link_id = ctx.kernel.attach_netfilter(
        Path(program.pin_path), params.family, params.hook, params.priority,
        Path(link.pin_path), defrag=params.defrag, netns=netns)
    ctx.undo.callback(ctx.kernel.detach_pinned_link, link.pin_path)
    netns_id = netns.inode() if params.netns else None
    return attrs.evolve(link, kernel_link_id=kernel_link_id,
                        details={"netns_id": netns_id})


@hookimpl
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool:
    p = NetfilterParams(**link.params)
    if ctx.kernel.detach_pinned_link(link.pin_path):
        # If the transaction fails, the same hook and priority is the same place.
        ctx.undo.callback(ctx.kernel.attach_netfilter, Path(program.pin_path), p.family,
                          p.hook, p.priority, Path(link.pin_path), defrag=p.defrag,
                          netns=NetNs(p.netns or None))
    return True


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    p = link.params
    where = f" in {p['netns']}" if p.get("netns") else ""
    return f"netfilter {p.get('family')} {p.get('hook')} priority {p.get('priority')}{where}"


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    def defunct(ln: LinkRecord, _info: object) -> str | None:
        recorded = ln.details.get("netns_id")
        if recorded is None:
            return None
        ns = NetNs(ln.params["netns"])
        if ns.exists() and ns.inode() == recorded:
            return None
        return "netfilter link's network namespace is gone"

    return ctx.link_drifts(links, "a netfilter", ctx.kernel.fd_link_info, defunct)
