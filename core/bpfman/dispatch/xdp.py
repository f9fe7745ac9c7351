"""Making the kernel run one interface's ordered XDP programs, in the mode
the XDP plugin's policy chooses (static, single or libxdp).

One attach point is one interface (by name) in one network namespace. Its
pins live in ``<bpffs>/dispatchers/xdp/<netns_id>_<iface>/rev_<n>/`` where
``attached`` pins the program the interface runs (a static dispatcher, or the
one program in single mode). Each rebuild makes revision n+1, swaps it in
with one netlink XDP_FLAGS_REPLACE conditional on revision n still being
attached, then removes revision n's pins; the undo stack keeps revision n's
program open so that a later failure in the same call swaps it back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs

from bpfman import kernel
from bpfman.context import HookContext
from bpfman.dispatch import libxdp
from bpfman.dispatch.revisions import Revisions
from bpfman.dispatch.semantics import XDP, check_slot_count
from bpfman.dispatch.static import StaticSlot, pin_static_dispatcher
from bpfman.kernel.netns import NetNs
from bpfman.model.errors import AttachTargetNotFound, Conflict
from bpfman.model.records import AttachPoint, DispatcherRecord, LinkRecord

TYPE = "xdp"
STATIC_NAME = "xdp_chain"  # never "xdp_dispatcher": libxdp would take it for its own


@attrs.frozen
class Target:
    """Where an attach point is: interface name, netns path and identity."""

    iface: str
    netns_path: str | None
    netns_id: int

    @classmethod
    def parse(cls, attach_point: AttachPoint | str) -> Target:
        """From the attach point (or its text, as link records keep it)."""
        if isinstance(attach_point, str):
            attach_point = AttachPoint.parse(attach_point)
        iface, _, netns = attach_point.key.partition("@")
        return cls(iface=iface, netns_path=netns or None,
                   netns_id=attach_point.netns_id or 0)

    @property
    def netns(self) -> NetNs:
        return NetNs(self.netns_path)

    def why_gone(self) -> str | None:
        """Why the recorded namespace is gone (deleted, or another one now has
        its path), or None while it is still there."""
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


@attrs.frozen
class XdpPolicy:
    """What the XDP plugin decided for one interface; this module carries it out.

    :param mode: the dispatcher mode ("static", "single", "libxdp") for a
        chain of n programs (may raise to refuse n).
    :param attach_mode: the XDP attach mode (auto, native, generic, offload).
    :param libxdp_bpffs: where libxdp keeps its pins (libxdp mode).
    :param dispatcher_version: libxdp dispatcher version for a new dispatcher.
    """

    mode: Callable[[int], str]
    attach_mode: str
    libxdp_bpffs: Path
    dispatcher_version: int


def _revisions(ctx: HookContext, target: Target) -> Revisions:
    # Interface names may hold '.', which pin paths must not (libbpf rewrites it).
    return Revisions(ctx.bpffs.dispatcher_dir(TYPE, target.netns_id,
                                              target.iface.replace(".", "%")))


def _gone(ctx: HookContext, policy: XdpPolicy, revs: Revisions, attach_point: AttachPoint,
          ordered: list[LinkRecord], why: str) -> DispatcherRecord | None:
    ctx.log.warning("xdp %s: %s; its programs were detached with it; removing the"
                    " dispatcher pins", attach_point, why)
    # A libxdp-mode dispatcher of ours also has pins where libxdp keeps them.
    ours = set()
    for _n, rev_dir in revs.existing():
        try:
            ours.add(ctx.kernel.program_id_of_pin(rev_dir / "attached"))
        except Exception as exc:
            ctx.log.warning("xdp: unreadable pin %s: %s", rev_dir / "attached", exc)
    xdp_dir = policy.libxdp_bpffs / "xdp"
    if ours and xdp_dir.is_dir():
        for entry in xdp_dir.glob("dispatch-*-*"):
            tail = entry.name.rsplit("-", 1)[-1]
            if tail.isdigit() and int(tail) in ours:
                ctx.kernel.remove_pin_dir(entry)
    ctx.kernel.remove_pin_dir(revs.root)
    if not ordered:
        return None
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode="gone",
                            program_id=None, revision=0, pin_dir=None)


def build(ctx: HookContext, attach_point: AttachPoint, ordered: list[LinkRecord],
          policy_for: Callable[[str], XdpPolicy]) -> DispatcherRecord | None:
    """Make the interface of `attach_point` run `ordered`, as the plugin's
    `policy_for(interface name)` says (the `bpfman_build_dispatcher` contract)."""
    target = Target.parse(attach_point)
    policy = policy_for(target.iface)
    revs = _revisions(ctx, target)
    root = revs.root
    why = target.why_gone()
    if why:
        return _gone(ctx, policy, revs, attach_point, ordered, why)
    try:
        ifindex = kernel.interface_index(target.iface, netns=target.netns)
    except AttachTargetNotFound:
        return _gone(ctx, policy, revs, attach_point, ordered,
                     f"interface {target.iface} no longer exists")
    check_slot_count(len(ordered), f"interface {target.iface}")
    mode = policy.mode(max(1, len(ordered)))
    if mode == "libxdp":
        return libxdp.build(ctx, attach_point, target.iface, target.netns, ifindex, revs,
                            ordered, libxdp_bpffs=policy.libxdp_bpffs,
                            dispatcher_version=policy.dispatcher_version,
                            attach_mode=policy.attach_mode)
    revisions = revs.existing()
    live = _live_pin(ctx, ifindex, target, revisions)

    if not ordered:
        if live is not None:
            swap = kernel.remove_xdp(ifindex, live, netns=target.netns)
            if swap is not None:
                ctx.undo.callback(swap.undo)
        ctx.kernel.remove_pin_dir(root)
        return None

    mode = policy.mode(len(ordered))
    rev, new_dir = revs.next()
    new_pin = new_dir / "attached"
    ctx.undo.callback(ctx.kernel.remove_pin_dir, new_dir)
    if mode == "single":
        with ctx.kernel.open_pinned(ordered[0].details["program_pin"], "prog") as fd:
            ctx.kernel.pin_fd(fd, new_pin)
        program_id = ctx.kernel.program_id_of_pin(new_pin)
    else:
        slots = [StaticSlot(
            program_pin=ln.details["program_pin"], object_path=ln.details["object_path"],
            program_name=ln.details["program_name"],
            proceed_on=XDP.mask(ln.params.get("proceed_on", [])),
            map_pin_dir=ln.details.get("map_pin_dir")) for ln in ordered]
        program_id = pin_static_dispatcher(slots, XDP, name=STATIC_NAME,
                                                    pin=new_pin)
    swap = kernel.swap_xdp(ifindex, new_pin, netns=target.netns, mode=policy.attach_mode,
                           expected_pin=live)
    ctx.undo.callback(swap.undo)
    for _n, old in revisions:
        ctx.kernel.remove_pin_dir(old)
    ctx.log.info("xdp %s: %s chain of %d program(s) attached (%s), program %d, revision %d",
                 attach_point, mode, len(ordered), swap.mode, program_id, rev)
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=mode,
                            program_id=program_id, revision=rev, pin_dir=str(new_dir),
                            attach_mode=swap.mode)


def drift(ctx: HookContext, attach_point: AttachPoint | str) -> tuple[str, bool] | None:
    """What differs between our static/single chain at `attach_point` and what
    the interface runs: (problem, whether rebuilding from the records fixes it).
    None when they agree (or the chain is libxdp's, which other tools share)."""
    target = Target.parse(attach_point)
    if target.why_gone():  # a deleted namespace is reported by the plugin itself
        return None
    revisions = _revisions(ctx, target).existing()
    if not revisions:
        return None
    try:
        ifindex = kernel.interface_index(target.iface, netns=target.netns)
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
    attached, _mode = kernel.attached_xdp_program(ifindex, target.netns)
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


__all__ = ["TYPE", "Target", "XdpPolicy", "attach_point_key", "build", "drift"]
