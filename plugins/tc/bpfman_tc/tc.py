"""The `tc` program type: sched_cls programs chained by a TC dispatcher on
a clsact qdisc (bpfman's semantics).

Policy. One dispatcher per (netns, interface, direction), attached as a
cls_bpf direct-action filter named `DISPATCHER_NAME` at tc priority
`FILTER_PRIORITY` (50, as upstream bpfman). It runs up to `MAX_SLOTS` (10)
programs, lower priority first (ties in attach order); after each one it
goes on only if the return code is in that program's ``proceed_on`` set
(default pipe + dispatcher_return), otherwise that code is the verdict.
When every program proceeded the verdict is TC_ACT_OK.

Where the kernel loads extension programs the dispatcher is
`tc_dispatcher.bpf.c` with each program attached to a stub as an extension
(mode "freplace", `bpfman.dispatch.tc`). Where it refuses them (lockdown) it is
`bpfman.dispatch`'s *static* one: each component relocated by libbpf with
its own maps and spliced behind a generated prologue, loaded as one program
(mode "static"; ``[plugins.config.tc] mode = "static"`` forces it). Every
change builds a new revision and puts it on the filter with one
NLM_F_REPLACE (the old chain runs until then; a failed build changes
nothing). The clsact qdisc is reused if present and created
otherwise; an `ingress` qdisc in its place is a Conflict. Filters the daemon
did not create are never touched. The last detach deletes the filter, and
the clsact qdisc only if the daemon created it and no filter is left on
either direction.
"""

from __future__ import annotations

import itertools
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
    dispatch,
    hookimpl,
)
from bpfman.dispatch import tc as tc_dispatcher
from bpfman.kernel import NetNs
from bpfman_tc.attachpoint import check_interface, hook_point, netns_of, reach
from bpfman_tc.params import TcParams

TYPE = "tc"
MAX_SLOTS = dispatch.MAX_SLOTS
FILTER_PRIORITY = 50
DISPATCHER_NAME = "bpfman_tc_dispatcher"
CLSACT_MARK = "clsact_created"


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(
        name=TYPE, kernel_prog_type="sched_cls", params_type=TcParams, multiprog=True,
        description="TC programs behind a per-interface dispatcher (cls_bpf on clsact),"
                    " with priority and proceed-on",
    )]


def _params(link: LinkRecord) -> TcParams:
    return TcParams(**link.params)


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord, params: TcParams) -> None:
    check_interface(ctx, params)
    dispatch.TC.mask(params.proceed_on)


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: TcParams) -> Reach:
    return reach(params)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: TcParams) -> AttachPoint:
    return hook_point(TYPE, params)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: TcParams) -> LinkRecord:
    # The dispatcher rebuild (bpfman_build_dispatcher) puts the program in
    # the chain; the link remembers what the rebuild needs to splice it.
    ifindex = ctx.kernel.interface_index(params.iface, netns=netns_of(params))
    # The link's own pin holds the program for as long as it is in a chain
    # (the daemon's reconcile keeps a link whose pin exists).
    pin = Path(link.pin_path)
    _pin_program(ctx, program, pin)
    ctx.undo.callback(ctx.kernel.remove_pin, pin)
    return attrs.evolve(link, details={
        "ifindex": ifindex, "object_path": program.path, "program_name": program.name,
        "map_pin_dir": program.map_pin_dir,
        "proceed_on": list(params.proceed_on or dispatch.TC.default_proceed_on),
    })


@hookimpl
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool:
    # The rebuild without this link takes it out of the chain.
    if ctx.kernel.remove_pin(link.pin_path):
        ctx.undo.callback(_pin_program, ctx, program, Path(link.pin_path))
    return True


def _pin_program(ctx: HookContext, program: ProgramRecord, pin: Path) -> None:
    with ctx.kernel.open_pinned(program.pin_path, "prog") as fd:
        ctx.kernel.pin_fd(fd, pin)


def _mask(link: LinkRecord) -> int:
    return dispatch.TC.mask(_params(link).proceed_on or dispatch.TC.default_proceed_on)


