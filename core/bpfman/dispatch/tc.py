"""The `tc` dispatcher: one program that runs a TC direction's chain.

``freplace`` mode, for kernels that load extension programs:
`tc_dispatcher.bpf.c` with its config (slot count, proceed-on masks,
priorities) in .rodata, and each program loaded once as an extension (pinned
at its link's pin path, sharing the maps of the program as loaded) and
attached to stub ``prog<N>`` of every new dispatcher revision. ``static``
mode splices the chain into one program (`bpfman.dispatch.static`). Either
way the result is pinned in a new revision directory and put on the
direction's cls_bpf direct-action filter named `DISPATCHER_NAME` at tc
priority `FILTER_PRIORITY` with one NLM_F_REPLACE (the old chain runs until
then; a failed build changes nothing). The clsact qdisc is reused if present
and created otherwise; filters the daemon did not create are never touched.
The last detach deletes the filter, and the clsact qdisc only if the daemon
created it and no filter is left on either direction.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from bpfman import kernel
from bpfman.context import HookContext
from bpfman.dispatch.freplace import build_dispatcher_object, ensure_extension
from bpfman.dispatch.revisions import Revisions
from bpfman.dispatch.semantics import MAX_SLOTS, TC, check_slot_count
from bpfman.dispatch.static import StaticSlot, pin_static_dispatcher
from bpfman.kernel.netns import NetNs
from bpfman.model.errors import AttachTargetNotFound, BpfmanError
from bpfman.model.records import AttachPoint, DispatcherRecord, LinkRecord

TYPE = "tc"
FILTER_PRIORITY = 50  # as upstream bpfman
DISPATCHER_NAME = "bpfman_tc_dispatcher"
CLSACT_MARK = "clsact_created"
SOURCE = Path(__file__).with_name("tc_dispatcher.bpf.c")
PROGRAM = "tc_dispatcher"
CONFIG = struct.Struct("<B3x10I10I")  # struct tc_dispatcher_config, 84 bytes


def config(masks: Sequence[int], priorities: Sequence[int]) -> bytes:
    n = len(masks)
    check_slot_count(n)
    pad = [0] * (MAX_SLOTS - n)
    return CONFIG.pack(n, *(m & 0xFFFFFFFF for m in masks), *pad, *priorities, *pad)


def dispatcher_object() -> Path:
    """The dispatcher object, compiled at first use (`build_dispatcher_object`)."""
    return build_dispatcher_object(SOURCE, feature="tc_dispatcher",
                                            what="TC dispatcher")


def load(ctx: HookContext, mode: str, ordered: list[LinkRecord], masks: Sequence[int],
         rev_dir: Path) -> tuple[int, Path]:
    """Load the chain `ordered` (proceed-on `masks`) as a dispatcher pinned in
    `rev_dir`, in `mode` ("freplace" or "static"); returns (program id, pin)."""
    if mode == "static":
        pin = rev_dir / "dispatcher"
        slots = [StaticSlot(
            program_pin=ctx.bpffs.program_pin(ln.program_id), object_path=ln.details["object_path"],
            program_name=ln.details["program_name"], proceed_on=mask,
            map_pin_dir=ln.details.get("map_pin_dir")) for ln, mask in zip(ordered, masks,
                                                                           strict=True)]
        return pin_static_dispatcher(slots, TC, name=PROGRAM, pin=pin), pin
    return _load_freplace(ctx, ordered, masks, rev_dir)


def _load_freplace(ctx: HookContext, ordered: list[LinkRecord], masks: Sequence[int],
                   rev_dir: Path) -> tuple[int, Path]:
    pin = rev_dir / "dispatcher"
    cfg = config(masks, [ln.params.get("priority", 0) for ln in ordered])
    program_id = kernel.load_dispatcher(dispatcher_object(), cfg, pin, program=PROGRAM)
    for i, ln in enumerate(ordered):
        ensure_extension(ctx, ln, pin, f"prog{i}", ln.details["object_path"])
        kernel.attach_extension(ln.pin_path, pin, f"prog{i}", rev_dir / f"link_{i}")
    return program_id, pin


@attrs.frozen
class Hook:
    """One TC hook: a direction of an interface in a network namespace
    (`netns` a path, None for the daemon's own; `netns_id` its inode, 0 for ours)."""

    iface: str
    direction: str
    netns: str | None = None
    netns_id: int = 0

    @classmethod
    def of(cls, iface: str, direction: str, netns: str | None) -> Hook:
        return cls(iface, direction, netns, NetNs(netns).inode() if netns else 0)

    @classmethod
    def from_attach_point(cls, attach_point: AttachPoint, *, find_netns: bool = True) -> Hook:
        """The hook of an attach point (key "IFACE/DIRECTION"), its namespace
        found again by inode (unless `find_netns` is false: only the pin
        directory is wanted); None as `netns` if that namespace is gone."""
        iface, _, direction = attach_point.key.rpartition("/")
        netns_id = attach_point.netns_id or 0
        netns = _netns_path(netns_id) if find_netns else None
        return cls(iface, direction, netns, netns_id)

    @property
    def ns(self) -> NetNs:
        return NetNs(self.netns)

    def directory(self, ctx: HookContext) -> Path:
        return ctx.bpffs.dispatcher_dir(f"tc-{self.direction}", self.netns_id, self.iface)

    def clsact_mark(self, ctx: HookContext) -> Path:
        """A directory whose existence says "the daemon created this clsact"."""
        return ctx.bpffs.dispatcher_dir("tc-clsact", self.netns_id, self.iface) / CLSACT_MARK

    def our_filter(self, ifindex: int) -> Any:
        for f in kernel.list_filters(ifindex, self.direction, netns=self.ns):
            if f.priority == FILTER_PRIORITY and f.kind == "bpf" and f.name == DISPATCHER_NAME:
                return f
        return None

    def free_handle(self, ifindex: int) -> int:
        used = {f.handle for f in kernel.list_filters(ifindex, self.direction, netns=self.ns)
                if f.priority == FILTER_PRIORITY}
        return next(h for h in range(1, len(used) + 2) if h not in used)

    def clsact_unused(self, ifindex: int) -> bool:
        try:
            return not any(kernel.list_filters(ifindex, d, netns=self.ns)
                           for d in ("ingress", "egress"))
        except Exception:
            return False

    def clsact_present(self, ifindex: int) -> bool:
        try:
            kinds = kernel.qdisc_kinds(ifindex, netns=self.ns)
        except Exception:
            return False
        return "clsact" in kinds.values()


def build(ctx: HookContext, attach_point: AttachPoint, ordered: list[LinkRecord], *,
          where: tuple[str, str, str | None] | None, mode: str,
          masks: Sequence[int]) -> DispatcherRecord | None:
    """Make the hook `where` (interface, direction, netns path) run `ordered`
    (proceed-on `masks`) through a `mode` dispatcher ("freplace" or
    "static"), or nothing when `ordered` is empty."""
    if not ordered or where is None:
        _remove(ctx, attach_point)
        return None
    check_slot_count(len(ordered), f"tc {attach_point}")
    try:
        hook = Hook.of(*where)  # a deleted namespace is found here too
        ifindex = kernel.interface_index(hook.iface, netns=hook.ns)
        directory = hook.directory(ctx)
    except AttachTargetNotFound:
        # The interface (or its namespace) is gone and took the dispatcher
        # with it; links that were on it can still be detached and unloaded.
        # Only its pin directory is wanted: no search for the namespace's path.
        gone = Hook.from_attach_point(attach_point, find_netns=False).directory(ctx)
        if not Revisions(gone).existing():
            raise
        return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=mode,
                                program_id=None, revision=0, pin_dir=str(gone))
    if kernel.ensure_clsact(ifindex, netns=hook.ns):
        ctx.undo.callback(kernel.remove_clsact, ifindex, netns=hook.ns)
        mark = hook.clsact_mark(ctx)
        mark.mkdir(parents=True, exist_ok=True)
        ctx.undo.callback(mark.rmdir)

    revisions = Revisions(directory)
    old = revisions.existing()
    revision, rev_dir = revisions.next()
    ctx.undo.callback(kernel.remove_pin_dir, rev_dir)
    program_id, pin = load(ctx, mode, ordered, masks, rev_dir)

    foreign = [f for f in kernel.list_filters(ifindex, hook.direction, netns=hook.ns)
               if f.name != DISPATCHER_NAME]
    if foreign:
        ctx.log.info("tc %s: left alone, filters not made by the daemon: %s", attach_point,
                     ", ".join(f"pref {f.priority} {f.kind} {f.name or ''}".strip()
                               for f in foreign))
    ours = hook.our_filter(ifindex)
    if ours is None:
        handle = hook.free_handle(ifindex)
        kernel.attach_bpf_filter(pin, ifindex, hook.direction, priority=FILTER_PRIORITY,
                                 handle=handle, name=DISPATCHER_NAME, netns=hook.ns)
        ctx.undo.callback(kernel.detach_filter, ifindex, hook.direction,
                          priority=FILTER_PRIORITY, handle=handle, netns=hook.ns)
    else:
        kernel.attach_bpf_filter(pin, ifindex, hook.direction, priority=FILTER_PRIORITY,
                                 handle=ours.handle, name=DISPATCHER_NAME, replace=True,
                                 netns=hook.ns)
        if old:
            previous = old[-1][1] / "dispatcher"
            ctx.undo.callback(kernel.attach_bpf_filter, previous, ifindex, hook.direction,
                              priority=FILTER_PRIORITY, handle=ours.handle,
                              name=DISPATCHER_NAME, replace=True, netns=hook.ns)
    # Keep the revision just replaced (an undo may need it); older ones go.
    for _rev, old_dir in old[:-1]:
        kernel.remove_pin_dir(old_dir)
    ctx.log.info("tc %s: %s dispatcher %d with %d program(s), revision %d", attach_point,
                 mode, program_id, len(ordered), revision)
    return DispatcherRecord(attach_point=attach_point, type=TYPE, mode=mode,
                            program_id=program_id, revision=revision, pin_dir=str(directory))


