"""Netlink (`bpfman.kernel.rtnl`): interfaces by name inside a netns, and XDP
programs attached through IFLA_XDP, the way libxdp and `ip link` do it.

An XDP attachment made here is not a bpf_link: it is owned by the interface
and survives the daemon. Replacing one is atomic and conditional:
``XDP_FLAGS_REPLACE`` with ``IFLA_XDP_EXPECTED_FD`` makes the kernel swap
only if the expected program is still the one attached (otherwise EEXIST,
reported as `Conflict`). A first attach uses ``XDP_FLAGS_UPDATE_IF_NOEXIST``.
"""

from __future__ import annotations

import errno
import struct
import sys

import attrs
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from bpfman.kernel import rtnl
from bpfman.kernel.netns import NetNs, host_netns
from bpfman.kernel.rtnl import NetlinkError
from bpfman.model.errors import AttachTargetNotFound, Conflict, InvalidArgument, KernelError

_HERE = NetNs()  # the daemon's own namespace

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

#: our name for each XDP mode -> its attach flag
XDP_MODES = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE,
             "offload": XDP_FLAGS_HW_MODE}
# linux/if_link.h: IFLA_XDP_ATTACHED values, and the IFLA_XDP attributes read
_ATTACHED = {1: "native", 2: "generic", 3: "offload", 4: "multi"}
IFLA_XDP = 43
IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID = 2, 4
IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID, IFLA_XDP_HW_PROG_ID = 5, 6, 7
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_NLMSGHDR_SIZE = 16


def _get_link(rt: rtnl.Rtnl, *, index: int = 0,
              name: str | None = None) -> tuple[int, dict[int, bytes]]:
    """RTM_GETLINK of one interface, by index or by name (ENODEV if none):
    its index and its IFLA_XDP attributes."""
    msg = ifinfmsg()
    msg["index"] = index
    if name is not None:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    [reply] = rt.request_raw(msg, rtnl.RTM_GETLINK)
    found = _IFINFOMSG.unpack_from(reply, _NLMSGHDR_SIZE)[2]
    top = rtnl.attributes(reply, _NLMSGHDR_SIZE + _IFINFOMSG.size)
    return found, rtnl.attributes(top.get(IFLA_XDP, b""), 0)


def interface_index(name: str, *, netns: NetNs | None = None) -> int:
    """The ifindex of interface `name` in `netns` (None: the daemon's own).

    :raises AttachTargetNotFound: no such interface there.
    """
    if not name or len(name) > 15 or "/" in name:
        raise InvalidArgument(f"invalid interface name {name!r}", field="iface")
    netns = host_netns(netns)
    with rtnl.connect(netns) as rt:
        try:
            return _get_link(rt, name=name)[0]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise AttachTargetNotFound(f"no interface {name!r} in {netns}", iface=name,
                                           netns=str(netns)) from exc
            raise rtnl.kernel_error("RTM_GETLINK", exc, iface=name) from exc


@attrs.frozen
class XdpState:
    """What is attached to an interface's XDP hook (kernel ids, 0 = none)."""

    ifindex: int
    mode: str | None  # "native", "generic", "offload", "multi" or None
    program_id: int  # the one program when a single mode is in use
    native_id: int = 0
    generic_id: int = 0
    offload_id: int = 0

    def id_in(self, mode: str) -> int:
        return {"native": self.native_id, "generic": self.generic_id,
                "offload": self.offload_id}.get(mode, 0)


def xdp_query(index: int, netns: NetNs = _HERE) -> XdpState:
    """What is attached at interface `index` in `netns`.

    :raises AttachTargetNotFound: the interface is gone.
    """
    with rtnl.connect(netns) as rt:
        try:
            _, xdp = _get_link(rt, index=index)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise AttachTargetNotFound(f"no interface with index {index} in {netns}",
                                           ifindex=index) from exc
            raise rtnl.kernel_error("RTM_GETLINK", exc, ifindex=index) from exc
    def u32(kind: int) -> int:
        value = xdp.get(kind, b"")
        return int.from_bytes(value[:4], sys.byteorder) if len(value) >= 4 else 0

    attached = xdp.get(IFLA_XDP_ATTACHED, b"")
    mode = _ATTACHED.get(attached[0]) if attached else None
    state = XdpState(
        ifindex=index, mode=mode, program_id=u32(IFLA_XDP_PROG_ID),
        native_id=u32(IFLA_XDP_DRV_PROG_ID), generic_id=u32(IFLA_XDP_SKB_PROG_ID),
        offload_id=u32(IFLA_XDP_HW_PROG_ID),
    )
    if mode in XDP_MODES and not state.id_in(mode):
        # Older kernels report only IFLA_XDP_PROG_ID for a single mode.
        state = attrs.evolve(state, **{f"{mode}_id": state.program_id})
    return state


