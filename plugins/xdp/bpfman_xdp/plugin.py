"""XDP programs: several per interface, ordered by priority, each with a
proceed-on set, in one of three modes chosen per interface.

Policy:
- ``priority`` 0..1000, default 50 (libxdp's default, what xdp-loader uses);
  lower runs first; equal priorities run in attach order (the core's
  ``seq``), never by name or id.
- ``proceed_on`` default ``[pass, dispatcher_return]``: after a program
  returns one of these the next one runs; otherwise its verdict is final.
  When every program proceeds the packet passes.
- At most 10 programs per interface; the 11th attach is a `Conflict`.
- Mode (``[plugins.config.xdp] dispatcher``, per interface under
  ``interfaces.NAME``): ``auto`` = libxdp where the kernel loads extension
  programs, static elsewhere; one program alone in static mode runs directly
  (single). ``single`` refuses a second program.
- XDP attach mode (``xdp_mode``): native, falling back to generic when the
  driver refuses native (``auto``), or forced.
- ``netns``: the interface is resolved and attached inside that namespace;
  the namespace's inode is recorded so that a namespace deleted (or replaced
  by another of the same name) is detected, reported and never touched.

Each link pins, at its own pin path, the program it runs (the EXT copy in
libxdp mode), so the link lives as long as its record.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import attrs

from bpfman import (
    AttachPoint,
    Conflict,
    DispatcherRecord,
    Drift,
    HookContext,
    KernelFeatureMissing,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)
from bpfman.dispatch import xdp as chain
from bpfman.kernel import NetNs
from bpfman_xdp.params import XdpConfig, XdpParams

TYPE = chain.TYPE


def choose_mode(cfg: XdpConfig, features: Any, iface: str, count: int) -> str:
    """The dispatcher mode for `count` programs on `iface` (see docs/xdp.md)."""
    want = cfg.dispatcher_for(iface)
    ext = bool(getattr(features, "ext_programs", False))
    if want == "single":
        if count > 1:
            raise Conflict(f"interface {iface} is configured for single mode: it runs one"
                           " XDP program; detach it first", iface=iface)
        return "single"
    if want == "auto":
        want = "libxdp" if ext else "static"
    if want == "libxdp" and not ext:
        note = getattr(features, "notes", {}).get("ext_programs", "not supported")
        raise KernelFeatureMissing("ext_programs", f"libxdp mode needs extension programs: {note}")
    if want == "static" and count == 1:
        return "single"
    return want


def _policy(ctx: HookContext, iface: str) -> chain.XdpPolicy:
    cfg = XdpConfig.parse(ctx.plugin_config)
    return chain.XdpPolicy(mode=functools.partial(choose_mode, cfg, ctx.features, iface),
                           attach_mode=cfg.xdp_mode_for(iface),
                           libxdp_bpffs=Path(cfg.libxdp_bpffs),
                           dispatcher_version=cfg.dispatcher_version)


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(name=TYPE, kernel_prog_type="xdp", params_type=XdpParams,
                     description="XDP on a network interface, chained by priority"
                                 " (libxdp / static / single dispatch)",
                     multiprog=True)]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: XdpParams) -> None:
    XdpConfig.parse(ctx.plugin_config)
    ns = NetNs.of(params.netns)
    ctx.kernel.interface_index(params.iface, netns=ns)


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: XdpParams) -> Reach:
    return Reach(network=True, netns=params.netns or None, interface=params.iface,
                 priority=params.priority)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: XdpParams) -> AttachPoint:
    netns_id = NetNs.of(params.netns).inode() if params.netns else None
    return AttachPoint(type=TYPE, key=chain.attach_point_key(params.iface, params.netns),
                       netns_id=netns_id)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: XdpParams) -> LinkRecord:
    ns = NetNs.of(params.netns)
    ifindex = ctx.kernel.interface_index(params.iface, netns=ns)
    pin = Path(link.pin_path)
    with ctx.kernel.open_pinned(program.pin_path, "prog") as fd:
        ctx.kernel.pin_fd(fd, pin)
    ctx.undo.callback(ctx.kernel.remove_pin, pin)
    details = {
        "iface": params.iface, "ifindex": ifindex, "netns": params.netns,
        "netns_id": ns.inode() if params.netns else None,
        "program_pin": str(pin), "object_path": program.path,
        "program_name": program.name, "map_pin_dir": program.map_pin_dir,
    }
    return attrs.evolve(link, details=details)


@hookimpl
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool:
    why = chain.Target.parse(link.attach_point).why_gone()
    if why:
        ctx.log.warning("xdp link %d: %s; the program was detached with it, removing the"
                        " record", link.link_id, why)
    pin = Path(link.pin_path)
    if ctx.kernel.remove_pin(pin) and ctx.kernel.pin_exists(program.pin_path):
        ctx.undo.callback(ctx.kernel.repin, Path(program.pin_path), pin)
    return True


@hookimpl
def bpfman_build_dispatcher(ctx: HookContext, attach_point: AttachPoint,
                            ordered: list[LinkRecord]) -> DispatcherRecord | None:
    if attach_point.type != TYPE:
        return None
    return chain.build(ctx, attach_point, ordered, functools.partial(_policy, ctx))


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str | None:
    if link.type != TYPE:
        return None
    p = link.params
    where = f" in {p['netns']}" if p.get("netns") else ""
    gone = chain.Target.parse(link.attach_point).why_gone()
    return (f"xdp {p.get('iface')}{where} priority {p.get('priority')}"
            f" proceed-on {','.join(p.get('proceed_on', []))}" + (f" ({gone})" if gone else ""))


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    drifts = []
    for link in links:
        if link.type != TYPE:
            continue
        why = chain.Target.parse(link.attach_point).why_gone()
        if why:
            drifts.append(Drift(f"xdp link {link.link_id}", why,
                                "kept; detach it to remove the record"))
    for attach_point in sorted({ln.attach_point for ln in links if ln.type == TYPE}):
        found = chain.drift(ctx, attach_point)
        if found is None:
            continue
        problem, fixable = found
        if fixable:
            drifts.append(Drift(f"xdp {attach_point}", problem, "rebuilt from the records",
                                rebuild=attach_point))
        else:
            drifts.append(Drift(f"xdp {attach_point}", problem,
                                "marked: not ours to replace; our chain resumes once the"
                                " interface runs nothing else and a link changes"))
    return drifts