def filter_present(hook: Hook) -> bool:
    """Whether the hook's interface has our dispatcher filter (reconcile).

    :raises BpfmanError: the interface cannot be reached.
    """
    return hook.our_filter(kernel.interface_index(hook.iface, netns=hook.ns)) is not None


def _remove(ctx: HookContext, attach_point: AttachPoint) -> None:
    """The last link is gone: take our filter off and clean up. Only the
    attach point is left to go by."""
    hook = Hook.from_attach_point(attach_point)
    ifindex, ours = 0, None
    if hook.netns is not None or not hook.netns_id:  # a vanished netns took the filter
        try:
            ifindex = kernel.interface_index(hook.iface, netns=hook.ns)
            ours = hook.our_filter(ifindex)
        except BpfmanError:  # the interface is gone, and our filter with it
            ifindex, ours = 0, None
    if ours is not None:
        kernel.detach_filter(ifindex, hook.direction, priority=FILTER_PRIORITY,
                             handle=ours.handle, netns=hook.ns)
    mark = hook.clsact_mark(ctx)
    if ifindex and mark.is_dir() and hook.clsact_unused(ifindex):
        kernel.remove_clsact(ifindex, netns=hook.ns)
    if mark.is_dir() and not (ifindex and hook.clsact_present(ifindex)):
        mark.rmdir()
    kernel.remove_pin_dir(hook.directory(ctx))


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