@hookimpl
def bpfman_build_dispatcher(ctx: HookContext, attach_point: AttachPoint,
                            ordered: list[LinkRecord]) -> DispatcherRecord | None:
    k = ctx.kernel
    if not ordered:
        return _remove(ctx, attach_point)
    dispatch.check_slot_count(len(ordered), f"tc {attach_point}")
    params = _params(ordered[0])
    ns = netns_of(params)
    try:
        ifindex = k.interface_index(params.iface, netns=ns)
        directory = _dispatcher_dir(ctx, params)
    except AttachTargetNotFound:
        # The interface (or its namespace) is gone and took the dispatcher
        # with it; links that were on it can still be detached and unloaded.
        gone = _gone_dir(ctx, attach_point)
        if not dispatch.Revisions(gone).existing():
            raise
        return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=_mode(ctx),
                                program_id=None, revision=0, pin_dir=str(gone))
    if k.ensure_clsact(ifindex, netns=ns):
        ctx.undo.callback(k.remove_clsact, ifindex, netns=ns)
        mark = _clsact_mark(ctx, params)
        mark.mkdir(parents=True, exist_ok=True)
        ctx.undo.callback(mark.rmdir)

    revisions = dispatch.Revisions(directory)
    old = revisions.existing()
    revision, rev_dir = revisions.next()
    ctx.undo.callback(k.remove_pin_dir, rev_dir)
    mode = _mode(ctx)
    program_id, pin = tc_dispatcher.load(ctx, mode, ordered, [_mask(ln) for ln in ordered],
                                         rev_dir)

    existing = k.list_filters(ifindex, params.direction, netns=ns)
    foreign = [f for f in existing if f.name != DISPATCHER_NAME]
    if foreign:
        ctx.log.info("tc %s: left alone, filters not made by the daemon: %s", attach_point,
                     ", ".join(f"pref {f.priority} {f.kind} {f.name or ''}".strip()
                               for f in foreign))
    ours = _our_filter(ctx, params, ifindex)
    if ours is None:
        handle = _free_handle(ctx, params, ifindex)
        k.attach_bpf_filter(pin, ifindex, params.direction, priority=FILTER_PRIORITY,
                            handle=handle, name=DISPATCHER_NAME, netns=ns)
        ctx.undo.callback(k.detach_filter, ifindex, params.direction,
                          priority=FILTER_PRIORITY, handle=handle, netns=ns)
    else:
        k.attach_bpf_filter(pin, ifindex, params.direction, priority=FILTER_PRIORITY,
                            handle=ours.handle, name=DISPATCHER_NAME, replace=True, netns=ns)
        if old:
            previous = old[-1][1] / "dispatcher"
            ctx.undo.callback(k.attach_bpf_filter, previous, ifindex, params.direction,
                              priority=FILTER_PRIORITY, handle=ours.handle,
                              name=DISPATCHER_NAME, replace=True, netns=ns)
    # Keep the revision just replaced (an undo may need it); older ones go.
    for _rev, old_dir in old[:-1]:
        k.remove_pin_dir(old_dir)
    ctx.log.info("tc %s: %s dispatcher %d with %d program(s), revision %d", attach_point,
                 mode, program_id, len(ordered), revision)
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=mode,
                            program_id=program_id, revision=revision, pin_dir=str(directory))


def _mode(ctx: HookContext) -> str:
    """freplace where the kernel loads extension programs, static otherwise;
    ``[plugins.config.tc] mode = "static"`` forces the static dispatcher."""
    wanted = ctx.plugin_config.get("mode", "auto")
    if wanted == "static" or not getattr(ctx.features, "ext_programs", False):
        return "static"
    return "freplace"


def _remove(ctx: HookContext, attach_point: AttachPoint) -> None:
    """The last link is gone: take our filter off and clean up. Only the
    attach point (key "IFACE/DIRECTION" in a namespace) is left to go by."""
    netns_id = attach_point.netns_id or 0
    iface, _, direction = attach_point.key.rpartition("/")
    netns = _netns_path(int(netns_id))
    params = TcParams(iface=iface, direction=direction, netns=netns)
    ns = netns_of(params)
    ifindex, ours = 0, None
    if netns is not None or not int(netns_id):  # a vanished netns took the filter along
        try:
            ifindex = ctx.kernel.interface_index(iface, netns=ns)
            ours = _our_filter(ctx, params, ifindex)
        except BpfmanError:  # the interface is gone, and our filter with it
            ifindex, ours = 0, None
    if ours is not None:
        ctx.kernel.detach_filter(ifindex, direction, priority=FILTER_PRIORITY,
                                 handle=ours.handle, netns=ns)
    mark = ctx.bpffs.dispatcher_dir("tc-clsact", int(netns_id), iface) / CLSACT_MARK
    if ifindex and mark.is_dir() and _clsact_unused(ctx, params, ifindex):
        ctx.kernel.remove_clsact(ifindex, netns=ns)
    if mark.is_dir() and not (ifindex and _clsact_present(ctx, params, ifindex)):
        mark.rmdir()
    ctx.kernel.remove_pin_dir(_gone_dir(ctx, attach_point))


