"""sk_lookup programs: attached to a network namespace, they run when the
kernel looks up the socket for a new connection (TCP) or packet (UDP) and
may hand it to a socket of their choice (bpf_sk_assign), typically one
listening socket for a whole port range.

Policy. One netns bpf_link per attach, pinned at the link's pin path, so it
survives a daemon restart; detach is synchronous. Several programs on one
namespace all run, in attach order (the kernel offers no other order); the
first to assign a socket wins. The sockets come from the application: it
puts its own socket's fd into a SOCKMAP/SOCKHASH of the program (open the
map pinned under the program's map directory and update it with the fd; an
fd means nothing to another process, so the daemon's `map.update` cannot do
this for it). A link whose namespace is gone is reported by reconcile.
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

TYPE = "sk_lookup"
SELF = "/proc/self/ns/net"  # opened by the daemon: the daemon's namespace


def _absolute(_self: object, _attr: attrs.Attribute, value: str) -> None:
    if value and not value.startswith("/"):
        raise ValueError("netns must be an absolute path (/run/netns/NAME, /proc/PID/ns/net)")


@attrs.frozen
class SkLookupParams:
    netns: str = attrs.field(default="", validator=_absolute, metadata={
        "doc": "network namespace to attach to (/run/netns/NAME or /proc/PID/ns/net);"
               " empty: the daemon's own"})

    @property
    def path(self) -> str:
        return self.netns or SELF


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(name=TYPE, kernel_prog_type="sk_lookup", params_type=SkLookupParams,
                     required_features=("sk_lookup",),
                     description="socket lookup in a network namespace (netns bpf_link;"
                                 " programs run in attach order)")]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: SkLookupParams) -> None:
    NetNs.of(params.netns)  # refuses a path that is not a live namespace


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: SkLookupParams) -> Reach:
    return Reach(network=True, netns=params.netns or None)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: SkLookupParams) -> AttachPoint:
    netns_id = NetNs.of(params.netns).inode() if params.netns else None
    return AttachPoint(type=TYPE, key="netns", netns_id=netns_id)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: SkLookupParams) -> LinkRecord:
    kernel_link_id = ctx.kernel.attach_netns(Path(program.pin_path), params.path,
                                             Path(link.pin_path))
    ctx.undo.callback(ctx.kernel.detach_pinned_link, link.pin_path)
    netns_id = ctx.kernel.fd_link_info(link.pin_path).target
    return attrs.evolve(link, kernel_link_id=kernel_link_id,
                        details={"netns": params.netns, "netns_id": netns_id})


@hookimpl
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool:
    params = SkLookupParams(**link.params)
    if ctx.kernel.detach_pinned_link(link.pin_path):
        # If the transaction fails the link comes back, at the end of the
        # namespace's list (the kernel only appends).
        ctx.undo.callback(ctx.kernel.attach_netns, Path(program.pin_path), params.path,
                          Path(link.pin_path))
    return True


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    return f"sk_lookup in {link.params.get('netns') or '(daemon netns)'}"


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    return ctx.link_drifts(links, "a netns", ctx.kernel.fd_link_info, lambda _ln, info: (
        "sk_lookup link defunct (network namespace gone)" if info.defunct else None))
