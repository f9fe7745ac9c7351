"""TCX links (Linux 6.6+): the kernel's own multi-program chain per
interface and direction (bpf_mprog).

A link is created with bpf_link_create(BPF_TCX_INGRESS|EGRESS) at a
position given as an `Anchor` value (head, tail, before/after a program or
a link), guarded by the chain's `expected_revision`: when someone else
changed the chain between our query and our attach the kernel answers
ESTALE, and `attach_tcx` re-queries, recomputes the anchor and retries.
Links are pinned; a link lives as long as its pin, but `detach_tcx` detaches
it synchronously (BPF_LINK_DETACH) before unpinning, so the program is out
of the chain when the call returns.

Every call takes a `bpfman.kernel.netns.NetNs` (default: the daemon's): interface
indexes are per namespace, so the syscalls run inside it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

import attrs

from bpfman.kernel import pins
from bpfman.kernel._sys import bpfcmd
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import BpfLinkInfo
from bpfman.kernel.links import require_program_type
from bpfman.kernel.links.fd_target import (
    Anchor,
    Chain,
    attach_ordered,
    detach_pinned_link,
    query_attached,
)
from bpfman.kernel.netns import NetNs, host_netns
from bpfman.model.errors import AttachTargetNotFound, Conflict, InvalidArgument, StateDrift

Direction = Literal["ingress", "egress"]
PathLike = Path | str

_ATTACH_TYPE = {"ingress": bpfcmd.BPF_TCX_INGRESS, "egress": bpfcmd.BPF_TCX_EGRESS}
_DIRECTION = {v: k for k, v in _ATTACH_TYPE.items()}
MAX_STALE_RETRIES = 8


@attrs.frozen
class TcxEntry:
    """One slot of a TCX chain; `kernel_link_id` is 0 for a program attached
    without a link (BPF_PROG_ATTACH)."""

    program_id: int
    kernel_link_id: int


@attrs.frozen
class TcxChain:
    """The kernel's TCX chain on one hook, first to run first."""

    ifindex: int
    direction: str
    revision: int
    entries: tuple[TcxEntry, ...]

    def link_ids(self) -> list[int]:
        return [e.kernel_link_id for e in self.entries]

    def program_ids(self) -> list[int]:
        return [e.program_id for e in self.entries]


@attrs.frozen
class TcxLinkInfo:
    kernel_link_id: int
    program_id: int
    ifindex: int  # 0 once the device is gone (the link is defunct)
    direction: str | None


def _attach_type(direction: str) -> int:
    try:
        return _ATTACH_TYPE[direction]
    except KeyError:
        raise InvalidArgument(f"direction must be ingress or egress, not {direction!r}",
                              field="direction") from None


def _query(ifindex: int, attach_type: int) -> tuple[int, list[TcxEntry]]:
    """(revision, entries) of one hook; the caller is in the right netns."""
    nodev = {errno.ENODEV: lambda _e: AttachTargetNotFound(
        f"no interface with index {ifindex}", ifindex=ifindex)}
    revision, entries = query_attached(ifindex, attach_type, "bpf_prog_query(tcx)", nodev)
    return revision, [TcxEntry(e.program_id, e.kernel_link_id) for e in entries]


def query_tcx(ifindex: int, direction: str, *, netns: NetNs | None = None) -> TcxChain:
    """The TCX chain on `ifindex`/`direction`, with its revision."""
    attach_type = _attach_type(direction)
    with host_netns(netns).entered():
        revision, entries = _query(ifindex, attach_type)
    return TcxChain(ifindex, direction, revision, tuple(entries))


