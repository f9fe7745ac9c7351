"""Links created with bpf_link_create on an fd target: a cgroup v2
directory (cgroup_skb, cgroup_sock, cgroup_sock_addr, ...), a network
namespace (sk_lookup) or the netfilter hooks of a namespace (netfilter).
TCX (`tcx.py`) is the same mechanism with an interface index as target and
shares `Anchor`, `query_attached`, `attach_ordered` and `detach_pinned_link`.

Ordering. Cgroup hooks on Linux >= 6.17 are bpf_mprog-style chains like
TCX: a link is placed with BPF_F_BEFORE/AFTER relative to a program or a
link, guarded by the chain's revision (ESTALE when it moved under us), and
BPF_PROG_QUERY returns the chain in run order with its revision. Older
kernels only append (BPF_F_ALLOW_MULTI: attach order), and refuse anchors
with EINVAL; `attach_cgroup` reports that as `KernelFeatureMissing`.
sk_lookup programs on one netns run in attach order (no anchors); netfilter
hooks are ordered by the kernel's own netfilter priority (lower first).

A link lives as long as its pin; `detach_pinned_link` detaches it
synchronously (BPF_LINK_DETACH) before removing the pin. A link whose target
died (cgroup removed, namespace gone) stays pinned but defunct:
`fd_link_info` reports it (`FdLinkInfo.defunct`), which is what the plugins'
reconcile checks.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import attrs

from bpfman.kernel import pins
from bpfman.kernel._sys import bpfcmd, libbpf
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import BpfLinkInfo
from bpfman.kernel.links import pin_new_link, require_program_type
from bpfman.kernel.netns import NetNs, host_netns
from bpfman.model.errors import (
    AttachTargetNotFound,
    Conflict,
    InvalidArgument,
    KernelFeatureMissing,
    StateDrift,
)

PathLike = Path | str
MAX_STALE_RETRIES = 8


@attrs.frozen
class CgroupHook:
    """One cgroup attach type: its enum value and the program type it takes."""

    name: str
    attach_type: int
    program_type: str


# enum bpf_attach_type values of the cgroup hooks, by the names the CLI uses
# (libbpf's section suffixes).
CGROUP_HOOKS: Mapping[str, CgroupHook] = {h.name: h for h in (
    CgroupHook("ingress", 0, "cgroup_skb"),
    CgroupHook("egress", 1, "cgroup_skb"),
    CgroupHook("sock_create", 2, "cgroup_sock"),
    CgroupHook("sock_release", 34, "cgroup_sock"),
    CgroupHook("post_bind4", 12, "cgroup_sock"),
    CgroupHook("post_bind6", 13, "cgroup_sock"),
    CgroupHook("bind4", 8, "cgroup_sock_addr"),
    CgroupHook("bind6", 9, "cgroup_sock_addr"),
    CgroupHook("connect4", 10, "cgroup_sock_addr"),
    CgroupHook("connect6", 11, "cgroup_sock_addr"),
    CgroupHook("sendmsg4", 14, "cgroup_sock_addr"),
    CgroupHook("sendmsg6", 15, "cgroup_sock_addr"),
    CgroupHook("recvmsg4", 19, "cgroup_sock_addr"),
    CgroupHook("recvmsg6", 20, "cgroup_sock_addr"),
    CgroupHook("getpeername4", 29, "cgroup_sock_addr"),
    CgroupHook("getpeername6", 30, "cgroup_sock_addr"),
    CgroupHook("getsockname4", 31, "cgroup_sock_addr"),
    CgroupHook("getsockname6", 32, "cgroup_sock_addr"),
)}

# netfilter: protocol families (NFPROTO_*) and hooks (NF_INET_*)
NF_FAMILIES: Mapping[str, int] = {"ipv4": 2, "ipv6": 10}
NF_HOOKS: Mapping[str, int] = {"prerouting": 0, "input": 1, "forward": 2, "output": 3,
                               "postrouting": 4}
BPF_F_NETFILTER_IP_DEFRAG = 1
# NF_IP_PRI_FIRST / NF_IP_PRI_LAST are reserved by the kernel (EPERM).
NF_PRIORITY_MIN = -(2**31) + 1
NF_PRIORITY_MAX = 2**31 - 2


@attrs.frozen
class Anchor:
    """Where a new link goes in a bpf_mprog chain (TCX, cgroup). Build it
    with the class methods; only this module knows the kernel's flag bits."""

    flags: int = 0
    relative_id: int = 0
    text: str = "append"

    @classmethod
    def append(cls) -> Anchor:
        return cls()

    @classmethod
    def head(cls) -> Anchor:
        return cls(bpfcmd.BPF_F_BEFORE, 0, "head")

    @classmethod
    def tail(cls) -> Anchor:
        return cls(bpfcmd.BPF_F_AFTER, 0, "tail")

    @classmethod
    def before(cls, program_id: int) -> Anchor:
        return cls(bpfcmd.BPF_F_BEFORE | bpfcmd.BPF_F_ID, program_id,
                   f"before program {program_id}")

    @classmethod
    def after(cls, program_id: int) -> Anchor:
        return cls(bpfcmd.BPF_F_AFTER | bpfcmd.BPF_F_ID, program_id, f"after program {program_id}")

    @classmethod
    def before_link(cls, kernel_link_id: int) -> Anchor:
        return cls(bpfcmd.BPF_F_BEFORE | bpfcmd.BPF_F_ID | bpfcmd.BPF_F_LINK, kernel_link_id,
                   f"before link {kernel_link_id}")

    @classmethod
    def after_link(cls, kernel_link_id: int) -> Anchor:
        return cls(bpfcmd.BPF_F_AFTER | bpfcmd.BPF_F_ID | bpfcmd.BPF_F_LINK, kernel_link_id,
                   f"after link {kernel_link_id}")

    def __str__(self) -> str:
        return self.text


