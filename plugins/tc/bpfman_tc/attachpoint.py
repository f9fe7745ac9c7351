"""Where a tc or tcx link attaches: one interface and direction, in one
network namespace (shared by both types)."""

from __future__ import annotations

from bpfman import AttachPoint, HookContext, Reach
from bpfman.kernel import NetNs
from bpfman_tc.params import TcParams, TcxParams


def hook_point(kind: str, params: TcParams | TcxParams) -> AttachPoint:
    """The attach point of a tc or tcx link: one interface and direction
    (in one network namespace)."""
    netns_id = NetNs.of(params.netns).inode() if params.netns else None
    return AttachPoint(type=kind, key=f"{params.iface}/{params.direction}", netns_id=netns_id)


def check_interface(ctx: HookContext, params: TcParams | TcxParams) -> None:
    """The interface exists (in its netns): AttachTargetNotFound otherwise."""
    ctx.kernel.interface_index(params.iface, netns=NetNs.of(params.netns))


def netns_of(params: TcParams | TcxParams) -> NetNs:
    return NetNs(params.netns)


def reach(params: TcParams | TcxParams) -> Reach:
    """What a tc or tcx link reaches, for the grant check."""
    return Reach(network=True, netns=params.netns or None, interface=params.iface,
                 priority=params.priority)