def attach_tcx(
    program_pin: PathLike,
    ifindex: int,
    direction: str,
    link_pin: PathLike,
    position: Anchor | Callable[[TcxChain], Anchor],
    *,
    netns: NetNs | None = None,
    retries: int = MAX_STALE_RETRIES,
) -> int:
    """Attach the sched_cls program pinned at `program_pin` to the TCX hook
    and pin the new link at `link_pin`.

    :param position: an `Anchor`, or a function that computes one from the
        chain as it is now; it is called again after every stale revision.
    :return: the kernel link id.
    :raises Conflict: the program is already on this hook (EEXIST), or the
        chain is full (ERANGE), or the chain kept changing under us.
    :raises AttachTargetNotFound: no such interface, or the anchor's
        program/link is not on the hook.
    """
    attach_type = _attach_type(direction)
    if ifindex < 1:
        raise InvalidArgument(f"invalid interface index {ifindex}", field="iface")
    with ExitStack() as fds:
        prog_fd = fds.enter_context(pins.open_pinned(program_pin, "prog"))
        require_program_type(prog_fd, ("sched_cls",), f"tcx {direction}")
        with host_netns(netns).entered():
            def on_error(exc: SysError, anchor: Anchor) -> None:
                _raise_attach_error(exc, ifindex, direction, anchor)

            def tcx_position(chain: Chain) -> Anchor:
                if not callable(position):
                    return position
                return position(TcxChain(ifindex, direction, chain.revision,
                                         tuple(TcxEntry(e.program_id, e.kernel_link_id)
                                               for e in chain.entries)))

            return attach_ordered(prog_fd, ifindex, attach_type, link_pin, tcx_position,
                                  target_name=f"ifindex {ifindex}", hook=f"tcx {direction}",
                                  op="bpf_link_create(tcx)", on_error=on_error,
                                  retries=retries)
    raise AssertionError("unreachable")


def _raise_attach_error(exc: SysError, ifindex: int, direction: str, anchor: Anchor) -> None:
    on = {
        errno.ENODEV: lambda _e: AttachTargetNotFound(
            f"no interface with index {ifindex}", ifindex=ifindex),
        errno.EEXIST: lambda _e: Conflict(
            f"the program is already attached to tcx {direction} on ifindex {ifindex}"
            " (load another copy to run it twice)", ifindex=ifindex),
        errno.ERANGE: lambda _e: Conflict(
            f"tcx {direction} chain on ifindex {ifindex}: chain full or {anchor} impossible",
            ifindex=ifindex),
        errno.ENOENT: lambda _e: AttachTargetNotFound(
            f"tcx anchor not on the hook: {anchor}", ifindex=ifindex),
    }
    with kernel_errors("bpf_link_create(tcx)", on, ifindex=ifindex, direction=direction):
        raise exc


def tcx_link_info(link_pin: PathLike) -> TcxLinkInfo:
    """What the TCX link pinned at `link_pin` is attached to."""
    with pins.open_pinned(link_pin, "link") as fd:
        return _link_info_of_fd(fd)


def _link_info_of_fd(fd: int) -> TcxLinkInfo:
    info = BpfLinkInfo()
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(link)")
    if info.type != bpfcmd.BPF_LINK_TYPE_TCX:
        raise InvalidArgument(f"link {info.id} is not a tcx link (type {info.type})",
                              field="link")
    raw = bytes(info.union)
    ifindex = int.from_bytes(raw[0:4], "little")
    attach_type = int.from_bytes(raw[4:8], "little")
    return TcxLinkInfo(int(info.id), int(info.prog_id), ifindex, _DIRECTION.get(attach_type))


def update_tcx_link(link_pin: PathLike, program_pin: PathLike) -> None:
    """Swap the program of a TCX link in place (BPF_LINK_UPDATE): the new
    program takes the old one's slot in one step."""
    with pins.open_pinned(link_pin, "link") as link_fd, \
            pins.open_pinned(program_pin, "prog") as prog_fd:
        require_program_type(prog_fd, ("sched_cls",), "a tcx link")
        attr = bpfcmd.LinkUpdateAttr(link_fd=link_fd, new_prog_fd=prog_fd)
        on = {
            errno.EEXIST: lambda _e: Conflict("the new program is already on this tcx hook"),
            errno.ENOLINK: lambda _e: StateDrift("the link's interface is gone",
                                                 pin=str(link_pin)),
        }
        with kernel_errors("bpf_link_update(tcx)", on, pin=str(link_pin)):
            bpfcmd.bpf(bpfcmd.BPF_LINK_UPDATE, attr, "bpf_link_update")


def detach_tcx(link_pin: PathLike) -> bool:
    """Detach the link pinned at `link_pin` now and remove the pin.

    Idempotent: a missing pin returns False; a link whose interface is
    already gone is just unpinned.
    """
    return detach_pinned_link(link_pin, "bpf_link_detach(tcx)")