@attrs.frozen
class ChainEntry:
    """One slot of an mprog chain; `kernel_link_id` is 0 for a program
    attached without a link (BPF_PROG_ATTACH), and always 0 on a cgroup
    hook: the kernel (6.18 measured) lists only program ids for cgroups. A
    program is on one hook at most once, so its id names its slot."""

    program_id: int
    kernel_link_id: int


@attrs.frozen
class Chain:
    """The programs on one hook of one target, first to run first."""

    target: str
    hook: str
    revision: int
    entries: tuple[ChainEntry, ...]

    def link_ids(self) -> list[int]:
        return [e.kernel_link_id for e in self.entries]

    def program_ids(self) -> list[int]:
        return [e.program_id for e in self.entries]


@attrs.frozen
class FdLinkInfo:
    """What a cgroup, netns, netfilter or tcx link is attached to.

    `target` is the cgroup id (the cgroup directory's inode), the netns
    inode, or the ifindex; 0 once the target is gone (`defunct`). Netfilter
    links carry `pf`/`hooknum`/`priority` in `extra`.
    """

    kernel_link_id: int
    program_id: int
    link_type: str
    attach_type: int | None
    target: int
    extra: dict[str, int] = attrs.field(factory=dict)

    @property
    def defunct(self) -> bool:
        return self.link_type != "netfilter" and self.target == 0


Translator = Callable[[SysError], Exception]


def query_attached(target: int, attach_type: int, op: str,
                   on: Mapping[int, Translator] | None = None) -> tuple[int, list[ChainEntry]]:
    """(revision, entries in run order) of one hook of `target` (an fd, or
    an ifindex for TCX; the caller is in the right netns)."""
    capacity = 64  # bpf_mprog holds at most 63 programs; cgroups at most 64
    prog_ids = (ctypes.c_uint32 * capacity)()
    link_ids = (ctypes.c_uint32 * capacity)()
    attr = bpfcmd.ProgQueryAttr(
        target_ifindex=target, attach_type=attach_type,
        prog_ids=ctypes.addressof(prog_ids), count=capacity,
        link_ids=ctypes.addressof(link_ids),
    )
    try:
        bpfcmd.bpf(bpfcmd.BPF_PROG_QUERY, attr, "bpf_prog_query")
    except SysError as exc:
        if exc.errno == errno.ENOENT:  # nothing attached, on kernels that say so
            return 1, []
        with kernel_errors(op, on):
            raise
    count = min(int(attr.count), capacity)
    return int(attr.revision), [ChainEntry(int(prog_ids[i]), int(link_ids[i]))
                                for i in range(count)]


