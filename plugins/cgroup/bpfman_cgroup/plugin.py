"""cgroup programs: ``cgroup_skb`` (ingress/egress), ``cgroup_sock``
(sock_create, sock_release, post_bind4/6) and ``cgroup_sock_addr`` (bind,
connect, sendmsg, recvmsg, getpeername, getsockname; 4 and 6) attached to a
cgroup v2 directory through cgroup bpf_links.

One type per kernel program type (the plugin contract names one per type);
they share the params, the policy and this module.

Policy. Several programs on one (cgroup, hook) run in ``priority`` order
(lower first, ties in attach order). The kernel offers that order itself
on Linux >= 6.17 (cgroup bpf_mprog: BPF_F_BEFORE/AFTER anchors and a
revision), so there is no dispatcher: a new link is placed right before the
first of our links that must run after it, else at the tail; programs other
tools attached keep their place. Before 6.17 the kernel only appends
(BPF_F_ALLOW_MULTI), which gives the same order when links are attached in
priority order; an attach that would need an anchor there fails naming the
missing feature. Every program runs (for cgroup_skb and cgroup_sock_addr a
packet/call is allowed only if all of them allow it). Links are pinned at the
link's pin path, so they survive a daemon restart; detach is synchronous
(BPF_LINK_DETACH). A link whose cgroup was removed is reported by reconcile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from bpfman import (
    AttachPoint,
    AttachTargetNotFound,
    BpfmanError,
    DispatcherRecord,
    Drift,
    HookContext,
    InvalidArgument,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)
from bpfman.kernel import CGROUP_HOOKS

KINDS = {
    "cgroup_skb": "cgroup_skb (ingress, egress): per-packet allow/drop of a cgroup's sockets",
    "cgroup_sock": "cgroup_sock (sock_create, sock_release, post_bind4/6)",
    "cgroup_sock_addr": "cgroup_sock_addr (bind, connect, sendmsg, recvmsg, getpeername,"
                        " getsockname; 4 and 6): inspect or rewrite socket addresses",
}
MODE = "cgroup-mprog"
#: per type, the hooks its programs attach to (what the CLI's completion offers)
HOOKS_BY_TYPE = {kind: [hook for hook, v in CGROUP_HOOKS.items() if v.program_type == kind]
                 for kind in KINDS}


def _absolute(_self: object, _attr: attrs.Attribute, value: str) -> None:
    if not value.startswith("/"):
        raise ValueError("cgroup must be the absolute path of a cgroup v2 directory")


@attrs.frozen
class CgroupParams:
    cgroup: str = attrs.field(validator=_absolute, metadata={
        "doc": "absolute path of a cgroup v2 directory, e.g. /sys/fs/cgroup/unified/app"})
    attach_type: str = attrs.field(metadata={
        "doc": "the cgroup hook: ingress, egress (cgroup_skb); sock_create, sock_release,"
               " post_bind4, post_bind6 (cgroup_sock); bind4, bind6, connect4, connect6,"
               " sendmsg4, sendmsg6, recvmsg4, recvmsg6, getpeername4, getpeername6,"
               " getsockname4, getsockname6 (cgroup_sock_addr)",
        "choices": HOOKS_BY_TYPE})
    priority: int = attrs.field(default=1000, validator=attrs.validators.and_(
        attrs.validators.ge(0), attrs.validators.le(1000)), metadata={
        "doc": "0..1000, lower runs first on the same cgroup and hook; ties in attach order"})


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(name=kind, kernel_prog_type=kind, params_type=CgroupParams,
                     required_features=("cgroup_programs",),
                     multiprog=True, description=f"{text}; ordered by priority")
            for kind, text in KINDS.items()]


def _params(link: LinkRecord) -> CgroupParams:
    return CgroupParams(**link.params)


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: CgroupParams) -> None:
    hook = ctx.kernel.CGROUP_HOOKS.get(params.attach_type)
    if hook is None or hook.program_type != program.type:
        allowed = [h for h, v in ctx.kernel.CGROUP_HOOKS.items()
                   if v.program_type == program.type]
        raise InvalidArgument(f"programs of type {program.type} attach to {', '.join(allowed)},"
                              f" not {params.attach_type!r}", field="attach_type")
    path = Path(params.cgroup)
    if not path.is_dir() or not (path / "cgroup.procs").exists():
        raise AttachTargetNotFound(f"no cgroup v2 directory at {params.cgroup}",
                                   cgroup=params.cgroup)
    with open("/proc/self/mounts") as mounts:
        v2 = [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]
    if not any(path.resolve().is_relative_to(m) for m in v2):
        raise InvalidArgument(f"{params.cgroup} is not on a cgroup v2 mount"
                              f" ({', '.join(v2) or 'none mounted'})", field="cgroup")


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: CgroupParams) -> Reach:
    return Reach(cgroups=(params.cgroup,), priority=params.priority)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: CgroupParams) -> AttachPoint:
    return AttachPoint(type=program.type,
                       key=f"{Path(params.cgroup).resolve()}/{params.attach_type}")


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: CgroupParams) -> LinkRecord:
    # The link is created by bpfman_build_dispatcher, which sees every link
    # of this hook and so knows where to place it.
    return attrs.evolve(link, details={"cgroup_id": ctx.kernel.cgroup_id(params.cgroup),
                                       "attach_type": params.attach_type})


@hookimpl
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool:
    _detach_restorably(ctx, Path(program.pin_path), link)
    return True


def _detach_restorably(ctx: HookContext, program_pin: Path, link: LinkRecord) -> None:
    """Detach `link` now; if the transaction fails it goes back where it was
    (before the link that followed it)."""
    params = _params(link)
    k = ctx.kernel
    anchor = None
    try:
        # BPF_PROG_QUERY on a cgroup lists program ids only (no link ids, even
        # on 6.18); a program is on a hook at most once, so its id names its
        # slot, and unlike a link id it survives that program being re-linked.
        prog_id = k.fd_link_info(link.pin_path).program_id
        ids = k.query_cgroup(params.cgroup, params.attach_type).program_ids()
        if prog_id in ids:
            following = ids[ids.index(prog_id) + 1:]
            anchor = k.Anchor.before(following[0]) if following else k.Anchor.append()
    except BpfmanError:  # the pin or the cgroup is gone: nothing to restore
        pass
    if k.detach_pinned_link(link.pin_path) and anchor is not None:
        ctx.undo.callback(k.attach_cgroup, program_pin, params.cgroup, params.attach_type,
                          link.pin_path, anchor)


@hookimpl
def bpfman_build_dispatcher(ctx: HookContext, attach_point: AttachPoint,
                            ordered: list[LinkRecord]) -> DispatcherRecord | None:
    """Make the cgroup hook run our links in `ordered` order."""
    if not ordered:
        return None
    params = _params(ordered[0])
    k = ctx.kernel
    try:
        target = k.cgroup_id(params.cgroup)
    except AttachTargetNotFound:
        if any(not k.pin_exists(ln.pin_path) for ln in ordered):
            raise
        # The cgroup was removed and took its links with it: nothing to
        # order; detach and unload still work.
        return DispatcherRecord(attach_point=attach_point, type=ordered[0].type, mode=MODE,
                                program_id=None, revision=0)
    # Which of our links are on this hook: asked of each link, because the
    # chain (BPF_PROG_QUERY) lists program ids only.
    placed: dict[int, int] = {}  # link_id -> kernel link id, for links on the hook
    program_of: dict[int, int] = {}  # link_id -> the program the link runs
    for ln in ordered:
        if k.pin_exists(ln.pin_path):
            info = k.fd_link_info(ln.pin_path)
            if not info.defunct and info.target == target:
                placed[ln.link_id] = info.kernel_link_id
                program_of[ln.link_id] = info.program_id
            else:  # pinned but off the hook (cgroup re-created): attach again
                k.remove_pin(ln.pin_path)
    # A link whose priority changed (link.update) may now be out of order:
    # keep the longest run of links already in the right relative order,
    # move the rest (each moved program misses the packets of that instant).
    ids = k.query_cgroup(params.cgroup, params.attach_type).program_ids()
    on_hook = [ln for ln in ordered
               if ln.link_id in placed and program_of[ln.link_id] in ids]
    keep = _in_order(on_hook, [ids.index(program_of[ln.link_id]) for ln in on_hook])
    for ln in on_hook:
        if ln.link_id not in keep:
            _detach_restorably(ctx, ctx.bpffs.program_pin(ln.program_id), ln)
            del placed[ln.link_id]
    for i, ln in enumerate(ordered):
        if ln.link_id in placed:
            continue
        following = next((placed[o.link_id] for o in ordered[i + 1:] if o.link_id in placed),
                         None)
        # Before the next of ours that is on the hook, else the tail.
        anchor = (k.Anchor.before_link(following) if following is not None
                  else k.Anchor.append())
        placed[ln.link_id] = k.attach_cgroup(ctx.bpffs.program_pin(ln.program_id),
                                             params.cgroup, params.attach_type, ln.pin_path,
                                             anchor)
        ctx.undo.callback(k.detach_pinned_link, ln.pin_path)
    revision = k.query_cgroup(params.cgroup, params.attach_type).revision
    return DispatcherRecord(attach_point=attach_point, type=ordered[0].type, mode=MODE,
                            program_id=None, revision=revision)


def _in_order(links: list[LinkRecord], positions: list[int]) -> set[int]:
    """Link ids of a longest subsequence of `links` whose kernel
    `positions` increase (O(n^2): a hook holds at most 64 programs)."""
    best: list[list[int]] = []  # best[i]: longest increasing run ending at i
    for i, pos in enumerate(positions):
        prev = max((best[j] for j in range(i) if positions[j] < pos), key=len, default=[])
        best.append([*prev, i])
    longest = max(best, key=len, default=[])
    return {links[i].link_id for i in longest}


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    p = link.params
    return f"cgroup {p.get('cgroup')} {p.get('attach_type')} priority {p.get('priority')}"


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    def defunct(ln: LinkRecord, info: Any) -> str | None:
        # The kernel releases a removed cgroup's links asynchronously, so
        # also compare the recorded cgroup id with what the path holds now.
        try:
            now = ctx.kernel.cgroup_id(ln.params["cgroup"])
        except AttachTargetNotFound:
            now = 0
        if info.defunct or now != ln.details.get("cgroup_id", info.target):
            return "cgroup link defunct (cgroup removed or re-created)"
        return None

    return ctx.link_drifts(links, "a cgroup", ctx.kernel.fd_link_info, defunct)
