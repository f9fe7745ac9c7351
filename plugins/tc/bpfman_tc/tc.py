"""The `tc` program type: sched_cls programs chained by a TC dispatcher on
a clsact qdisc (bpfman's semantics).

Policy. One dispatcher per (netns, interface, direction) (the mechanism:
`bpfman.dispatch.tc`, a cls_bpf filter on clsact). It runs up to `MAX_SLOTS` (10)
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

from pathlib import Path

import attrs

from bpfman import (
    AttachPoint,
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
from bpfman_tc.attachpoint import check_interface, hook_point, netns_of, reach
from bpfman_tc.params import TcParams

TYPE = "tc"
MAX_SLOTS = dispatch.MAX_SLOTS


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
    params = _params(ordered[0]) if ordered else None
    where = (params.iface, params.direction, params.netns) if params else None
    return tc_dispatcher.build(ctx, attach_point, ordered, where=where, mode=_mode(ctx),
                               masks=[_mask(ln) for ln in ordered])


def _mode(ctx: HookContext) -> str:
    """freplace where the kernel loads extension programs, static otherwise;
    ``[plugins.config.tc] mode = "static"`` forces the static dispatcher."""
    wanted = ctx.plugin_config.get("mode", "auto")
    if wanted == "static" or not getattr(ctx.features, "ext_programs", False):
        return "static"
    return "freplace"


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
            present = tc_dispatcher.filter_present(
                tc_dispatcher.Hook.of(params.iface, params.direction, params.netns))
        except BpfmanError as exc:
            drifts.append(Drift(point, f"hook unreachable ({exc})", "links kept"))
            continue
        if not present:
            drifts.append(Drift(point, "dispatcher filter missing",
                                "links kept; the next attach, detach or update rebuilds it"))
    return drifts