def create_link(prog_fd: int, target: int, attach_type: int, anchor: Anchor | None,
                expected_revision: int, op: str) -> int:
    """bpf_link_create with the mprog member (tcx/cgroup layout); returns
    the new link's fd. Raises `SysError` for the caller to translate."""
    anchor = anchor or Anchor.append()
    attr = bpfcmd.TcxLinkCreateAttr(
        prog_fd=prog_fd, target_ifindex=target, attach_type=attach_type,
        flags=anchor.flags, relative_id=anchor.relative_id,
        expected_revision=expected_revision,
    )
    return bpfcmd.bpf(bpfcmd.BPF_LINK_CREATE, attr, op)


def attach_ordered(prog_fd: int, target: int, attach_type: int, link_pin: PathLike,
                   position: Anchor | Callable[[Chain], Anchor], *, target_name: str,
                   hook: str, op: str, on_error: Callable[[SysError, Anchor], None],
                   retries: int = MAX_STALE_RETRIES) -> int:
    """Create a link at `position` in the chain of `target`/`attach_type`
    and pin it; on a stale revision, query again and retry.

    :param position: an `Anchor`, or a function computing one from the chain
        as it is now (called again after each stale revision).
    :param on_error: raises the domain error for a failed create.
    :return: the kernel link id.
    """
    for _attempt in range(max(1, retries)):
        revision, entries = query_attached(target, attach_type, f"bpf_prog_query({hook})")
        chain = Chain(target_name, hook, revision, tuple(entries))
        anchor = position(chain) if callable(position) else position
        try:
            link_fd = create_link(prog_fd, target, attach_type, anchor, revision, op)
        except SysError as exc:
            if exc.errno == errno.ESTALE:
                continue
            on_error(exc, anchor)
            raise AssertionError("on_error must raise") from exc
        try:
            return pin_new_link(link_fd, Path(link_pin))
        finally:
            os.close(link_fd)
    raise Conflict(f"the {hook} chain on {target_name} changed during each of {retries}"
                   " attempts (stale revision)", target=target_name)


# --- cgroups ---------------------------------------------------------------------------


def cgroup_hook(name: str) -> CgroupHook:
    try:
        return CGROUP_HOOKS[name]
    except KeyError:
        raise InvalidArgument(f"unknown cgroup attach type {name!r}"
                              f" (one of {', '.join(CGROUP_HOOKS)})",
                              field="attach_type") from None


@contextmanager
def _open_cgroup(path: PathLike) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise AttachTargetNotFound(f"no cgroup directory at {path} ({exc.strerror})",
                                   cgroup=str(path)) from exc
    try:
        yield fd
    finally:
        os.close(fd)


def cgroup_id(path: PathLike) -> int:
    """The id of the cgroup v2 directory at `path` (its inode number)."""
    try:
        return os.stat(path).st_ino
    except OSError as exc:
        raise AttachTargetNotFound(f"no cgroup directory at {path} ({exc.strerror})",
                                   cgroup=str(path)) from exc


def query_cgroup(path: PathLike, hook: str) -> Chain:
    """The programs on hook `hook` of the cgroup at `path`, in run order."""
    h = cgroup_hook(hook)
    with _open_cgroup(path) as fd:
        revision, entries = query_attached(fd, h.attach_type, f"bpf_prog_query(cgroup {hook})")
    return Chain(str(path), hook, revision, tuple(entries))