def _gone_dir(ctx: HookContext, attach_point: AttachPoint) -> Path:
    """The dispatcher directory of `attach_point` without entering its netns."""
    iface, _, direction = attach_point.key.rpartition("/")
    return ctx.bpffs.dispatcher_dir(f"tc-{direction}", attach_point.netns_id or 0, iface)


def _netns_path(netns_id: int) -> str | None:
    """A path that opens the namespace with inode `netns_id` (0: ours)."""
    if not netns_id:
        return None
    # Named namespaces first: listing every process's namespace costs ~1 ms.
    candidates = itertools.chain(sorted(Path("/run/netns").glob("*")),
                                 Path("/proc").glob("[0-9]*/ns/net"))
    for path in candidates:
        try:
            if path.stat().st_ino == netns_id:
                return str(path)
        except OSError:
            continue
    return None  # the namespace is gone


def _netns_id(params: TcParams) -> int:
    return NetNs(params.netns).inode() if params.netns else 0


def _dispatcher_dir(ctx: HookContext, params: TcParams) -> Path:
    return ctx.bpffs.dispatcher_dir(f"tc-{params.direction}", _netns_id(params), params.iface)


def _clsact_mark(ctx: HookContext, params: TcParams) -> Path:
    """A directory whose existence says "the daemon created this clsact"."""
    return ctx.bpffs.dispatcher_dir("tc-clsact", _netns_id(params), params.iface) / CLSACT_MARK


def _our_filter(ctx: HookContext, params: TcParams, ifindex: int):  # type: ignore[no-untyped-def]
    for f in ctx.kernel.list_filters(ifindex, params.direction, netns=netns_of(params)):
        if f.priority == FILTER_PRIORITY and f.kind == "bpf" and f.name == DISPATCHER_NAME:
            return f
    return None


def _free_handle(ctx: HookContext, params: TcParams, ifindex: int) -> int:
    used = {f.handle for f in ctx.kernel.list_filters(ifindex, params.direction,
                                                      netns=netns_of(params))
            if f.priority == FILTER_PRIORITY}
    return next(h for h in range(1, len(used) + 2) if h not in used)


def _clsact_unused(ctx: HookContext, params: TcParams, ifindex: int) -> bool:
    ns = netns_of(params)
    try:
        return not any(ctx.kernel.list_filters(ifindex, d, netns=ns)
                       for d in ("ingress", "egress"))
    except Exception:
        return False


def _clsact_present(ctx: HookContext, params: TcParams, ifindex: int) -> bool:
    try:
        kinds = ctx.kernel.qdisc_kinds(ifindex, netns=netns_of(params))
    except Exception:
        return False
    return "clsact" in kinds.values()


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    p = link.params
    where = f" in {p['netns']}" if p.get("netns") else ""
    proceed = ",".join(p.get("proceed_on") or dispatch.TC.default_proceed_on)
    return (f"tc {p.get('iface')}{where} {p.get('direction')} priority {p.get('priority')}"
            f" proceed-on {proceed}")


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    """Report hooks whose dispatcher filter vanished behind our back (tc
    qdisc del, interface re-created); the next change to the hook rebuilds it."""
    drifts = []
    for point in sorted({ln.attach_point for ln in links}):
        params = _params(next(ln for ln in links if ln.attach_point == point))
        try:
            ifindex = ctx.kernel.interface_index(params.iface, netns=netns_of(params))
            present = _our_filter(ctx, params, ifindex) is not None
        except BpfmanError as exc:
            drifts.append(Drift(point, f"hook unreachable ({exc})", "links kept"))
            continue
        if not present:
            drifts.append(Drift(point, "dispatcher filter missing",
                                "links kept; the next attach, detach or update rebuilds it"))
    return drifts