def _set_xdp(rt: rtnl.Rtnl, index: int, fd: int, flags: int, expected_fd: int | None) -> None:
    nested: list[tuple[str, int]] = [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]
    if expected_fd is not None:
        nested.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_XDP", {"attrs": nested})]
    rt.request(msg, rtnl.RTM_SETLINK, rtnl.ACKED)


def xdp_attach(index: int, prog_fd: int, *, netns: NetNs = _HERE, mode: str = "auto",
               expected_fd: int | None = None) -> str:
    """Attach (or atomically replace) the XDP program at interface `index`.

    :param mode: "native", "generic", "offload", or "auto" (native, and
        generic when the driver refuses native: EOPNOTSUPP/EINVAL).
    :param expected_fd: None to attach only if nothing is attached; an fd of
        the program expected to be attached now, to replace it atomically.
    :return: the mode used.
    :raises Conflict: something else is attached (EBUSY/EEXIST), or the
        expected program is no longer the one attached.
    """
    if mode != "auto" and mode not in XDP_MODES:
        raise InvalidArgument(f"unknown XDP mode {mode!r}", field="xdp_mode")
    tries = ["native", "generic"] if mode == "auto" else [mode]
    last: NetlinkError | None = None
    with rtnl.connect(netns) as rt:
        for m in tries:
            flags = XDP_MODES[m]
            flags |= XDP_FLAGS_UPDATE_IF_NOEXIST if expected_fd is None else XDP_FLAGS_REPLACE
            try:
                _set_xdp(rt, index, prog_fd, flags, expected_fd)
                return m
            except NetlinkError as exc:
                last = exc
                if exc.code in (errno.EOPNOTSUPP, errno.EINVAL) and m != tries[-1]:
                    continue  # the driver has no native XDP: try generic
                break
    assert last is not None
    _raise_attach(last, index, netns, expected_fd, mode=m)
    raise AssertionError("unreachable")


def _raise_attach(exc: NetlinkError, index: int, netns: NetNs, expected_fd: int | None,
                  mode: str | None = None) -> None:
    if exc.code == errno.EEXIST and expected_fd is not None:
        raise Conflict(f"the XDP program on interface {index} in {netns} changed"
                       " meanwhile (someone else replaced it); nothing was changed",
                       ifindex=index) from exc
    if exc.code in (errno.EEXIST, errno.EBUSY):
        raise Conflict(f"interface {index} in {netns} already has an XDP program this"
                       " daemon does not manage (or one held by a bpf_link):"
                       f" {exc}", ifindex=index) from exc
    if exc.code == errno.ENODEV:
        raise AttachTargetNotFound(f"no interface with index {index} in {netns}",
                                   ifindex=index) from exc
    if mode in ("native", "offload") and exc.code in (errno.EOPNOTSUPP, errno.EINVAL):
        # A forced mode the driver lacks: say so, not only "Invalid argument".
        op = f"XDP attach in {mode} mode (RTM_SETLINK IFLA_XDP)"
        raise KernelError(op, exc.code, f"{op} failed: {exc}: the driver of interface {index}"
                          f" in {netns} may not support {mode} XDP (xdp_mode 'auto' falls"
                          " back to generic)", ifindex=index, mode=mode) from exc
    raise rtnl.kernel_error("XDP attach (RTM_SETLINK IFLA_XDP)", exc, ifindex=index) from exc


def xdp_detach(index: int, *, netns: NetNs = _HERE, mode: str,
               expected_fd: int | None = None) -> bool:
    """Remove the XDP program at interface `index` (in `mode`), only if it is
    still the expected one when `expected_fd` is given.

    :return: False when the interface is gone (nothing to detach).
    """
    flags = XDP_MODES.get(mode, 0)
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
    with rtnl.connect(netns) as rt:
        try:
            _set_xdp(rt, index, -1, flags, expected_fd)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            _raise_attach(exc, index, netns, expected_fd)
    return True
