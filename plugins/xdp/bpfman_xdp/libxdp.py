"""libxdp mode: the multi-prog protocol of libxdp/xdp-loader, so that both
see and change the same chain.

A rebuild, under libxdp's lock (flock on ``<libxdp bpffs>/xdp``):
1. read what the interface runs: nothing, or a libxdp dispatcher (any
   other program is refused: "unload it first", as libxdp does). Slots of
   the old dispatcher whose extension is not one of ours (``slot_<link>``
   pins of our revisions) belong to someone else (xdp-loader) and are kept
   with their priority and chain actions;
2. merge our links (priority, then attach order) with those, stable-sorted
   by priority; at most 10;
3. load the project's dispatcher (same version as the attached one, else
   the configured default, 2) with the config, pin it in our revision
   directory, attach every extension to its slot (``prog<N>``, or
   ``xdp_dispatcher`` itself when it is alone) with pins in
   ``dispatch-<ifindex>-<id>/prog<N>-{prog,link}``;
4. swap it in with netlink REPLACE conditional on the old dispatcher, then
   remove the old pins (held open until the call commits, for undo).
Each of our links is loaded once as an extension (pinned at the link's pin
path); rebuilds attach that same extension to the new dispatcher.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from bpfman import Conflict, dispatch
from bpfman.context import HookContext
from bpfman.kernel import libxdp as kx
from bpfman.kernel.links import xdp as xdp_links
from bpfman.model.records import DispatcherRecord, LinkRecord
from bpfman_xdp.params import XdpConfig

SOURCE = Path(__file__).with_name("xdp_dispatcher.bpf.c")
SUPPORTED_VERSIONS = (2, 3)


def dispatcher_object(version: int) -> Path:
    """Our dispatcher object for `version`, compiled at first use
    (`dispatch.build_dispatcher_object`)."""
    return dispatch.build_dispatcher_object(
        SOURCE, feature="libxdp_dispatcher", what="XDP dispatcher",
        defines={"DISPATCHER_VERSION": str(version)})


@attrs.frozen
class _Slot:
    priority: int
    actions: int  # proceed-on mask, bit 31 excluded
    ext_pin: Path  # where the extension program is pinned now
    link: LinkRecord | None = None  # ours; None for someone else's
    flags: int = 0


def build(ctx: HookContext, cfg: XdpConfig, attach_point: str, target: object, ifindex: int,
          ordered: list[LinkRecord]) -> DispatcherRecord | None:
    from bpfman_xdp.chain import Target, _device_dir, _revisions

    assert isinstance(target, Target)
    netns = target.netns
    ctx.kernel.ensure_bpffs(Path(cfg.libxdp_bpffs))
    xdp_dir = Path(cfg.libxdp_bpffs) / "xdp"
    root = _device_dir(ctx, target)
    revisions = _revisions(root)
    with kx.libxdp_lock(xdp_dir):
        attached, _mode = xdp_links.attached_program_id(ifindex, netns)
        ours = _our_extensions(ctx, revisions)
        version = cfg.dispatcher_version
        foreign: list[_Slot] = []
        old_dir = xdp_dir / f"dispatch-{ifindex}-{attached}"
        if attached:
            raw = kx.read_dispatcher_config(attached)
            if raw is None or not old_dir.is_dir():
                raise Conflict(f"interface {target.iface} runs XDP program {attached}, which"
                               " is not a libxdp dispatcher (or its pins are missing); unload"
                               " it first", iface=target.iface, attached=attached)
            try:
                conf = dispatch.LibxdpConfig.unpack(raw)
            except ValueError as exc:
                raise Conflict(f"interface {target.iface} runs a libxdp dispatcher of an"
                               f" older protocol (v1): unload it first ({exc})") from exc
            if conf.version not in SUPPORTED_VERSIONS:
                raise Conflict(f"libxdp dispatcher version {conf.version} on"
                               f" {target.iface} is not supported here")
            version = conf.version
            for i in range(conf.num_progs_enabled):
                pin = old_dir / f"prog{i}-prog"
                if ctx.kernel.program_id_of_pin(pin) in ours:
                    continue
                foreign.append(_Slot(conf.run_prios[i], conf.chain_call_actions[i], pin,
                                     flags=conf.program_flags[i]))
        mine = [_Slot(ln.params.get("priority", 50),
                      dispatch.XDP.mask(ln.params.get("proceed_on", [])), Path(ln.pin_path),
                      link=ln) for ln in ordered]
        slots = sorted(mine + foreign, key=lambda s: s.priority)
        dispatch.check_slot_count(len(slots), f"interface {target.iface}")
        if not slots:
            if attached:
                swap = xdp_links.remove_xdp(ifindex, netns=netns, expected_id=attached)
                if swap is not None:
                    ctx.undo.callback(swap.undo)
                _drop_old(ctx, old_dir)
            ctx.kernel.remove_pin_dir(root)
            return None

        rev = (revisions[-1][0] if revisions else 0) + 1
        new_rev = root / f"rev_{rev}"
        ctx.undo.callback(ctx.kernel.remove_pin_dir, new_rev)
        config = dispatch.LibxdpConfig(
            version=version, chain_call_actions=tuple(s.actions for s in slots),
            run_prios=tuple(s.priority for s in slots),
            program_flags=tuple(s.flags for s in slots))
        disp_pin = new_rev / "attached"
        program_id = kx.load_dispatcher(dispatcher_object(version), config.pack(), disp_pin)
        new_dir = xdp_dir / f"dispatch-{ifindex}-{program_id}"
        new_dir.mkdir(mode=0o700, exist_ok=True)
        ctx.undo.callback(ctx.kernel.remove_pin_dir, new_dir)
        for i, slot in enumerate(slots):
            func = "xdp_dispatcher" if len(slots) == 1 else f"prog{i}"
            ext_pin = slot.ext_pin
            if slot.link is not None:
                dispatch.ensure_extension(ctx, slot.link, disp_pin, func,
                                           slot.link.details["object_path"])
                with ctx.kernel.open_pinned(ext_pin, "prog") as fd:
                    ctx.kernel.pin_fd(fd, new_rev / f"slot_{slot.link.link_id}")
            with ctx.kernel.open_pinned(ext_pin, "prog") as fd:
                ctx.kernel.pin_fd(fd, new_dir / f"prog{i}-prog")
            kx.attach_extension(ext_pin, disp_pin, func, new_dir / f"prog{i}-link")
        swap = xdp_links.swap_xdp(ifindex, disp_pin, netns=netns,
                                  mode=cfg.xdp_mode_for(target.iface),
                                  expected_id=attached or None)
        ctx.undo.callback(swap.undo)
        if attached:
            _drop_old(ctx, old_dir)
        for _n, old in revisions:
            ctx.kernel.remove_pin_dir(old)
    ctx.log.info("xdp %s: libxdp v%d dispatcher %d with %d program(s) (%d not ours),"
                 " revision %d", attach_point, version, program_id, len(slots), len(foreign),
                 rev)
    return DispatcherRecord(attach_point=attach_point, type="xdp", mode="libxdp",
                            program_id=program_id, revision=rev, pin_dir=str(new_dir))


def _our_extensions(ctx: HookContext, revisions: list[tuple[int, Path]]) -> set[int]:
    ids = set()
    for _n, rev_dir in revisions:
        for pin in rev_dir.glob("slot_*"):
            try:
                ids.add(ctx.kernel.program_id_of_pin(pin))
            except Exception as exc:
                ctx.log.warning("xdp: unreadable pin %s: %s", pin, exc)
    return ids


def _drop_old(ctx: HookContext, old_dir: Path) -> None:
    """Remove the old dispatcher's pins (its freplace links go with them),
    keeping them restorable until the call commits."""
    held = kx.HeldPins(old_dir)
    ctx.kernel.remove_pin_dir(old_dir)
    ctx.undo.callback(held.restore)
