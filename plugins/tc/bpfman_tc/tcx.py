"""The `tcx` program type: sched_cls programs as kernel TCX links (6.6+).

Policy. No dispatcher: the kernel's bpf_mprog chain on (netns, interface,
direction) is the chain. The daemon orders its own links by priority (lower
first, ties in attach order) and places each one next to a neighbour of
its own (`Anchor.before_link`/`after_link`), checked against the chain's
revision, so programs other tools attached stay where they are. A new
link goes before the first of our links that must run after it, else
after the last of ours, else at the tail. Re-prioritizing (`link.update`)
moves only the links whose relative order changed: a moved link is detached
and attached again at its new place, so that one program misses the packets
in between (the kernel cannot hold a program twice on one hook); every other
program keeps running. Links are pinned at the link's pin path.

Return codes are the kernel's: only TCX_NEXT (-1) runs the next program;
TCX_PASS, TCX_DROP and TCX_REDIRECT end the chain; any other value ends it
without a verdict. TCX runs before cls_bpf filters (the `tc` type).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from bpfman import (
    AttachPoint,
    AttachTargetNotFound,
    BpfmanError,
    DispatcherRecord,
    Drift,
    HookContext,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)
from bpfman_tc.attachpoint import check_interface, hook_point, netns_of, reach
from bpfman_tc.params import TcxParams
from bpfman_tc.placement import plan

TYPE = "tcx"
MODE = "tcx"


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(
        name=TYPE, kernel_prog_type="sched_cls", params_type=TcxParams,
        required_features=("tcx",), multiprog=True,
        description="TC programs as kernel TCX links, ordered by priority (Linux >= 6.6)",
    )]


def _params(link: LinkRecord) -> TcxParams:
    return TcxParams(**link.params)


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord, params: TcxParams) -> None:
    check_interface(ctx, params)


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: TcxParams) -> Reach:
    return reach(params)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: TcxParams) -> AttachPoint:
    return hook_point(TYPE, params)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: TcxParams) -> LinkRecord:
    # The link is created by bpfman_build_dispatcher, which sees every link
    # of this hook and so knows the neighbours to place it between.
    ifindex = ctx.kernel.interface_index(params.iface, netns=netns_of(params))
    return attrs.evolve(link, details={"ifindex": ifindex, "direction": params.direction,
                                       "netns": params.netns})


@hookimpl
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool:
    params = _params(link)
    undo = _reattach_where_it_was(ctx, Path(program.pin_path), link, params)
    if ctx.kernel.detach_tcx(link.pin_path) and undo is not None:
        ctx.undo.callback(undo)
    return True


def _reattach_where_it_was(ctx: HookContext, program_pin: Path, link: LinkRecord,
                           params: TcxParams) -> Callable[[], None] | None:
    """A callable that puts `link` back before the program that follows it
    now (None when the link is not on its hook any more)."""
    try:
        ifindex = ctx.kernel.interface_index(params.iface, netns=netns_of(params))
        chain = ctx.kernel.query_tcx(ifindex, params.direction, netns=netns_of(params))
        kernel_id = ctx.kernel.link_id_of_pin(link.pin_path)
    except BpfmanError:  # the hook or the link is gone: nothing to restore
        return None
    ids = chain.link_ids()
    if kernel_id not in ids:
        return None
    # Anchor on the next program's id: unlike link ids, it survives that
    # program being moved (re-linked) by the same rebuild.
    following = chain.program_ids()[ids.index(kernel_id) + 1:]
    anchor = (ctx.kernel.TcxAnchor.before(following[0]) if following
              else ctx.kernel.TcxAnchor.tail())

    def reattach() -> None:
        ctx.kernel.attach_tcx(program_pin, ifindex, params.direction, link.pin_path,
                              anchor, netns=netns_of(params))

    return reattach


@hookimpl
def bpfman_update_link(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                       params: TcxParams) -> LinkRecord:
    # Nothing to do before the rebuild: it moves the link if its priority
    # changed and swaps its program in the same slot (`_swap_program`).
    return link


def _swap_program(ctx: HookContext, ln: LinkRecord, kernel_link_id: int) -> None:
    """link.update gave this link another program: swap it in the same slot
    (BPF_LINK_UPDATE), keeping the link and its position."""
    running = ctx.kernel.link_info(kernel_link_id).program_id
    if running == ln.program_id:
        return
    ctx.kernel.update_tcx_link(ln.pin_path, ctx.bpffs.program_pin(ln.program_id))
    ctx.undo.callback(ctx.kernel.update_tcx_link, ln.pin_path, ctx.bpffs.program_pin(running))


@hookimpl
def bpfman_build_dispatcher(ctx: HookContext, attach_point: AttachPoint,
                            ordered: list[LinkRecord]) -> DispatcherRecord | None:
    """Make the kernel chain hold our links in `ordered` order."""
    if not ordered:
        return None
    params = _params(ordered[0])
    k = ctx.kernel
    try:
        ifindex = k.interface_index(params.iface, netns=netns_of(params))
    except AttachTargetNotFound:
        if any(not k.pin_exists(ln.pin_path) for ln in ordered):
            raise
        # The interface (or its namespace) is gone and took the chain with
        # it: nothing to order; detach and unload still work.
        return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=MODE,
                                program_id=None, revision=0)
    chain = k.query_tcx(ifindex, params.direction, netns=netns_of(params))
    chain_ids = chain.link_ids()
    kernel_ids: dict[int, int] = {}
    for ln in ordered:
        if k.pin_exists(ln.pin_path):
            kid = k.link_id_of_pin(ln.pin_path)
            if kid in chain_ids:
                kernel_ids[ln.link_id] = kid
                _swap_program(ctx, ln, kid)
            else:  # pinned but no longer on the hook (interface re-created)
                k.remove_pin(ln.pin_path)
    positions = {lid: chain_ids.index(kid) for lid, kid in kernel_ids.items()}
    by_id = {ln.link_id: ln for ln in ordered}
    for step in plan([ln.link_id for ln in ordered], positions):
        ln = by_id[step.key]
        if step.move:
            _move_out(ctx, ln, ifindex, params)
        if step.where == "after":
            anchor = k.TcxAnchor.after_link(kernel_ids[step.neighbour])
        elif step.where == "before":
            anchor = k.TcxAnchor.before_link(kernel_ids[step.neighbour])
        else:
            anchor = k.TcxAnchor.tail()
        program_pin = ctx.bpffs.program_pin(ln.program_id)
        kernel_ids[ln.link_id] = k.attach_tcx(program_pin, ifindex, params.direction,
                                              ln.pin_path, anchor, netns=netns_of(params))
        ctx.undo.callback(k.detach_tcx, ln.pin_path)
    revision = k.query_tcx(ifindex, params.direction, netns=netns_of(params)).revision
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=MODE, program_id=None,
                            revision=revision)


def _move_out(ctx: HookContext, ln: LinkRecord, ifindex: int, params: TcxParams) -> None:
    """Detach a link that must move; if the rebuild fails, it goes back."""
    restore = _reattach_where_it_was(ctx, ctx.bpffs.program_pin(ln.program_id), ln, params)
    ctx.kernel.detach_tcx(ln.pin_path)
    if restore is not None:
        ctx.undo.callback(restore)


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    p = link.params
    where = f" in {p['netns']}" if p.get("netns") else ""
    return f"tcx {p.get('iface')}{where} {p.get('direction')} priority {p.get('priority')}"


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    return ctx.link_drifts(links, "a tcx", ctx.kernel.tcx_link_info, lambda _ln, info: (
        "tcx link defunct (interface gone)" if info.ifindex == 0 else None))
