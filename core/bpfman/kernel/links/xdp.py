"""XDP attachments through netlink, by pin (no raw fds leave this module).

`swap_xdp` puts the program pinned at `new_pin` on an interface in one
atomic step: if `expected_pin` is given, only if the program pinned there is
still the one attached (XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD), else only
if nothing is attached. It returns an `XdpSwap` that keeps the previous
program open, so that its `undo()` can put it back even after its pins were
removed; the fds close when the swap object is dropped (CPython frees it as
soon as the undo stack that holds it is discarded).
"""

from __future__ import annotations

import os
from pathlib import Path

from bpfman.kernel import netlink, pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import kernel_errors
from bpfman.kernel.links import require_program_type
from bpfman.kernel.netns import NetNs
from bpfman.model.errors import Conflict

_HERE = NetNs()  # the daemon's own namespace


class _Fd:
    """An owned fd, closed when the object is freed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def of_pin(cls, pin: Path | str) -> _Fd:
        with kernel_errors("bpf_obj_get", pin=str(pin)):
            return cls(libbpf.bpf_obj_get(os.fsencode(pin)))

    @classmethod
    def of_id(cls, program_id: int) -> _Fd:
        with kernel_errors("bpf_prog_get_fd_by_id", program_id=program_id):
            return cls(libbpf.bpf_prog_get_fd_by_id(program_id))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


class XdpSwap:
    """The result of `swap_xdp`/`remove_xdp`: which mode is in use and how
    to go back."""

    def __init__(self, ifindex: int, netns: NetNs, mode: str, old: _Fd | None,
                 new: _Fd | None) -> None:
        self.ifindex, self.netns, self.mode = ifindex, netns, mode
        self._old, self._new = old, new

    def undo(self) -> None:
        """Put the previous program back (or remove the new one if there was
        none), only if the new one is still attached."""
        expected = self._new.fd if self._new else None
        if self._old is None:
            netlink.xdp_detach(self.ifindex, netns=self.netns, mode=self.mode,
                               expected_fd=expected)
        else:
            netlink.xdp_attach(self.ifindex, self._old.fd, netns=self.netns, mode=self.mode,
                               expected_fd=expected)

    def close(self) -> None:
        for f in (self._old, self._new):
            if f is not None:
                f.close()


def swap_xdp(ifindex: int, new_pin: Path | str, *, netns: NetNs = _HERE, mode: str = "auto",
             expected_pin: Path | str | None = None,
             expected_id: int | None = None) -> XdpSwap:
    """Attach the XDP program pinned at `new_pin` (see module doc).

    :param mode: "auto" (native, else generic), "native", "generic", "offload";
        a replace keeps the mode of the program it replaces.
    :param expected_id: alternative to `expected_pin`: the expected program's id.
    :raises Conflict: something other than the expected program is attached.
    """
    new = _Fd.of_pin(new_pin)
    require_program_type(new.fd, ("xdp",), f"interface {ifindex}")
    old = None
    if expected_pin is not None:
        old = _Fd.of_pin(expected_pin)
    elif expected_id:
        old = _Fd.of_id(expected_id)
    if old is not None:
        state = netlink.xdp_query(ifindex, netns)
        old_id = pins.program_id_of_fd(old.fd)
        if state.program_id != old_id or state.mode not in netlink.XDP_MODES:
            raise Conflict(f"interface {ifindex} in {netns} runs XDP program"
                           f" {state.program_id or 'none'}, not {old_id} as recorded:"
                           " changed outside the daemon", ifindex=ifindex,
                           attached=state.program_id, expected=old_id)
        mode = state.mode
    used = netlink.xdp_attach(ifindex, new.fd, netns=netns, mode=mode,
                              expected_fd=old.fd if old else None)
    return XdpSwap(ifindex, netns, used, old, new)


def remove_xdp(ifindex: int, expected_pin: Path | str | None = None, *, netns: NetNs = _HERE,
               expected_id: int | None = None) -> XdpSwap | None:
    """Detach the program pinned at `expected_pin` (or with id `expected_id`)
    from the interface if it is still the one attached. Returns None when it
    was not attached (gone with its interface, or replaced outside the
    daemon): nothing to do."""
    old = _Fd.of_pin(expected_pin) if expected_pin is not None else _Fd.of_id(expected_id or 0)
    state = netlink.xdp_query(ifindex, netns)
    if state.program_id != pins.program_id_of_fd(old.fd) or state.mode is None:
        return None
    netlink.xdp_detach(ifindex, netns=netns, mode=state.mode, expected_fd=old.fd)
    # undo: re-attach `old` in its mode where nothing is attached.
    return XdpSwap(ifindex, netns, state.mode, old, None)


def attached_xdp_program(ifindex: int, netns: NetNs = _HERE) -> tuple[int, str | None]:
    """(program id, mode) of what is attached at the interface (0, None if nothing)."""
    state = netlink.xdp_query(ifindex, netns)
    return state.program_id, state.mode