def attach_cgroup(program_pin: PathLike, path: PathLike, hook: str, link_pin: PathLike,
                  position: Anchor | Callable[[Chain], Anchor] | None = None) -> int:
    """Attach the program pinned at `program_pin` to hook `hook` of the
    cgroup v2 directory `path` through a cgroup link pinned at `link_pin`.

    :param position: where it runs among the hook's programs (an anchor or
        a function of the chain); None appends (works on every kernel).
    :raises KernelFeatureMissing: anchors on a kernel without cgroup mprog
        (< 6.17), or no cgroup BPF at all.
    """
    h = cgroup_hook(hook)
    with ExitStack() as fds:
        prog_fd = fds.enter_context(pins.open_pinned(program_pin, "prog"))
        require_program_type(prog_fd, (h.program_type,), f"cgroup hook {hook}")
        fd = fds.enter_context(_open_cgroup(path))

        def on_error(exc: SysError, anchor: Anchor) -> None:
            on: dict[int, Translator] = {
                errno.EEXIST: lambda _e: Conflict(
                    f"the program is already attached to {hook} of cgroup {path}"
                    " (load another copy to run it twice)", cgroup=str(path)),
                errno.ENOENT: lambda _e: AttachTargetNotFound(
                    f"cgroup {hook} anchor not on the hook: {anchor}", cgroup=str(path)),
                errno.E2BIG: lambda _e: Conflict(
                    f"cgroup {path} {hook}: too many programs", cgroup=str(path)),
            }
            if anchor.flags:
                on[errno.EINVAL] = lambda _e: KernelFeatureMissing(
                    f"placing a program {anchor} on a cgroup hook needs cgroup bpf_mprog"
                    " (Linux >= 6.17)", feature="cgroup_mprog")
            with kernel_errors(f"bpf_link_create(cgroup {hook})", on, cgroup=str(path)):
                raise exc

        return attach_ordered(prog_fd, fd, h.attach_type, link_pin,
                              position or Anchor.append(), target_name=f"cgroup {path}",
                              hook=hook, op=f"bpf_link_create(cgroup {hook})",
                              on_error=on_error)
    raise AssertionError("unreachable")


# --- network namespaces (sk_lookup) ----------------------------------------------------


def attach_netns(program_pin: PathLike, netns_path: PathLike, link_pin: PathLike) -> int:
    """Attach the sk_lookup program pinned at `program_pin` to the network
    namespace at `netns_path` (``/run/netns/NAME``, ``/proc/PID/ns/net``).
    Several programs on one namespace run in attach order."""
    with ExitStack() as fds:
        prog_fd = fds.enter_context(pins.open_pinned(program_pin, "prog"))
        require_program_type(prog_fd, ("sk_lookup",), "a network namespace")
        try:
            ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise AttachTargetNotFound(f"no network namespace at {netns_path}"
                                       f" ({exc.strerror})", netns=str(netns_path)) from exc
        fds.callback(os.close, ns_fd)
        on = {errno.EINVAL: lambda _e: InvalidArgument(
            f"{netns_path} is not a network namespace", field="netns")}
        with kernel_errors("bpf_link_create(sk_lookup)", on, netns=str(netns_path)):
            link_fd = create_link(prog_fd, ns_fd, bpfcmd.BPF_SK_LOOKUP, None, 0,
                                  "bpf_link_create(sk_lookup)")
        fds.callback(os.close, link_fd)
        return pin_new_link(link_fd, Path(link_pin))
    raise AssertionError("unreachable")


# --- netfilter ------------------------------------------------------------------------


