"""Making the kernel run one interface's ordered XDP programs.

One attach point is one interface (by name) in one network namespace. Its
pins live in ``<bpffs>/dispatchers/xdp/<netns_id>_<iface>/rev_<n>/`` where
``attached`` pins the program the interface runs (a static dispatcher, or the
one program in single mode). Each rebuild makes revision n+1, swaps it in
with one netlink XDP_FLAGS_REPLACE conditional on revision n still being
attached, then removes revision n's pins; the undo stack keeps revision n's
program open so that a later failure in the same call swaps it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from bpfman import AttachTargetNotFound, Conflict, KernelFeatureMissing, dispatch
from bpfman.context import HookContext
from bpfman.kernel import netlink
from bpfman.kernel.links import xdp as xdp_links
from bpfman.kernel.netns import NetNs
from bpfman.model.records import DispatcherRecord, LinkRecord
from bpfman_xdp.params import XdpConfig

TYPE = "xdp"
STATIC_NAME = "xdp_chain"  # never "xdp_dispatcher": libxdp would take it for its own


@attrs.frozen
class Target:
    """Where an attach point is: interface name, netns path and identity."""

    iface: str
    netns_path: str | None
    netns_id: int

    @classmethod
    def parse(cls, attach_point: str) -> Target:
        _type, netns_id, key = attach_point.split(":", 2)
        iface, _, netns = key.partition("@")
        return cls(iface=iface, netns_path=netns or None, netns_id=int(netns_id))

    @property
    def netns(self) -> NetNs:
        return NetNs(self.netns_path)

    def alive(self) -> str | None:
        """None if the namespace is still the one recorded, else why not."""
        if self.netns_path is None:
            return None
        ns = self.netns
        if not ns.exists():
            return f"network namespace {self.netns_path} was deleted"
        if ns.inode() != self.netns_id:
            return f"{self.netns_path} is now another network namespace"
        return None


def attach_point_key(iface: str, netns: str | None) -> str:
    return f"{iface}@{netns}" if netns else iface


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


def _revisions(root: Path) -> list[tuple[int, Path]]:
    out = []
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith("rev_") and entry.name[4:].isdigit():
                out.append((int(entry.name[4:]), entry))
    return sorted(out)


def _device_dir(ctx: HookContext, target: Target) -> Path:
    # Interface names may hold '.', which pin paths must not (libbpf rewrites it).
    return ctx.bpffs.dispatcher_dir(TYPE, target.netns_id, target.iface.replace(".", "%"))


def _gone(ctx: HookContext, cfg: XdpConfig, target: Target, root: Path, attach_point: str,
          ordered: list[LinkRecord], why: str) -> DispatcherRecord | None:
    ctx.log.warning("xdp %s: %s; its programs were detached with it; removing the"
                    " dispatcher pins", attach_point, why)
    # A libxdp-mode dispatcher of ours also has pins where libxdp keeps them.
    ours = set()
    for _n, rev_dir in _revisions(root):
        try:
            ours.add(ctx.kernel.program_id_of_pin(rev_dir / "attached"))
        except Exception as exc:
            ctx.log.warning("xdp: unreadable pin %s: %s", rev_dir / "attached", exc)
    xdp_dir = Path(cfg.libxdp_bpffs) / "xdp"
    if ours and xdp_dir.is_dir():
        for entry in xdp_dir.glob("dispatch-*-*"):
            tail = entry.name.rsplit("-", 1)[-1]
            if tail.isdigit() and int(tail) in ours:
                ctx.kernel.remove_pin_dir(entry)
    ctx.kernel.remove_pin_dir(root)
    if not ordered:
        return None
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode="gone",
                            program_id=None, revision=0, pin_dir=None)


def build(ctx: HookContext, attach_point: str, ordered: list[LinkRecord]) -> (
    DispatcherRecord | None
):
    cfg = XdpConfig.parse(ctx.plugin_config)
    target = Target.parse(attach_point)
    root = _device_dir(ctx, target)
    why = target.alive()
    if why:
        return _gone(ctx, cfg, target, root, attach_point, ordered, why)
    try:
        ifindex = netlink.ifindex(target.iface, target.netns)
    except AttachTargetNotFound:
        return _gone(ctx, cfg, target, root, attach_point, ordered,
                     f"interface {target.iface} no longer exists")
    dispatch.check_slot_count(len(ordered), f"interface {target.iface}")
    mode = choose_mode(cfg, ctx.features, target.iface, max(1, len(ordered)))
    if mode == "libxdp":
        from bpfman_xdp import libxdp

        return libxdp.build(ctx, cfg, attach_point, target, ifindex, ordered)
    revisions = _revisions(root)
    live = _live_pin(ctx, ifindex, target, revisions)

    if not ordered:
        if live is not None:
            swap = xdp_links.remove_xdp(ifindex, live, netns=target.netns)
            if swap is not None:
                ctx.undo.callback(swap.undo)
        ctx.kernel.remove_pin_dir(root)
        return None

    mode = choose_mode(cfg, ctx.features, target.iface, len(ordered))
    rev = (revisions[-1][0] if revisions else 0) + 1
    new_dir = root / f"rev_{rev}"
    new_pin = new_dir / "attached"
    ctx.undo.callback(ctx.kernel.remove_pin_dir, new_dir)
    if mode == "single":
        with ctx.kernel.open_pinned(ordered[0].details["program_pin"], "prog") as fd:
            ctx.kernel.pin_fd(fd, new_pin)
        program_id = ctx.kernel.program_id_of_pin(new_pin)
    else:
        slots = [dispatch.StaticSlot(
            program_pin=ln.details["program_pin"], object_path=ln.details["object_path"],
            program_name=ln.details["program_name"],
            proceed_on=dispatch.XDP.mask(ln.params.get("proceed_on", [])),
            map_pin_dir=ln.details.get("map_pin_dir")) for ln in ordered]
        program_id = dispatch.pin_static_dispatcher(slots, dispatch.XDP, name=STATIC_NAME,
                                                    pin=new_pin)
    swap = xdp_links.swap_xdp(ifindex, new_pin, netns=target.netns,
                              mode=cfg.xdp_mode_for(target.iface), expected_pin=live)
    ctx.undo.callback(swap.undo)
    for _n, old in revisions:
        ctx.kernel.remove_pin_dir(old)
    ctx.log.info("xdp %s: %s chain of %d program(s) attached (%s), program %d, revision %d",
                 attach_point, mode, len(ordered), swap.mode, program_id, rev)
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=mode,
                            program_id=program_id, revision=rev, pin_dir=str(new_dir))


def drift(ctx: HookContext, attach_point: str) -> tuple[str, bool] | None:
    """What differs between our static/single chain at `attach_point` and what
    the interface runs: (problem, whether rebuilding from the records fixes it).
    None when they agree (or the chain is libxdp's, which other tools share)."""
    target = Target.parse(attach_point)
    if target.alive():  # a deleted namespace is reported by the plugin itself
        return None
    revisions = _revisions(_device_dir(ctx, target))
    if not revisions:
        return None
    try:
        ifindex = netlink.ifindex(target.iface, target.netns)
        live = _live_pin(ctx, ifindex, target, revisions)
    except AttachTargetNotFound:
        return f"interface {target.iface} no longer exists", False
    except Conflict as exc:
        return exc.message, False
    if live is None:
        return "our dispatcher was detached outside the daemon", True
    return None


def _live_pin(ctx: HookContext, ifindex: int, target: Target,
              revisions: list[tuple[int, Path]]) -> Path | None:
    """The pin of our program that the interface runs now, or None if it
    runs nothing. Something else attached is a Conflict (not ours to replace)."""
    attached, _mode = xdp_links.attached_program_id(ifindex, target.netns)
    for _n, rev_dir in reversed(revisions):
        pin = rev_dir / "attached"
        try:
            if ctx.kernel.program_id_of_pin(pin) == attached and attached:
                return pin
        except Exception as exc:  # a broken pin is not ours to keep
            ctx.log.warning("xdp: unreadable dispatcher pin %s: %s", pin, exc)
    if attached:
        raise Conflict(f"interface {target.iface} in {target.netns} runs XDP program"
                       f" {attached}, which this daemon did not attach; detach it first"
                       " (e.g. xdp-loader unload / ip link set dev IFACE xdp off)",
                       iface=target.iface, attached=attached)
    if revisions:
        ctx.log.warning("xdp %s: our dispatcher is no longer attached (removed outside"
                        " the daemon); attaching afresh", target.iface)
    return None


__all__ = ["TYPE", "Target", "attach_point_key", "build", "choose_mode"]