def attach_netfilter(program_pin: PathLike, family: str, hook: str, priority: int,
                     link_pin: PathLike, *, defrag: bool = False,
                     netns: NetNs | None = None) -> int:
    """Attach the netfilter program pinned at `program_pin` at `family`
    (ipv4/ipv6) / `hook` with netfilter `priority` (lower runs first) in
    `netns` (default: the daemon's), through a link pinned at `link_pin`."""
    if family not in NF_FAMILIES:
        raise InvalidArgument(f"family must be one of {', '.join(NF_FAMILIES)}",
                              field="family")
    if hook not in NF_HOOKS:
        raise InvalidArgument(f"hook must be one of {', '.join(NF_HOOKS)}", field="hook")
    if not NF_PRIORITY_MIN <= priority <= NF_PRIORITY_MAX:
        raise InvalidArgument(f"priority must be in [{NF_PRIORITY_MIN}, {NF_PRIORITY_MAX}]",
                              field="priority")
    with ExitStack() as fds:
        prog_fd = fds.enter_context(pins.open_pinned(program_pin, "prog"))
        require_program_type(prog_fd, ("netfilter",), f"netfilter {family} {hook}")
        attr = bpfcmd.NetfilterLinkCreateAttr(
            prog_fd=prog_fd, attach_type=bpfcmd.BPF_NETFILTER, pf=NF_FAMILIES[family],
            hooknum=NF_HOOKS[hook], priority=priority,
            nf_flags=BPF_F_NETFILTER_IP_DEFRAG if defrag else 0,
        )
        on = {
            errno.EOPNOTSUPP: lambda _e: KernelFeatureMissing(
                "netfilter bpf links need CONFIG_NETFILTER_BPF_LINK (Linux >= 6.4)"
                + (" and nf_defrag_ipv4/6 for defrag" if defrag else ""),
                feature="netfilter_link"),
            # The kernel keeps one BPF program per priority on a hook.
            errno.EBUSY: lambda _e: Conflict(
                f"a BPF program (this one or another) already runs at priority {priority} on"
                f" netfilter {family} {hook} in this network namespace; the kernel allows"
                " one per priority: choose another",
                priority=priority),
            errno.ERANGE: lambda _e: InvalidArgument(
                f"netfilter priority {priority} is reserved"
                + (" (defrag needs a priority above -400, after conntrack defrag)"
                   if defrag else ""), field="priority"),
        }
        with host_netns(netns).entered(), \
                kernel_errors("bpf_link_create(netfilter)", on, family=family, hook=hook):
            link_fd = bpfcmd.bpf(bpfcmd.BPF_LINK_CREATE, attr, "bpf_link_create(netfilter)")
        fds.callback(os.close, link_fd)
        return pin_new_link(link_fd, Path(link_pin))
    raise AssertionError("unreachable")


# --- any fd-target link ----------------------------------------------------------------


def fd_link_info(link_pin: PathLike) -> FdLinkInfo:
    """What the cgroup/netns/netfilter/tcx link pinned at `link_pin` is on."""
    with pins.open_pinned(link_pin, "link") as fd:
        info = BpfLinkInfo()
        pins.object_info(fd, info, "bpf_obj_get_info_by_fd(link)")
    raw = bytes(info.union)

    def u32(offset: int) -> int:
        return int.from_bytes(raw[offset:offset + 4], "little")

    kind = libbpf.link_type_name(info.type)
    extra: dict[str, Any] = {}
    if info.type == bpfcmd.BPF_LINK_TYPE_CGROUP:
        target, attach_type = int.from_bytes(raw[0:8], "little"), u32(8)
    elif info.type in (bpfcmd.BPF_LINK_TYPE_NETNS, bpfcmd.BPF_LINK_TYPE_TCX):
        target, attach_type = u32(0), u32(4)
    elif info.type == bpfcmd.BPF_LINK_TYPE_NETFILTER:
        target, attach_type = 0, bpfcmd.BPF_NETFILTER
        extra = {"pf": u32(0), "hooknum": u32(4),
                 "priority": int.from_bytes(raw[8:12], "little", signed=True),
                 "flags": u32(12)}
    else:
        raise InvalidArgument(f"link {info.id} has type {kind}, not an fd-target link",
                              field="link")
    return FdLinkInfo(int(info.id), int(info.prog_id), kind, attach_type, target, extra)


def detach_pinned_link(link_pin: PathLike, op: str = "bpf_link_detach") -> bool:
    """Detach the link pinned at `link_pin` now (BPF_LINK_DETACH) and remove
    the pin, so the program is off its hook when the call returns.

    Idempotent: a missing pin returns False; a link whose target is already
    gone is just unpinned.
    """
    try:
        with pins.open_pinned(link_pin, "link") as fd:
            attr = bpfcmd.LinkDetachAttr(link_fd=fd)
            try:
                bpfcmd.bpf(bpfcmd.BPF_LINK_DETACH, attr, op)
            except SysError as exc:
                # ENOLINK/EINVAL: already detached (target gone); fine.
                if exc.errno not in (errno.ENOLINK, errno.EINVAL, errno.ENOENT):
                    with kernel_errors(op, pin=str(link_pin)):
                        raise
    except StateDrift:
        return False
    with suppress(FileNotFoundError):
        os.unlink(link_pin)
    return True
